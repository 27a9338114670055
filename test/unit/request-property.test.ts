// Property-based tests of request validation (fast-check): for arbitrary JSON and strings in every
// field, validation either yields a request whose every field obeys the rules that make it safe to turn
// into object names and host paths, or a 4xx HttpError whose answer is small — never anything else.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { loadConfig } from '../../src/config.ts';
import { DEFAULT_EXTRA_MOUNT_PATHS, isSandboxId, THREAD_ID, USER_ID } from '../../src/domain/sandbox.ts';
import { anything, createBody, MAX_ANSWER_BYTES } from '../arbitraries.ts';
import { HttpError } from '../../src/http/errors.ts';
import { parseSandboxId, validate } from '../../src/http/input.ts';
import { createRequestSchema, keepaliveRequestSchema, toSandboxRequest } from '../../src/api/request.ts';

const config = loadConfig({ EXTRA_MOUNTS_BASE_DIR: '/srv/state' });

/** The outcome of a value that failed: a 4xx with a small JSON answer (or DeerFlow 2.1's 503 for a Lark broker not configured). */
function assertRefusal(err: unknown): void {
  assert.ok(err instanceof HttpError, `not an HttpError: ${String(err)}`);
  assert.ok((err.status >= 400 && err.status < 500) || err.code === 'lark_broker_not_configured', `status ${err.status}`);
  assert.ok(Buffer.byteLength(JSON.stringify(err.body())) <= MAX_ANSWER_BYTES, `an answer of ${JSON.stringify(err.body()).length} bytes`);
}

test('a create body is either a safe request or a small 4xx answer, for any JSON', () => {
  let accepted = 0;
  fc.assert(
    fc.property(createBody, (body) => {
      let request;
      try {
        request = toSandboxRequest(validate(createRequestSchema, body), config);
      } catch (err) {
        return assertRefusal(err);
      }
      accepted += 1;
      assert.ok(isSandboxId(request.sandboxId));
      assert.match(request.threadId, THREAD_ID);
      assert.match(request.userId, USER_ID);
      assert.ok(request.extraMounts.length <= 10);
      for (const m of request.extraMounts) {
        assert.ok(m.hostPath.startsWith('/srv/state/') && !m.hostPath.split('/').includes('..') && !m.hostPath.includes('\0'), m.hostPath);
        assert.ok(DEFAULT_EXTRA_MOUNT_PATHS.includes(m.containerPath), m.containerPath);
      }
    }),
    { numRuns: 3000 },
  );
  assert.ok(accepted > 100, `the generator also makes valid bodies (${accepted} of 3000)`);
});

test('a keepalive body and a path id are either valid or a small 4xx answer', () => {
  fc.assert(
    fc.property(anything, (body) => {
      try {
        validate(keepaliveRequestSchema, body);
      } catch (err) {
        assertRefusal(err);
      }
    }),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.webSegment()), (raw) => {
      let id: string;
      try {
        id = parseSandboxId(raw);
      } catch (err) {
        return assertRefusal(err);
      }
      assert.ok(isSandboxId(id));
    }),
    { numRuns: 2000 },
  );
});
