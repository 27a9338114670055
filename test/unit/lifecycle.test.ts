// Activity and expiry (src/lifecycle/): the expiry decision as a pure function, the activity store's
// throttled writes and keepalive (with and without `patch`), and a sweep deleting through the writer.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import type { SandboxRecord } from '../../src/domain/record.ts';
import { HttpError } from '../../src/http/errors.ts';
import { Activity } from '../../src/lifecycle/activity.ts';
import { expiryReason, sweep } from '../../src/lifecycle/sweeper.ts';
import { silentLogger } from '../../src/log.ts';
import { Grants, Permissions } from '../../src/provisioner/permissions.ts';
import { SandboxWriter } from '../../src/provisioner/writer.ts';
import { plainRequest } from '../../src/domain/request.ts';
import { kubeSources } from '../../src/watch/kube-source.ts';
import { SandboxView } from '../../src/watch/sandbox-view.ts';
import { FakeKube } from '../fake-kube.ts';

const H = 3_600_000;
const lifecycle = (ttlMs: number, idleMs: number) => ({
  ttlMs,
  idleMs,
  sweepMs: 60_000,
  activityWriteMs: 60_000,
  shutdownGraceMs: 0,
  shutdownDelayMs: 0,
});

test('expiry: its own expiry first, else the TTL from creation, else idleness; 0 turns each off', () => {
  const s = { createdAt: 0, expiresAt: undefined, lastActivity: 0 };
  assert.equal(expiryReason(s, lifecycle(0, 0), 100 * H), undefined, 'both off: never');
  assert.equal(expiryReason(s, lifecycle(2 * H, 0), 2 * H - 1), undefined);
  assert.equal(expiryReason(s, lifecycle(2 * H, 0), 2 * H), 'ttl', 'at the TTL exactly');
  assert.equal(expiryReason({ ...s, expiresAt: 5 * H }, lifecycle(2 * H, 0), 3 * H), undefined, 'a keepalive moved it');
  assert.equal(expiryReason({ ...s, expiresAt: 1 * H }, lifecycle(0, 0), 1 * H), 'ttl', 'a per-sandbox ttl_seconds with no global TTL');
  assert.equal(expiryReason({ ...s, lastActivity: 9 * H }, lifecycle(0, H), 9.5 * H), undefined);
  assert.equal(expiryReason({ ...s, lastActivity: 9 * H }, lifecycle(0, H), 10 * H), 'idle');
  assert.equal(expiryReason({ ...s, lastActivity: 9 * H }, lifecycle(2 * H, H), 10 * H), 'ttl', 'ttl is reported before idle');
});

function setup(t: { after: (fn: () => Promise<void>) => void }, env: Record<string, string> = {}) {
  let clock = Date.now(); // the fake API server stamps creations with the real clock
  const now = () => clock;
  const kube = new FakeKube(['ns']);
  const config = loadConfig({ K8S_NAMESPACE: 'ns', SKILLS_HOST_PATH: '/s', ...env });
  const view = new SandboxView(kubeSources(kube, 'ns'));
  view.start();
  t.after(() => view.stop());
  const log = silentLogger();
  const grants = new Grants();
  const writer = new SandboxWriter({ config, kube, view, log, now, grants });
  const activity = new Activity({ config, writer, grants, view, log, now });
  return { kube, config, view, writer, grants, activity, log, now, advance: (ms: number) => (clock += ms) };
}

const create = async (writer: SandboxWriter, id: string) => (await writer.create({ ...plainRequest(id), userId: 'u' })).record;
const patches = (kube: FakeKube) => kube.calls.filter((c) => c.method === 'PATCH' && c.path.includes('/pods/'));

test('activity is written to the pod at most once per interval, and read back by the view', async (t) => {
  const { kube, view, writer, activity, advance } = setup(t, { ACTIVITY_WRITE_INTERVAL_SECONDS: '60' });
  await view.synced;
  await create(writer, 'a');
  activity.created('a');
  activity.touch('a');
  assert.equal(patches(kube).length, 0, 'the creation is the first activity: nothing to write yet');
  advance(61_000);
  activity.touch('a');
  activity.touch('a');
  assert.equal(patches(kube).length, 1);
  const record = await view.waitFor('a', (r) => r?.lastActivity !== undefined, 1000);
  assert.equal(activity.lastActivity(record as SandboxRecord), record?.lastActivity);
});

test('keepalive moves the expiry on the pod; without patch it is kept in memory and says so', async (t) => {
  const { kube, view, writer, grants, activity, now } = setup(t, { SANDBOX_TTL_SECONDS: '600' });
  await view.synced;
  await create(writer, 'k');
  assert.equal(typeof (await activity.keepalive('k', 7200)), 'number');
  const record = await view.waitFor('k', (r) => r?.expiresAt !== undefined, 1000);
  assert.equal(activity.expiresAt(record as SandboxRecord), now() + 7200 * 1000);
  await assert.rejects(activity.keepalive('ghost', 60), (e: unknown) => e instanceof HttpError && e.code === 'sandbox_not_found');

  grants.use(new Permissions([{ verbs: ['get', 'list', 'watch', 'create', 'delete'], apiGroups: [''], resources: ['*'] }]));
  const before = patches(kube).length;
  assert.equal(await activity.keepalive('k', undefined), undefined, 'memory only');
  assert.equal(activity.expiresAt(view.get('k') as SandboxRecord), now() + 600 * 1000, 'the global TTL from now');
  assert.equal(patches(kube).length, before);
});

test('a sweep deletes what expired, through the writer, and counts each once', async (t) => {
  const { view, writer, activity, config, log, now, advance } = setup(t, { SANDBOX_IDLE_SECONDS: '60' });
  await view.synced;
  await create(writer, 'idle');
  await create(writer, 'busy');
  activity.created('idle');
  advance(30_000);
  activity.touch('busy');
  advance(40_000);
  const expired: string[] = [];
  const metrics = { expiries: { inc: (l: { reason: string }) => void expired.push(l.reason) } };
  const result = await sweep({ config, view, writer, activity, log, metrics: metrics as never, now });
  assert.deepEqual(result, { expired: [{ id: 'idle', reason: 'idle' }], suspended: [], errors: [] });
  assert.deepEqual(expired, ['idle']);
  await view.waitFor('idle', (r) => r === undefined || r.deleting, 1000);
  assert.ok(view.get('busy'));
});
