// The composition root: the only module (with main.ts) that knows every part. It builds them, hands
// each what it needs and starts them in order; it decides nothing itself. main.ts calls start(); tests
// call it in-process with their own configuration, clock and (unit tests) Kubernetes client.

import type { AddressInfo } from 'node:net';
import { Answers } from './api/answer.ts';
import { apiRoutes } from './api/routes.ts';
import { configWarnings, type Config } from './config.ts';
import { Feed } from './dashboard/feed.ts';
import { dashboardRoutes } from './dashboard/routes.ts';
import { requireApiKey } from './http/auth.ts';
import { EventStreams } from './http/event-stream.ts';
import { Capabilities } from './http/capability.ts';
import { requestBase, trustedPeers } from './http/forwarded.ts';
import type { RouteRow } from './http/router.ts';
import { closeGracefully, createHttpServer, listen } from './http/server.ts';
import { makeKube, type Kube } from './kube/client.ts';
import { Activity } from './lifecycle/activity.ts';
import { startSweeps, type SweepResult } from './lifecycle/sweeper.ts';
import { Suspender } from './lifecycle/suspender.ts';
import type { Logger } from './log.ts';
import { CreateTimings } from './observe/creates.ts';
import { createMetrics, metricsRoutes, proxyStats, requestObserver, type Metrics } from './observe/metrics.ts';
import { Housekeeping } from './provisioner/housekeeping.ts';
import { logReader } from './provisioner/logs.ts';
import { SandboxNamespace } from './provisioner/namespace.ts';
import { Grants } from './provisioner/permissions.ts';
import { SandboxWriter } from './provisioner/writer.ts';
import { SandboxProxy } from './proxy/proxy.ts';
import { kubeSources, nodeSources, routeSources } from './watch/kube-source.ts';
import { NodeImages } from './watch/nodes.ts';
import { SandboxView } from './watch/sandbox-view.ts';

export type Service = {
  url: string;
  view: SandboxView;
  metrics: Metrics;
  /** Runs the preflight and one reconcile now (tests, and the first run at startup). */
  housekeeping: () => Promise<void>;
  /** Runs one expiry sweep now. */
  sweep: () => Promise<SweepResult>;
  /**
   * Graceful stop: waits answer and event streams end at once; after `delayMs` (SHUTDOWN_DELAY_SECONDS)
   * stop accepting, let requests finish within the grace period, then close the rest.
   */
  stop: (graceMs?: number, delayMs?: number) => Promise<void>;
};

export type StartOptions = { now?: () => number; kube?: Kube };

/** Bytes queued for one event-stream client past which it is closed (the page reconnects with a snapshot). */
const STREAM_MAX_QUEUED_BYTES = 256 * 1024;
const STREAM_HEARTBEAT_MS = 15_000;

