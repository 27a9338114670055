// Create metrics in one place: the outcome of each create and delete (by the answer's code), and the
// time from a create request to the watch seeing its sandbox Running, with the watch's own lag.

import { HttpError } from '../http/errors.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { Metrics } from './metrics.ts';

/** Counts an outcome of `work` (its value's label, or the error's code) and passes the result on. */
export async function countOutcome<T>(
  counter: { inc(labels: { outcome: string }): void },
  work: Promise<T>,
  label: (value: T) => string,
): Promise<T> {
  try {
    const value = await work;
    counter.inc({ outcome: label(value) });
    return value;
  } catch (err) {
    counter.inc({ outcome: err instanceof HttpError ? err.code : 'internal_error' });
    throw err;
  }
}

/** The startup milestones of a record, by the phase label of sandbox_provisioner_startup_phase_seconds. */
const PHASES = [
  ['scheduled', 'scheduledAt'],
  ['image_ready', 'imageReadyAt'],
  ['started', 'startedAt'],
  ['ready', 'readyAt'],
] as const;

/**
 * Create-to-Running: from the create request to the watch seeing the pod Ready. And each startup
 * milestone of a sandbox this process saw start (not the ones it found already running at its start).
 */
export class CreateTimings {
  #pendingSince = new Map<string, number>();

  constructor(view: Pick<SandboxView, 'subscribe'>, metrics: Pick<Metrics, 'createToRunning' | 'watchLag' | 'startupPhase'>) {
    view.subscribe(({ record, previous }) => {
      if (!record || !previous || !Number.isFinite(record.createdAt)) return;
      for (const [phase, field] of PHASES) {
        const at = record[field];
        if (at !== undefined && previous[field] === undefined)
          metrics.startupPhase.observe({ phase }, Math.max(0, (at - record.createdAt) / 1000));
      }
    });
    view.subscribe(({ id, record, previous }) => {
      if (record?.status !== 'Running' || previous?.status === 'Running') {
        if (record === undefined) this.#pendingSince.delete(id);
        return;
      }
      const since = this.#pendingSince.get(id);
      if (since !== undefined) metrics.createToRunning.observe((performance.now() - since) / 1000);
      this.#pendingSince.delete(id);
      if (record.lastTransitionAt !== undefined) metrics.watchLag.observe(Math.max(0, Date.now() - record.lastTransitionAt) / 1000);
    });
  }

  /** A create request for `id` arrived now. */
  started(id: string): void {
    this.#pendingSince.set(id, performance.now());
  }
}
