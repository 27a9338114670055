// Shared test helpers: the run's control plane, a namespace per test file, and small HTTP utilities.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { loadConfig } from '../src/config.ts';
import { silentLogger, type Logger } from '../src/log.ts';
import { start, type Service, type StartOptions } from '../src/service.ts';
import { readState, type ClusterState } from './cluster/cluster.ts';
import { KubeHttp, kubeFromState } from './cluster/kube-http.ts';

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
  env: Record<string, string> = {},
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'src', 'main.ts')], {
    env: {
      ...process.env,
      KUBECONFIG_PATH: cluster().kubeconfig,
      K8S_NAMESPACE: ns,
      NODE_HOST: '127.0.0.1',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      SKILLS_HOST_PATH: '/tmp/s',
      THREADS_HOST_PATH: '/tmp/t',
      ...env,
    },
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
