// The proxy's entry (src/proxy/entry.ts): how a path or a host names a sandbox, what goes on to it,
// and that nothing of a token survives into what is forwarded or logged.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requestUrl } from '../../src/http/router.ts';
import { capabilityLogPath, hostEntry, hostLabel, pathEntry, withoutCookie, withoutParam } from '../../src/proxy/entry.ts';

const target = (url: string) => requestUrl({ url } as Parameters<typeof requestUrl>[0]) ?? assert.fail(`no target for ${url}`);

test('the plain path: the id segment, and the rest with its query', () => {
  assert.deepEqual(pathEntry(target('/sandboxes/abc/v1/shell/exec?x=1&y')), {
    form: 'plain',
    rawId: 'abc',
    token: undefined,
    tokenInQuery: false,
    rest: '/v1/shell/exec?x=1&y',
  });
  assert.equal(pathEntry(target('/sandboxes/abc'))?.rest, '/', 'no trailing slash: the sandbox root');
  assert.equal(pathEntry(target('/sandboxes/%2e%2e/x'))?.rawId, '%2e%2e', 'raw: validated after decoding, later');
  assert.equal(pathEntry(target('/api/sandboxes/abc')), undefined);
});

test('the capability path: id and token split at the last dot', () => {
  const e = pathEntry(target('/s/abc.TOKEN_x-1/v1/sandbox?q'));
  assert.deepEqual([e?.form, e?.rawId, e?.token, e?.rest], ['capability', 'abc', 'TOKEN_x-1', '/v1/sandbox?q']);
  assert.equal(pathEntry(target('/s/abc/x'))?.token, '', 'no token: an empty one, which verifies for nothing');
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

test('host routing: the token from the query (then removed) or from the cookie', () => {
  const fromQuery = hostEntry(target('/vnc/index.html?a=1&sandbox_token=T0K&b=2'), undefined, 'abc');
  assert.deepEqual([fromQuery.token, fromQuery.tokenInQuery, fromQuery.rest], ['T0K', true, '/vnc/index.html?a=1&b=2']);
  const fromCookie = hostEntry(target('/websockify'), 'x=1; sandbox_token=C00K; y=2', 'abc');
  assert.deepEqual([fromCookie.token, fromCookie.tokenInQuery, fromCookie.rest], ['C00K', false, '/websockify']);
  assert.equal(hostEntry(target('/'), undefined, 'abc').token, undefined);
});

test('withoutParam keeps the rest of the query byte for byte; withoutCookie the other cookies', () => {
  assert.deepEqual(withoutParam('?a=%20&sandbox_token=x&b=+', 'sandbox_token'), { search: '?a=%20&b=+', value: 'x' });
  assert.deepEqual(withoutParam('?sandbox_token', 'sandbox_token'), { search: '', value: '' });
  assert.deepEqual(withoutParam('', 'sandbox_token'), { search: '', value: undefined });
  assert.deepEqual(withoutCookie('a=1; sandbox_token=t; b=2', 'sandbox_token'), { header: 'a=1; b=2', value: 't' });
  assert.deepEqual(withoutCookie('sandbox_token=t', 'sandbox_token'), { header: undefined, value: 't' });
  assert.deepEqual(withoutCookie(undefined, 'sandbox_token'), { header: undefined, value: undefined });
});
