// The proxy against the real control plane and the fake node's stand-in sandbox.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as rawRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import WebSocket from 'ws';
import { call, eventually, namespace, provisioner, raw, setBehavior, spawnProvisioner } from '../helpers.ts';

async function ready(t: Parameters<typeof provisioner>[0], prefix: string, ids: string[], env: Record<string, string> = {}) {
  const ns = await namespace(t, prefix);
  const p = await provisioner(t, ns, env);
  const urls: Record<string, string> = {};
  const auth: Record<string, string> = env['PROVISIONER_API_KEY'] ? { 'x-api-key': env['PROVISIONER_API_KEY'] } : {};
  for (const id of ids) {
    const res = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: id }, auth);
    assert.equal(res.body['status'], 'Running');
    urls[id] = String(res.body['sandbox_url']);
  }
  return { ns, p, urls };
}

test('GET and POST through the proxy equal the direct answers', async (t) => {
  const { p, urls } = await ready(t, 'proxy', ['pa']);
  for (const [method, path, body] of [
    ['GET', '/v1/sandbox', undefined],
    // In a named shell session (a command without one gets a new session, so two calls never answer alike).
    ['POST', '/v1/shell/exec', JSON.stringify({ command: 'echo hi', id: 'same' })],
    ['GET', '/missing/thing?x=1', undefined],
  ] as const) {
    const headers: Record<string, string> = body ? { 'content-type': 'application/json' } : {};
    const direct = await raw(urls['pa'] ?? '', method, path, headers, body);
    const proxied = await raw(p.url, method, `/sandboxes/pa${path}`, headers, body);
    assert.equal(proxied.status, direct.status, path);
    assert.equal(proxied.headers['content-type'], direct.headers['content-type'], path);
    if (path.startsWith('/missing')) {
      const d = JSON.parse(direct.body) as { url: string; method: string };
      const q = JSON.parse(proxied.body) as { url: string; method: string };
      assert.equal(q.url, '/missing/thing?x=1', 'forwarded as /<rest> with the query string');
      assert.equal(q.method, d.method);
    } else {
      assert.equal(proxied.body, direct.body, path);
    }
  }
});

test('headers: hop-by-hop and the API key stay behind; X-Forwarded-* are set; redirects stay under the prefix', async (t) => {
  const { p } = await ready(t, 'proxyhdr', ['ph'], { PROVISIONER_API_KEY: 'the-key' });
  const res = await raw(p.url, 'GET', '/sandboxes/ph/echo', {
    connection: 'keep-alive, x-hop',
    'x-hop': 'drop me',
    'keep-alive': 'timeout=5',
    te: 'trailers',
    'proxy-authorization': 'Basic abc',
    'x-api-key': 'the-key',
    authorization: 'Bearer the-key',
    'x-sandbox-wait': '1',
    'x-kept': 'yes',
  });
  assert.equal(res.status, 200);
  const seen = (JSON.parse(res.body) as { headers: Record<string, string> }).headers;
  for (const h of ['x-hop', 'keep-alive', 'te', 'proxy-authorization', 'x-api-key', 'authorization', 'x-sandbox-wait'])
    assert.equal(seen[h], undefined, h);
  assert.equal(seen['x-kept'], 'yes');
  assert.equal(seen['x-forwarded-prefix'], '/sandboxes/ph');
  assert.equal(seen['x-forwarded-proto'], 'http');
  assert.match(seen['x-forwarded-for'] ?? '', /127\.0\.0\.1/);
  assert.match(seen['x-forwarded-host'] ?? '', /^127\.0\.0\.1:\d+$/);
  const other = await raw(p.url, 'GET', '/sandboxes/ph/echo', { 'x-api-key': 'the-key', authorization: 'Bearer sandbox-own-token' });
  assert.equal(
    (JSON.parse(other.body) as { headers: Record<string, string> }).headers['authorization'],
    'Bearer sandbox-own-token',
    'a token that is not the provisioner key passes',
  );
  const redirect = await raw(p.url, 'GET', '/sandboxes/ph/v1/redirect?to=/v1/sandbox', { 'x-api-key': 'the-key' });
  assert.equal(redirect.status, 302);
  assert.equal(redirect.headers['location'], '/sandboxes/ph/v1/sandbox');
});

