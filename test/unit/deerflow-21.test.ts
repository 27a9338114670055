// DeerFlow 2.1's provisioner contract over the fake API (../shared/spec/deerflow-2.1/CONTRACT.md): presence,
// shell capacity, the gateway's default mounts, container_id, the Lark conflicts, Terminating and the
// non-ASCII key. The integration suite runs DeerFlow 2.1's client sequence against the real API server.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AddressInfo } from 'node:net';
import { startStandin } from '../../tools/cluster/sandbox-standin.ts';
import { call, raw } from '../helpers.ts';
import { NS, setup } from '../service-harness.ts';
import { deerflow21Mounts } from '../../tools/deerflow-client.ts';

const REFRESH = 'lark-broker';

test('presence: exists for any pod of the id (Pending, Terminating), with its uid; absent without one, even with its Service left', async (t) => {
  const { kube, service } = await setup(t);
  const url = service.url;
  assert.deepEqual((await call(url, 'GET', '/api/sandboxes/p1/presence')).body, { sandbox_id: 'p1', exists: false, container_id: null });
  const created = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'p1' });
  const uid = kube.get('pods', NS, 'sandbox-p1')?.metadata.uid;
  assert.ok(uid);
  assert.equal(created.body['container_id'], uid);
  assert.deepEqual((await call(url, 'GET', '/api/sandboxes/p1/presence')).body, { sandbox_id: 'p1', exists: true, container_id: uid });
  assert.equal((await call(url, 'GET', '/api/sandboxes/p1')).body['container_id'], uid);
  const listed = (await call(url, 'GET', '/api/sandboxes')).body['sandboxes'] as Record<string, unknown>[];
  assert.equal(listed[0]?.['container_id'], uid);

  // Being deleted: Terminating, and still present.
  kube.put('pods', NS, { metadata: { name: 'sandbox-p1', deletionTimestamp: new Date().toISOString() } });
  await service.view.waitFor('p1', (r) => r?.status === 'Terminating', 2000);
  assert.equal((await call(url, 'GET', '/api/sandboxes/p1')).body['status'], 'Terminating');
  assert.equal((await call(url, 'GET', '/api/sandboxes/p1/presence')).body['exists'], true);

  // A Service with no pod (its pod gone, the Service left behind): no sandbox (404, not listed), presence absent.
  kube.put('services', NS, {
    metadata: { name: 'sandbox-p9-svc', labels: { app: 'deer-flow-sandbox', 'sandbox-id': 'p9' } },
    spec: { type: 'NodePort', ports: [{ name: 'http', port: 8080 }] },
  });
  await service.view.waitFor('p9', (r) => r?.hasService === true, 2000);
  assert.equal((await call(url, 'GET', '/api/sandboxes/p9')).status, 404);
  const ids = ((await call(url, 'GET', '/api/sandboxes')).body['sandboxes'] as Record<string, unknown>[]).map((s) => s['sandbox_id']);
  assert.deepEqual(ids, ['p1']);
  assert.deepEqual((await call(url, 'GET', '/api/sandboxes/p9/presence')).body, { sandbox_id: 'p9', exists: false, container_id: null });
  assert.equal((await call(url, 'GET', '/api/sandboxes/BAD/presence')).status, 400);
});

