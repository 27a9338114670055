// Whether a sandbox's app answers yet, asked of the app itself: for a sandbox whose container runs and
// that kubelet has not marked Ready yet, the pod's own address is polled on the probe path (what
// kubelet's probe asks), every 100 ms while the proxy holds a request for it, every 250 ms otherwise (at
// most WATCHED polls at once), so the sandbox is usable the moment its app answers instead of when
// kubelet's next probe tick marks it Ready (up to a probe period later). Polls are shared by every
// request waiting for the same pod. An answer is told to the view (appAnswered): the sandbox is then
// Running for every reader (status, ?wait=, events, the dashboard, DeerFlow's is_alive right after its
// own poll), not only for the proxy. The checks go through the proxy's one engine (upstream.ts), on the
// pool of the pod's address that the request will then use.

import { onlyReadyMissing, type SandboxRecord } from '../domain/record.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { Upstreams } from './upstream.ts';

export type AppCheckOptions = { path: string; port: number; upstreams: Upstreams; view: SandboxView; everyMs?: number };

/** The origin of a pod's app, by its address. */
export const podOrigin = (ip: string, port: number): string => `http://${ip.includes(':') ? `[${ip}]` : ip}:${port}`;

/** Waits `ms`, or less when `signal` aborts first (the polls' pause). */
export const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/** Polls of starting sandboxes that no request waits for, at most at once. */
const WATCHED = 64;
const WATCH_EVERY_MS = 250;

/** Its container runs, it has an address, its app has not answered yet, and only kubelet's Ready is missing. */
const starting = (r: SandboxRecord | undefined): r is SandboxRecord =>
  r !== undefined && !r.ready && r.podIP !== undefined && r.podUid !== undefined && r.answeredAt === undefined && onlyReadyMissing(r);

export class AppCheck {
  #options: Required<AppCheckOptions>;
  #polls = new Map<string, { waiters: number; stop: AbortController; done: Promise<boolean> }>();
  /** The starting sandboxes polled on their own (no request waiting), by pod uid. */
  #watched = new Map<string, AbortController>();
  #unsubscribe: (() => void) | undefined;

  constructor(options: AppCheckOptions) {
    this.#options = { everyMs: 100, ...options };
  }

  /** Polls every starting sandbox of the view, request or not (WATCHED at once), until it answers or changes. */
  watch(): void {
    const view = this.#options.view;
    this.#unsubscribe = view.subscribe(({ id, record, previous }) => {
      const uid = previous?.podUid;
      if (uid !== undefined && !(starting(record) && record.podUid === uid)) this.#unwatch(uid);
      if (starting(record)) this.#watch(id, record);
    });
    for (const r of view.list(starting)) this.#watch(r.sandboxId, r);
  }

  #watch(id: string, record: SandboxRecord): void {
    const uid = record.podUid ?? '';
    if (this.#watched.has(uid) || this.#watched.size >= WATCHED) return;
    const stop = new AbortController();
    this.#watched.set(uid, stop);
    void this.#poll(id, uid, record.podIP ?? '', stop.signal, WATCH_EVERY_MS).finally(() => {
      if (this.#watched.get(uid) === stop) this.#watched.delete(uid);
    });
  }

  #unwatch(uid: string): void {
    this.#watched.get(uid)?.abort();
    this.#watched.delete(uid);
  }

  stop(): void {
    this.#unsubscribe?.();
    for (const stop of this.#watched.values()) stop.abort();
    this.#watched.clear();
  }

  #answered(id: string, podUid: string): boolean {
    const record = this.#options.view.get(id);
    return record?.podUid === podUid && record.answeredAt !== undefined;
  }

  /** Resolves true once the app at `ip` answers its probe path (2xx or 3xx), false when `signal` ends the wait first. */
  async until(id: string, podUid: string, ip: string, signal: AbortSignal): Promise<boolean> {
    if (this.#answered(id, podUid)) return true;
    let poll = this.#polls.get(podUid);
    if (!poll) {
      const stop = new AbortController();
      poll = { waiters: 0, stop, done: this.#poll(id, podUid, ip, stop.signal) };
      this.#polls.set(podUid, poll);
      void poll.done.finally(() => this.#polls.delete(podUid));
    }
    const shared = poll;
    shared.waiters += 1;
    const leave = (): void => {
      shared.waiters -= 1;
      if (shared.waiters === 0) shared.stop.abort();
    };
    const gone = new Promise<boolean>((resolve) => signal.addEventListener('abort', () => resolve(false), { once: true }));
    try {
      return signal.aborted ? false : await Promise.race([shared.done, gone]);
    } finally {
      leave();
    }
  }

  async #poll(id: string, podUid: string, ip: string, signal: AbortSignal, everyMs = this.#options.everyMs): Promise<boolean> {
    const origin = podOrigin(ip, this.#options.port);
    while (!signal.aborted) {
      if (await this.#options.upstreams.answers(origin, id, this.#options.path, signal)) {
        this.#options.view.appAnswered(id, podUid);
        return true;
      }
      await sleep(everyMs, signal);
    }
    return false;
  }
}
