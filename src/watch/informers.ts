// What watches the API server for the sandbox view: one reflector each for pods, services, HTTPRoutes
// (gateway mode) and kubelet's image events, each keeping slim facts by sandbox id, and the probe that
// makes a frozen API server visible in seconds. Each change is handed on by sandbox id; the view
// (sandbox-view.ts) joins the facts into records and answers questions. Health and counters here see
// every reflector.

import {
  slimEvent,
  slimPod,
  slimRoute,
  slimService,
  type EventFacts,
  type PodFacts,
  type RouteFacts,
  type ServiceFacts,
} from '../domain/record.ts';
import type { ParentRef } from '../domain/sandbox.ts';
import type { EventJson, HttpRoute, PodJson, ServiceJson } from '../domain/wire.ts';
import { ApiProbe } from './probe.ts';
import { Reflector, type ListFn, type ReflectorLog, type ReflectorOptions, type WatchFn } from './reflector.ts';

export type ViewHealth = {
  /** Both first lists are done: the view can answer (possibly from a stale state). */
  synced: boolean;
  /** Watches connected and recent, and the API server answering its probes. */
  healthy: boolean;
  stale: boolean;
  reason: string | undefined;
  /** When the API server last answered anything (a list, a watch event or bookmark, a probe); 0 before. */
  lastContactAt: number;
  pods: number;
  services: number;
};

export type InformerOptions = {
  listPods: ListFn<PodJson>;
  watchPods: WatchFn;
  listServices: ListFn<ServiceJson>;
  watchServices: WatchFn;
  /** Gateway mode: the sandboxes' HTTPRoutes, judged against these parent Gateways. */
  routes?: { list: ListFn<HttpRoute>; watch: WatchFn; parentRefs: readonly ParentRef[] };
  /** kubelet's events of pods (image pulls), watched when `start({ events: true })` says the identity may. */
  listEvents?: ListFn<EventJson>;
  watchEvents?: WatchFn;
  log?: ReflectorLog;
  now?: () => number;
  backoff?: { initialMs: number; maxMs: number };
  delay?: (ms: number, signal: AbortSignal) => Promise<void>;
  /**
   * A cheap request to the API server, every `probeEveryMs` (it must fail within that time when the
   * server does not answer). It makes a frozen server visible in seconds rather than when the watches'
   * idle timers fire, restarts watches such a server holds open, and ends the watches' backoff as soon
   * as the server answers again.
   */
  probe?: (timeoutMs: number) => Promise<void>;
  probeEveryMs?: number;
};

export class Informers {
  readonly pods = new Map<string, PodFacts>();
  readonly services = new Map<string, ServiceFacts>();
  readonly routes = new Map<string, RouteFacts>();
  /** Image events by sandbox id, then by event name. */
  readonly events = new Map<string, Map<string, EventFacts>>();
  /** Gateway mode: records carry their route. */
  readonly watchesRoutes: boolean;
  readonly synced: Promise<void>;
  #podReflector: Reflector<PodJson, PodFacts>;
  #serviceReflector: Reflector<ServiceJson, ServiceFacts>;
  #eventReflector: Reflector<EventJson, EventFacts> | undefined;
  #routeReflector: Reflector<HttpRoute, RouteFacts> | undefined;
  #eventsOn = false;
  #now: () => number;
  #log: ReflectorLog;
  #probe: ApiProbe | undefined;
  #changed: (id: string) => void;

