// The whole service in-process over the in-memory API (test/fake-kube.ts), with the stand-in sandbox on
// loopback as every pod's upstream: the REST API, the proxy by each entry, WebSocket, events, the
// dashboard feed and metrics, without a control plane. The integration suite does the same against
// the real one; this runs in seconds and reaches the code paths a unit test should.

import { VERSION } from '../../src/version.ts';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import WebSocket from 'ws';
import { startStandin } from '../../tools/cluster/sandbox-standin.ts';
import { NS, setup } from '../service-harness.ts';
import { call, captureLogs, eventually, exchange, raw, readEvents } from '../helpers.ts';

test('the reference flow over the fake API: create, status, list, proxy, delete', async (t) => {
  const { kube, service } = await setup(t);
  const url = service.url;
  assert.deepEqual((await call(url, 'GET', '/health')).body, { status: 'ok', version: VERSION });
  const created = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'u1', thread_id: 't1' });
  assert.equal(created.status, 201);
  assert.equal(created.body['status'], 'Pending');
  assert.match(String(created.body['sandbox_url']), /^http:\/\/host\.docker\.internal:3\d{4}$/);
  assert.equal((await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'u1', thread_id: 't1' })).status, 200);

  const notReady = await call(url, 'GET', '/sandboxes/u1/v1/sandbox', undefined, { 'x-sandbox-wait': '0' });
  assert.deepEqual([notReady.status, notReady.body['code'], notReady.headers.get('retry-after')], [503, 'sandbox_not_ready', '2']);
  const waiting = call(url, 'GET', '/api/sandboxes/u1?wait=5');
  kube.ready(NS, 'sandbox-u1');
  assert.equal((await waiting).body['status'], 'Running');

  const through = await call(url, 'POST', '/sandboxes/u1/v1/shell/exec', { command: 'echo hi' });
  assert.deepEqual(through.body['data'], {
    session_id: 'session-1',
    evicted_session: null,
    output: 'echo hi',
    exit_code: 0,
    sandbox_id: 'standin',
  });
  assert.equal((await call(url, 'GET', '/api/sandboxes?thread_id=t1&status=Running')).body['count'], 1);
  assert.equal((await call(url, 'GET', '/api/sandboxes?status=Pending')).body['count'], 0);
  assert.equal((await call(url, 'GET', '/api/sandboxes?status=Nope')).status, 422);

  assert.deepEqual((await call(url, 'DELETE', '/api/sandboxes/u1')).body, { ok: true, sandbox_id: 'u1' });
  assert.deepEqual([kube.list('pods', NS), kube.list('services', NS)], [[], []]);
  const gone = await call(url, 'GET', '/api/sandboxes/u1');
  assert.deepEqual([gone.status, gone.body['detail']], [404, "Sandbox 'u1' not found"]);
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /sandbox_provisioner_creates_total\{outcome="created"\} 1/);
  assert.match(metrics, /sandbox_provisioner_proxy_requests_total\{outcome="ok"\} 1/);
});

test('a request to a starting sandbox is held, and goes to the pod as soon as its app answers, before kubelet marks it Ready', async (t) => {
  const { kube, service } = await setup(t);
  const url = service.url;
  await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'early' });
  const started = Date.now();
  const held = call(url, 'GET', '/sandboxes/early/v1/sandbox');
  await new Promise((r) => setTimeout(r, 150));
  // The container runs (its app answers on the pod's address), but kubelet has not probed it yet.
  kube.setPodStatus(NS, 'sandbox-early', { phase: 'Running', podIP: '127.0.0.1' });
  const answer = await held;
  assert.equal(answer.status, 200);
  assert.ok(Date.now() - started < 2000, `answered ${Date.now() - started} ms after the request`);
  // Not Ready in Kubernetes yet, and Running for every reader: what DeerFlow's is_alive reads right after its poll.
  assert.equal(service.view.get('early')?.ready, false, 'kubelet has not marked it Ready');
  const status = await call(url, 'GET', '/api/sandboxes/early');
  assert.equal(status.body['status'], 'Running');
  assert.equal(typeof (status.body['timings'] as Record<string, unknown>)['app_answered_s'], 'number');
  const exec = await call(url, 'POST', '/sandboxes/early/v1/shell/exec', { command: 'ls' });
  assert.equal(exec.status, 200, 'the next request goes straight to the pod too');
  // Once kubelet has marked it Ready, kubelet's word alone counts: a readiness failure is Pending again.
  kube.ready(NS, 'sandbox-early');
  await service.view.waitFor('early', (r) => r?.ready === true, 2000);
  kube.setPodStatus(NS, 'sandbox-early', {
    conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: new Date().toISOString() }],
  });
  assert.equal((await service.view.waitFor('early', (r) => r?.ready === false, 2000))?.status, 'Pending');

  // A stuck sandbox is not held: it answers at once, with the reason.
  await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'stuck' });
  kube.setPodStatus(NS, 'sandbox-stuck', { containerStatuses: [{ name: 'sandbox', state: { waiting: { reason: 'ImagePullBackOff' } } }] });
  await service.view.waitFor('stuck', (r) => r?.reason === 'ImagePullBackOff', 2000);
  const stuckAt = Date.now();
  const stuck = await call(url, 'GET', '/sandboxes/stuck/v1/sandbox');
  assert.deepEqual([stuck.status, stuck.body['reason']], [503, 'ImagePullBackOff']);
  assert.ok(Date.now() - stuckAt < 1000);
});

