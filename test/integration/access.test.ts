// Who reaches a sandbox: capability URLs (proxy mode), host routing with a capability cookie, the plain
// path for API-key holders, and the cluster-side guard (the ValidatingAdmissionPolicy in deploy/).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { KubeHttp } from '../../tools/cluster/kube-http.ts';
import {
  admin,
  call,
  captureLogs,
  cluster,
  echo,
  eventually,
  namespace,
  objectsIn,
  provisioner,
  raw,
  serviceAccountKubeconfig,
  serviceAccountToken,
} from '../helpers.ts';

const root = join(import.meta.dirname, '..', '..');
const KEYS = { old: 'o'.repeat(32), current: 'c'.repeat(32) };
const closed = { PROVISIONER_API_KEY: 'api-key', PROVISIONER_ALLOW_ANONYMOUS: 'false' };
const key = { 'x-api-key': 'api-key' };

test('DeerFlow’s client works unchanged through a capability URL (poll, exec, file, SSE, WebSocket); anything else is an unknown sandbox', async (t) => {
  const ns = await namespace(t, 'caps');
  const { log, lines } = captureLogs();
  const p = await provisioner(t, ns, { ...closed, SANDBOX_URL_MODE: 'proxy', PROXY_SIGNING_KEYS: `${KEYS.current},${KEYS.old}` }, { log });
  const created = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'df', thread_id: 'th' }, key);
  assert.equal(created.status, 201);
  const url = String(created.body['sandbox_url']);
  const token = String(created.body['sandbox_token']);
  assert.equal(url, `${p.url}/s/df.${token}`);

  // DeerFlow's RemoteSandboxBackend: poll <sandbox_url>/v1/sandbox, then exec and files, with no API key.
  await eventually('ready', async () => ((await fetch(`${url}/v1/sandbox`)).status === 200 ? true : undefined), 20_000);
  const exec = await fetch(`${url}/v1/shell/exec`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"command":"ls"}',
  });
  assert.equal(((await exec.json()) as { data: { output: string } }).data.output, 'ls');
  const file = await fetch(`${url}/v1/file/download?size=100000`);
  assert.equal((await file.arrayBuffer()).byteLength, 100_000);
  const sse = await fetch(`${url}/v1/stream?count=2&interval=20`, { headers: { accept: 'text/event-stream' } });
  assert.equal((await sse.text()).match(/^event: output$/gm)?.length, 2);
  assert.equal(await echo(`${url.replace('http', 'ws')}/v1/shell/ws`), 'ping');

  // Without a valid capability (and without the API key), every form answers as for an unknown sandbox.
  const unknown = await raw(p.url, 'GET', `/s/nope.${token}/v1/sandbox`);
  assert.equal(unknown.status, 404);
  const unknownDetail = (id: string) => JSON.stringify({ detail: `Sandbox '${id}' not found`, code: 'sandbox_not_found' });
  assert.equal(unknown.body, unknownDetail('nope'));
  for (const path of [
    `/s/df.${'A'.repeat(32)}/v1/sandbox`,
    '/s/df/v1/sandbox',
    `/s/df.${token.slice(1)}/v1/sandbox`,
    '/sandboxes/df/v1/sandbox',
  ]) {
    const res = await raw(p.url, 'GET', path);
    assert.deepEqual([res.status, res.body], [404, unknownDetail('df')], path);
  }
  await assert.rejects(echo(`${p.url.replace('http', 'ws')}/sandboxes/df/v1/shell/ws`), /upgrade refused: 404/);
  // The plain path stays for API-key holders.
  assert.equal((await raw(p.url, 'GET', '/sandboxes/df/v1/sandbox', key)).status, 200);
  assert.equal(await echo(`${p.url.replace('http', 'ws')}/sandboxes/df/v1/shell/ws`, key), 'ping');

  // Rotation: a replica whose first key is new still accepts URLs signed with the old one.
  const rotated = await provisioner(t, ns, {
    ...closed,
    SANDBOX_URL_MODE: 'proxy',
    PROXY_SIGNING_KEYS: `${'n'.repeat(32)},${KEYS.current}`,
  });
  await eventually('seen', () => rotated.view.get('df'));
  assert.equal((await raw(rotated.url, 'GET', `/s/df.${token}/v1/sandbox`)).status, 200);
  assert.notEqual(
    (await call(rotated.url, 'GET', '/api/sandboxes/df', undefined, key)).body['sandbox_token'],
    token,
    'new URLs use the new key',
  );

  // A sandbox deleted and made again has a new pod, so the old URL stops working.
  await call(p.url, 'DELETE', '/api/sandboxes/df', undefined, key);
  await eventually('gone', () => (p.view.get('df') ? undefined : true));
  const again = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'df' }, key);
  assert.notEqual(again.body['sandbox_token'], token);
  assert.equal((await raw(p.url, 'GET', `/s/df.${token}/v1/sandbox`)).status, 404);
  assert.equal((await fetch(`${String(again.body['sandbox_url'])}/v1/sandbox`)).status, 200);

  // Capabilities never reach logs or metrics.
  const metrics = await (await fetch(`${p.url}/metrics`)).text();
  for (const secret of [token, String(again.body['sandbox_token'])]) {
    assert.ok(!lines.some((l) => l.includes(secret)), 'not in the log');
    assert.ok(!metrics.includes(secret), 'not in the metrics');
  }
});

