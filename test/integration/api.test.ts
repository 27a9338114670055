// The REST API end to end against the real control plane, as the reference's "Manual Testing" does it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, request as rawRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { admin, call, cluster, eventually, namespace, objectsIn, provisioner, setBehavior } from '../helpers.ts';

test('create, read, turn Running, list, delete: the reference flow', async (t) => {
  const ns = await namespace(t, 'api');
  const p = await provisioner(t, ns);
  const created = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'test-001', thread_id: 'thread-001' });
  assert.equal(created.status, 201);
  assert.equal(created.body['sandbox_id'], 'test-001');
  assert.equal(created.body['thread_id'], 'thread-001');
  assert.equal(created.body['user_id'], 'default');
  assert.match(String(created.body['sandbox_url']), /^http:\/\/127\.0\.0\.1:3\d{4}$/);
  assert.ok(['Pending', 'Running'].includes(String(created.body['status'])));
  assert.ok(!Number.isNaN(Date.parse(String(created.body['created_at']))));

  const objects = await objectsIn(ns);
  assert.deepEqual(objects, { pods: ['sandbox-test-001'], services: ['sandbox-test-001-svc'] });

  const running = await call(p.url, 'GET', '/api/sandboxes/test-001?wait=15');
  assert.equal(running.status, 200);
  assert.equal(running.body['status'], 'Running');
  assert.equal(running.body['sandbox_url'], created.body['sandbox_url']);

  // The node port follows Ready by a moment (kube-proxy programs it from the endpoints, as the fake node
  // does): a client retries a refused connection, as DeerFlow's does.
  const sandbox = await eventually('the node port answers', () =>
    fetch(`${String(running.body['sandbox_url'])}/v1/sandbox`).catch(() => undefined),
  );
  assert.equal(sandbox.status, 200);
  assert.equal(((await sandbox.json()) as { data: { sandbox_id: string } }).data.sandbox_id, 'test-001');

  const again = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'test-001', thread_id: 'thread-001' });
  assert.equal(again.status, 200, 'idempotent');
  assert.equal(again.body['sandbox_url'], created.body['sandbox_url']);

  const list = await call(p.url, 'GET', '/api/sandboxes');
  assert.equal(list.body['count'], 1);
  assert.equal((list.body['sandboxes'] as { sandbox_id: string }[])[0]?.sandbox_id, 'test-001');
  assert.equal((await call(p.url, 'GET', '/api/sandboxes?thread_id=thread-001')).body['count'], 1);
  assert.equal((await call(p.url, 'GET', '/api/sandboxes?thread_id=other')).body['count'], 0);
  assert.equal((await call(p.url, 'GET', '/api/sandboxes?status=Running')).body['count'], 1);
  assert.equal((await call(p.url, 'GET', '/api/sandboxes?status=Pending')).body['count'], 0);

  const deleted = await call(p.url, 'DELETE', '/api/sandboxes/test-001');
  assert.deepEqual(deleted.body, { ok: true, sandbox_id: 'test-001' });
  await eventually('pod and service gone', async () => {
    const o = await objectsIn(ns);
    return o.pods.length === 0 && o.services.length === 0 ? true : undefined;
  });
  await eventually('view forgets it', async () =>
    (await call(p.url, 'GET', '/api/sandboxes/test-001')).status === 404 ? true : undefined,
  );
  const missing = await call(p.url, 'GET', '/api/sandboxes/test-001');
  assert.equal(missing.body['code'], 'sandbox_not_found');
  assert.equal(missing.body['detail'], "Sandbox 'test-001' not found");
  assert.equal((await call(p.url, 'DELETE', '/api/sandboxes/test-001')).status, 200, 'deleting a missing sandbox is 200');
});

