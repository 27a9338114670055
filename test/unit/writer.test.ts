// The one writer, against the in-memory API (test/fake-kube.ts) and the real view over it: creates
// and their answers, adoption of objects another replica made, roll-back when one half is refused,
// deletes, expiry with preconditions, the service's owner reference, and the limits.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { plainRequest, type SandboxRequest } from '../../src/domain/request.ts';
import { HttpError } from '../../src/http/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { Grants, Permissions } from '../../src/provisioner/permissions.ts';
import { SandboxNamespace } from '../../src/provisioner/namespace.ts';
import { SandboxWriter } from '../../src/provisioner/writer.ts';
import { kubeSources } from '../../src/watch/kube-source.ts';
import { SandboxView } from '../../src/watch/sandbox-view.ts';
import { FakeKube } from '../fake-kube.ts';

const NS = 'sandboxes';

function setup(t: { after: (fn: () => Promise<void>) => void }, env: Record<string, string> = {}) {
  const kube = new FakeKube([NS]);
  const config = loadConfig({ K8S_NAMESPACE: NS, SKILLS_HOST_PATH: '/skills', THREADS_HOST_PATH: '/threads', ...env });
  const view = new SandboxView(kubeSources(kube, NS));
  view.start();
  t.after(() => view.stop());
  const grants = new Grants();
  const namespace = new SandboxNamespace({ config, kube, log: silentLogger() });
  const writer = new SandboxWriter({ config, kube, view, log: silentLogger(), grants, namespace });
  return { kube, config, view, writer, grants, namespace };
}

const request = (sandboxId: string, extra: Partial<SandboxRequest> = {}): SandboxRequest => ({
  ...plainRequest(sandboxId),
  threadId: `thread-${sandboxId}`,
  ...extra,
});

const codeOf = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (err: unknown) => (err instanceof HttpError ? err.code : String(err)),
  );

test('a create makes the pod and its NodePort service, and answers once the view holds both', async (t) => {
  const { kube, view, writer } = setup(t);
  await view.synced;
  const { created, record } = await writer.create(request('a1'));
  assert.equal(created, true);
  assert.equal(record.hasPod && record.hasService, true);
  assert.ok(record.nodePort !== undefined && record.nodePort >= 30000);
  assert.equal(view.get('a1')?.podUid, record.podUid, 'read-your-writes: the view has it when the create answers');
  assert.equal(kube.get('pods', NS, 'sandbox-a1')?.metadata.annotations?.['sandbox.deer-flow/thread-id'], 'thread-a1');
  const owner = await view.waitFor('a1', (r) => r?.serviceOwnerUid !== undefined, 2000);
  assert.equal(owner?.serviceOwnerUid, record.podUid, 'the service is owned by its pod');
  const again = await writer.create(request('a1'));
  assert.equal(again.created, false);
  assert.equal(kube.calls.filter((c) => c.method === 'POST').length, 2, 'an existing sandbox costs no API call');
});

test('concurrent identical creates share one attempt', async (t) => {
  const { kube, view, writer } = setup(t);
  await view.synced;
  const results = await Promise.all([1, 2, 3, 4, 5].map(() => writer.create(request('same'))));
  assert.deepEqual(
    results.map((r) => r.created),
    [true, false, false, false, false],
  );
  assert.equal(new Set(results.map((r) => r.record.podUid)).size, 1);
  assert.equal(kube.calls.filter((c) => c.method === 'POST' && c.path.endsWith('/pods')).length, 1);
});

test('AlreadyExists: objects another replica made a moment earlier are adopted, not an error', async (t) => {
  const { kube, view, writer } = setup(t);
  await view.synced;
  // The other replica's create lands between this replica's view check and its POST.
  kube.beforeRequest = (method, path) => {
    if (method !== 'POST' || !path.endsWith('/pods')) return;
    kube.beforeRequest = undefined;
    kube.put('pods', NS, { metadata: { name: 'sandbox-race', labels: { app: 'deer-flow-sandbox', 'sandbox-id': 'race' } } });
    kube.put('services', NS, {
      metadata: { name: 'sandbox-race-svc', labels: { app: 'deer-flow-sandbox', 'sandbox-id': 'race' } },
      spec: { type: 'NodePort', ports: [{ name: 'http' }] },
    });
  };
  const { created, record } = await writer.create(request('race'));
  assert.equal(created, false, 'this replica made neither object');
  assert.equal(record.podUid, kube.get('pods', NS, 'sandbox-race')?.metadata.uid);
  assert.equal(kube.list('pods', NS).length, 1);
  assert.equal(kube.list('services', NS).length, 1);
  assert.ok(!kube.calls.some((c) => c.method === 'DELETE'), 'nothing of the other replica is rolled back');
});

test('a refused service rolls the pod back, and the answer names the service and the quota', async (t) => {
  const { kube, view, writer } = setup(t);
  await view.synced;
  kube.refuse(
    'POST',
    /\/services$/,
    403,
    'services "sandbox-q1-svc" is forbidden: exceeded quota: q, requested: services=1, used: services=0, limited: services=0',
  );
  const err = await writer.create(request('q1')).catch((e: unknown) => e);
  assert.ok(err instanceof HttpError);
  assert.equal(err.code, 'quota_exceeded');
  assert.equal(err.body()['object'], 'service');
  assert.equal(err.headers['retry-after'], '30');
  assert.deepEqual(kube.list('pods', NS), [], 'the pod made by this call was removed');
  assert.ok(kube.calls.some((c) => c.method === 'DELETE' && c.path.endsWith('/pods/sandbox-q1')));
});

