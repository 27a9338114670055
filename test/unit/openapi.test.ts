// The OpenAPI document (src/api/openapi.ts) is valid OpenAPI 3.1 by a validator built for it
// (@seriousme/openapi-schema-validator, which refused the document whose component references pointed
// at `#/$defs`), every reference resolves from the document's root, and the contract's details are in
// it: the security requirement, typed query parameters, each route's status codes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { openApiDocument } from '../../src/api/openapi.ts';

type Doc = {
  security: unknown[];
  paths: Record<
    string,
    Record<
      string,
      { security?: unknown[]; parameters?: { name: string; schema: Record<string, unknown> }[]; responses: Record<string, unknown> }
    >
  >;
  components: { schemas: Record<string, unknown> };
};
const doc = openApiDocument(300) as unknown as Doc;

/** Every `$ref` in a value, with where it was found. */
function refs(value: unknown, at = '#'): [string, string][] {
  if (Array.isArray(value)) return value.flatMap((v, i) => refs(v, `${at}/${i}`));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) =>
    k === '$ref' && typeof v === 'string' ? [[at, v] as [string, string]] : refs(v, `${at}/${k}`),
  );
}

test('the document is valid OpenAPI 3.1', async () => {
  const result = await new Validator().validate(structuredClone(doc) as Parameters<Validator['validate']>[0]);
  assert.equal(result.valid, true, JSON.stringify(result.errors, null, 1));
});

test('every reference resolves from the document root; no schema carries its own $defs or $id', () => {
  const found = refs(doc);
  assert.ok(found.length > 20);
  for (const [at, target] of found) {
    assert.match(target, /^#\/components\/schemas\/\w+$/, `${at}: ${target}`);
    assert.ok(target.split('/').at(-1)! in doc.components.schemas, `${at}: ${target} exists`);
  }
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    assert.equal('$defs' in (schema as object), false, name);
    assert.equal('$id' in (schema as object), false, name);
  }
});

test('the API key is required everywhere but on probes, metrics, this document, the page and capability URLs', () => {
  assert.deepEqual(doc.security, [{ apiKey: [] }, { bearer: [] }]);
  for (const path of ['/health', '/readyz', '/metrics', '/openapi.json', '/', '/ui/{file}'])
    assert.deepEqual(doc.paths[path]?.['get']?.security, [], path);
  assert.deepEqual(doc.paths['/s/{capability}/{path}']?.['post']?.security, [{}]);
  assert.equal(doc.paths['/api/sandboxes']?.['post']?.security, undefined, 'the document-wide requirement applies');
});

test('query parameters are typed, and each route lists what it may answer', () => {
  const params = (path: string, method: string) =>
    Object.fromEntries((doc.paths[path]?.[method]?.parameters ?? []).map((p) => [p.name, p.schema]));
  assert.deepEqual(params('/api/sandboxes/{sandbox_id}', 'get')['wait'], { type: 'number', minimum: 0, maximum: 300, default: 0 });
  assert.deepEqual(params('/api/sandboxes', 'get')['status'], {
    type: 'string',
    enum: ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown', 'Terminating'],
  });
  const statuses = (path: string, method: string) => Object.keys(doc.paths[path]?.[method]?.responses ?? {});
  assert.deepEqual(statuses('/api/sandboxes/{sandbox_id}/keepalive', 'post').sort(), [
    '200',
    '400',
    '401',
    '404',
    '408',
    '413',
    '415',
    '422',
    '503',
  ]);
  assert.deepEqual(statuses('/api/events', 'get').sort(), ['200', '401']);
  assert.deepEqual(statuses('/api/sandboxes/{sandbox_id}/events', 'get').sort(), ['200', '400', '401', '404']);
  assert.deepEqual(statuses('/api/sandboxes', 'post').sort(), [
    '200',
    '201',
    '400',
    '401',
    '408',
    '409',
    '413',
    '415',
    '422',
    '429',
    '500',
    '503',
    '504',
  ]);
  for (const method of ['get', 'post', 'put', 'patch', 'delete']) assert.ok(doc.paths['/sandboxes/{sandbox_id}/{path}']?.[method], method);
});
