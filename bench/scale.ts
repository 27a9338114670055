// Scenario 5 (and the watch issue's benchmark): N sandboxes created through the API, then the view's
// first sync time, memory per sandbox (heap delta / N), list-of-all time, and event-to-view lag (a pod
// turning Ready in the API until the view says Running).

import { loadConfig } from '../src/config.ts';
import { makeKube } from '../src/kube/client.ts';
import { kubeSources } from '../src/watch/kube-source.ts';
import { SandboxView } from '../src/watch/sandbox-view.ts';
import type { KubeHttp } from '../tools/cluster/kube-http.ts';
import { percentile, row, type Row } from './lib.ts';

const sandboxPod = (id: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: `sandbox-${id}`,
    labels: { app: 'deer-flow-sandbox', 'sandbox-id': id, 'app.kubernetes.io/managed-by': 'sandbox-provisioner' },
    annotations: {
      'sandbox.deer-flow/thread-id': `thread-${id}`,
      'sandbox.deer-flow/user-id': 'default',
      'fake-node/behavior': 'never-ready',
    },
  },
  spec: {
    containers: [
      {
        name: 'sandbox',
        image: 'all-in-one-sandbox:latest',
        ports: [{ name: 'http', containerPort: 8080 }],
        resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { cpu: '1', memory: '1Gi' } },
      },
    ],
    automountServiceAccountToken: false,
  },
});
const sandboxService = (id: string) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: {
    name: `sandbox-${id}-svc`,
    labels: { app: 'deer-flow-sandbox', 'sandbox-id': id, 'app.kubernetes.io/managed-by': 'sandbox-provisioner' },
  },
  // ClusterIP: a cluster has only 2,768 node ports (30000-32767), so thousands of sandboxes need
  // SANDBOX_SERVICE_TYPE=ClusterIP and the proxy.
  spec: { type: 'ClusterIP', selector: { 'sandbox-id': id }, ports: [{ name: 'http', port: 8080, targetPort: 8080 }] },
});

async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) {
        const item = items[next++] as T;
        await fn(item);
      }
    }),
  );
}

/** Creates `count` sandboxes (pod + service) in `ns` through the API; returns the ids. */
export async function fill(kube: KubeHttp, ns: string, count: number, prefix = 's'): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  await inParallel(ids, 48, async (id) => {
    await kube.post(`/api/v1/namespaces/${ns}/pods`, sandboxPod(id));
    await kube.post(`/api/v1/namespaces/${ns}/services`, sandboxService(id));
  });
  return ids;
}

const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

export async function scaleBench(ctx: { kube: KubeHttp; kubeconfig: string; ns: string; count: number }): Promise<Row[]> {
  const s = `5 scale (${ctx.count})`;
  const started = performance.now();
  const ids = await fill(ctx.kube, ctx.ns, ctx.count);
  const fillSeconds = (performance.now() - started) / 1000;
  const rows: Row[] = [row(s, 'create sandboxes through the API', ctx.count / fillSeconds, `sandboxes/s (${fillSeconds.toFixed(0)} s)`)];

  const kube = makeKube(loadConfig({ KUBECONFIG_PATH: ctx.kubeconfig, K8S_NAMESPACE: ctx.ns }));
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const view = new SandboxView(kubeSources(kube, ctx.ns));
  const syncStart = performance.now();
  view.start();
  await view.synced;
  const syncMs = performance.now() - syncStart;
  gc();
  const perSandbox = (process.memoryUsage().heapUsed - heapBefore) / view.size;
  rows.push(row(s, 'first sync (list of pods and services)', syncMs, 'ms'));
  rows.push(
    row(s, 'memory per sandbox (heap delta / count)', perSandbox, 'bytes', {
      baseline: 'target 2 KiB',
      ratio: perSandbox / 2048,
      target: '<= 2048 bytes',
      met: perSandbox <= 2048,
    }),
  );
  if (view.size !== ctx.count) console.error(`view holds ${view.size} sandboxes, expected ${ctx.count}`);

  const listTimes: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    view.list();
    listTimes.push(performance.now() - t0);
  }
  rows.push(row(s, 'list of all from the view (p50)', percentile(listTimes, 50), 'ms'));

  // Event-to-view lag: a pod turns Ready in the API (status patch) -> the view says Running.
  const lags: number[] = [];
  const sample = ids.slice(0, 200);
  for (const id of sample) {
    await view.waitFor(id, (r) => r?.status === 'Pending' && r.reason === 'ContainersNotReady', 30_000);
    const seen = view.waitFor(id, (r) => r?.status === 'Running', 10_000).then(() => performance.now());
    await ctx.kube.mergePatch(`/api/v1/namespaces/${ctx.ns}/pods/sandbox-${id}/status`, {
      status: { conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }] },
    });
    const committed = performance.now();
    lags.push(Math.max(0, (await seen) - committed));
  }
  rows.push(row(s, 'Ready in the API -> Running in the view, p50', percentile(lags, 50), 'ms'));
  rows.push(row(s, 'Ready in the API -> Running in the view, p99', percentile(lags, 99), 'ms'));
  await view.stop();
  await kube.close();
  return rows;
}
