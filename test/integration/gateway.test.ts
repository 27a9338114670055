// Gateway mode through a real gateway: Traefik v3.7 (tools/cluster/gateway.ts), serving the cluster's
// Gateway, routing to the sandboxes' pods in the pod network by the HTTPRoutes the provisioner makes.
// DeerFlow's client sees no difference from proxy mode.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gateway } from '../../tools/cluster/gateway.ts';
import { createSandbox, execute, waitForSandboxReady } from '../../tools/deerflow-client.ts';
import { admin, call, cluster, echo, eventually, namespace, provisioner } from '../helpers.ts';

async function setup(t: { after: (fn: () => Promise<void> | void) => void }, prefix: string, env: Record<string, string> = {}) {
  const gw = await gateway(cluster());
  const ns = await namespace(t, prefix);
  const p = await provisioner(t, ns, {
    SANDBOX_URL_MODE: 'gateway',
    GATEWAY_PARENT_REFS: gw.parentRef,
    GATEWAY_PUBLIC_URL: gw.url,
    SANDBOX_SERVICE_TYPE: 'ClusterIP',
    PROXY_SIGNING_KEYS: 'g'.repeat(32),
    ...env,
  });
  return { gw, ns, p };
}

test('gateway mode: DeerFlow’s whole sequence through Traefik (create, poll, exec, SSE, WebSocket shell, download, delete)', async (t) => {
  const { gw, ns, p } = await setup(t, 'gateway');
  const sandbox = await createSandbox(p.url, { sandbox_id: 'gw1', thread_id: 'th' });
  const url = sandbox.sandbox_url;
  assert.match(url, new RegExp(`^${gw.url}/s/gw1\\.[A-Za-z0-9_-]{32}$`), 'the proxy mode shape, on the gateway’s address');
  const route = await admin().get(`/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/httproutes/sandbox-gw1`);
  assert.equal(route.metadata.ownerReferences?.[0]?.kind, 'Pod');

  assert.equal(await waitForSandboxReady(url, 60), true);
  assert.equal(await execute(url, 'uname -a'), 'uname -a');
  const sse = await fetch(`${url}/v1/stream?count=3&interval=20`, { headers: { accept: 'text/event-stream' } });
  assert.equal((await sse.text()).match(/^event: output$/gm)?.length, 3);
  assert.equal(await echo(`${url.replace('http', 'ws')}/v1/shell/ws`), 'ping');
  const file = await fetch(`${url}/v1/file/download?size=1000000`);
  assert.equal((await file.arrayBuffer()).byteLength, 1_000_000);
  const status = await call(p.url, 'GET', '/api/sandboxes/gw1');
  assert.equal(status.body['status'], 'Running');

  // Only the capability opens the way: the gateway answers anything else with its own 404.
  assert.equal((await fetch(`${gw.url}/s/gw1.${'A'.repeat(32)}/v1/sandbox`)).status, 404);
  assert.equal((await fetch(`${gw.url}/s/nope.${url.split('.').at(-1)}/v1/sandbox`)).status, 404);

  assert.equal((await call(p.url, 'DELETE', '/api/sandboxes/gw1')).status, 200);
  await eventually('the route is gone', async () =>
    (await admin().find(`/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/httproutes/sandbox-gw1`)) ? undefined : true,
  );
  await eventually('the gateway stops routing', async () => ((await fetch(`${url}/v1/sandbox`)).status === 404 ? true : undefined));
});

test('gateway mode: a sandbox made again gets a new URL, and the old one is dead', async (t) => {
  const { p } = await setup(t, 'gateway-again');
  const first = await createSandbox(p.url, { sandbox_id: 'again' });
  assert.equal(await waitForSandboxReady(first.sandbox_url, 60), true);
  await call(p.url, 'DELETE', '/api/sandboxes/again');
  await eventually('gone', async () => ((await call(p.url, 'GET', '/api/sandboxes/again')).status === 404 ? true : undefined));
  const second = await createSandbox(p.url, { sandbox_id: 'again' });
  assert.notEqual(second.sandbox_url, first.sandbox_url);
  assert.equal(await waitForSandboxReady(second.sandbox_url, 60), true);
  assert.equal((await fetch(`${first.sandbox_url}/v1/sandbox`)).status, 404);
});

test('gateway mode: a route the gateway refuses says why in status, ?wait= and the event stream; never a silent 404', async (t) => {
  const gw = await gateway(cluster());
  const { p } = await setup(t, 'gateway-refused', { GATEWAY_PARENT_REFS: `${gw.parentRef}/no-such-listener` });
  const waited = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'refused' });
  assert.equal(waited.status, 201);
  assert.equal(waited.body['status'], 'Pending');
  assert.equal(waited.body['reason'], 'NoMatchingParent', 'Traefik’s own reason');
  assert.match(String(waited.body['message']), /refused|listener|parent/i);
  const events = await fetch(`${p.url}/api/sandboxes/refused/events`, { signal: AbortSignal.timeout(5000) });
  const first = (await events.body?.getReader().read())?.value;
  assert.match(new TextDecoder().decode(first), /NoMatchingParent/);
});
