// Swapping the image in DeerFlow's Helm chart (bytedance/deer-flow deploy/helm/deer-flow): the chart's
// RBAC (written here from its templates: no `patch`), its environment, and its pod (uid 1000, a
// read-only root filesystem). The service must run DeerFlow's client sequence with no 5xx, degrade
// what needs `patch`, say so in /readyz, and leave nothing behind.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { admin, boundClaim, call, eventually, namespace, objectsIn, serviceAccountKubeconfig, spawnProvisioner } from '../helpers.ts';

const SA = 'deer-flow-provisioner';

/** The chart's templates/provisioner-rbac.yaml, verbatim in substance. */
async function applyChartRbac(t: { after: (fn: () => Promise<void>) => void }, ns: string): Promise<void> {
  const kube = admin();
  const rbac = '/apis/rbac.authorization.k8s.io/v1';
  const subject = [{ kind: 'ServiceAccount', name: SA, namespace: ns }];
  await kube.post(`/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: SA } });
  await kube.post(`${rbac}/namespaces/${ns}/roles`, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { name: SA },
    rules: [{ apiGroups: [''], resources: ['pods', 'pods/log', 'services'], verbs: ['get', 'list', 'watch', 'create', 'delete'] }],
  });
  await kube.post(`${rbac}/namespaces/${ns}/rolebindings`, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: SA },
    subjects: subject,
    roleRef: { kind: 'Role', name: SA, apiGroup: 'rbac.authorization.k8s.io' },
  });
  const clusterRole = `${ns}-provisioner-ns`;
  await kube.post(`${rbac}/clusterroles`, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: clusterRole },
    rules: [{ apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'create'] }],
  });
  await kube.post(`${rbac}/clusterrolebindings`, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: clusterRole },
    subjects: subject,
    roleRef: { kind: 'ClusterRole', name: clusterRole, apiGroup: 'rbac.authorization.k8s.io' },
  });
  t.after(async () => {
    await kube.delete(`${rbac}/clusterrolebindings/${clusterRole}`);
    await kube.delete(`${rbac}/clusterroles/${clusterRole}`);
  });
}

test('DeerFlow’s Helm chart: its RBAC and environment, as uid 1000 writing nothing: the client sequence and an expiry work, patch degrades, nothing is left', async (t) => {
  const ns = await namespace(t, 'chart');
  await applyChartRbac(t, ns);
  // The chart's home persistence claim, as its storage class would have bound it.
  await boundClaim(t, ns, 'deer-flow-home');
  const key = { 'x-api-key': 'chart-key' };
  const { url } = await spawnProvisioner(
    t,
    ns,
    {
      // The chart's environment: ClusterIP sandboxes, user data on the home claim, skills on host paths.
      KUBECONFIG_PATH: await serviceAccountKubeconfig(t, ns, SA),
      SANDBOX_SERVICE_TYPE: 'ClusterIP',
      SANDBOX_CONTAINER_PORT: '8080',
      USERDATA_PVC_NAME: 'deer-flow-home',
      SKILLS_HOST_PATH: undefined,
      THREADS_HOST_PATH: undefined,
      NODE_HOST: undefined,
      PROVISIONER_API_KEY: 'chart-key',
      PROVISIONER_ALLOW_ANONYMOUS: undefined,
      // Short, to see an expiry in this test.
      SANDBOX_TTL_SECONDS: '4',
      SANDBOX_SWEEP_SECONDS: '1',
    },
    { restricted: true },
  );
  const statuses: number[] = [];
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await call(url, method, path, body, key);
    statuses.push(res.status);
    return res;
  };

  const ready = await call(url, 'GET', '/readyz');
  assert.equal(ready.status, 200, 'degraded, not unready');
  const access = (ready.body['checks'] as { name: string; ok: boolean; detail?: string }[]).find((c) => c.name === 'permissions');
  assert.equal(access?.ok, false);
  assert.match(
    String(ready.body['detail']),
    /degraded: activity and keepalive .*needs patch on pods; add to the Role: \{apiGroups: \[""\], resources: \["pods"\], verbs: \["patch"\]\}/,
  );
  assert.match(String(ready.body['detail']), /degraded: the service owned by its pod .*needs patch on services/);
  assert.doesNotMatch(String(ready.body['detail']), /missing:/, 'every essential verb is granted');

  // DeerFlow's client: create, poll until Running, get, list, keepalive.
  assert.equal((await api('POST', '/api/sandboxes', { sandbox_id: 'keep', thread_id: 't-1', user_id: 'alice' })).status, 201);
  await eventually(
    'Running',
    async () => ((await api('GET', '/api/sandboxes/keep')).body['status'] === 'Running' ? true : undefined),
    20_000,
  );
  const got = await api('GET', '/api/sandboxes/keep');
  assert.equal(got.body['sandbox_url'], `http://sandbox-keep-svc.${ns}.svc.cluster.local:8080`);
  const kept = await api('POST', '/api/sandboxes/keep/keepalive', { ttl_seconds: 3600 });
  assert.equal(kept.status, 200);
  assert.ok(Date.parse(String(kept.body['expires_at'])) > Date.now() + 3000_000, 'the new expiry, kept in memory');
  assert.equal((await api('POST', '/api/sandboxes', { sandbox_id: 'exp', thread_id: 't-2', user_id: 'alice' })).status, 201);
  assert.equal((await api('GET', '/api/sandboxes')).body['count'], 2);

  // The TTL (4 s) expires `exp`; `keep`, kept alive in memory, stays.
  await eventually('exp expired', async () => (!(await objectsIn(ns)).pods.includes('sandbox-exp') ? true : undefined), 20_000);
  await new Promise((r) => setTimeout(r, 1500)); // more sweeps
  assert.equal((await api('GET', '/api/sandboxes/keep')).status, 200);
  const pod = await admin().get(`/api/v1/namespaces/${ns}/pods/sandbox-keep`);
  assert.equal(pod.metadata.annotations?.['sandbox.deer-flow/last-activity'], undefined, 'nothing was patched');
  const svc = await admin().get(`/api/v1/namespaces/${ns}/services/sandbox-keep-svc`);
  assert.equal(svc.metadata.ownerReferences, undefined);
  const claim = (pod.spec as { volumes: { name: string; persistentVolumeClaim?: { claimName: string } }[] }).volumes.find(
    (v) => v.name === 'user-data',
  );
  assert.equal(claim?.persistentVolumeClaim?.claimName, 'deer-flow-home');

  assert.equal((await api('DELETE', '/api/sandboxes/keep')).status, 200);
  await eventually('nothing left', async () => {
    const o = await objectsIn(ns);
    return o.pods.length === 0 && o.services.length === 0 ? true : undefined;
  });
  assert.deepEqual(
    statuses.filter((s) => s >= 500),
    [],
    'no 5xx',
  );
});
