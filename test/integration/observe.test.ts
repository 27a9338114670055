// Deploy and observe: manifests validated by the real API server, the Dockerfile, metrics, logs and the
// OpenAPI document against live answers.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { RbacV1Subject, V1DaemonSet, V1Deployment, V1ValidatingAdmissionPolicyBinding } from '@kubernetes/client-node';
import type { Wire } from '../../src/domain/wire.ts';
import type { KubeObject } from '../../tools/cluster/kube-http.ts';
import { admin, call, captureLogs, cluster, namespace, provisioner } from '../helpers.ts';

const root = join(import.meta.dirname, '..', '..');

test('kubectl apply -k deploy/overlays/{dev,production} --dry-run=server passes', async () => {
  if (!(await admin().find('/api/v1/namespaces/deer-flow'))) {
    await admin().post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'deer-flow' } });
  }
  for (const overlay of ['dev', 'production']) {
    const run = spawnSync(
      cluster().kubectl,
      ['--kubeconfig', cluster().kubeconfig, 'apply', '-k', join(root, 'deploy', 'overlays', overlay), '--dry-run=server'],
      { encoding: 'utf8' },
    );
    assert.equal(run.status, 0, `${overlay}: ${run.stderr}`);
    for (const kind of [
      'role.rbac.authorization.k8s.io/sandbox-provisioner',
      'deployment.apps/sandbox-provisioner',
      'service/provisioner',
      'configmap/sandbox-provisioner-[a-z0-9]{10}',
    ]) {
      assert.match(run.stdout, new RegExp(`${kind.replace('.', '\\.')} .*\\(server dry run\\)`), `${overlay}: ${kind}`);
    }
    if (overlay === 'production') {
      for (const kind of [
        'poddisruptionbudget.policy/sandbox-provisioner',
        'networkpolicy.networking.k8s.io/sandboxes',
        'persistentvolumeclaim/deer-flow-user-data',
      ])
        assert.match(run.stdout, new RegExp(kind.replace('.', '\\.')));
    }
  }
});

test('each overlay with the optional components (gateway, image-prepull, namespace-creator) passes a server-side dry run, in another namespace', async (t) => {
  const ns = await namespace(t, 'components');
  const dir = mkdtempSync(join(tmpdir(), 'components-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const overlay of ['dev', 'production']) {
    // A user's overlay: the project's one, its opt-in components, and a namespace of the user's own.
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      [
        'apiVersion: kustomize.config.k8s.io/v1beta1',
        'kind: Kustomization',
        `namespace: ${ns}`,
        `resources: [${relative(dir, join(root, 'deploy', 'overlays', overlay))}]`,
        'components:',
        ...['gateway', 'image-prepull', 'namespace-creator'].map((c) => `  - ${relative(dir, join(root, 'deploy', 'components', c))}`),
        '',
      ].join('\n'),
    );
    const run = spawnSync(cluster().kubectl, ['--kubeconfig', cluster().kubeconfig, 'apply', '-k', dir, '--dry-run=server', '-o', 'json'], {
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, `${overlay}: ${run.stderr}`);
    const items = (
      JSON.parse(run.stdout) as {
        items: (KubeObject & { kind: string; data?: Record<string, string>; subjects?: Wire<RbacV1Subject>[] })[];
      }
    ).items;
    const kinds = new Set(items.map((o) => `${o.kind}/${o.metadata.name}`));
    for (const k of [
      'Gateway/sandboxes',
      'Role/sandbox-provisioner-gateway',
      'DaemonSet/sandbox-image-prepull',
      'ClusterRole/sandbox-provisioner-nodes',
    ])
      assert.ok(kinds.has(k), `${overlay}: ${k}`);
    const config = items.find((o) => o.kind === 'ConfigMap')?.data ?? {};
    assert.equal(config['SANDBOX_URL_MODE'], 'gateway');
    // Nothing stays behind in deer-flow: every namespaced object and every binding's subject is in the user's namespace.
    for (const o of items) {
      if (o.metadata.namespace !== undefined) assert.equal(o.metadata.namespace, ns, `${overlay}: ${o.kind}/${o.metadata.name}`);
      for (const s of o.subjects ?? []) assert.equal(s.namespace, ns, `${overlay}: ${o.kind}/${o.metadata.name} subject`);
    }
    // The sandbox image the DaemonSet pulls is the one the provisioner runs.
    const daemonSet = items.find((o) => o.kind === 'DaemonSet') as unknown as Wire<V1DaemonSet>;
    assert.equal(daemonSet.spec?.template.spec?.initContainers?.[0]?.image, config['SANDBOX_IMAGE']);
    // The ConfigMap's name carries a hash of its content, so a change rolls the pods; the guard's binding
    // follows it, so the guard and the pods read the same values.
    const configMap = items.find((o) => o.kind === 'ConfigMap')?.metadata.name ?? '';
    assert.match(configMap, /^sandbox-provisioner-[a-z0-9]{10}$/);
    const binding = items.find((o) => o.kind === 'ValidatingAdmissionPolicyBinding') as unknown as Wire<V1ValidatingAdmissionPolicyBinding>;
    assert.equal(binding.spec?.paramRef?.name, configMap);
    const deployment = items.find((o) => o.kind === 'Deployment') as unknown as Wire<V1Deployment>;
    const container = deployment.spec?.template.spec?.containers[0];
    assert.equal(container?.envFrom?.[0]?.configMapRef?.name, configMap);
    // The sandbox namespace is the pods' own (downward API), and no address names deer-flow.
    assert.deepEqual(container?.env?.find((e) => e.name === 'K8S_NAMESPACE')?.valueFrom, {
      fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' },
    });
    assert.doesNotMatch(JSON.stringify(items), /deer-flow\.svc|"namespace":"deer-flow"/, overlay);
  }
});

test('the Dockerfile names files that exist, runs src/main.ts as uid 1000 on Node 24, and has a health check', () => {
  const dockerfile = readFileSync(join(root, 'deploy', 'Dockerfile'), 'utf8');
  const copies = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => (m[1] ?? '').split(/\s+/));
  assert.ok(copies.length >= 3);
  for (const file of copies) assert.ok(existsSync(join(root, file)), `COPY ${file}`);
  const cmd = /^CMD \["node", "([^"]+)"\]/m.exec(dockerfile)?.[1];
  assert.ok(cmd && existsSync(join(root, cmd)), `CMD ${cmd}`);
  assert.match(dockerfile, /^FROM node:24-slim/m);
  assert.match(dockerfile, /^USER 1000:1000$/m);
  const deployment = readFileSync(join(root, 'deploy', 'base', 'deployment.yaml'), 'utf8');
  assert.match(deployment, /readOnlyRootFilesystem: true/);
  assert.match(deployment, /runAsUser: 1000/);
  assert.match(deployment, /mountPath: \/tmp\}[\s\S]*emptyDir/, 'the only writable path is an emptyDir');
  assert.match(dockerfile, /--omit=dev/);
  // The build context is what the image copies, nothing more (node_modules alone is hundreds of MB).
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'));
  assert.deepEqual(ignore, ['*', ...['package.json', 'package-lock.json', 'src/'].map((f) => `!${f}`)]);
  assert.deepEqual([...new Set(copies.map((c) => c.replace(/^src$/, 'src/')))].sort(), ['package-lock.json', 'package.json', 'src/']);
  assert.match(dockerfile, /^HEALTHCHECK .*\n?.*\/health/m);
});

