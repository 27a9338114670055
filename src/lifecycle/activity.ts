// Last activity per sandbox (an API touch or a proxied request). Kept in memory, and written to the pod
// as an annotation at most once per ACTIVITY_WRITE_INTERVAL_SECONDS, so it survives restarts and is
// shared by replicas (each reads it back through the watch).

import type { Config } from '../config.ts';
import type { KubeClient } from '../kube.ts';
import type { Logger } from '../log.ts';
import { isNotFound } from '../provisioner/k8s-errors.ts';
import type { SandboxRecord } from '../watch/sandbox-view.ts';
import { ANNOTATION_LAST_ACTIVITY, podName } from '../watch/sandbox.ts';

export class Activity {
  #config: Config;
  #kube: KubeClient;
  #log: Logger;
  #now: () => number;
  #touched = new Map<string, number>();
  #written = new Map<string, number>();
  #base: string;

  constructor(deps: { config: Config; kube: KubeClient; log: Logger; now: () => number }) {
    this.#config = deps.config;
    this.#kube = deps.kube;
    this.#log = deps.log;
    this.#now = deps.now;
    this.#base = `/api/v1/namespaces/${encodeURIComponent(deps.config.namespace)}/pods`;
  }

  /** Records activity now; persists it when the last write is older than the write interval. */
  touch(id: string): void {
    const now = this.#now();
    this.#touched.set(id, now);
    if (now - (this.#written.get(id) ?? -Infinity) < this.#config.lifecycle.activityWriteMs) return;
    this.#written.set(id, now);
    void this.persist(id, now);
  }

  /** A new sandbox: its creation time is its first activity, so nothing needs writing yet. */
  created(id: string): void {
    const now = this.#now();
    this.#touched.set(id, now);
    this.#written.set(id, now);
  }

  async persist(id: string, at: number): Promise<void> {
    try {
      await this.#kube.request('PATCH', `${this.#base}/${podName(id)}`, {
        body: { metadata: { annotations: { [ANNOTATION_LAST_ACTIVITY]: new Date(at).toISOString() } } },
        contentType: 'application/merge-patch+json',
      });
    } catch (err) {
      this.#written.delete(id);
      if (!isNotFound(err)) this.#log.warn({ sandbox_id: id, err: String(err) }, 'could not record sandbox activity');
    }
  }

  /** The latest activity known for a sandbox: this process's memory, the pod annotation, or its creation. */
  last(record: SandboxRecord): number {
    return Math.max(this.#touched.get(record.sandboxId) ?? -Infinity, record.lastActivity ?? -Infinity, record.createdAt);
  }

  forget(id: string): void {
    this.#touched.delete(id);
    this.#written.delete(id);
  }
}