test('host routing: <id><PROXY_HOST_SUFFIX> with the capability as a one-time query then an HttpOnly cookie; root-relative pages work', async (t) => {
  const ns = await namespace(t, 'hosts');
  const p = await provisioner(t, ns, {
    ...closed,
    SANDBOX_URL_MODE: 'host',
    PROXY_HOST_SUFFIX: '.sandboxes.test',
    PROXY_SIGNING_KEYS: KEYS.current,
  });
  const created = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'vnc' }, key);
  const port = new URL(p.url).port;
  assert.equal(created.body['sandbox_url'], `http://vnc.sandboxes.test:${port}`);
  const token = String(created.body['sandbox_token']);
  const host = { host: `vnc.sandboxes.test:${port}` };

  // First request: the token in the query becomes a cookie of this host, and the URL loses it.
  const first = await raw(p.url, 'GET', `/vnc/index.html?sandbox_token=${token}&view=1`, host);
  assert.equal(first.status, 302);
  assert.equal(first.headers['location'], '/vnc/index.html?view=1');
  assert.deepEqual(first.headers['set-cookie'], [`sandbox_token_vnc=${token}; Path=/; HttpOnly; SameSite=Lax`]);
  const cookie = { ...host, cookie: `theme=dark; sandbox_token_vnc=${token}` };
  const page = await raw(p.url, 'GET', '/vnc/index.html?view=1', cookie);
  assert.equal(page.status, 200);
  // The page's root-relative script and WebSocket load from the sandbox's own origin.
  const script = /<script src="([^"]+)"/.exec(page.body)?.[1];
  assert.equal(script, '/vnc/app.js');
  const js = await raw(p.url, 'GET', script, cookie);
  assert.equal(js.status, 200);
  assert.match(js.body, /\/websockify/);
  assert.equal(await echo(`ws://127.0.0.1:${port}/websockify`, cookie), 'ping');
  // The sandbox sees its own cookies, never the capability.
  const seen = JSON.parse((await raw(p.url, 'GET', '/echo?a=1', cookie)).body) as { url: string; headers: Record<string, string> };
  assert.equal(seen.url, '/echo?a=1');
  assert.equal(seen.headers['cookie'], 'theme=dark');
  // Without the cookie, or with another sandbox's token: unknown sandbox.
  assert.equal((await raw(p.url, 'GET', '/vnc/index.html', host)).status, 404);
  assert.equal((await raw(p.url, 'GET', '/vnc/index.html', { ...host, cookie: `sandbox_token_vnc=${'x'.repeat(32)}` })).status, 404);
  await assert.rejects(echo(`ws://127.0.0.1:${port}/websockify`, host), /upgrade refused: 404/);

  // Through the path prefix the same page's root-relative URLs miss: the reason host routing exists.
  const viaPath = await raw(p.url, 'GET', '/sandboxes/vnc/vnc/index.html', key);
  assert.equal(viaPath.status, 200);
  assert.equal((await raw(p.url, 'GET', '/vnc/app.js', key)).status, 404, '/vnc/app.js resolves to the provisioner, not the sandbox');
});

