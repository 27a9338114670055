// Gateway mode over the in-memory API (test/fake-kube.ts): the HTTPRoute each sandbox gets, its status
// read from its parent Gateway's answer, a refusal said in the sandbox's reason, the reconciler's
// mending, and the start-up refusal without the Gateway API. The same flow through a real gateway
// (Traefik) is test/integration/gateway.test.ts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { StartupError } from '../../src/kube/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { start } from '../../src/service.ts';
import { FakeKube, type FakeObject } from '../fake-kube.ts';
import { call } from '../helpers.ts';

const NS = 'gw';
const env = {
  K8S_NAMESPACE: NS,
  HOST: '127.0.0.1',
  PORT: '0',
  SKILLS_HOST_PATH: '/skills',
  PROVISIONER_ALLOW_ANONYMOUS: 'true',
  SANDBOX_URL_MODE: 'gateway',
  SANDBOX_SERVICE_TYPE: 'ClusterIP',
  GATEWAY_PARENT_REFS: 'infra/public/http',
  GATEWAY_PUBLIC_URL: 'https://sandboxes.example.com/',
  PROXY_SIGNING_KEYS: 's'.repeat(32),
  RECONCILE_GRACE_SECONDS: '0',
};

/** What a gateway controller writes on a route it judged. */
const judged = (status: 'True' | 'False', reason: string, message = '') => ({
  parents: [
    {
      parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'infra', name: 'public', sectionName: 'http' },
      controllerName: 'example.net/gateway',
      conditions: [
        { type: 'Accepted', status, reason, message },
        { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: '' },
      ],
    },
  ],
});

async function setup(t: { after: (fn: () => Promise<void>) => void }) {
  const kube = new FakeKube([NS]);
  kube.gatewayApi = true;
  const service = await start(loadConfig(env), silentLogger(), { kube });
  t.after(() => service.stop(0));
  await service.view.synced;
  return { kube, service };
}

test('each sandbox gets an HTTPRoute on its capability path, owned by its pod; Running once the gateway accepts it', async (t) => {
  const { kube, service } = await setup(t);
  const created = await call(service.url, 'POST', '/api/sandboxes', { sandbox_id: 'g1' });
  assert.equal(created.status, 201);
  const url = String(created.body['sandbox_url']);
  const token = String(created.body['sandbox_token']);
  assert.equal(url, `https://sandboxes.example.com/s/g1.${token}`, 'the same shape as proxy mode, on the gateway');
  const route = kube.get('httproutes', NS, 'sandbox-g1') as FakeObject & { spec: Record<string, unknown> };
  assert.equal(route.metadata.ownerReferences?.[0]?.uid, kube.get('pods', NS, 'sandbox-g1')?.metadata.uid);
  assert.deepEqual(route.spec['parentRefs'], [
    { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'infra', name: 'public', sectionName: 'http' },
  ]);
  assert.deepEqual(route.spec['rules'], [
    {
      matches: [{ path: { type: 'PathPrefix', value: `/s/g1.${token}` } }],
      filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } }],
      backendRefs: [{ name: 'sandbox-g1-svc', port: 8080 }],
    },
  ]);

  kube.ready(NS, 'sandbox-g1');
  const waiting = await service.view.waitFor('g1', (r) => r?.reason === 'RoutePending', 2000);
  assert.equal(waiting?.status, 'Pending', 'the pod is Ready, the route not yet accepted');
  kube.put('httproutes', NS, { metadata: { name: 'sandbox-g1' }, status: judged('True', 'Accepted') });
  assert.equal((await call(service.url, 'GET', '/api/sandboxes/g1?wait=5')).body['status'], 'Running');

  // A refusal by the gateway shows in the status, with the gateway's words, and ends a wait at once.
  kube.put('httproutes', NS, {
    metadata: { name: 'sandbox-g1' },
    status: judged('False', 'NotAllowedByListeners', 'routes from namespace gw are not allowed'),
  });
  const refused = await call(service.url, 'GET', '/api/sandboxes/g1?wait=5');
  assert.deepEqual(
    [refused.body['status'], refused.body['reason'], refused.body['message']],
    ['Pending', 'NotAllowedByListeners', 'routes from namespace gw are not allowed'],
  );

  assert.equal((await call(service.url, 'DELETE', '/api/sandboxes/g1')).status, 200);
  assert.equal(kube.get('httproutes', NS, 'sandbox-g1'), undefined, 'the route goes with the sandbox');
});

test('a refused route leaves nothing behind; the reconciler mends a missing route and removes an orphaned one', async (t) => {
  const { kube, service } = await setup(t);
  kube.refuse('POST', /\/httproutes$/, 403, 'admission webhook "gateway.example.net" denied the request: hostname not allowed');
  const refused = await call(service.url, 'POST', '/api/sandboxes', { sandbox_id: 'r1' });
  assert.deepEqual([refused.status, refused.body['code'], refused.body['object']], [422, 'admission_denied', 'route']);
  assert.deepEqual([kube.list('pods', NS), kube.list('services', NS)], [[], []]);

  await call(service.url, 'POST', '/api/sandboxes', { sandbox_id: 'm1' });
  await kube.request('DELETE', `/apis/gateway.networking.k8s.io/v1/namespaces/${NS}/httproutes/sandbox-m1`);
  kube.put('httproutes', NS, { metadata: { name: 'sandbox-orphan', labels: { app: 'deer-flow-sandbox', 'sandbox-id': 'orphan' } } });
  await service.view.waitFor('orphan', (r) => r?.hasRoute === true, 2000);
  await service.view.waitFor('m1', (r) => r?.hasRoute === false, 2000);
  await service.housekeeping();
  assert.ok(kube.get('httproutes', NS, 'sandbox-m1'), 'the route is back');
  assert.equal(kube.get('httproutes', NS, 'sandbox-orphan'), undefined);
});

test('without the Gateway API the service refuses to start, naming what to install', async () => {
  const kube = new FakeKube([NS]);
  await assert.rejects(
    start(loadConfig(env), silentLogger(), { kube }),
    (err: unknown) => err instanceof StartupError && /standard-install\.yaml/.test(err.message),
  );
  assert.throws(() => loadConfig({ ...env, GATEWAY_PARENT_REFS: '' }), /gateway mode needs GATEWAY_PARENT_REFS/);
  assert.deepEqual(loadConfig({ ...env, GATEWAY_PARENT_REFS: 'sandboxes,infra/public/https' }).gateway?.parentRefs, [
    { namespace: NS, name: 'sandboxes' },
    { namespace: 'infra', name: 'public', sectionName: 'https' },
  ]);
  assert.throws(
    () => loadConfig({ ...env, GATEWAY_PARENT_REFS: 'Bad Name' }),
    /is not name, namespace\/name or namespace\/name\/sectionName of a Gateway/,
  );
});
