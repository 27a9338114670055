// The proxy's entry (src/proxy/entry.ts): how a path or a host names a sandbox, what goes on to it,
// and that nothing of a token survives into what is forwarded or logged.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requestUrl } from '../../src/http/router.ts';
import {
  capabilityLogPath,
  hostEntry,
  hostLabel,
  pathEntry,
  cookieValues,
  isTokenCookie,
  sameOriginLocation,
  withoutCookies,
  withoutParam,
} from '../../src/proxy/entry.ts';

const target = (url: string) => requestUrl({ url } as Parameters<typeof requestUrl>[0]) ?? assert.fail(`no target for ${url}`);

test('the plain path: the id segment, and the rest with its query', () => {
  assert.deepEqual(pathEntry(target('/sandboxes/abc/v1/shell/exec?x=1&y')), {
    form: 'plain',
    rawId: 'abc',
    tokens: [],
    tokenInQuery: false,
    rest: '/v1/shell/exec?x=1&y',
  });
  assert.equal(pathEntry(target('/sandboxes/abc'))?.rest, '/', 'no trailing slash: the sandbox root');
  assert.equal(pathEntry(target('/sandboxes/%2e%2e/x'))?.rawId, '%2e%2e', 'raw: validated after decoding, later');
  assert.equal(pathEntry(target('/api/sandboxes/abc')), undefined);
});

test('the capability path: id and token split at the last dot', () => {
  const e = pathEntry(target('/s/abc.TOKEN_x-1/v1/sandbox?q'));
  assert.deepEqual([e?.form, e?.rawId, e?.tokens, e?.rest], ['capability', 'abc', ['TOKEN_x-1'], '/v1/sandbox?q']);
  assert.deepEqual(pathEntry(target('/s/abc/x'))?.tokens, [''], 'no token: an empty one, which verifies for nothing');
  assert.equal(capabilityLogPath('/s/abc.TOKEN/v1/x'), '/s/abc.*/v1/x');
  assert.equal(capabilityLogPath('/s/abc.TOKEN'), '/s/abc.*');
});

test('host routing: the label under the suffix, any port, any case', () => {
  assert.equal(hostLabel('abc.sb.example.com', '.sb.example.com'), 'abc');
  assert.equal(hostLabel('ABC.SB.example.com:8443', '.sb.example.com'), 'abc');
  assert.equal(hostLabel('.sb.example.com', '.sb.example.com'), undefined);
  assert.equal(hostLabel('example.com', '.sb.example.com'), undefined);
  assert.equal(hostLabel('a.b.sb.example.com', '.sb.example.com'), 'a.b', 'validated as an id later (a dot is refused)');
});

test('host routing: the token from the query (then removed), or every capability cookie of this host', () => {
  const fromQuery = hostEntry(target('/vnc/index.html?a=1&sandbox_token=T0K&b=2'), undefined, 'abc');
  assert.deepEqual([fromQuery.tokens, fromQuery.tokenInQuery, fromQuery.rest], [['T0K'], true, '/vnc/index.html?a=1&b=2']);
  const fromCookie = hostEntry(target('/websockify'), 'x=1; sandbox_token_abc=C00K; y=2', 'abc');
  assert.deepEqual([fromCookie.tokens, fromCookie.tokenInQuery, fromCookie.rest], [['C00K'], false, '/websockify']);
  // A cookie planted through the parent domain, before or after this host's own: both are candidates.
  const tossed = hostEntry(target('/'), 'sandbox_token_abc=PLANTED; sandbox_token_abc=MINE; sandbox_token_xyz=OTHER', 'abc');
  assert.deepEqual(tossed.tokens, ['PLANTED', 'MINE']);
  assert.deepEqual(hostEntry(target('/'), undefined, 'abc').tokens, []);
});

test('host routing: malformed escapes in the query are left as sent, never thrown', () => {
  for (const query of ['?100%=1', '?a%ZZ=1', '?sandbox_token=%ZZ', '?%', '?%E0%A4%A=1']) {
    const e = hostEntry(target(`/x${query}`), undefined, 'abc');
    assert.equal(e.rest.startsWith('/x'), true, query);
  }
  assert.deepEqual(hostEntry(target('/x?sandbox_token=%ZZ&a=1'), undefined, 'abc').tokens, ['%ZZ']);
  assert.equal(hostEntry(target('/x?100%=1'), undefined, 'abc').rest, '/x?100%=1');
});

test('the token redirect stays on this host, whatever the request line held', () => {
  for (const [rest, location] of [
    ['//evil.example/x?q=1', '/evil.example/x?q=1'],
    ['/\\evil.example/x', '/evil.example/x'],
    ['/.//evil.example/x', '/evil.example/x'],
    ['/%2F%2Fevil.example', '/%2F%2Fevil.example'],
    ['/vnc/index.html?a=1', '/vnc/index.html?a=1'],
    ['/', '/'],
  ] as const) {
    const got = sameOriginLocation(rest);
    assert.equal(got, location, rest);
    assert.equal(new URL(got, 'https://abc.sb.example.com').host, 'abc.sb.example.com', rest);
  }
});

test('withoutParam keeps the rest of the query byte for byte; withoutCookies drops every capability cookie', () => {
  assert.deepEqual(withoutParam('?a=%20&sandbox_token=x&b=+', 'sandbox_token'), { search: '?a=%20&b=+', value: 'x' });
  assert.deepEqual(withoutParam('?sandbox_token', 'sandbox_token'), { search: '', value: '' });
  assert.deepEqual(withoutParam('', 'sandbox_token'), { search: '', value: undefined });
  assert.equal(withoutCookies('a=1; sandbox_token=t; sandbox_token_abc=u; b=2', isTokenCookie), 'a=1; b=2');
  assert.equal(withoutCookies('sandbox_token_abc=t', isTokenCookie), undefined);
  assert.equal(withoutCookies(undefined, isTokenCookie), undefined);
  assert.equal(withoutCookies('sandbox_tokens=kept', isTokenCookie), 'sandbox_tokens=kept');
  assert.deepEqual(
    cookieValues('a=1; b = 2 ;c', (n) => n !== 'a'),
    ['2'],
  );
});
