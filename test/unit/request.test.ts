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
    'ok',
    'DeerFlow 2.1: an extra mount on a skill category replaces its view',
  );
  assert.equal(
    code(() => toSandboxRequest(validate(createRequestSchema, m('/state/x', '/mnt/skills')), views)),
    '400 invalid_request',
    'the skills root itself is no extra mount',
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
    code(() => parse({ sandbox_id: 'ok', provision_lark_cli_runtime: false })),
    'ok',
  );
});

/** The detail and headers of a refusal. */
const refusal = (fn: () => unknown): { status: number; detail: unknown; headers: Record<string, string> } => {
  try {
    fn();
  } catch (err) {
    if (err instanceof HttpError) return { status: err.status, detail: err.body()['detail'], headers: err.headers };
    throw err;
  }
  throw new Error('accepted');
};

test('DeerFlow 2.1 Lark conflicts: 503 for a broker not configured, 409 for the runtime without the configured broker, both asking for a refresh', () => {
  const refresh = { 'x-deerflow-capability-refresh': 'lark-broker' };
  assert.deepEqual(
    refusal(() => parse({ sandbox_id: 'ok', provision_lark_cli_broker: true })),
    {
      status: 503,
      detail: 'Requested Lark broker image is not configured',
      headers: refresh,
    },
  );
  const broker = loadConfig({ LARK_CLI_BROKER_IMAGE: 'broker:1', LARK_CLI_INIT_IMAGE: 'init:1' });
  assert.deepEqual(
    refusal(() => toSandboxRequest(validate(createRequestSchema, { sandbox_id: 'ok', provision_lark_cli_runtime: true }), broker)),
    { status: 409, detail: 'Configured Lark broker is required; refresh provisioner capabilities', headers: refresh },
  );
  const both = { sandbox_id: 'ok', provision_lark_cli_runtime: true, provision_lark_cli_broker: true };
  assert.equal(toSandboxRequest(validate(createRequestSchema, both), broker).larkBroker, true);
});

test('DeerFlow 2.1 skills_container_path: its three 400 details, the skill categories follow the root', () => {
  const detail = (path: unknown) => refusal(() => parse({ sandbox_id: 'ok', skills_container_path: path })).detail;
  for (const p of ['', 'mnt/skills', '//mnt/skills'])
    assert.equal(detail(p), 'The skills container path must be an absolute non-root path', JSON.stringify(p));
  for (const p of ['/', '/mnt/skills/', '/mnt//skills', '/mnt/./skills', '/mnt/x/../skills'])
    assert.equal(detail(p), "The skills container path must not be root or contain redundant separators, '.' or '..'", p);
  assert.equal(detail('/mnt'), "The skills container path '/mnt' overlaps reserved sandbox path '/mnt/user-data'");
  assert.equal(
    detail('/mnt/user-data/skills'),
    "The skills container path '/mnt/user-data/skills' overlaps reserved sandbox path '/mnt/user-data'",
  );
  assert.equal(
    detail('/mnt/integrations/lark-cli'),
    "The skills container path '/mnt/integrations/lark-cli' overlaps reserved sandbox path '/mnt/integrations/lark-cli'",
  );
  assert.equal(
    code(() => parse({ sandbox_id: 'ok', skills_container_path: 7 })),
    '422 validation_failed',
  );
  assert.equal(parse({ sandbox_id: 'ok' }).skillsRoot, '/mnt/skills');
  const state = loadConfig({ EXTRA_MOUNTS_BASE_DIR: '/state' });
  const mount = (root: string, path: string) => ({
    sandbox_id: 'ok',
    skills_container_path: root,
    extra_mounts: [{ host_path: '/state/x', container_path: path, read_only: true }],
  });
  const make = (body: unknown) => code(() => toSandboxRequest(validate(createRequestSchema, body), state));
  for (const category of ['public', 'custom', 'legacy', 'integrations']) {
    assert.equal(make(mount('/mnt/skills', `/mnt/skills/${category}`)), 'ok', category);
    assert.equal(make(mount('/opt/skills', `/opt/skills/${category}`)), 'ok', category);
    assert.equal(make(mount('/opt/skills', `/mnt/skills/${category}`)), '400 invalid_request', `${category} under another root`);
  }
  assert.equal(make(mount('/opt/skills', '/opt/skills/other')), '400 invalid_request');
});

test('DeerFlow 2.1 max_shell_sessions: a positive integer or null, else 422', () => {
  assert.equal(parse({ sandbox_id: 'ok', max_shell_sessions: 11 }).maxShellSessions, 11);
  assert.equal(parse({ sandbox_id: 'ok', max_shell_sessions: null }).maxShellSessions, undefined);
  assert.equal(parse({ sandbox_id: 'ok' }).maxShellSessions, undefined);
  for (const bad of [0, -1, 1.5, '11', true, 1e9])
    assert.equal(
      code(() => parse({ sandbox_id: 'ok', max_shell_sessions: bad })),
      '422 validation_failed',
      String(bad),
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
