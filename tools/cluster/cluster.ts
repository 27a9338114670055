// The local control plane: etcd, kube-apiserver, kube-controller-manager (real binaries built from the
// Go module proxy by build-binaries.sh) and the TypeScript fake node, run on loopback with free ports.
// Every process is started detached, its pid written to the state dir, so `cluster:up` can return
// while the cluster keeps running and `cluster:down` (or another process) can stop it.

import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import type { NodeJson } from '../../src/domain/wire.ts';
import { gateway } from './gateway.ts';
import { POD_HOST_PORT } from './pod-host.ts';
import { createPodNetwork, destroyPodNetwork, inPodNetwork, podNetworkAlive } from './pod-network.ts';
import { alive, freePort } from './processes.ts';
import type { ClusterState, ClusterTokens } from './state.ts';

const here = import.meta.dirname;
export const K8S_VERSION = 'v1.37.2';

export type { ClusterState, ClusterTokens } from './state.ts';

export function defaultStateDir(): string {
  return resolve(process.env['LOCAL_CLUSTER_DIR'] ?? join(here, '..', '..', '.local-cluster'));
}

/**
 * Folder holding kube-apiserver, kube-controller-manager and etcd; builds them once if needed. A first
 * build takes about 11 minutes on 2 cores and Go prints nothing meanwhile, so `log` gets which binary
 * is being built, a line at least every 30 s, the cache path, and the total time at the end.
 */
export async function binaries(log: (line: string) => void = () => {}): Promise<string> {
  const assets = process.env['KUBEBUILDER_ASSETS'];
  if (assets && existsSync(join(assets, 'kube-apiserver')) && existsSync(join(assets, 'etcd'))) {
    if (!existsSync(join(assets, 'kube-controller-manager'))) {
      throw new Error(`KUBEBUILDER_ASSETS=${assets} lacks kube-controller-manager (needed to enforce ResourceQuota)`);
    }
    return assets;
  }
  const started = Date.now();
  const elapsed = (): string =>
    `${Math.floor((Date.now() - started) / 60_000)}m${String(Math.floor(((Date.now() - started) % 60_000) / 1000)).padStart(2, '0')}s`;
  const child = spawn('bash', [join(here, 'build-binaries.sh')], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let building: string | undefined;
  let built = false;
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-8000);
    for (const line of c.toString().split('\n')) {
      const m = /^building (\S+)/.exec(line);
      if (m) {
        building = m[1];
        built = true;
        log(`${line.trim()} [${elapsed()} so far]`);
      } else if (/^cache: /.test(line)) log(`control plane binaries: ${line.slice('cache: '.length).trim()}`);
    }
  });
  const ticker = setInterval(
    () => building && log(`still building ${building} (${elapsed()} so far; go build prints nothing until it is done)`),
    30_000,
  );
  const code = await new Promise<number | null>((ok) => child.once('close', ok)).finally(() => clearInterval(ticker));
  if (code !== 0) throw new Error(`building the control plane failed:\n${stderr.slice(-4000)}`);
  const folder = stdout.trim().split('\n').at(-1) ?? '';
  if (built) log(`control plane built in ${elapsed()} into ${folder}; later starts reuse it and take seconds`);
  return folder;
}

function startDetached(dir: string, name: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const log = openSync(join(dir, `${name}.log`), 'a');
  const child = spawn(command, args, { detached: true, stdio: ['ignore', log, log], env });
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${name}`);
  return child.pid;
}

function logTail(dir: string, name: string): string {
  try {
    return readFileSync(join(dir, `${name}.log`), 'utf8')
      .split('\n')
      .slice(-15)
      .join('\n');
  } catch {
    return '(no log)';
  }
}

async function waitUntil(what: string, deadlineMs: number, check: () => Promise<boolean>, onFail: () => string): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`${what} did not become ready in ${deadlineMs / 1000}s\n${onFail()}`);
}

export function readState(dir = defaultStateDir()): ClusterState | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as ClusterState;
  } catch {
    return undefined;
  }
}

function kubeconfigYaml(server: string, caFile: string, token: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: local',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority: ${caFile}`,
    'users:',
    '- name: admin',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: local',
    '  context: {cluster: local, user: admin}',
    'current-context: local',
    '',
  ].join('\n');
}

