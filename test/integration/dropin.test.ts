// A drop-in for what users run: the AIO image (modelled by the fake node and the stand-in) and sandboxes
// made by DeerFlow's own provisioner (objects shaped exactly as its builders make them).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { PodJson, ServiceJson, WireMeta } from '../../src/domain/wire.ts';
import { createSandbox, execute, waitForSandboxReady } from '../../tools/deerflow-client.ts';
import { admin, call, cluster, eventually, namespace, objectsIn, provisioner, readEvents } from '../helpers.ts';

const AIO_IMAGE = 'enterprise-public-cn-beijing.cr.volces.com/vefaas-public/all-in-one-sandbox:latest';

/** Tells the fake node how to behave (its control port: settings, images present). */
async function fakeNode(path: string, body: unknown): Promise<void> {
  const res = await fetch(`${cluster().fakeNodeControl}${path}`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.text());
}

const MINUTE = 60_000;

test('the AIO image starts under the default (reference) profile; under `hardened` it crash-loops, and the API and event stream say why', async (t) => {
  const ns = await namespace(t, 'profiles');
  const p = await provisioner(t, ns);
  const started = await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'aio' });
  assert.equal(started.body['status'], 'Running');
  const pod = await admin().get(`/api/v1/namespaces/${ns}/pods/sandbox-aio`);
  const container = (pod.spec as { containers: { securityContext: unknown }[] }).containers[0];
  assert.deepEqual(container?.securityContext, { privileged: false, allowPrivilegeEscalation: true });

  const hardened = await provisioner(t, await namespace(t, 'hardened'), { SANDBOX_SECURITY_PROFILE: 'hardened' });
  const created = await call(hardened.url, 'POST', '/api/sandboxes', { sandbox_id: 'tight' });
  assert.equal(created.status, 201);
  const stream = fetch(`${hardened.url}/api/sandboxes/tight/events`, { signal: AbortSignal.timeout(15_000) }).then((res) =>
    readEvents(res, (e) => e.data['reason'] === 'CrashLoopBackOff'),
  );
  const waited = await call(hardened.url, 'GET', '/api/sandboxes/tight?wait=20');
  assert.equal(waited.body['status'], 'Pending');
  assert.equal(waited.body['reason'], 'CrashLoopBackOff', 'a ?wait= ends early on a stuck sandbox');
  assert.match(String(waited.body['message']), /setuid\/setgid not permitted.*last termination: Error/);
  const seen = await stream;
  assert.equal(seen.at(-1)?.event, 'status');
  assert.equal(seen.at(-1)?.data['reason'], 'CrashLoopBackOff', 'the event stream reports it too');
  assert.match(String(seen.at(-1)?.data['message']), /supervisord/);

  // One variable overrides the profile: with escalation and SETUID/SETGID back, the image starts.
  const eased = await provisioner(t, await namespace(t, 'eased'), {
    SANDBOX_SECURITY_PROFILE: 'hardened',
    SANDBOX_ALLOW_PRIVILEGE_ESCALATION: 'true',
    SANDBOX_ADD_CAPABILITIES: 'SETUID,SETGID',
  });
  assert.equal((await call(eased.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'eased' })).body['status'], 'Running');
});