test('a refused pod leaves no service, and the view is clean', async (t) => {
  const { kube, view, writer } = setup(t);
  await view.synced;
  kube.refuse(
    'POST',
    /\/pods$/,
    403,
    'pods "sandbox-p1" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "skills")',
  );
  assert.equal(await codeOf(writer.create(request('p1'))), 'pod_security_violation');
  assert.deepEqual(kube.list('services', NS), []);
  await view.waitFor('p1', (r) => r === undefined, 1000);
  assert.equal(view.get('p1'), undefined);
});

test('the API server down: creates and deletes answer cluster_unavailable', async (t) => {
  const { kube, view, writer } = setup(t);
  await view.synced;
  kube.down = true;
  assert.equal(await codeOf(writer.create(request('d1'))), 'cluster_unavailable');
  assert.equal(await codeOf(writer.delete('d1')), 'cluster_unavailable');
});

test('delete removes both halves; a missing sandbox is not an error', async (t) => {
  const { kube, view, writer } = setup(t);
  await view.synced;
  await writer.create(request('del'));
  assert.equal(await writer.delete('del'), true);
  assert.deepEqual([kube.list('pods', NS), kube.list('services', NS)], [[], []]);
  assert.equal(await writer.delete('del'), false);
});

test('expire deletes only the pod it was shown: a changed pod is read again, a replaced one is left alone', async (t) => {
  const { kube, view, writer } = setup(t);
  await view.synced;
  const { record } = await writer.create(request('old'));
  // The pod moves on (a kubelet status update): the resourceVersion the sweep saw is stale.
  kube.ready(NS, 'sandbox-old');
  assert.equal(await writer.expire('old', record.podUid ?? '', record.podResourceVersion), true);
  assert.equal(kube.get('pods', NS, 'sandbox-old'), undefined);
  const deletes = kube.calls.filter((c) => c.method === 'DELETE' && c.path.endsWith('/pods/sandbox-old'));
  assert.equal(deletes.length, 2, 'the first delete conflicted, the second carried the fresh resourceVersion');
  assert.equal(kube.get('services', NS, 'sandbox-old-svc'), undefined, 'its service went too');

  // A sandbox deleted and made again meanwhile is another pod: the stale sweep must not touch it.
  const first = await writer.create(request('again'));
  await writer.delete('again');
  await view.waitFor('again', (r) => r === undefined, 1000);
  await writer.create(request('again'));
  assert.equal(await writer.expire('again', first.record.podUid ?? '', first.record.podResourceVersion), false);
  assert.ok(kube.get('pods', NS, 'sandbox-again'), 'the new pod is still there');
});

test('without patch on services, no owner reference is written (the reconciler removes orphans instead)', async (t) => {
  const { kube, view, writer, grants } = setup(t);
  await view.synced;
  grants.use(new Permissions([{ verbs: ['get', 'list', 'watch', 'create', 'delete'], apiGroups: [''], resources: ['pods', 'services'] }]));
  await writer.create(request('np'));
  assert.ok(!kube.calls.some((c) => c.method === 'PATCH'));
  assert.equal(grants.can('patch', 'pods'), false);
  assert.equal(await writer.setOwner('np', 'uid'), false);
});

test('MAX_SANDBOXES and MAX_SANDBOXES_PER_THREAD answer 429 limit_reached before any API call', async (t) => {
  const { kube, view, writer } = setup(t, { MAX_SANDBOXES: '2', MAX_SANDBOXES_PER_THREAD: '1' });
  await view.synced;
  await writer.create(request('l1', { threadId: 't' }));
  assert.equal(await codeOf(writer.create(request('l2', { threadId: 't' }))), 'limit_reached');
  await writer.create(request('l3', { threadId: 'u' }));
  const posts = kube.calls.filter((c) => c.method === 'POST').length;
  assert.equal(await codeOf(writer.create(request('l4', { threadId: 'v' }))), 'limit_reached');
  assert.equal(kube.calls.filter((c) => c.method === 'POST').length, posts);
});

test('a sandbox still being deleted is waited out, then made again', async (t) => {
  const { kube, view, writer } = setup(t, { CREATE_TIMEOUT_SECONDS: '2' });
  await view.synced;
  await writer.create(request('busy'));
  kube.put('pods', NS, { metadata: { name: 'sandbox-busy', deletionTimestamp: new Date().toISOString() } });
  await view.waitFor('busy', (r) => r?.deleting === true, 1000);
  setTimeout(() => void kube.request('DELETE', `/api/v1/namespaces/${NS}/pods/sandbox-busy`), 100);
  const { created } = await writer.create(request('busy'));
  assert.equal(created, true);
  assert.equal(view.get('busy')?.deleting, false);
});

test('annotate: a missing pod is sandbox_not_found; a dry run refused names the object', async (t) => {
  const { kube, view, writer } = setup(t);
  await view.synced;
  assert.equal(await codeOf(writer.annotate('ghost', { a: 'b' })), 'sandbox_not_found');
  kube.refuse('POST', /\/pods\?dryRun=All$/, 403, 'pods "x" is forbidden: maximum cpu usage per Container is 500m, but limit is 1');
  assert.equal(await codeOf(writer.dryRun('pod', {})), 'limit_range_violation');
  await writer.dryRun('service', { metadata: { name: 'x' }, spec: {} });
  assert.deepEqual(kube.list('services', NS), [], 'a dry run creates nothing');
});

test('the namespace: made when missing, or a clear refusal when it may not be', async (t) => {
  const { kube, namespace } = setup(t, { K8S_NAMESPACE: 'fresh' });
  await namespace.ensure();
  assert.ok(kube.namespaces.has('fresh'));
  const { namespace: absent } = setup(t, { K8S_NAMESPACE: 'absent', CREATE_NAMESPACE: 'false' });
  await assert.rejects(absent.ensure(), /does not exist and CREATE_NAMESPACE=false/);
});