/** Every part, built and handed what it needs; nothing started yet. */
function assemble(config: Config, log: Logger, options: StartOptions) {
  const now = options.now ?? Date.now;
  const kube = options.kube ?? makeKube(config);
  const view = new SandboxView({
    ...kubeSources(kube, config.namespace),
    ...(config.gateway ? { routes: { ...routeSources(kube, config.namespace), parentRefs: config.gateway.parentRefs } } : {}),
    log,
    now,
    probe: (timeoutMs) => kube.probe(timeoutMs),
    probeEveryMs: config.k8sProbeMs,
    // The proxy's route check tells the view when the gateway serves a route (proxy/route-check.ts).
    routeCheck: (config.gateway?.routeCheckMs ?? 0) > 0,
  });
  const nodes = new NodeImages({
    ...nodeSources(kube, config.sandbox.nodeSelector),
    image: config.sandbox.image,
    tolerations: config.sandbox.tolerations,
    log,
  });
  const metrics = createMetrics(
    () => view,
    () => nodes.summary(),
  );
  const capabilities = new Capabilities(config.proxy.signingKeys);
  const streams = new EventStreams({
    maxQueuedBytes: STREAM_MAX_QUEUED_BYTES,
    heartbeatMs: STREAM_HEARTBEAT_MS,
    onClosed: (reason) => {
      metrics.eventStreamsClosed.inc({ reason });
      if (reason === 'slow_reader')
        log.info({ reason, queued_bytes_over: STREAM_MAX_QUEUED_BYTES }, 'event stream closed: the client stopped reading');
    },
  });
  const grants = new Grants();
  const namespace = new SandboxNamespace({ config, kube, log });
  const writer = new SandboxWriter({ config, kube, view, log, now, capabilities, grants, namespace, metrics });
  const activity = new Activity({ config, writer, grants, view, log, now });
  const suspender = new Suspender({ config, view, writer, activity, log, metrics, now, open: (id) => proxy?.open(id) ?? 0 });
  writer.admission = (req) => suspender.admit(req);
  const signing = { fingerprint: capabilities.fingerprint, ephemeral: capabilities.ephemeral };
  const housekeeping = new Housekeeping({ config, kube, view, writer, namespace, grants, log, metrics, nodes, signing });
  const trusted = trustedPeers(config.trustedProxies);
  const base = (req: Parameters<typeof requestBase>[0]): string | undefined => requestBase(req, trusted);
  const answers = new Answers(config, (record) => activity.expiresAt(record), capabilities);
  metrics.observeStreams(() => ({ open: streams.size, queuedBytes: streams.queuedBytes() }));
  const feed = new Feed({ view, answers, streams, lastActivity: (record) => activity.lastActivity(record), nodes: () => nodes.summary() });
  const proxy = config.proxy.enabled
    ? new SandboxProxy({ config, view, log, capabilities, trusted, stats: proxyStats(metrics), activity, suspender })
    : undefined;
  if (proxy) metrics.observeUpstreamPools(() => proxy.pools);
  const state = { shuttingDown: false };
  const routes: RouteRow[] = [
    ...apiRoutes({
      ...{ config, view, writer, activity, suspender, answers, base, metrics, streams },
      readLogs: logReader(kube, config.namespace),
      creates: new CreateTimings(view, metrics),
      readiness: () => [
        ...housekeeping.checks(),
        ...(state.shuttingDown ? [{ name: 'shutdown', ok: false, detail: 'shutting down' }] : []),
      ],
    }),
    ...metricsRoutes(metrics),
    ...dashboardRoutes(feed, base),
  ];
  const proxyRows = proxy?.routes();
  const hosts = proxy?.hostRoute();
  const server = createHttpServer({
    ...(hosts ? { hosts } : {}),
    routes: [...routes, ...(proxyRows?.routes ?? [])],
    upgrades: proxyRows?.upgrades ?? [],
    log,
    authenticate: { prefix: '/api/', check: (req) => requireApiKey(req, config.auth) },
    maxConnections: config.maxConnections,
    observe: requestObserver(metrics),
  });
  return { now, kube, view, nodes, metrics, writer, activity, suspender, housekeeping, capabilities, feed, proxy, server, state, streams };
}

export async function start(config: Config, log: Logger, options: StartOptions = {}): Promise<Service> {
  const { now, kube, view, nodes, metrics, writer, activity, suspender, housekeeping, capabilities, feed, proxy, server, state, streams } =
    assemble(config, log, options);
  await housekeeping.start();
  housekeeping.startWatches(view);
  housekeeping.schedule();
  const sweeps = startSweeps({ config, view, writer, activity, suspender, log, metrics, now });
  const address: AddressInfo = await listen(server, config.port, config.host);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address === '0.0.0.0' ? '127.0.0.1' : address.address;
  log.info({ port: address.port, namespace: config.namespace, kubeconfig: kube.source, api_server: kube.server }, 'provisioner listening');
  for (const warning of configWarnings(config, capabilities.ephemeral)) log.warn(warning);

  let stopping: Promise<void> | undefined;
  const shutdown = async (graceMs: number, delayMs: number): Promise<void> => {
    state.shuttingDown = true;
    housekeeping.stop();
    sweeps.stop();
    // What would hold the drain ends first: waits answer with the current state, event streams end
    // with the reason (pages reconnect, to another replica once endpoints move).
    view.endWaits();
    streams.endAll('end', { reason: 'shutting_down' });
    // SHUTDOWN_DELAY_SECONDS: keep serving (with /readyz 503) while the endpoints controller and the
    // load balancers stop sending new connections here, so none is refused at the door.
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    await closeGracefully(server, graceMs);
    await proxy?.close();
    server.closeAllConnections();
    feed.stop();
    await Promise.all([view.stop(), nodes.stop()]);
    await kube.close();
  };
  return {
    url: `http://${host}:${address.port}`,
    view,
    metrics,
    housekeeping: () => housekeeping.runNow(),
    sweep: sweeps.runNow,
    stop: (graceMs = config.lifecycle.shutdownGraceMs, delayMs = config.lifecycle.shutdownDelayMs) =>
      (stopping ??= shutdown(graceMs, delayMs)),
  };
}
