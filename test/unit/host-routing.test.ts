// Host routing (PROXY_HOST_SUFFIX) against the second adversarial probe: the token redirect stays on
// its host, planted cookies cannot lock a user out, a sandbox cannot set cookies for its siblings,
// malformed escapes are not 500s, and an unknown id costs the same checks as a wrong capability. The
// last test fuzzes whole requests on a sandbox host (raw bytes on a socket, as a client may send them).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { syncBuiltinESMExports } from 'node:module';
import { mock, test } from 'node:test';
import fc from 'fast-check';
import { captureLogs, call, raw } from '../helpers.ts';
import { NS, setup } from '../service-harness.ts';

const KEY = { 'x-api-key': 'k' };

/** A sandbox app that sets cookies (one for the parent domain, one named like the proxy's) and echoes. */
const cookieApp = () =>
  createServer((req, res) => {
    if (req.url === '/set-cookie') {
      res.setHeader('set-cookie', ['theme=dark; Domain=.sb.test; Path=/', 'sandbox_token_bb=planted; Domain=.sb.test; Path=/']);
      return void res.end('set');
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, cookie: req.headers.cookie ?? null }));
  });

async function hostSetup(t: Parameters<typeof setup>[0]) {
  const logs = captureLogs();
  const { kube, service } = await setup(
    t,
    {
      PROVISIONER_API_KEY: 'k',
      PROVISIONER_ALLOW_ANONYMOUS: 'false',
      SANDBOX_URL_MODE: 'proxy',
      PROXY_HOST_SUFFIX: '.sb.test',
      PROXY_SIGNING_KEYS: 's'.repeat(32),
      LOG_LEVEL: 'info',
    },
    { log: logs.log, upstream: cookieApp() },
  );
  const tokens: Record<string, string> = {};
  for (const id of ['aa', 'bb']) {
    const created = await call(service.url, 'POST', '/api/sandboxes?wait=0', { sandbox_id: id }, KEY);
    kube.ready(NS, `sandbox-${id}`);
    await service.view.waitFor(id, (r) => r?.ready === true, 2000);
    tokens[id] = String(created.body['sandbox_token']);
  }
  const errors = () => logs.lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
  return { url: service.url, tokens, errors };
}

/** Sends bytes as they are (no client-side URL checks) and reads the status line and headers. */
function rawBytes(url: string, request: string): Promise<{ status: number; head: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname);
    let got = '';
    socket.on('data', (d) => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.destroy();
      resolve({ status: Number(got.slice(9, 12)), head: got.slice(0, end) });
    });
    socket.on('error', reject);
    socket.on('close', () => resolve({ status: Number(got.slice(9, 12)) || 0, head: got }));
    socket.write(request, 'latin1');
  });
}

test('the token redirect stays on the sandbox host: //evil and /\\evil are paths here', async (t) => {
  const { url, tokens } = await hostSetup(t);
  for (const [path, location] of [
    ['//evil.example/x', '/evil.example/x'],
    ['/\\evil.example/x', '/evil.example/x'],
    ['/.//evil.example/x', '/evil.example/x'],
  ] as const) {
    const got = await rawBytes(url, `GET ${path}?sandbox_token=${tokens['aa']} HTTP/1.1\r\nHost: aa.sb.test\r\n\r\n`);
    assert.equal(got.status, 302, path);
    assert.match(got.head, new RegExp(`\r\nlocation: ${location.replaceAll('.', '\\.')}\r\n`, 'i'), path);
    assert.match(got.head, /\r\nset-cookie: sandbox_token_aa=[A-Za-z0-9_-]{32}; Path=\/; HttpOnly; SameSite=Lax\r\n/i);
  }
});

test('planted cookies cannot lock a user out; a sandbox cannot set cookies for its siblings', async (t) => {
  const { url, tokens } = await hostSetup(t);
  const bb = { host: 'bb.sb.test' };
  // A's capability planted under B's cookie name (through the parent domain), before and after B's own.
  for (const cookie of [
    `sandbox_token_bb=${tokens['aa']}; sandbox_token_bb=${tokens['bb']}`,
    `sandbox_token_bb=${tokens['bb']}; sandbox_token_bb=${tokens['aa']}`,
    `sandbox_token=${tokens['aa']}; sandbox_token_bb=${tokens['bb']}`,
  ]) {
    const page = await raw(url, 'GET', '/echo', { ...bb, cookie: `a=1; ${cookie}` });
    assert.equal(page.status, 200, cookie);
    assert.equal(JSON.parse(page.body).cookie, 'a=1', 'no capability cookie reaches the sandbox');
  }
  const set = await raw(url, 'GET', '/set-cookie', { ...bb, cookie: `sandbox_token_bb=${tokens['bb']}` });
  assert.deepEqual(set.headers['set-cookie'], ['theme=dark; Path=/'], 'host-only, and none named like a capability cookie');
});

