// The composition root: the only module (with main.ts) that knows every part. It wires the Kubernetes
// client, the watch view, the writer, the API, the proxy, housekeeping (preflight, reconciler, expiry
// sweeps) and metrics onto one HTTP server. main.ts calls start(); tests call it in-process with their
// own configuration (and clock).

import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.ts';
import { Capabilities } from './http/capability.ts';
import { requestBase, requireApiKey, trustedPeers } from './http/io.ts';
import { Feed } from './dashboard/feed.ts';
import { dashboardRoutes } from './dashboard/routes.ts';
import { createHttpServer, type RouteRow, type UpgradeRow } from './http/server.ts';
import { makeKube } from './kube/client.ts';
import { sweep, type SweepResult } from './lifecycle/sweeper.ts';
import type { Logger } from './log.ts';
import { createMetrics, metricsRoutes, proxyStats, requestObserver, type Metrics } from './observe/metrics.ts';
import { Answers, type Check } from './provisioner/answer.ts';
import { preflight } from './provisioner/preflight.ts';
import { reviewPermissions } from './provisioner/permissions.ts';
import { reconcile } from './provisioner/reconciler.ts';
import { apiRoutes } from './provisioner/routes.ts';
import { NamespaceError, SandboxWriter } from './provisioner/writer.ts';
import { SandboxProxy } from './proxy/proxy.ts';
import { kubeSources } from './watch/kube-source.ts';
import { SandboxView } from './watch/sandbox-view.ts';

export type Service = {
  url: string;
  view: SandboxView;
  metrics: Metrics;
  /** Runs the preflight and one reconcile now (tests, and the first run at startup). */
  housekeeping: () => Promise<void>;
  /** Runs one expiry sweep now. */
  sweep: () => Promise<SweepResult>;
  /** Graceful stop: stop accepting, let requests finish within the grace period, then close the rest. */
  stop: (graceMs?: number) => Promise<void>;
};

export type StartOptions = { now?: () => number };

