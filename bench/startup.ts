// Scenario `startup`: from a new thread's create to its first command, as DeerFlow's client lives it
// (RemoteSandboxBackend: POST /api/sandboxes, then GET <sandbox_url>/v1/sandbox with a 5 s timeout and a
// 1 s sleep between tries, then POST <sandbox_url>/v1/shell/exec), on the fake node's kubelet model with
// a fixed app start (BENCH_APP_START_MS, 2 s), so what differs between rows is the probes' schedule, the
// way to the sandbox and the image. Each row: p50 and p99 over BENCH_STARTUP_COUNT sandboxes, and the
// time added over the app's own start (when its stand-in began to answer, from the pod host). Ratios
// compare each row with the reference's pod spec in the same URL mode.

import { setTimeout as sleep } from 'node:timers/promises';
import type { V1DaemonSet } from '@kubernetes/client-node';
import type { PodJson, Wire } from '../src/domain/wire.ts';
import type { ClusterState } from '../tools/cluster/cluster.ts';
import { KubeHttp } from '../tools/cluster/kube-http.ts';
import { POD_HOST_PORT } from '../tools/cluster/pod-host.ts';
import { createSandbox, execute, waitForSandboxReady } from '../tools/deerflow-client.ts';
import { percentile, row, startProvisioner, type Row } from './lib.ts';

const IMAGE = 'enterprise-public-cn-beijing.cr.volces.com/vefaas-public/all-in-one-sandbox:latest';

type Case = { name: string; env: Record<string, string>; warm: boolean; prepull?: boolean };

const CASES: Case[] = [
  { name: 'reference probes, NodePort', env: { SANDBOX_PROBE_PROFILE: 'reference', SANDBOX_URL_MODE: 'nodeport' }, warm: true },
  {
    name: 'reference probes, proxy',
    env: { SANDBOX_PROBE_PROFILE: 'reference', SANDBOX_URL_MODE: 'proxy', PROXY_WAIT_READY_SECONDS: '0', PROXY_EARLY_READY: 'false' },
    warm: true,
  },
  { name: 'startup probes, NodePort', env: { SANDBOX_URL_MODE: 'nodeport' }, warm: true },
  { name: 'startup probes, proxy, hold until Ready', env: { SANDBOX_URL_MODE: 'proxy', PROXY_EARLY_READY: 'false' }, warm: true },
  { name: 'startup probes, proxy, hold until the app answers', env: { SANDBOX_URL_MODE: 'proxy' }, warm: true },
  { name: 'cold node, startup probes, proxy', env: { SANDBOX_URL_MODE: 'proxy' }, warm: false },
  { name: 'cold node + image-prepull ready, startup probes, proxy', env: { SANDBOX_URL_MODE: 'proxy' }, warm: false, prepull: true },
];

type Sample = { total: number; added: number };

async function fakeNode(state: ClusterState, path: string, body: unknown): Promise<void> {
  const res = await fetch(`${state.fakeNodeControl}${path}`, { method: 'POST', body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`fake node ${path}: ${res.status} ${await res.text()}`);
}

async function provisioner(state: ClusterState, ns: string, env: Record<string, string>, stops: (() => void)[]): Promise<string> {
  const { url, child } = await startProvisioner({
    kubeconfig: state.kubeconfig,
    ns,
    env: (port) => ({
      PROXY_SIGNING_KEYS: 'k'.repeat(32),
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      PROXY_UPSTREAM: 'pod',
      SANDBOX_IMAGE: IMAGE,
      ...env,
    }),
  });
  stops.push(() => void child.kill('SIGTERM'));
  return url;
}

/** DeerFlow's client, from the create to the first command (tools/deerflow-client.ts). */
async function deerflow(url: string, id: string): Promise<{ started: number; done: number }> {
  const started = performance.now();
  const { sandbox_url } = await createSandbox(url, { sandbox_id: id, thread_id: id });
  if (!(await waitForSandboxReady(sandbox_url, 60))) throw new Error(`${id}: not ready within 60 s`);
  await execute(sandbox_url, 'echo hello');
  return { started, done: performance.now() };
}

/** Applies the image-prepull DaemonSet (as deploy/components/image-prepull) and waits until it reports ready. */
async function prepull(kube: KubeHttp, ns: string): Promise<number> {
  const started = performance.now();
  await kube.post(`/apis/apps/v1/namespaces/${ns}/daemonsets`, {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'sandbox-image-prepull' },
    spec: {
      selector: { matchLabels: { app: 'prepull' } },
      template: {
        metadata: { labels: { app: 'prepull' } },
        spec: {
          initContainers: [{ name: 'pull-sandbox', image: IMAGE, command: ['/bin/sh', '-c', 'true'] }],
          containers: [{ name: 'pause', image: 'registry.k8s.io/pause:3.10' }],
        },
      },
    },
  });
  for (let i = 0; i < 1200; i++) {
    const ds = await kube.get<Wire<V1DaemonSet>>(`/apis/apps/v1/namespaces/${ns}/daemonsets/sandbox-image-prepull`);
    const { numberReady = 0, desiredNumberScheduled = 0 } = ds.status ?? {};
    if (desiredNumberScheduled > 0 && numberReady === desiredNumberScheduled) break;
    await sleep(100);
  }
  return performance.now() - started;
}

