// Suspend and wake over the in-memory API: a suspended sandbox keeps its Service, URL, capability and
// request and loses its pod; each use wakes it (status read, ?wait=, create, proxy, resume, keepalive)
// with a new pod from the same request; listing, ?wake=false and presence wake nothing. Idle sweeps,
// leases, the active limits with their LRU choice and 429, a refused wake, and the reconciler finishing
// half a suspend or wake.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ANNOTATION_SUSPENDED_AT, ANNOTATION_WOKE_FROM } from '../../src/domain/sandbox.ts';
import { KubeApiError } from '../../src/kube/errors.ts';
import type { FakeKube } from '../fake-kube.ts';
import { call } from '../helpers.ts';
import { NS, setup } from '../service-harness.ts';

/** kubelet, for these tests: every pod is Ready a moment after it is made. */
function autoReady(t: { after: (fn: () => void) => void }, kube: FakeKube): void {
  const timer = setInterval(() => {
    for (const pod of kube.list('pods', NS)) {
      const ready = (pod.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions?.some(
        (c) => c.type === 'Ready' && c.status === 'True',
      );
      if (!ready && !pod.metadata.deletionTimestamp) kube.ready(NS, pod.metadata.name);
    }
  }, 20);
  t.after(() => clearInterval(timer));
}

async function running(t: Parameters<typeof setup>[0], env: Record<string, string> = {}, options: Parameters<typeof setup>[2] = {}) {
  const { kube, service } = await setup(t, env, options);
  autoReady(t, kube);
  return { kube, service, url: service.url };
}

const create = async (url: string, body: Record<string, unknown>) => {
  const r = await call(url, 'POST', '/api/sandboxes?wait=5', body);
  assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.body));
  assert.equal(r.body['status'], 'Running');
  return r.body;
};

test('a suspended sandbox keeps its Service and URL, has no pod, and wakes on the status read DeerFlow makes, from the same request', async (t) => {
  const { kube, service, url } = await running(t);
  const made = await create(url, { sandbox_id: 's1', thread_id: 't1', user_id: 'alice', max_shell_sessions: 3 });
  const suspended = await call(url, 'POST', '/api/sandboxes/s1/suspend?wait=5');
  assert.equal(suspended.status, 200);
  assert.deepEqual([suspended.body['status'], suspended.body['reason']], ['Pending', 'Suspended']);
  assert.equal(typeof suspended.body['suspended_at'], 'string');
  assert.equal(suspended.body['sandbox_url'], made['sandbox_url'], 'the URL is kept');
  assert.deepEqual([suspended.body['thread_id'], suspended.body['user_id']], ['t1', 'alice']);
  assert.equal(kube.list('pods', NS).length, 0, 'no pod');
  const svc = kube.get('services', NS, 'sandbox-s1-svc');
  assert.ok(svc, 'the Service stays');
  assert.equal(svc.metadata.ownerReferences?.length ?? 0, 0, 'no longer owned by a pod (the garbage collector would take it)');

  // Reads that wake nothing: the list, ?wake=false, presence (DeerFlow 2.1: no pod, no generation).
  const list = await call(url, 'GET', '/api/sandboxes');
  assert.deepEqual(
    (list.body['sandboxes'] as Record<string, unknown>[]).map((s) => [s['sandbox_id'], s['reason']]),
    [['s1', 'Suspended']],
  );
  assert.equal((await call(url, 'GET', '/api/sandboxes/s1?wake=false')).body['reason'], 'Suspended');
  assert.deepEqual((await call(url, 'GET', '/api/sandboxes/s1/presence')).body, { sandbox_id: 's1', exists: false, container_id: null });
  assert.equal(kube.list('pods', NS).length, 0, 'still no pod');

  // DeerFlow's is_alive: one status read, answered Running once the new pod runs.
  const alive = await call(url, 'GET', '/api/sandboxes/s1');
  assert.deepEqual([alive.status, alive.body['status'], alive.body['woken_by']], [200, 'Running', 'status']);
  assert.equal(alive.body['sandbox_url'], made['sandbox_url']);
  assert.notEqual(alive.body['container_id'], made['container_id'], 'a new generation');
  assert.equal(alive.body['max_shell_sessions'], 3, 'the same request: its shell capacity');
  assert.equal(alive.body['suspended_at'], undefined);
  const pod = kube.get('pods', NS, 'sandbox-s1');
  assert.equal(pod?.metadata.annotations?.['sandbox.deer-flow/user-id'], 'alice');
  assert.equal(kube.get('services', NS, 'sandbox-s1-svc')?.metadata.ownerReferences?.[0]?.uid, pod?.metadata.uid, 'owned by its new pod');
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /sandbox_provisioner_suspends_total\{reason="request"\} 1/);
  assert.match(metrics, /sandbox_provisioner_wakes_total\{trigger="status"\} 1/);
  void service;
});