export async function start(config: Config, log: Logger, options: StartOptions = {}): Promise<Service> {
  const now = options.now ?? Date.now;
  const kube = makeKube(config);
  const view = new SandboxView({
    ...kubeSources(kube, config.namespace),
    log: { info: (m) => log.info(m), warn: (m) => log.warn(m), error: (m) => log.error(m) },
    probe: (timeoutMs) => kube.probe(timeoutMs),
    probeEveryMs: config.k8sProbeMs,
  });
  const metrics = createMetrics(() => view);
  const writer = new SandboxWriter({ config, kube, view, log, now });
  const capabilities = new Capabilities(config.proxy.signingKeys);
  const trusted = trustedPeers(config.trustedProxies);
  const base = (req: IncomingMessage): string | undefined => requestBase(req, trusted);
  const answers = new Answers(config, (record) => writer.expiresAt(record), capabilities);
  const feed = new Feed({ view, answers, lastActivity: (record) => writer.lastActivity(record) });

  // Create-to-Running time, from the create request to the watch seeing the pod Ready.
  const pendingSince = new Map<string, number>();
  view.subscribe(({ id, record, previous }) => {
    if (record?.status !== 'Running' || previous?.status === 'Running') {
      if (record === undefined) pendingSince.delete(id);
      return;
    }
    const since = pendingSince.get(id);
    if (since !== undefined) metrics.createToRunning.observe((performance.now() - since) / 1000);
    pendingSince.delete(id);
    if (record.lastTransitionAt !== undefined) metrics.watchLag.observe(Math.max(0, Date.now() - record.lastTransitionAt) / 1000);
  });

  const proxy = config.proxy.enabled
    ? new SandboxProxy({ config, view, log, capabilities, trusted, onActivity: (id) => writer.touch(id), stats: proxyStats(metrics) })
    : undefined;
  let check: Check = { name: 'preflight', ok: true, detail: 'not run yet' };
  let access: Check = { name: 'permissions', ok: true, detail: 'not checked yet' };
  /** What this identity may do: features whose verb is missing degrade, said once in the log and in /readyz. */
  const checkPermissions = async (): Promise<void> => {
    const permissions = await reviewPermissions(kube, config.namespace);
    writer.usePermissions(permissions);
    const detail = permissions.known
      ? permissions.describe()
      : 'could not be checked (SelfSubjectRulesReview failed); every request is tried';
    if (detail !== access.detail && detail) log.warn({ namespace: config.namespace }, `permissions: ${detail}`);
    access = { name: 'permissions', ok: permissions.missing.length === 0, ...(detail ? { detail } : {}) };
  };
  let shuttingDown = false;
  let stopping: Promise<void> | undefined;
  const routes: RouteRow[] = [
    ...apiRoutes({
      config,
      view,
      writer,
      answers,
      base,
      metrics,
      onCreateStarted: (id) => pendingSince.set(id, performance.now()),
      readiness: () => [check, access, ...(shuttingDown ? [{ name: 'shutdown', ok: false, detail: 'shutting down' }] : [])],
    }),
    ...metricsRoutes(metrics),
    ...dashboardRoutes(feed, base),
  ];
  const upgrades: UpgradeRow[] = [];
  if (proxy) {
    const rows = proxy.routes();
    routes.push(...rows.routes);
    upgrades.push(...rows.upgrades);
  }
  const hosts = proxy?.hostRoute();
  const server = createHttpServer({
    ...(hosts ? { hosts } : {}),
    routes,
    upgrades,
    log,
    authenticate: { prefix: '/api/', check: (req) => requireApiKey(req, config.auth) },
    maxConnections: config.maxConnections,
    observe: requestObserver(metrics),
  });

  const ensureNamespace = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await writer.ensureNamespace();
      } catch (err) {
        log.error({ namespace: config.namespace, attempt }, `namespace check failed: ${(err as Error).message}`);
        if (err instanceof NamespaceError && err.final) return;
        await new Promise((r) => setTimeout(r, Math.min(30_000, 500 * 2 ** attempt)));
      }
    }
  };
  await Promise.race([ensureNamespace(), new Promise((r) => setTimeout(r, 10_000))]);
  await checkPermissions();
  view.start();

  // Housekeeping: the admission preflight and the orphan reconciler, at startup and periodically.
  const housekeeping = async (): Promise<void> => {
    try {
      await checkPermissions();
      check = await preflight(writer, config);
      if (!check.ok) log.error({ namespace: config.namespace }, check.detail ?? 'preflight failed');
      await view.synced;
      const removed = await reconcile({ config, view, writer, log });
      metrics.orphansRemoved.inc({ object: 'pod' }, removed.removedPods.length);
      metrics.orphansRemoved.inc({ object: 'service' }, removed.removedServices.length);
    } catch (err) {
      log.warn({ err: String(err) }, 'housekeeping failed; will retry');
    }
  };
  const sweepNow = async (): Promise<SweepResult> => {
    await view.synced;
    return sweep({ config, view, writer, log, metrics, now });
  };
  const first = housekeeping();
  const timers = [setInterval(() => void housekeeping(), config.reconcile.intervalMs)];
  if (config.lifecycle.ttlMs > 0 || config.lifecycle.idleMs > 0)
    timers.push(setInterval(() => void sweepNow().catch(() => undefined), config.lifecycle.sweepMs));
  for (const t of timers) t.unref();

  server.listen(config.port, config.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address === '0.0.0.0' ? '127.0.0.1' : address.address;
  log.info({ port: address.port, namespace: config.namespace, kubeconfig: kube.source, api_server: kube.server }, 'provisioner listening');
  if (proxy && capabilities.ephemeral && config.sandboxUrl.mode !== 'nodeport') {
    log.warn(
      'PROXY_SIGNING_KEYS is not set: a key was made for this process, so sandbox URLs stop working when it restarts and differ between replicas',
    );
  }
  if (!config.auth.apiKey) {
    if (config.auth.allowAnonymous) log.warn('PROVISIONER_ALLOW_ANONYMOUS=true: the API is open to anyone who can reach this port');
    else
      log.warn(
        'PROVISIONER_API_KEY is not set: /api/* answers 401 to everyone (set the key, or PROVISIONER_ALLOW_ANONYMOUS=true on purpose)',
      );
  }

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
    feed.stop();
    await view.stop();
    await kube.close();
  };

  return {
    url: `http://${host}:${address.port}`,
    view,
    metrics,
    housekeeping: () => first.then(housekeeping),
    sweep: sweepNow,
    stop: (graceMs = config.lifecycle.shutdownGraceMs) => (stopping ??= shutdown(graceMs)),
  };
}