test('SSE: events written 200 ms apart arrive 200 ms apart', async (t) => {
  const { p } = await ready(t, 'proxysse', ['ps']);
  const res = await fetch(`${p.url}/sandboxes/ps/v1/stream?count=5&interval=200`, { headers: { accept: 'text/event-stream' } });
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const arrivals: number[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk);
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      buffer = buffer.slice(end + 2);
      arrivals.push(performance.now());
    }
  }
  assert.equal(arrivals.length, 5);
  const gaps = arrivals.slice(1).map((a, i) => a - (arrivals[i] ?? 0));
  for (const gap of gaps) assert.ok(gap > 120 && gap < 400, `events are not buffered: gaps ${gaps.map(Math.round).join(', ')} ms`);
});

test('WebSocket: text and binary echo both ways; closing either side closes the other', async (t) => {
  const { p } = await ready(t, 'proxyws', ['pw', 'pw2']);
  const ws = new WebSocket(`${p.url.replace('http', 'ws')}/sandboxes/pw/v1/shell/ws`);
  await new Promise((ok, fail) => ws.once('open', ok).once('error', fail));
  const next = () => new Promise<[Buffer, boolean]>((ok) => ws.once('message', (d, bin) => ok([d as Buffer, bin])));
  ws.send('ls -la');
  assert.deepEqual((await next()).map(String), ['ls -la', 'false']);
  ws.send(Buffer.from([0, 1, 2, 255]));
  const [bin, isBinary] = await next();
  assert.equal(isBinary, true);
  assert.deepEqual([...bin], [0, 1, 2, 255]);
  const closed = new Promise<number>((ok) => ws.once('close', ok));
  ws.close(1000);
  assert.ok([1000, 1005].includes(await closed));

  // The sandbox side goes away (pod deleted, its listener closes): the client's socket closes too.
  const ws2 = new WebSocket(`${p.url.replace('http', 'ws')}/sandboxes/pw2/v1/shell/ws`);
  await new Promise((ok, fail) => ws2.once('open', ok).once('error', fail));
  const closed2 = new Promise<number>((ok) => ws2.once('close', ok));
  await call(p.url, 'DELETE', '/api/sandboxes/pw2');
  await closed2;

  const unknown = await new Promise<number>((ok) => {
    const w = new WebSocket(`${p.url.replace('http', 'ws')}/sandboxes/nope/v1/shell/ws`);
    w.once('unexpected-response', (_req, res) => ok(res.statusCode ?? 0));
    w.once('error', () => ok(-1));
  });
  assert.equal(unknown, 404);
});