async function runCase(
  ctx: {
    state: ClusterState;
    kube: KubeHttp;
    namespace: (name: string) => Promise<string>;
    count: number;
    appStartMs: number;
    pullMs: number;
  },
  c: Case,
  index: number,
): Promise<{ samples: Sample[]; prepullMs?: number }> {
  const stops: (() => void)[] = [];
  try {
    await fakeNode(ctx.state, '/settings', { appStartMs: ctx.appStartMs, pullMs: ctx.pullMs });
    await fakeNode(ctx.state, '/images', { present: c.warm ? [IMAGE, 'registry.k8s.io/pause:3.10'] : [] });
    const ns = await ctx.namespace(`bench-startup-${index}`);
    const prepullMs = c.prepull ? await prepull(ctx.kube, ns) : undefined;
    const url = await provisioner(ctx.state, ns, c.env, stops);
    // Threads start a quarter second apart (kubelet serializes image pulls per node; a burst would measure the queue).
    const runs = await Promise.all(Array.from({ length: ctx.count }, (_, i) => sleep(i * 250).then(() => deerflow(url, `s${i}`))));
    const samples: Sample[] = [];
    for (const [i, r] of runs.entries()) {
      const pod = await ctx.kube.get<PodJson>(`/api/v1/namespaces/${ns}/pods/sandbox-s${i}`);
      const oracleAnswer = await fetch(`http://${ctx.state.podNetwork.nsIp}:${POD_HOST_PORT}/pods/${pod.status?.podIP}`);
      if (!oracleAnswer.ok) throw new Error(`pod host: ${oracleAnswer.status} for sandbox-s${i} at ${pod.status?.podIP}`);
      const oracle = (await oracleAnswer.json()) as { listeningAt: number | null };
      const appUp = (oracle.listeningAt ?? NaN) - performance.timeOrigin;
      samples.push({ total: r.done - r.started, added: r.done - appUp });
    }
    return { samples, ...(prepullMs !== undefined ? { prepullMs } : {}) };
  } finally {
    for (const stop of stops) stop();
  }
}

export async function startupBench(ctx: {
  state: ClusterState;
  kube: KubeHttp;
  namespace: (name: string) => Promise<string>;
}): Promise<Row[]> {
  const count = Number(process.env['BENCH_STARTUP_COUNT'] ?? '20');
  const appStartMs = Number(process.env['BENCH_APP_START_MS'] ?? '2000');
  const pullMs = Number(process.env['BENCH_PULL_MS'] ?? '15000');
  const s = '5 startup';
  const rows: Row[] = [
    row(s, 'app start (fixed), image pull on a cold node', appStartMs / 1000, `s (pull ${pullMs / 1000} s), ${count} sandboxes a row`),
  ];
  const results: { c: Case; p50: number; p99: number; added50: number }[] = [];
  for (const [i, c] of CASES.entries()) {
    const { samples, prepullMs } = await runCase({ ...ctx, count, appStartMs, pullMs }, c, i);
    const p50 =
      percentile(
        samples.map((x) => x.total),
        50,
      ) / 1000;
    const p99 =
      percentile(
        samples.map((x) => x.total),
        99,
      ) / 1000;
    const added50 =
      percentile(
        samples.map((x) => x.added),
        50,
      ) / 1000;
    const added99 =
      percentile(
        samples.map((x) => x.added),
        99,
      ) / 1000;
    results.push({ c, p50, p99, added50 });
    const reference = results.find(
      (r) => r.c.env['SANDBOX_PROBE_PROFILE'] === 'reference' && r.c.env['SANDBOX_URL_MODE'] === c.env['SANDBOX_URL_MODE'],
    );
    const unit = `s p50 (p99 ${p99.toFixed(2)} s; over the app's start: p50 ${added50.toFixed(2)} s, p99 ${added99.toFixed(2)} s${prepullMs !== undefined ? `; pre-pull ready after ${(prepullMs / 1000).toFixed(1)} s` : ''})`;
    const target =
      c.name === 'startup probes, proxy, hold until the app answers'
        ? {
            target: 'app start + 0.7 s (stretch + 0.3 s), >= 2x faster',
            met: added50 <= 0.7 && reference !== undefined && reference.p50 >= 2 * p50,
          }
        : c.name === 'startup probes, NodePort'
          ? { target: 'app start + 1.5 s, >= 2x faster', met: added50 <= 1.5 && reference !== undefined && reference.p50 >= 2 * p50 }
          : c.prepull
            ? {
                target: 'as a warm node (+0.5 s)',
                met: p50 <= (results.find((r) => r.c.name === 'startup probes, proxy, hold until the app answers')?.p50 ?? 0) + 0.5,
              }
            : {};
    rows.push(
      row(s, `create to first command: ${c.name}`, p50, unit, {
        baseline: reference && reference.c !== c ? `reference probes, same mode (${reference.p50.toFixed(2)} s)` : 'itself',
        ratio: reference ? reference.p50 / p50 : 1,
        ...target,
      }),
    );
  }
  return rows;
}
