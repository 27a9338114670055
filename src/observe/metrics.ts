// Prometheus metrics (prom-client), in a registry of the service's own, and the GET /metrics row. No
// per-sandbox label anywhere: sandbox ids are unbounded, so every label here has a small fixed set of values.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { STATUSES, type SandboxStatus } from '../domain/sandbox.ts';
import type { RouteRow } from '../http/router.ts';
import type { RequestObserver } from '../http/server.ts';
import { LeanHistogram, type Series } from './lean-histogram.ts';

/** What the metrics read from the sandbox view at scrape time. */
export type MetricsSource = {
  list(): readonly { status: SandboxStatus }[];
  stats(): { restarts: number; relists: number; handlerErrors: number };
  health(): { healthy: boolean; lastContactAt: number };
};

export type Metrics = ReturnType<typeof createMetrics>;

/** A counter whose value lives elsewhere (a total kept by the watch), read at scrape time. */
function mirroredCounter(registry: Registry, name: string, help: string, read: () => number | undefined): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const value = read();
      if (value === undefined) return;
      this.reset();
      this.inc(value);
    },
  });
}

/** A registry of the service's own, with Node.js process metrics under the service's prefix. */
function serviceRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sandbox_provisioner_' });
  return registry;
}

/** Eligible nodes and those lacking the sandbox image (watch/nodes.ts), when nodes are watched. */
export type NodesSource = () => { eligible: number; lacking: string[] } | undefined;

