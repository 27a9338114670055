// Sandbox lifecycle against the Kubernetes API: the only writer. Reads come from the watch view.

import type { V1Pod } from '@kubernetes/client-node';
import type { Config } from '../config.ts';
import { HttpError } from '../errors.ts';
import { DELETE_IN_BACKGROUND, KubeApiError, type KubeClient } from '../kube.ts';
import { Gate } from '../lifecycle/gate.ts';
import type { Logger } from '../log.ts';
import { joinRecord, type SandboxRecord, type SandboxView } from '../watch/sandbox-view.ts';
import { ANNOTATION_EXPIRES_AT, ANNOTATION_LAST_ACTIVITY, podName, serviceName, slimPod, slimService, STUCK_REASONS, type RawPod, type RawService } from '../watch/sandbox.ts';
import { fromKube, isAlreadyExists, isNotFound } from './k8s-errors.ts';
import { buildPod, buildService } from './pod-spec.ts';
import type { SandboxRequest } from './request.ts';

export type SandboxResponse = {
  sandbox_id: string;
  sandbox_url: string;
  status: string;
  thread_id: string | null;
  user_id: string | null;
  created_at: string | null;
  expires_at?: string;
  mount_contract_version: number;
  reason?: string;
  message?: string;
};

/** Running, finished, or stuck: a caller waiting for Running learns nothing more by waiting longer. */
export const settled = (r: SandboxRecord | undefined): boolean =>
  r !== undefined && (r.status === 'Running' || r.status === 'Succeeded' || r.status === 'Failed' || (r.reason !== undefined && STUCK_REASONS.has(r.reason)));

export type SandboxesDeps = { config: Config; kube: KubeClient; view: SandboxView; log: Logger; now?: () => number; gate?: Gate };

export class Sandboxes {
  #config: Config;
  #kube: KubeClient;
  #view: SandboxView;
  #log: Logger;
  #now: () => number;
  #gate: Gate;
  #inflight = new Map<string, Promise<SandboxRecord>>();
  #texts = new WeakMap<SandboxRecord, string>();
  #base: string;

  constructor(deps: SandboxesDeps) {
    this.#config = deps.config;
    this.#kube = deps.kube;
    this.#view = deps.view;
    this.#log = deps.log;
    this.#now = deps.now ?? Date.now;
    const l = deps.config.limits;
    this.#gate = deps.gate ?? new Gate(l.maxConcurrentCreates, l.queueSize, l.queueTimeoutMs);
    this.#base = `/api/v1/namespaces/${encodeURIComponent(deps.config.namespace)}`;
  }

  get view(): SandboxView {
    return this.#view;
  }

  /** True while this process is creating that sandbox (the reconciler leaves it alone). */
  busy(id: string): boolean {
    return this.#inflight.has(id);
  }

