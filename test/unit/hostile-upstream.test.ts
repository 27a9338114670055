// What a sandbox that replaced its app with a server of its own can do through the proxy (the
// adversarial probe of issue 30). Each test failed on the proxy before its redesign: the forged answer
// reached the other sandbox's client, the aborted waiter held the queue, the unanswered upgrade kept its
// sockets, the node's clock decided the retries, the capability went to the sandbox.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { test } from 'node:test';
import { call } from '../helpers.ts';
import {
  FORGED,
  FORGED_BODY,
  hostileUpstream,
  keepAliveClient,
  LazyClient,
  neverAnswering,
  UPGRADE_TO_EVIL,
  through,
  twoSandboxes,
  upstreamPort,
} from '../hostile-upstream.ts';
import { NS, setup } from '../service-harness.ts';

const SHORT = { PROXY_READ_TIMEOUT_SECONDS: '2', PROXY_IDLE_TIMEOUT_SECONDS: '2', PROXY_CONNECT_TIMEOUT_SECONDS: '1' };

/** Bytes of a chunked body holding `text` in one chunk. */
const chunked = (text: string): string => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n0\r\n\r\n`;

test('finding 1: a sandbox cannot slip a forged answer into the next request on the client connection', async (t) => {
  const { kube, service, upstream } = await setup(t, SHORT);
  const evil = await hostileUpstream(t, upstreamPort(upstream));
  await twoSandboxes(kube, service);
  const cases: [string, string[], boolean][] = [
    [
      'Content-Length: 5 with a chunked body holding a whole answer',
      [`HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(`hello${FORGED}`)}`],
      false,
    ],
    [
      'Content-Length: 100 with a 5-byte chunked body, kept open',
      [`HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n${chunked('hello')}`],
      false,
    ],
    [
      'Content-Length: 5, then a whole answer read until close',
      [`HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello${FORGED}`],
      true,
    ],
    [
      'Content-Length: 5, then a whole answer on a kept-alive connection',
      [`HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello${FORGED}`],
      false,
    ],
    ['no length, read until close, holding a whole answer', [`HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello${FORGED}`], true],
    ['two different Content-Lengths', [`HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 80\r\n\r\nhello${FORGED}`], true],
  ];
  for (const [name, writes, close] of cases) {
    evil.script = { writes, close };
    for (const client of [new LazyClient(service.url), keepAliveClient(service.url)]) {
      const get = (path: string) => (client instanceof LazyClient ? client.get(path) : through(client, path));
      const first = await get('/sandboxes/evil/v1/x');
      const next = await get('/sandboxes/good/v1/sandbox');
      await client.close();
      assert.ok(!('status' in next) || !next.body.includes(FORGED_BODY), `${name}: the next answer is not the forged one`);
      assert.ok(
        'status' in next && next.status === 200 && next.body.includes('1.0.0-standin'),
        `${name}: the good sandbox answered (${JSON.stringify(next)})`,
      );
      if ('status' in first && first.status === 200)
        assert.ok(first.body === 'hello' || first.body === `hello${FORGED}`, `${name}: ${first.body}`);
    }
  }
  assert.equal((await call(service.url, 'GET', '/health')).status, 200);
});

test('finding 3: a queued request that is aborted does not take the next free connection from the one behind it', async (t) => {
  const { kube, service } = await setup(t, { PROXY_CONNECTIONS_PER_SANDBOX: '1' });
  await call(service.url, 'POST', '/api/sandboxes?wait=0', { sandbox_id: 'busy' });
  kube.ready(NS, 'sandbox-busy');
  await service.view.waitFor('busy', (r) => r?.ready === true, 2000);
  const holder = fetch(`${service.url}/sandboxes/busy/v1/slow?ms=300`);
  await new Promise((r) => setTimeout(r, 50));
  const aborted = new AbortController();
  const queued = fetch(`${service.url}/sandboxes/busy/v1/slow?ms=1`, { signal: aborted.signal }).catch(() => 'aborted');
  await new Promise((r) => setTimeout(r, 50));
  aborted.abort();
  assert.equal(await queued, 'aborted');
  const started = performance.now();
  const behind = await fetch(`${service.url}/sandboxes/busy/v1/slow?ms=1`);
  assert.equal(behind.status, 200);
  assert.equal((await holder).status, 200);
  // It waits for the holder (300 ms) and no more; before, it waited for the aborted request's timeout (30 s).
  assert.ok(performance.now() - started < 10_000, `answered after ${Math.round(performance.now() - started)} ms`);
});

test('finding 5: a client that leaves an upgrade the sandbox never answers takes the upstream socket with it (its 504: test/integration/hostile-upstream.test.ts)', async (t) => {
  const { evil, address: u } = await neverAnswering(t, SHORT);

  // 20 clients that give up after 100 ms: none of their upstream sockets stays.
  for (let i = 0; i < 20; i++) {
    const s = connect(Number(u.port), u.hostname, () => s.write(UPGRADE_TO_EVIL));
    s.on('error', () => undefined);
    setTimeout(() => s.destroy(), 100);
  }
  await waitUntil(() => evil.heads.length >= 20, 'the 20 upgrades reached the sandbox');
  await waitUntil(() => evil.open.size === 0, 'every abandoned upgrade closed its upstream socket');
});

test('finding 6: "just Ready" is the view\'s own clock, not the node\'s: skew neither delays refusals nor skips the wait for the port', async (t) => {
  let offset = 0;
  const { kube, service, upstream } = await setup(t, {}, { now: () => Date.now() + offset });
  const port = upstreamPort(upstream);
  const hour = 3600_000;

  // The node's clock an hour ahead, nothing listening at the pod's address: past the window (by the
  // view's clock), a refusal is answered at once. Before, every such request was retried for 3 s.
  await call(service.url, 'POST', '/api/sandboxes?wait=0', { sandbox_id: 'ahead' });
  kube.ready(NS, 'sandbox-ahead', '127.0.0.3', new Date(Date.now() + hour));
  await service.view.waitFor('ahead', (r) => r?.ready === true, 2000);
  offset = 10_000;
  const started = performance.now();
  const refused = await call(service.url, 'GET', '/sandboxes/ahead/v1/sandbox');
  assert.equal(refused.status, 502);
  assert.ok(performance.now() - started < 1500, `a refusal past the window answered after ${Math.round(performance.now() - started)} ms`);
  offset = 0;

  // The node's clock an hour behind, the app a moment late on its port: the request waits for it.
  await call(service.url, 'POST', '/api/sandboxes?wait=0', { sandbox_id: 'behind' });
  kube.ready(NS, 'sandbox-behind', '127.0.0.4', new Date(Date.now() - hour));
  await service.view.waitFor('behind', (r) => r?.ready === true, 2000);
  const answer = call(service.url, 'GET', '/sandboxes/behind/v1/sandbox');
  await new Promise((r) => setTimeout(r, 150));
  const late = createServer((_req, res) => res.end('{"late":true}')).listen(port, '127.0.0.4');
  t.after(() => void late.close());
  assert.equal((await answer).status, 200);
});

test('finding 7: X-Forwarded-Prefix never carries a capability; two Host headers are a 400', async (t) => {
  const { kube, service } = await setup(t, { SANDBOX_URL_MODE: 'proxy', PROXY_SIGNING_KEYS: 's'.repeat(32) });
  const created = await call(service.url, 'POST', '/api/sandboxes?wait=0', { sandbox_id: 'cap' });
  kube.ready(NS, 'sandbox-cap');
  await service.view.waitFor('cap', (r) => r?.ready === true, 2000);
  const path = new URL(String(created.body['sandbox_url'])).pathname;
  const echo = await call(service.url, 'GET', `${path}/echo`);
  const headers = (echo.body['headers'] ?? {}) as Record<string, string>;
  assert.equal(echo.status, 200);
  assert.equal(headers['x-forwarded-prefix'], undefined, 'no prefix for a capability path');
  assert.ok(!JSON.stringify(echo.body).includes(String(created.body['sandbox_token'])), 'the capability reaches the sandbox nowhere');
  const plain = await call(service.url, 'GET', '/sandboxes/cap/echo');
  assert.equal(((plain.body['headers'] ?? {}) as Record<string, string>)['x-forwarded-prefix'], '/sandboxes/cap');

  const u = new URL(service.url);
  for (const request of [
    'GET /sandboxes/cap/echo HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n',
    'GET /sandboxes/cap/ws HTTP/1.1\r\nHost: a\r\nhost: b\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
  ]) {
    const answer = await new Promise<string>((resolve) => {
      const s = connect(Number(u.port), u.hostname, () => s.write(request));
      let got = '';
      s.on('data', (d) => {
        got += d.toString();
        if (got.includes('\r\n\r\n')) s.destroy();
      });
      s.on('close', () => resolve(got));
    });
    assert.match(answer, /^HTTP\/1\.1 400 /, request);
  }
});

test('a deleted sandbox takes its upstream pools with it', async (t) => {
  const { kube, service } = await setup(t);
  const pools = async (): Promise<number> => {
    const text = await (await fetch(`${service.url}/metrics`)).text();
    return Number(/^sandbox_provisioner_proxy_upstream_pools (\d+)/m.exec(text)?.[1] ?? NaN);
  };
  for (const id of ['p1', 'p2', 'p3']) {
    await call(service.url, 'POST', '/api/sandboxes?wait=0', { sandbox_id: id });
    kube.ready(NS, `sandbox-${id}`);
    await service.view.waitFor(id, (r) => r?.ready === true, 2000);
    assert.equal((await call(service.url, 'GET', `/sandboxes/${id}/v1/sandbox`)).status, 200);
  }
  assert.equal(await pools(), 3);
  for (const id of ['p1', 'p2', 'p3']) assert.equal((await call(service.url, 'DELETE', `/api/sandboxes/${id}`)).status, 200);
  await waitUntil(async () => (await pools()) === 0, 'every pool closed');
});

async function waitUntil(check: () => boolean | Promise<boolean>, what: string, ms = 8000): Promise<void> {
  const until = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > until) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
