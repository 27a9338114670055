// A hostile or unlucky day: what an attacker or a broken client sends, and what the service must still
// answer. Each test here failed before the fix it names.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { loadConfig } from '../../src/config.ts';
import { validate } from '../../src/http/input.ts';
import { createRequestSchema, toSandboxRequest } from '../../src/api/request.ts';
import { createBody, MAX_ANSWER_BYTES } from '../arbitraries.ts';
import { admin, call, captureLogs, eventually, exchange, namespace, objectsIn, provisioner } from '../helpers.ts';

const jsonBody = (raw: string): Record<string, unknown> => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;

test('a 63 KB body of 21,000 bad extra mounts gets a small answer at once (it got 9.2 MB), eight at once too', async (t) => {
  const ns = await namespace(t, 'dos');
  const p = await provisioner(t, ns, { EXTRA_MOUNTS_BASE_DIR: '/srv' });
  const body = JSON.stringify({ sandbox_id: 'a', extra_mounts: Array.from({ length: 21_000 }, () => ({})) });
  assert.ok(body.length < 64 * 1024, 'within MAX_BODY_BYTES');
  await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'a', extra_mounts: [{}] }); // warm-up: the first validation compiles
  const started = performance.now();
  const res = await fetch(`${p.url}/api/sandboxes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const text = await res.text();
  const ms = performance.now() - started;
  assert.equal(res.status, 422);
  assert.equal((JSON.parse(text) as { code: string }).code, 'validation_failed');
  assert.ok(text.length < 2048, `the answer has ${text.length} bytes`);
  assert.ok(ms < 500, `the answer took ${ms.toFixed(0)} ms`);
  t.diagnostic(`21,000 bad mounts: ${text.length} bytes in ${ms.toFixed(1)} ms`);

  const answers = await Promise.all(
    Array.from({ length: 8 }, () =>
      fetch(`${p.url}/api/sandboxes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then((r) => r.text()),
    ),
  );
  assert.ok(
    answers.every((a) => a.length < 2048),
    'every answer is small',
  );

  // Other ways to make the answer large: a key of 60 KB, many issues, a long unknown path.
  const hugeKey = JSON.stringify({
    sandbox_id: 'a',
    extra_mounts: [{ ['k'.repeat(60_000)]: 1, host_path: '/srv/x', container_path: '/mnt/acp-workspace' }],
  });
  const manyIssues = JSON.stringify({
    sandbox_id: 7,
    thread_id: 7,
    user_id: 7,
    include_legacy_skills: 7,
    provision_lark_cli_runtime: 7,
    provision_lark_cli_broker: 7,
    ttl_seconds: 'x',
    extra_mounts: Array.from({ length: 10 }, () => ({})),
  });
  for (const [name, payload] of [
    ['a 60 KB key', hugeKey],
    ['many issues', manyIssues],
  ] as const) {
    const r = await call(p.url, 'POST', '/api/sandboxes', payload);
    assert.equal(r.status, 422, name);
    assert.ok(JSON.stringify(r.body).length < 4096, `${name}: ${JSON.stringify(r.body).length} bytes`);
  }
  const many = await call(p.url, 'POST', '/api/sandboxes', manyIssues);
  assert.equal((many.body['detail'] as unknown[]).length, 10, 'at most 10 issues are listed');
  assert.ok(Number(many.body['more_errors']) > 0, 'and the rest are counted');
  const longPath = await call(p.url, 'GET', `/x/${'a'.repeat(15_000)}`);
  assert.equal(longPath.status, 404);
  assert.ok(JSON.stringify(longPath.body).length < 2100);
  assert.deepEqual(await objectsIn(ns), { pods: [], services: [] });
});

