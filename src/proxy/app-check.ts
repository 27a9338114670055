// Whether a sandbox's app answers yet, asked of the app itself: while the proxy holds a request for a
// sandbox that is starting, it polls the pod's own address on the probe path (what kubelet's probe asks),
// every 100 ms, so the request goes on the moment the app answers instead of when kubelet's next probe
// tick marks the pod Ready (up to a probe period later). Polls are shared by every request waiting for
// the same pod. An answer is told to the view (appAnswered): the sandbox is then Running for every
// reader (status, ?wait=, events, the dashboard), not only for the proxy. The checks go through the
// proxy's one engine (upstream.ts), on the pool of the pod's address that the request will then use.

import type { SandboxView } from '../watch/sandbox-view.ts';
import type { Upstreams } from './upstream.ts';

export type AppCheckOptions = { path: string; port: number; upstreams: Upstreams; view: SandboxView; everyMs?: number };

/** The origin of a pod's app, by its address. */
export const podOrigin = (ip: string, port: number): string => `http://${ip.includes(':') ? `[${ip}]` : ip}:${port}`;

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export class AppCheck {
  #options: Required<AppCheckOptions>;
  #polls = new Map<string, { waiters: number; stop: AbortController; done: Promise<boolean> }>();

  constructor(options: AppCheckOptions) {
    this.#options = { everyMs: 100, ...options };
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

  async #poll(id: string, podUid: string, ip: string, signal: AbortSignal): Promise<boolean> {
    const origin = podOrigin(ip, this.#options.port);
    while (!signal.aborted) {
      if (await this.#options.upstreams.answers(origin, id, this.#options.path, signal)) {
        this.#options.view.appAnswered(id, podUid);
        return true;
      }
      await sleep(this.#options.everyMs, signal);
    }
    return false;
  }
}
