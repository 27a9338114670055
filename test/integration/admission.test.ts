// Admission-aware answers, nothing half-made, several replicas, crashes, and least privilege — against
// the real API server's quota, LimitRanger, Pod Security admission and RBAC.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadAllYaml } from '@kubernetes/client-node';
import { join } from 'node:path';
import { test } from 'node:test';
import { KubeHttp, type KubeObject } from '../../tools/cluster/kube-http.ts';
import { loadConfig } from '../../src/config.ts';
import {
  admin,
  call,
  captureLogs,
  claimObject,
  cluster,
  eventually,
  namespace,
  objectsIn,
  provisioner,
  resourceQuota,
  serviceAccountKubeconfig,
  serviceAccountToken,
  volumeFor,
} from '../helpers.ts';

const root = join(import.meta.dirname, '..', '..');

test('a ResourceQuota of 2 pods: the third create answers 429 quota_exceeded and leaves nothing', async (t) => {
  const ns = await namespace(t, 'quota');
  await resourceQuota(ns, 'q', { pods: '2' });
  const p = await provisioner(t, ns);
  assert.equal((await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'q1' })).status, 201);
  assert.equal((await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'q2' })).status, 201);
  const third = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'q3' });
  assert.equal(third.status, 429);
  assert.equal(third.body['code'], 'quota_exceeded');
  assert.equal(third.headers.get('retry-after'), '30');
  assert.match(String(third.body['detail']), /exceeded quota: q/);
  assert.deepEqual(await objectsIn(ns), { pods: ['sandbox-q1', 'sandbox-q2'], services: ['sandbox-q1-svc', 'sandbox-q2-svc'] });
});

test('service refused after the pod was made (quota on services): the pod is removed, the answer names the service', async (t) => {
  const ns = await namespace(t, 'svcquota');
  await resourceQuota(ns, 'nosvc', { services: '0' });
  const p = await provisioner(t, ns);
  const res = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 's1' });
  assert.equal(res.status, 429);
  assert.equal(res.body['code'], 'quota_exceeded');
  assert.equal(res.body['object'], 'service');
  assert.match(String(res.body['detail']), /^Service creation refused/);
  await eventually('no pod left', async () => ((await objectsIn(ns)).pods.length === 0 ? true : undefined));
});

test('Pod Security baseline with hostPath: 422 pod_security_violation, /readyz names it, PVC mode succeeds', async (t) => {
  const ns = await namespace(t, 'pss', { 'pod-security.kubernetes.io/enforce': 'baseline' });
  const p = await provisioner(t, ns);
  await p.housekeeping();
  const ready = await eventually('the nodes are listed', async () => {
    const r = await call(p.url, 'GET', '/readyz');
    return (r.body['checks'] as { name: string }[]).some((c) => c.name === 'images') ? r : undefined;
  });
  assert.match(String(ready.body['detail']), /Pod Security level "baseline".*hostPath.*STORAGE_MODE=pvc/);
  const res = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'h1' });
  assert.equal(res.status, 422);
  assert.equal(res.body['code'], 'pod_security_violation');
  assert.equal(res.body['level'], 'baseline');
  assert.match(String(res.body['detail']), /hostPath volumes/);
  assert.deepEqual(await objectsIn(ns), { pods: [], services: [] });

  const pvc = await provisioner(t, ns, { SKILLS_PVC_NAME: 'skills', USERDATA_PVC_NAME: 'user-data' });
  await pvc.housekeeping();
  const checks = (await call(pvc.url, 'GET', '/readyz')).body['checks'] as { name: string; ok: boolean }[];
  assert.equal(checks.find((c) => c.name === 'preflight')?.ok, true, 'the preflight passes in PVC mode');
  const ok = await call(pvc.url, 'POST', '/api/sandboxes', { sandbox_id: 'v1' });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
});

test('a LimitRange whose max is below the configured limits: 422 limit_range_violation', async (t) => {
  const ns = await namespace(t, 'limits');
  await admin().post(`/api/v1/namespaces/${ns}/limitranges`, {
    apiVersion: 'v1',
    kind: 'LimitRange',
    metadata: { name: 'lr' },
    spec: { limits: [{ type: 'Container', max: { cpu: '500m' } }] },
  });
  const p = await provisioner(t, ns);
  const res = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'l1' });
  assert.equal(res.status, 422);
  assert.equal(res.body['code'], 'limit_range_violation');
  assert.match(String(res.body['detail']), /maximum cpu usage per Container is 500m/);
  assert.deepEqual(await objectsIn(ns), { pods: [], services: [] });
});