  /**
   * Creates the pod and the service of a sandbox, or returns the existing one (created=false).
   * Concurrent identical creates in this process share one attempt; across processes, the API server's
   * AlreadyExists makes the loser adopt the winner's objects. A sandbox missing one half (a crash of
   * an earlier create) is completed.
   */
  async create(req: SandboxRequest): Promise<{ created: boolean; record: SandboxRecord }> {
    const running = this.#inflight.get(req.sandboxId);
    if (running) return { created: false, record: await running };
    const existing = this.#view.get(req.sandboxId);
    const reachable = this.#config.sandbox.serviceType !== 'NodePort' || existing?.nodePort !== undefined;
    if (existing && existing.hasPod && existing.hasService && !existing.deleting && reachable) {
      return { created: false, record: existing };
    }
    this.#checkLimits(req);
    let created = false;
    const attempt = this.#gate.run(() => this.#create(req)).then(({ record, madePod }) => {
      created = madePod;
      return record;
    });
    this.#inflight.set(req.sandboxId, attempt);
    try {
      const record = await attempt;
      return { created, record };
    } finally {
      this.#inflight.delete(req.sandboxId);
    }
  }

  /** MAX_SANDBOXES and MAX_SANDBOXES_PER_THREAD, counted from the view plus the creates in flight. */
  #checkLimits(req: SandboxRequest): void {
    const { maxSandboxes, maxPerThread } = this.#config.limits;
    if (maxSandboxes > 0) {
      const n = this.#view.count((r) => !r.deleting) + this.#inflight.size;
      if (n >= maxSandboxes) {
        throw new HttpError('limit_reached', `The limit of ${maxSandboxes} sandboxes (MAX_SANDBOXES) is reached; delete one first`, { headers: { 'retry-after': '30' } });
      }
    }
    if (maxPerThread > 0 && this.#view.count((r) => !r.deleting && r.threadId === req.threadId) >= maxPerThread) {
      throw new HttpError('limit_reached', `Thread '${req.threadId}' already has ${maxPerThread} sandboxes (MAX_SANDBOXES_PER_THREAD)`, { headers: { 'retry-after': '30' } });
    }
  }

  async #create(req: SandboxRequest): Promise<{ record: SandboxRecord; madePod: boolean }> {
    const id = req.sandboxId;
    const deadline = Date.now() + this.#config.createTimeoutMs;
    // A sandbox still being deleted is waited out (delete then create of one id is a normal pattern).
    if (this.#view.get(id)?.deleting) {
      await this.#view.waitFor(id, (r) => r === undefined || !r.deleting, deadline - Date.now());
      if (this.#view.get(id)?.deleting) {
        throw new HttpError('conflict', `Sandbox '${id}' is still being deleted; retry shortly`, { headers: { 'retry-after': '2' } });
      }
    }
    // Pod and service are created at once (a create costs the slower of the two, not their sum). If one
    // is refused, the other is removed if this call made it, and the answer names the refused one.
    const [podResult, serviceResult] = await Promise.allSettled([
      this.#createOrAdopt<RawPod>('pods', buildPod(this.#config, req, this.#now()), podName(id), 'pod'),
      this.#createOrAdopt<RawService>('services', buildService(this.#config, id), serviceName(id), 'service'),
    ]);
    if (podResult.status === 'rejected' || serviceResult.status === 'rejected') {
      const answer = podResult.status === 'rejected' ? (podResult.reason as HttpError) : (serviceResult as PromiseRejectedResult).reason as HttpError;
      if (podResult.status === 'fulfilled' && podResult.value.made) await this.#rollback('pods', podName(id), answer.message);
      if (serviceResult.status === 'fulfilled' && serviceResult.value.made) await this.#rollback('services', serviceName(id), answer.message);
      throw answer;
    }
    const pod = podResult.value.object;
    const service = serviceResult.value.object;
    const madePod = podResult.value.made;
    if ((pod as V1Pod).metadata?.deletionTimestamp) {
      throw new HttpError('conflict', `Sandbox '${id}' is still being deleted; retry shortly`, { headers: { 'retry-after': '2' } });
    }
    // The service is owned by its pod, so the garbage collector removes it with the pod. Set after both
    // exist (the pod's uid is known only then), off the answer's path; the reconciler covers a crash here.
    if (serviceResult.value.made) void this.#adopt(id, (pod as V1Pod).metadata?.uid);
    const podFacts = slimPod(pod);
    let serviceFacts = slimService(service);
    if (this.#config.sandbox.serviceType === 'NodePort' && serviceFacts?.nodePort === undefined) {
      // The API server allocates node ports in the create call; this is only a safety net.
      const seen = await this.#view.waitFor(id, (r) => r?.nodePort !== undefined, deadline - Date.now());
      if (seen?.nodePort === undefined) throw new HttpError('create_timeout', `Kubernetes did not allocate a node port for ${serviceName(id)} in time`);
      serviceFacts = serviceFacts && { ...serviceFacts, nodePort: seen.nodePort };
    }
    const record = joinRecord(id, podFacts, serviceFacts);
    if (record === undefined) throw new HttpError('internal_error', `Sandbox '${id}' objects could not be read back`);
    this.#log.info({ sandbox_id: id, thread_id: req.threadId, created: madePod }, 'sandbox created');
    // Read-your-writes: answer once this replica's view holds both objects (the watch lags the API by
    // about a millisecond), so a status query or event stream right after the create finds the sandbox.
    await this.#view.waitFor(id, (r) => r !== undefined && r.podUid === record.podUid && r.hasService, Math.min(2000, Math.max(0, deadline - Date.now())));
    return { record: this.#fresher(record), madePod };
  }

  /** The view's record when it already knows a newer state of the same pod, else the given one. */
  #fresher(record: SandboxRecord): SandboxRecord {
    const seen = this.#view.get(record.sandboxId);
    return seen && seen.podUid === record.podUid && seen.hasService ? seen : record;
  }

  /** Creates an object, or reads the existing one on AlreadyExists (another request or replica made it). */
  async #createOrAdopt<T>(collection: string, body: object, name: string, target: 'pod' | 'service'): Promise<{ object: T; made: boolean }> {
    try {
      return { object: (await this.#kube.request('POST', `${this.#base}/${collection}`, { body })).body as T, made: true };
    } catch (err) {
      if (!isAlreadyExists(err)) throw fromKube(err, target, `create ${target} ${name}`);
      return { object: await this.#read<T>(collection, name, target), made: false };
    }
  }

  async #adopt(id: string, podUid: string | undefined): Promise<void> {
    if (!podUid) return;
    try {
      await this.#kube.request('PATCH', `${this.#base}/services/${serviceName(id)}`, {
        body: { metadata: { ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: podName(id), uid: podUid, blockOwnerDeletion: false }] } },
        contentType: 'application/merge-patch+json',
      });
    } catch (err) {
      if (!isNotFound(err)) this.#log.warn({ sandbox_id: id, err: String(err) }, 'could not set the service owner reference (the reconciler still removes orphans)');
    }
  }

  async #read<T>(collection: string, name: string, target: 'pod' | 'service'): Promise<T> {
    try {
      return (await this.#kube.request('GET', `${this.#base}/${collection}/${name}`)).body as T;
    } catch (err) {
      throw fromKube(err, target, `read ${target} ${name}`);
    }
  }

  async #rollback(collection: 'pods' | 'services', name: string, why: string): Promise<void> {
    try {
      await this.#kube.request('DELETE', `${this.#base}/${collection}/${name}`, { body: DELETE_IN_BACKGROUND });
      this.#log.warn({ object: name }, `removed ${name}: the other half of its sandbox was refused: ${why}`);
    } catch (err) {
      if (!isNotFound(err)) this.#log.error({ object: name, err: String(err) }, `could not remove ${name} after the other half of its sandbox was refused; the reconciler will`);
    }
  }

  /**
   * Deletes an expired sandbox only if its pod is still the one seen (uid and resourceVersion
   * preconditions). True when this call deleted it; false when someone else did, or it changed.
   */
  async expire(id: string, podUid: string, podResourceVersion: string | undefined): Promise<boolean> {
    // The resourceVersion precondition makes concurrent sweeps safe: the first delete changes the pod
    // (deletionTimestamp), so any other replica's delete conflicts. A conflict for another reason (the
    // pod's status moved on since the view saw it) is retried with the fresh version.
    let resourceVersion = podResourceVersion;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#kube.request('DELETE', `${this.#base}/pods/${podName(id)}`, {
          body: { ...DELETE_IN_BACKGROUND, preconditions: { uid: podUid, ...(resourceVersion ? { resourceVersion } : {}) } },
        });
        break;
      } catch (err) {
        if (isNotFound(err)) return false;
        if (!(err instanceof KubeApiError && err.status === 409) || attempt >= 3) throw fromKube(err, 'pod', `delete pod ${podName(id)}`);
      }
      const current = await this.#kube.request('GET', `${this.#base}/pods/${podName(id)}`).catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw fromKube(err, 'pod', `read pod ${podName(id)}`);
      });
      const meta = (current?.body as V1Pod | undefined)?.metadata;
      if (!meta || meta.uid !== podUid || meta.deletionTimestamp) return false; // gone, replaced, or deleted by someone else
      resourceVersion = meta.resourceVersion;
    }
    try {
      await this.#kube.request('DELETE', `${this.#base}/services/${serviceName(id)}`, { body: DELETE_IN_BACKGROUND });
    } catch (err) {
      if (!isNotFound(err)) this.#log.warn({ sandbox_id: id, err: String(err) }, 'expired sandbox: service not deleted (the garbage collector will, through its ownerReference)');
    }
    return true;
  }

  /** Extends a sandbox's life: records activity now and, with ttlSeconds, moves its expiry. */
  async keepalive(id: string, ttlSeconds: number | undefined): Promise<void> {
    const now = this.#now();
    const annotations: Record<string, string> = { [ANNOTATION_LAST_ACTIVITY]: new Date(now).toISOString() };
    const ttl = ttlSeconds ?? (this.#config.lifecycle.ttlMs > 0 ? this.#config.lifecycle.ttlMs / 1000 : undefined);
    if (ttl !== undefined) annotations[ANNOTATION_EXPIRES_AT] = new Date(now + ttl * 1000).toISOString();
    try {
      await this.#kube.request('PATCH', `${this.#base}/pods/${podName(id)}`, { body: { metadata: { annotations } }, contentType: 'application/merge-patch+json' });
    } catch (err) {
      if (isNotFound(err)) throw new HttpError('sandbox_not_found', `Sandbox '${id}' not found`);
      throw fromKube(err, 'pod', `update pod ${podName(id)}`);
    }
  }

  /** Deletes the service and the pod; true when something was deleted. A missing sandbox is not an error (the reference answers 200). */
  async delete(id: string): Promise<boolean> {
    const options = { body: DELETE_IN_BACKGROUND };
    const results = await Promise.allSettled([
      this.#kube.request('DELETE', `${this.#base}/services/${serviceName(id)}`, options),
      this.#kube.request('DELETE', `${this.#base}/pods/${podName(id)}`, options),
    ]);
    const targets = ['service', 'pod'] as const;
    for (const [i, r] of results.entries()) {
      if (r.status === 'rejected' && !isNotFound(r.reason)) {
        throw fromKube(r.reason, targets[i] ?? 'sandbox', `delete ${targets[i]} of sandbox ${id}`);
      }
    }
    const deleted = results.some((r) => r.status === 'fulfilled');
    if (deleted) this.#log.info({ sandbox_id: id }, 'sandbox deleted');
    return deleted;
  }

  /**
   * The sandbox's URL for the caller: the NodePort address (reference behaviour), the service's DNS name
   * (ClusterIP), or in proxy mode `<PUBLIC_URL>/sandboxes/<id>` — with PUBLIC_URL unset, the address
   * the caller itself used to reach this provisioner (`requestBase`).
   */
  url(record: SandboxRecord, requestBase?: string): string {
    if (this.#config.sandboxUrl.mode === 'proxy') {
      const base = this.#config.sandboxUrl.publicUrl ?? requestBase;
      if (base) return `${base}/sandboxes/${record.sandboxId}`;
    }
    if (record.nodePort !== undefined && this.#config.sandbox.serviceType === 'NodePort') return `http://${this.#config.nodeHost}:${record.nodePort}`;
    if (this.#config.sandbox.serviceType === 'ClusterIP' && record.hasService) {
      return `http://${serviceName(record.sandboxId)}.${this.#config.namespace}.svc.cluster.local:${this.#config.sandbox.port}`;
    }
    return '';
  }

  /**
   * The answer for a record, serialized. Records are immutable (a change makes a new one), so the text
   * is cached per record unless it depends on the caller's address (proxy mode without PUBLIC_URL).
   */
  responseText(record: SandboxRecord, requestBase?: string): string {
    const perCaller = this.#config.sandboxUrl.mode === 'proxy' && this.#config.sandboxUrl.publicUrl === undefined;
    if (perCaller) return JSON.stringify(this.response(record, requestBase));
    let text = this.#texts.get(record);
    if (text === undefined) {
      text = JSON.stringify(this.response(record));
      this.#texts.set(record, text);
    }
    return text;
  }

  response(record: SandboxRecord, requestBase?: string): SandboxResponse {
    return {
      sandbox_id: record.sandboxId,
      sandbox_url: this.url(record, requestBase),
      status: record.status,
      thread_id: record.threadId ?? null,
      user_id: record.userId ?? null,
      created_at: Number.isFinite(record.createdAt) ? new Date(record.createdAt).toISOString() : null,
      ...(record.expiresAt !== undefined ? { expires_at: new Date(record.expiresAt).toISOString() } : this.#config.lifecycle.ttlMs > 0 && Number.isFinite(record.createdAt) ? { expires_at: new Date(record.createdAt + this.#config.lifecycle.ttlMs).toISOString() } : {}),
      mount_contract_version: this.#config.mountContractVersion,
      ...(record.reason ? { reason: record.reason } : {}),
      ...(record.message ? { message: record.message } : {}),
    };
  }
}