test('max_shell_sessions: set in the sandbox container, read back from the pod in every answer; less than asked is a 409', async (t) => {
  const { kube, service } = await setup(t);
  const url = service.url;
  const plain = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'c0' });
  assert.equal(plain.body['max_shell_sessions'], 10, 'the image default, never null');
  const env = (id: string) => (kube.get('pods', NS, `sandbox-${id}`)?.spec?.['containers'] as { env?: unknown }[])[0]?.env;
  assert.equal(env('c0'), undefined);

  const made = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'c1', max_shell_sessions: 11 });
  assert.equal(made.status, 201);
  assert.equal(made.body['max_shell_sessions'], 11);
  assert.deepEqual(env('c1'), [{ name: 'MAX_SHELL_SESSIONS', value: '11' }]);
  assert.equal((await call(url, 'GET', '/api/sandboxes/c1')).body['max_shell_sessions'], 11);
  const listed = (await call(url, 'GET', '/api/sandboxes')).body['sandboxes'] as Record<string, unknown>[];
  assert.deepEqual(listed.map((s) => [s['sandbox_id'], s['max_shell_sessions']]).sort(), [
    ['c0', 10],
    ['c1', 11],
  ]);

  for (const asked of [undefined, 5, 11]) {
    const again = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'c1', ...(asked ? { max_shell_sessions: asked } : {}) });
    assert.deepEqual([again.status, again.body['max_shell_sessions']], [200, 11], String(asked));
  }
  const more = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'c1', max_shell_sessions: 12 });
  assert.deepEqual(
    [more.status, more.body['code'], more.body['detail']],
    [
      409,
      'shell_capacity_conflict',
      'Existing sandbox shell capacity is below the requested value; replacement must be coordinated by the Gateway',
    ],
  );
  assert.equal((await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'c0', max_shell_sessions: 11 })).status, 409, 'unset counts as 10');
  assert.equal((await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'c2', max_shell_sessions: 0 })).status, 422);
  assert.equal(kube.get('pods', NS, 'sandbox-c2'), undefined, 'nothing made on a refusal');

  // A pod made by something else with a value that is no capacity: 0, so a 2.1 gateway replaces it.
  kube.put('pods', NS, {
    metadata: { name: 'sandbox-c9', labels: { app: 'deer-flow-sandbox', 'sandbox-id': 'c9' } },
    spec: { containers: [{ name: 'sandbox', image: 'x', env: [{ name: 'MAX_SHELL_SESSIONS', value: 'many' }] }] },
  });
  await service.view.waitFor('c9', (r) => r !== undefined, 2000);
  assert.equal((await call(url, 'GET', '/api/sandboxes/c9')).body['max_shell_sessions'], 0);
});

test("a default DeerFlow 2.1 gateway's create: 8 extra mounts, skill categories replacing the views, no path mounted twice", async (t) => {
  const { kube, service } = await setup(t, { DEER_FLOW_HOST_BASE_DIR: '/srv/deer-flow', SKILLS_HOST_PATH: '' });
  const body = {
    sandbox_id: 'g1',
    thread_id: 't1',
    user_id: 'alice',
    skills_container_path: '/mnt/skills',
    ...deerflow21Mounts('/srv/deer-flow', 'alice'),
  };
  const made = await call(service.url, 'POST', '/api/sandboxes', body);
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const pod = kube.get('pods', NS, 'sandbox-g1');
  const mounts = (pod?.spec?.['containers'] as { volumeMounts: { mountPath: string; name: string }[] }[])[0]?.volumeMounts ?? [];
  const paths = mounts.map((m) => m.mountPath);
  assert.equal(new Set(paths).size, paths.length, `no duplicate mount path: ${paths.join(', ')}`);
  for (const c of ['public', 'custom', 'legacy', 'integrations'])
    assert.ok(
      mounts.some((m) => m.mountPath === `/mnt/skills/${c}` && m.name.startsWith('extra-')),
      c,
    );
  assert.ok(!mounts.some((m) => m.name.startsWith('skills-')), 'every view replaced');

  // Another root: the categories follow it, the old paths are refused.
  const custom = await call(service.url, 'POST', '/api/sandboxes', {
    sandbox_id: 'g2',
    skills_container_path: '/opt/skills',
    extra_mounts: [{ host_path: '/srv/deer-flow/users/alice/skills_view/custom', container_path: '/mnt/skills/custom', read_only: true }],
  });
  assert.deepEqual([custom.status, custom.body['detail']], [400, 'Unsupported extra mount path: /mnt/skills/custom']);
  const opt = await call(service.url, 'POST', '/api/sandboxes', { sandbox_id: 'g3', skills_container_path: '/opt/skills' });
  const optMounts = (kube.get('pods', NS, 'sandbox-g3')?.spec?.['containers'] as { volumeMounts: { mountPath: string }[] }[])[0]
    ?.volumeMounts;
  assert.equal(opt.status, 201);
  assert.deepEqual(
    optMounts?.map((m) => m.mountPath).filter((p) => p.includes('skills')),
    ['/opt/skills/public', '/opt/skills/custom', '/opt/skills/legacy'],
  );
});

