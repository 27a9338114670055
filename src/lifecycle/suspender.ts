// Suspend and wake: idle sandboxes lose their pod (SANDBOX_SUSPEND_AFTER_SECONDS) and keep the rest; a
// new pod is made on their next use. And admission by suspending: a create or wake that would pass
// MAX_ACTIVE_SANDBOXES or MAX_ACTIVE_SANDBOXES_PER_USER first suspends the least recently used idle
// sandbox (the same user's first); only when none is idle is it answered 429. The writes go through
// the writer; what is idle is decided here, from the view, the activity store and the proxy.

import type { Config } from '../config.ts';
import type { SandboxRecord } from '../domain/record.ts';
import { HttpError } from '../http/errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../observe/metrics.ts';
import type { SandboxWriter, WakeTrigger } from '../provisioner/writer.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { Activity } from './activity.ts';

export type SuspenderDeps = {
  config: Config;
  view: SandboxView;
  writer: Pick<SandboxWriter, 'suspend' | 'wake' | 'busy'>;
  activity: Pick<Activity, 'lastActivity' | 'leaseUntil'>;
  log: Logger;
  metrics?: Pick<Metrics, 'suspends'>;
  now: () => number;
  /** Requests and WebSockets this replica's proxy has open to a sandbox (traffic in flight is not idle). */
  open?: (id: string) => number;
};

/** How long an admitted pod is counted before the view shows it (a create's objects appear within milliseconds). */
const RESERVED_MS = 30_000;

/** A sandbox that holds a pod (a node's requests): what the active limits count. */
export const isActive = (r: SandboxRecord): boolean => r.hasPod && !r.deleting && r.suspension !== 'suspending';

export class Suspender {
  #deps: SuspenderDeps;
  /** Pods admitted by this replica that its view may not show yet, by id: their user and when. */
  #reserved = new Map<string, { userId: string; at: number }>();
  /** Admissions run one at a time, so two creates never both take the last place. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(deps: SuspenderDeps) {
    this.#deps = deps;
  }

  /**
   * Idle: Running, its Service holding its request, no lease, nothing open through the proxy, nothing in
   * progress in the writer, and (`forMs`) no activity for that long.
   */
  idle(r: SandboxRecord, now: number, forMs = 0): boolean {
    const { activity, writer, open } = this.#deps;
    if (!isActive(r) || r.status !== 'Running' || r.suspension || !r.resumable || !r.hasService) return false;
    if ((activity.leaseUntil(r) ?? 0) > now || (open?.(r.sandboxId) ?? 0) > 0 || writer.busy(r.sandboxId)) return false;
    return now - activity.lastActivity(r) >= forMs;
  }

  /** Suspends every sandbox idle for SANDBOX_SUSPEND_AFTER_SECONDS; the ids suspended. */
  async sweep(): Promise<string[]> {
    const { config, view, log } = this.#deps;
    const after = config.suspend.afterMs;
    if (after <= 0) return [];
    const now = this.#deps.now();
    const done: string[] = [];
    for (const r of view.list((x) => this.idle(x, now, after))) {
      try {
        if (await this.#suspend(r, 'idle')) done.push(r.sandboxId);
      } catch (err) {
        log.warn({ sandbox_id: r.sandboxId, err }, 'could not suspend an idle sandbox; will retry next sweep');
      }
    }
    return done;
  }

  /**
   * Suspends one sandbox now (POST /suspend); false when it already was. A sandbox with requests open
   * through this replica's proxy (one waiting for it to start or wake included) is not: 409, the request
   * wins.
   */
  suspend(id: string): Promise<boolean> {
    const open = this.#deps.open?.(id) ?? 0;
    if (open > 0)
      throw new HttpError(
        'conflict',
        `Sandbox '${id}' has ${open} request${open === 1 ? '' : 's'} open through this service; retry once they end`,
        {
          headers: { 'retry-after': '5' },
        },
      );
    const r = this.#deps.view.get(id);
    return r ? this.#suspend(r, 'request') : this.#deps.writer.suspend(id);
  }

  async #suspend(r: SandboxRecord, why: 'idle' | 'request' | 'admission'): Promise<boolean> {
    const ok = await this.#deps.writer.suspend(r.sandboxId, why === 'request' ? undefined : r.podUid);
    if (ok) {
      this.#deps.metrics?.suspends.inc({ reason: why });
      this.#reserved.delete(r.sandboxId);
    }
    return ok;
  }

