// The production overlay as an operator applies it, on the real control plane: without its Secret the
// pods wait with kubelet's event naming it (the fake node resolves env references as kubelet does);
// with it, two replicas configured as the overlay configures them accept each other's capability URLs;
// with keys generated per replica instead, /readyz and the log say why URLs fail on the other one.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import type { PodJson, WireList } from '../../src/domain/wire.ts';
import { admin, call, cluster, eventually, namespace, spawnProvisioner } from '../helpers.ts';

const root = join(import.meta.dirname, '..', '..');

/** The production overlay under the user's own namespace (and a name prefix for its cluster-wide objects). */
function userOverlay(t: { after: (fn: () => void) => void }, ns: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'prod-'));
  // What an apply of it made (its cluster-wide guard too) goes first, then the directory.
  t.after(() => {
    kubectl('delete', '-k', dir, '--ignore-not-found', '--wait=false');
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      `namespace: ${ns}`,
      `namePrefix: ${ns}-`,
      `resources: [${relative(dir, join(root, 'deploy', 'overlays', 'production'))}]`,
      '',
    ].join('\n'),
  );
  return dir;
}

const kubectl = (...args: string[]) => spawnSync(cluster().kubectl, ['--kubeconfig', cluster().kubeconfig, ...args], { encoding: 'utf8' });

test('the production overlay applied without its Secret: the pods wait, with an event naming it; with the Secret they start', async (t) => {
  const ns = await namespace(t, 'prod');
  const dir = userOverlay(t, ns);
  const applied = kubectl('apply', '-k', dir);
  assert.equal(applied.status, 0, applied.stderr);
  // Not part of the build, so not prefixed: the Secret the docs have the operator create.
  const secret = 'sandbox-provisioner';
  const kube = admin();
  const pods = async () =>
    (await kube.get<WireList<PodJson>>(`/api/v1/namespaces/${ns}/pods?labelSelector=app.kubernetes.io%2Fname%3Dsandbox-provisioner`))
      .items ?? [];
  const waiting = await eventually(
    'both replicas wait for the Secret',
    async () => {
      const list = await pods();
      const states = list.map((p) => p.status?.containerStatuses?.[0]?.state?.waiting);
      return list.length === 2 && states.every((s) => s?.reason === 'CreateContainerConfigError') ? states : undefined;
    },
    30_000,
  );
  assert.equal(waiting[0]?.message, `secret "${secret}" not found`);
  const events = (await kube.get(`/api/v1/namespaces/${ns}/events`)) as { items: { reason?: string; message?: string; type?: string }[] };
  assert.ok(
    events.items.some((e) => e.type === 'Warning' && e.reason === 'Failed' && e.message === `Error: secret "${secret}" not found`),
    'kubelet says which Secret is missing',
  );
  // The steps' order: the Secret, then the pods go on by themselves.
  const made = kubectl(
    'create',
    'secret',
    'generic',
    secret,
    '-n',
    ns,
    '--from-literal=api-key=k',
    `--from-literal=signing-keys=${'s'.repeat(32)}`,
  );
  assert.equal(made.status, 0, made.stderr);
  await eventually(
    'the containers start',
    async () => ((await pods()).every((p) => p.status?.containerStatuses?.[0]?.state?.running) ? true : undefined),
    30_000,
  );
});

/** The provisioner settings the production overlay generates, for a replica run here (storage and upstream as this machine allows). */
function productionEnv(): Record<string, string | undefined> {
  const built = kubectl('kustomize', join(root, 'deploy', 'overlays', 'production'));
  assert.equal(built.status, 0, built.stderr);
  const items = built.stdout.split(/^---$/m).map((doc) => doc.trim());
  const data: Record<string, string> = {};
  for (const doc of items) {
    if (!/^kind: ConfigMap$/m.test(doc)) continue;
    for (const m of doc.matchAll(/^ {2}([A-Z_]+): "?([^"\n]*)"?$/gm)) data[m[1] ?? ''] = m[2] ?? '';
  }
  assert.equal(data['SANDBOX_URL_MODE'], 'proxy');
  const { KUBECONFIG_PATH: _, ...rest } = data;
  // No RWX storage class or cluster DNS on this machine: host paths and pod addresses instead.
  return { ...rest, STORAGE_MODE: 'hostPath', SKILLS_PVC_NAME: undefined, USERDATA_PVC_NAME: undefined, PROXY_UPSTREAM: 'pod' };
}

test('two replicas as the production overlay runs them: with the Secret each accepts the other’s capability URLs; without, /readyz and the log say why not', async (t) => {
  const env = productionEnv();
  const key = { 'x-api-key': 'k' };
  for (const shared of [true, false]) {
    const ns = await namespace(t, shared ? 'twin' : 'twinx');
    const secret = shared
      ? { PROVISIONER_API_KEY: 'k', PROXY_SIGNING_KEYS: 'shared-signing-key-'.padEnd(40, 'x') }
      : { PROVISIONER_API_KEY: 'k' };
    const [a, b] = await Promise.all([spawnProvisioner(t, ns, { ...env, ...secret }), spawnProvisioner(t, ns, { ...env, ...secret })]);
    const errors: string[] = [];
    createInterface({ input: b.child.stdout as NodeJS.ReadableStream }).on('line', (l) => {
      if ((JSON.parse(l) as { level: number }).level >= 50) errors.push(l);
    });
    const made = await call(a.url, 'POST', '/api/sandboxes?wait=30', { sandbox_id: 'twin' }, key);
    assert.equal(made.body['status'], 'Running');
    const path = new URL(String(made.body['sandbox_url'])).pathname;
    assert.match(path, /^\/s\/twin\.[\w-]{32}$/);
    const viaA = await fetch(`${a.url}${path}/v1/sandbox`);
    const viaB = await fetch(`${b.url}${path}/v1/sandbox`);
    assert.equal(viaA.status, 200);
    if (shared) {
      assert.equal(viaB.status, 200, 'the other replica accepts the URL');
      assert.equal(JSON.stringify((await call(b.url, 'GET', '/readyz')).body).includes('signing-keys'), false);
    } else {
      assert.equal(viaB.status, 404, 'keys made per replica: the other replica cannot verify it');
      const ready = await eventually('the other replica says why', async () => {
        const body = (await call(b.url, 'GET', '/readyz')).body as { checks: { name: string; ok: boolean; detail?: string }[] };
        return body.checks.find((c) => c.name === 'signing-keys');
      });
      assert.equal(ready.ok, false);
      assert.match(String(ready.detail), /PROXY_SIGNING_KEYS is not set, so each replica .* made its own key/);
      await eventually('and logs it at error level', () => (errors.some((l) => l.includes('signed with another key')) ? true : undefined));
    }
  }
});