/** An undici dispatcher trusting the local API server's self-signed certificate. */
export function apiAgent(state: ClusterState): Agent {
  return new Agent({ connect: { ca: readFileSync(join(state.dir, 'pki', 'apiserver.crt')) } });
}

async function apiRequest(
  state: ClusterState,
  agent: Agent,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  const res = await request(state.server + path, {
    method,
    dispatcher: agent,
    headers: { authorization: `Bearer ${state.tokens.admin}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.statusCode, body: await res.body.text() };
}

const apiGet = (state: ClusterState, agent: Agent, path: string): Promise<{ status: number; body: string }> =>
  apiRequest(state, agent, 'GET', path);

export async function isHealthy(state: ClusterState): Promise<boolean> {
  if (!COMPONENTS.every((c) => state.pids[c.name] !== undefined && alive(state.pids[c.name] ?? 0))) return false;
  if (state.gateway && !alive(state.gateway.pid)) return false;
  return nodeReady(state);
}

/** The API server answers and the fake node is Ready. */
async function nodeReady(state: ClusterState): Promise<boolean> {
  const agent = apiAgent(state);
  try {
    const ready = await apiGet(state, agent, '/readyz');
    if (ready.status !== 200) return false;
    const node = await apiGet(state, agent, '/api/v1/nodes/fake-node');
    if (node.status !== 200) return false;
    const conditions = (JSON.parse(node.body) as NodeJson).status?.conditions ?? [];
    return conditions.some((c) => c.type === 'Ready' && c.status === 'True');
  } catch {
    return false;
  } finally {
    await agent.close();
  }
}

export type UpOptions = { dir?: string; log?: (line: string) => void };

/** The processes of the cluster, in start order: how each starts (from the state) and how it is known to serve. */
type Component = {
  name: string;
  start: (state: ClusterState, bin: string) => number;
  ready: (state: ClusterState) => Promise<boolean>;
  timeoutMs: number;
};

const COMPONENTS: Component[] = [
  {
    name: 'etcd',
    start: (state, bin) => {
      const peer = `http://127.0.0.1:${state.ports.etcdPeer}`;
      return startDetached(state.dir, 'etcd', join(bin, 'etcd'), [
        '--name=local',
        `--data-dir=${join(state.dir, 'etcd-data')}`,
        `--listen-client-urls=${state.etcdUrl}`,
        `--advertise-client-urls=${state.etcdUrl}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=local=${peer}`,
        '--unsafe-no-fsync',
        '--log-level=warn',
      ]);
    },
    ready: async (state) => (await request(`${state.etcdUrl}/health`)).statusCode === 200,
    timeoutMs: 30_000,
  },
  {
    name: 'kube-apiserver',
    start: (state, bin) => startDetached(state.dir, 'kube-apiserver', join(bin, 'kube-apiserver'), apiserverArgs(state, state.dir)),
    ready: async (state) => {
      if (!existsSync(join(state.dir, 'pki', 'apiserver.crt'))) return false;
      const agent = apiAgent(state);
      try {
        return (await apiGet(state, agent, '/readyz')).status === 200;
      } finally {
        await agent.close();
      }
    },
    timeoutMs: 120_000,
  },
  {
    name: 'kube-controller-manager',
    start: (state, bin) =>
      startDetached(state.dir, 'kube-controller-manager', join(bin, 'kube-controller-manager'), controllerManagerArgs(state)),
    ready: async () => true, // it serves nothing the harness asks; the cluster's health check follows
    timeoutMs: 10_000,
  },
  {
    name: 'pod-host',
    start: (state) => {
      const [command = 'ip', ...args] = inPodNetwork(state.podNetwork, [
        process.execPath,
        join(here, 'pod-host.ts'),
        state.podNetwork.nsIp,
        String(POD_HOST_PORT),
      ]);
      return startDetached(state.dir, 'pod-host', command, args);
    },
    ready: async (state) =>
      (await request(`http://${state.podNetwork.nsIp}:${POD_HOST_PORT}/pods/0.0.0.0`, { method: 'DELETE' })).statusCode === 204,
    timeoutMs: 30_000,
  },
  {
    name: 'fake-node',
    start: (state) =>
      startDetached(state.dir, 'fake-node', process.execPath, [join(here, 'fake-node.ts')], {
        ...process.env,
        KUBECONFIG: state.kubeconfig,
        FAKE_NODE_CONTROL_PORT: String(state.ports.fakeNodeControl),
      }),
    ready: (state) => nodeReady(state),
    timeoutMs: 60_000,
  },
];

/** A new cluster's state: its directory, credentials, keys and ports; nothing started. */
async function fresh(dir: string, bin: string): Promise<ClusterState> {
  mkdirSync(join(dir, 'pki'), { recursive: true });
  const tokens: ClusterTokens = { admin: randomBytes(16).toString('hex'), nobody: randomBytes(16).toString('hex') };
  writeFileSync(
    join(dir, 'tokens.csv'),
    `${tokens.admin},admin,admin-uid,"system:masters"\n${tokens.nobody},nobody,nobody-uid,"system:authenticated"\n`,
    { mode: 0o600 },
  );
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(dir, 'pki', 'sa.key'), privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(dir, 'pki', 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  const podNetwork = createPodNetwork(dir);
  const [etcd, etcdPeer, api, controllerManager, fakeNodeControl] = await Promise.all([1, 2, 3, 4, 5].map(() => freePort()));
  const ports = {
    etcd: etcd ?? 0,
    etcdPeer: etcdPeer ?? 0,
    api: api ?? 0,
    controllerManager: controllerManager ?? 0,
    fakeNodeControl: fakeNodeControl ?? 0,
  };
  return {
    dir,
    kubectl: existsSync(join(bin, 'kubectl')) ? join(bin, 'kubectl') : 'kubectl',
    kubeconfig: join(dir, 'kubeconfig'),
    server: `https://127.0.0.1:${ports.api}`,
    etcdUrl: `http://127.0.0.1:${ports.etcd}`,
    tokens,
    fakeNodeControl: `http://127.0.0.1:${ports.fakeNodeControl}`,
    controllerManagerPort: ports.controllerManager,
    ports,
    podNetwork,
    pids: {},
  };
}

const saveState = (state: ClusterState): void => writeFileSync(join(state.dir, 'state.json'), JSON.stringify(state, null, 2));

/**
 * Starts the control plane, or what of it is not running: a cluster whose state is on disk keeps its
 * data (etcd), credentials and ports, and only its dead processes are started again (and named in the
 * log). Safe to call twice.
 */
export async function up(options: UpOptions = {}): Promise<ClusterState> {
  const dir = resolve(options.dir ?? defaultStateDir());
  const log = options.log ?? (() => {});
  const existing = readState(dir);
  if (existing?.ports && (await isHealthy(existing))) return existing;
  // A state written before ports and the pod network were kept, or whose network is gone (a reboot): start over.
  if (existing && !(existing.ports && podNetworkAlive(existing.podNetwork))) await down(dir);
  const bin = await binaries(log);
  const started = Date.now();
  const kept = readState(dir);
  const state = kept ?? (await fresh(dir, bin));
  const restarted: string[] = [];
  try {
    for (const c of COMPONENTS) {
      const pid = state.pids[c.name];
      if (pid !== undefined && alive(pid) && (await c.ready(state).catch(() => false))) continue;
      if (pid !== undefined) restarted.push(c.name);
      state.pids[c.name] = c.start(state, bin);
      saveState(state);
      if (c.name === 'kube-apiserver' || !existsSync(state.kubeconfig)) writeKubeconfig(state);
      await waitUntil(
        c.name,
        c.timeoutMs,
        () => c.ready(state),
        () => logTail(dir, c.name),
      );
      log(`${c.name} ready (${Date.now() - started} ms)`);
    }
    if (state.gateway && !alive(state.gateway.pid)) {
      restarted.push('traefik');
      await gateway(state, log);
    }
    await waitUntil(
      'the cluster',
      60_000,
      () => isHealthy(state),
      () => `${logTail(dir, 'fake-node')}\n${logTail(dir, 'kube-controller-manager')}`,
    );
    log(
      restarted.length
        ? `cluster ready; restarted what had died: ${restarted.join(', ')} (${Date.now() - started} ms)`
        : `cluster ready (${Date.now() - started} ms)`,
    );
    return state;
  } catch (err) {
    if (!kept) await down(dir);
    throw err;
  }
}

function writeKubeconfig(state: ClusterState): void {
  writeFileSync(state.kubeconfig, kubeconfigYaml(state.server, join(state.dir, 'pki', 'apiserver.crt'), state.tokens.admin), {
    mode: 0o600,
  });
}

function apiserverArgs(state: ClusterState, dir: string, port = new URL(state.server).port, certDir = join(dir, 'pki')): string[] {
  return [
    `--etcd-servers=${state.etcdUrl}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${port}`,
    `--cert-dir=${certDir}`,
    `--token-auth-file=${join(dir, 'tokens.csv')}`,
    '--authorization-mode=RBAC',
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${join(dir, 'pki', 'sa.pub')}`,
    `--service-account-signing-key-file=${join(dir, 'pki', 'sa.key')}`,
    '--service-cluster-ip-range=10.96.0.0/16',
    '--service-node-port-range=30000-32767',
    // Logs, exec and port-forward reach a node by its address, never by a hostname lookup (which left
    // the machine for its resolver).
    '--kubelet-preferred-address-types=InternalIP',
    '--endpoint-reconciler-type=none',
    '--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,ResourceQuota,PodSecurity,DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy',
    '--allow-privileged=true',
    '--max-requests-inflight=800',
    '--max-mutating-requests-inflight=400',
    '-v=1',
  ];
}

/** Stops everything recorded in the state dir and removes it. */
export async function down(dir = defaultStateDir()): Promise<void> {
  const state = readState(dir);
  if (state) {
    const order = ['traefik', 'fake-node', 'pod-host', 'kube-controller-manager', 'kube-apiserver', 'etcd'];
    for (const name of order) {
      const pid = state.pids[name];
      if (pid === undefined || !alive(pid)) continue;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        continue;
      }
      for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  }
  destroyPodNetwork(state?.podNetwork);
  rmSync(dir, { recursive: true, force: true });
}

function controllerManagerArgs(state: ClusterState): string[] {
  return [
    `--kubeconfig=${state.kubeconfig}`,
    `--authentication-kubeconfig=${state.kubeconfig}`,
    `--authorization-kubeconfig=${state.kubeconfig}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${state.controllerManagerPort}`,
    `--cert-dir=${join(state.dir, 'kcm-pki')}`,
    '--leader-elect=false',
    '--use-service-account-credentials=false',
    `--service-account-private-key-file=${join(state.dir, 'pki', 'sa.key')}`,
    `--root-ca-file=${join(state.dir, 'pki', 'apiserver.crt')}`,
    // The fake node keeps no kubelet heartbeat lease: keep node-lifecycle from tainting and evicting it.
    '--controllers=*,-node-lifecycle-controller,-node-ipam-controller',
    '--kube-api-qps=200',
    '--kube-api-burst=400',
    '--concurrent-gc-syncs=50',
    '-v=1',
  ];
}

/**
 * After an API server outage or freeze, the controller manager's informers sit in client-go's backoff
 * (up to 30 s): a namespace made by the next test would wait that long for its service account. A
 * restart reconnects at once; this returns when a fresh namespace gets its default service account.
 */
export async function recoverControllers(state: ClusterState): Promise<void> {
  const pid = state.pids['kube-controller-manager'];
  if (pid !== undefined && alive(pid)) {
    process.kill(pid, 'SIGKILL');
    while (alive(pid)) await sleep(50);
  }
  state.pids['kube-controller-manager'] = startDetached(
    state.dir,
    'kube-controller-manager',
    join(await binaries(), 'kube-controller-manager'),
    controllerManagerArgs(state),
  );
  writeFileSync(join(state.dir, 'state.json'), JSON.stringify(state, null, 2));
  const agent = apiAgent(state);
  const name = `recover-${randomBytes(3).toString('hex')}`;
  try {
    await apiRequest(state, agent, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    await waitUntil(
      'the controller manager',
      60_000,
      async () => (await apiGet(state, agent, `/api/v1/namespaces/${name}/serviceaccounts/default`)).status === 200,
      () => logTail(state.dir, 'kube-controller-manager'),
    );
    await apiRequest(state, agent, 'DELETE', `/api/v1/namespaces/${name}`);
  } finally {
    await agent.close();
  }
}

/** Stops only the API server (same etcd stays), for outage tests. */
export async function stopApiServer(state: ClusterState): Promise<void> {
  const pid = state.pids['kube-apiserver'];
  if (pid === undefined) return;
  process.kill(pid, 'SIGKILL');
  while (alive(pid)) await sleep(50);
}

/** Starts the API server again on the same port and etcd, and waits until it is ready. */
export async function startApiServer(state: ClusterState): Promise<void> {
  const bin = await binaries();
  state.pids['kube-apiserver'] = startDetached(state.dir, 'kube-apiserver', join(bin, 'kube-apiserver'), apiserverArgs(state, state.dir));
  writeFileSync(join(state.dir, 'state.json'), JSON.stringify(state, null, 2));
  const agent = apiAgent(state);
  try {
    await waitUntil(
      'kube-apiserver',
      120_000,
      async () => (await apiGet(state, agent, '/readyz')).status === 200,
      () => logTail(state.dir, 'kube-apiserver'),
    );
  } finally {
    await agent.close();
  }
}

/**
 * A second API server on the same etcd (its own port and serving certificate): lets a test change the
 * cluster while the first API server, the one the code under test talks to, is down.
 */
export async function startSecondApiServer(state: ClusterState): Promise<{ server: string; caFile: string; stop: () => Promise<void> }> {
  const bin = await binaries();
  const port = await freePort();
  const certDir = join(state.dir, 'pki-2');
  mkdirSync(certDir, { recursive: true });
  const pid = startDetached(
    state.dir,
    'kube-apiserver-2',
    join(bin, 'kube-apiserver'),
    apiserverArgs(state, state.dir, String(port), certDir),
  );
  const second: ClusterState = { ...state, server: `https://127.0.0.1:${port}` };
  const caFile = join(certDir, 'apiserver.crt');
  await waitUntil(
    'second kube-apiserver',
    120_000,
    async () => {
      if (!existsSync(caFile)) return false;
      const agent = new Agent({ connect: { ca: readFileSync(caFile) } });
      try {
        return (await apiGet(second, agent, '/readyz')).status === 200;
      } finally {
        await agent.close();
      }
    },
    () => logTail(state.dir, 'kube-apiserver-2'),
  );
  return {
    server: second.server,
    caFile,
    stop: async () => {
      process.kill(pid, 'SIGKILL');
      while (alive(pid)) await sleep(50);
    },
  };
}
