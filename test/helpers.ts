// Shared test helpers: the run's control plane, a namespace per test file, and small HTTP utilities.

import { spawn, type ChildProcess } from 'node:child_process';
import { request as rawRequest } from 'node:http';
import { once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect, type AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import WebSocket from 'ws';
import type { AuthenticationV1TokenRequest } from '@kubernetes/client-node';
import { loadConfig } from '../src/config.ts';
import type { Wire } from '../src/domain/wire.ts';
import { createLogger, silentLogger, type Logger } from '../src/log.ts';
import { start, type Service, type StartOptions } from '../src/service.ts';
import { readState, type ClusterState } from '../tools/cluster/cluster.ts';
import { gateway } from '../tools/cluster/gateway.ts';
import { KubeHttp, kubeFromState } from '../tools/cluster/kube-http.ts';

export function cluster(): ClusterState {
  const dir = process.env['TEST_CLUSTER_DIR'];
  const state = dir ? readState(dir) : undefined;
  if (!state) throw new Error('no test control plane: run the tests with `npm test` (it starts one in its global setup)');
  return state;
}

let adminClient: KubeHttp | undefined;
export function admin(): KubeHttp {
  adminClient ??= kubeFromState(cluster());
  return adminClient;
}

/** Creates a fresh namespace (with its default service account) and deletes it when the test ends. */
export async function namespace(
  t: { after: (fn: () => Promise<void> | void) => void },
  prefix: string,
  labels: Record<string, string> = {},
): Promise<string> {
  const name = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  const kube = admin();
  await kube.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
  t.after(() => kube.delete(`/api/v1/namespaces/${name}`));
  for (let i = 0; i < 100; i++) {
    if (await kube.find(`/api/v1/namespaces/${name}/serviceaccounts/default`)) return name;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`namespace ${name}: no default service account after 10s`);
}

export async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Polls `check` until it returns a value other than undefined (for assertions about the cluster). */
/** Creates a ResourceQuota in `ns` and waits until the quota controller has observed it (admission enforces it from then on). */
export async function resourceQuota(ns: string, name: string, hard: Record<string, string>): Promise<void> {
  const kube = admin();
  await kube.post(`/api/v1/namespaces/${ns}/resourcequotas`, {
    apiVersion: 'v1',
    kind: 'ResourceQuota',
    metadata: { name },
    spec: { hard },
  });
  await eventually(
    `quota ${name} observed`,
    async () => ((await kube.get(`/api/v1/namespaces/${ns}/resourcequotas/${name}`)).status as { hard?: object } | undefined)?.hard,
  );
}

export async function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** Starts the provisioner in-process against the test cluster, in `ns`; stopped when the test ends. */
/**
 * Probes that make a sandbox Ready the moment its container starts on the fake node (readiness probed
 * at the start, no startup probe; the fake node's apps answer at once by default), so tests do not wait
 * out kubelet's probe periods. The default profile is tested where it matters (dropin.test.ts) and
 * measured in `npm run bench -- startup`.
 */
/** DeerFlow's state directory on the node in the DeerFlow client tests. */
export const DEERFLOW_BASE = '/srv/deer-flow';
export type UrlMode = 'nodeport' | 'proxy' | 'gateway';

/**
 * A provisioner's settings for DeerFlow's clients in one URL mode (gateway mode: through Traefik, started
 * once for the run); `direct` is added in the modes without a gateway.
 */
export async function deerflowEnv(mode: UrlMode, direct: Record<string, string> = {}): Promise<Record<string, string>> {
  const common = { DEER_FLOW_HOST_BASE_DIR: DEERFLOW_BASE, THREADS_HOST_PATH: `${DEERFLOW_BASE}/threads`, PROXY_UPSTREAM: 'pod' };
  if (mode !== 'gateway') return { ...common, ...direct, SANDBOX_URL_MODE: mode };
  const gw = await gateway(cluster());
  return {
    ...common,
    SANDBOX_URL_MODE: 'gateway',
    GATEWAY_PARENT_REFS: gw.parentRef,
    GATEWAY_PUBLIC_URL: gw.url,
    SANDBOX_SERVICE_TYPE: 'ClusterIP',
    PROXY_SIGNING_KEYS: 'd'.repeat(32),
  };
}

export const FAST_PROBES = { SANDBOX_PROBE_PROFILE: 'reference', SANDBOX_READINESS_INITIAL_DELAY_SECONDS: '0' };

export async function provisioner(
  t: { after: (fn: () => Promise<void> | void) => void },
  ns: string,
  env: Record<string, string> = {},
  options: StartOptions & { log?: Logger } = {},
): Promise<Service> {
  const config = loadConfig({
    KUBECONFIG_PATH: cluster().kubeconfig,
    K8S_NAMESPACE: ns,
    NODE_HOST: '127.0.0.1',
    HOST: '127.0.0.1',
    PORT: '0',
    SKILLS_HOST_PATH: '/tmp/sandbox-test/skills',
    THREADS_HOST_PATH: '/tmp/sandbox-test/threads',
    LOG_LEVEL: 'silent',
    PROVISIONER_ALLOW_ANONYMOUS: 'true',
    ...FAST_PROBES,
    ...env,
  });
  const service = await start(config, options.log ?? silentLogger(), options);
  t.after(() => service.stop(0));
  await service.view.synced;
  return service;
}

export type JsonResponse = { status: number; headers: Headers; body: Record<string, unknown> };

export async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<JsonResponse> {
  const res = await fetch(base + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { raw: text };
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** Names of the sandbox pods and services in a namespace, straight from the API server. */
export async function objectsIn(ns: string): Promise<{ pods: string[]; services: string[] }> {
  const kube = admin();
  const pods = (await kube.list(`/api/v1/namespaces/${ns}/pods`)).items.map((p) => p.metadata.name).sort();
  const services = (await kube.list(`/api/v1/namespaces/${ns}/services`)).items.map((s) => s.metadata.name).sort();
  return { pods, services };
}

/** Tells the fake node how to treat a pod when it appears (never-ready, crash, image-pull, ...). */
export async function setBehavior(ns: string, pod: string, behavior: string): Promise<void> {
  const res = await fetch(`${cluster().fakeNodeControl}/behavior`, {
    method: 'POST',
    body: JSON.stringify({ namespace: ns, name: pod, behavior }),
  });
  if (res.status !== 200) throw new Error(`fake node refused behavior ${behavior}: ${await res.text()}`);
}

/** The provisioner as its own process (`node src/main.ts`, as deployed), on a free port; killed at the end. */
export async function spawnProvisioner(
  t: { after: (fn: () => void) => void },
  ns: string,
  env: Record<string, string | undefined> = {},
  options: { restricted?: boolean } = {},
): Promise<{ child: ChildProcess; url: string }> {
  // restricted: as the image runs it, uid/gid 1000, and under Node's permission model with file reads
  // only (a write anywhere throws ERR_ACCESS_DENIED): what a read-only root filesystem allows.
  const main = join(import.meta.dirname, '..', 'src', 'main.ts');
  const [command, args] = options.restricted
    ? ['setpriv', ['--reuid', '1000', '--regid', '1000', '--clear-groups', process.execPath, '--permission', '--allow-fs-read=*', main]]
    : [process.execPath, [main]];
  const merged: Record<string, string | undefined> = {
    ...process.env,
    KUBECONFIG_PATH: cluster().kubeconfig,
    K8S_NAMESPACE: ns,
    NODE_HOST: '127.0.0.1',
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'info',
    SKILLS_HOST_PATH: '/tmp/s',
    THREADS_HOST_PATH: '/tmp/t',
    PROVISIONER_ALLOW_ANONYMOUS: 'true',
    ...FAST_PROBES,
    ...env,
  };
  // An undefined value unsets a default (as a deployment that does not set the variable).
  const child = spawn(command, args, {
    env: Object.fromEntries(Object.entries(merged).filter((e): e is [string, string] => e[1] !== undefined)),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => void child.kill('SIGKILL'));
  const port = await new Promise<number>((ok, fail) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      const m = /"port":(\d+)[^\n]*"msg":"provisioner listening"/.exec(line);
      if (m) ok(Number(m[1]));
    });
    child.once('exit', (code) => fail(new Error(`provisioner exited with ${code}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  await eventually('ready', async () => ((await call(url, 'GET', '/readyz')).status === 200 ? true : undefined));
  return { child, url };
}

/** A token of a service account of `ns`, for an hour (a TokenRequest). */
export async function serviceAccountToken(ns: string, serviceAccount: string): Promise<string> {
  const answer = await admin().post<Wire<AuthenticationV1TokenRequest>>(
    `/api/v1/namespaces/${ns}/serviceaccounts/${serviceAccount}/token`,
    {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 3600 },
    },
  );
  if (!answer.status?.token) throw new Error(`no token for ${ns}/${serviceAccount}`);
  return answer.status.token;
}

/**
 * A kubeconfig for a service account of `ns` (a TokenRequest), with the CA inline and readable by any
 * user, so a provisioner running as uid 1000 can use it. Removed when the test ends.
 */
export async function serviceAccountKubeconfig(
  t: { after: (fn: () => void) => void },
  ns: string,
  serviceAccount: string,
): Promise<string> {
  const token = await serviceAccountToken(ns, serviceAccount);
  const state = cluster();
  const ca = readFileSync(join(state.dir, 'pki', 'apiserver.crt')).toString('base64');
  const file = join(tmpdir(), `kubeconfig-${ns}-${serviceAccount}`);
  writeFileSync(
    file,
    `apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: "${state.server}", certificate-authority-data: "${ca}"}\nusers:\n- name: sa\n  user: {token: "${token}"}\ncontexts:\n- name: c\n  context: {cluster: c, user: sa}\ncurrent-context: c\n`,
    { mode: 0o644 },
  );
  t.after(() => rmSync(file, { force: true }));
  return file;
}

export type Raw = { status: number; headers: Record<string, string | string[] | undefined>; body: string };
/** An HTTP request with nothing added or refused (any Host, any header), the body as text. */
export function raw(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Raw> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = rawRequest({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends raw bytes on a fresh connection and collects everything until the server closes it (or `limitMs` passes). */
export function exchange(base: string, data: string, limitMs = 10_000): Promise<{ text: string; ms: number; closed: boolean }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    const started = performance.now();
    let text = '';
    const socket = connect(Number(port), hostname, () => socket.write(data));
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, ms: performance.now() - started, closed });
    };
    const timer = setTimeout(() => finish(false), limitMs);
    socket.on('data', (c: Buffer) => (text += c.toString()));
    socket.on('close', () => finish(true));
    socket.on('error', () => undefined);
  });
}

/** A logger that keeps its JSON lines, for tests that read the log. */
export function captureLogs(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger('info', {
    write: (chunk: string) => lines.push(...chunk.split('\n').filter(Boolean)),
  } as unknown as NodeJS.WritableStream);
  return { log, lines };
}

export type SseEvent = { event: string; data: Record<string, unknown> };

/** Reads a Server-Sent Events answer until `onEvent` returns true or the stream ends; the events seen. */
export async function readEvents(
  res: Response,
  onEvent: (e: SseEvent) => boolean | void | Promise<boolean | void> = () => false,
): Promise<SseEvent[]> {
  const seen: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (!event || !data) continue;
      const e = { event, data: JSON.parse(data) as Record<string, unknown> };
      seen.push(e);
      if (await onEvent(e)) {
        await res.body?.cancel().catch(() => undefined);
        return seen;
      }
    }
  }
  return seen;
}

/** Opens a WebSocket, sends one message and resolves with the echo. */
export function echo(url: string, headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => ws.send('ping'));
    ws.once('message', (data) => {
      resolve(String(data));
      ws.close();
    });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** A PersistentVolumeClaim of the tests' storage class (`manual`), for the volume of that name. */
export const claimObject = (name: string, volumeName: string) => ({
  apiVersion: 'v1',
  kind: 'PersistentVolumeClaim',
  metadata: { name },
  spec: { accessModes: ['ReadWriteMany'], storageClassName: 'manual', volumeName, resources: { requests: { storage: '1Gi' } } },
});

/** A host-path volume made for the claim `name` of `ns` (kube-controller-manager binds them); removed at the end. Its name. */
export async function volumeFor(t: { after: (fn: () => Promise<unknown>) => void }, ns: string, name: string): Promise<string> {
  const kube = admin();
  const volume = `${ns}-${name}`;
  await kube.post('/api/v1/persistentvolumes', {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: volume },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteMany'],
      storageClassName: 'manual',
      claimRef: { namespace: ns, name },
      hostPath: { path: `/tmp/sandbox-test/${volume}` },
    },
  });
  t.after(() => kube.delete(`/api/v1/persistentvolumes/${volume}`).catch(() => undefined));
  return volume;
}

/**
 * A PersistentVolumeClaim of `ns` bound to a host-path volume made for it: what a storage class would
 * provide. The fake node, as kube-scheduler, holds a pod whose claim is missing or unbound.
 */
export async function boundClaim(t: { after: (fn: () => Promise<unknown>) => void }, ns: string, name: string): Promise<void> {
  const kube = admin();
  await kube.post(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, claimObject(name, await volumeFor(t, ns, name)));
  await eventually(`claim ${name} bound`, async () =>
    ((await kube.get(`/api/v1/namespaces/${ns}/persistentvolumeclaims/${name}`)).status as { phase?: string } | undefined)?.phase ===
    'Bound'
      ? true
      : undefined,
  );
}
