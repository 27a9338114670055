// Prometheus metrics (prom-client), in a registry of the service's own. No per-sandbox label anywhere:
// sandbox ids are unbounded, so every label here has a small fixed set of values.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SandboxView } from './watch/sandbox-view.ts';
import { STATUSES } from './watch/sandbox.ts';

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics(view?: () => SandboxView | undefined) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sandbox_provisioner_' });
  const m = {
    registry,
    sandboxes: new Gauge({
      name: 'sandbox_provisioner_sandboxes',
      help: 'Sandboxes in the view, by status',
      labelNames: ['status'] as const,
      registers: [registry],
      collect() {
        const v = view?.();
        if (!v) return;
        const counts = new Map<string, number>(STATUSES.map((s) => [s, 0]));
        for (const r of v.list()) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
        for (const [status, n] of counts) this.set({ status }, n);
      },
    }),
    creates: new Counter({ name: 'sandbox_provisioner_creates_total', help: 'Create requests by outcome (created, existing, or an error code)', labelNames: ['outcome'] as const, registers: [registry] }),
    deletes: new Counter({ name: 'sandbox_provisioner_deletes_total', help: 'Delete requests by outcome (deleted, missing, or an error code)', labelNames: ['outcome'] as const, registers: [registry] }),
    expiries: new Counter({ name: 'sandbox_provisioner_expiries_total', help: 'Sandboxes deleted by the sweeper, by reason (ttl, idle)', labelNames: ['reason'] as const, registers: [registry] }),
    createToRunning: new Histogram({
      name: 'sandbox_provisioner_create_to_running_seconds',
      help: 'From the create request to the sandbox being Running (Ready), as seen by the watch',
      buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
      registers: [registry],
    }),
    requests: new Histogram({
      name: 'sandbox_provisioner_http_request_duration_seconds',
      help: 'HTTP requests by method, route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
      registers: [registry],
    }),
    proxyRequests: new Counter({ name: 'sandbox_provisioner_proxy_requests_total', help: 'Proxied requests by outcome', labelNames: ['outcome'] as const, registers: [registry] }),
    proxyBytes: new Counter({ name: 'sandbox_provisioner_proxy_bytes_total', help: 'Bytes proxied, by direction (in: to the sandbox, out: to the client)', labelNames: ['direction'] as const, registers: [registry] }),
    proxyUpstreamErrors: new Counter({ name: 'sandbox_provisioner_proxy_upstream_errors_total', help: 'Upstream errors by kind (refused, reset, timeout, websocket, other)', labelNames: ['kind'] as const, registers: [registry] }),
    watchRestarts: new Gauge({ name: 'sandbox_provisioner_watch_restarts', help: 'Watch restarts after errors since start', registers: [registry], collect() { const v = view?.(); if (v) this.set(v.stats().restarts); } }),
    watchRelists: new Gauge({ name: 'sandbox_provisioner_watch_relists', help: 'Relists after 410 Gone since start', registers: [registry], collect() { const v = view?.(); if (v) this.set(v.stats().relists); } }),
    watchLag: new Histogram({
      name: 'sandbox_provisioner_watch_event_lag_seconds',
      help: 'Delay between a pod condition transition (its lastTransitionTime) and the view seeing it',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [registry],
    }),
    kubeErrors: new Counter({ name: 'sandbox_provisioner_kube_api_errors_total', help: 'Kubernetes API errors by reason', labelNames: ['reason'] as const, registers: [registry] }),
  };
  return m;
}
