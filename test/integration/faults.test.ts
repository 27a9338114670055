// The fault suite: the API server killed and restarted, the API server frozen (SIGSTOP: connections
// hang instead of being refused), and the provisioner killed during creates. Each test asserts what the
// service answers meanwhile and how long it takes to converge afterwards. Short and bounded: the
// probe runs every second here, and every wait has a limit.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { recoverControllers, startApiServer, stopApiServer, up } from '../../tools/cluster/cluster.ts';
import { restartGateway } from '../../tools/cluster/gateway.ts';
import type { ClusterState } from '../../tools/cluster/state.ts';
import { admin, call, cluster, eventually, namespace, objectsIn, provisioner, spawnProvisioner } from '../helpers.ts';

/** After an outage: the controllers that watch the API server (the controller manager, and the gateway when it runs) start afresh. */
async function recover(state: ClusterState): Promise<void> {
  await recoverControllers(state);
  await restartGateway(state);
}

const FAST = { K8S_PROBE_SECONDS: '1', K8S_REQUEST_TIMEOUT_SECONDS: '2' };

async function running(url: string, ids: string[]): Promise<void> {
  for (const id of ids) assert.equal((await call(url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: id })).body['status'], 'Running');
}

/** Waits until /readyz reports the view unhealthy (the outage is seen). */
const unhealthy = (url: string, ms: number): Promise<true> =>
  eventually('the outage is seen', async () => ((await call(url, 'GET', '/readyz')).body['healthy'] === false ? true : undefined), ms);

/** While the API server is out: status and list from memory, /readyz 200 naming the problem, a create a clean 503. */
async function answersMeanwhile(url: string): Promise<void> {
  const ready = await call(url, 'GET', '/readyz');
  assert.equal(ready.status, 200, 'this replica can still answer, so it stays in service');
  assert.equal(ready.body['healthy'], false);
  assert.match(String(ready.body['detail']), /the API server does not answer|watch disconnected/);
  assert.equal((await call(url, 'GET', '/api/sandboxes/f1')).body['status'], 'Running');
  assert.equal((await call(url, 'GET', '/api/sandboxes')).body['count'], 2);
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /^sandbox_provisioner_view_healthy 0$/m);
}

test('API server killed for 12 s: answers from memory meanwhile, /readyz stays 200; back within seconds of its return', async (t) => {
  const ns = await namespace(t, 'fault-kill');
  const p = await provisioner(t, ns, FAST);
  await running(p.url, ['f1', 'f2']);
  const state = cluster();
  await stopApiServer(state);
  let back: number;
  try {
    const down = performance.now();
    await unhealthy(p.url, 10_000);
    t.diagnostic(`outage visible after ${(performance.now() - down).toFixed(0)} ms`);
    await answersMeanwhile(p.url);
    const create = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'during' });
    assert.equal(create.status, 503);
    assert.equal(create.body['code'], 'cluster_unavailable');
    assert.ok(create.headers.get('retry-after'));
    // Long enough for the watches' backoff to grow to several seconds.
    await new Promise((r) => setTimeout(r, 12_000 - (performance.now() - down)));
  } finally {
    await startApiServer(state);
    back = performance.now();
    t.after(() => recover(state));
  }
  await eventually('the view is healthy again', () => (p.view.health().healthy ? true : undefined), 30_000);
  const recovery = performance.now() - back;
  t.diagnostic(`recovered ${recovery.toFixed(0)} ms after the API server was ready again`);
  assert.ok(recovery < 5000, `recovery took ${recovery.toFixed(0)} ms (the probe ends the watches' backoff)`);
  assert.equal((await call(p.url, 'GET', '/readyz')).body['detail'], undefined);
  await running(p.url, ['f3']);
});

test('pods made just before an API server outage turn Running within seconds of its return (the node writes their status again)', async (t) => {
  const ns = await namespace(t, 'fault-fresh');
  const p = await provisioner(t, ns, FAST);
  // Their app answers 3 s after the start: they turn Ready while the API server is out.
  const settings = (body: unknown) => fetch(`${cluster().fakeNodeControl}/settings`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal((await settings({ appStartMs: 3000 })).status, 200);
  t.after(() => settings({ appStartMs: 0 }));
  const ids = ['n1', 'n2', 'n3'];
  for (const id of ids) assert.equal((await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: id })).status, 201);
  const state = cluster();
  // Down while the node starts them: the status writes of their start and readiness fail.
  await stopApiServer(state);
  assert.ok(
    ((await call(p.url, 'GET', '/api/sandboxes')).body['sandboxes'] as { status: string }[]).every((s) => s.status !== 'Running'),
    'not Running before the outage',
  );
  try {
    await new Promise((r) => setTimeout(r, 6000));
  } finally {
    await startApiServer(state);
    t.after(() => recover(state));
  }
  const back = performance.now();
  await eventually(
    'all Running',
    async () => {
      const list = (await call(p.url, 'GET', '/api/sandboxes')).body['sandboxes'] as { status: string }[] | undefined;
      return list?.length === ids.length && list.every((s) => s.status === 'Running') ? true : undefined;
    },
    30_000,
  );
  const after = performance.now() - back;
  t.diagnostic(`Running ${after.toFixed(0)} ms after the API server was back (before: over 70 s in 2 of 4 runs)`);
});