test('after a change of URL mode, sandboxes made under the old one get an address in the new one', async (t) => {
  const ns = await namespace(t, 'mode');
  const before = await provisioner(t, ns, { SANDBOX_URL_MODE: 'proxy', SANDBOX_SERVICE_TYPE: 'ClusterIP' });
  assert.equal((await call(before.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'm1' })).status, 201);
  // Now nodeport mode, as the reference runs: DeerFlow's list_running drops a sandbox without a URL.
  const after = await provisioner(t, ns, { RECONCILE_GRACE_SECONDS: '0' });
  const listed = await eventually(
    'm1 has a node port',
    async () => {
      const list = await call(after.url, 'GET', '/api/sandboxes');
      const [m1] = list.body['sandboxes'] as { sandbox_url: string; reason?: string }[];
      return m1 && /^http:\/\/127\.0\.0\.1:3\d{4}$/.test(m1.sandbox_url) ? m1 : undefined;
    },
    20_000,
  );
  assert.equal(listed.reason, undefined);
  const sandbox = await eventually('its node port answers', () => fetch(`${listed.sandbox_url}/v1/sandbox`).catch(() => undefined));
  assert.equal(sandbox.status, 200);
});

test('POST ?wait= answers once the sandbox is Running; a stuck one answers early with its reason', async (t) => {
  const ns = await namespace(t, 'wait');
  const p = await provisioner(t, ns);
  const started = Date.now();
  const res = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'w1' });
  assert.equal(res.status, 201);
  assert.equal(res.body['status'], 'Running');
  assert.ok(Date.now() - started < 10_000);

  await setBehavior(ns, 'sandbox-w2', 'image-pull');
  const stuckStarted = Date.now();
  const stuck = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'w2' });
  assert.equal(stuck.body['status'], 'Pending');
  assert.equal(stuck.body['reason'], 'ImagePullBackOff');
  assert.ok(Date.now() - stuckStarted < 10_000, 'answered on the ImagePullBackOff event, not at the end of the wait');
});

test('the pod and service in the cluster are the reference specification', async (t) => {
  const ns = await namespace(t, 'spec');
  const p = await provisioner(t, ns, {
    SKILLS_HOST_PATH: '/srv/skills',
    THREADS_HOST_PATH: '/srv/threads',
    // The reference's own probes (the helper's fast ones set no initial delay).
    SANDBOX_READINESS_INITIAL_DELAY_SECONDS: '',
  });
  await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'abc-123', thread_id: 'thread-456' });
  const pod = await admin().get(`/api/v1/namespaces/${ns}/pods/sandbox-abc-123`);
  const spec = pod.spec as { containers: Record<string, unknown>[]; volumes: Record<string, unknown>[]; restartPolicy: string };
  const c = spec.containers[0] as Record<string, unknown>;
  assert.equal(c['image'], 'enterprise-public-cn-beijing.cr.volces.com/vefaas-public/all-in-one-sandbox:latest');
  assert.equal(c['imagePullPolicy'], 'IfNotPresent');
  assert.deepEqual(c['ports'], [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
  assert.deepEqual(c['resources'], {
    requests: { cpu: '100m', memory: '256Mi', 'ephemeral-storage': '500Mi' },
    limits: { cpu: '1', memory: '1Gi', 'ephemeral-storage': '500Mi' },
  });
  assert.deepEqual(c['volumeMounts'], [
    { name: 'skills', mountPath: '/mnt/skills', readOnly: true },
    { name: 'user-data', mountPath: '/mnt/user-data' },
  ]);
  const probe = (x: unknown) => {
    const p = x as { httpGet: { path: string; port: number }; initialDelaySeconds: number; periodSeconds: number };
    return [p.httpGet.path, p.httpGet.port, p.initialDelaySeconds, p.periodSeconds];
  };
  assert.deepEqual(probe(c['readinessProbe']), ['/v1/sandbox', 8080, 5, 5]);
  assert.deepEqual(probe(c['livenessProbe']), ['/v1/sandbox', 8080, 10, 10]);
  assert.deepEqual(spec.volumes, [
    { name: 'skills', hostPath: { path: '/srv/skills', type: 'Directory' } },
    { name: 'user-data', hostPath: { path: '/srv/threads/thread-456/user-data', type: 'DirectoryOrCreate' } },
  ]);
  assert.equal(spec.restartPolicy, 'Always');
  assert.equal(pod.metadata.labels?.['app'], 'deer-flow-sandbox');
  assert.equal(pod.metadata.labels?.['sandbox-id'], 'abc-123');

  const svc = await admin().get(`/api/v1/namespaces/${ns}/services/sandbox-abc-123-svc`);
  const s = svc.spec as {
    type: string;
    selector: object;
    ports: { name: string; port: number; targetPort: number; protocol: string; nodePort: number }[];
  };
  assert.equal(s.type, 'NodePort');
  assert.deepEqual(s.selector, { 'sandbox-id': 'abc-123' });
  assert.deepEqual({ ...s.ports[0], nodePort: 0 }, { name: 'http', port: 8080, targetPort: 8080, protocol: 'TCP', nodePort: 0 });
  assert.ok((s.ports[0]?.nodePort ?? 0) >= 30000);
  assert.equal(svc.metadata.labels?.['app'], 'deer-flow-sandbox');
  const owned = await eventually(
    'the service is owned by its pod',
    async () => (await admin().get(`/api/v1/namespaces/${ns}/services/sandbox-abc-123-svc`)).metadata.ownerReferences,
  );
  assert.deepEqual(
    owned.map((o) => [o.kind, o.name, o.uid]),
    [['Pod', 'sandbox-abc-123', pod.metadata.uid]],
  );
});

