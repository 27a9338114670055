// Wires the service together: Kubernetes client, watch view, API, proxy, housekeeping (preflight,
// reconciler, expiry sweeps) and metrics on one HTTP server. main.ts calls start(); tests call it
// in-process with their own configuration (and clock).

import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, type AppDeps } from './app.ts';
import type { Config } from './config.ts';
import { KubeApiError, makeKube, type KubeClient } from './kube.ts';
import { Activity } from './lifecycle/activity.ts';
import { sweep, type SweepResult } from './lifecycle/sweeper.ts';
import type { Logger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { observeRoutes } from './observe.ts';
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
  metrics: Metrics;
  /** Runs the preflight and one reconcile now (tests, and the first run at startup). */
  housekeeping: () => Promise<void>;
  /** Runs one expiry sweep now. */
  sweep: () => Promise<SweepResult>;
  /** Graceful stop: stop accepting, let requests finish within the grace period, then close the rest. */
  stop: (graceMs?: number) => Promise<void>;
};

export type StartOptions = { now?: () => number };

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

export async function start(config: Config, log: Logger, options: StartOptions = {}): Promise<Service> {
  const now = options.now ?? Date.now;
  const kube = makeKube(config);
  const view = new SandboxView({ ...kubeSources(kube, config.namespace), log: { info: (m) => log.info(m), warn: (m) => log.warn(m), error: (m) => log.error(m) } });
  const metrics = createMetrics(() => view);
  const sandboxes = new Sandboxes({ config, kube, view, log, now });
  const activity = new Activity({ config, kube, log, now });

  // Create-to-Running time, and forgetting activity of sandboxes that are gone: both from watch events.
  const pendingSince = new Map<string, number>();
  view.subscribe((change) => {
    if (change.record === undefined) {
      pendingSince.delete(change.id);
      activity.forget(change.id);
      return;
    }
    if (change.record.status === 'Running' && change.previous?.status !== 'Running') {
      const since = pendingSince.get(change.id);
      if (since !== undefined) metrics.createToRunning.observe((performance.now() - since) / 1000);
      pendingSince.delete(change.id);
      if (change.record.lastTransitionAt !== undefined) metrics.watchLag.observe(Math.max(0, Date.now() - change.record.lastTransitionAt) / 1000);
    }
  });

  // Label children bound once: every proxied request counts, and prom-client's label hashing is not free.
  const bytesIn = metrics.proxyBytes.labels({ direction: 'in' });
  const bytesOut = metrics.proxyBytes.labels({ direction: 'out' });
  const outcomes = new Map<string, ReturnType<typeof metrics.proxyRequests.labels>>();
  const proxyOutcome = (outcome: string) => {
    let child = outcomes.get(outcome);
    if (!child) outcomes.set(outcome, (child = metrics.proxyRequests.labels({ outcome })));
    return child;
  };
  const proxy = config.proxy.enabled
    ? new SandboxProxy({
        config,
        view,
        log,
        onActivity: (id) => activity.touch(id),
        stats: {
          onRequest: (outcome) => proxyOutcome(outcome).inc(),
          onBytes: (direction, bytes) => (direction === 'in' ? bytesIn : bytesOut).inc(bytes),
          onUpstreamError: (kind) => metrics.proxyUpstreamErrors.inc({ kind }),
        },
      })
    : undefined;
  let check: Check = { name: 'preflight', ok: true, detail: 'not run yet' };
  let shuttingDown = false;
  let stopping: Promise<void> | undefined;
  const routes: NonNullable<AppDeps['routes']> = [observeRoutes(metrics)];
  const requestTimers = new Map<string, ReturnType<typeof metrics.requests.labels>>();
  if (proxy) routes.push((req, res, url) => proxy.route(req, res, url));
  const server = createApp({
    config,
    sandboxes,
    log,
    activity,
    metrics,
    onCreateStarted: (id) => pendingSince.set(id, performance.now()),
    readiness: () => [check, ...(shuttingDown ? [{ name: 'shutdown', ok: false, detail: 'shutting down' }] : [])],
    routes,
    ...(proxy ? { upgrade: (req, socket, head, url) => proxy.upgrade(req, socket, head, url) } : {}),
    observe: ({ method, route, status, seconds }) => {
      // One histogram child per (method, route, status), looked up without prom-client's label hashing.
      const key = `${method} ${route} ${status}`;
      let child = requestTimers.get(key);
      if (!child) requestTimers.set(key, (child = metrics.requests.labels({ method, route, status: String(status) })));
      child.observe(seconds);
    },
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
  const sweepNow = async (): Promise<SweepResult> => {
    await view.synced;
    return sweep({ config, sandboxes, activity, log, metrics, now });
  };
  const first = housekeeping();
  const timers = [setInterval(() => void housekeeping(), config.reconcile.intervalMs)];
  if (config.lifecycle.ttlMs > 0 || config.lifecycle.idleMs > 0) timers.push(setInterval(() => void sweepNow().catch(() => undefined), config.lifecycle.sweepMs));
  for (const t of timers) t.unref();

  server.listen(config.port, config.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address === '0.0.0.0' ? '127.0.0.1' : address.address;
  log.info({ port: address.port, namespace: config.namespace, kubeconfig: kube.source, api_server: kube.server }, 'provisioner listening');

  /** Graceful stop: /readyz turns 503, no new connections, in-flight requests and streams get the grace period, then the rest is closed. */
  const shutdown = async (graceMs: number): Promise<void> => {
    shuttingDown = true;
    for (const t of timers) clearInterval(t);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([closed, deadline]);
    clearInterval(idle);
    await proxy?.close();
    server.closeAllConnections();
    await view.stop();
    await kube.close();
  };

  return {
    server,
    url: `http://${host}:${address.port}`,
    kube,
    view,
    sandboxes,
    metrics,
    housekeeping: () => first.then(housekeeping),
    sweep: sweepNow,
    stop: (graceMs = config.lifecycle.shutdownGraceMs) => (stopping ??= shutdown(graceMs)),
  };
}
