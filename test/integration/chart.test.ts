// The Helm chart (deploy/helm/sandbox-provisioner) with Helm built from its Go module: lint --strict
// and a server-side dry run of four value sets, the same objects as kustomize's deploy/base, values
// refused by the schema with the value named, and install, upgrade and uninstall on the control plane.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadAllYaml, type RbacV1Subject, type V1Deployment, type V1DeploymentSpec, type V1PodSpec } from '@kubernetes/client-node';
import { loadConfig } from '../../src/config.ts';
import type { Wire } from '../../src/domain/wire.ts';
import type { KubeObject } from '../../tools/cluster/kube-http.ts';
import { admin, call, cluster, eventually, namespace, spawnProvisioner } from '../helpers.ts';

const root = join(import.meta.dirname, '..', '..');
const chart = join(root, 'deploy', 'helm', 'sandbox-provisioner');
const VALUE_SETS: Record<string, string[]> = {
  default: [],
  production: ['-f', join(chart, 'ci', 'production-values.yaml')],
  deerflow: ['-f', join(chart, 'values-deerflow.yaml')],
  gateway: ['-f', join(chart, 'ci', 'gateway-values.yaml')],
};

function helm(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const bin = process.env['HELM_BIN'];
  assert.ok(bin, 'HELM_BIN is set by the global setup (tools/cluster/build-helm.sh)');
  return spawnSync(bin, [...args, '--kubeconfig', cluster().kubeconfig], { encoding: 'utf8' });
}
const kubectl = (input: string, ...args: string[]) =>
  spawnSync(cluster().kubectl, ['--kubeconfig', cluster().kubeconfig, ...args], { encoding: 'utf8', input });

/** A rendered manifest of any kind: a ConfigMap's data and a binding's subjects are compared too. */
type K8sObject = KubeObject & { kind: string; data?: Record<string, string>; subjects?: Wire<RbacV1Subject>[] };

test('helm lint --strict and a server-side dry run of each value set: default, production, DeerFlow drop-in, gateway', async (t) => {
  const ns = await namespace(t, 'chartdry');
  for (const [name, args] of Object.entries(VALUE_SETS)) {
    const lint = helm('lint', '--strict', chart, ...args);
    assert.equal(lint.status, 0, `${name}: ${lint.stdout}${lint.stderr}`);
    const rendered = helm('template', `dry-${name}`, chart, '-n', ns, ...args);
    assert.equal(rendered.status, 0, `${name}: ${rendered.stderr}`);
    const kinds = (loadAllYaml(rendered.stdout) as K8sObject[]).map((o) => o.kind).sort();
    t.diagnostic(`${name}: ${kinds.join(', ')}`);
    const applied = kubectl(rendered.stdout, 'apply', '--dry-run=server', '-n', ns, '-f', '-');
    assert.equal(applied.status, 0, `${name}: ${applied.stderr}`);
  }
});

/** Objects as both ways of installing describe them, without what only says who made them. */
function normalized(objects: K8sObject[]): { objects: K8sObject[]; config: Record<string, string> } {
  let config: Record<string, string> = {};
  const kept = objects
    .filter((o) => o.kind !== 'Namespace' && o.kind !== 'Secret')
    .map((o) => {
      const c = structuredClone(o) as K8sObject & { spec?: Partial<Wire<V1DeploymentSpec>> };
      delete c.metadata.namespace;
      for (const l of ['app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/managed-by', 'helm.sh/chart'])
        delete c.metadata.labels?.[l];
      for (const s of c.subjects ?? []) delete s.namespace;
      if (c.kind === 'ConfigMap') {
        config = c.data ?? {};
        c.metadata.name = 'CONFIG';
        delete c.data;
      }
      if (c.kind === 'Deployment') {
        delete c.spec?.template?.metadata?.annotations;
        // The ConfigMap's name (hashed by kustomize) and whether the Secret may be missing (the chart
        // always makes it, so its references are required).
        const text = JSON.stringify(c.spec?.template?.spec)
          .replace(/"configMapRef":\{"name":"[^"]+"\}/g, '"configMapRef":{"name":"CONFIG"}')
          .replace(/,"optional":(true|false)/g, '');
        if (c.spec?.template) c.spec.template.spec = JSON.parse(text) as Wire<V1PodSpec>;
      }
      return c;
    })
    .sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));
  return { objects: kept, config };
}

test('helm template with the values of deploy/base gives the objects of kustomize build deploy/base', () => {
  const kustomized = kubectl('', 'kustomize', join(root, 'deploy', 'base'));
  assert.equal(kustomized.status, 0, kustomized.stderr);
  // deploy/base has no admission guard (the overlays add it): the chart's default, turned off.
  const rendered = helm('template', 'sandbox-provisioner', chart, '-n', 'deer-flow', '--set', 'sandboxGuard.enabled=false');
  assert.equal(rendered.status, 0, rendered.stderr);
  const fromKustomize = normalized(loadAllYaml(kustomized.stdout) as K8sObject[]);
  const fromHelm = normalized(loadAllYaml(rendered.stdout) as K8sObject[]);
  assert.deepEqual(fromHelm.objects, fromKustomize.objects);
  // The ConfigMaps configure the service the same: the chart lists every setting, deploy/base those it changes.
  const configured = (data: Record<string, string>) => loadConfig({ ...data, K8S_NAMESPACE: 'deer-flow' });
  assert.deepEqual(configured(fromHelm.config), configured(fromKustomize.config));
  assert.equal(fromHelm.config['PROVISIONER_SERVICE_ACCOUNT'], fromKustomize.config['PROVISIONER_SERVICE_ACCOUNT']);
});

