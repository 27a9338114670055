// The API server's pulse: a cheap request (GET /version) every few seconds. It makes a frozen server
// visible in seconds rather than when the watches' idle timers fire, says when open watches are dead
// (a server that holds connections open but answers nothing), and when it answers again, so the
// watches resume at once instead of at the end of their backoff.

import { setTimeout as sleep } from 'node:timers/promises';
import type { ReflectorLog } from './reflector.ts';

/** Consecutive failed probes after which open watches are declared dead. */
export const PROBE_FAILURES_TO_RESTART = 3;

export type ApiProbeOptions = {
  /** Must fail within `timeoutMs` when the server does not answer. */
  probe: (timeoutMs: number) => Promise<void>;
  everyMs: number;
  log: ReflectorLog;
  now: () => number;
  onRecovered: () => void;
  onStuck: () => void;
};

export class ApiProbe {
  #options: ApiProbeOptions;
  #stop = new AbortController();
  #running: Promise<void> | undefined;
  /** Consecutive failures, and the last one's message. */
  failures = 0;
  error: string | undefined;
  /** When the server last answered a probe; 0 before. */
  lastOkAt = 0;

  constructor(options: ApiProbeOptions) {
    this.#options = options;
  }

  start(): void {
    this.#running ??= this.#loop();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#running;
  }

  async #loop(): Promise<void> {
    const signal = this.#stop.signal;
    const { probe, everyMs, log, now } = this.#options;
    while (!signal.aborted) {
      await sleep(everyMs, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      try {
        await probe(everyMs);
        if (this.failures > 0) {
          log.info(
            { failed_probes: this.failures },
            `the API server answers again after ${this.failures} failed probes; watches resume now`,
          );
          this.#options.onRecovered();
        }
        this.failures = 0;
        this.lastOkAt = now();
      } catch (err) {
        this.failures += 1;
        this.error = err instanceof Error ? err.message : String(err);
        if (this.failures === PROBE_FAILURES_TO_RESTART) {
          log.warn(
            { failed_probes: PROBE_FAILURES_TO_RESTART, err },
            `the API server has not answered ${PROBE_FAILURES_TO_RESTART} probes (${this.error}); restarting the watches`,
          );
          this.#options.onStuck();
        }
      }
    }
  }
}