test('proxy mode: the capability URL outlives a suspend, and a request through it wakes the sandbox and is answered', async (t) => {
  const { url } = await running(t, { SANDBOX_URL_MODE: 'proxy' });
  const made = await create(url, { sandbox_id: 'p1' });
  const sandboxUrl = String(made['sandbox_url']);
  assert.match(sandboxUrl, /\/s\/p1\.[A-Za-z0-9_-]{32}$/);
  await call(url, 'POST', '/api/sandboxes/p1/suspend?wait=5');
  const exec = await call(sandboxUrl, 'POST', '/v1/shell/exec', { command: 'echo back' });
  assert.equal(exec.status, 200, JSON.stringify(exec.body));
  assert.equal((exec.body['data'] as Record<string, unknown>)['output'], 'echo back');
  const after = await call(url, 'GET', '/api/sandboxes/p1');
  assert.deepEqual([after.body['sandbox_url'], after.body['woken_by']], [sandboxUrl, 'proxy']);
  // A capability of another sandbox, or made up, still opens nothing.
  assert.equal((await call(url, 'GET', `/s/p1.${'A'.repeat(32)}/v1/sandbox`)).status, 404);
});

test('a create of a suspended id wakes it (200, a new container_id); a keepalive and /resume wake it too', async (t) => {
  const { url } = await running(t);
  const made = await create(url, { sandbox_id: 'c1' });
  await call(url, 'POST', '/api/sandboxes/c1/suspend?wait=5');
  const again = await call(url, 'POST', '/api/sandboxes?wait=5', { sandbox_id: 'c1' });
  assert.deepEqual([again.status, again.body['status'], again.body['woken_by']], [200, 'Running', 'create']);
  assert.notEqual(again.body['container_id'], made['container_id']);

  await call(url, 'POST', '/api/sandboxes/c1/suspend?wait=5');
  const resumed = await call(url, 'POST', '/api/sandboxes/c1/resume?wait=5');
  assert.deepEqual([resumed.status, resumed.body['status'], resumed.body['woken_by']], [200, 'Running', 'resume']);
  const twice = await call(url, 'POST', '/api/sandboxes/c1/resume');
  assert.equal(twice.body['status'], 'Running', 'resuming a running sandbox answers it as it is');

  await call(url, 'POST', '/api/sandboxes/c1/suspend?wait=5');
  const kept = await call(url, 'POST', '/api/sandboxes/c1/keepalive', { lease_seconds: 60 });
  assert.equal(kept.status, 200);
  assert.notEqual(kept.body['reason'], 'Suspended');
  for (const [path, code] of [
    ['/api/sandboxes/nope/suspend', 404],
    ['/api/sandboxes/nope/resume', 404],
    ['/api/sandboxes/NOPE/suspend', 400],
  ] as const)
    assert.equal((await call(url, 'POST', path)).status, code, path);
});

test('idle sandboxes are suspended by the sweep; a lease holds one off until it ends; a suspended one is deleted by the TTL whole', async (t) => {
  let clock = Date.now();
  const { kube, service, url } = await running(t, { SANDBOX_SUSPEND_AFTER_SECONDS: '600' }, { now: () => clock });
  await create(url, { sandbox_id: 'idle' });
  await create(url, { sandbox_id: 'leased' });
  assert.equal((await call(url, 'POST', '/api/sandboxes/leased/keepalive', { lease_seconds: 3600 })).status, 200);
  await service.view.waitFor('leased', (r) => r?.leaseUntil !== undefined, 2000);
  clock += 10 * 60_000;
  assert.deepEqual((await service.sweep()).suspended, ['idle']);
  assert.equal(service.view.get('leased')?.suspension, undefined, 'a run under a lease is never suspended');
  assert.equal((await service.sweep()).suspended.length, 0, 'nothing twice');
  // The lease ends (0): the next sweep after the idle time suspends it.
  await call(url, 'POST', '/api/sandboxes/leased/keepalive', { lease_seconds: 0 });
  clock += 10 * 60_000;
  assert.deepEqual((await service.sweep()).suspended, ['leased']);
  await service.view.waitFor('leased', (r) => r?.suspension === 'suspended', 2000);
  assert.deepEqual(kube.list('pods', NS), []);
  assert.equal(kube.list('services', NS).length, 2);
});

