// Suspend and wake against the real API server and the fake node: both generations of DeerFlow's
// backend, unchanged, across a suspend in nodeport, proxy and gateway mode (Traefik): the files written
// under /mnt/user-data before are there after (the node's disk), the container's own files are not (a
// new pod), the URL and capability are the same, is_alive never says false, the client destroys
// nothing; DeerFlow 2.1's quarantine path (presence absent once suspended, its next create a new
// generation). The idle sweep and a lease in real time; kill -9 while suspending and waking leaves
// every sandbox suspended or running, and the next process finishes what was half done.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeerFlowBackend, execute, readFile, writeFile } from '../../tools/deerflow-client.ts';
import type { PodJson } from '../../src/domain/wire.ts';
import { admin, call, deerflowEnv, eventually, namespace, provisioner, spawnProvisioner } from '../helpers.ts';

const podOf = (ns: string, id: string) => admin().find<PodJson>(`/api/v1/namespaces/${ns}/pods/sandbox-${id}`);

async function suspend(url: string, ns: string, id: string): Promise<Record<string, unknown>> {
  const r = await call(url, 'POST', `/api/sandboxes/${id}/suspend?wait=60`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body['reason'], 'Suspended');
  assert.equal(await podOf(ns, id), undefined, 'no pod');
  assert.ok(await admin().find(`/api/v1/namespaces/${ns}/services/sandbox-${id}-svc`), 'its Service stays');
  return r.body;
}

for (const mode of ['nodeport', 'proxy', 'gateway'] as const) {
  test(`DeerFlow's backend, the seed's and 2.1's, across a suspend in ${mode} mode: same URL, its files kept, is_alive never false`, async (t) => {
    const ns = await namespace(t, `sus-${mode}`);
    const p = await provisioner(t, ns, await deerflowEnv(mode));

    // The seed: acquire, work, (suspended while the user is away), is_alive on its next message, work again.
    const seed = new DeerFlowBackend(p.url, 'seed');
    const id = `seed-${mode}`;
    const { sandboxUrl } = await seed.acquire({ sandbox_id: id, thread_id: `th-${mode}` });
    const kept = `/mnt/user-data/workspace/notes-${mode}.txt`;
    await writeFile(sandboxUrl, kept, 'written before the suspend');
    await writeFile(sandboxUrl, '/tmp/scratch.txt', 'in the container only');
    const before = await podOf(ns, id);
    const suspended = await suspend(p.url, ns, id);
    assert.equal(suspended['sandbox_url'], sandboxUrl);
    assert.equal(await seed.isAlive(id), true, 'is_alive: the status read wakes it and answers Running');
    const after = await podOf(ns, id);
    assert.ok(after && after.metadata?.uid !== before?.metadata?.uid, 'a new pod');
    assert.equal(await readFile(sandboxUrl, kept), 'written before the suspend', 'user data is on the node’s disk');
    assert.equal(await readFile(sandboxUrl, '/tmp/scratch.txt'), undefined, 'the container’s own layer went with its pod');
    assert.equal(await execute(sandboxUrl, 'echo again'), 'echo again');
    assert.ok(!seed.seen.some((s) => s.startsWith('DELETE')), 'the client destroyed nothing');

    // The proxy modes: the first request through the URL wakes it (no status read first).
    if (mode === 'proxy') {
      await suspend(p.url, ns, id);
      assert.equal(await execute(sandboxUrl, 'woken by me'), 'woken by me');
      assert.equal((await call(p.url, 'GET', `/api/sandboxes/${id}`)).body['woken_by'], 'proxy');
    }

    // DeerFlow 2.1: a generation quarantined before the suspend is absent after it (presence), and its
    // next create of the id is a new generation at the same URL.
    const v21 = new DeerFlowBackend(p.url, '2.1');
    const id21 = `v21-${mode}`;
    const first = await v21.acquire({ sandbox_id: id21, thread_id: `th21-${mode}`, user_id: 'alice' }, 11);
    const quarantined = String(first.answer['container_id']);
    await suspend(p.url, ns, id21);
    assert.deepEqual(await v21.presence(id21), { exists: false, containerId: null }, 'the quarantined generation is gone');
    const second = await v21.acquire({ sandbox_id: id21, thread_id: `th21-${mode}`, user_id: 'alice' }, 11);
    assert.notEqual(second.answer['container_id'], quarantined, 'a new generation');
    assert.equal(second.sandboxUrl, first.sandboxUrl, 'at the same URL');
    assert.equal(second.answer['max_shell_sessions'], 11, 'from the same request');
    const presence = await v21.presence(id21);
    assert.deepEqual(presence, { exists: true, containerId: String(second.answer['container_id']) });
    t.diagnostic(`${mode}: seed ${seed.seen.join(', ')}`);
    t.diagnostic(`${mode}: 2.1 ${v21.seen.join(', ')}`);
  });
}