export function createMetrics(source?: () => MetricsSource | undefined, nodes?: NodesSource) {
  const registry = serviceRegistry();
  let streams: (() => { open: number; queuedBytes: number }) | undefined;
  let upstreamPools: (() => number) | undefined;
  return {
    registry,
    /** Where the event-stream gauges read from (the service's EventStreams). */
    observeStreams: (read: () => { open: number; queuedBytes: number }): void => void (streams = read),
    /** Where the proxy's pool gauge reads from. */
    observeUpstreamPools: (read: () => number): void => void (upstreamPools = read),
    proxyUpstreamPools: new Gauge({
      name: 'sandbox_provisioner_proxy_upstream_pools',
      help: 'Keep-alive connection pools the proxy holds, one per sandbox upstream in use; a deleted sandbox takes its pools with it',
      registers: [registry],
      collect() {
        if (upstreamPools) this.set(upstreamPools());
      },
    }),
    sandboxes: new Gauge({
      name: 'sandbox_provisioner_sandboxes',
      help: 'Sandboxes in the view, by status',
      labelNames: ['status'] as const,
      registers: [registry],
      collect() {
        const view = source?.();
        if (!view) return;
        const counts = new Map<string, number>(STATUSES.map((s) => [s, 0]));
        for (const r of view.list()) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
        for (const [status, n] of counts) this.set({ status }, n);
      },
    }),
    creates: new Counter({
      name: 'sandbox_provisioner_creates_total',
      help: 'Create requests by outcome (created, existing, or an error code)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    deletes: new Counter({
      name: 'sandbox_provisioner_deletes_total',
      help: 'Delete requests by outcome (deleted, missing, or an error code)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    expiries: new Counter({
      name: 'sandbox_provisioner_expiries_total',
      help: 'Sandboxes deleted by the sweeper, by reason (ttl, idle)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    suspends: new Counter({
      name: 'sandbox_provisioner_suspends_total',
      help: 'Sandboxes suspended (pod removed, Service, URL and files kept), by reason (idle, request, admission)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    wakes: new Counter({
      name: 'sandbox_provisioner_wakes_total',
      help: 'Suspended sandboxes woken, by what woke them (create, status, wait, proxy, resume, reconcile)',
      labelNames: ['trigger'] as const,
      registers: [registry],
    }),
    orphansRemoved: new Counter({
      name: 'sandbox_provisioner_orphans_removed_total',
      help: 'Half-made sandboxes removed by the reconciler, by the object left (pod, service)',
      labelNames: ['object'] as const,
      registers: [registry],
    }),
    createToRunning: new Histogram({
      name: 'sandbox_provisioner_create_to_running_seconds',
      help: 'From the create request to the sandbox being Running (Ready), as seen by the watch',
      buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
      registers: [registry],
    }),
    // On every request: a LeanHistogram (see there), exposed after the registry's metrics.
    requests: new LeanHistogram(
      'sandbox_provisioner_http_request_duration_seconds',
      'HTTP requests by method, route and status',
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    ),
    proxyRequests: new Counter({
      name: 'sandbox_provisioner_proxy_requests_total',
      help: 'Proxied requests by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    proxyBytes: new Counter({
      name: 'sandbox_provisioner_proxy_bytes_total',
      help: 'Bytes proxied, by direction (in: to the sandbox, out: to the client)',
      labelNames: ['direction'] as const,
      registers: [registry],
    }),
    proxyUpstreamErrors: new Counter({
      name: 'sandbox_provisioner_proxy_upstream_errors_total',
      help: 'Upstream errors by kind (refused, reset, dns, timeout, websocket, other)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    eventStreams: new Gauge({
      name: 'sandbox_provisioner_event_streams',
      help: 'Open event streams (the dashboard feed and per-sandbox events)',
      registers: [registry],
      collect() {
        if (streams) this.set(streams().open);
      },
    }),
    eventStreamsQueued: new Gauge({
      name: 'sandbox_provisioner_event_streams_queued_bytes',
      help: 'Bytes waiting for event-stream clients; each client is closed past its bound (256 KiB beyond its first event)',
      registers: [registry],
      collect() {
        if (streams) this.set(streams().queuedBytes);
      },
    }),
    eventStreamsClosed: new Counter({
      name: 'sandbox_provisioner_event_streams_closed_total',
      help: 'Event streams closed by the service, by reason (slow_reader: over its queued-bytes bound; shutdown)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    websocketSessions: new Counter({
      name: 'sandbox_provisioner_proxy_websocket_sessions_total',
      help: 'Proxied WebSocket sessions, by event (opened, closed)',
      labelNames: ['event'] as const,
      registers: [registry],
    }),
    watchRestarts: mirroredCounter(
      registry,
      'sandbox_provisioner_watch_restarts_total',
      'Watch restarts after errors since start',
      () => source?.()?.stats().restarts,
    ),
    watchRelists: mirroredCounter(
      registry,
      'sandbox_provisioner_watch_relists_total',
      'Relists after 410 Gone since start',
      () => source?.()?.stats().relists,
    ),
    watchHandlerErrors: mirroredCounter(
      registry,
      'sandbox_provisioner_watch_handler_errors_total',
      'Exceptions thrown by watch event handlers since start',
      () => source?.()?.stats().handlerErrors,
    ),
    viewHealthy: new Gauge({
      name: 'sandbox_provisioner_view_healthy',
      help: '1 when the watches are connected and recent and the API server answers its probes; 0 while answers come from a stale view',
      registers: [registry],
      collect() {
        const view = source?.();
        if (view) this.set(view.health().healthy ? 1 : 0);
      },
    }),
    apiContactAge: new Gauge({
      name: 'sandbox_provisioner_api_last_contact_age_seconds',
      help: 'Seconds since the Kubernetes API server last answered (a list, a watch event or bookmark, a probe)',
      registers: [registry],
      collect() {
        const at = source?.()?.health().lastContactAt;
        if (at) this.set(Math.max(0, Date.now() - at) / 1000);
      },
    }),
    startupPhase: new Histogram({
      name: 'sandbox_provisioner_startup_phase_seconds',
      help: 'From a sandbox’s creation to each startup milestone: scheduled, image_ready, started, ready (pod conditions, container state, kubelet’s events)',
      labelNames: ['phase'] as const,
      buckets: [0.5, 1, 2, 3, 5, 8, 10, 15, 20, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    nodesEligible: new Gauge({
      name: 'sandbox_provisioner_nodes_eligible',
      help: 'Nodes sandboxes may run on (SANDBOX_NODE_SELECTOR, Ready, schedulable, taints tolerated); absent without list/watch on nodes',
      registers: [registry],
      collect() {
        const n = nodes?.();
        if (n) this.set(n.eligible);
      },
    }),
    nodesWithoutImage: new Gauge({
      name: 'sandbox_provisioner_nodes_without_sandbox_image',
      help: 'Of those, nodes whose status.images lack SANDBOX_IMAGE: the first sandbox on each waits for a pull',
      registers: [registry],
      collect() {
        const n = nodes?.();
        if (n) this.set(n.lacking.length);
      },
    }),
    watchLag: new Histogram({
      name: 'sandbox_provisioner_watch_event_lag_seconds',
      help: 'Delay between a pod condition transition (its lastTransitionTime) and the view seeing it',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [registry],
    }),
  };
}

/** Label children looked up by key without prom-client's label hashing (hot paths: every request counts). */
function children<C>(make: (key: string) => C): (key: string) => C {
  const cache = new Map<string, C>();
  return (key) => {
    let child = cache.get(key);
    if (child === undefined) cache.set(key, (child = make(key)));
    return child;
  };
}

/** The HTTP server's observer: one histogram series per (route, status, method), found without building a key. */
export function requestObserver(metrics: Metrics): RequestObserver {
  const byRoute = new Map<string, Map<number, Map<string, Series>>>();
  return ({ method, route, status, seconds }) => {
    let byStatus = byRoute.get(route);
    if (byStatus === undefined) byRoute.set(route, (byStatus = new Map()));
    let byMethod = byStatus.get(status);
    if (byMethod === undefined) byStatus.set(status, (byMethod = new Map()));
    let series = byMethod.get(method);
    if (series === undefined) byMethod.set(method, (series = metrics.requests.series({ method, route, status })));
    series.observe(seconds);
  };
}

/** The proxy's counters, label children bound once. */
export function proxyStats(metrics: Metrics) {
  const outcome = children((o) => metrics.proxyRequests.labels({ outcome: o }));
  const upstream = children((kind) => metrics.proxyUpstreamErrors.labels({ kind }));
  const bytesIn = metrics.proxyBytes.labels({ direction: 'in' });
  const bytesOut = metrics.proxyBytes.labels({ direction: 'out' });
  const ws = children((event) => metrics.websocketSessions.labels({ event }));
  return {
    onWebSocket: (event: string): void => ws(event).inc(),
    onRequest: (o: string): void => outcome(o).inc(),
    onBytes: (direction: 'in' | 'out', bytes: number): void => (direction === 'in' ? bytesIn : bytesOut).inc(bytes),
    onUpstreamError: (kind: string): void => upstream(kind).inc(),
  };
}

/** The whole exposition: the registry's metrics, then the request histogram. */
export async function metricsText(metrics: Metrics): Promise<string> {
  return `${await metrics.registry.metrics()}${metrics.requests.exposition()}`;
}

export function metricsRoutes(metrics: Metrics): RouteRow[] {
  return [
    {
      name: '/metrics',
      path: '/metrics',
      quiet: true,
      methods: {
        GET: async ({ res }) => {
          const text = await metricsText(metrics);
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
      },
    },
  ];
}
