// The pod and service of a sandbox, field by field against the reference's "Pod Specification" and
// "Service Specification".

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { buildPod, buildService } from '../../src/provisioner/pod-spec.ts';
import { toSandboxRequest } from '../../src/api/request.ts';

const env = { SKILLS_HOST_PATH: '/absolute/path/to/skills', THREADS_HOST_PATH: '/absolute/path/to/threads', K8S_NAMESPACE: 'deer-flow' };
const request = (config = loadConfig(env), body: Record<string, unknown> = {}) =>
  toSandboxRequest(
    {
      sandbox_id: 'abc-123',
      thread_id: 'thread-456',
      include_legacy_skills: false,
      provision_lark_cli_runtime: false,
      provision_lark_cli_broker: false,
      skills_container_path: '/mnt/skills',
      ...body,
    },
    config,
  );

test('pod: exactly the reference specification (SANDBOX_PROBE_PROFILE=reference)', () => {
  const config = loadConfig({ ...env, SANDBOX_PROBE_PROFILE: 'reference' });
  const pod = buildPod(config, request(config));
  assert.equal(pod.metadata?.name, 'sandbox-abc-123');
  assert.equal(pod.metadata?.namespace, 'deer-flow');
  assert.equal(pod.metadata?.labels?.['app'], 'deer-flow-sandbox');
  assert.equal(pod.metadata?.labels?.['sandbox-id'], 'abc-123');
  assert.equal(pod.metadata?.annotations?.['sandbox.deer-flow/thread-id'], 'thread-456');
  const spec = pod.spec;
  assert.ok(spec);
  assert.equal(spec.containers.length, 1);
  const c = spec.containers[0];
  assert.ok(c);
  assert.equal(c.name, 'sandbox');
  assert.equal(c.image, 'enterprise-public-cn-beijing.cr.volces.com/vefaas-public/all-in-one-sandbox:latest');
  assert.equal(c.imagePullPolicy, 'IfNotPresent');
  assert.deepEqual(c.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
  assert.deepEqual(c.resources, {
    requests: { cpu: '100m', memory: '256Mi', 'ephemeral-storage': '500Mi' },
    limits: { cpu: '1000m', memory: '1Gi', 'ephemeral-storage': '500Mi' },
  });
  assert.deepEqual(c.volumeMounts, [
    { name: 'skills', mountPath: '/mnt/skills', readOnly: true },
    { name: 'user-data', mountPath: '/mnt/user-data', readOnly: false },
  ]);
  assert.deepEqual(c.readinessProbe?.httpGet, { path: '/v1/sandbox', port: 8080 });
  assert.equal(c.readinessProbe?.initialDelaySeconds, 5);
  assert.equal(c.readinessProbe?.periodSeconds, 5);
  assert.deepEqual(c.livenessProbe?.httpGet, { path: '/v1/sandbox', port: 8080 });
  assert.equal(c.livenessProbe?.initialDelaySeconds, 10);
  assert.equal(c.livenessProbe?.periodSeconds, 10);
  assert.equal(c.startupProbe, undefined);
  assert.deepEqual(spec.volumes, [
    { name: 'skills', hostPath: { path: '/absolute/path/to/skills', type: 'Directory' } },
    { name: 'user-data', hostPath: { path: '/absolute/path/to/threads/thread-456/user-data', type: 'DirectoryOrCreate' } },
  ]);
  assert.equal(spec.restartPolicy, 'Always');
});

test('probes by default follow the app: a startup probe every second for up to 5 minutes, then readiness and liveness at once; each part configurable', () => {
  const probes = (extra: Record<string, string> = {}) =>
    buildPod(loadConfig({ ...env, ...extra }), request(loadConfig(env))).spec?.containers[0];
  const c = probes();
  assert.deepEqual(c?.startupProbe, {
    httpGet: { path: '/v1/sandbox', port: 8080 },
    periodSeconds: 1,
    timeoutSeconds: 1,
    failureThreshold: 300,
  });
  assert.deepEqual([c?.readinessProbe?.initialDelaySeconds, c?.readinessProbe?.periodSeconds], [0, 5]);
  assert.deepEqual([c?.livenessProbe?.initialDelaySeconds, c?.livenessProbe?.periodSeconds], [0, 10]);
  const tuned = probes({ SANDBOX_STARTUP_PERIOD_SECONDS: '2', SANDBOX_STARTUP_MAX_SECONDS: '601', SANDBOX_READINESS_PERIOD_SECONDS: '3' });
  assert.deepEqual(
    [tuned?.startupProbe?.periodSeconds, tuned?.startupProbe?.failureThreshold, tuned?.readinessProbe?.periodSeconds],
    [2, 301, 3],
  );
  const mixed = probes({ SANDBOX_PROBE_PROFILE: 'reference', SANDBOX_READINESS_INITIAL_DELAY_SECONDS: '0' });
  assert.deepEqual(
    [mixed?.startupProbe, mixed?.readinessProbe?.initialDelaySeconds, mixed?.readinessProbe?.periodSeconds],
    [undefined, 0, 5],
  );
});

test('service: exactly the reference specification, owned by the pod', () => {
  const svc = buildService(loadConfig(env), 'abc-123', { name: 'sandbox-abc-123', uid: 'pod-uid' });
  assert.equal(svc.metadata?.name, 'sandbox-abc-123-svc');
  assert.equal(svc.metadata?.labels?.['app'], 'deer-flow-sandbox');
  assert.equal(svc.metadata?.labels?.['sandbox-id'], 'abc-123');
  assert.deepEqual(svc.spec, {
    type: 'NodePort',
    selector: { 'sandbox-id': 'abc-123' },
    ports: [{ name: 'http', port: 8080, targetPort: 8080, protocol: 'TCP' }],
  });
  assert.deepEqual(svc.metadata?.ownerReferences, [
    { apiVersion: 'v1', kind: 'Pod', name: 'sandbox-abc-123', uid: 'pod-uid', blockOwnerDeletion: false },
  ]);
});

test('every number and path comes from the environment', () => {
  const config = loadConfig({
    ...env,
    SANDBOX_IMAGE: 'registry.local/sandbox:1',
    SANDBOX_IMAGE_PULL_POLICY: 'Always',
    SANDBOX_CONTAINER_PORT: '9090',
    SANDBOX_CPU_REQUEST: '500m',
    SANDBOX_MEMORY_REQUEST: '512Mi',
    SANDBOX_EPHEMERAL_STORAGE_REQUEST: '1Gi',
    SANDBOX_CPU_LIMIT: '2000m',
    SANDBOX_MEMORY_LIMIT: '2Gi',
    SANDBOX_EPHEMERAL_STORAGE_LIMIT: '2Gi',
    SANDBOX_READINESS_INITIAL_DELAY_SECONDS: '1',
    SANDBOX_READINESS_PERIOD_SECONDS: '2',
    SANDBOX_LIVENESS_INITIAL_DELAY_SECONDS: '3',
    SANDBOX_LIVENESS_PERIOD_SECONDS: '4',
    SANDBOX_SERVICE_TYPE: 'ClusterIP',
    USERDATA_PATH_TEMPLATE: 'users/{user_id}/threads/{thread_id}/user-data',
  });
  const pod = buildPod(config, request(config, { user_id: 'alice' }));
  const c = pod.spec?.containers[0];
  assert.equal(c?.image, 'registry.local/sandbox:1');
  assert.equal(c?.imagePullPolicy, 'Always');
  assert.equal(c?.ports?.[0]?.containerPort, 9090);
  assert.deepEqual(c?.resources?.limits, { cpu: '2000m', memory: '2Gi', 'ephemeral-storage': '2Gi' });
  assert.deepEqual(c?.resources?.requests, { cpu: '500m', memory: '512Mi', 'ephemeral-storage': '1Gi' });
  assert.deepEqual(
    [
      c?.readinessProbe?.initialDelaySeconds,
      c?.readinessProbe?.periodSeconds,
      c?.livenessProbe?.initialDelaySeconds,
      c?.livenessProbe?.periodSeconds,
    ],
    [1, 2, 3, 4],
  );
  assert.equal(c?.readinessProbe?.httpGet?.port, 9090);
  assert.equal(pod.spec?.volumes?.[1]?.hostPath?.path, '/absolute/path/to/threads/users/alice/threads/thread-456/user-data');
  assert.equal(buildService(config, 'abc-123').spec?.type, 'ClusterIP');
});

test('PVC mode: skills and user data from named claims, user data under the reference’s per-user, per-thread subPath', () => {
  const config = loadConfig({ ...env, SKILLS_PVC_NAME: 'skills-pvc', USERDATA_PVC_NAME: 'data-pvc' });
  const pod = buildPod(config, request(config));
  assert.deepEqual(pod.spec?.volumes, [
    { name: 'skills', persistentVolumeClaim: { claimName: 'skills-pvc', readOnly: true } },
    { name: 'user-data', persistentVolumeClaim: { claimName: 'data-pvc' } },
  ]);
  assert.deepEqual(pod.spec?.containers[0]?.volumeMounts, [
    { name: 'skills', mountPath: '/mnt/skills', readOnly: true },
    { name: 'user-data', mountPath: '/mnt/user-data', readOnly: false, subPath: 'deer-flow/users/default/threads/thread-456/user-data' },
  ]);
  assert.equal(JSON.stringify(pod).includes('hostPath'), false);
});

test('extra mounts become volumes; the lark runtime comes from an init container when configured', () => {
  const config = loadConfig({ ...env, EXTRA_MOUNTS_BASE_DIR: '/state', LARK_CLI_INIT_IMAGE: 'lark-init:1' });
  const pod = buildPod(
    config,
    request(config, {
      provision_lark_cli_runtime: true,
      extra_mounts: [
        { host_path: '/state/users/a/skills/custom', container_path: '/mnt/skills/custom', read_only: true },
        { host_path: '/state/users/a/lark/runtime', container_path: '/mnt/integrations/lark-cli/runtime', read_only: true },
      ],
    }),
  );
  const mounts = pod.spec?.containers[0]?.volumeMounts ?? [];
  assert.deepEqual(
    mounts.find((m) => m.mountPath === '/mnt/skills/custom'),
    { name: 'extra-0', mountPath: '/mnt/skills/custom', readOnly: true },
  );
  assert.deepEqual(pod.spec?.volumes?.find((v) => v.name === 'extra-0')?.hostPath, {
    path: '/state/users/a/skills/custom',
    type: 'Directory',
  });
  assert.equal(pod.spec?.initContainers?.[0]?.image, 'lark-init:1');
  assert.deepEqual(
    mounts.filter((m) => m.mountPath === '/mnt/integrations/lark-cli/runtime'),
    [{ name: 'lark-cli-runtime', mountPath: '/mnt/integrations/lark-cli/runtime', readOnly: true }],
  );
});

test('security profiles: `reference` (default) is what the AIO image needs, `hardened` drops it all; each variable overrides', () => {
  const config = loadConfig(env);
  const pod = buildPod(config, request(config));
  assert.equal(pod.spec?.automountServiceAccountToken, false, 'no service account token in either profile');
  assert.equal(pod.spec?.enableServiceLinks, false);
  assert.equal(pod.spec?.securityContext, undefined, 'no seccomp filter: Chromium and supervisord need more');
  assert.deepEqual(pod.spec?.containers[0]?.securityContext, { privileged: false, allowPrivilegeEscalation: true });
  assert.equal(pod.spec?.runtimeClassName, undefined);

  const hardened = loadConfig({ ...env, SANDBOX_SECURITY_PROFILE: 'hardened' });
  const h = buildPod(hardened, request(hardened));
  assert.deepEqual(h.spec?.securityContext, { seccompProfile: { type: 'RuntimeDefault' } });
  assert.deepEqual(h.spec?.containers[0]?.securityContext, {
    privileged: false,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
  });

  const tuned = loadConfig({
    ...env,
    SANDBOX_SECURITY_PROFILE: 'hardened',
    SANDBOX_ALLOW_PRIVILEGE_ESCALATION: 'true',
    SANDBOX_DROP_CAPABILITIES: '',
    SANDBOX_ADD_CAPABILITIES: 'SYS_PTRACE',
    SANDBOX_SECCOMP_PROFILE: 'none',
    SANDBOX_RUN_AS_NON_ROOT: 'true',
    SANDBOX_RUNTIME_CLASS: 'gvisor',
    SANDBOX_NODE_SELECTOR: 'pool=sandboxes,zone=a',
    SANDBOX_TOLERATIONS: '[{"key":"sandbox","operator":"Exists","effect":"NoSchedule"}]',
    SANDBOX_SHM_SIZE: '2Gi',
    SANDBOX_MEMORY_LIMIT: '4Gi',
  });
  const p = buildPod(tuned, request(tuned));
  assert.deepEqual(p.spec?.containers[0]?.securityContext, {
    privileged: false,
    allowPrivilegeEscalation: true,
    capabilities: { add: ['SYS_PTRACE'] },
  });
  assert.deepEqual(p.spec?.securityContext, { runAsNonRoot: true });
  assert.equal(p.spec?.runtimeClassName, 'gvisor');
  assert.deepEqual(p.spec?.nodeSelector, { pool: 'sandboxes', zone: 'a' });
  assert.deepEqual(p.spec?.tolerations, [{ key: 'sandbox', operator: 'Exists', effect: 'NoSchedule' }]);
  assert.deepEqual(p.spec?.volumes?.at(-1), { name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: '2Gi' } });
  assert.deepEqual(p.spec?.containers[0]?.volumeMounts?.at(-1), { name: 'dshm', mountPath: '/dev/shm' });
  assert.equal(JSON.stringify(pod).includes('dshm'), false, 'no /dev/shm volume unless SANDBOX_SHM_SIZE is set');
});
