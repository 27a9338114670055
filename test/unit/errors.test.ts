// The error registry and the error table of docs/api.md agree in both directions (as fastify checks its own).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERRORS } from '../../src/http/errors.ts';

const readme = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
/** Rows of the error table of docs/api.md: | `code` | status | meaning |. */
const documented = new Map(
  [...readme.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| (.*) \|$/gm)].map((m) => [m[1] ?? '', { status: Number(m[2]), doc: m[3] ?? '' }]),
);

test('every error code is documented in docs/api.md with its HTTP status and its registry text', () => {
  for (const [code, { status, doc }] of Object.entries(ERRORS)) {
    assert.deepEqual(documented.get(code), { status, doc }, `the error table's row of ${code} differs from the registry`);
  }
});

test('every code in the error table of docs/api.md exists in the registry', () => {
  assert.ok(documented.size > 10, 'the error table of docs/api.md was found');
  for (const code of documented.keys()) assert.ok(code in ERRORS, `docs/api.md documents ${code}, which the registry does not have`);
});