  /** Wakes a suspended sandbox (the writer's wake; a running one is answered as it is). */
  wake(id: string, by: WakeTrigger): Promise<SandboxRecord> {
    return this.#deps.writer.wake(id, by);
  }

  /**
   * Makes room for one more pod of `req.userId` (a create or a wake), suspending the least recently used
   * idle sandbox under the limit that would be passed; 429 `active_limit_reached` when none is idle.
   */
  admit(req: { sandboxId: string; userId: string }): Promise<void> {
    const { maxActive, maxActivePerUser, activeOverrides } = this.#deps.config.limits;
    const perUser = activeOverrides.get(req.userId) ?? maxActivePerUser;
    if (maxActive <= 0 && perUser <= 0) return Promise.resolve();
    const run = this.#queue.then(() => this.#admit(req, maxActive, perUser));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #admit(req: { sandboxId: string; userId: string }, maxActive: number, perUser: number): Promise<void> {
    const { view, now } = this.#deps;
    const at = now();
    for (const [id, r] of this.#reserved) if (at - r.at > RESERVED_MS || view.get(id)?.hasPod) this.#reserved.delete(id);
    const reservedOf = (user?: string): number =>
      [...this.#reserved.entries()].filter(([id, r]) => id !== req.sandboxId && (user === undefined || r.userId === user)).length;
    const others = (r: SandboxRecord): boolean => isActive(r) && r.sandboxId !== req.sandboxId;
    if (perUser > 0) {
      const mine = view.count((r) => others(r) && r.userId === req.userId) + reservedOf(req.userId);
      if (mine >= perUser) await this.#makeRoom(req, (r) => r.userId === req.userId, limitName('user', req.userId, perUser));
    }
    if (maxActive > 0) {
      const all = view.count(others) + reservedOf();
      if (all >= maxActive) await this.#makeRoom(req, () => true, limitName('all', req.userId, maxActive));
    }
    this.#reserved.set(req.sandboxId, { userId: req.userId, at });
  }

  /** Suspends the least recently used idle sandbox matching `scope` (the same user's first); 429 when there is none. */
  async #makeRoom(req: { sandboxId: string; userId: string }, scope: (r: SandboxRecord) => boolean, limit: string): Promise<void> {
    const { view, activity, now, log } = this.#deps;
    const at = now();
    const candidates = view
      .list((r) => r.sandboxId !== req.sandboxId && scope(r) && this.idle(r, at))
      .sort(
        (a, b) => Number(b.userId === req.userId) - Number(a.userId === req.userId) || activity.lastActivity(a) - activity.lastActivity(b),
      );
    for (const r of candidates) {
      if (!(await this.#suspend(r, 'admission'))) continue;
      log.info({ sandbox_id: r.sandboxId, for: req.sandboxId, user_id: req.userId, limit }, 'suspended an idle sandbox to admit another');
      // Counted as gone once the view shows its pod going (the next admission counts from the view).
      await view.waitFor(r.sandboxId, (x) => x === undefined || !isActive(x), 2000);
      return;
    }
    throw new HttpError('active_limit_reached', `${limit} is reached and none of those sandboxes is idle to suspend; retry later`, {
      headers: { 'retry-after': '10' },
      extra: { limit: limit.split(' ')[0] ?? '' },
    });
  }
}

const limitName = (scope: 'user' | 'all', userId: string, n: number): string =>
  scope === 'user' ? `MAX_ACTIVE_SANDBOXES_PER_USER (${n} for user '${userId}')` : `MAX_ACTIVE_SANDBOXES (${n} sandboxes with a pod)`;