test('API server frozen (SIGSTOP): the stale view is reported within seconds, answers go on; after SIGCONT it converges', async (t) => {
  const ns = await namespace(t, 'fault-stop');
  const p = await provisioner(t, ns, FAST);
  await running(p.url, ['f1', 'f2']);
  const pid = cluster().pids['kube-apiserver'];
  assert.ok(pid);
  process.kill(pid, 'SIGSTOP');
  let resumed: number;
  try {
    const frozen = performance.now();
    await unhealthy(p.url, 15_000);
    const visible = performance.now() - frozen;
    t.diagnostic(`a frozen API server is reported after ${visible.toFixed(0)} ms`);
    assert.ok(visible < 10_000, `reported after ${visible.toFixed(0)} ms (before: up to 90 s)`);
    await answersMeanwhile(p.url);
    const started = performance.now();
    const create = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'frozen' });
    assert.equal(create.status, 503, 'a create that cannot be answered is a clean 503, not a hang');
    assert.equal(create.body['code'], 'cluster_unavailable');
    assert.ok(performance.now() - started < 6000, 'within the request timeout');
  } finally {
    process.kill(pid, 'SIGCONT');
    resumed = performance.now();
    t.after(() => recover(cluster()));
  }
  await eventually('the view is healthy again', () => (p.view.health().healthy ? true : undefined), 30_000);
  const recovery = performance.now() - resumed;
  t.diagnostic(`recovered ${recovery.toFixed(0)} ms after SIGCONT`);
  assert.ok(recovery < 10_000, `recovery took ${recovery.toFixed(0)} ms`);
  // The create sent during the freeze may have been carried out after it: the caller retries and gets it whole.
  const retried = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'frozen' });
  assert.ok([200, 201].includes(retried.status));
  assert.equal(retried.body['status'], 'Running');
  await eventually('view = cluster', async () => {
    const objects = await objectsIn(ns);
    return objects.pods.join() === 'sandbox-f1,sandbox-f2,sandbox-frozen' && objects.services.length === 3 && p.view.size === 3
      ? true
      : undefined;
  });
});

test('kill -9 during 50 concurrent creates and deletes: answers stay well-formed, and a restart converges in seconds', async (t) => {
  const ns = await namespace(t, 'crash');
  const first = await spawnProvisioner(t, ns);
  const ids = Array.from({ length: 25 }, (_, i) => `k${i}`);
  const answer = (r: Awaited<ReturnType<typeof call>>): string => `${r.status} ${String(r.body['code'] ?? '')}`;
  const traffic = [
    ...ids.map((id) => call(first.url, 'POST', '/api/sandboxes', { sandbox_id: id }).then(answer, () => 'connection lost')),
    ...ids.map((id, i) =>
      new Promise((r) => setTimeout(r, i * 3)).then(() =>
        call(first.url, 'DELETE', `/api/sandboxes/${id}`).then(answer, () => 'connection lost'),
      ),
    ),
  ];
  await new Promise((r) => setTimeout(r, 60));
  first.child.kill('SIGKILL');
  const answers = await Promise.all(traffic);
  // Meanwhile: each request got a real answer or lost its connection; none got an internal error.
  for (const a of answers) assert.match(a, /^(200 |201 |409 conflict|connection lost)/);
  // Certain orphans too, whatever the kill left: a pod without its service and a service without its pod.
  const labels = (id: string) => ({ app: 'deer-flow-sandbox', 'sandbox-id': id });
  await admin().post(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'sandbox-lonely', labels: labels('lonely') },
    spec: { containers: [{ name: 'sandbox', image: 'x' }] },
  });
  await admin().post(`/api/v1/namespaces/${ns}/services`, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'sandbox-stray-svc', labels: labels('stray') },
    spec: { selector: { 'sandbox-id': 'stray' }, ports: [{ name: 'http', port: 8080 }] },
  });

  const restarted = performance.now();
  const second = await spawnProvisioner(t, ns, { RECONCILE_GRACE_SECONDS: '0' });
  await eventually(
    'no orphans, and view = cluster',
    async () => {
      const objects = await objectsIn(ns);
      const pods = objects.pods.map((n) => n.slice('sandbox-'.length)).sort();
      const services = objects.services.map((n) => n.slice('sandbox-'.length, -'-svc'.length)).sort();
      const listed = ((await call(second.url, 'GET', '/api/sandboxes')).body['sandboxes'] as { sandbox_id: string; status: string }[])
        .map((s) => s.sandbox_id)
        .sort();
      return JSON.stringify(pods) === JSON.stringify(services) &&
        JSON.stringify(listed) === JSON.stringify(pods) &&
        !pods.includes('lonely')
        ? true
        : undefined;
    },
    30_000,
  );
  const converged = performance.now() - restarted;
  t.diagnostic(`converged ${converged.toFixed(0)} ms after the restart began`);
  assert.ok(converged < 15_000, `converged after ${converged.toFixed(0)} ms`);
  assert.ok(!(await objectsIn(ns)).services.includes('sandbox-stray-svc'));
});

test('cluster:up on a cluster whose API server died restarts it alone, keeping the data, and says so', async (t) => {
  const ns = await namespace(t, 'upkeep');
  const before = cluster();
  const apiserver = before.pids['kube-apiserver'];
  assert.ok(apiserver);
  // The controller manager's informers back off while the API server is away: reconnected for the next test.
  t.after(() => recover(cluster()));
  process.kill(apiserver, 'SIGKILL');
  const lines: string[] = [];
  const after = await up({ dir: before.dir, log: (l) => void lines.push(l) });
  assert.notEqual(after.pids['kube-apiserver'], apiserver);
  for (const name of ['etcd', 'kube-controller-manager', 'fake-node']) assert.equal(after.pids[name], before.pids[name], `${name} kept`);
  assert.ok(
    lines.some((l) => /restarted what had died: kube-apiserver \(/.test(l)),
    lines.join('\n'),
  );
  assert.ok(await admin().find(`/api/v1/namespaces/${ns}`), 'the cluster kept its data');
});
