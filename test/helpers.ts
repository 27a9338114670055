// Shared test helpers: the run's control plane, a namespace per test file, and small HTTP utilities.

import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
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
export async function namespace(t: { after: (fn: () => Promise<void> | void) => void }, prefix: string, labels: Record<string, string> = {}): Promise<string> {
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
