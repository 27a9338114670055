// Every shell block of README.md and docs/*.md, as a new operator pastes it: those that can run
// against the local control plane run here, as written, in an operator's order (quick start, Helm
// beside DeerFlow, Helm, kustomize, uninstalls); those that cannot are listed with the reason. A block
// that is in neither list fails the test, so a new one is either run or explained.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { admin, cluster, eventually, provisioner } from '../helpers.ts';

const root = join(import.meta.dirname, '..', '..');

type Block = { where: string; text: string; key: string };

/** The ```sh blocks of the operator's documents; each keyed by its commands without comments. */
function blocks(): Block[] {
  const files = [
    'README.md',
    ...readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
  return files.flatMap((file) => {
    const text = readFileSync(join(root, file), 'utf8');
    return [...text.matchAll(/^( *)```(?:sh|bash|shell)\n([\s\S]*?)^\1```/gm)].map((m) => {
      const body = (m[2] ?? '').replace(new RegExp(`^${m[1]}`, 'gm'), '');
      return { where: `${file}:${text.slice(0, m.index).split('\n').length}`, text: body, key: keyOf(body) };
    });
  });
}
const keyOf = (text: string): string =>
  text
    .split('\n')
    .map((l) => l.replace(/(^|\s)#.*$/, '').trimEnd())
    .filter(Boolean)
    .join('\n');

/** Blocks that cannot run here, each found by a line of its own, and why. */
const CANNOT: [string, string][] = [
  ['npm install', 'the set-up itself: .ci/run installs with npm ci, and the global setup starts the control plane npm run dev starts'],
  [
    'npm run config-docs',
    'a cheat sheet of separate commands: npm run dev runs until Ctrl-C, npm test is this suite, config-docs is checked by a unit test',
  ],
  ['npm run test:unit', 'this suite, or part of it (what .ci/run runs)'],
  ['npm run bench', 'benchmarks take minutes and measure rather than test (bench/, docs/development.md)'],
  ['docker build -f deploy/Dockerfile', 'no Docker engine on this machine'],
  [
    'kubectl -n deer-flow rollout status deployment/sandbox-provisioner',
    'the provisioner’s own pod does not start on the fake node (it runs every container as the sandbox stand-in): needs a real node',
  ],
  [
    'kubectl -n deer-flow port-forward svc/provisioner 8002:8002',
    'port-forward needs a kubelet that streams ports; the fake node serves container logs only',
  ],
];

/** Runs a script as the operator's shell would (bash, -e and pipefail), kubectl and helm on the PATH, this cluster's KUBECONFIG. */
async function sh(script: string, cwd: string): Promise<{ status: number | null; out: string }> {
  const bin = join(cluster().dir, 'docs-bin');
  mkdirSync(bin, { recursive: true });
  for (const [name, target] of [
    ['kubectl', cluster().kubectl],
    ['helm', process.env['HELM_BIN'] ?? ''],
  ] as const) {
    rmSync(join(bin, name), { force: true });
    symlinkSync(target, join(bin, name));
  }
  // Not spawnSync: the quick start's provisioner runs in this process and must answer meanwhile.
  const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
    cwd,
    env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}`, KUBECONFIG: cluster().kubeconfig },
    timeout: 120_000,
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const [status] = (await once(child, 'close')) as [number | null];
  return { status, out };
}

const lines = (b: Block): string[] => b.key.split('\n');
const found = (has: string) => (b: Block) => lines(b).some((l) => l.startsWith(has));

/** The runnable blocks, each found by a line of its own, in the order an operator meets them: what its output must say, or the refusal it shows. */
const RUN: { has: string; expect?: RegExp; fails?: RegExp }[] = [
  { has: 'curl -X POST http://localhost:8002/api/sandboxes \\', expect: /"status":\s*"Running"[\s\S]*pod\/sandbox-test-001/ },
  { has: 'NAMESPACE=deer-flow', expect: /[A-Za-z0-9_-]{40,}$/ },
  {
    has: 'helm install sandbox-provisioner deploy/helm/sandbox-provisioner -n deer-flow --create-namespace \\',
    expect: /STATUS: deployed/,
  },
  {
    has: 'helm upgrade sandbox-provisioner deploy/helm/sandbox-provisioner -n deer-flow --reuse-values --set config.LOG_LEVEL=debug',
    expect: /has been upgraded/,
  },
  { has: 'kubectl get validatingadmissionpolicy,validatingadmissionpolicybinding', fails: /only the sandbox provisioner/ },
  { has: 'kubectl -n deer-flow delete pods,services -l app=deer-flow-sandbox' },
  { has: 'kubectl create namespace deer-flow', expect: /secret\/sandbox-provisioner created/ },
  { has: 'kubectl apply -k my-deployment', expect: /deployment.apps\/sandbox-provisioner created/ },
  {
    has: 'kubectl -n deer-flow delete deployment,service,serviceaccount,role,rolebinding,configmap -l app.kubernetes.io/name=sandbox-provisioner',
    expect: /deployment.apps "sandbox-provisioner" deleted/,
  },
  {
    has: 'kubectl delete validatingadmissionpolicybinding,validatingadmissionpolicy -l app.kubernetes.io/name=sandbox-provisioner',
    expect: /validatingadmissionpolicy.admissionregistration.k8s.io "sandbox-guard" deleted/,
  },
];

test('every shell block of README.md and docs/ is run below or listed with the reason it cannot run here', () => {
  const all = blocks();
  const unlisted = all.filter((b) => !RUN.some((r) => found(r.has)(b)) && !CANNOT.some(([has]) => found(has)(b)));
  assert.deepEqual(
    unlisted.map((b) => `${b.where}: ${lines(b)[0]}`),
    [],
    'a new command block: run it in this test, or say in CANNOT why it cannot run',
  );
  assert.deepEqual(
    [...RUN.map((r) => r.has), ...CANNOT.map(([has]) => has)].filter((has) => !all.some(found(has))),
    [],
    'entries for blocks the documents no longer have',
  );
  printTable(all);
});

/** The table of the closing note: each block, and whether it ran or why not. */
function printTable(all: Block[]): void {
  for (const b of all) {
    const why = CANNOT.find(([has]) => found(has)(b))?.[1];
    console.log(`| ${b.where} | \`${lines(b)[0]}\` | ${why ? `cannot: ${why}` : 'ran'} |`);
  }
}