test('errors are JSON with a code: bad bodies, unknown routes and methods, a refused create leaves nothing', async (t) => {
  const { kube, service } = await setup(t);
  const url = service.url;
  const cases: [string, string, unknown, number, string][] = [
    ['POST', '/api/sandboxes', '{not json', 400, 'invalid_json'],
    ['POST', '/api/sandboxes', { sandbox_id: 'UPPER' }, 422, 'validation_failed'],
    ['GET', '/api/sandboxes/..%2fx', undefined, 400, 'invalid_sandbox_id'],
    ['GET', '/nope', undefined, 404, 'not_found'],
    ['PUT', '/api/sandboxes', undefined, 405, 'method_not_allowed'],
    ['POST', '/api/sandboxes/x/keepalive', undefined, 404, 'sandbox_not_found'],
    ['GET', '/api/sandboxes/x/events', undefined, 404, 'sandbox_not_found'],
  ];
  for (const [method, path, body, status, code] of cases) {
    const res = await call(url, method, path, body);
    assert.deepEqual([res.status, res.body['code']], [status, code], `${method} ${path}`);
  }
  kube.refuse('POST', /\/pods$/, 403, 'pods "sandbox-q" is forbidden: exceeded quota: compute-resources, requested: pods=1');
  const refused = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'q' });
  assert.deepEqual([refused.status, refused.body['code'], refused.body['object']], [429, 'quota_exceeded', 'pod']);
  assert.deepEqual(kube.list('services', NS), [], 'the service made with it was removed');
  const ready = await call(url, 'GET', '/readyz');
  assert.deepEqual([ready.status, ready.body['synced']], [200, true]);
  assert.equal((await call(url, 'GET', '/openapi.json')).body['openapi'], '3.1.0');
});

test('the API key guards /api/* and the plain proxy path; capability URLs and host routing need the capability', async (t) => {
  const { kube, service } = await setup(t, {
    PROVISIONER_API_KEY: 'k',
    PROVISIONER_ALLOW_ANONYMOUS: 'false',
    SANDBOX_URL_MODE: 'proxy',
    PROXY_HOST_SUFFIX: '.sb.test',
    PROXY_SIGNING_KEYS: 's'.repeat(32),
  });
  const url = service.url;
  const key = { 'x-api-key': 'k' };
  assert.equal((await call(url, 'GET', '/api/sandboxes')).status, 401);
  const created = await call(url, 'POST', '/api/sandboxes?wait=0', { sandbox_id: 'cap' }, key);
  kube.ready(NS, 'sandbox-cap');
  await service.view.waitFor('cap', (r) => r?.ready === true, 2000);
  const sandboxUrl = String(created.body['sandbox_url']);
  assert.match(sandboxUrl, new RegExp(`^${url}/s/cap\\.[A-Za-z0-9_-]{32}$`));
  assert.equal((await fetch(`${sandboxUrl}/v1/sandbox`)).status, 200, 'the capability URL alone is enough');
  assert.equal((await fetch(`${url}/s/cap.${'A'.repeat(32)}/v1/sandbox`)).status, 404, 'a wrong capability looks like no sandbox');
  assert.equal((await fetch(`${url}/sandboxes/cap/v1/sandbox`)).status, 404, 'the plain path without the key');
  assert.equal((await fetch(`${url}/sandboxes/cap/v1/sandbox`, { headers: key })).status, 200);

  const token = String(created.body['sandbox_token']);
  const first = await raw(url, 'GET', `/vnc/index.html?sandbox_token=${token}`, { host: 'cap.sb.test' });
  assert.equal(first.status, 302);
  assert.equal(first.headers['location'], '/vnc/index.html');
  const cookie = String(first.headers['set-cookie']).split(';')[0] ?? '';
  const page = await raw(url, 'GET', '/vnc/index.html', { host: 'cap.sb.test', cookie });
  assert.equal(page.status, 200);
  assert.match(page.body, /noVNC/);
  assert.equal((await raw(url, 'GET', '/vnc/index.html', { host: 'cap.sb.test' })).status, 404);

  const ws = new WebSocket(`${sandboxUrl.replace('http', 'ws')}/v1/shell/ws`);
  await new Promise((ok, fail) => ws.once('open', ok).once('error', fail));
  ws.send('ping');
  const echo = await new Promise<string>((ok) => ws.once('message', (data) => ok(String(data))));
  assert.equal(echo, 'ping');
  ws.close();
});

