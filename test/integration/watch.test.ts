// The sandbox view against the real API server: events, readiness, an API-server outage with changes
// made meanwhile (through a second API server on the same etcd), a forced 410 Gone, and a namespace
// where nothing happens for minutes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { makeKube } from '../../src/kube/client.ts';
import { kubeSources } from '../../src/watch/kube-source.ts';
import type { WatchFn } from '../../src/watch/reflector.ts';
import { SandboxView } from '../../src/watch/sandbox-view.ts';
import { recoverControllers, startApiServer, startSecondApiServer, stopApiServer } from '../../tools/cluster/cluster.ts';
import { KubeHttp } from '../../tools/cluster/kube-http.ts';
import { sandboxPod, sandboxService } from '../../tools/cluster/objects.ts';
import { admin, call, captureLogs, cluster, eventually, FAST_PROBES, namespace, provisioner } from '../helpers.ts';

const pod = (id: string) => sandboxPod(id, { 'sandbox.deer-flow/thread-id': `t-${id}` });
const service = sandboxService;

function viewFor(t: { after: (fn: () => Promise<void>) => void }, ns: string, wrap: (w: WatchFn) => WatchFn = (w) => w) {
  const kube = makeKube(loadConfig({ KUBECONFIG_PATH: cluster().kubeconfig, K8S_NAMESPACE: ns, K8S_REQUEST_TIMEOUT_SECONDS: '5' }));
  const sources = kubeSources(kube, ns);
  const view = new SandboxView({ ...sources, watchPods: wrap(sources.watchPods), backoff: { initialMs: 100, maxMs: 1000 } });
  view.start();
  t.after(async () => {
    await view.stop();
    await kube.close();
  });
  return view;
}

async function create(kube: KubeHttp, ns: string, id: string): Promise<void> {
  await kube.post(`/api/v1/namespaces/${ns}/pods`, pod(id));
  await kube.post(`/api/v1/namespaces/${ns}/services`, service(id));
}

test('pods and services created, updated and deleted through the API show in the view', async (t) => {
  const ns = await namespace(t, 'watch');
  const kube = admin();
  const view = viewFor(t, ns);
  await view.synced;
  assert.equal(view.size, 0);
  await create(kube, ns, 'w1');
  const running = await view.waitFor('w1', (r) => r?.status === 'Running', 15_000);
  assert.equal(running?.status, 'Running', 'the fake node made the pod Ready');
  assert.equal(running?.threadId, 't-w1');
  assert.ok(running?.nodePort);
  assert.ok(running?.podIP);

  // Unrelated objects (no sandbox labels) never enter the view.
  await kube.post(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'other' },
    spec: { containers: [{ name: 'c', image: 'x' }] },
  });

  await kube.delete(`/api/v1/namespaces/${ns}/pods/sandbox-w1`);
  const orphan = await view.waitFor('w1', (r) => r?.hasPod === false, 15_000);
  assert.equal(orphan?.status, 'Unknown');
  assert.equal(orphan?.reason, 'PodMissing');
  await kube.delete(`/api/v1/namespaces/${ns}/services/sandbox-w1-svc`);
  assert.equal(await view.waitFor('w1', (r) => r === undefined, 15_000), undefined);
  assert.equal(view.list().length, 0);
});

test('an API server outage of any length ends with the view equal to the cluster', async (t) => {
  const ns = await namespace(t, 'outage');
  const kube = admin();
  const view = viewFor(t, ns);
  await view.synced;
  for (const id of ['keep', 'gone', 'changed']) await create(kube, ns, id);
  await eventually('three sandboxes running', () => (view.list((r) => r.status === 'Running').length === 3 ? true : undefined));

  const state = cluster();
  const second = await startSecondApiServer(state);
  t.after(() => second.stop());
  const other = new KubeHttp(second.server, state.tokens.admin, second.caFile);
  t.after(() => other.close());
  await stopApiServer(state);
  try {
    await eventually('view reports the watch down', () => (view.health().healthy ? undefined : view.health()), 20_000);
    assert.equal(view.health().stale, true);
    assert.equal(view.get('keep')?.status, 'Running', 'the view keeps serving while stale');
    // Changes the view cannot see while its API server is down.
    await other.delete(`/api/v1/namespaces/${ns}/pods/sandbox-gone`, { gracePeriodSeconds: 0 });
    await other.delete(`/api/v1/namespaces/${ns}/services/sandbox-gone-svc`);
    await other.mergePatch(`/api/v1/namespaces/${ns}/pods/sandbox-changed`, {
      metadata: { annotations: { 'sandbox.deer-flow/thread-id': 'new-thread' } },
    });
    await other.post(`/api/v1/namespaces/${ns}/services`, service('new'));
  } finally {
    await startApiServer(state);
    t.after(() => recoverControllers(state));
  }
  await eventually(
    'view matches the cluster again',
    () => {
      const ids = view
        .list()
        .map((r) => r.sandboxId)
        .sort()
        .join(',');
      return ids === 'changed,keep,new' && view.get('changed')?.threadId === 'new-thread' && view.health().healthy ? true : undefined;
    },
    30_000,
  );
  assert.equal(view.get('new')?.reason, 'PodMissing');
});

