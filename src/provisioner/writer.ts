// The one writer to the Kubernetes API: every create, delete, patch and dry run of a sandbox object (and
// of the namespace) goes through this class. Reads come from the watch view. It only writes: what to
// write and when (activity, expiry, orphans) is decided by its callers; the limits (limits.ts), the
// namespace (namespace.ts) and what the identity may do (permissions.ts) live beside it.

import type { Config } from '../config.ts';
import { settled, type SandboxRecord } from '../domain/record.ts';
import type { HttpRoute, PodJson, ServiceJson } from '../domain/wire.ts';
import {
  ANNOTATION_EXPIRES_AT,
  ANNOTATION_REQUEST,
  ANNOTATION_SUSPENDED_AT,
  ANNOTATION_WOKE_FROM,
  ANNOTATION_WOKEN_BY,
  podName,
  podPath,
  podsPath,
  routeName,
  routePath,
  routesPath,
  serviceName,
  servicePath,
  servicesPath,
} from '../domain/sandbox.ts';
import type { Capabilities } from '../http/capability.ts';
import { HttpError, sandboxNotFound } from '../http/errors.ts';
import type { Kube } from '../kube/client.ts';
import { DELETE_IN_BACKGROUND, isAlreadyExists, isConflict, isNotFound } from '../kube/errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../observe/metrics.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import { Gate } from './gate.ts';
import { fromKube, type KubeTarget } from './kube-refusals.ts';
import { Limits } from './limits.ts';
import { SandboxNamespace } from './namespace.ts';
import { Grants } from './permissions.ts';
import { buildPod, buildRoute, buildService, suspendedRoute } from './pod-spec.ts';
import { storedRequest } from './stored-request.ts';
import type { SandboxRequest } from '../domain/request.ts';

/** What woke a suspended sandbox (its pod's ANNOTATION_WOKEN_BY, the wakes metric's label). */
export const WAKE_TRIGGERS = ['create', 'status', 'wait', 'proxy', 'resume', 'reconcile'] as const;
export type WakeTrigger = (typeof WAKE_TRIGGERS)[number];

/**
 * Called before a create or a wake makes a pod (the active-sandbox limits, which may suspend an idle
 * sandbox to make room); throws the refusal.
 */
export type Admission = (req: { sandboxId: string; userId: string }) => Promise<void>;

export type WriterDeps = {
  config: Config;
  kube: Kube;
  view: SandboxView;
  log: Logger;
  now?: () => number;
  gate?: Gate;
  /** Gateway mode: signs the capability each route's path carries. */
  capabilities?: Capabilities;
  /** What this identity may do (the service owner reference needs patch on services). */
  grants?: Grants;
  /** The namespace, made again when a create finds it gone. */
  namespace?: SandboxNamespace;
  /** Wakes counted by what woke them. */
  metrics?: Pick<Metrics, 'wakes'>;
};

const MERGE_PATCH = 'application/merge-patch+json';
/** How long a create waits for this replica's view to hold what it wrote (the watch lags by milliseconds). */
const HOLD_MS = 2000;
const deleting = (id: string): HttpError =>
  new HttpError('conflict', `Sandbox '${id}' is still being deleted; retry shortly`, { headers: { 'retry-after': '2' } });

export class SandboxWriter {
  #config: Config;
  #kube: Kube;
  #view: SandboxView;
  #log: Logger;
  #now: () => number;
  #gate: Gate;
  #ns: string;
  #inflight = new Map<string, Promise<{ podUid: string | undefined; madePod: boolean }>>();
  #grants: Grants;
  #namespace: SandboxNamespace;
  #limits: Limits;
  #capabilities: Capabilities | undefined;
  /** Suspends and wakes in flight, by id: one at a time per sandbox; identical wakes share one. */
  #transitions = new Map<string, { kind: 'suspend' | 'wake'; done: Promise<unknown> }>();
  #wakeGate: Gate;
  #admission: Admission = () => Promise.resolve();
  #metrics: Pick<Metrics, 'wakes'> | undefined;

