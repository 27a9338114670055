// Wires the service together: Kubernetes client, watch view, API (and, when enabled, the proxy) on one
// HTTP server. main.ts calls start(); tests call it in-process with their own configuration.

import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createApp } from './app.ts';
import type { Config } from './config.ts';
import { KubeApiError, makeKube, type KubeClient } from './kube.ts';
import type { Logger } from './log.ts';
import { preflight, type Check } from './provisioner/preflight.ts';
import { reconcile } from './provisioner/reconciler.ts';
import { Sandboxes } from './provisioner/sandboxes.ts';
import { SandboxProxy } from './proxy/proxy.ts';
import { kubeSources } from './watch/kube-source.ts';
import { SandboxView } from './watch/sandbox-view.ts';

export type Service = {
  server: Server;
  url: string;
  kube: KubeClient;
  view: SandboxView;
  sandboxes: Sandboxes;
  /** Runs the preflight and one reconcile now (tests, and the first run at startup). */
  housekeeping: () => Promise<void>;
  stop: () => Promise<void>;
};

/** Makes sure the namespace exists (creating it when allowed), then that its default service account does. */
export async function ensureNamespace(kube: KubeClient, config: Config, log: Logger): Promise<void> {
  const ns = config.namespace;
  try {
    await kube.request('GET', `/api/v1/namespaces/${ns}`);
    return;
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 403) {
      log.info({ namespace: ns }, 'cannot read namespaces (namespaced RBAC); assuming the namespace exists');
      return;
    }
    if (!(err instanceof KubeApiError && err.status === 404)) throw err;
  }
  if (!config.createNamespace) throw new Error(`namespace ${ns} does not exist and CREATE_NAMESPACE=false`);
  try {
    await kube.request('POST', '/api/v1/namespaces', {
      body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'app.kubernetes.io/name': 'deer-flow', 'app.kubernetes.io/component': 'sandbox' } } },
    });
    log.info({ namespace: ns }, 'created namespace');
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 403) {
      throw new Error(`namespace ${ns} does not exist and the provisioner may not create it (RBAC: ${err.body.message}); create it, or grant the optional ClusterRole in deploy/`);
    }
    if (!(err instanceof KubeApiError && err.status === 409)) throw err;
  }
  // Pods are refused until the service account controller has made the namespace's default account.
  for (let i = 0; i < 100; i++) {
    try {
      await kube.request('GET', `/api/v1/namespaces/${ns}/serviceaccounts/default`);
      return;
    } catch (err) {
      if (!(err instanceof KubeApiError && (err.status === 404 || err.status === 403))) throw err;
      if (err.status === 403) return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function start(config: Config, log: Logger): Promise<Service> {
  const kube = makeKube(config);
  const view = new SandboxView({ ...kubeSources(kube, config.namespace), log: { info: (m) => log.info(m), warn: (m) => log.warn(m), error: (m) => log.error(m) } });
  const sandboxes = new Sandboxes(config, kube, view, log);
  const proxy = config.proxy.enabled ? new SandboxProxy({ config, view, log }) : undefined;
  let check: Check = { name: 'preflight', ok: true, detail: 'not run yet' };
  const server = createApp({
    config,
    sandboxes,
    log,
    readiness: () => [check],
    routes: proxy ? [(req, res, url) => proxy.route(req, res, url)] : [],
    ...(proxy ? { upgrade: (req, socket, head, url) => proxy.upgrade(req, socket, head, url) } : {}),
  });
  const retryNamespace = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await ensureNamespace(kube, config, log);
        return;
      } catch (err) {
        log.error({ namespace: config.namespace, attempt }, `namespace check failed: ${(err as Error).message}`);
        if (/may not create it|CREATE_NAMESPACE=false/.test((err as Error).message)) return;
        await new Promise((r) => setTimeout(r, Math.min(30_000, 500 * 2 ** attempt)));
      }
    }
  };
  await Promise.race([retryNamespace(), new Promise((r) => setTimeout(r, 10_000))]);
  view.start();
  // Housekeeping: the admission preflight and the orphan reconciler, at startup and periodically.
  const housekeeping = async (): Promise<void> => {
    try {
      check = await preflight(kube, config);
      if (!check.ok) log.error({ namespace: config.namespace }, check.detail ?? 'preflight failed');
      await view.synced;
      await reconcile({ config, kube, view, log, busy: (id) => sandboxes.busy(id) });
    } catch (err) {
      log.warn({ err: String(err) }, 'housekeeping failed; will retry');
    }
  };
  const first = housekeeping();
  const timer = setInterval(() => void housekeeping(), config.reconcile.intervalMs);
  timer.unref();
  server.listen(config.port, config.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address === '0.0.0.0' ? '127.0.0.1' : address.address;
  log.info({ port: address.port, namespace: config.namespace, kubeconfig: kube.source, api_server: kube.server }, 'provisioner listening');
  return {
    server,
    url: `http://${host}:${address.port}`,
    kube,
    view,
    sandboxes,
    housekeeping: () => first.then(housekeeping),
    stop: async () => {
      clearInterval(timer);
      server.close();
      server.closeIdleConnections();
      await proxy?.close();
      await view.stop();
      server.closeAllConnections();
      await kube.close();
    },
  };
}
