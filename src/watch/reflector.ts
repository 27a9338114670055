// List + watch of one resource kind, made to stay right: the one module that owns restarts, backoff,
// relists and the "synced" promise. It keeps a store of slim objects keyed by name and turns every
// list and watch event into add/update/delete calls on its handler.
//
// Why not the library's informer as is: @kubernetes/client-node's informer stops on any error but a 410
// or a timeout, resolves start() even when the first list fails, and turns exceptions in handlers into
// unhandled rejections. Here:
// - every failure (list or watch) is retried with capped exponential backoff and full jitter;
// - a watch resumes from the last resourceVersion seen (events or bookmarks), so a short outage replays
//   what happened; a 410 Gone leads to a relist that is diffed against the store, so there are no
//   spurious deletes and no duplicate adds;
// - handler exceptions are caught, logged and counted, never thrown into the watch.

import type { WireMeta } from '../domain/wire.ts';
import type { KubeStatus } from '../kube/errors.ts';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export type ListPage<Raw> = { items: Raw[]; resourceVersion: string; continueToken: string | undefined };

export type ListFn<Raw> = (options: { limit: number; continueToken: string | undefined }) => Promise<ListPage<Raw>>;

/** Starts a watch from resourceVersion; calls onEvent per event and onDone once when it ends (with `Gone` for a 410). */
export type WatchFn = (
  resourceVersion: string,
  onEvent: (type: WatchEventType, object: unknown) => void,
  onDone: (err: unknown) => void,
) => Promise<{ abort: () => void }>;

export type ReflectorHandler<T> = {
  add(key: string, obj: T): void;
  update(key: string, obj: T, old: T): void;
  delete(key: string, old: T): void;
};

/** Where the watch logs: pino's shape (fields, then the message), so its data lands in fields. */
type LogFn = (fields: Record<string, unknown>, msg: string) => void;
export type ReflectorLog = { info: LogFn; warn: LogFn; error: LogFn };

export type ReflectorOptions<Raw, T> = {
  name: string;
  list: ListFn<Raw>;
  watch: WatchFn;
  /** Key and slim form of a raw object; undefined to ignore it. */
  slim: (raw: Raw) => { key: string; obj: T; resourceVersion: string } | undefined;
  handler: ReflectorHandler<T>;
  log?: ReflectorLog;
  pageSize?: number;
  backoff?: { initialMs: number; maxMs: number };
  delay?: (ms: number, signal: AbortSignal) => Promise<void>;
  random?: () => number;
  now?: () => number;
};

export type ReflectorStats = {
  synced: boolean;
  connected: boolean;
  lastContactAt: number;
  restarts: number;
  relists: number;
  handlerErrors: number;
  lastError: string | undefined;
  resourceVersion: string;
};

/** The watch's resourceVersion is too old (HTTP 410 or an ERROR event with code 410): relist. WatchFns report it as this. */
export class Gone extends Error {}

const defaultDelay = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

const silent: ReflectorLog = { info() {}, warn() {}, error() {} };