test('event streams: a sandbox’s transitions end with its deletion; the dashboard feed has a snapshot then changes', async (t) => {
  const { kube, service } = await setup(t);
  const url = service.url;
  await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'ev' });
  const feed = await fetch(`${url}/api/events`);
  const snapshot = readEvents(feed, (e) => e.event === 'change' && (e.data['status'] as string) === 'Running');
  const res = await fetch(`${url}/api/sandboxes/ev/events`);
  const events = readEvents(res);
  kube.ready(NS, 'sandbox-ev');
  const seen = await snapshot;
  assert.equal(seen[0]?.event, 'snapshot');
  await service.view.waitFor('ev', (r) => r?.status === 'Running', 2000);
  await call(url, 'DELETE', '/api/sandboxes/ev');
  const seenEvents = (await events).map((e) => [e.event, e.data['status'] ?? null]);
  assert.deepEqual(seenEvents.slice(0, 2), [
    ['status', 'Pending'],
    ['status', 'Running'],
  ]);
  assert.deepEqual(seenEvents.at(-1), ['deleted', null], 'the stream ends with the deletion (after Running, ServiceMissing)');
  const page = await fetch(`${url}/ui/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'/);
});

test('housekeeping: an orphaned service is removed, a missing owner reference is set', async (t) => {
  const { kube, service } = await setup(t, { RECONCILE_GRACE_SECONDS: '0' });
  const labels = (id: string) => ({ app: 'deer-flow-sandbox', 'sandbox-id': id });
  kube.put('services', NS, { metadata: { name: 'sandbox-orphan-svc', labels: labels('orphan') }, spec: { type: 'ClusterIP' } });
  kube.put('pods', NS, { metadata: { name: 'sandbox-owned', labels: labels('owned') } });
  kube.put('services', NS, { metadata: { name: 'sandbox-owned-svc', labels: labels('owned') }, spec: { type: 'ClusterIP' } });
  await service.view.waitFor('owned', (r) => r?.hasService === true, 1000);
  await service.housekeeping();
  assert.equal(kube.get('services', NS, 'sandbox-orphan-svc'), undefined);
  assert.equal(
    kube.get('services', NS, 'sandbox-owned-svc')?.metadata.ownerReferences?.[0]?.uid,
    kube.get('pods', NS, 'sandbox-owned')?.metadata.uid,
  );
});

test('HTTP details: 401 with a challenge, HEAD and OPTIONS, 431, /ui and ETags; request ids on the lines a request causes', async (t) => {
  const logs = captureLogs();
  const { service } = await setup(t, { PROVISIONER_API_KEY: 'k', PROVISIONER_ALLOW_ANONYMOUS: 'false' }, { log: logs.log });
  const url = service.url;
  const denied = await raw(url, 'GET', '/api/sandboxes');
  assert.deepEqual([denied.status, denied.headers['www-authenticate']], [401, 'Bearer realm="sandbox-provisioner"']);
  const options = await raw(url, 'OPTIONS', '/api/sandboxes/abc', { 'x-api-key': 'k' });
  assert.deepEqual([options.status, options.headers['allow']], [204, 'GET, DELETE, HEAD, OPTIONS']);
  const head = await raw(url, 'HEAD', '/api/sandboxes', { 'x-api-key': 'k' });
  assert.deepEqual([head.status, head.body], [200, '']);
  const notAllowed = await raw(url, 'PUT', '/api/sandboxes', { 'x-api-key': 'k' });
  assert.deepEqual([notAllowed.status, notAllowed.headers['allow']], [405, 'GET, POST, HEAD, OPTIONS']);
  const big = await raw(url, 'GET', '/health', { 'x-big': 'a'.repeat(20_000) }).catch((err: Error) => ({ status: 0, err }));
  assert.equal(big.status, 431);
  const ui = await raw(url, 'GET', '/ui');
  assert.deepEqual([ui.status, ui.headers['location']], [302, '/ui/']);
  const page = await raw(url, 'GET', '/ui/app.js');
  const etag = String(page.headers['etag']);
  assert.match(etag, /^"[\w-]{22}"$/);
  assert.equal((await raw(url, 'GET', '/ui/app.js', { 'if-none-match': etag })).status, 304);

  await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'rid' }, { 'x-api-key': 'k', 'x-request-id': 'trace-42' });
  const created = logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'sandbox created');
  assert.equal(created?.['req_id'], 'trace-42', 'the line a request causes carries its id');
});

test('WebSocket sessions through the proxy are counted and logged at their close, without the capability', async (t) => {
  const logs = captureLogs();
  const { kube, service } = await setup(t, { SANDBOX_URL_MODE: 'proxy', PROXY_SIGNING_KEYS: 's'.repeat(32) }, { log: logs.log });
  const created = await call(service.url, 'POST', '/api/sandboxes', { sandbox_id: 'ws' });
  kube.ready(NS, 'sandbox-ws');
  await service.view.waitFor('ws', (r) => r?.ready === true, 2000);
  const ws = new WebSocket(`${String(created.body['sandbox_url']).replace('http', 'ws')}/v1/shell/ws`);
  await new Promise((ok, fail) => ws.once('open', ok).once('error', fail));
  ws.send('ping');
  await new Promise((ok) => ws.once('message', ok));
  ws.close();
  const closed = await eventually('the session is logged', () =>
    logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'websocket session closed'),
  );
  assert.equal(closed['sandbox_id'], 'ws');
  assert.equal(closed['path'], '/v1/shell/ws');
  assert.ok(Number(closed['bytes_in']) > 0 && Number(closed['bytes_out']) > 0);
  assert.equal(JSON.stringify(logs.lines).includes(String(created.body['sandbox_token'])), false, 'no capability in the log');
  const metrics = await (await fetch(`${service.url}/metrics`)).text();
  assert.match(metrics, /sandbox_provisioner_proxy_websocket_sessions_total\{event="opened"\} 1/);
  assert.match(metrics, /sandbox_provisioner_proxy_websocket_sessions_total\{event="closed"\} 1/);
});

test('a request with a body to a sandbox that has just turned Ready waits for its port, not a 502', async (t) => {
  // The port is free now and taken a moment later: the node port of a real cluster, programmed after Ready.
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      resolve((s.address() as AddressInfo).port);
      s.close();
    });
  });
  const { kube, service } = await setup(t, { SANDBOX_CONTAINER_PORT: String(port) });
  await call(service.url, 'POST', '/api/sandboxes', { sandbox_id: 'late' });
  kube.ready(NS, 'sandbox-late');
  await service.view.waitFor('late', (r) => r?.ready === true, 2000);
  const exec = call(service.url, 'POST', '/sandboxes/late/v1/shell/exec', { command: 'ls' });
  await new Promise((r) => setTimeout(r, 200));
  const app = await startStandin({ namespace: NS, pod: 'late', sandboxId: 'late' }, port);
  t.after(() => {
    app.closeAllConnections();
    app.close();
  });
  assert.equal((await exec).status, 200);
});

test('an error answered before the body was read ends the connection: a stalled body holds no socket', async (t) => {
  const { service } = await setup(t);
  for (const head of [
    'POST /api/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n',
    'POST /sandboxes/nobody/v1/file/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n',
  ]) {
    const answer = await exchange(service.url, `${head}0123456789`, 5000);
    assert.match(answer.text, /^HTTP\/1\.1 4(15|04) /, head);
    assert.match(answer.text, /\r\nconnection: close\r\n/i);
    assert.ok(answer.closed, `closed: ${head}`);
  }
});