test('50 concurrent identical POSTs make one pod and one service, with consistent answers', async (t) => {
  const ns = await namespace(t, 'concurrent');
  const p = await provisioner(t, ns);
  const answers = await Promise.all(
    Array.from({ length: 50 }, () => call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'same', thread_id: 'th' })),
  );
  assert.deepEqual([...new Set(answers.map((a) => a.status))].sort(), [200, 201]);
  assert.equal(answers.filter((a) => a.status === 201).length, 1);
  assert.equal(new Set(answers.map((a) => a.body['sandbox_url'])).size, 1);
  assert.deepEqual(await objectsIn(ns), { pods: ['sandbox-same'], services: ['sandbox-same-svc'] });
});

function rawHttp(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string | Buffer,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = rawRequest({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: { raw: text } });
        }
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('bad input: every case is a 4xx JSON {detail, code}, and nothing is created', async (t) => {
  const ns = await namespace(t, 'badinput');
  const p = await provisioner(t, ns, { EXTRA_MOUNTS_BASE_DIR: '/srv/state' });
  const json = { 'content-type': 'application/json' };
  const post = (body: string | Buffer, headers: Record<string, string> = json) => rawHttp(p.url, 'POST', '/api/sandboxes', headers, body);
  const cases: [string, () => Promise<{ status: number; body: Record<string, unknown> }>, number, string][] = [
    ['malformed JSON', () => post('{"sandbox_id": '), 400, 'invalid_json'],
    ['empty body', () => post(''), 400, 'invalid_json'],
    ['JSON array', () => post('[]'), 422, 'validation_failed'],
    ['JSON string', () => post('"x"'), 422, 'validation_failed'],
    [
      'wrong content type',
      () => post('sandbox_id=a', { 'content-type': 'application/x-www-form-urlencoded' }),
      415,
      'unsupported_media_type',
    ],
    ['text/plain', () => post('{"sandbox_id":"a"}', { 'content-type': 'text/plain' }), 415, 'unsupported_media_type'],
    ['oversized body', () => post(JSON.stringify({ sandbox_id: 'a', pad: 'x'.repeat(100_000) })), 413, 'payload_too_large'],
    ['missing sandbox_id', () => post('{}'), 422, 'validation_failed'],
    ['sandbox_id number', () => post('{"sandbox_id": 7}'), 422, 'validation_failed'],
    ['sandbox_id uppercase', () => post('{"sandbox_id": "ABC"}'), 422, 'validation_failed'],
    ['sandbox_id too long', () => post(JSON.stringify({ sandbox_id: 'a'.repeat(52) })), 422, 'validation_failed'],
    ['sandbox_id with slash', () => post('{"sandbox_id": "a/b"}'), 422, 'validation_failed'],
    ['sandbox_id dots', () => post('{"sandbox_id": ".."}'), 422, 'validation_failed'],
    ['thread_id with slash', () => post('{"sandbox_id": "a", "thread_id": "x/y"}'), 422, 'validation_failed'],
    ['thread_id traversal', () => post('{"sandbox_id": "a", "thread_id": ".."}'), 422, 'validation_failed'],
    ['thread_id NUL', () => post('{"sandbox_id": "a", "thread_id": "a\\u0000b"}'), 422, 'validation_failed'],
    ['thread_id unicode lookalike', () => post('{"sandbox_id": "a", "thread_id": "thread\\u2024001"}'), 422, 'validation_failed'],
    ['thread_id fullwidth slash', () => post('{"sandbox_id": "a", "thread_id": "a\\uff0fb"}'), 422, 'validation_failed'],
    ['thread_id number', () => post('{"sandbox_id": "a", "thread_id": 5}'), 422, 'validation_failed'],
    ['user_id traversal', () => post('{"sandbox_id": "a", "user_id": "../root"}'), 422, 'validation_failed'],
    ['flag not boolean', () => post('{"sandbox_id": "a", "include_legacy_skills": "yes"}'), 422, 'validation_failed'],
    [
      'extra mount outside base',
      () => post(JSON.stringify({ sandbox_id: 'a', extra_mounts: [{ host_path: '/etc', container_path: '/mnt/acp-workspace' }] })),
      400,
      'invalid_request',
    ],
    [
      'extra mount traversal',
      () =>
        post(
          JSON.stringify({ sandbox_id: 'a', extra_mounts: [{ host_path: '/srv/state/../../etc', container_path: '/mnt/acp-workspace' }] }),
        ),
      400,
      'invalid_request',
    ],
    [
      'extra mount not allowed',
      () => post(JSON.stringify({ sandbox_id: 'a', extra_mounts: [{ host_path: '/srv/state/x', container_path: '/root' }] })),
      400,
      'invalid_request',
    ],
    [
      'extra mount missing field',
      () => post(JSON.stringify({ sandbox_id: 'a', extra_mounts: [{ host_path: '/srv/state/x' }] })),
      422,
      'validation_failed',
    ],
    ['lark runtime unconfigured', () => post('{"sandbox_id": "a", "provision_lark_cli_runtime": true}'), 400, 'unsupported_feature'],
    ['lark broker unconfigured', () => post('{"sandbox_id": "a", "provision_lark_cli_broker": true}'), 503, 'lark_broker_not_configured'],
    ['skills root relative', () => post('{"sandbox_id": "a", "skills_container_path": "mnt/skills"}'), 400, 'invalid_request'],
    ['skills root on user data', () => post('{"sandbox_id": "a", "skills_container_path": "/mnt/user-data"}'), 400, 'invalid_request'],
    ['zero shells', () => post('{"sandbox_id": "a", "max_shell_sessions": 0}'), 422, 'validation_failed'],
    ['shells as text', () => post('{"sandbox_id": "a", "max_shell_sessions": "11"}'), 422, 'validation_failed'],
    ['presence hostile id', () => rawHttp(p.url, 'GET', '/api/sandboxes/..%2F/presence', {}), 400, 'invalid_sandbox_id'],
    ['bad wait', () => rawHttp(p.url, 'POST', '/api/sandboxes?wait=soon', json, '{"sandbox_id":"a"}'), 422, 'validation_failed'],
    ['GET hostile id', () => rawHttp(p.url, 'GET', '/api/sandboxes/..%2F..%2Fetc', {}), 400, 'invalid_sandbox_id'],
    ['GET encoded traversal', () => rawHttp(p.url, 'GET', '/api/sandboxes/%2e%2e', {}), 400, 'invalid_sandbox_id'],
    ['GET uppercase id', () => rawHttp(p.url, 'GET', '/api/sandboxes/ABC', {}), 400, 'invalid_sandbox_id'],
    ['DELETE hostile id', () => rawHttp(p.url, 'DELETE', '/api/sandboxes/a%00b', {}), 400, 'invalid_sandbox_id'],
    ['GET unknown sandbox', () => rawHttp(p.url, 'GET', '/api/sandboxes/nope', {}), 404, 'sandbox_not_found'],
    ['list bad status', () => rawHttp(p.url, 'GET', '/api/sandboxes?status=Exploded', {}), 422, 'validation_failed'],
    ['list bad thread', () => rawHttp(p.url, 'GET', '/api/sandboxes?thread_id=../x', {}), 422, 'validation_failed'],
    ['unknown route', () => rawHttp(p.url, 'GET', '/api/nothing', {}), 404, 'not_found'],
    ['unknown top route', () => rawHttp(p.url, 'GET', '/etc/passwd', {}), 404, 'not_found'],
    ['absolute-form path', () => rawHttp(p.url, 'GET', '//evil.example/api/sandboxes', {}), 404, 'not_found'],
    ['wrong method', () => rawHttp(p.url, 'PUT', '/api/sandboxes', json, '{}'), 405, 'method_not_allowed'],
    ['wrong method on id', () => rawHttp(p.url, 'POST', '/api/sandboxes/abc', json, '{}'), 405, 'method_not_allowed'],
    ['deeper path', () => rawHttp(p.url, 'GET', '/api/sandboxes/a/b/c', {}), 404, 'not_found'],
  ];
  for (const [name, send, status, code] of cases) {
    const res = await send();
    assert.equal(res.status, status, `${name}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body['code'], code, name);
    if (code === 'validation_failed') {
      // FastAPI's shape: detail is the list of problems, each with loc, msg and type.
      const detail = res.body['detail'] as { loc: string[]; msg: string; type: string }[];
      assert.ok(Array.isArray(detail) && detail.length > 0, name);
      assert.ok(
        detail.every((i) => ['body', 'query'].includes(i.loc[0] ?? '') && typeof i.msg === 'string' && typeof i.type === 'string'),
        name,
      );
      assert.equal(typeof res.body['message'], 'string', name);
    } else {
      assert.equal(typeof res.body['detail'], 'string', name);
      assert.ok(String(res.body['detail']).length > 0, name);
    }
  }
  // Query problems say where they are, as FastAPI does.
  for (const path of ['/api/sandboxes/abc?wait=abc', '/api/sandboxes?status=Nope']) {
    const res = await rawHttp(p.url, 'GET', path, {});
    const detail = res.body['detail'] as { loc: string[] }[];
    assert.deepEqual([res.status, detail[0]?.loc[0]], [422, 'query'], path);
  }
  assert.deepEqual(await objectsIn(ns), { pods: [], services: [] });
});

test('PROVISIONER_API_KEY guards /api/* (X-API-Key or Bearer), never /health', async (t) => {
  const ns = await namespace(t, 'apikey');
  const p = await provisioner(t, ns, { PROVISIONER_API_KEY: 'sekret-key' });
  assert.equal((await call(p.url, 'GET', '/health')).status, 200);
  const denied = await call(p.url, 'GET', '/api/sandboxes');
  assert.equal(denied.status, 401);
  assert.equal(denied.body['code'], 'unauthorized');
  assert.equal((await call(p.url, 'GET', '/api/sandboxes', undefined, { 'x-api-key': 'wrong' })).status, 401);
  assert.equal((await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'k1' }, { 'x-api-key': 'wrong' })).status, 401);
  assert.equal((await call(p.url, 'GET', '/api/sandboxes', undefined, { 'x-api-key': 'sekret-key' })).status, 200);
  assert.equal((await call(p.url, 'GET', '/api/sandboxes', undefined, { authorization: 'Bearer sekret-key' })).status, 200);
  assert.deepEqual(await objectsIn(ns), { pods: [], services: [] });
});

test('no PROVISIONER_API_KEY: /api/* is closed (401, as the reference) unless PROVISIONER_ALLOW_ANONYMOUS=true; probes stay open', async (t) => {
  const ns = await namespace(t, 'closed');
  const p = await provisioner(t, ns, { PROVISIONER_ALLOW_ANONYMOUS: 'false' });
  const denied = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'c1' });
  assert.equal(denied.status, 401);
  assert.match(String(denied.body['detail']), /PROVISIONER_API_KEY is not set.*PROVISIONER_ALLOW_ANONYMOUS=true/);
  assert.equal((await call(p.url, 'GET', '/api/capabilities')).status, 401);
  for (const path of ['/health', '/readyz', '/metrics']) assert.equal((await fetch(p.url + path)).status, 200, path);
  assert.deepEqual(await objectsIn(ns), { pods: [], services: [] });
});

test('DeerFlow’s capability probe and the fields its client checks; mount_contract_version only when configured', async (t) => {
  const ns = await namespace(t, 'deerflow');
  // Today's DeerFlow provisioner answers no mount_contract_version: by default neither do we.
  const plain = await provisioner(t, ns);
  const plainCaps = await call(plain.url, 'GET', '/api/capabilities');
  assert.equal(plainCaps.status, 200);
  assert.equal('mount_contract_version' in plainCaps.body, false);
  assert.deepEqual([plainCaps.body['lark_cli_init_image'], plainCaps.body['lark_cli_broker_image']], [false, false]);
  const plainCreated = await call(plain.url, 'POST', '/api/sandboxes', { sandbox_id: 'df0' });
  assert.equal('mount_contract_version' in plainCreated.body, false);
  const p = await provisioner(t, ns, { MOUNT_CONTRACT_VERSION: '2' });
  const caps = await call(p.url, 'GET', '/api/capabilities');
  assert.equal(caps.body['mount_contract_version'], 2);
  const created = await call(p.url, 'POST', '/api/sandboxes', {
    sandbox_id: 'df1',
    thread_id: null,
    user_id: 'alice',
    include_legacy_skills: false,
    provision_lark_cli_runtime: false,
    provision_lark_cli_broker: false,
  });
  assert.equal(created.status, 201);
  assert.deepEqual(
    [created.body['sandbox_id'], created.body['user_id'], created.body['thread_id'], created.body['mount_contract_version']],
    ['df1', 'alice', 'df1', 2],
  );
  const discovered = await call(p.url, 'GET', '/api/sandboxes/df1');
  assert.equal(discovered.body['mount_contract_version'], 2);
  assert.equal(discovered.body['user_id'], 'alice');
});

test('configuration problems stop `npm start` with one line per problem', () => {
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, ['src/main.ts'], { env: { PATH: process.env['PATH'] ?? '', ...env }, encoding: 'utf8', timeout: 20_000 });
  const bad = run({ SKILLS_HOST_PATH: '../skills', THREADS_HOST_PATH: '~/threads', NODE_HOST: 'http://x:1' });
  assert.equal(bad.status, 2);
  const lines = bad.stderr.trim().split('\n');
  assert.equal(lines.length, 3, bad.stderr);
  assert.match(bad.stderr, /SKILLS_HOST_PATH: .*absolute/);
  const dir = run({ KUBECONFIG_PATH: '/tmp' });
  assert.equal(dir.status, 2);
  assert.match(dir.stderr.trim(), /^fatal: KUBECONFIG_PATH=\/tmp is a directory, expected a kubeconfig file/);
  // KUBECONFIG, which every Kubernetes tool reads, names the kubeconfig when KUBECONFIG_PATH does not.
  const viaKubeconfig = run({ KUBECONFIG: '/tmp' });
  assert.match(viaKubeconfig.stderr.trim(), /^fatal: KUBECONFIG_PATH=\/tmp is a directory/);
  const none = run({ KUBECONFIG: '/nonexistent/kubeconfig' });
  assert.match(none.stderr.trim(), /^fatal: no kubeconfig at KUBECONFIG_PATH=\/nonexistent\/kubeconfig.*set KUBECONFIG_PATH or KUBECONFIG/);
});

test('a port in use stops `npm start` with one line, not a stack', async (t) => {
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  t.after(() => taken.close());
  const port = (taken.address() as AddressInfo).port;
  const r = spawnSync(process.execPath, ['src/main.ts'], {
    env: {
      PATH: process.env['PATH'] ?? '',
      KUBECONFIG_PATH: cluster().kubeconfig,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'silent',
    },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 2, r.stderr);
  assert.deepEqual(r.stderr.trim().split('\n'), [
    `fatal: 127.0.0.1:${port} is in use (another provisioner, or npm run dev, may be running there): stop it, or set PORT`,
  ]);
});

test('GET /api/sandboxes/{id}/logs: the container log through the API server (tail, follow), and clear 4xx otherwise', async (t) => {
  const ns = await namespace(t, 'logs');
  const p = await provisioner(t, ns, { PROVISIONER_API_KEY: 'logs-key', PROVISIONER_ALLOW_ANONYMOUS: 'false' });
  const auth = { 'x-api-key': 'logs-key' };
  assert.equal((await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'l1' }, auth)).status, 201);
  assert.equal((await fetch(`${p.url}/api/sandboxes/l1/logs`)).status, 401, 'behind the API key');

  const res = await fetch(`${p.url}/api/sandboxes/l1/logs`, { headers: auth });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  assert.match(await res.text(), /starting .*\(the sandbox app on /);
  const one = await (await fetch(`${p.url}/api/sandboxes/l1/logs?tail_lines=1`, { headers: auth })).text();
  assert.equal(one.trim().split('\n').length, 1);

  // Followed: the stream stays open with what is there, and ends when the pod goes.
  const followed = await fetch(`${p.url}/api/sandboxes/l1/logs?follow=true`, { headers: auth });
  const reader = followed.body!.getReader();
  assert.match(new TextDecoder().decode((await reader.read()).value), /starting/);
  assert.equal((await call(p.url, 'DELETE', '/api/sandboxes/l1', undefined, auth)).status, 200);
  for (;;) if ((await reader.read()).done) break;

  // A container still waiting (its image cannot be pulled) has no log: 409 with the API server's words;
  // bad queries and unknown sandboxes are 4xx.
  await setBehavior(ns, 'sandbox-l2', 'image-pull');
  await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'l2' }, auth);
  const none = await call(p.url, 'GET', '/api/sandboxes/l2/logs', undefined, auth);
  assert.equal(none.status, 409, JSON.stringify(none.body));
  assert.equal(none.body['code'], 'logs_unavailable');
  assert.match(String(none.body['detail']), /is waiting to start/);
  for (const [query, status] of [
    ['tail_lines=abc', 422],
    ['tail_lines=0', 422],
    ['follow=maybe', 422],
    ['container=Bad_Name', 422],
  ] as const)
    assert.equal((await call(p.url, 'GET', `/api/sandboxes/l2/logs?${query}`, undefined, auth)).status, status, query);
  assert.equal((await call(p.url, 'GET', '/api/sandboxes/nope/logs', undefined, auth)).body['code'], 'sandbox_not_found');
  assert.equal((await call(p.url, 'GET', '/api/sandboxes/Bad..Id/logs', undefined, auth)).status, 400);
});
