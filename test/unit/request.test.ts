import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { HttpError } from '../../src/http/errors.ts';
import { parseSandboxId, validate } from '../../src/http/input.ts';
import { createRequestSchema, toSandboxRequest } from '../../src/api/request.ts';

// The seed layout (one /mnt/skills mount), where /mnt/skills/custom is free for an extra mount.
const config = loadConfig({ EXTRA_MOUNTS_BASE_DIR: '/state', SKILLS_HOST_PATH: '/skills' });
const parse = (body: unknown) => toSandboxRequest(validate(createRequestSchema, body), config);
const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof HttpError) return `${err.status} ${err.code}`;
    throw err;
  }
  return 'ok';
};

test('what DeerFlow’s client sends is accepted; thread_id defaults to sandbox_id, user_id to "default"', () => {
  const r = parse({
    sandbox_id: 'abc123',
    thread_id: null,
    user_id: 'alice',
    include_legacy_skills: true,
    provision_lark_cli_runtime: false,
    provision_lark_cli_broker: false,
  });
  assert.equal(r.threadId, 'abc123');
  assert.equal(r.userId, 'alice');
  assert.equal(parse({ sandbox_id: 'abc123' }).userId, 'default');
});

test('hostile identifiers are refused before anything is built', () => {
  const bad: unknown[] = [
    { sandbox_id: 'ABC' },
    { sandbox_id: '-a' },
    { sandbox_id: 'a'.repeat(52) },
    { sandbox_id: 'a/b' },
    { sandbox_id: 'a..b' },
    { sandbox_id: 42 },
    { sandbox_id: 'ok', thread_id: '../etc' },
    { sandbox_id: 'ok', thread_id: 'a/b' },
    { sandbox_id: 'ok', thread_id: 'a\u0000b' },
    { sandbox_id: 'ok', thread_id: 'tħread' },
    { sandbox_id: 'ok', thread_id: 'a'.repeat(65) },
    { sandbox_id: 'ok', user_id: '..' },
    { sandbox_id: 'ok', extra_mounts: 'x' },
    { sandbox_id: 'ok', provision_lark_cli_runtime: 'yes' },
    [],
    'string',
    null,
  ];
  for (const body of bad)
    assert.equal(
      code(() => parse(body)),
      '422 validation_failed',
      JSON.stringify(body),
    );
  assert.equal(
    code(() => parse({ sandbox_id: 'a'.repeat(51) })),
    'ok',
    'the longest id that fits',
  );
});

test('extra mounts are checked against the base directory, the allowlist, duplicates and built-ins', () => {
  const m = (host_path: string, container_path: string) => ({
    sandbox_id: 'ok',
    extra_mounts: [{ host_path, container_path, read_only: false }],
  });
  assert.equal(
    code(() => parse(m('/state/u/custom', '/mnt/skills/custom'))),
    'ok',
  );
  assert.equal(
    code(() => parse(m('relative/x', '/mnt/skills/custom'))),
    '400 invalid_request',
  );
  assert.equal(
    code(() => parse(m('/state/../etc', '/mnt/skills/custom'))),
    '400 invalid_request',
  );
  assert.equal(
    code(() => parse(m('/statement/x', '/mnt/skills/custom'))),
    '400 invalid_request',
  );
  assert.equal(
    code(() => parse(m('/etc', '/mnt/skills/custom'))),
    '400 invalid_request',
  );
  assert.equal(
    code(() => parse(m('/state/x', '/etc/passwd'))),
    '400 invalid_request',
  );
  assert.equal(
    code(() => parse(m('/state/x', '/mnt/skills/custom/../../x'))),
    '400 invalid_request',
  );
  const dup = {
    sandbox_id: 'ok',
    extra_mounts: [m('/state/a', '/mnt/acp-workspace').extra_mounts[0], m('/state/b', '/mnt/acp-workspace/').extra_mounts[0]],
  };
  assert.equal(
    code(() => parse(dup)),
    '400 invalid_request',
  );
  const many = {
    sandbox_id: 'ok',
    extra_mounts: Array.from({ length: 11 }, (_, i) => ({
      host_path: `/state/${i}`,
      container_path: '/mnt/acp-workspace',
      read_only: true,
    })),
  };
  assert.equal(
    code(() => parse(many)),
    '422 validation_failed',
  );
  const clash = loadConfig({
    EXTRA_MOUNTS_BASE_DIR: '/state',
    SKILLS_HOST_PATH: '/skills',
    EXTRA_MOUNTS_ALLOWED_PATHS: '/mnt/user-data,/mnt',
  });
  for (const path of ['/mnt/user-data', '/mnt']) {
    assert.equal(
      code(() => toSandboxRequest(validate(createRequestSchema, m('/state/x', path)), clash)),
      '400 invalid_request',
      path,
    );
  }
  const views = loadConfig({ EXTRA_MOUNTS_BASE_DIR: '/state' });
  assert.equal(
    code(() => toSandboxRequest(validate(createRequestSchema, m('/state/x', '/mnt/skills/custom')), views)),
    '400 invalid_request',
    'in the three-view layout /mnt/skills/custom is a built-in mount',
  );
  const noBase = loadConfig({ SKILLS_HOST_PATH: '/skills' });
  assert.equal(
    code(() => toSandboxRequest(validate(createRequestSchema, m('/state/x', '/mnt/acp-workspace')), noBase)),
    '400 unsupported_feature',
  );
});

test('features that need configuration the operator has not given are refused', () => {
  assert.equal(
    code(() => parse({ sandbox_id: 'ok', provision_lark_cli_runtime: true })),
    '400 unsupported_feature',
  );
  assert.equal(
    code(() => parse({ sandbox_id: 'ok', provision_lark_cli_broker: true })),
    '400 unsupported_feature',
  );
  assert.equal(
    code(() => parse({ sandbox_id: 'ok', provision_lark_cli_runtime: false })),
    'ok',
  );
});

test('ids in paths: percent-encoding decoded, then the same rule', () => {
  assert.equal(parseSandboxId('abc-1'), 'abc-1');
  for (const raw of ['..', '%2e%2e', 'a%2fb', 'ABC', '%zz', 'a b', '%00'])
    assert.equal(
      code(() => parseSandboxId(raw)),
      '400 invalid_sandbox_id',
      raw,
    );
});
