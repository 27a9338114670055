// Gateway mode over the in-memory API (test/fake-kube.ts): the HTTPRoute each sandbox gets, its status
// read from its parent Gateway's answer, a refusal said in the sandbox's reason, the reconciler's
// mending, and the start-up refusal without the Gateway API. The same flow through a real gateway
// (Traefik) is test/integration/gateway.test.ts.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { StartupError } from '../../src/kube/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { start } from '../../src/service.ts';
import { FakeKube, type FakeObject } from '../fake-kube.ts';
import { call, eventually } from '../helpers.ts';

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
  // Loopback only: setup() puts its own data plane here.
  GATEWAY_PUBLIC_URL: 'http://127.0.0.1:9/',
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

/**
 * The gateway's data plane on loopback: `503 no available server` (Traefik's answer for a route it has
 * not programmed yet) until `serve` is set, then the sandbox's answer; it counts what it was asked.
 */
async function dataPlane(t: { after: (fn: () => Promise<void>) => void }) {
  const plane = { serve: false, asked: [] as string[], url: '' };
  const server = createServer((req, res) => {
    plane.asked.push(req.url ?? '');
    res.writeHead(plane.serve ? 200 : 503).end(plane.serve ? '{"success":true}' : 'no available server');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  plane.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return plane;
}

async function setup(t: { after: (fn: () => Promise<void>) => void }, extra: Record<string, string> = {}) {
  const plane = await dataPlane(t);
  const kube = new FakeKube([NS]);
  kube.gatewayApi = true;
  const service = await start(loadConfig({ ...env, GATEWAY_PUBLIC_URL: `${plane.url}/`, ...extra }), silentLogger(), { kube });
  t.after(() => service.stop(0));
  await service.view.synced;
  plane.serve = true;
  return { kube, service, plane };
}

test('each sandbox gets an HTTPRoute on its capability path, owned by its pod; Running once the gateway accepts it', async (t) => {
  const { kube, service, plane } = await setup(t);
  const created = await call(service.url, 'POST', '/api/sandboxes', { sandbox_id: 'g1' });
  assert.equal(created.status, 201);
  const url = String(created.body['sandbox_url']);
  const token = String(created.body['sandbox_token']);
  assert.equal(url, `${plane.url}/s/g1.${token}`, 'the same shape as proxy mode, on the gateway');
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
  // Accepted, and the data plane not serving it yet: Running waits until a request through it gets there.
  plane.serve = false;
  kube.put('httproutes', NS, { metadata: { name: 'sandbox-g1' }, status: judged('True', 'Accepted') });
  const unserved = await service.view.waitFor('g1', (r) => r?.reason === 'RouteNotServed', 2000);
  assert.equal(unserved?.status, 'Pending');
  await eventually('the gateway asked', async () => (plane.asked.includes(`/s/g1.${token}/v1/sandbox`) ? true : undefined));
  plane.serve = true;
  const served = await call(service.url, 'GET', '/api/sandboxes/g1?wait=5');
  assert.equal(served.body['status'], 'Running');
  assert.equal(typeof (served.body['timings'] as Record<string, unknown>)['route_served_s'], 'number');

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