test('two replicas: 50 concurrent creates of the same 10 ids split across them make 10 pods and 10 services', async (t) => {
  const ns = await namespace(t, 'replicas');
  const a = await provisioner(t, ns);
  const b = await provisioner(t, ns);
  const ids = Array.from({ length: 10 }, (_, i) => `r${i}`);
  const answers = await Promise.all(
    Array.from({ length: 50 }, (_, i) => call(i % 2 ? a.url : b.url, 'POST', '/api/sandboxes', { sandbox_id: ids[i % 10] })),
  );
  assert.ok(
    answers.every((r) => r.status === 200 || r.status === 201),
    JSON.stringify(answers.filter((r) => r.status >= 300).map((r) => r.body)),
  );
  const objects = await objectsIn(ns);
  assert.equal(objects.pods.length, 10);
  assert.equal(objects.services.length, 10);
  for (const id of ids) {
    const urls = new Set(answers.filter((r) => r.body['sandbox_id'] === id).map((r) => r.body['sandbox_url']));
    assert.equal(urls.size, 1, `one URL for ${id}`);
  }
  // A delete through one replica is seen by the other.
  await call(a.url, 'DELETE', '/api/sandboxes/r0');
  await eventually('b sees the delete', async () => ((await call(b.url, 'GET', '/api/sandboxes/r0')).status === 404 ? true : undefined));
});