test('a POST through the proxy is counted once as ok, with its bytes, and logs no warning', async (t) => {
  const ns = await namespace(t, 'acct');
  const { log, lines } = captureLogs();
  const p = await provisioner(t, ns, {}, { log });
  assert.equal((await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'acct' })).body['status'], 'Running');
  const command = JSON.stringify({ command: `echo ${'x'.repeat(5000)}` });
  const before = lines.length;
  const res = await fetch(`${p.url}/sandboxes/acct/v1/shell/exec`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: command,
  });
  assert.equal(res.status, 200);
  await res.text();
  const metrics = await (await fetch(`${p.url}/metrics`)).text();
  const value = (name: string): number => Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1] ?? 0);
  assert.equal(value('sandbox_provisioner_proxy_requests_total{outcome="ok"}'), 1);
  assert.doesNotMatch(metrics, /^sandbox_provisioner_proxy_requests_total\{outcome="(?!ok)/m, 'no other outcome');
  assert.doesNotMatch(metrics, /^sandbox_provisioner_proxy_upstream_errors_total\{/m, 'no upstream error');
  assert.ok(value('sandbox_provisioner_proxy_bytes_total{direction="in"}') >= command.length, 'the body is counted');
  assert.ok(value('sandbox_provisioner_proxy_bytes_total{direction="out"}') > 0);
  const warnings = lines.slice(before).filter((l) => (JSON.parse(l) as { level: number }).level >= 40);
  assert.deepEqual(warnings, []);
});

test('slow bodies: an API body trickled past REQUEST_BODY_TIMEOUT_SECONDS gets 408; a stalled proxied upload too', async (t) => {
  const ns = await namespace(t, 'slow');
  const p = await provisioner(t, ns, { REQUEST_BODY_TIMEOUT_SECONDS: '1', PROXY_IDLE_TIMEOUT_SECONDS: '1' });
  const api = await exchange(
    p.url,
    'POST /api/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"sandbox_id":',
  );
  assert.ok(api.closed, 'the connection is closed (before: held open past 75 s)');
  assert.match(api.text, /^HTTP\/1\.1 408 /);
  assert.equal(jsonBody(api.text)['code'], 'request_timeout');
  assert.ok(api.ms < 5000, `closed after ${api.ms.toFixed(0)} ms`);

  assert.equal((await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'up' })).body['status'], 'Running');
  const upload = await exchange(
    p.url,
    'POST /sandboxes/up/v1/file/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n0123456789',
  );
  assert.ok(upload.closed, `a stalled upload is cut; got ${JSON.stringify(upload.text.slice(0, 300))}`);
  assert.match(upload.text, /^HTTP\/1\.1 408 /);
  assert.ok(upload.ms < 5000, `closed after ${upload.ms.toFixed(0)} ms`);
  assert.match(await (await fetch(`${p.url}/metrics`)).text(), /sandbox_provisioner_proxy_requests_total\{outcome="client_timeout"\} 1/);
  // A slow but moving upload is not cut: 10 chunks, 300 ms apart (3 s in all, the idle timeout is 1 s).
  const moving = await new Promise<number>((resolve, reject) => {
    const { hostname, port } = new URL(p.url);
    const socket = connect(Number(port), hostname);
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString();
      if (/\r\n\r\n[\s\S]*\}$/.test(text)) resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]));
    });
    socket.on('error', reject);
    socket.write(
      'POST /sandboxes/up/v1/file/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n',
    );
    let i = 0;
    const tick = setInterval(() => {
      socket.write('0123456789');
      if (++i === 10) clearInterval(tick);
    }, 300);
    t.after(() => {
      clearInterval(tick);
      socket.destroy();
    });
  });
  assert.equal(moving, 200);
});

test('MAX_CONNECTIONS: one connection more is answered 503 server_busy, and served again once some close', async (t) => {
  const ns = await namespace(t, 'conns');
  const p = await provisioner(t, ns, { MAX_CONNECTIONS: '3' });
  const { hostname, port } = new URL(p.url);
  const held = await Promise.all(
    Array.from(
      { length: 3 },
      () =>
        new Promise<ReturnType<typeof connect>>((ok) => {
          const s = connect(Number(port), hostname, () => ok(s));
        }),
    ),
  );
  t.after(() => held.forEach((s) => s.destroy()));
  await new Promise((r) => setTimeout(r, 100)); // the server has accepted them
  const busy = await exchange(p.url, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.match(busy.text, /^HTTP\/1\.1 503 /);
  assert.match(busy.text, /retry-after: 1/i);
  assert.equal(jsonBody(busy.text)['code'], 'server_busy');
  held.forEach((s) => s.destroy());
  await eventually('served again', async () =>
    (await exchange(p.url, 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).text.startsWith('HTTP/1.1 200')
      ? true
      : undefined,
  );
});

test('a service that lost its owner reference (a crash before the PATCH) gets it back from the reconciler', async (t) => {
  const ns = await namespace(t, 'owner');
  const kube = admin();
  const p = await provisioner(t, ns, { RECONCILE_GRACE_SECONDS: '0' });
  assert.equal((await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'own' })).status, 201);
  const podUid = (await kube.get(`/api/v1/namespaces/${ns}/pods/sandbox-own`)).metadata.uid;
  const svcPath = `/api/v1/namespaces/${ns}/services/sandbox-own-svc`;
  await eventually('owner reference set at create', async () =>
    (await kube.get(svcPath)).metadata.ownerReferences?.[0]?.uid === podUid ? true : undefined,
  );
  await kube.mergePatch(svcPath, { metadata: { ownerReferences: null } });
  await eventually('the view sees it gone', () => (p.view.get('own')?.serviceOwnerUid === undefined ? true : undefined));
  await p.housekeeping();
  assert.equal((await kube.get(svcPath)).metadata.ownerReferences?.[0]?.uid, podUid, 'the reconciler set it again');
});

