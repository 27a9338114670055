// The informer-driven view of every sandbox: the informers' pods, services, routes and image events
// (informers.ts) joined by sandbox id into records, answered from memory. Callers can wait for a change
// (waitFor) or subscribe to transitions; readiness of the view itself is `synced` (first lists done)
// and `health()` (every watch connected and recent, the API server answering).

import { imageFacts, joinRecord, sameRecord, type SandboxRecord, type Usable } from '../domain/record.ts';
import { Informers, type InformerOptions, type ViewHealth } from './informers.ts';

export type { ViewHealth } from './informers.ts';

export type Change = { id: string; record: SandboxRecord | undefined; previous: SandboxRecord | undefined; at: number };
export type Listener = (change: Change) => void;

export type SandboxViewOptions = InformerOptions & {
  /** Gateway mode: Running waits until the gateway has served the sandbox's route (routeServed). */
  routeCheck?: boolean;
};

export class SandboxView {
  #informers: Informers;
  #records = new Map<string, SandboxRecord>();
  #listeners = new Set<Listener>();
  #byId = new Map<string, Set<Listener>>();
  #now: () => number;
  #log: NonNullable<InformerOptions['log']>;
  /** Pending waits (their `done`), and whether waits were ended (shutdown). */
  #waiters = new Set<() => void>();
  #waitsEnded = false;
  /** When this view saw each sandbox turn Ready, by its own clock (`now`), never the node's. */
  #readySeenAt = new Map<string, number>();
  /** What this service itself saw of each sandbox's current pod (its app answering; the gateway serving it). */
  #seen = new Map<string, Usable>();
  #routeCheck: boolean;
  readonly synced: Promise<void>;

  constructor(options: SandboxViewOptions) {
    this.#now = options.now ?? Date.now;
    this.#routeCheck = options.routeCheck ?? false;
    this.#log = options.log ?? { info() {}, warn() {}, error() {} };
    this.#informers = new Informers({ ...options, now: this.#now, log: this.#log }, (id) => this.#refresh(id));
    this.synced = this.#informers.synced;
  }

  #refresh(id: string): void {
    const previous = this.#records.get(id);
    const facts = this.#informers;
    const pod = facts.pods.get(id);
    const events = pod && facts.events.get(id);
    let seen = this.#seen.get(id);
    if (seen && seen.podUid !== pod?.uid) this.#seen.delete(id);
    else if (seen && pod?.ready === 'True' && !seen.wasReady) this.#seen.set(id, (seen = { ...seen, wasReady: true }));
    const record = joinRecord(
      id,
      pod,
      facts.services.get(id),
      events ? imageFacts(pod.uid, events.values()) : undefined,
      facts.watchesRoutes ? { route: facts.routes.get(id), checked: this.#routeCheck } : undefined,
      this.#seen.get(id),
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
    this.#informers.start(options);
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

  stop(): Promise<void> {
    return this.#informers.stop();
  }

  /**
   * This service saw the app of the sandbox's pod `podUid` answer on the pod's own address (the proxy's
   * app check): the sandbox is Running for every reader, before kubelet's probe says so.
   */
  appAnswered(id: string, podUid: string): void {
    this.#see(id, podUid, { answeredAt: this.#now() });
  }

  /** Gateway mode: the gateway served the route of the sandbox's pod `podUid` (its route check). */
  routeServed(id: string, podUid: string): void {
    this.#see(id, podUid, { servedAt: this.#now() });
  }

  #see(id: string, podUid: string, fact: Pick<Partial<Usable>, 'answeredAt' | 'servedAt'>): void {
    const record = this.#records.get(id);
    if (record?.podUid !== podUid) return;
    const before = this.#seen.get(id);
    const base: Usable =
      before?.podUid === podUid ? before : { podUid, answeredAt: undefined, servedAt: undefined, wasReady: record.ready };
    // The first sighting counts: a later answer of the same pod changes nothing.
    this.#seen.set(id, { ...base, answeredAt: base.answeredAt ?? fact.answeredAt, servedAt: base.servedAt ?? fact.servedAt });
    this.#refresh(id);
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
    return this.#informers.health();
  }

  /** Counters for metrics, over every watch. */
  stats(): { restarts: number; relists: number; handlerErrors: number } {
    return this.#informers.stats();
  }
}
