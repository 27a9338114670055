// Lifecycle: expiry (TTL and idle, with an injected clock), limits, the event stream, and SIGTERM.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { admin, call, eventually, namespace, objectsIn, provisioner, readEvents, spawnProvisioner } from '../helpers.ts';

const MINUTE = 60_000;

test('TTL and idle expiry; active sandboxes are kept; a restart in between changes nothing', async (t) => {
  const ns = await namespace(t, 'expiry');
  let offset = 0;
  const now = () => Date.now() + offset;
  const env = { SANDBOX_TTL_SECONDS: '7200', SANDBOX_IDLE_SECONDS: '600', SANDBOX_SWEEP_SECONDS: '86400' };
  const p1 = await provisioner(t, ns, env, { now });
  await call(p1.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'old', ttl_seconds: 60 });
  await call(p1.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'idle' });
  const active = await call(p1.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'active' });
  assert.equal(active.body['status'], 'Running');
  assert.ok(active.body['expires_at'], 'the answer says when the sandbox expires');

  offset = 5 * MINUTE;
  assert.deepEqual((await p1.sweep()).expired, [{ id: 'old', reason: 'ttl' }]);
  assert.equal((await fetch(`${p1.url}/sandboxes/active/v1/sandbox`)).status, 200, 'proxied traffic is activity');
  await eventually('activity annotation written', () =>
    (p1.view.get('active')?.lastActivity ?? 0) >= Date.now() + 4 * MINUTE ? true : undefined,
  );

  await p1.stop(0);
  const p2 = await provisioner(t, ns, env, { now });
  offset = 11 * MINUTE;
  const second = await p2.sweep();
  assert.deepEqual(second.expired, [{ id: 'idle', reason: 'idle' }], 'activity survived the restart through the pod annotation');
  assert.deepEqual(second.errors, []);
  await eventually('only active is left', async () => ((await objectsIn(ns)).pods.join() === 'sandbox-active' ? true : undefined));

  // A keepalive moves the expiry and counts as activity.
  offset = 20 * MINUTE;
  const kept = await call(p2.url, 'POST', '/api/sandboxes/active/keepalive', { ttl_seconds: 3600 });
  assert.equal(kept.status, 200);
  assert.ok(Date.parse(String(kept.body['expires_at'])) > Date.now() + 70 * MINUTE);
  assert.deepEqual((await p2.sweep()).expired, []);
  const metrics = await (await fetch(`${p2.url}/metrics`)).text();
  assert.match(metrics, /sandbox_provisioner_expiries_total\{reason="idle"\} 1/);
});

test('two replicas sweeping at once delete each expired sandbox once and report no errors', async (t) => {
  const ns = await namespace(t, 'sweep2');
  let offset = 0;
  const now = () => Date.now() + offset;
  const a = await provisioner(t, ns, { SANDBOX_TTL_SECONDS: '60' }, { now });
  const b = await provisioner(t, ns, { SANDBOX_TTL_SECONDS: '60' }, { now });
  for (const id of ['x1', 'x2', 'x3']) await call(a.url, 'POST', '/api/sandboxes', { sandbox_id: id });
  await eventually('b sees them', () => (b.view.count((r) => r.hasPod && r.hasService) === 3 ? true : undefined));
  offset = 2 * MINUTE;
  const [ra, rb] = await Promise.all([a.sweep(), b.sweep()]);
  assert.deepEqual([...ra.errors, ...rb.errors], []);
  assert.deepEqual([...ra.expired, ...rb.expired].map((e) => e.id).sort(), ['x1', 'x2', 'x3']);
  await eventually('all gone', async () => ((await objectsIn(ns)).pods.length === 0 ? true : undefined));
});