test('values of a wrong type or an unknown key are refused by the schema, naming the value', () => {
  for (const [set, named] of [
    ['config.PORT=eighty', /\/config\/PORT/],
    ['config.SANDBOX_SERVICE_TYPE=LoadBalancer', /\/config\/SANDBOX_SERVICE_TYPE.*one of 'NodePort', 'ClusterIP'/s],
    ['config.CREATE_NAMESPACE=maybe', /\/config\/CREATE_NAMESPACE/],
    ['config.SANDBOX_IMAGES=x', /additional properties 'SANDBOX_IMAGES' not allowed/],
    ['replicaCnt=2', /additional properties 'replicaCnt' not allowed/],
    ['replicaCount=two', /\/replicaCount/],
    ['secret.signingKeys=short', /\/secret\/signingKeys/],
  ] as const) {
    const out = helm('template', 'bad', chart, '--set', set);
    assert.notEqual(out.status, 0, set);
    assert.match(out.stderr, named, `${set}: ${out.stderr}`);
  }
});

test('helm install, upgrade and uninstall on the control plane; running sandboxes stay', async (t) => {
  const ns = await namespace(t, 'chart');
  // A sandbox made before the release (by a provisioner run here): uninstalling leaves it running.
  const before = await spawnProvisioner(t, ns);
  assert.equal((await call(before.url, 'POST', '/api/sandboxes', { sandbox_id: 'stays' })).status, 201);
  before.child.kill('SIGKILL');
  const release = `sp-${ns.slice(-6)}`;
  const fullname = `${release}-sandbox-provisioner`;
  t.after(() => void helm('uninstall', release, '-n', ns));
  const kube = admin();
  const installed = helm('install', release, chart, '-n', ns, '--set', 'config.LOG_LEVEL=info');
  assert.equal(installed.status, 0, installed.stderr);
  assert.match(installed.stdout, /port-forward svc\/provisioner 8002:8002/, 'NOTES say how to reach it');
  for (const path of [
    `/apis/apps/v1/namespaces/${ns}/deployments/${fullname}`,
    `/api/v1/namespaces/${ns}/services/provisioner`,
    `/api/v1/namespaces/${ns}/configmaps/${fullname}`,
    `/api/v1/namespaces/${ns}/secrets/${fullname}`,
    `/api/v1/namespaces/${ns}/serviceaccounts/${fullname}`,
    `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles/${fullname}`,
    `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings/${fullname}`,
    `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/${fullname}-sandbox-guard`,
  ])
    assert.ok(await kube.find(path), path);
  // The release's guard covers its sandbox namespace, closed to look-alikes; another namespace is not its own.
  const lookalike = (name: string) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'deer-flow-sandbox', 'sandbox-id': name } },
    spec: { automountServiceAccountToken: false, containers: [{ name: 'sandbox', image: 'x' }] },
  });
  await eventually('the guard is in force', () =>
    kube.post(`/api/v1/namespaces/${ns}/pods`, lookalike('sandbox-fake')).then(
      async () => void (await kube.delete(`/api/v1/namespaces/${ns}/pods/sandbox-fake`, { gracePeriodSeconds: 0 })),
      (err: Error) => (/only the sandbox provisioner/.test(err.message) ? true : undefined),
    ),
  );
  const other = await namespace(t, 'chart-other');
  await kube.post(`/api/v1/namespaces/${other}/pods`, lookalike('sandbox-elsewhere'));
  const deploymentPath = `/apis/apps/v1/namespaces/${ns}/deployments/${fullname}`;
  const podAnnotations = async () => (await kube.get<Wire<V1Deployment>>(deploymentPath)).spec?.template.metadata?.annotations ?? {};
  const first = await podAnnotations();
  const key = (await kube.get(`/api/v1/namespaces/${ns}/secrets/${fullname}`)).data as Record<string, string>;
  assert.ok((key['api-key'] ?? '').length > 40 && (key['signing-keys'] ?? '').length > 60, 'keys made at install');

  const upgraded = helm('upgrade', release, chart, '-n', ns, '--set', 'config.LOG_LEVEL=debug');
  assert.equal(upgraded.status, 0, upgraded.stderr);
  const configMap = await kube.get(`/api/v1/namespaces/${ns}/configmaps/${fullname}`);
  assert.equal((configMap.data as Record<string, string>)['LOG_LEVEL'], 'debug');
  const second = await podAnnotations();
  assert.notEqual(second['checksum/config'], first['checksum/config'], 'the pods roll');
  assert.equal(second['checksum/secret'], first['checksum/secret'], 'the keys are kept across upgrades');
  assert.deepEqual((await kube.get(`/api/v1/namespaces/${ns}/secrets/${fullname}`)).data, key);

  const removed = helm('uninstall', release, '-n', ns, '--wait');
  assert.equal(removed.status, 0, removed.stderr);
  for (const path of [deploymentPath, `/api/v1/namespaces/${ns}/services/provisioner`, `/api/v1/namespaces/${ns}/configmaps/${fullname}`])
    assert.equal(await kube.find(path), undefined, `${path} is removed`);
  assert.ok(await kube.find(`/api/v1/namespaces/${ns}/secrets/${fullname}`), 'the Secret is kept (helm.sh/resource-policy: keep)');
  assert.ok(await kube.find(`/api/v1/namespaces/${ns}/pods/sandbox-stays`), 'a running sandbox stays');
  assert.ok(await kube.find(`/api/v1/namespaces/${ns}/services/sandbox-stays-svc`));
});