test('active limits: a create past MAX_ACTIVE_SANDBOXES_PER_USER suspends the user’s least recently used idle sandbox; none idle is a 429 that makes nothing', async (t) => {
  const { kube, service, url } = await running(t, {
    MAX_ACTIVE_SANDBOXES_PER_USER: '2',
    MAX_ACTIVE_SANDBOXES: '4',
    MAX_ACTIVE_SANDBOXES_USER_OVERRIDES: 'vip=3',
  });
  await create(url, { sandbox_id: 'a1', user_id: 'ann' });
  await create(url, { sandbox_id: 'a2', user_id: 'ann' });
  await call(url, 'GET', '/api/sandboxes/a1'); // a1 used last: a2 is the least recently used
  await create(url, { sandbox_id: 'a3', user_id: 'ann' });
  assert.equal(service.view.get('a2')?.suspension, 'suspended', 'ann’s least recently used');
  assert.equal(service.view.get('a1')?.suspension, undefined);

  // Both of ann's active sandboxes leased (runs under way): the next one is refused, and nothing is made.
  for (const id of ['a1', 'a3']) await call(url, 'POST', `/api/sandboxes/${id}/keepalive`, { lease_seconds: 600 });
  const pods = kube.list('pods', NS).length;
  const refused = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'a4', user_id: 'ann' });
  assert.equal(refused.status, 429);
  assert.equal(refused.body['code'], 'active_limit_reached');
  assert.match(String(refused.body['detail']), /MAX_ACTIVE_SANDBOXES_PER_USER \(2 for user 'ann'\)/);
  assert.equal(refused.headers.get('retry-after'), '10');
  assert.equal(kube.list('pods', NS).length, pods);
  assert.equal(kube.get('services', NS, 'sandbox-a4-svc'), undefined);
  // A wake of ann's suspended one is refused the same way, and it stays suspended.
  assert.equal((await call(url, 'GET', '/api/sandboxes/a2')).status, 429);
  assert.equal(service.view.get('a2')?.suspension, 'suspended');

  // The deployment-wide limit (4): vip's third takes the place of another user's idle one.
  await create(url, { sandbox_id: 'v1', user_id: 'vip' });
  await create(url, { sandbox_id: 'v2', user_id: 'vip' });
  assert.equal(
    service.view.count((r) => r.hasPod && !r.suspension),
    4,
  );
  const v3 = await call(url, 'POST', '/api/sandboxes?wait=5', { sandbox_id: 'v3', user_id: 'vip' });
  assert.equal(v3.status, 201, 'vip may have 3 (override)');
  assert.equal(service.view.get('v1')?.suspension, 'suspended', 'the same user’s own idle one first');
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /sandbox_provisioner_suspends_total\{reason="admission"\} 2/);
});

test('a refused wake answers the refusal and leaves the sandbox suspended, not half made', async (t) => {
  const { kube, service, url } = await running(t);
  await create(url, { sandbox_id: 'r1' });
  await call(url, 'POST', '/api/sandboxes/r1/suspend?wait=5');
  kube.beforeRequest = (method, path) => {
    if (method === 'POST' && path.endsWith('/pods'))
      throw new KubeApiError(method, path, 403, {
        kind: 'Status',
        status: 'Failure',
        code: 403,
        reason: 'Forbidden',
        message: 'pods "sandbox-r1" is forbidden: exceeded quota: sandboxes, requested: pods=1, used: pods=10, limited: pods=10',
      });
  };
  const refused = await call(url, 'GET', '/api/sandboxes/r1');
  assert.deepEqual([refused.status, refused.body['code']], [429, 'quota_exceeded']);
  assert.equal(service.view.get('r1')?.suspension, 'suspended');
  assert.deepEqual(kube.list('pods', NS), []);
  kube.beforeRequest = undefined;
  assert.equal((await call(url, 'GET', '/api/sandboxes/r1')).body['status'], 'Running');
});

test('the reconciler finishes half a suspend (a pod beside a Service that says suspended) and half a wake (its pod made, the Service not yet awake)', async (t) => {
  const { kube, service, url } = await running(t, { RECONCILE_GRACE_SECONDS: '0' });
  await create(url, { sandbox_id: 'h1' });
  await create(url, { sandbox_id: 'h2' });
  // h1: a crash after the Service was marked, before the pod was deleted.
  await kube.request('PATCH', `/api/v1/namespaces/${NS}/services/sandbox-h1-svc`, {
    body: { metadata: { annotations: { [ANNOTATION_SUSPENDED_AT]: '2026-01-01T00:00:00.000Z' }, ownerReferences: null } },
  });
  // h2: a crash after a wake made the pod, before the Service was marked awake.
  await kube.request('PATCH', `/api/v1/namespaces/${NS}/services/sandbox-h2-svc`, {
    body: { metadata: { annotations: { [ANNOTATION_SUSPENDED_AT]: '2026-01-01T00:00:00.000Z' } } },
  });
  await kube.request('PATCH', `/api/v1/namespaces/${NS}/pods/sandbox-h2`, {
    body: { metadata: { annotations: { [ANNOTATION_WOKE_FROM]: '2026-01-01T00:00:00.000Z' } } },
  });
  await service.view.waitFor('h2', (r) => r?.suspension === 'waking', 2000);
  assert.equal(service.view.get('h1')?.suspension, 'suspending');
  assert.equal(service.view.get('h1')?.ready, false, 'a sandbox being suspended takes no traffic');
  await service.housekeeping();
  assert.equal((await service.view.waitFor('h1', (r) => r?.suspension === 'suspended', 2000))?.hasPod, false);
  assert.equal((await service.view.waitFor('h2', (r) => r?.suspension === undefined, 2000))?.status, 'Running');
});
