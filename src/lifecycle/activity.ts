// Activity: when each sandbox was last used (an API touch or a proxied request) and when it expires
// (its TTL, or a keepalive's). Kept in memory, and written to the pod as annotations through the
// writer at most once per ACTIVITY_WRITE_INTERVAL_SECONDS, so it survives restarts and is shared by
// replicas (each reads it back through the watch). Without `patch` on pods it stays in memory only.

import type { Config } from '../config.ts';
import type { SandboxRecord } from '../domain/record.ts';
import { ANNOTATION_EXPIRES_AT, ANNOTATION_LAST_ACTIVITY, ANNOTATION_LEASE_UNTIL } from '../domain/sandbox.ts';
import { HttpError } from '../http/errors.ts';
import type { Logger } from '../log.ts';
import type { Grants } from '../provisioner/permissions.ts';
import type { SandboxWriter } from '../provisioner/writer.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';

export type ActivityDeps = {
  config: Config;
  writer: Pick<SandboxWriter, 'annotate'>;
  /** Whether the identity may patch pods (else activity is kept in memory only). */
  grants: Pick<Grants, 'can'>;
  view: Pick<SandboxView, 'subscribe'>;
  log: Logger;
  now?: () => number;
};

export class Activity {
  #config: Config;
  #writer: ActivityDeps['writer'];
  #grants: ActivityDeps['grants'];
  #log: Logger;
  #now: () => number;
  /** Last activity per sandbox seen by this process, and when it was last written to the pod. */
  #touched = new Map<string, number>();
  #written = new Map<string, number>();
  /** Expiry moved by a keepalive that could not be written to the pod. */
  #expiries = new Map<string, number>();
  /** Leases that could not be written to the pod (no `patch`): kept in memory only. */
  #leases = new Map<string, number>();

  constructor(deps: ActivityDeps) {
    this.#config = deps.config;
    this.#writer = deps.writer;
    this.#grants = deps.grants;
    this.#log = deps.log;
    this.#now = deps.now ?? Date.now;
    // What is known of sandboxes that are gone is forgotten.
    deps.view.subscribe((change) => {
      if (change.record !== undefined) return;
      this.#touched.delete(change.id);
      this.#written.delete(change.id);
      this.#expiries.delete(change.id);
      this.#leases.delete(change.id);
    });
  }

  /** A sandbox was just made: its creation is its first activity, which its pod already records. */
  created(id: string): void {
    this.#persisted(id, this.#now());
  }

  /** Records activity now; persists it when the last write is older than the write interval. */
  touch(id: string): void {
    const now = this.#now();
    this.#touched.set(id, now);
    if (now - (this.#written.get(id) ?? -Infinity) < this.#config.lifecycle.activityWriteMs) return;
    if (!this.#grants.can('patch', 'pods')) return;
    this.#written.set(id, now);
    this.#writer.annotate(id, { [ANNOTATION_LAST_ACTIVITY]: new Date(now).toISOString() }).catch((err: unknown) => {
      this.#written.delete(id);
      if (!(err instanceof HttpError && err.code === 'sandbox_not_found'))
        this.#log.warn({ sandbox_id: id, err }, 'could not record sandbox activity');
    });
  }

  /**
   * Extends a sandbox's life in one PATCH: records activity now and, with a TTL, moves its expiry; with
   * a lease, holds off its suspension until then (0 ends one). Answers the time written to the pod (its
   * last-activity annotation), or undefined when kept in memory only (no `patch` on pods: lost on a restart).
   */
  async keepalive(id: string, ttlSeconds: number | undefined, leaseSeconds?: number): Promise<number | undefined> {
    const now = this.#now();
    const ttl = ttlSeconds ?? (this.#config.lifecycle.ttlMs > 0 ? this.#config.lifecycle.ttlMs / 1000 : undefined);
    if (!this.#grants.can('patch', 'pods')) {
      this.#touched.set(id, now);
      if (leaseSeconds !== undefined) this.#leases.set(id, now + leaseSeconds * 1000);
      if (ttl !== undefined) this.#expiries.set(id, now + ttl * 1000);
      return undefined;
    }
    const annotations: Record<string, string> = { [ANNOTATION_LAST_ACTIVITY]: new Date(now).toISOString() };
    if (ttl !== undefined) annotations[ANNOTATION_EXPIRES_AT] = new Date(now + ttl * 1000).toISOString();
    // A lease of 0 ends one: the time written is now.
    if (leaseSeconds !== undefined) annotations[ANNOTATION_LEASE_UNTIL] = new Date(now + leaseSeconds * 1000).toISOString();
    await this.#writer.annotate(id, annotations);
    this.#persisted(id, now);
    this.#expiries.delete(id);
    return now;
  }

  /** When a sandbox expires: a move kept in memory (keepalive without `patch`), else its pod's annotation. */
  expiresAt(record: SandboxRecord): number | undefined {
    return this.#expiries.get(record.sandboxId) ?? record.expiresAt;
  }

  /** Until when a lease holds off suspension: the pod's annotation, or one kept in memory (no `patch`). */
  leaseUntil(record: SandboxRecord): number | undefined {
    return this.#leases.get(record.sandboxId) ?? record.leaseUntil;
  }

  /** The latest activity known for a sandbox: this process's memory, the pod annotation, or its creation. */
  lastActivity(record: SandboxRecord): number {
    return Math.max(this.#touched.get(record.sandboxId) ?? -Infinity, record.lastActivity ?? -Infinity, record.createdAt);
  }

  /** Activity at `at` that the pod already records (its creation, or a keepalive just written). */
  #persisted(id: string, at: number): void {
    this.#touched.set(id, at);
    this.#written.set(id, at);
  }
}