test('sandboxes made by the reference provisioner are adopted: status, list, proxy, expiry and delete', async (t) => {
  const ns = await namespace(t, 'adopt');
  const kube = admin();
  // Exactly the objects the reference builds (test/fixtures/reference), in this test's namespace.
  for (const [layout, name] of [
    ['current', 'hostpath-user-thread'],
    ['seed', 'hostpath-default'],
  ]) {
    const fixture = JSON.parse(
      readFileSync(join(import.meta.dirname, '..', 'fixtures', 'reference', layout ?? '', `${name}.json`), 'utf8'),
    ) as { pod: PodJson & { metadata: WireMeta }; service: ServiceJson & { metadata: WireMeta } };
    fixture.pod.metadata.namespace = ns;
    fixture.service.metadata.namespace = ns;
    await kube.post(`/api/v1/namespaces/${ns}/pods`, { apiVersion: 'v1', kind: 'Pod', ...fixture.pod });
    await kube.post(`/api/v1/namespaces/${ns}/services`, { apiVersion: 'v1', kind: 'Service', ...fixture.service });
  }
  let offset = 0;
  const p = await provisioner(t, ns, { SANDBOX_TTL_SECONDS: '3600', SANDBOX_SWEEP_SECONDS: '86400' }, { now: () => Date.now() + offset });
  const s1 = await call(p.url, 'GET', '/api/sandboxes/s1?wait=20');
  assert.equal(s1.status, 200);
  assert.equal(s1.body['status'], 'Running');
  assert.match(String(s1.body['sandbox_url']), /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(s1.body['thread_id'], null, 'the reference records no thread id on its objects');
  const list = await call(p.url, 'GET', '/api/sandboxes');
  assert.deepEqual((list.body['sandboxes'] as { sandbox_id: string }[]).map((s) => s.sandbox_id).sort(), ['abc-123', 's1']);
  await eventually('abc-123 Running', async () =>
    (await call(p.url, 'GET', '/api/sandboxes/abc-123')).body['status'] === 'Running' ? true : undefined,
  );
  const proxied = await fetch(`${p.url}/sandboxes/s1/v1/sandbox`);
  assert.equal(proxied.status, 200);
  assert.equal(((await proxied.json()) as { data: { sandbox_id: string } }).data.sandbox_id, 's1');

  // Delete, as the reference's client does, removes both objects.
  assert.equal((await call(p.url, 'DELETE', '/api/sandboxes/abc-123')).status, 200);
  await eventually('abc-123 gone', async () => (!(await objectsIn(ns)).pods.includes('sandbox-abc-123') ? true : undefined));
  assert.ok(!(await objectsIn(ns)).services.includes('sandbox-abc-123-svc'));
  // Expiry counts their age from the pod's creation.
  offset = 2 * 3_600_000 + MINUTE;
  assert.deepEqual((await p.sweep()).expired, [{ id: 's1', reason: 'ttl' }]);
  await eventually('all gone', async () => {
    const o = await objectsIn(ns);
    return o.pods.length === 0 && o.services.length === 0 ? true : undefined;
  });
});

test('DEER_FLOW_HOST_BASE_DIR: the three skills views, accepted by the API server; extra mounts under the base dir', async (t) => {
  const ns = await namespace(t, 'views');
  const p = await provisioner(t, ns, { DEER_FLOW_HOST_BASE_DIR: '/srv/deer-flow', THREADS_HOST_PATH: '/srv/deer-flow/threads' });
  const body = {
    sandbox_id: 'v1',
    user_id: 'alice',
    extra_mounts: [{ host_path: '/srv/deer-flow/users/alice/acp', container_path: '/mnt/acp-workspace', read_only: false }],
  };
  assert.equal((await call(p.url, 'POST', '/api/sandboxes?wait=20', body)).body['status'], 'Running');
  const pod = await admin().get(`/api/v1/namespaces/${ns}/pods/sandbox-v1`);
  const mounts = (pod.spec as { containers: { volumeMounts: { mountPath: string }[] }[] }).containers[0]?.volumeMounts.map(
    (m) => m.mountPath,
  );
  assert.deepEqual(mounts, ['/mnt/skills/public', '/mnt/skills/custom', '/mnt/skills/legacy', '/mnt/user-data', '/mnt/acp-workspace']);
  const outside = await call(p.url, 'POST', '/api/sandboxes', {
    ...body,
    sandbox_id: 'v2',
    extra_mounts: [{ host_path: '/etc', container_path: '/mnt/acp-workspace' }],
  });
  assert.equal(outside.status, 400);
  // DeerFlow 2.1: an extra mount on a skill category takes that view's place (the API server accepts the
  // pod: no path is mounted twice); the skills root itself stays the provisioner's.
  const replaced = await call(p.url, 'POST', '/api/sandboxes?wait=20', {
    ...body,
    sandbox_id: 'v3',
    extra_mounts: [{ host_path: '/srv/deer-flow/users/alice/skills_view/custom', container_path: '/mnt/skills/custom', read_only: true }],
  });
  assert.equal(replaced.body['status'], 'Running', JSON.stringify(replaced.body));
  const v3 = await admin().get(`/api/v1/namespaces/${ns}/pods/sandbox-v3`);
  const v3Mounts = (v3.spec as { containers: { volumeMounts: { mountPath: string; name: string }[] }[] }).containers[0]?.volumeMounts;
  assert.deepEqual(
    v3Mounts?.filter((m) => m.mountPath.startsWith('/mnt/skills')).map((m) => `${m.name} ${m.mountPath}`),
    ['skills-public /mnt/skills/public', 'skills-legacy /mnt/skills/legacy', 'extra-0 /mnt/skills/custom'],
  );
  const clash = await call(p.url, 'POST', '/api/sandboxes', {
    ...body,
    sandbox_id: 'v4',
    extra_mounts: [{ host_path: '/srv/deer-flow/x', container_path: '/mnt/skills' }],
  });
  assert.equal(clash.status, 400, 'no extra mount at the skills root');
});

test('DeerFlow’s client in every URL mode with the default probes: create, poll, exec; a slow app and a cold node say why in answers and timings', async (t) => {
  const ns = await namespace(t, 'startup');
  // The default probe profile (a startup probe), not the tests' fast one.
  const defaults = { SANDBOX_PROBE_PROFILE: 'startup', SANDBOX_READINESS_INITIAL_DELAY_SECONDS: '' };
  for (const mode of ['nodeport', 'proxy'] as const) {
    const p = await provisioner(t, ns, { ...defaults, SANDBOX_URL_MODE: mode, PROXY_UPSTREAM: 'pod' });
    const sandbox = await createSandbox(p.url, { sandbox_id: `df-${mode}`, thread_id: `th-${mode}` });
    if (mode === 'proxy') assert.match(sandbox.sandbox_url, /\/s\/df-proxy\.[A-Za-z0-9_-]{32}$/);
    else assert.match(sandbox.sandbox_url, /^http:\/\/127\.0\.0\.1:3\d{4}$/);
    assert.equal(await waitForSandboxReady(sandbox.sandbox_url, 60), true, mode);
    assert.equal(await execute(sandbox.sandbox_url, 'echo hi'), 'echo hi', mode);
    const pod = await admin().get(`/api/v1/namespaces/${ns}/pods/sandbox-df-${mode}`);
    const spec = pod.spec as { containers: { startupProbe?: { periodSeconds: number } }[] };
    assert.equal(spec.containers[0]?.startupProbe?.periodSeconds, 1, 'the default pod spec has the startup probe');
    const status = await eventually('Running with its timings', async () => {
      const s = await call(p.url, 'GET', `/api/sandboxes/df-${mode}`);
      return (s.body['timings'] as Record<string, number> | undefined)?.['ready_s'] !== undefined ? s : undefined;
    });
    const timings = status.body['timings'] as Record<string, number>;
    for (const k of ['scheduled_s', 'image_ready_s', 'started_s', 'ready_s']) assert.equal(typeof timings[k], 'number', `${mode}: ${k}`);
    assert.ok((timings['ready_s'] ?? 0) >= (timings['started_s'] ?? 0));
  }

  // A cold node and a slow image: the sandbox waits for its image and says so, with kubelet's words.
  const p = await provisioner(t, ns, defaults);
  await fakeNode('/images', { present: [] });
  await fakeNode('/settings', { pullMs: 3000 });
  t.after(() => fakeNode('/settings', { pullMs: 0 }));
  await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'cold' });
  const pulling = await eventually('PullingImage', async () => {
    const s = await call(p.url, 'GET', '/api/sandboxes/cold');
    return s.body['reason'] === 'PullingImage' ? s : undefined;
  });
  assert.equal(pulling.body['message'], `Pulling image "${AIO_IMAGE}"`);
  const ready = await call(p.url, 'GET', '/api/sandboxes/cold?wait=30');
  assert.equal(ready.body['status'], 'Running');
  const image = (ready.body['timings'] as Record<string, number>)['image_ready_s'] ?? 0;
  assert.ok(image >= 2, `the image was ready ${image} s after the creation (a 3 s pull)`);
  const metrics = await (await fetch(`${p.url}/metrics`)).text();
  assert.match(metrics, /sandbox_provisioner_startup_phase_seconds_count\{phase="image_ready"\} [1-9]/);
  assert.match(metrics, /sandbox_provisioner_nodes_without_sandbox_image 0/, 'the node holds the image now');
});