  constructor(options: InformerOptions, changed: (id: string) => void) {
    this.#changed = changed;
    this.watchesRoutes = options.routes !== undefined;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? { info() {}, warn() {}, error() {} };
    const common = {
      log: this.#log,
      now: this.#now,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      ...(options.delay ? { delay: options.delay } : {}),
    };
    this.#podReflector = this.#reflector('pods', options.listPods, options.watchPods, slimPod, this.pods, common);
    this.#serviceReflector = this.#reflector('services', options.listServices, options.watchServices, slimService, this.services, common);
    const routes = options.routes;
    if (routes)
      this.#routeReflector = this.#reflector(
        'httproutes',
        routes.list,
        routes.watch,
        (raw) => slimRoute(raw, routes.parentRefs),
        this.routes,
        common,
      );
    this.synced = Promise.all([this.#podReflector.synced, this.#serviceReflector.synced, this.#routeReflector?.synced]).then(
      () => undefined,
    );
    if (options.listEvents && options.watchEvents)
      this.#eventReflector = this.#eventsReflector(options.listEvents, options.watchEvents, common);
    const reflectors = this.#reflectors.bind(this);
    if (options.probe)
      this.#probe = new ApiProbe({
        probe: options.probe,
        everyMs: options.probeEveryMs ?? 5000,
        log: this.#log,
        now: this.#now,
        // The server answers again: watches resume now instead of at the end of their backoff.
        onRecovered: () => reflectors().forEach((r) => r.retryNow()),
        // It holds connections open but answers nothing: open watches are dead.
        onStuck: () => reflectors().forEach((r) => r.interrupt('the API server does not answer probes')),
      });
  }

  /** A reflector that keeps `store` (slim facts by sandbox id) and refreshes the joined record on each change. */
  #reflector<Raw, T extends { sandboxId: string; resourceVersion: string }>(
    name: string,
    list: ListFn<Raw>,
    watch: WatchFn,
    slim: (raw: Raw) => T | undefined,
    store: Map<string, T>,
    common: Pick<ReflectorOptions<Raw, T>, 'log' | 'now' | 'backoff' | 'delay'>,
  ): Reflector<Raw, T> {
    const put = (id: string, obj: T): void => {
      store.set(id, obj);
      this.#changed(id);
    };
    return new Reflector<Raw, T>({
      ...common,
      name,
      list,
      watch,
      slim: (raw) => {
        const obj = slim(raw);
        return obj && { key: obj.sandboxId, obj, resourceVersion: obj.resourceVersion };
      },
      handler: {
        add: put,
        update: put,
        delete: (id) => {
          store.delete(id);
          this.#changed(id);
        },
      },
    });
  }

  /** Kubelet's image events, kept by sandbox id; each change refreshes that sandbox's record. */
  #eventsReflector(
    list: ListFn<EventJson>,
    watch: WatchFn,
    common: Pick<ReflectorOptions<EventJson, EventFacts>, 'log' | 'now' | 'backoff' | 'delay'>,
  ): Reflector<EventJson, EventFacts> {
    const put = (name: string, e: EventFacts): void => {
      const byName = this.events.get(e.sandboxId) ?? new Map<string, EventFacts>();
      this.events.set(e.sandboxId, byName.set(name, e));
      this.#changed(e.sandboxId);
    };
    return new Reflector<EventJson, EventFacts>({
      ...common,
      name: 'events',
      list,
      watch,
      slim: (raw) => {
        const e = slimEvent(raw);
        return e && { key: e.name, obj: e, resourceVersion: e.resourceVersion };
      },
      handler: {
        add: put,
        update: put,
        delete: (name, e) => {
          const byName = this.events.get(e.sandboxId);
          byName?.delete(name);
          if (byName?.size === 0) this.events.delete(e.sandboxId);
          this.#changed(e.sandboxId);
        },
      },
    });
  }

  /** The reflectors running: pods, services, and kubelet's events when watched. */
  #reflectors(): Pick<Reflector<unknown, unknown>, 'name' | 'stats' | 'start' | 'retryNow' | 'interrupt' | 'stop'>[] {
    return [
      this.#podReflector,
      this.#serviceReflector,
      ...(this.#routeReflector ? [this.#routeReflector] : []),
      ...(this.#eventsOn && this.#eventReflector ? [this.#eventReflector] : []),
    ];
  }

  /** Starts the watches; kubelet's events too when `events` (the identity may list and watch them). */
  start(options: { events?: boolean } = {}): void {
    this.#eventsOn = options.events === true && this.#eventReflector !== undefined;
    for (const r of this.#reflectors()) r.start();
    this.#probe?.start();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#reflectors().map((r) => r.stop()), this.#probe?.stop()]);
  }

  health(): ViewHealth {
    const now = this.#now();
    const reflectors = this.#reflectors();
    const synced = this.#podReflector.stats.synced && this.#serviceReflector.stats.synced && (this.#routeReflector?.stats.synced ?? true);
    const problems: string[] = [];
    for (const r of reflectors) {
      if (!r.stats.synced) problems.push(`${r.name}: initial list not done${r.stats.lastError ? ` (${r.stats.lastError})` : ''}`);
      // A connected watch is healthy however quiet it is: a namespace where nothing changes sends
      // nothing. Whether the API server still answers is the probe's to say, below.
      else if (!r.stats.connected) problems.push(`${r.name}: watch disconnected${r.stats.lastError ? ` (${r.stats.lastError})` : ''}`);
    }
    const lastContactAt = Math.max(this.#probe?.lastOkAt ?? 0, ...reflectors.map((r) => r.stats.lastContactAt));
    if (this.#probe && this.#probe.failures > 0) {
      const ago = lastContactAt > 0 ? `; last answer ${Math.round((now - lastContactAt) / 1000)}s ago` : '';
      problems.push(`the API server does not answer (${this.#probe.failures} probes failed: ${this.#probe.error}${ago})`);
    }
    const healthy = problems.length === 0;
    return {
      synced,
      healthy,
      stale: synced && !healthy,
      reason: problems.join('; ') || undefined,
      lastContactAt,
      pods: this.#podReflector.size,
      services: this.#serviceReflector.size,
    };
  }

  /** Counters for metrics, over every reflector running. */
  stats(): { restarts: number; relists: number; handlerErrors: number } {
    const total = { restarts: 0, relists: 0, handlerErrors: 0 };
    for (const { stats } of this.#reflectors()) {
      total.restarts += stats.restarts;
      total.relists += stats.relists;
      total.handlerErrors += stats.handlerErrors;
    }
    return total;
  }
}