export class Reflector<Raw, T> {
  readonly name: string;
  #options: Required<Omit<ReflectorOptions<Raw, T>, 'log'>> & { log: ReflectorLog };
  #store = new Map<string, { obj: T; resourceVersion: string }>();
  #abort = new AbortController();
  #running: Promise<void> | undefined;
  #wake: AbortController | undefined;
  #interrupt: ((err: Error) => void) | undefined;
  #resolveSynced!: () => void;
  readonly synced: Promise<void> = new Promise((resolve) => (this.#resolveSynced = resolve));
  readonly stats: ReflectorStats = {
    synced: false,
    connected: false,
    lastContactAt: 0,
    restarts: 0,
    relists: 0,
    handlerErrors: 0,
    lastError: undefined,
    resourceVersion: '',
  };

  constructor(options: ReflectorOptions<Raw, T>) {
    this.name = options.name;
    this.#options = {
      pageSize: 500,
      backoff: { initialMs: 250, maxMs: 30_000 },
      delay: defaultDelay,
      random: Math.random,
      now: Date.now,
      log: silent,
      ...options,
    };
  }

  get size(): number {
    return this.#store.size;
  }

  start(): void {
    this.#running ??= this.#run();
  }

  /** Ends a backoff wait now: the API server is known to answer again. */
  retryNow(): void {
    this.#wake?.abort();
  }

  /** Ends the current watch as failed (a connection the API server holds open but no longer serves). */
  interrupt(reason: string): void {
    this.#interrupt?.(new Error(reason));
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#running;
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    let failures = 0;
    let mustList = true;
    while (!signal.aborted) {
      try {
        if (mustList) {
          await this.#relist();
          mustList = false;
        }
        await this.#watchOnce();
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        this.stats.connected = false;
        if (err instanceof Gone) {
          // The resourceVersion we hold was compacted away: relist now (a short pause avoids a hot loop).
          this.#options.log.info(
            { watch: this.name, relists: this.stats.relists + 1 },
            `${this.name}: watch expired (410 Gone), relisting`,
          );
          mustList = true;
          this.stats.relists += 1;
          await this.#options.delay(Math.min(this.#options.backoff.initialMs, 100), signal);
          continue;
        }
        failures += 1;
        this.stats.restarts += 1;
        this.stats.lastError = describe(err);
        // Before the first list, keep listing; after it, resume the watch from the last version we hold.
        mustList = !this.stats.synced;
        const cap = Math.min(this.#options.backoff.maxMs, this.#options.backoff.initialMs * 2 ** (failures - 1));
        const wait = Math.round(cap / 2 + (this.#options.random() * cap) / 2);
        this.#options.log.warn(
          { watch: this.name, err, retry_ms: wait, attempt: failures },
          `${this.name}: ${this.stats.lastError}; retrying in ${wait} ms (attempt ${failures})`,
        );
        // retryNow() cuts the wait short (the API server answers again).
        this.#wake = new AbortController();
        await this.#options.delay(wait, AbortSignal.any([signal, this.#wake.signal]));
        this.#wake = undefined;
      }
    }
    this.stats.connected = false;
  }

  async #relist(): Promise<void> {
    const fresh = new Map<string, { obj: T; resourceVersion: string }>();
    let continueToken: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.#options.list({ limit: this.#options.pageSize, continueToken });
      for (const raw of page.items) {
        const s = this.#options.slim(raw);
        if (s) fresh.set(s.key, { obj: s.obj, resourceVersion: s.resourceVersion });
      }
      resourceVersion = page.resourceVersion;
      continueToken = page.continueToken || undefined;
    } while (continueToken !== undefined && !this.#abort.signal.aborted);
    // Diff against what we hold: deletes for what vanished, updates for what changed, adds for the new.
    for (const [key, old] of this.#store) {
      if (!fresh.has(key)) {
        this.#store.delete(key);
        this.#call(() => this.#options.handler.delete(key, old.obj));
      }
    }
    for (const [key, next] of fresh) {
      const old = this.#store.get(key);
      this.#store.set(key, next);
      if (old === undefined) this.#call(() => this.#options.handler.add(key, next.obj));
      else if (old.resourceVersion !== next.resourceVersion) this.#call(() => this.#options.handler.update(key, next.obj, old.obj));
    }
    this.stats.resourceVersion = resourceVersion;
    this.stats.lastContactAt = this.#options.now();
    if (!this.stats.synced) {
      this.stats.synced = true;
      this.#resolveSynced();
    }
  }

  #watchOnce(): Promise<void> {
    const signal = this.#abort.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let finished = false;
      let handle: { abort: () => void } | undefined;
      const finish = (err: unknown): void => {
        if (finished) return;
        finished = true;
        this.#interrupt = undefined;
        signal.removeEventListener('abort', onStop);
        this.stats.connected = false;
        handle?.abort();
        if (err === undefined || err === null) resolve();
        else reject(err);
      };
      this.#interrupt = finish;
      const onStop = (): void => finish(undefined);
      signal.addEventListener('abort', onStop, { once: true });
      const onEvent = (type: WatchEventType, object: unknown): void => {
        if (finished) return;
        this.stats.lastContactAt = this.#options.now();
        if (type === 'ERROR') {
          const status = object as KubeStatus;
          finish(status.code === 410 ? new Gone(status.message ?? 'Gone') : new Error(`watch error ${status.code}: ${status.message}`));
          return;
        }
        const rv = (object as { metadata?: WireMeta }).metadata?.resourceVersion;
        if (type !== 'BOOKMARK') this.#apply(type, object as Raw);
        if (rv) this.stats.resourceVersion = rv;
      };
      this.#options.watch(this.stats.resourceVersion, onEvent, finish).then((h) => {
        handle = h;
        if (finished) return h.abort();
        this.stats.connected = true;
        this.stats.lastContactAt = this.#options.now();
      }, finish);
    });
  }

  #apply(type: WatchEventType, raw: Raw): void {
    const s = this.#options.slim(raw);
    if (s === undefined) return;
    const old = this.#store.get(s.key);
    if (type === 'DELETED') {
      if (old === undefined) return;
      this.#store.delete(s.key);
      this.#call(() => this.#options.handler.delete(s.key, old.obj));
      return;
    }
    if (old?.resourceVersion === s.resourceVersion) return;
    this.#store.set(s.key, { obj: s.obj, resourceVersion: s.resourceVersion });
    if (old === undefined) this.#call(() => this.#options.handler.add(s.key, s.obj));
    else this.#call(() => this.#options.handler.update(s.key, s.obj, old.obj));
  }

  #call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.stats.handlerErrors += 1;
      this.#options.log.error(
        { watch: this.name, err, stack: err instanceof Error ? err.stack : undefined },
        `${this.name}: handler threw`,
      );
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return cause?.code ? `${err.message} (${cause.code})` : err.message;
  }
  return String(err);
}
