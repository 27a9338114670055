// The proxy's header policy (src/proxy/headers.ts), one for HTTP and WebSocket: what reaches the
// sandbox, what this proxy adds, and what of the sandbox's answer comes back.

import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { requestHeaders, responseHeaders, rewriteLocation, SANDBOX_DOCUMENT_CSP, sandboxSetCookie } from '../../src/proxy/headers.ts';
import { trustedPeers } from '../../src/http/forwarded.ts';

const request = (headers: Record<string, string>, remoteAddress = '10.96.0.9') =>
  ({ headers: { ...headers }, socket: { remoteAddress } }) as unknown as IncomingMessage;
const policy = { trusted: trustedPeers(['127.0.0.1']), apiKey: 'the-key' };

test('hop-by-hop headers, the API key, the wait header and the capability cookie stay behind', () => {
  const out = requestHeaders(
    request({
      host: 'provisioner:8002',
      connection: 'keep-alive, x-secret-hop',
      'x-secret-hop': '1',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      te: 'trailers',
      upgrade: 'h2c',
      'x-api-key': 'the-key',
      'x-sandbox-wait': '30',
      cookie: 'a=1; sandbox_token=cap; b=2',
      accept: 'application/json',
      'x-custom': 'kept',
    }),
    '/sandboxes/abc',
    policy,
  );
  assert.deepEqual(Object.keys(out).sort(), [
    'accept',
    'cookie',
    'x-custom',
    'x-forwarded-for',
    'x-forwarded-host',
    'x-forwarded-prefix',
    'x-forwarded-proto',
  ]);
  assert.equal(out['cookie'], 'a=1; b=2');
  assert.equal(out['x-forwarded-prefix'], '/sandboxes/abc');
  assert.equal(out['x-forwarded-host'], 'provisioner:8002');
});

test('Authorization passes unless it is the provisioner’s own key', () => {
  assert.equal(requestHeaders(request({ authorization: 'Bearer the-key' }), '', policy)['authorization'], undefined);
  assert.equal(
    requestHeaders(request({ authorization: 'Bearer the-sandbox-app-token' }), '', policy)['authorization'],
    'Bearer the-sandbox-app-token',
  );
});

test('X-Forwarded-* from anyone but a trusted proxy are replaced; from a trusted one, kept and appended to', () => {
  const spoofed = { 'x-forwarded-for': '1.2.3.4', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', host: 'p' };
  const untrusted = requestHeaders(request(spoofed), '', policy);
  assert.deepEqual(
    [untrusted['x-forwarded-for'], untrusted['x-forwarded-host'], untrusted['x-forwarded-proto']],
    ['10.96.0.9', 'p', 'http'],
  );
  const trusted = requestHeaders(request(spoofed, '127.0.0.1'), '', policy);
  assert.deepEqual(
    [trusted['x-forwarded-for'], trusted['x-forwarded-host'], trusted['x-forwarded-proto']],
    ['1.2.3.4, 127.0.0.1', 'evil.example', 'https'],
  );
  assert.equal(trusted['x-forwarded-prefix'], undefined, 'host routing: no prefix');
});

test('upgrades follow the same rules: Connection and Upgrade are set by the engine, the rest as for HTTP', () => {
  const req = request({
    connection: 'Upgrade',
    upgrade: 'websocket',
    host: 'p',
    'x-api-key': 'the-key',
    cookie: 'sandbox_token=cap',
    'sec-websocket-key': 'k',
    'x-forwarded-for': '6.6.6.6',
  });
  const out = requestHeaders(req, '', policy);
  assert.deepEqual(Object.keys(out).sort(), ['sec-websocket-key', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto']);
  assert.equal(out['x-forwarded-for'], '10.96.0.9', 'a client that is not a trusted proxy cannot forge X-Forwarded-For');
});

test('under a path prefix the answer gets an opaque origin (CSP sandbox), beside any CSP of its own; host routing does not', () => {
  const origin = 'http://127.0.0.1:31000';
  assert.equal(responseHeaders({}, '/sandboxes/abc', origin)['content-security-policy'], SANDBOX_DOCUMENT_CSP);
  assert.ok(!SANDBOX_DOCUMENT_CSP.includes('allow-same-origin'));
  assert.deepEqual(responseHeaders({ 'content-security-policy': "default-src 'self'" }, '/s/abc.cap', origin)['content-security-policy'], [
    "default-src 'self'",
    SANDBOX_DOCUMENT_CSP,
  ]);
  assert.equal(
    responseHeaders({ 'content-security-policy': "default-src 'self'" }, '', origin)['content-security-policy'],
    "default-src 'self'",
  );
});

test('a Location into the sandbox stays under its prefix; others pass as they are', () => {
  const origin = 'http://127.0.0.1:31000';
  assert.equal(rewriteLocation('/v1/x', '/sandboxes/abc', origin), '/sandboxes/abc/v1/x');
  assert.equal(rewriteLocation(`${origin}/v1/x?y`, '/sandboxes/abc', origin), '/sandboxes/abc/v1/x?y');
  assert.equal(rewriteLocation(origin, '/sandboxes/abc', origin), '/sandboxes/abc/');
  assert.equal(rewriteLocation('//cdn.example/x', '/sandboxes/abc', origin), '//cdn.example/x');
  assert.equal(rewriteLocation('https://other.example/', '/sandboxes/abc', origin), 'https://other.example/');
  const back = responseHeaders(
    { location: '/next', connection: 'close', 'transfer-encoding': 'chunked', 'x-app': '1', gone: undefined },
    '/p',
    origin,
  );
  assert.deepEqual(back, { location: '/p/next', 'x-app': '1', 'content-security-policy': SANDBOX_DOCUMENT_CSP });
});

test('cookies the sandbox sets: never a capability cookie, never for a parent domain, under the path prefix', () => {
  const host = (c: string) => responseHeaders({ 'set-cookie': [c] }, '', 'http://10.0.0.1:8080')['set-cookie'];
  assert.deepEqual(host('s=1; Domain=.sb.example.com; Path=/; HttpOnly'), ['s=1; Path=/; HttpOnly']);
  assert.deepEqual(host('s=1; domain=sb.example.com'), ['s=1']);
  assert.equal(host('sandbox_token_other=planted; Domain=.sb.example.com'), undefined);
  assert.equal(host('sandbox_token=planted'), undefined);
  const path = responseHeaders({ 'set-cookie': ['a=1; Path=/lab', 'b=2', 'c=3; Path=/'] }, '/s/abc.T', 'http://10.0.0.1:8080');
  assert.deepEqual(path['set-cookie'], ['a=1; Path=/s/abc.T/lab', 'b=2', 'c=3; Path=/s/abc.T/']);
  assert.equal(sandboxSetCookie('x=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT', ''), 'x=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT');
});