  constructor(deps: WriterDeps) {
    this.#config = deps.config;
    this.#kube = deps.kube;
    this.#view = deps.view;
    this.#log = deps.log;
    this.#now = deps.now ?? Date.now;
    const l = deps.config.limits;
    this.#gate = deps.gate ?? new Gate(l.maxConcurrentCreates, l.queueSize, l.queueTimeoutMs);
    this.#ns = deps.config.namespace;
    this.#capabilities = deps.capabilities;
    this.#grants = deps.grants ?? new Grants();
    this.#namespace = deps.namespace ?? new SandboxNamespace(deps);
    this.#limits = new Limits(l, deps.view);
    this.#metrics = deps.metrics;
    this.#wakeGate = new Gate(deps.config.suspend.maxConcurrentWakes, l.queueSize, l.queueTimeoutMs);
  }

  /** The check every new pod passes first (set once the parts it needs exist). */
  set admission(admit: Admission) {
    this.#admission = admit;
  }

  /** True while this process is creating, suspending or waking that sandbox (the reconciler leaves it alone). */
  busy(id: string): boolean {
    return this.#inflight.has(id) || this.#transitions.has(id);
  }

  // ---- create ----

  /**
   * Creates the pod and the service of a sandbox, or finds the existing one (created=false), and
   * answers with the sandbox as this replica's view holds it: one record, from the view, after one
   * wait, for every object of the sandbox and, when `wait.ms` is given, until it settles (`?wait=`).
   * Concurrent identical creates in this process share one attempt; across processes, the API server's
   * AlreadyExists makes the loser adopt the winner's objects. A sandbox missing one half (a crash of
   * an earlier create) is completed.
   */
  async create(
    req: SandboxRequest,
    wait: { ms: number; signal?: AbortSignal } = { ms: 0 },
  ): Promise<{ created: boolean; record: SandboxRecord }> {
    const id = req.sandboxId;
    const { created, podUid } = await this.#attempt(req);
    // Read-your-writes: the watch lags the API by about a millisecond; a status query or event stream
    // right after the create must find every object.
    const holds = (r: SandboxRecord | undefined): boolean =>
      r !== undefined && (podUid === undefined || r.podUid === podUid) && this.#whole(r);
    const seen = await this.#view.waitFor(id, (r) => holds(r) && (wait.ms <= 0 || settled(r)), Math.max(wait.ms, HOLD_MS), wait.signal);
    if (seen && holds(seen)) return { created, record: seen };
    if (seen?.hasService && this.#config.sandbox.serviceType === 'NodePort' && seen.nodePort === undefined)
      throw new HttpError('create_timeout', `Kubernetes did not allocate a node port for ${serviceName(id)} in time`);
    // The pod is in the view but not every object is (a route adopted from an earlier pod of this id
    // that the garbage collector then removed): its status says what is missing; the reconciler mends it.
    if (seen && (podUid === undefined || seen.podUid === podUid)) return { created, record: seen };
    throw new HttpError('create_timeout', `Sandbox '${id}' was created, but this replica's watch has not shown it yet; GET it shortly`, {
      headers: { 'retry-after': '1' },
    });
  }

  /** Every object of a sandbox is there: pod, service (with its node port), and route in gateway mode. */
  #whole(r: SandboxRecord): boolean {
    const reachable = this.#config.sandbox.serviceType !== 'NodePort' || r.nodePort !== undefined;
    return r.hasPod && r.hasService && !r.deleting && reachable && (!this.#config.gateway || r.hasRoute);
  }

  /** One attempt per id at a time; none when the view already holds the whole sandbox. */
  async #attempt(req: SandboxRequest): Promise<{ created: boolean; podUid: string | undefined }> {
    const id = req.sandboxId;
    const running = this.#inflight.get(id);
    if (running) return { created: false, podUid: (await running).podUid };
    const existing = this.#view.get(id);
    if (existing?.suspension) return { created: false, podUid: (await this.wake(id, 'create')).podUid };
    if (existing && this.#whole(existing)) return { created: false, podUid: existing.podUid };
    this.#limits.check(req, this.#inflight.size);
    const attempt = this.#gate.run(() => this.#create(req));
    this.#inflight.set(id, attempt);
    try {
      const { podUid, madePod } = await attempt;
      return { created: madePod, podUid };
    } finally {
      this.#inflight.delete(id);
    }
  }

  /** Writes what is missing of a sandbox (a sandbox still being deleted is waited out first). */
  async #create(req: SandboxRequest): Promise<{ podUid: string | undefined; madePod: boolean }> {
    const id = req.sandboxId;
    const deadline = Date.now() + this.#config.createTimeoutMs;
    // A sandbox still being deleted is waited out (delete then create of one id is a normal pattern).
    if (this.#view.get(id)?.deleting) {
      await this.#view.waitFor(id, (r) => r === undefined || !r.deleting, deadline - Date.now());
      if (this.#view.get(id)?.deleting) throw deleting(id);
    }
    if (!this.#view.get(id)?.hasPod) await this.#admission(req);
    const { pod, madePod, service } = await this.#createPodAndService(req).catch(async (err: unknown) => {
      if (!(err instanceof HttpError) || err.code !== 'namespace_missing') throw err;
      await this.#namespace.restore(err);
      return this.#createPodAndService(req);
    });
    const podUid = pod.metadata?.uid;
    if (this.#config.gateway)
      await this.#createRoute(id, podUid, service.metadata?.uid, madePod ? [podPath(this.#ns, id), podName(id)] : undefined);
    this.#log.info({ sandbox_id: id, thread_id: req.threadId, created: madePod }, 'sandbox created');
    return { podUid, madePod };
  }

  /**
   * Pod and service are created at once (a create costs the slower of the two, not their sum). If one
   * is refused, the other is removed if this call made it, and the answer names the refused one.
   */
  async #createPodAndService(req: SandboxRequest): Promise<{ pod: PodJson; madePod: boolean; service: ServiceJson }> {
    const id = req.sandboxId;
    const [podResult, serviceResult] = await Promise.allSettled([
      this.#createOrRead<PodJson>(
        podsPath(this.#ns),
        buildPod(this.#config, req, this.#now(), this.#capabilities?.fingerprint),
        podName(id),
        'pod',
      ),
      this.#createOrRead<ServiceJson>(servicesPath(this.#ns), buildService(this.#config, id, undefined, req), serviceName(id), 'service'),
    ]);
    if (podResult.status === 'rejected' || serviceResult.status === 'rejected') {
      const answer = (podResult.status === 'rejected' ? podResult.reason : (serviceResult as PromiseRejectedResult).reason) as HttpError;
      if (podResult.status === 'fulfilled' && podResult.value.made)
        await this.#rollback(podPath(this.#ns, id), podName(id), answer.message);
      if (serviceResult.status === 'fulfilled' && serviceResult.value.made)
        await this.#rollback(servicePath(this.#ns, id), serviceName(id), answer.message);
      throw answer;
    }
    const pod = podResult.value.object;
    if (pod.metadata?.deletionTimestamp) throw deleting(id);
    // The service is owned by its pod, so the garbage collector removes it with the pod. Set after both
    // exist (the pod's uid is known only then), off the answer's path; the reconciler covers a crash here.
    if (serviceResult.value.made) void this.setOwner(id, pod.metadata?.uid);
    return { pod, madePod: podResult.value.made, service: serviceResult.value.object };
  }

  /**
   * Gateway mode: the sandbox's HTTPRoute, on the path of its capability (bound to the pod's uid) and
   * owned by the pod. A route left by an earlier pod of this id is brought to this pod. A refused route
   * removes the pod (when this call made it; the service goes with it) and answers the refusal.
   */
  async #createRoute(
    id: string,
    podUid: string | undefined,
    serviceUid: string | undefined,
    madePod: [string, string] | undefined,
  ): Promise<HttpRoute> {
    const gateway = this.#config.gateway;
    if (!gateway || !podUid || !serviceUid || !this.#capabilities)
      throw new HttpError('internal_error', `Sandbox '${id}': no pod or service uid for its route`);
    const body = buildRoute(this.#config, id, this.#capabilities.sign(id, serviceUid), { name: podName(id), uid: podUid });
    try {
      const { object, made } = await this.#createOrRead<HttpRoute>(routesPath(this.#ns), body, routeName(id), 'route');
      if (made || object.metadata?.ownerReferences?.[0]?.uid === podUid) return object;
      const patched = await this.#kube.request('PATCH', routePath(this.#ns, id), {
        body: { metadata: { ownerReferences: body.metadata?.ownerReferences }, spec: body.spec },
        contentType: MERGE_PATCH,
      });
      return patched.body as HttpRoute;
    } catch (err) {
      const answer = fromKube(err, 'route', `create route ${routeName(id)}`);
      if (madePod) {
        await this.#rollback(madePod[0], madePod[1], answer.message);
        await this.#rollback(servicePath(this.#ns, id), serviceName(id), answer.message);
      }
      throw answer;
    }
  }