function startLogged(t: { after: (fn: () => Promise<void> | void) => void }, ns: string, env: Record<string, string>) {
  const { log, lines } = captureLogs();
  return provisioner(t, ns, env, { log }).then((service) => ({ service, lines }));
}

test('metrics move after a create, a proxied request and a delete; logs have one line per request and no secrets', async (t) => {
  const ns = await namespace(t, 'observe');
  const key = 'super-secret-api-key-1234';
  const { service: p, lines } = await startLogged(t, ns, { PROVISIONER_API_KEY: key });
  await p.view.synced;
  const auth = { 'x-api-key': key };
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`${p.url}/metrics`)).text();
    return [...text.matchAll(new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'gm'))].reduce(
      (sum, m) => sum + Number(m[1]),
      0,
    );
  };
  const before = {
    creates: await metric('sandbox_provisioner_creates_total{outcome="created"}'),
    proxied: await metric('sandbox_provisioner_proxy_requests_total{outcome="ok"}'),
    deletes: await metric('sandbox_provisioner_deletes_total{outcome="deleted"}'),
  };
  assert.equal((await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'obs' }, auth)).status, 201);
  assert.equal((await fetch(`${p.url}/sandboxes/obs/v1/sandbox`, { headers: { authorization: `Bearer ${key}` } })).status, 200);
  assert.equal((await call(p.url, 'DELETE', '/api/sandboxes/obs', undefined, auth)).status, 200);
  assert.equal(await metric('sandbox_provisioner_creates_total{outcome="created"}'), before.creates + 1);
  assert.equal(await metric('sandbox_provisioner_proxy_requests_total{outcome="ok"}'), before.proxied + 1);
  assert.equal(await metric('sandbox_provisioner_deletes_total{outcome="deleted"}'), before.deletes + 1);
  const text = await (await fetch(`${p.url}/metrics`)).text();
  for (const name of [
    'sandbox_provisioner_sandboxes',
    'sandbox_provisioner_http_request_duration_seconds_bucket',
    'sandbox_provisioner_create_to_running_seconds_count',
    'sandbox_provisioner_proxy_bytes_total',
    'sandbox_provisioner_watch_restarts',
    'sandbox_provisioner_process_cpu_seconds_total',
  ]) {
    assert.match(text, new RegExp(`^${name}`, 'm'), name);
  }
  assert.equal(/sandbox_id=|sandbox="/.test(text), false, 'no per-sandbox label');

  const requests = lines
    .map((l) => JSON.parse(l) as { msg: string; req_id?: string; route?: string; status?: number })
    .filter((l) => l.msg === 'request');
  assert.ok(requests.some((r) => r.route === '/api/sandboxes' && r.status === 201 && r.req_id));
  assert.ok(requests.some((r) => r.route === '/sandboxes/{id}/*' && r.status === 200));
  assert.equal(new Set(requests.map((r) => r.req_id)).size, requests.length, 'each request has its own id');
  const token = /token: (\S+)/.exec(readFileSync(cluster().kubeconfig, 'utf8'))?.[1] ?? 'no-token';
  const all = lines.join('\n');
  assert.equal(all.includes(key), false, 'the API key is never logged');
  assert.equal(all.includes(token), false, 'the kubeconfig token is never logged');
});