test('Lark: the broker mode of an existing sandbox must be the one asked (409 with the refresh header), and a broker not configured is a 503', async (t) => {
  const { service } = await setup(t, { LARK_CLI_INIT_IMAGE: 'lark-init:1', LARK_CLI_BROKER_IMAGE: 'lark-broker:1' });
  const url = service.url;
  const plain = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'l1' });
  assert.equal(plain.body['lark_cli_broker'], false);
  const broker = { provision_lark_cli_runtime: true, provision_lark_cli_broker: true };
  const conflict = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'l1', ...broker });
  assert.deepEqual(
    [conflict.status, conflict.body['code'], conflict.headers.get('x-deerflow-capability-refresh')],
    [409, 'lark_broker_conflict', REFRESH],
  );
  const made = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'l2', ...broker });
  assert.deepEqual([made.status, made.body['lark_cli_broker']], [201, true]);
  assert.equal((await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'l2', ...broker })).status, 200);
  const runtimeOnly = await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'l3', provision_lark_cli_runtime: true });
  assert.deepEqual([runtimeOnly.status, runtimeOnly.headers.get('x-deerflow-capability-refresh')], [409, REFRESH]);

  const { service: bare } = await setup(t);
  const missing = await call(bare.url, 'POST', '/api/sandboxes', { sandbox_id: 'l4', provision_lark_cli_broker: true });
  assert.deepEqual(
    [missing.status, missing.body['detail'], missing.headers.get('x-deerflow-capability-refresh')],
    [503, 'Requested Lark broker image is not configured', REFRESH],
  );
});

test('an API key with non-ASCII characters is a 401, never a 500', async (t) => {
  const { service } = await setup(t, { PROVISIONER_API_KEY: 'secret', PROVISIONER_ALLOW_ANONYMOUS: 'false' });
  for (const key of ['sécret', 'secret\u00ff', '\u00e9\u00e9'])
    assert.equal((await raw(service.url, 'GET', '/api/sandboxes/x/presence', { 'x-api-key': key })).status, 401, key);
  assert.equal((await raw(service.url, 'GET', '/api/capabilities')).status, 401);
});

test('capabilities name both contracts', async (t) => {
  const { service } = await setup(t);
  assert.deepEqual((await call(service.url, 'GET', '/api/capabilities')).body['contracts'], ['deerflow-seed', 'deerflow-2.1']);
});

test('the stand-in runs MAX_SHELL_SESSIONS sessions: the one past it evicts the least recently used, as the AIO image does', async (t) => {
  for (const [env, capacity] of [
    [{}, 10],
    [{ MAX_SHELL_SESSIONS: '11' }, 11],
  ] as const) {
    const app = await startStandin({ namespace: NS, pod: 'p', sandboxId: 's' }, 0, '127.0.0.1', { env });
    t.after(() => app.close());
    const base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    const exec = async (id: string) =>
      ((await call(base, 'POST', '/v1/shell/exec', { command: 'true', id })).body['data'] as Record<string, unknown>)['evicted_session'];
    for (let i = 1; i <= capacity; i++) assert.equal(await exec(`s${i}`), null, `session ${i} of ${capacity}`);
    await exec('s1'); // used again: s2 is now the oldest
    assert.equal(await exec('extra'), 's2');
    const sessions = (await call(base, 'GET', '/v1/shell/sessions')).body['data'] as { capacity: number; sessions: string[] };
    assert.equal(sessions.capacity, capacity);
    assert.equal(sessions.sessions.length, capacity);
  }
});