test('least privilege: the Role in deploy/base is enough for the whole flow with every feature on, and nothing more', async (t) => {
  const ns = await namespace(t, 'rbac');
  const other = await namespace(t, 'rbac-other');
  const apply = spawnSync(
    cluster().kubectl,
    [
      '--kubeconfig',
      cluster().kubeconfig,
      'apply',
      '-n',
      ns,
      '-f',
      join(root, 'deploy/base/serviceaccount.yaml'),
      '-f',
      join(root, 'deploy/base/rbac.yaml'),
    ],
    { encoding: 'utf8' },
  );
  assert.equal(apply.status, 0, apply.stderr);
  // The optional component's ClusterRole (reading nodes), bound to this namespace's account under names of its own.
  const [role, binding] = loadAllYaml(
    readFileSync(join(root, 'deploy/components/image-prepull/nodes-reader.yaml'), 'utf8'),
  ) as KubeObject[];
  assert.ok(role && binding);
  const rbacApi = '/apis/rbac.authorization.k8s.io/v1';
  role.metadata.name = binding.metadata.name = `${ns}-nodes`;
  (binding['roleRef'] as { name: string }).name = role.metadata.name;
  (binding['subjects'] as { namespace?: string }[]).forEach((s) => (s.namespace = ns));
  await admin().post(`${rbacApi}/clusterroles`, role);
  await admin().post(`${rbacApi}/clusterrolebindings`, binding);
  t.after(async () => {
    await admin().delete(`${rbacApi}/clusterrolebindings/${ns}-nodes`);
    await admin().delete(`${rbacApi}/clusterroles/${ns}-nodes`);
  });
  const kubeconfig = await serviceAccountKubeconfig(t, ns, 'sandbox-provisioner');
  const token = await serviceAccountToken(ns, 'sandbox-provisioner');
  const p = await provisioner(t, ns, { KUBECONFIG_PATH: kubeconfig, CREATE_NAMESPACE: 'false' });
  await p.housekeeping();
  const ready = await call(p.url, 'GET', '/readyz');
  assert.equal(ready.status, 200);
  assert.doesNotMatch(String(ready.body['detail'] ?? ''), /degraded|missing:/, 'nothing degraded');

  assert.deepEqual(
    (ready.body['checks'] as { name: string; ok: boolean }[]).find((c) => c.name === 'permissions'),
    { name: 'permissions', ok: true },
  );
  const created = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'lp' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body['status'], 'Running');
  assert.equal((await call(p.url, 'POST', '/api/sandboxes/lp/keepalive', { ttl_seconds: 600 })).status, 200);
  const pod = await admin().get(`/api/v1/namespaces/${ns}/pods/sandbox-lp`);
  assert.ok(pod.metadata.annotations?.['sandbox.deer-flow/expires-at'], 'keepalive written to the pod (patch pods)');
  await eventually('owner reference (patch services)', async () =>
    (await admin().get(`/api/v1/namespaces/${ns}/services/sandbox-lp-svc`)).metadata.ownerReferences?.[0]?.uid === pod.metadata.uid
      ? true
      : undefined,
  );
  assert.equal((await call(p.url, 'GET', '/api/sandboxes/lp')).status, 200);
  assert.equal((await call(p.url, 'GET', '/api/sandboxes')).body['count'], 1);
  assert.equal((await fetch(`${p.url}/sandboxes/lp/v1/sandbox`)).status, 200, 'proxy');
  assert.equal((await call(p.url, 'DELETE', '/api/sandboxes/lp')).status, 200);
  await eventually('gone', async () => ((await objectsIn(ns)).pods.length === 0 ? true : undefined));

  const state = cluster();
  const sa = new KubeHttp(state.server, token, `${state.dir}/pki/apiserver.crt`);
  t.after(() => sa.close());
  await assert.rejects(sa.get(`/api/v1/namespaces/${ns}/secrets`), /403/);
  await assert.rejects(sa.get(`/api/v1/namespaces/${other}/pods`), /403/);
  await assert.rejects(
    sa.post(`/api/v1/namespaces/${other}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'x' },
      spec: { containers: [{ name: 'c', image: 'x' }] },
    }),
    /403/,
  );
});

test('pvc mode: /readyz names a missing or unbound claim, a sandbox on it stays Pending with the scheduler’s words, and runs once it is bound', async (t) => {
  const ns = await namespace(t, 'claims');
  const kube = admin();
  const p = await provisioner(t, ns, { SKILLS_PVC_NAME: 'skills', USERDATA_PVC_NAME: 'user-data' });
  await p.housekeeping();
  const claimsCheck = async () =>
    ((await call(p.url, 'GET', '/readyz')).body['checks'] as { name: string; ok: boolean; detail?: string }[]).find(
      (c) => c.name === 'claims',
    );
  const missing = await claimsCheck();
  assert.equal(missing?.ok, false);
  assert.match(
    String(missing?.detail),
    /PersistentVolumeClaim skills \(SKILLS_PVC_NAME\) does not exist.*PersistentVolumeClaim user-data \(USERDATA_PVC_NAME\) does not exist/,
  );

  // A sandbox on a missing claim is never Running: ?wait= answers early with the scheduler's reason.
  const waited = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'c1' });
  assert.equal(waited.status, 201);
  assert.equal(waited.body['status'], 'Pending');
  assert.equal(waited.body['reason'], 'Unschedulable');
  assert.match(String(waited.body['message']), /persistentvolumeclaim "skills" not found/);

  // The claims made, but not bound yet (no volume): still not Running, and /readyz says Pending.
  // (volumeFor below names each claim's volume `<namespace>-<claim>`.)
  for (const name of ['skills', 'user-data'])
    await kube.post(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, claimObject(name, `${ns}-${name}`));
  await p.housekeeping();
  assert.match(String((await claimsCheck())?.detail), /PersistentVolumeClaim skills \(SKILLS_PVC_NAME\) is Pending, not Bound/);
  const unbound = await eventually('the scheduler says the claims are unbound', async () => {
    const r = await call(p.url, 'GET', '/api/sandboxes/c1');
    return /unbound immediate PersistentVolumeClaims/.test(String(r.body['message'])) ? r : undefined;
  });
  assert.equal(unbound.body['status'], 'Pending');

  // Volumes for them: kube-controller-manager binds each claim, and the sandbox starts.
  for (const name of ['skills', 'user-data']) await volumeFor(t, ns, name);
  // (?wait= would answer at once: Unschedulable is a reason to stop waiting, until the scheduler retries.)
  await eventually(
    'c1 runs',
    async () => ((await call(p.url, 'GET', '/api/sandboxes/c1')).body['status'] === 'Running' ? true : undefined),
    30_000,
  );
  await p.housekeeping();
  assert.equal((await claimsCheck())?.ok, true);
});

test('SANDBOX_RUN_AS_NON_ROOT=true: a root image waits in CreateContainerConfigError with kubelet’s words; an image with a uid runs', async (t) => {
  const ns = await namespace(t, 'nonroot');
  const { log, lines } = captureLogs();
  const p = await provisioner(t, ns, { SANDBOX_RUN_AS_NON_ROOT: 'true' }, { log });
  assert.ok(
    lines.some((l) => /SANDBOX_RUN_AS_NON_ROOT=true: kubelet refuses/.test(l)),
    'said at start',
  );
  const refused = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'root' });
  assert.equal(refused.body['status'], 'Pending');
  assert.equal(refused.body['reason'], 'CreateContainerConfigError');
  assert.match(String(refused.body['message']), /container has runAsNonRoot and image will run as root \(pod: "sandbox-root_/);

  const settings = (body: unknown) => fetch(`${cluster().fakeNodeControl}/settings`, { method: 'POST', body: JSON.stringify(body) });
  const before = (await (await settings({})).json()) as { imageUsers: Record<string, string> };
  t.after(() => settings({ imageUsers: before.imageUsers }));
  assert.equal((await settings({ imageUsers: { ...before.imageUsers, [loadConfig({}).sandbox.image]: '1000' } })).status, 200);
  const runs = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'uid' });
  assert.equal(runs.body['status'], 'Running', JSON.stringify(runs.body));
});
