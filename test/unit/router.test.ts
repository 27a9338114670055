// The route table (src/http/router.ts): raw request targets, the order rows are matched in, and the
// method rules (405 with Allow, HEAD answered by GET, `*` for any method).

import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { HttpError } from '../../src/http/errors.ts';
import { handlerFor, requestUrl, router, type RouteRow } from '../../src/http/router.ts';

const noop = () => undefined;
const rows: RouteRow[] = [
  { name: 'exact', path: '/api/sandboxes', methods: { GET: noop } },
  { name: 'template', template: '/api/sandboxes/{id}', methods: { GET: noop, DELETE: noop } },
  { name: 'events', template: '/api/sandboxes/{id}/events', methods: { GET: noop } },
  { name: 'list', template: '/api/sandboxes', methods: { GET: noop } },
  { name: 'prefix', prefix: '/sandboxes/', methods: { '*': noop } },
  { name: 'shadowed', path: '/api/sandboxes', methods: { POST: noop } },
];

test('exact paths first, then templates (the param is one segment), then prefixes (the rest is the param)', () => {
  const find = router(rows);
  const at = (path: string) => {
    const m = find(path);
    return m && [m.row.name, ...m.params];
  };
  assert.deepEqual(at('/api/sandboxes'), ['exact'], 'the first row of a path wins');
  assert.deepEqual(at('/api/sandboxes/'), ['list'], 'templates take an optional trailing slash');
  assert.deepEqual(at('/api/sandboxes/abc'), ['template', 'abc']);
  assert.deepEqual(at('/api/sandboxes/abc/'), ['template', 'abc']);
  assert.deepEqual(at('/api/sandboxes/abc/events'), ['events', 'abc']);
  assert.deepEqual(at('/api/sandboxes/a%2Fb'), ['template', 'a%2Fb'], 'raw: the route decodes and validates its own param');
  assert.equal(find('/api/sandboxes/abc/def'), undefined, 'a param is never two segments');
  assert.equal(find('/api/sandboxes//events'), undefined, 'nor empty');
  assert.deepEqual(at('/sandboxes/abc/v1/x'), ['prefix', 'abc/v1/x']);
  assert.equal(find('/nothing'), undefined);
  assert.throws(() => router([{ name: 'x', template: '/{a}/{b}', methods: {} }]), /at most one/);
});

test('requestUrl keeps the raw path: no dot-segment resolution, no decoding', () => {
  const url = requestUrl({ url: '/sandboxes/a/%2e%2e/b?x=%20' } as IncomingMessage);
  assert.deepEqual([url?.pathname, url?.search, url?.searchParams.get('x')], ['/sandboxes/a/%2e%2e/b', '?x=%20', ' ']);
  assert.equal(requestUrl({ url: 'http://absolute/form' } as IncomingMessage), undefined, 'only origin-form targets');
});

test('an unknown method is a 405 naming the allowed ones; HEAD falls back to GET; OPTIONS lists them; * answers anything', () => {
  const [, pattern, , , prefix] = rows as [RouteRow, RouteRow, RouteRow, RouteRow, RouteRow];
  assert.equal(handlerFor(pattern, 'HEAD'), pattern.methods['GET']);
  assert.equal(handlerFor(prefix, 'PATCH'), prefix.methods['*']);
  assert.throws(
    () => handlerFor(pattern, 'PUT'),
    (err: unknown) => err instanceof HttpError && err.status === 405 && err.headers['allow'] === 'GET, DELETE, HEAD, OPTIONS',
  );
  const answered: { status?: number; headers?: Record<string, string> } = {};
  const res = {
    writeHead: (status: number, headers: Record<string, string>) => Object.assign(answered, { status, headers }),
    end: () => undefined,
  };
  void handlerFor(pattern, 'OPTIONS')({ res } as unknown as Parameters<ReturnType<typeof handlerFor>>[0]);
  assert.deepEqual(answered, { status: 204, headers: { allow: 'GET, DELETE, HEAD, OPTIONS' } });
});
