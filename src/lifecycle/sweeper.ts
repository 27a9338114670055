// Expiry: deletes sandboxes past their maximum age (SANDBOX_TTL_SECONDS, or a per-sandbox expires-at
// set on create or keepalive) or idle longer than SANDBOX_IDLE_SECONDS. The decision is a pure function
// of a record, its last activity and a time; the deletes go through the writer. Safe with several
// replicas: each delete carries preconditions (the pod's uid and resourceVersion as seen), so when two
// replicas sweep at once exactly one deletes and the other sees a conflict, counted by neither as an error.

import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../observe/metrics.ts';
import type { SandboxWriter } from '../provisioner/writer.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { Activity } from './activity.ts';
import type { Suspender } from './suspender.ts';

export type Expiry = { id: string; reason: 'ttl' | 'idle' };
export type SweepResult = { expired: Expiry[]; suspended: string[]; errors: string[] };

/** Why a sandbox has expired at `now`, if it has: its own expiry or the TTL from its creation, or idleness. */
export function expiryReason(
  sandbox: { createdAt: number; expiresAt: number | undefined; lastActivity: number },
  lifecycle: Config['lifecycle'],
  now: number,
): Expiry['reason'] | undefined {
  const { ttlMs, idleMs } = lifecycle;
  const expiresAt = sandbox.expiresAt ?? (ttlMs > 0 ? sandbox.createdAt + ttlMs : undefined);
  if (expiresAt !== undefined && now >= expiresAt) return 'ttl';
  if (idleMs > 0 && now - sandbox.lastActivity >= idleMs) return 'idle';
  return undefined;
}

export type SweepDeps = {
  config: Config;
  view: SandboxView;
  writer: Pick<SandboxWriter, 'expire' | 'delete'>;
  /** Suspends idle sandboxes (SANDBOX_SUSPEND_AFTER_SECONDS). */
  suspender?: Pick<Suspender, 'sweep'>;
  activity: Pick<Activity, 'lastActivity' | 'expiresAt'>;
  log: Logger;
  metrics?: Pick<Metrics, 'expiries'>;
  now: () => number;
};

/** Sweeps every SANDBOX_SWEEP_SECONDS once the view has synced (when a TTL or idle limit is set); `runNow` sweeps at once. */
export function startSweeps(deps: SweepDeps): { runNow: () => Promise<SweepResult>; stop: () => void } {
  const runNow = async (): Promise<SweepResult> => {
    await deps.view.synced;
    return sweep(deps);
  };
  const { ttlMs, idleMs, sweepMs } = deps.config.lifecycle;
  const timer =
    ttlMs > 0 || idleMs > 0 || deps.config.suspend.afterMs > 0
      ? setInterval(() => void runNow().catch(() => undefined), sweepMs).unref()
      : undefined;
  return { runNow, stop: () => clearInterval(timer) };
}

export async function sweep(deps: SweepDeps): Promise<SweepResult> {
  const { config, view, writer, activity, log } = deps;
  const result: SweepResult = { expired: [], suspended: [], errors: [] };
  const now = deps.now();
  for (const record of view.list()) {
    // A suspended sandbox ages and idles too (its last activity is its suspension): it is deleted whole.
    const suspended = record.suspension === 'suspended';
    if (record.deleting || (!suspended && (!record.hasPod || record.podUid === undefined))) continue;
    const lastActivity = activity.lastActivity(record);
    const reason = expiryReason(
      { createdAt: record.createdAt, expiresAt: activity.expiresAt(record), lastActivity },
      config.lifecycle,
      now,
    );
    if (!reason) continue;
    try {
      const gone = suspended
        ? await writer.delete(record.sandboxId)
        : await writer.expire(record.sandboxId, record.podUid ?? '', record.podResourceVersion);
      if (gone) {
        result.expired.push({ id: record.sandboxId, reason });
        deps.metrics?.expiries.inc({ reason });
        log.info(
          {
            sandbox_id: record.sandboxId,
            reason,
            age_s: Math.round((now - record.createdAt) / 1000),
            idle_s: Math.round((now - lastActivity) / 1000),
          },
          `sandbox expired (${reason})`,
        );
      }
    } catch (err) {
      result.errors.push(`${record.sandboxId}: ${(err as Error).message}`);
      log.warn({ sandbox_id: record.sandboxId, err }, 'expiry failed; will retry next sweep');
    }
  }
  if (deps.suspender) result.suspended = await deps.suspender.sweep();
  return result;
}