test('the idle sweep suspends a sandbox nobody used for SANDBOX_SUSPEND_AFTER_SECONDS; a lease and an open stream hold one off', async (t) => {
  const ns = await namespace(t, 'sus-idle');
  const p = await provisioner(t, ns, { SANDBOX_SUSPEND_AFTER_SECONDS: '3', SANDBOX_SWEEP_SECONDS: '1' });
  for (const id of ['idle', 'leased', 'streaming']) {
    const r = await call(p.url, 'POST', '/api/sandboxes?wait=30', { sandbox_id: id });
    assert.equal(r.body['status'], 'Running');
  }
  assert.equal((await call(p.url, 'POST', '/api/sandboxes/leased/keepalive', { lease_seconds: 600 })).status, 200);
  // A download that lasts past the idle time: traffic in flight through the proxy.
  const stream = await fetch(`${p.url}/sandboxes/streaming/v1/slow?ms=8000`);
  const body = stream.text();
  await eventually('the idle one suspended', () => (p.view.get('idle')?.suspension === 'suspended' ? true : undefined), 20_000);
  assert.equal(p.view.get('leased')?.suspension, undefined, 'a run under a lease is never suspended');
  assert.equal(p.view.get('streaming')?.suspension, undefined, 'an open request keeps it');
  assert.equal(JSON.parse(await body).slept, true);
  const metrics = await (await fetch(`${p.url}/metrics`)).text();
  assert.match(metrics, /sandbox_provisioner_suspends_total\{reason="idle"\} [1-9]/);
});

test('kill -9 while suspending and waking leaves each sandbox suspended or running, never half; the next process finishes it', async (t) => {
  const ns = await namespace(t, 'sus-kill');
  const first = await spawnProvisioner(t, ns);
  const ids = ['k1', 'k2', 'k3', 'k4'];
  for (const id of ids)
    assert.equal((await call(first.url, 'POST', '/api/sandboxes?wait=30', { sandbox_id: id })).body['status'], 'Running');
  await call(first.url, 'POST', '/api/sandboxes/k3/suspend?wait=30');
  await call(first.url, 'POST', '/api/sandboxes/k4/suspend?wait=30');
  // Suspends of k1 and k2 and wakes of k3 and k4 in flight, then the process is killed.
  const inFlight = [
    ...['k1', 'k2'].map((id) => call(first.url, 'POST', `/api/sandboxes/${id}/suspend`).catch(() => undefined)),
    ...['k3', 'k4'].map((id) => call(first.url, 'POST', `/api/sandboxes/${id}/resume`).catch(() => undefined)),
  ];
  await new Promise((r) => setTimeout(r, 5));
  first.child.kill('SIGKILL');
  await Promise.all(inFlight);

  const second = await provisioner(t, ns, { RECONCILE_GRACE_SECONDS: '0' });
  await second.housekeeping();
  for (const id of ids) {
    const r = await eventually(
      `${id} suspended or running`,
      () => {
        const x = second.view.get(id);
        return x && (x.suspension === 'suspended' || (x.suspension === undefined && x.hasPod)) ? x : undefined;
      },
      30_000,
    );
    t.diagnostic(`${id}: ${r.suspension ?? 'running'}`);
    // Either way it works: a status read answers Running.
    const alive = await call(second.url, 'GET', `/api/sandboxes/${id}`);
    assert.equal(alive.body['status'], 'Running', `${id}: ${JSON.stringify(alive.body)}`);
  }
});

test('two replicas suspending one sandbox at once: one does it; a request racing a suspend is answered (it waits for the wake)', async (t) => {
  const ns = await namespace(t, 'sus-race');
  const env = { SANDBOX_URL_MODE: 'proxy', PROXY_UPSTREAM: 'pod', PROXY_SIGNING_KEYS: 'r'.repeat(32) };
  const [a, b] = [await provisioner(t, ns, env), await provisioner(t, ns, env)];
  const made = await call(a.url, 'POST', '/api/sandboxes?wait=30', { sandbox_id: 'race' });
  await eventually('both replicas see it Running', () => (b.view.get('race')?.status === 'Running' ? true : undefined));
  const answers = await Promise.all([a, b].map((p) => call(p.url, 'POST', '/api/sandboxes/race/suspend?wait=30')));
  assert.deepEqual(
    answers.map((r) => r.status),
    [200, 200],
  );
  const counted = async (p: { url: string }) =>
    Number(/sandbox_provisioner_suspends_total\{reason="request"\} (\d+)/.exec(await (await fetch(`${p.url}/metrics`)).text())?.[1] ?? 0);
  assert.equal((await counted(a)) + (await counted(b)), 1, 'exactly one replica suspended it');

  // A request and a suspend by the same replica at once, many times: every request is answered by the
  // sandbox (it went before the suspend, or waited for the wake after it).
  const sandboxUrl = String(made.body['sandbox_url']);
  await call(a.url, 'POST', '/api/sandboxes/race/resume?wait=30');
  for (let i = 0; i < 5; i++) {
    const [exec] = await Promise.all([
      execute(sandboxUrl, `round ${i}`),
      call(a.url, 'POST', '/api/sandboxes/race/suspend').catch(() => undefined),
    ]);
    assert.equal(exec, `round ${i}`);
  }
});
