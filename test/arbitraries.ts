// fast-check arbitraries shared by the property tests of request validation (unit and integration).

import fc from 'fast-check';
import { DEFAULT_EXTRA_MOUNT_PATHS } from '../src/domain/sandbox.ts';

/** An answer of at most this many bytes, whatever the input (the body may be up to MAX_BODY_BYTES). */
export const MAX_ANSWER_BYTES = 4096;

export const anything = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string({ unit: 'binary', maxLength: 300 }));
/** A field: often near-valid, often anything at all. */
const field = <T>(near: fc.Arbitrary<T>) => fc.oneof({ arbitrary: near, weight: 6 }, { arbitrary: anything, weight: 1 });
const mount = fc.record(
  {
    host_path: field(fc.constantFrom('/srv/state/a', '/srv/state/../etc', '/etc', 'relative', '/srv/stateful/x', '/srv/state/a\u0000b')),
    container_path: field(fc.constantFrom(...DEFAULT_EXTRA_MOUNT_PATHS, '/mnt/skills', '/mnt', '/root', '/mnt/acp-workspace/../x')),
    read_only: field(fc.boolean()),
  },
  { requiredKeys: [] },
);
/** Mostly a valid value, sometimes a near miss. */
const nearly = <T>(valid: fc.Arbitrary<T>, misses: T[]) =>
  fc.oneof({ arbitrary: valid, weight: 5 }, { arbitrary: fc.constantFrom(...misses), weight: 1 });
export const createBody = fc.oneof(
  { arbitrary: anything, weight: 1 },
  {
    weight: 3,
    arbitrary: fc.record(
      {
        sandbox_id: field(nearly(fc.stringMatching(/^[a-z0-9]{1,20}$/), ['..', 'a/b', 'A', '-a', 'a-', 'x'.repeat(52)])),
        thread_id: field(nearly(fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), ['..', 'a/b', 'a\u2024b', '', 'x'.repeat(65)])),
        user_id: field(nearly(fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/), ['../root', 'a.b', '', 'x'.repeat(129)])),
        extra_mounts: field(
          fc.oneof({ arbitrary: fc.constant([]), weight: 3 }, { arbitrary: fc.array(mount, { maxLength: 14 }), weight: 1 }),
        ),
        include_legacy_skills: field(fc.boolean()),
        provision_lark_cli_runtime: field(nearly(fc.constant(false), [true])),
        provision_lark_cli_broker: field(nearly(fc.constant(false), [true])),
        ttl_seconds: field(nearly(fc.integer({ min: 1, max: 30 * 86_400 }), [0, -1, 1.5, 31 * 86_400])),
      },
      { requiredKeys: [] },
    ),
  },
);
