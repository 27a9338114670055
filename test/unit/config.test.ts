import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';

const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

test('defaults are the reference’s', () => {
  const c = loadConfig({});
  assert.equal(c.port, 8002);
  assert.equal(c.namespace, 'deer-flow');
  assert.equal(c.kubeconfigPath, '/root/.kube/config');
  assert.equal(c.nodeHost, 'host.docker.internal');
  assert.equal(c.sandbox.serviceType, 'NodePort');
  // With neither DEER_FLOW_HOST_BASE_DIR nor SKILLS_HOST_PATH: today's reference and its default base dir.
  assert.deepEqual(c.storage, {
    layout: 'current',
    skills: { source: 'views', baseDir: '/.deer-flow' },
    userData: { source: 'hostPath', threadsPath: '/.deer-flow/threads', template: '{thread_id}/user-data' },
  });
  assert.equal(c.extraMounts.baseDir, '/.deer-flow');
  const seed = loadConfig({ SKILLS_HOST_PATH: '/srv/skills' });
  assert.deepEqual(
    [seed.storage.layout, seed.storage.skills, seed.extraMounts.baseDir],
    ['seed', { source: 'hostPath', path: '/srv/skills' }, undefined],
  );
  assert.equal(c.sandbox.security.profile, 'reference');
});

test('relative and ~ host paths are refused with the reason, one line per problem', () => {
  const p = problems({ SKILLS_HOST_PATH: '../skills', THREADS_HOST_PATH: '~/threads' });
  assert.equal(p.length, 2);
  assert.match(p[0] ?? '', /^SKILLS_HOST_PATH: .*absolute path/);
  assert.match(p[1] ?? '', /^THREADS_HOST_PATH: .*absolute path/);
});

test('NODE_HOST, K8S_API_SERVER, numbers, quantities and booleans are checked', () => {
  assert.match(problems({ NODE_HOST: 'http://host:1' })[0] ?? '', /^NODE_HOST:/);
  assert.match(
    problems({ K8S_API_SERVER: 'host.docker.internal:6443' })[0] ?? '',
    /^K8S_API_SERVER: .*https:\/\/host.docker.internal:6443/,
  );
  assert.deepEqual(problems({ K8S_API_SERVER: 'https://host.docker.internal:6443', NODE_HOST: '192.168.1.10' }), []);
  assert.match(problems({ PORT: 'eighty' })[0] ?? '', /^PORT:/);
  assert.match(problems({ SANDBOX_CPU_LIMIT: 'lots' })[0] ?? '', /^SANDBOX_CPU_LIMIT: .*quantity/);
  assert.match(problems({ CREATE_NAMESPACE: 'maybe' })[0] ?? '', /^CREATE_NAMESPACE:/);
  assert.equal(loadConfig({ CREATE_NAMESPACE: 'false' }).createNamespace, false, '"false" is false (z.stringbool)');
  assert.match(problems({ STORAGE_MODE: 'pvc', SKILLS_PVC_NAME: 'only-one' })[0] ?? '', /both SKILLS_PVC_NAME and USERDATA_PVC_NAME/);
  assert.match(problems({ STORAGE_MODE: 'hostPath', USERDATA_PVC_NAME: 'home' })[0] ?? '', /^STORAGE_MODE: hostPath mode takes no/);
  assert.match(problems({ SANDBOX_SECURITY_PROFILE: 'paranoid' })[0] ?? '', /^SANDBOX_SECURITY_PROFILE:/);
  assert.match(problems({ SANDBOX_SHM_SIZE: 'lots' })[0] ?? '', /^SANDBOX_SHM_SIZE: .*quantity/);
  // Shared memory counts against the memory limit: 2Gi of it under a 1Gi limit is refused with the rule.
  assert.match(problems({ SANDBOX_SHM_SIZE: '2Gi' })[0] ?? '', /^SANDBOX_SHM_SIZE: .*counts against the memory limit/);
  assert.match(problems({ SANDBOX_SHM_SIZE: '1024Mi', SANDBOX_MEMORY_LIMIT: '1Gi' })[0] ?? '', /is not below SANDBOX_MEMORY_LIMIT=1Gi/);
  assert.deepEqual(problems({ SANDBOX_SHM_SIZE: '2Gi', SANDBOX_MEMORY_LIMIT: '4Gi' }), []);
  assert.match(problems({ SKILLS_PVC_SUBPATH_TEMPLATE: '../x' })[0] ?? '', /^SKILLS_PVC_SUBPATH_TEMPLATE:/);
  assert.match(problems({ USERDATA_PATH_TEMPLATE: '../{thread_id}' })[0] ?? '', /^USERDATA_PATH_TEMPLATE:/);
});