test('proxied downloads stream in memory that does not follow their size; a 200 MB upload arrives intact', async (t) => {
  const { ns } = await ready(t, 'proxybig', ['pb']);
  // The provisioner as its own process, as deployed, so its peak RSS (VmHWM) is its own.
  const { child, url: base } = await spawnProvisioner(t, ns);
  await eventually('view synced', async () => ((await call(base, 'GET', '/api/sandboxes/pb')).status === 200 ? true : undefined));
  const peakRss = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  const download = (bytes: number) =>
    new Promise<number>((ok, fail) => {
      rawRequest(`${base}/sandboxes/pb/v1/file/download?size=${bytes}`, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => ok(n));
      })
        .on('error', fail)
        .end();
    });
  // Memory must not follow the size of a stream. The first large stream grows the young generation and
  // external buffers once (GC warm-up), so it is a warm-up; then the peak after a 400 MiB stream is
  // compared with the peak after an 800 MiB one. A proxy that buffered even 15 % of what it streams
  // would add 60 MiB or more for the further 400 MiB; GC noise adds a few tens at most.
  const MiB = 1024 * 1024;
  const before = peakRss();
  const size = 200 * MiB;
  assert.equal(await download(size), size);
  const warm = peakRss();
  assert.ok(warm - before < size / MiB, `peak RSS grew by ${(warm - before).toFixed(1)} MiB while streaming 200 MiB: the proxy buffers`);
  assert.equal(await download(2 * size), 2 * size);
  const at400 = peakRss();
  assert.equal(await download(4 * size), 4 * size);
  const at800 = peakRss();
  const slope = (at800 - at400) / 400;
  assert.ok(slope < 0.15, `peak RSS follows the stream size: ${(at800 - at400).toFixed(1)} MiB more for 800 MiB than for 400 MiB`);
  t.diagnostic(
    `proxy peak RSS: +${(warm - before).toFixed(1)} MiB warm-up (200 MiB), then ${(at400 - warm).toFixed(1)} MiB for 400 MiB, ${(at800 - at400).toFixed(1)} MiB more for 800 MiB`,
  );

  const hash = createHash('sha256');
  const chunk = Buffer.alloc(1024 * 1024, 7);
  const upload = await new Promise<string>((ok, fail) => {
    const req = rawRequest(
      `${base}/sandboxes/pb/v1/file/upload`,
      { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': size } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => ok(text));
      },
    );
    req.on('error', fail);
    let i = 0;
    const write = (): void => {
      while (i < 200) {
        i += 1;
        hash.update(chunk);
        if (!req.write(chunk)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
  const result = (JSON.parse(upload) as { data: { bytes: number; sha256: string } }).data;
  assert.equal(result.bytes, size);
  assert.equal(result.sha256, hash.digest('hex'));
  assert.ok(
    peakRss() - at800 < 0.5 * (size / MiB),
    `a 200 MiB upload grew peak RSS by ${(peakRss() - at800).toFixed(1)} MiB: the proxy buffers uploads`,
  );
});

test('unknown 404, not ready 503 with Retry-After (or held until Ready), upstream gone 502, slow 504', async (t) => {
  const ns = await namespace(t, 'proxyerr');
  const p = await provisioner(t, ns, { PROXY_READ_TIMEOUT_SECONDS: '1' });
  const unknown = await raw(p.url, 'GET', '/sandboxes/nope/v1/sandbox');
  assert.equal(unknown.status, 404);
  assert.equal((JSON.parse(unknown.body) as { code: string }).code, 'sandbox_not_found');

  await setBehavior(ns, 'sandbox-stuck', 'never-ready');
  await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'stuck' });
  await eventually('stuck is Running-but-not-ready', async () =>
    (await call(p.url, 'GET', '/api/sandboxes/stuck')).body['reason'] === 'ContainersNotReady' ? true : undefined,
  );
  const notReady = await raw(p.url, 'GET', '/sandboxes/stuck/v1/sandbox', { 'x-sandbox-wait': '0' });
  assert.equal(notReady.status, 503);
  assert.equal(notReady.headers['retry-after'], '2');
  assert.equal((JSON.parse(notReady.body) as { code: string }).code, 'sandbox_not_ready');
  // By default a request to a starting sandbox is held (PROXY_WAIT_READY_SECONDS, 4 s): it ends before
  // DeerFlow's client gives up on a poll (5 s), with the reason.
  const heldStarted = Date.now();
  const heldThenRefused = await raw(p.url, 'GET', '/sandboxes/stuck/v1/sandbox');
  const heldFor = Date.now() - heldStarted;
  assert.equal(heldThenRefused.status, 503);
  assert.ok(heldFor >= 3900 && heldFor < 5000, `held ${heldFor} ms`);

  // Opt in to be held: the request answers when the sandbox turns Ready (driven by watch events).
  await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'late' });
  const held = await raw(p.url, 'GET', '/sandboxes/late/v1/sandbox', { 'x-sandbox-wait': '20' });
  assert.equal(held.status, 200);

  const slow = await raw(p.url, 'GET', '/sandboxes/late/v1/slow?ms=3000');
  assert.equal(slow.status, 504);
  assert.equal((JSON.parse(slow.body) as { code: string }).code, 'upstream_timeout');

  // Nothing listens at the upstream (and the app is not asked for directly: PROXY_EARLY_READY=false).
  const gone = await provisioner(t, ns, { PROXY_UPSTREAM_HOST: '127.0.0.2', PROXY_EARLY_READY: 'false' });
  await gone.view.waitFor('late', (r) => r?.ready === true, 10_000);
  const refused = await raw(gone.url, 'GET', '/sandboxes/late/v1/sandbox');
  assert.equal(refused.status, 502, refused.body);
  assert.equal((JSON.parse(refused.body) as { code: string }).code, 'upstream_unreachable');
});