test('a forced 410 Gone relists to the same final view with no duplicate adds', async (t) => {
  const ns = await namespace(t, 'gone');
  const kube = admin();
  let forceGone = false;
  let current: { abort: () => void } | undefined;
  const view = viewFor(t, ns, (watch) => async (rv, onEvent, onDone) => {
    // Once asked, watch from resourceVersion 1: long compacted, so the API server answers 410 Gone.
    const handle = await watch(forceGone ? '1' : rv, onEvent, onDone);
    if (forceGone) forceGone = false;
    current = handle;
    return handle;
  });
  await view.synced;
  const adds = new Map<string, number>();
  view.subscribe((c) => {
    if (c.previous === undefined && c.record !== undefined) adds.set(c.id, (adds.get(c.id) ?? 0) + 1);
  });
  for (const id of ['g1', 'g2', 'g3']) await create(kube, ns, id);
  await eventually('three running', () => (view.list((r) => r.status === 'Running').length === 3 ? true : undefined));
  const relistsBefore = view.stats().relists;
  forceGone = true;
  current?.abort();
  await eventually('a relist after 410', () => (view.stats().relists > relistsBefore ? true : undefined));
  await kube.delete(`/api/v1/namespaces/${ns}/pods/sandbox-g2`);
  await kube.delete(`/api/v1/namespaces/${ns}/services/sandbox-g2-svc`);
  await eventually('g2 gone', () => (view.get('g2') === undefined ? true : undefined));
  assert.deepEqual(
    view.list().map((r) => r.sandboxId),
    ['g1', 'g3'],
  );
  assert.deepEqual([...adds.entries()].sort(), [
    ['g1', 1],
    ['g2', 1],
    ['g3', 1],
  ]);
});

test('a namespace where nothing happens for 3 minutes: /readyz stays healthy and no watch is restarted', async (t) => {
  const ns = await namespace(t, 'quiet');
  const { log, lines } = captureLogs();
  const p = await provisioner(t, ns, FAST_PROBES, { log });
  assert.equal((await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'q1' })).status, 201);
  await eventually('the last event of the start is in', () => (p.view.get('q1')?.status === 'Running' ? true : undefined));
  // kubelet's events come from a watch the API server's cache does not serve, so it sends no bookmarks:
  // from here on nothing arrives on it. Before, /readyz went unhealthy after 95 s and the watch was cut at 120 s.
  const quietSince = Date.now();
  const seen: string[] = [];
  while (Date.now() - quietSince < 180_000) {
    const ready = await call(p.url, 'GET', '/readyz');
    if (ready.status !== 200 || ready.body['healthy'] !== true)
      seen.push(`${Math.round((Date.now() - quietSince) / 1000)}s: ${ready.status} ${JSON.stringify(ready.body)}`);
    const metrics = await (await fetch(`${p.url}/metrics`)).text();
    if (!/^sandbox_provisioner_view_healthy 1$/m.test(metrics)) seen.push(`view_healthy is not 1`);
    await new Promise((r) => setTimeout(r, 5000));
  }
  assert.deepEqual(seen, [], 'healthy throughout');
  assert.deepEqual(
    lines.filter((l) => /idle|retrying|disconnected/.test(l)),
    [],
    'no watch was declared dead',
  );
  assert.equal(p.view.stats().restarts, 0);
});