test('the admission policy in deploy/: only the provisioner’s ServiceAccount makes sandbox objects, and only safe ones', async (t) => {
  const ns = await namespace(t, 'guard');
  const kubectl = (...args: string[]) =>
    spawnSync(cluster().kubectl, ['--kubeconfig', cluster().kubeconfig, ...args], { encoding: 'utf8' });
  const guard = join(root, 'deploy/components/sandbox-guard');
  const applied = kubectl('apply', '-f', join(guard, 'policy.yaml'), '-f', join(guard, 'binding.yaml'));
  assert.equal(applied.status, 0, applied.stderr);
  t.after(() => void kubectl('delete', '--ignore-not-found', '-f', join(guard, 'binding.yaml'), '-f', join(guard, 'policy.yaml')));
  const base = kubectl('apply', '-n', ns, '-f', join(root, 'deploy/base/serviceaccount.yaml'), '-f', join(root, 'deploy/base/rbac.yaml'));
  assert.equal(base.status, 0, base.stderr);
  // The provisioner's ConfigMap: its settings are the policy's parameters.
  const settings = {
    SKILLS_HOST_PATH: '/srv/skills',
    DEER_FLOW_HOST_BASE_DIR: '/srv/deer-flow',
    THREADS_HOST_PATH: '/srv/deer-flow/threads',
  };
  const kube = admin();
  await kube.post(`/api/v1/namespaces/${ns}/configmaps`, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'sandbox-provisioner' },
    data: { ...settings, PROVISIONER_SERVICE_ACCOUNT: 'sandbox-provisioner' },
  });
  const lookalike = (name: string, spec: Record<string, unknown> = {}) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'deer-flow-sandbox', 'sandbox-id': name.replace(/^sandbox-/, '') } },
    spec: { automountServiceAccountToken: false, containers: [{ name: 'sandbox', image: 'x' }], ...spec },
  });
  // Policies take effect within a second or two of being created.
  await eventually(
    'the policy is in force',
    async () =>
      (await kube.post(`/api/v1/namespaces/${ns}/pods`, lookalike('sandbox-probe')).then(
        async () => {
          await kube.delete(`/api/v1/namespaces/${ns}/pods/sandbox-probe`, { gracePeriodSeconds: 0 });
          return undefined;
        },
        (err: Error) => err.message,
      )) ?? undefined,
  );

  // The provisioner's own creates pass, in both skills layouts and both security profiles.
  const kubeconfig = await serviceAccountKubeconfig(t, ns, 'sandbox-provisioner');
  const as = (env: Record<string, string>) => provisioner(t, ns, { KUBECONFIG_PATH: kubeconfig, CREATE_NAMESPACE: 'false', ...env });
  const layouts: Record<string, string>[] = [
    { SKILLS_HOST_PATH: settings.SKILLS_HOST_PATH, THREADS_HOST_PATH: settings.THREADS_HOST_PATH },
    { SKILLS_HOST_PATH: '', DEER_FLOW_HOST_BASE_DIR: settings.DEER_FLOW_HOST_BASE_DIR, THREADS_HOST_PATH: settings.THREADS_HOST_PATH },
  ];
  for (const [i, layout] of layouts.entries()) {
    for (const profile of ['reference', 'hardened']) {
      const p = await as({ ...layout, SANDBOX_SECURITY_PROFILE: profile });
      const res = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: `ok-${i}-${profile}` });
      assert.equal(res.status, 201, `layout ${i}, ${profile}: ${JSON.stringify(res.body)}`);
    }
  }

  // A look-alike by another identity (here: the cluster admin) is refused, created or changed.
  await assert.rejects(
    kube.post(`/api/v1/namespaces/${ns}/pods`, lookalike('sandbox-fake')),
    /only the sandbox provisioner .* may create or change sandbox pods/,
  );
  await assert.rejects(
    kube.post(`/api/v1/namespaces/${ns}/services`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'sandbox-fake-svc', labels: { app: 'deer-flow-sandbox', 'sandbox-id': 'fake' } },
      spec: { selector: { 'sandbox-id': 'fake' }, ports: [{ port: 8080 }] },
    }),
    /only the sandbox provisioner/,
  );
  await assert.rejects(
    kube.mergePatch(`/api/v1/namespaces/${ns}/pods/sandbox-ok-0-reference`, { metadata: { labels: { 'sandbox-id': 'other' } } }),
    /only the sandbox provisioner/,
  );
  await kube.post(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'not-a-sandbox' },
    spec: { containers: [{ name: 'c', image: 'x' }] },
  });

  // Each forbidden shape is refused, even from the provisioner's identity.
  const sa = new KubeHttp(cluster().server, await saToken(ns), join(cluster().dir, 'pki', 'apiserver.crt'));
  t.after(() => sa.close());
  const forbidden: [string, Record<string, unknown>, RegExp][] = [
    ['privileged', { containers: [{ name: 'sandbox', image: 'x', securityContext: { privileged: true } }] }, /privileged/],
    ['hostnet', { hostNetwork: true }, /host's network, PID or IPC/],
    ['hostpid', { hostPID: true }, /host's network, PID or IPC/],
    ['hostipc', { hostIPC: true }, /host's network, PID or IPC/],
    ['hostpath', { volumes: [{ name: 'etc', hostPath: { path: '/etc' } }] }, /host paths only under .*refused: \/etc/],
    // The API server's own validation refuses '..' before admission; the policy refuses it too.
    ['traversal', { volumes: [{ name: 'up', hostPath: { path: '/srv/skills/../../etc' } }] }, /must not contain '\.\.'|refused/],
    ['token', { automountServiceAccountToken: true }, /ServiceAccount token/],
  ];
  for (const [name, spec, message] of forbidden) {
    await assert.rejects(sa.post(`/api/v1/namespaces/${ns}/pods`, lookalike(`sandbox-bad-${name}`, spec)), message, name);
  }

  // A refusal of the provisioner's own request is a 422 admission_denied with the policy's words, and
  // leaves nothing behind.
  const misconfigured = await as({ SKILLS_HOST_PATH: '/var/lib/elsewhere', THREADS_HOST_PATH: settings.THREADS_HOST_PATH });
  const refused = await call(misconfigured.url, 'POST', '/api/sandboxes', { sandbox_id: 'nope' });
  assert.equal(refused.status, 422);
  assert.equal(refused.body['code'], 'admission_denied');
  assert.match(String(refused.body['detail']), /host paths only under .*refused: \/var\/lib\/elsewhere/);
  await eventually('nothing left of it', async () => {
    const o = await objectsIn(ns);
    return !o.pods.includes('sandbox-nope') && !o.services.includes('sandbox-nope-svc') ? true : undefined;
  });

  // Uninstalled with its sandboxes kept (docs/deploy.md): the ConfigMap goes, the guard stays and fails
  // closed. Before, its binding allowed every look-alike once the ConfigMap was gone.
  await kube.delete(`/api/v1/namespaces/${ns}/configmaps/sandbox-provisioner`);
  await eventually('the guard sees the ConfigMap gone', () =>
    kube.post(`/api/v1/namespaces/${ns}/pods`, lookalike('sandbox-after')).then(
      async () => {
        await kube.delete(`/api/v1/namespaces/${ns}/pods/sandbox-after`, { gracePeriodSeconds: 0 });
        return undefined;
      },
      (err: Error) => err.message,
    ),
  ).then((message) => assert.match(message, /no params found for policy binding with `Deny` parameterNotFoundAction/));
  await assert.rejects(sa.post(`/api/v1/namespaces/${ns}/pods`, lookalike('sandbox-by-sa')), /no params found/);
  // A namespace where no provisioner ever ran is guarded the same way; deletes stay open to the operator.
  const elsewhere = await namespace(t, 'guard-none');
  await assert.rejects(kube.post(`/api/v1/namespaces/${elsewhere}/pods`, lookalike('sandbox-x')), /no params found/);
  await kube.delete(`/api/v1/namespaces/${ns}/pods/sandbox-ok-0-reference`, { gracePeriodSeconds: 0 });
  await kube.delete(`/api/v1/namespaces/${ns}/services/sandbox-ok-0-reference-svc`);
});

const saToken = (ns: string): Promise<string> => serviceAccountToken(ns, 'sandbox-provisioner');