test('X-Forwarded-Host/-Proto make the proxy-mode sandbox_url only when a TRUSTED_PROXIES peer sends them', async (t) => {
  const ns = await namespace(t, 'fwd');
  const p = await provisioner(t, ns, { SANDBOX_URL_MODE: 'proxy' });
  assert.equal((await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'fw' })).status, 201);
  const forged = { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' };
  assert.match(
    String((await call(p.url, 'GET', '/api/sandboxes/fw', undefined, forged)).body['sandbox_url']),
    new RegExp(`^${p.url}/s/fw\\.`),
  );
  const behind = await provisioner(t, ns, { SANDBOX_URL_MODE: 'proxy', TRUSTED_PROXIES: '10.0.0.0/8,127.0.0.0/8' });
  await eventually('the second replica sees it', () => behind.view.get('fw'));
  const trusted = await call(behind.url, 'GET', '/api/sandboxes/fw', undefined, {
    'x-forwarded-host': 'sandboxes.example.com',
    'x-forwarded-proto': 'https',
  });
  assert.match(String(trusted.body['sandbox_url']), /^https:\/\/sandboxes\.example\.com\/s\/fw\./);
});

test('an HTTP/1.1 request without Host gets a JSON 400; with a key set, unknown /api/* paths answer 401 before 404', async (t) => {
  const ns = await namespace(t, 'hostauth');
  const p = await provisioner(t, ns, { PROVISIONER_API_KEY: 'k' });
  const noHost = await exchange(p.url, 'GET /health HTTP/1.1\r\nConnection: close\r\n\r\n');
  assert.match(noHost.text, /^HTTP\/1\.1 400 /);
  assert.equal(jsonBody(noHost.text)['code'], 'invalid_request');
  assert.equal((await call(p.url, 'GET', '/api/nothing')).status, 401, 'route names cannot be probed without the key');
  assert.equal((await call(p.url, 'GET', '/api/nothing', undefined, { 'x-api-key': 'k' })).status, 404);
});

test('property: arbitrary refused bodies, bytes and path ids never get a 5xx (but DeerFlow 2.1’s 503 for a Lark broker not configured) or a large answer, and create nothing', async (t) => {
  const ns = await namespace(t, 'prop');
  const p = await provisioner(t, ns, { EXTRA_MOUNTS_BASE_DIR: '/srv/state' });
  const config = loadConfig({ EXTRA_MOUNTS_BASE_DIR: '/srv/state' });
  const refused = (body: unknown): boolean => {
    try {
      toSandboxRequest(validate(createRequestSchema, body), config);
      return false;
    } catch {
      return true;
    }
  };
  const check = async (res: Response, what: string): Promise<void> => {
    const text = await res.text();
    // 4xx, or DeerFlow 2.1's own 503 for a Lark broker this provisioner is not configured with.
    const contract503 = res.status === 503 && text.includes('"lark_broker_not_configured"');
    assert.ok((res.status >= 400 && res.status < 500) || contract503, `${what}: ${res.status} ${text.slice(0, 200)}`);
    assert.ok(text.length <= MAX_ANSWER_BYTES, `${what}: an answer of ${text.length} bytes`);
    assert.equal(typeof (JSON.parse(text) as { code?: unknown }).code, 'string', what);
  };
  const post = (body: string | Uint8Array) =>
    fetch(`${p.url}/api/sandboxes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  await fc.assert(
    fc.asyncProperty(createBody.filter(refused), async (body) =>
      check(await post(JSON.stringify(body) ?? 'null'), JSON.stringify(body)?.slice(0, 200) ?? 'undefined'),
    ),
    { numRuns: 150 },
  );
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ minLength: 1, maxLength: 2000 }).filter((b) => {
        try {
          return refused(JSON.parse(Buffer.from(b).toString('utf8')));
        } catch {
          return true;
        }
      }),
      async (bytes) => check(await post(bytes), `bytes ${Buffer.from(bytes).toString('hex').slice(0, 80)}`),
    ),
    { numRuns: 100 },
  );
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: 'binary', minLength: 1, maxLength: 80 }), fc.constantFrom('GET', 'DELETE'), async (raw, method) => {
      const res = await fetch(`${p.url}/api/sandboxes/${encodeURIComponent(raw)}`, { method });
      const text = await res.text();
      assert.ok(res.status < 500, `${method} ${JSON.stringify(raw)}: ${res.status} ${text.slice(0, 200)}`);
      assert.ok(text.length <= MAX_ANSWER_BYTES);
    }),
    { numRuns: 150 },
  );
  assert.deepEqual(await objectsIn(ns), { pods: [], services: [] });
});