/** The namespace the documents use, gone (so `kubectl create namespace` runs as written). */
async function withoutDocsNamespace(): Promise<void> {
  const kube = admin();
  await kube.delete('/api/v1/namespaces/deer-flow').catch(() => undefined);
  await eventually(
    'namespace deer-flow is gone',
    async () => ((await kube.find('/api/v1/namespaces/deer-flow')) ? undefined : true),
    60_000,
  );
}

test('the command blocks run as written against the local control plane', async (t) => {
  const all = blocks();
  const run = async (entry: (typeof RUN)[number], cwd = root): Promise<void> => {
    const block = all.find(found(entry.has));
    assert.ok(block, entry.has);
    const { status, out } = await sh(block.text, cwd);
    t.diagnostic(`${block.where}: exit ${status}`);
    if (entry.fails) {
      assert.notEqual(status, 0, `${block.where} is shown being refused:\n${out}`);
      assert.match(out, entry.fails, block.where);
    } else {
      assert.equal(status, 0, `${block.where}:\n${out}`);
      if (entry.expect) assert.match(out, entry.expect, `${block.where}:\n${out}`);
    }
  };
  const entry = (i: number) => RUN[i] as (typeof RUN)[number];
  const helm = async (...args: string[]) => (await sh(`helm ${args.join(' ')}`, root)).status;
  t.after(async () => {
    await helm('uninstall', 'sandbox-provisioner', '-n', 'deer-flow');
    await sh(
      'kubectl delete validatingadmissionpolicybinding,validatingadmissionpolicy -l app.kubernetes.io/name=sandbox-provisioner --ignore-not-found',
      root,
    );
    await withoutDocsNamespace();
  });
  await withoutDocsNamespace();

  // The quick start: `npm run dev`'s provisioner (port 8002, namespace deer-flow), from a directory
  // whose .local-cluster is this run's cluster.
  const quick = await provisioner(t, 'deer-flow', { PORT: '8002', K8S_NAMESPACE: 'deer-flow', CREATE_NAMESPACE: 'true' });
  const dir = mkdtempSync(join(tmpdir(), 'docs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  symlinkSync(cluster().dir, join(dir, '.local-cluster'));
  await run(entry(0), dir);
  await quick.stop(0);
  await withoutDocsNamespace();

  // Helm beside DeerFlow (whose chart made the namespace), then on its own: install, upgrade, the guard
  // refusing a look-alike, the sandboxes' delete, uninstall.
  await admin().post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'deer-flow' } });
  await run(entry(1));
  assert.equal(await helm('uninstall', 'sandbox-provisioner', '-n', 'deer-flow', '--wait'), 0);
  await run(entry(2));
  await run(entry(3));
  await eventually('the guard is in force', async () => {
    const r = await sh('kubectl -n deer-flow run probe --image=x --labels=app=deer-flow-sandbox,sandbox-id=probe', root);
    if (r.status === 0) await sh('kubectl -n deer-flow delete pod probe --grace-period=0', root);
    return r.status === 0 ? undefined : true;
  });
  await run(entry(4));
  await run(entry(5));
  assert.equal(await helm('uninstall', 'sandbox-provisioner', '-n', 'deer-flow', '--wait'), 0);
  await withoutDocsNamespace();

  // kustomize, production: the Secret, the overlay of the operator's own (deploy.md, step 1), apply,
  // then the uninstall that keeps the sandboxes and the guard's removal.
  await run(entry(6));
  const kustomization = /```yaml\n( *)# my-deployment\/kustomization.yaml\n([\s\S]*?)^\1```/m.exec(
    readFileSync(join(root, 'docs', 'deploy.md'), 'utf8'),
  );
  assert.ok(kustomization, 'deploy.md has the overlay of step 1');
  mkdirSync(join(root, 'my-deployment'), { recursive: true });
  t.after(() => rmSync(join(root, 'my-deployment'), { recursive: true, force: true }));
  writeFileSync(
    join(root, 'my-deployment', 'kustomization.yaml'),
    (kustomization[2] ?? '').replace(new RegExp(`^${kustomization[1]}`, 'gm'), ''),
  );
  await run(entry(7));
  await run(entry(8));
  await run(entry(9));
});