  /** Gateway mode: the route of a sandbox whose pod and service exist (the reconciler mends a crash between them). */
  async ensureRoute(id: string, podUid: string, serviceUid: string | undefined): Promise<boolean> {
    try {
      await this.#createRoute(id, podUid, serviceUid, undefined);
      return true;
    } catch (err) {
      this.#log.warn({ sandbox_id: id, err }, 'could not create the sandbox route (the reconciler will retry)');
      return false;
    }
  }

  /** Creates an object, or reads the existing one on AlreadyExists (another request or replica made it). */
  async #createOrRead<T>(collection: string, body: object, name: string, target: KubeTarget): Promise<{ object: T; made: boolean }> {
    try {
      return { object: (await this.#kube.request('POST', collection, { body })).body as T, made: true };
    } catch (err) {
      if (!isAlreadyExists(err)) throw fromKube(err, target, `create ${target} ${name}`);
    }
    try {
      return { object: (await this.#kube.request('GET', `${collection}/${name}`)).body as T, made: false };
    } catch (err) {
      throw fromKube(err, target, `read ${target} ${name}`);
    }
  }

  async #rollback(path: string, name: string, why: string): Promise<void> {
    try {
      await this.#kube.request('DELETE', path, { body: DELETE_IN_BACKGROUND });
      this.#log.warn({ object: name }, `removed ${name}: the other half of its sandbox was refused: ${why}`);
    } catch (err) {
      if (!isNotFound(err))
        this.#log.error(
          { object: name, err },
          `could not remove ${name} after the other half of its sandbox was refused; the reconciler will`,
        );
    }
  }

  /** Makes the service owned by its pod (ownerReference), so the garbage collector removes it with the pod; true when set. */
  /**
   * Makes a sandbox's Service a NodePort one (the API server gives it a node port): a sandbox made under
   * another URL mode (a ClusterIP Service) gets an address in nodeport mode.
   */
  async makeNodePort(id: string): Promise<boolean> {
    if (!this.#grants.can('patch', 'services')) return false;
    try {
      await this.#kube.request('PATCH', servicePath(this.#ns, id), { body: { spec: { type: 'NodePort' } }, contentType: MERGE_PATCH });
      return true;
    } catch (err) {
      if (!isNotFound(err))
        this.#log.warn({ sandbox_id: id, err }, 'could not make the service a NodePort one (the reconciler will retry)');
      return false;
    }
  }

  async setOwner(id: string, podUid: string | undefined): Promise<boolean> {
    if (!podUid || !this.#grants.can('patch', 'services')) return false;
    const ownerReferences = [{ apiVersion: 'v1', kind: 'Pod', name: podName(id), uid: podUid, blockOwnerDeletion: false }];
    try {
      await this.#kube.request('PATCH', servicePath(this.#ns, id), { body: { metadata: { ownerReferences } }, contentType: MERGE_PATCH });
      return true;
    } catch (err) {
      if (!isNotFound(err))
        this.#log.warn({ sandbox_id: id, err }, 'could not set the service owner reference (the reconciler will retry)');
      return false;
    }
  }

  // ---- delete ----

  /** Deletes the service and the pod; true when something was deleted. A missing sandbox is not an error (the reference answers 200). */
  async delete(id: string): Promise<boolean> {
    const options = { body: DELETE_IN_BACKGROUND };
    const targets = ['service', 'pod', ...(this.#config.gateway ? (['route'] as const) : [])] as const;
    const paths = { service: servicePath(this.#ns, id), pod: podPath(this.#ns, id), route: routePath(this.#ns, id) };
    const results = await Promise.allSettled(targets.map((t) => this.#kube.request('DELETE', paths[t], options)));
    for (const [i, r] of results.entries()) {
      if (r.status === 'rejected' && !isNotFound(r.reason))
        throw fromKube(r.reason, targets[i] ?? 'sandbox', `delete ${targets[i]} of sandbox ${id}`);
    }
    const deleted = results.some((r) => r.status === 'fulfilled');
    if (deleted) this.#log.info({ sandbox_id: id }, 'sandbox deleted');
    return deleted;
  }

  // ---- suspend and wake ----

  /**
   * Suspends a sandbox: its Service says so (ANNOTATION_SUSPENDED_AT) and no longer belongs to the pod
   * (in gateway mode its route neither, pointed at GATEWAY_WAKE_BACKEND), then the pod is deleted. Each
   * step is a precondition of the next: the Service patch carries the resourceVersion seen, so of two
   * replicas suspending at once one does it; a crash between them leaves a Service that says suspended
   * beside a pod not made by a wake, which the reconciler finishes. With `podUid`, only that pod. True
   * when this call suspended it.
   */
  suspend(id: string, podUid?: string): Promise<boolean> {
    return this.#exclusive(id, 'suspend', () => this.#suspend(id, podUid));
  }

  async #suspend(id: string, podUid: string | undefined): Promise<boolean> {
    const r = this.#view.get(id);
    if (!r?.hasPod || r.deleting) {
      if (r?.suspension === 'suspended') return false;
      throw sandboxNotFound(id);
    }
    if (!r.resumable) storedRequest(id, undefined); // throws not_resumable
    if (!r.hasService || r.podUid === undefined || (podUid !== undefined && r.podUid !== podUid)) return false;
    if (r.suspension !== 'suspending') {
      const annotations = { [ANNOTATION_SUSPENDED_AT]: new Date(this.#now()).toISOString() };
      try {
        await this.#kube.request('PATCH', servicePath(this.#ns, id), {
          body: { metadata: { resourceVersion: r.serviceResourceVersion, annotations, ownerReferences: null } },
          contentType: MERGE_PATCH,
        });
      } catch (err) {
        if (isConflict(err) || isNotFound(err)) return false; // changed meanwhile: another replica suspends or wakes it
        throw fromKube(err, 'service', `suspend sandbox ${id}`);
      }
      if (this.#config.gateway && r.hasRoute && r.serviceUid && this.#capabilities) {
        const route = suspendedRoute(this.#config, id, this.#capabilities.sign(id, r.serviceUid));
        await this.#kube
          .request('PATCH', routePath(this.#ns, id), {
            body: { metadata: { ownerReferences: null }, spec: route.spec },
            contentType: MERGE_PATCH,
          })
          .catch((err: unknown) => {
            if (!isNotFound(err)) throw fromKube(err, 'route', `suspend the route of sandbox ${id}`);
          });
      }
    }
    try {
      await this.#kube.request('DELETE', podPath(this.#ns, id), { body: { ...DELETE_IN_BACKGROUND, preconditions: { uid: r.podUid } } });
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw fromKube(err, 'pod', `delete pod ${podName(id)}`);
    }
    this.#log.info({ sandbox_id: id, pod_uid: r.podUid }, 'sandbox suspended');
    // Read-your-writes: a wake right after this (a request that raced it) must find it suspended.
    await this.#view.waitFor(id, (x) => x === undefined || x.suspension === 'suspended' || x.suspension === 'suspending', HOLD_MS);
    return true;
  }

  /**
   * Wakes a suspended sandbox: a new pod from the request its Service keeps (same mounts, capacity,
   * profile; marked with what woke it and the suspension it ends), then the Service owned by it and
   * awake again (and in gateway mode its route back to it). A pod refused by the API server answers the
   * refusal and leaves the sandbox suspended. Concurrent wakes of one id share one; a wake waits for a
   * suspend in progress. Answers the record once this replica's view holds the new pod.
   */
  async wake(id: string, by: WakeTrigger): Promise<SandboxRecord> {
    const r = this.#view.get(id);
    if (!r?.suspension) {
      if (!r) throw sandboxNotFound(id);
      return r;
    }
    return this.#exclusive(id, 'wake', () => this.#wakeGate.run(() => this.#wake(id, by)));
  }

  async #wake(id: string, by: WakeTrigger): Promise<SandboxRecord> {
    const deadline = Date.now() + this.#config.createTimeoutMs;
    let r = this.#view.get(id);
    if (r?.suspension === 'suspending') {
      // The suspend's pod goes first (a crash may have left it running).
      if (r.podUid && !r.deleting)
        await this.#kube
          .request('DELETE', podPath(this.#ns, id), { body: { ...DELETE_IN_BACKGROUND, preconditions: { uid: r.podUid } } })
          .catch((err: unknown) => {
            if (!isNotFound(err) && !isConflict(err)) throw fromKube(err, 'pod', `delete pod ${podName(id)}`);
          });
      r = await this.#view.waitFor(id, (x) => x?.suspension !== 'suspending', deadline - Date.now());
      if (r?.suspension === 'suspending') throw deleting(id);
    }
    if (!r?.suspension) {
      if (!r) throw sandboxNotFound(id);
      return r;
    }
    const svc = await this.#kube.request('GET', servicePath(this.#ns, id)).catch((err: unknown) => {
      throw isNotFound(err) ? sandboxNotFound(id) : fromKube(err, 'service', `read service ${serviceName(id)}`);
    });
    const meta = (svc.body as ServiceJson).metadata;
    const suspendedAs = meta?.annotations?.[ANNOTATION_SUSPENDED_AT];
    if (suspendedAs === undefined) return r; // woken meanwhile (another replica)
    const req = storedRequest(id, meta?.annotations?.[ANNOTATION_REQUEST]);
    const body = buildPod(this.#config, { ...req, ttlSeconds: undefined }, this.#now(), this.#capabilities?.fingerprint);
    const annotations = (body.metadata ??= {}).annotations ?? {};
    annotations[ANNOTATION_WOKEN_BY] = by;
    annotations[ANNOTATION_WOKE_FROM] = suspendedAs;
    // The sandbox's age runs from its first creation: a wake does not move a TTL.
    const created = meta?.creationTimestamp ? new Date(meta.creationTimestamp).getTime() : undefined;
    if (req.ttlSeconds && created) annotations[ANNOTATION_EXPIRES_AT] = new Date(created + req.ttlSeconds * 1000).toISOString();
    body.metadata.annotations = annotations;
    await this.#admission(req);
    const { object: pod } = await this.#createOrRead<PodJson>(podsPath(this.#ns), body, podName(id), 'pod');
    const podUid = pod.metadata?.uid;
    if (pod.metadata?.annotations?.[ANNOTATION_WOKE_FROM] !== suspendedAs || pod.metadata.deletionTimestamp) throw deleting(id);
    const ownerReferences = [{ apiVersion: 'v1', kind: 'Pod', name: podName(id), uid: podUid, blockOwnerDeletion: false }];
    await this.#kube
      .request('PATCH', servicePath(this.#ns, id), {
        body: { metadata: { annotations: { [ANNOTATION_SUSPENDED_AT]: null }, ownerReferences } },
        contentType: MERGE_PATCH,
      })
      .catch((err: unknown) => {
        throw fromKube(err, 'service', `wake sandbox ${id}`);
      });
    if (this.#config.gateway) await this.#createRoute(id, podUid, meta?.uid, undefined);
    this.#log.info({ sandbox_id: id, pod_uid: podUid, woken_by: by }, 'sandbox woken');
    this.#metrics?.wakes.inc({ trigger: by });
    const seen = await this.#view.waitFor(id, (x) => x !== undefined && x.podUid === podUid && !x.suspension, HOLD_MS);
    if (!seen) throw sandboxNotFound(id);
    return seen;
  }

  /** Runs one suspend or wake of a sandbox at a time; a wake asked while one runs shares it. */
  async #exclusive<T>(id: string, kind: 'suspend' | 'wake', fn: () => Promise<T>): Promise<T> {
    for (;;) {
      const running = this.#transitions.get(id);
      if (!running) break;
      if (running.kind === kind && kind === 'wake') return running.done as Promise<T>;
      await running.done.catch(() => undefined);
    }
    const done = fn();
    const entry = { kind, done };
    this.#transitions.set(id, entry);
    try {
      return await done;
    } finally {
      if (this.#transitions.get(id) === entry) this.#transitions.delete(id);
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
    const path = podPath(this.#ns, id);
    let resourceVersion = podResourceVersion;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#kube.request('DELETE', path, {
          body: { ...DELETE_IN_BACKGROUND, preconditions: { uid: podUid, ...(resourceVersion ? { resourceVersion } : {}) } },
        });
        break;
      } catch (err) {
        if (isNotFound(err)) return false;
        if (!isConflict(err) || attempt >= 3) throw fromKube(err, 'pod', `delete pod ${podName(id)}`);
      }
      const current = await this.#kube.request('GET', path).catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw fromKube(err, 'pod', `read pod ${podName(id)}`);
      });
      const meta = (current?.body as PodJson | undefined)?.metadata;
      if (!meta || meta.uid !== podUid || meta.deletionTimestamp) return false; // gone, replaced, or deleted by someone else
      resourceVersion = meta.resourceVersion;
    }
    await this.removeObject(id, 'service');
    return true;
  }

  /** Deletes one object of a sandbox (an orphan the reconciler found, an expired pod's service); true when it was there. */
  async removeObject(id: string, kind: 'pod' | 'service' | 'route'): Promise<boolean> {
    const path = kind === 'pod' ? podPath(this.#ns, id) : kind === 'service' ? servicePath(this.#ns, id) : routePath(this.#ns, id);
    try {
      await this.#kube.request('DELETE', path, { body: DELETE_IN_BACKGROUND });
      return true;
    } catch (err) {
      if (!isNotFound(err))
        this.#log.warn(
          { sandbox_id: id, object: kind, err },
          `could not delete the ${kind} of sandbox ${id}; the reconciler or the garbage collector will`,
        );
      return false;
    }
  }

  // ---- annotations ----

  /** Merges annotations into a sandbox's pod (activity, expiry); `sandbox_not_found` when the pod is gone. */
  async annotate(id: string, annotations: Record<string, string>): Promise<void> {
    try {
      await this.#kube.request('PATCH', podPath(this.#ns, id), { body: { metadata: { annotations } }, contentType: MERGE_PATCH });
    } catch (err) {
      if (isNotFound(err)) throw sandboxNotFound(id);
      throw fromKube(err, 'pod', `update pod ${podName(id)}`);
    }
  }

  // ---- the namespace and dry runs ----

  /** A server-side dry run (dryRun=All) of creating `body` in the sandbox namespace; throws the mapped refusal. */
  async dryRun(kind: 'pod' | 'service', body: object): Promise<void> {
    try {
      await this.#kube.request('POST', `${kind === 'pod' ? podsPath(this.#ns) : servicesPath(this.#ns)}?dryRun=All`, { body });
    } catch (err) {
      throw fromKube(err, kind, `create a sandbox ${kind} (dry run)`);
    }
  }
}