test('MAX_SANDBOXES=3: the fourth create answers 429, and after one delete a create succeeds', async (t) => {
  const ns = await namespace(t, 'maxsb');
  const p = await provisioner(t, ns, { MAX_SANDBOXES: '3', MAX_SANDBOXES_PER_THREAD: '2' });
  for (const [id, thread] of [
    ['m1', 'a'],
    ['m2', 'a'],
  ])
    assert.equal((await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: id, thread_id: thread })).status, 201);
  await eventually('the view counts them', () => (p.view.count((r) => r.threadId === 'a') === 2 ? true : undefined));
  const perThread = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'm9', thread_id: 'a' });
  assert.equal(perThread.status, 429);
  assert.match(String(perThread.body['detail']), /Thread 'a' already has 2 sandboxes \(MAX_SANDBOXES_PER_THREAD\)/);
  assert.equal((await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'm3', thread_id: 'b' })).status, 201);
  await eventually('the view counts three', () => (p.view.size === 3 ? true : undefined));
  const fourth = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'm4', thread_id: 'c' });
  assert.equal(fourth.status, 429);
  assert.equal(fourth.body['code'], 'limit_reached');
  assert.match(String(fourth.body['detail']), /limit of 3 sandboxes/);
  assert.equal(
    (await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'm1', thread_id: 'a' })).status,
    200,
    'an existing sandbox is still answered',
  );
  await call(p.url, 'DELETE', '/api/sandboxes/m3');
  await eventually('m3 gone from the view', () => (p.view.get('m3') === undefined ? true : undefined));
  assert.equal((await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'm4', thread_id: 'c' })).status, 201);
  assert.equal((await objectsIn(ns)).pods.length, 3);
});

test('a burst of 200 creates against the in-flight limit gets only well-formed answers', async (t) => {
  const ns = await namespace(t, 'burst');
  const p = await provisioner(t, ns, { MAX_CONCURRENT_CREATES: '4', CREATE_QUEUE_SIZE: '16', CREATE_QUEUE_TIMEOUT_SECONDS: '5' });
  const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => call(p.url, 'POST', '/api/sandboxes', { sandbox_id: `b${i}` })));
  const byStatus = new Map<number, number>();
  for (const a of answers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
  for (const a of answers) {
    if (a.status === 201) assert.match(String(a.body['sandbox_url']), /^http:\/\/127\.0\.0\.1:\d+$/);
    else {
      assert.equal(a.status, 429, JSON.stringify(a.body));
      assert.equal(a.body['code'], 'too_many_requests');
      assert.equal(a.headers.get('retry-after'), '1');
    }
  }
  assert.ok((byStatus.get(201) ?? 0) >= 4, `some creates succeed: ${JSON.stringify([...byStatus])}`);
  assert.ok((byStatus.get(429) ?? 0) > 0, 'the rest are told to retry');
  assert.equal((await objectsIn(ns)).pods.length, byStatus.get(201));
});

test('the event stream shows Pending then Running for a new sandbox, and ends on delete', async (t) => {
  const ns = await namespace(t, 'events');
  const p = await provisioner(t, ns);
  await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'ev' });
  const res = await fetch(`${p.url}/api/sandboxes/ev/events`);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  let deleting = false;
  const events = await readEvents(res, async (e) => {
    if (!deleting && e.data['status'] === 'Running') {
      deleting = true;
      await call(p.url, 'DELETE', '/api/sandboxes/ev');
    }
  });
  const statuses = events.filter((e) => e.event === 'status').map((e) => e.data['status']);
  assert.equal(statuses[0], 'Pending');
  assert.ok(statuses.includes('Running'));
  assert.ok(statuses.indexOf('Pending') < statuses.indexOf('Running'));
  assert.equal(events.at(-1)?.event, 'deleted');
  assert.equal((await fetch(`${p.url}/api/sandboxes/nope/events`)).status, 404);
});

test('SIGTERM during a long proxied download and an open WebSocket: exit 0 within the grace period, sandboxes kept', async (t) => {
  const ns = await namespace(t, 'sigterm');
  const { child, url } = await spawnProvisioner(t, ns, { SHUTDOWN_GRACE_SECONDS: '2' });
  const port = new URL(url).port;
  assert.equal((await call(url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'keepme' })).body['status'], 'Running');

  const download = await fetch(`${url}/sandboxes/keepme/v1/file/download?size=${8 * 1024 * 1024 * 1024}`);
  const reader = (download.body as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  const ws = new WebSocket(`ws://127.0.0.1:${port}/sandboxes/keepme/v1/shell/ws`);
  await new Promise((ok, fail) => ws.once('open', ok).once('error', fail));
  const wsClosed = new Promise((ok) => ws.once('close', ok));
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  const started = Date.now();
  child.kill('SIGTERM');
  const code = await exited;
  const took = Date.now() - started;
  assert.equal(code, 0);
  assert.ok(took < 5000, `exited after ${took} ms (grace 2 s)`);
  await wsClosed;
  await reader.cancel().catch(() => undefined);
  assert.deepEqual(
    await objectsIn(ns),
    { pods: ['sandbox-keepme'], services: ['sandbox-keepme-svc'] },
    'sandboxes are not deleted on shutdown',
  );
  assert.ok(await admin().find(`/api/v1/namespaces/${ns}/pods/sandbox-keepme`));
});
