// The informer-driven view of every sandbox: pods and services of the namespace joined by sandbox id,
// answered from memory. Callers can wait for a change (waitFor) or subscribe to transitions; readiness
// of the view itself is `synced` (first lists done) and `health()` (watches connected and recent).

import {
  joinRecord,
  sameRecord,
  slimPod,
  slimService,
  imageFacts,
  slimEvent,
  slimRoute,
  type EventFacts,
  type RawRoute,
  type RouteFacts,
  type PodFacts,
  type RawEvent,
  type RawPod,
  type RawService,
  type SandboxRecord,
  type ServiceFacts,
} from '../domain/record.ts';
import type { ParentRef } from '../domain/sandbox.ts';
import { ApiProbe } from './probe.ts';
import { Reflector, type ListFn, type ReflectorLog, type ReflectorOptions, type WatchFn } from './reflector.ts';

export type Change = { id: string; record: SandboxRecord | undefined; previous: SandboxRecord | undefined; at: number };
export type Listener = (change: Change) => void;

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

export type SandboxViewOptions = {
  listPods: ListFn<RawPod>;
  watchPods: WatchFn;
  listServices: ListFn<RawService>;
  watchServices: WatchFn;
  /** Gateway mode: the sandboxes' HTTPRoutes, judged against these parent Gateways. */
  routes?: { list: ListFn<RawRoute>; watch: WatchFn; parentRefs: readonly ParentRef[] };
  /** kubelet's events of pods (image pulls), watched when `start({ events: true })` says the identity may. */
  listEvents?: ListFn<RawEvent>;
  watchEvents?: WatchFn;
  log?: ReflectorLog;
  now?: () => number;
  /** A watch with no event, bookmark or reconnect for this long is reported unhealthy. */
  staleAfterMs?: number;
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

export class SandboxView {
  #pods = new Map<string, PodFacts>();
  #services = new Map<string, ServiceFacts>();
  #records = new Map<string, SandboxRecord>();
  #listeners = new Set<Listener>();
  #byId = new Map<string, Set<Listener>>();
  #podReflector: Reflector<RawPod, PodFacts>;
  #serviceReflector: Reflector<RawService, ServiceFacts>;
  #eventReflector: Reflector<RawEvent, EventFacts> | undefined;
  #routes = new Map<string, RouteFacts>();
  #routeReflector: Reflector<RawRoute, RouteFacts> | undefined;
  #eventsOn = false;
  /** Image events by sandbox id, then by event name. */
  #events = new Map<string, Map<string, EventFacts>>();
  #now: () => number;
  #staleAfterMs: number;
  #log: ReflectorLog;
  #probe: ApiProbe | undefined;
  /** Pending waits (their `done`), and whether waits were ended (shutdown). */
  #waiters = new Set<() => void>();
  #waitsEnded = false;
  /** When this view saw each sandbox turn Ready, by its own clock (`now`), never the node's. */
  #readySeenAt = new Map<string, number>();
  readonly synced: Promise<void>;

  constructor(options: SandboxViewOptions) {
    this.#now = options.now ?? Date.now;
    this.#staleAfterMs = options.staleAfterMs ?? 90_000;
    this.#log = options.log ?? { info() {}, warn() {}, error() {} };
    const common = {
      log: this.#log,
      now: this.#now,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      ...(options.delay ? { delay: options.delay } : {}),
    };
    this.#podReflector = this.#reflector('pods', options.listPods, options.watchPods, slimPod, this.#pods, common);
    this.#serviceReflector = this.#reflector('services', options.listServices, options.watchServices, slimService, this.#services, common);
    const routes = options.routes;
    if (routes)
      this.#routeReflector = this.#reflector(
        'httproutes',
        routes.list,
        routes.watch,
        (raw) => slimRoute(raw, routes.parentRefs),
        this.#routes,
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
      this.#refresh(id);
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
          this.#refresh(id);
        },
      },
    });
  }

  /** Kubelet's image events, kept by sandbox id; each change refreshes that sandbox's record. */
  #eventsReflector(
    list: ListFn<RawEvent>,
    watch: WatchFn,
    common: Pick<ReflectorOptions<RawEvent, EventFacts>, 'log' | 'now' | 'backoff' | 'delay'>,
  ): Reflector<RawEvent, EventFacts> {
    const put = (name: string, e: EventFacts): void => {
      const byName = this.#events.get(e.sandboxId) ?? new Map<string, EventFacts>();
      this.#events.set(e.sandboxId, byName.set(name, e));
      this.#refresh(e.sandboxId);
    };
    return new Reflector<RawEvent, EventFacts>({
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
          const byName = this.#events.get(e.sandboxId);
          byName?.delete(name);
          if (byName?.size === 0) this.#events.delete(e.sandboxId);
          this.#refresh(e.sandboxId);
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

  #refresh(id: string): void {
    const previous = this.#records.get(id);
    const pod = this.#pods.get(id);
    const events = pod && this.#events.get(id);
    const record = joinRecord(
      id,
      pod,
      this.#services.get(id),
      events ? imageFacts(pod.uid, events.values()) : undefined,
      this.#routeReflector ? { route: this.#routes.get(id) } : undefined,
    );
    if (sameRecord(previous, record)) return;
    if (record === undefined) this.#records.delete(id);
    else this.#records.set(id, record);
    const change: Change = { id, record, previous, at: this.#now() };
    if (!record?.ready) this.#readySeenAt.delete(id);
    else if (!previous?.ready || previous.podUid !== record.podUid) this.#readySeenAt.set(id, change.at);
    for (const listener of this.#byId.get(id) ?? []) this.#notify(listener, change);
    for (const listener of this.#listeners) this.#notify(listener, change);
  }

  #notify(listener: Listener, change: Change): void {
    try {
      listener(change);
    } catch (err) {
      this.#log.error({ err, stack: err instanceof Error ? err.stack : undefined }, 'view listener threw');
    }
  }

  /** Starts the watches; kubelet's events too when `events` (the identity may list and watch them). */
  start(options: { events?: boolean } = {}): void {
    this.#eventsOn = options.events === true && this.#eventReflector !== undefined;
    for (const r of this.#reflectors()) r.start();
    this.#probe?.start();
  }

  /**
   * Ends every wait now, and any later one at once, each with its sandbox's current record: what a wait
   * answers when its time is up. At the start of a shutdown, so that waiting clients get an answer and
   * can go on (or retry on another replica) instead of a reset.
   */
  endWaits(): void {
    this.#waitsEnded = true;
    for (const done of [...this.#waiters]) done();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#reflectors().map((r) => r.stop()), this.#probe?.stop()]);
  }

  get(id: string): SandboxRecord | undefined {
    return this.#records.get(id);
  }

  /**
   * How long ago this view saw the sandbox turn Ready (its current pod), in ms of the view's own clock;
   * undefined when it is not Ready. The node's `readyAt` is a whole second of another machine's clock.
   */
  readyFor(id: string): number | undefined {
    const at = this.#readySeenAt.get(id);
    return at === undefined ? undefined : this.#now() - at;
  }

  get size(): number {
    return this.#records.size;
  }

  /** Every sandbox (or those matching `filter`), oldest first. */
  list(filter?: (r: SandboxRecord) => boolean): SandboxRecord[] {
    const out: SandboxRecord[] = [];
    for (const r of this.#records.values()) if (filter === undefined || filter(r)) out.push(r);
    return out.sort((a, b) => a.createdAt - b.createdAt || (a.sandboxId < b.sandboxId ? -1 : 1));
  }

  /** How many sandboxes match `filter` (no sorting, no copies). */
  count(filter: (r: SandboxRecord) => boolean): number {
    let n = 0;
    for (const r of this.#records.values()) if (filter(r)) n += 1;
    return n;
  }

  /** Subscribes to every change (id given: only that sandbox's). Returns the unsubscribe function. */
  subscribe(listener: Listener, id?: string): () => void {
    if (id === undefined) {
      this.#listeners.add(listener);
      return () => this.#listeners.delete(listener);
    }
    const set = this.#byId.get(id) ?? new Set<Listener>();
    set.add(listener);
    this.#byId.set(id, set);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.#byId.get(id) === set) this.#byId.delete(id);
    };
  }

  /**
   * Resolves with the record as soon as `predicate` holds for it (checked now, then on each change of
   * that sandbox), or with the current record when `timeoutMs` passes, `signal` aborts or waits are
   * ended (shutdown). No polling.
   */
  waitFor(
    id: string,
    predicate: (r: SandboxRecord | undefined) => boolean,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<SandboxRecord | undefined> {
    const current = this.get(id);
    if (predicate(current) || timeoutMs <= 0 || signal?.aborted || this.#waitsEnded) return Promise.resolve(current);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', done);
        this.#waiters.delete(done);
        resolve(this.get(id));
      };
      this.#waiters.add(done);
      const timer = setTimeout(done, timeoutMs);
      const unsubscribe = this.subscribe((change) => {
        if (predicate(change.record)) done();
      }, id);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  health(): ViewHealth {
    const now = this.#now();
    const reflectors = this.#reflectors();
    const synced = this.#podReflector.stats.synced && this.#serviceReflector.stats.synced && (this.#routeReflector?.stats.synced ?? true);
    const problems: string[] = [];
    for (const r of reflectors) {
      if (!r.stats.synced) problems.push(`${r.name}: initial list not done${r.stats.lastError ? ` (${r.stats.lastError})` : ''}`);
      else if (!r.stats.connected) problems.push(`${r.name}: watch disconnected${r.stats.lastError ? ` (${r.stats.lastError})` : ''}`);
      else if (now - r.stats.lastContactAt > this.#staleAfterMs)
        problems.push(`${r.name}: no watch activity for ${Math.round((now - r.stats.lastContactAt) / 1000)}s`);
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

  /** Counters for metrics. */
  stats(): { restarts: number; relists: number; handlerErrors: number } {
    const p = this.#podReflector.stats;
    const s = this.#serviceReflector.stats;
    return { restarts: p.restarts + s.restarts, relists: p.relists + s.relists, handlerErrors: p.handlerErrors + s.handlerErrors };
  }
}