test('traversal and encoded paths never reach another sandbox', async (t) => {
  const { p } = await ready(t, 'proxytrav', ['ta', 'tb']);
  const attempts = [
    '/sandboxes/ta/../tb/v1/sandbox',
    '/sandboxes/ta/%2e%2e/tb/v1/sandbox',
    '/sandboxes/ta%2f..%2ftb/v1/sandbox',
    '/sandboxes/%2e%2e/tb/v1/sandbox',
    '/sandboxes/..%2ftb/v1/sandbox',
    '/sandboxes/ta/..%2f..%2fsandboxes%2ftb/v1/sandbox',
    '/sandboxes/TB/v1/sandbox',
  ];
  for (const path of attempts) {
    const res = await raw(p.url, 'GET', path);
    if (res.status === 200) {
      const body = JSON.parse(res.body) as { sandbox_id?: string; data?: { sandbox_id?: string } };
      assert.notEqual(body.sandbox_id ?? body.data?.sandbox_id, 'tb', path);
    } else {
      assert.ok(res.status >= 400 && res.status < 500, `${path}: ${res.status}`);
    }
  }
});

test('proxy mode: sandbox_url points at the proxy and DeerFlow’s create → poll → exec flow works', async (t) => {
  const ns = await namespace(t, 'proxymode');
  const p = await provisioner(t, ns, { SANDBOX_URL_MODE: 'proxy' });
  const created = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'pm', thread_id: 'th' });
  const sandboxUrl = String(created.body['sandbox_url']);
  assert.match(sandboxUrl, new RegExp(`^${p.url}/s/pm\\.[A-Za-z0-9_-]{32}$`), 'a capability URL');
  await eventually(
    'sandbox answers through the proxy',
    async () => ((await fetch(`${sandboxUrl}/v1/sandbox`)).status === 200 ? true : undefined),
    20_000,
  );
  const exec = await fetch(`${sandboxUrl}/v1/shell/exec`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ command: 'python3 -V' }),
  });
  assert.equal(((await exec.json()) as { data: { output: string } }).data.output, 'python3 -V');
  const fixed = await provisioner(t, ns, { SANDBOX_URL_MODE: 'proxy', PUBLIC_URL: 'https://sandboxes.example.com/' });
  await eventually('the second replica sees it', () => fixed.view.get('pm'));
  assert.match(
    String((await call(fixed.url, 'GET', '/api/sandboxes/pm')).body['sandbox_url']),
    /^https:\/\/sandboxes\.example\.com\/s\/pm\.[A-Za-z0-9_-]{32}$/,
  );
});

test('PROXY_ENABLED=false: /sandboxes/* is 404 and nothing is proxied', async (t) => {
  const { p: off } = await ready(t, 'proxyoff', ['po'], { PROXY_ENABLED: 'false' });
  const res = await raw(off.url, 'GET', '/sandboxes/po/v1/sandbox');
  assert.equal(res.status, 404);
  assert.equal((JSON.parse(res.body) as { code: string }).code, 'not_found');
});