test('the OpenAPI document is valid, and live answers of every endpoint validate against it', async (t) => {
  const ns = await namespace(t, 'openapi');
  const { service: p } = await startLogged(t, ns, {});
  await p.view.synced;
  const doc = (await (await fetch(`${p.url}/openapi.json`)).json()) as {
    openapi: string;
    paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }> }>>;
    components: { schemas: Record<string, object> };
  };
  assert.equal(doc.openapi, '3.1.0');
  // The document as one resource: its references (#/components/schemas/X) resolve from its root, as in
  // any OpenAPI tool (the document itself is validated in test/unit/openapi.test.ts).
  const ajv = new Ajv2020({ strict: false });
  const base = 'https://sandbox-provisioner.local/openapi.json';
  ajv.addSchema({ $id: base, components: doc.components });
  const id = (ref: string) => `${base}${ref}`;
  for (const name of Object.keys(doc.components.schemas)) ajv.compile({ $ref: id(`#/components/schemas/${name}`) });
  const check = async (method: string, path: string, template: string, res: Response) => {
    const body = (await res.json()) as unknown;
    const response = doc.paths[template]?.[method]?.responses[String(res.status)];
    assert.ok(response, `${method} ${template} ${res.status} is documented`);
    const ref = response.content?.['application/json']?.schema.$ref;
    assert.ok(ref, `${method} ${template} ${res.status} has a schema`);
    const validate = ajv.compile({ $ref: id(ref) });
    assert.ok(validate(body), `${method} ${path} -> ${res.status}: ${JSON.stringify(validate.errors)} in ${JSON.stringify(body)}`);
  };
  const json = { 'content-type': 'application/json' };
  await check('get', '/health', '/health', await fetch(`${p.url}/health`));
  await check('get', '/readyz', '/readyz', await fetch(`${p.url}/readyz`));
  await check('get', '/api/capabilities', '/api/capabilities', await fetch(`${p.url}/api/capabilities`));
  await check(
    'post',
    '/api/sandboxes',
    '/api/sandboxes',
    await fetch(`${p.url}/api/sandboxes?wait=20`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ sandbox_id: 'oa', thread_id: 'th', ttl_seconds: 600 }),
    }),
  );
  await check(
    'post',
    '/api/sandboxes',
    '/api/sandboxes',
    await fetch(`${p.url}/api/sandboxes`, { method: 'POST', headers: json, body: JSON.stringify({ sandbox_id: 'oa' }) }),
  );
  await check(
    'post',
    '/api/sandboxes',
    '/api/sandboxes',
    await fetch(`${p.url}/api/sandboxes`, { method: 'POST', headers: json, body: '{"sandbox_id": 5}' }),
  );
  await check('get', '/api/sandboxes', '/api/sandboxes', await fetch(`${p.url}/api/sandboxes`));
  await check('get', '/api/sandboxes/oa', '/api/sandboxes/{sandbox_id}', await fetch(`${p.url}/api/sandboxes/oa`));
  await check('get', '/api/sandboxes/nope', '/api/sandboxes/{sandbox_id}', await fetch(`${p.url}/api/sandboxes/nope`));
  await check(
    'post',
    '/api/sandboxes/oa/keepalive',
    '/api/sandboxes/{sandbox_id}/keepalive',
    await fetch(`${p.url}/api/sandboxes/oa/keepalive`, { method: 'POST' }),
  );
  await check('delete', '/api/sandboxes/oa', '/api/sandboxes/{sandbox_id}', await fetch(`${p.url}/api/sandboxes/oa`, { method: 'DELETE' }));
  await check(
    'delete',
    '/api/sandboxes/BAD',
    '/api/sandboxes/{sandbox_id}',
    await fetch(`${p.url}/api/sandboxes/BAD`, { method: 'DELETE' }),
  );
});