test('a stray % in a sandbox host query is forwarded as sent or refused, never a 500 or an error log', async (t) => {
  const { url, tokens, errors } = await hostSetup(t);
  const cookie = `sandbox_token_aa=${tokens['aa']}`;
  for (const query of ['?100%=1', '?a%ZZ=1', '?%', '?x=%E0%A4%A']) {
    const page = await raw(url, 'GET', `/echo${query}`, { host: 'aa.sb.test', cookie });
    assert.deepEqual([page.status, JSON.parse(page.body).url], [200, `/echo${query}`], query);
    assert.equal((await raw(url, 'GET', `/echo${query}`, { host: 'aa.sb.test' })).status, 404, `${query} without a capability`);
  }
  assert.equal((await raw(url, 'GET', '/echo?sandbox_token=%ZZ', { host: 'aa.sb.test' })).status, 404);
  assert.deepEqual(errors(), []);
});

test('an unknown id and a wrong capability for a real one do the same checks', async (t) => {
  const { url } = await hostSetup(t);
  const compares = mock.method(crypto, 'timingSafeEqual');
  const hmacs = mock.method(crypto, 'createHmac');
  syncBuiltinESMExports();
  t.after(() => {
    mock.restoreAll();
    syncBuiltinESMExports();
  });
  const work = async (path: string): Promise<[number, number, number]> => {
    const [c, h] = [compares.mock.callCount(), hmacs.mock.callCount()];
    const status = (await fetch(`${url}${path}`)).status;
    return [status, compares.mock.callCount() - c, hmacs.mock.callCount() - h];
  };
  const wrong = 'A'.repeat(32);
  const real = await work(`/s/aa.${wrong}/v1/sandbox`);
  const unknown = await work(`/s/zz.${wrong}/v1/sandbox`);
  assert.deepEqual(real, [404, 1, 0], 'a wrong capability: one compare, no HMAC (made when the sandbox was signed)');
  assert.deepEqual(unknown, real, 'an unknown id: the same');
});

test('fuzz: any request line, query and cookie on a sandbox host gets an answer below 500, and a redirect stays on the host', async (t) => {
  const { url, tokens, errors } = await hostSetup(t);
  const piece = fc.stringMatching(/^[a-zA-Z0-9%/\\.?&=;+_~!$'()*,:@-]{0,12}$/);
  const path = fc
    .array(fc.oneof(piece, fc.constantFrom('%', '%ZZ', '%2F', '//', '/\\', '/..', 'evil.example', '%00', '%E0%A4%A')), { maxLength: 6 })
    .map((parts) => `/${parts.join('')}`.replace(/[\s#]/g, ''));
  const token = fc.constantFrom(tokens['aa'] ?? '', tokens['bb'] ?? '', '%ZZ', '', 'A'.repeat(32));
  const query = fc.option(
    fc.tuple(piece, fc.option(token)).map(([q, t]) => `?${q}${t === null ? '' : `&sandbox_token=${t}`}`),
    { nil: '' },
  );
  const cookie = fc.option(
    fc
      .tuple(fc.constantFrom('sandbox_token', 'sandbox_token_aa', 'sandbox_token_bb', 'x'), token, piece)
      .map(([n, v, junk]) => `${n}=${v}; ${junk}`),
    { nil: undefined },
  );
  const host = fc.constantFrom('aa.sb.test', 'bb.sb.test', 'zz.sb.test', 'AA.SB.TEST:8080', '-.sb.test', 'a..sb.test');
  await fc.assert(
    fc.asyncProperty(path, query, cookie, host, async (p, q, c, h) => {
      const head = `GET ${p}${q} HTTP/1.1\r\nHost: ${h}\r\n${c === undefined ? '' : `Cookie: ${c}\r\n`}Connection: close\r\n\r\n`;
      const got = await rawBytes(url, head);
      assert.ok(got.status >= 200 && got.status < 500, `${got.status} for ${JSON.stringify(head)}`);
      const location = /\r\nlocation: ([^\r]*)/i.exec(got.head)?.[1];
      if (location !== undefined) assert.equal(new URL(location, `http://${h}`).host, h.toLowerCase(), `Location ${location}`);
    }),
    { numRuns: 300 },
  );
  assert.deepEqual(errors(), []);
});
