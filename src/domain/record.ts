// The slim facts kept per sandbox (never whole Kubernetes objects), the one pure function that derives
// the documented status from them, and the joined record every reader (API, proxy, sweeps) works from.

import type { V1ContainerStatus, V1PodCondition } from '@kubernetes/client-node';
import {
  ANNOTATION_EXPIRES_AT,
  ANNOTATION_SIGNER,
  ANNOTATION_LAST_ACTIVITY,
  ANNOTATION_THREAD_ID,
  ANNOTATION_USER_ID,
  ANNOTATION_LEASE_UNTIL,
  ANNOTATION_REQUEST,
  ANNOTATION_SUSPENDED_AT,
  ANNOTATION_WOKE_FROM,
  ANNOTATION_WOKEN_BY,
  LABEL_SANDBOX_ID,
  podName,
  routeName,
  SANDBOX_CONTAINER,
  serviceName,
  DEFAULT_SHELL_SESSIONS,
  LARK_BROKER_CONTAINER,
  LARK_CREDENTIAL_ROOTS,
  LARK_SHIM_CONTAINER,
  MAX_SHELL_SESSIONS_ENV,
  type ParentRef,
  type SandboxStatus,
} from './sandbox.ts';
import type { EventJson, HttpRoute, PodJson, ServiceJson, Wire, WireMeta } from './wire.ts';

export type PodFacts = {
  sandboxId: string;
  uid: string;
  resourceVersion: string;
  threadId: string | undefined;
  userId: string | undefined;
  phase: string;
  /** Ready condition: True, False, or Unknown (node lost). */
  ready: 'True' | 'False' | 'Unknown';
  podIP: string | undefined;
  createdAt: number;
  deleting: boolean;
  reason: string | undefined;
  message: string | undefined;
  transitionAt: number | undefined;
  lastActivity: number | undefined;
  expiresAt: number | undefined;
  /** The fingerprint of the signing key of the provisioner that made it (ANNOTATION_SIGNER). */
  signer: string | undefined;
  /** Startup: when the pod was scheduled, its sandbox container started, and it turned Ready (API server clock, whole seconds). */
  scheduledAt: number | undefined;
  startedAt: number | undefined;
  readyAt: number | undefined;
  /** The sandbox container's MAX_SHELL_SESSIONS (10 when unset; 0 when it is not a positive integer: no capacity known). */
  shellCapacity: number;
  /** The Lark broker attestation (DeerFlow 2.1): sidecar and shim both there and no credentials in the sandbox; false: neither; null: contradictory. */
  larkBroker: boolean | null;
  /** A pod made by a wake: what woke it, and the Service's suspended-at it woke from. */
  wokenBy: string | undefined;
  wokeFrom: string | undefined;
  /** A lease (a run under way) holds off suspension until then. */
  leaseUntil: number | undefined;
};

/**
 * What kubelet's events say of a pod's images (events of its containers: Pulling, then Pulled): an
 * image still being pulled (with kubelet's message), and when the last one was ready.
 */
export type ImageFacts = { podUid: string; pulling: string | undefined; readyAt: number | undefined };

export type ServiceFacts = {
  sandboxId: string;
  uid: string;
  resourceVersion: string;
  nodePort: number | undefined;
  clusterIP: string | undefined;
  /** The uid of the pod that owns the service (ownerReference), if any. */
  ownerUid: string | undefined;
  createdAt: number;
  deleting: boolean;
  /** The Service carries the request its pods are made from: the sandbox can be suspended and woken. */
  resumable: boolean;
  /** When it was suspended (ANNOTATION_SUSPENDED_AT), as written (a waking pod names it) and as a time. */
  suspendedAs: string | undefined;
  suspendedAt: number | undefined;
  threadId: string | undefined;
  userId: string | undefined;
};

export type Derived = { status: SandboxStatus; reason: string | undefined; message: string | undefined };

/**
 * Reasons after which waiting for Running is pointless without a change by someone. Not PodMissing: pod
 * and service are created at once, so the watch may see the service a moment before the pod.
 */
/** kubelet's pod reason for an eviction (node pressure, or over the pod's ephemeral-storage limit). */
const EVICTED = 'Evicted';

export const STUCK_REASONS = new Set([
  'CrashLoopBackOff',
  'ImagePullBackOff',
  'ErrImagePull',
  'InvalidImageName',
  'CreateContainerConfigError',
  'CreateContainerError',
  'Unschedulable',
]);

/**
 * The documented status of a sandbox from its pod and service.
 * - Running means Ready (readiness probe passing), not merely phase Running.
 * - A pod being deleted: Terminating (DeerFlow 2.1's word; its clients read any status but Running as not alive).
 * - A node lost (Ready=Unknown), or a pod gone while its service stays: Unknown.
 * - A container waiting (crash loop, image pull) or a pod that cannot be scheduled: Pending + reason.
 * - A service gone while the pod stays: the pod's status, reason ServiceMissing (not reachable).
 */
export function deriveStatus(pod: PodFacts | undefined, service: ServiceFacts | undefined): Derived {
  if (pod === undefined) {
    if (service?.deleting) return { status: 'Terminating', reason: 'Terminating', message: 'the sandbox is being deleted' };
    return { status: 'Unknown', reason: 'PodMissing', message: 'the sandbox pod does not exist' };
  }
  if (pod.deleting) return { status: 'Terminating', reason: 'Terminating', message: 'the sandbox is being deleted' };
  if (pod.ready === 'Unknown' || pod.phase === 'Unknown') {
    return { status: 'Unknown', reason: pod.reason ?? 'NodeLost', message: pod.message ?? 'the node running the sandbox is not reporting' };
  }
  let derived: Derived;
  switch (pod.phase) {
    case 'Succeeded':
    case 'Failed':
      // An evicted pod whose app exited 0 on the kubelet's SIGTERM ends Succeeded (a real kubelet's
      // finding): it did not succeed, it was evicted.
      derived = { status: pod.reason === EVICTED ? 'Failed' : pod.phase, reason: pod.reason, message: pod.message };
      break;
    case 'Running':
      derived =
        pod.ready === 'True'
          ? { status: 'Running', reason: undefined, message: undefined }
          : { status: 'Pending', reason: pod.reason ?? 'ContainersNotReady', message: pod.message };
      break;
    default:
      derived = { status: 'Pending', reason: pod.reason, message: pod.message };
  }
  if (service === undefined || service.deleting) {
    return { ...derived, reason: derived.reason ?? 'ServiceMissing', message: derived.message ?? 'the sandbox service does not exist' };
  }
  return derived;
}

// ---- slimming API objects (list items, watch events) ----

type ContainerStatus = Wire<V1ContainerStatus>;
type Condition = Wire<V1PodCondition>;

const time = (t: string | null | undefined): number | undefined => (t === undefined || t === null ? undefined : new Date(t).getTime());

function containerReason(statuses: ContainerStatus[] | undefined): { reason?: string; message?: string } | undefined {
  for (const s of statuses ?? []) {
    if (s.state?.waiting?.reason && s.state.waiting.reason !== 'ContainerCreating' && s.state.waiting.reason !== 'PodInitializing') {
      const last = s.lastState?.terminated?.reason;
      const reason = s.state.waiting.reason;
      return {
        reason,
        message: [s.state.waiting.message, last ? `last termination: ${last}` : undefined].filter(Boolean).join('; ') || undefined,
      };
    }
    if (s.state?.terminated?.reason) return { reason: s.state.terminated.reason, message: s.state.terminated.message };
  }
  for (const s of statuses ?? []) {
    if (s.state?.waiting?.reason) return { reason: s.state.waiting.reason, message: s.state.waiting.message };
  }
  return undefined;
}

/** The id a sandbox object belongs to, or undefined when its name does not match its label. */
export function sandboxIdOf(meta: WireMeta | undefined, kind: 'pod' | 'service' | 'route'): string | undefined {
  const id = meta?.labels?.[LABEL_SANDBOX_ID];
  if (id === undefined || meta?.name === undefined) return undefined;
  return meta.name === (kind === 'pod' ? podName(id) : kind === 'service' ? serviceName(id) : routeName(id)) ? id : undefined;
}

type RouteCondition = { reason?: string | undefined; message?: string | undefined };

/**
 * A sandbox's HTTPRoute (gateway mode) as its parent Gateways answered it: accepted when every parent
 * says Accepted and ResolvedRefs; refused with the gateway's reason and message when one says False;
 * pending while a parent has not answered.
 */
export type RouteFacts = {
  sandboxId: string;
  uid: string;
  resourceVersion: string;
  ownerUid: string | undefined;
  createdAt: number;
  state: 'accepted' | 'refused' | 'pending';
  reason: string | undefined;
  message: string | undefined;
};

export function slimRoute(route: HttpRoute, parents: readonly ParentRef[]): RouteFacts | undefined {
  const meta = route.metadata;
  const sandboxId = sandboxIdOf(meta, 'route');
  if (sandboxId === undefined || meta === undefined) return undefined;
  let state: RouteFacts['state'] = 'accepted';
  let why: RouteCondition | undefined;
  for (const parent of parents) {
    const answer = route.status?.parents?.find(
      (p) =>
        p.parentRef?.name === parent.name &&
        (p.parentRef.namespace ?? meta.namespace) === parent.namespace &&
        (parent.sectionName === undefined || p.parentRef.sectionName === parent.sectionName),
    );
    const refused = answer?.conditions?.find((c) => (c.type === 'Accepted' || c.type === 'ResolvedRefs') && c.status === 'False');
    if (refused) {
      state = 'refused';
      why = {
        reason: refused.reason,
        message:
          refused.message ||
          `Gateway ${parent.namespace}/${parent.name} refused the sandbox's HTTPRoute (${refused.type} ${refused.reason ?? ''})`.trim(),
      };
      break;
    }
    const ok = ['Accepted', 'ResolvedRefs'].every((t) => answer?.conditions?.some((c) => c.type === t && c.status === 'True'));
    if (!ok && state === 'accepted') {
      state = 'pending';
      why = { reason: 'RoutePending', message: `waiting for Gateway ${parent.namespace}/${parent.name} to accept the sandbox's HTTPRoute` };
    }
  }
  return {
    sandboxId,
    uid: meta.uid ?? '',
    resourceVersion: meta.resourceVersion ?? '',
    ownerUid: meta.ownerReferences?.find((o) => o.kind === 'Pod')?.uid,
    createdAt: time(meta.creationTimestamp) ?? 0,
    state,
    reason: why?.reason,
    message: why?.message,
  };
}

export function slimPod(pod: PodJson): PodFacts | undefined {
  const meta = pod.metadata;
  const sandboxId = sandboxIdOf(meta, 'pod');
  if (sandboxId === undefined || meta === undefined) return undefined;
  const status = pod.status ?? {};
  const conditions = status.conditions ?? [];
  const readyCondition = conditions.find((c) => c.type === 'Ready');
  const scheduled = conditions.find((c) => c.type === 'PodScheduled');
  const why =
    // An eviction says why the pod ended, whatever its containers said on the way out.
    (status.reason === EVICTED ? { reason: EVICTED, message: status.message } : undefined) ??
    (scheduled?.status === 'False' ? { reason: scheduled.reason, message: scheduled.message } : undefined) ??
    containerReason(status.initContainerStatuses) ??
    containerReason(status.containerStatuses) ??
    (status.reason ? { reason: status.reason, message: status.message } : undefined);
  const transitions = conditions.map((c) => time(c.lastTransitionTime) ?? 0);
  const since = (c: Condition | undefined) => (c?.status === 'True' ? time(c.lastTransitionTime) : undefined);
  const sandbox = status.containerStatuses?.find((c) => c.name === SANDBOX_CONTAINER) ?? status.containerStatuses?.[0];
  const { shellCapacity, larkBroker } = podRuntime(pod.spec);
  const activity = meta.annotations?.[ANNOTATION_LAST_ACTIVITY];
  const expires = meta.annotations?.[ANNOTATION_EXPIRES_AT];
  return {
    sandboxId,
    uid: meta.uid ?? '',
    resourceVersion: meta.resourceVersion ?? '',
    threadId: meta.annotations?.[ANNOTATION_THREAD_ID],
    userId: meta.annotations?.[ANNOTATION_USER_ID],
    phase: status.phase ?? 'Pending',
    ready: readyCondition?.status === 'True' ? 'True' : readyCondition?.status === 'Unknown' ? 'Unknown' : 'False',
    podIP: status.podIP,
    createdAt: time(meta.creationTimestamp) ?? 0,
    deleting: meta.deletionTimestamp !== undefined && meta.deletionTimestamp !== null,
    reason: why?.reason,
    message: why?.message,
    transitionAt: transitions.length ? Math.max(...transitions) : undefined,
    lastActivity: activity === undefined ? undefined : time(activity),
    expiresAt: expires === undefined ? undefined : time(expires),
    signer: meta.annotations?.[ANNOTATION_SIGNER],
    scheduledAt: since(scheduled),
    startedAt: time(sandbox?.state?.running?.startedAt),
    readyAt: since(readyCondition),
    shellCapacity,
    larkBroker,
    wokenBy: meta.annotations?.[ANNOTATION_WOKEN_BY],
    wokeFrom: meta.annotations?.[ANNOTATION_WOKE_FROM],
    leaseUntil: time(meta.annotations?.[ANNOTATION_LEASE_UNTIL]),
  };
}

/** What a pod's spec says of its runtime: the shell capacity and the Lark broker mode, as DeerFlow 2.1 reads them. */
function podRuntime(spec: PodJson['spec']): Pick<PodFacts, 'shellCapacity' | 'larkBroker'> {
  const containers = spec?.containers ?? [];
  const sandbox = containers.find((c) => c.name === SANDBOX_CONTAINER);
  const env = sandbox?.env?.find((e) => e.name === MAX_SHELL_SESSIONS_ENV);
  const value = env === undefined ? DEFAULT_SHELL_SESSIONS : /^\d+$/.test(env.value ?? '') ? Number(env.value) : 0;
  const sidecar = containers.some((c) => c.name === LARK_BROKER_CONTAINER);
  const shim = (spec?.initContainers ?? []).some((c) => c.name === LARK_SHIM_CONTAINER);
  const credentials = (sandbox?.volumeMounts ?? []).some((m) => LARK_CREDENTIAL_ROOTS.some((root) => m.mountPath.startsWith(root)));
  return { shellCapacity: value, larkBroker: sidecar === shim && !(sidecar && credentials) ? sidecar : null };
}

/** One kubelet image event of a sandbox pod (Pulling or Pulled); undefined for any other event. */
export type EventFacts = {
  name: string;
  resourceVersion: string;
  sandboxId: string;
  podUid: string;
  container: string;
  pulled: boolean;
  message: string;
  at: number;
};

export function slimEvent(e: EventJson): EventFacts | undefined {
  const o = e.involvedObject;
  if (o?.kind !== 'Pod' || (e.reason !== 'Pulling' && e.reason !== 'Pulled') || !o.name?.startsWith('sandbox-')) return undefined;
  const at = time(e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? undefined);
  if (at === undefined || !e.metadata?.name) return undefined;
  return {
    name: e.metadata.name,
    resourceVersion: e.metadata.resourceVersion ?? '',
    sandboxId: o.name.slice('sandbox-'.length),
    podUid: o.uid ?? '',
    container: o.fieldPath ?? '',
    pulled: e.reason === 'Pulled',
    message: e.message ?? '',
    at,
  };
}

/** A pod's images from its image events: pulling while some container's last event is Pulling. */
export function imageFacts(podUid: string, events: Iterable<EventFacts>): ImageFacts | undefined {
  const last = new Map<string, EventFacts>();
  for (const e of events) {
    if (e.podUid !== podUid) continue;
    const seen = last.get(e.container);
    // Timestamps have whole seconds: at the same second, Pulled comes after Pulling.
    if (!seen || e.at > seen.at || (e.at === seen.at && e.pulled)) last.set(e.container, e);
  }
  if (last.size === 0) return undefined;
  const pulling = [...last.values()].find((e) => !e.pulled);
  const readyAt = pulling ? undefined : Math.max(...[...last.values()].map((e) => e.at));
  return { podUid, pulling: pulling?.message, readyAt };
}

export function slimService(svc: ServiceJson): ServiceFacts | undefined {
  const meta = svc.metadata;
  const sandboxId = sandboxIdOf(meta, 'service');
  if (sandboxId === undefined || meta === undefined) return undefined;
  const ports = svc.spec?.ports ?? [];
  const port = ports.find((p) => p.name === 'http') ?? ports[0];
  return {
    sandboxId,
    uid: meta.uid ?? '',
    resourceVersion: meta.resourceVersion ?? '',
    nodePort: port?.nodePort ?? undefined,
    clusterIP: svc.spec?.clusterIP,
    ownerUid: meta.ownerReferences?.find((o) => o.kind === 'Pod')?.uid,
    createdAt: time(meta.creationTimestamp) ?? 0,
    deleting: meta.deletionTimestamp !== undefined && meta.deletionTimestamp !== null,
    resumable: meta.annotations?.[ANNOTATION_REQUEST] !== undefined,
    suspendedAs: meta.annotations?.[ANNOTATION_SUSPENDED_AT],
    suspendedAt: time(meta.annotations?.[ANNOTATION_SUSPENDED_AT]),
    threadId: meta.annotations?.[ANNOTATION_THREAD_ID],
    userId: meta.annotations?.[ANNOTATION_USER_ID],
  };
}

/** One sandbox as the view holds it: its pod and service facts joined. Immutable: a change makes a new one. */
export type SandboxRecord = {
  sandboxId: string;
  threadId: string | undefined;
  userId: string | undefined;
  status: SandboxStatus;
  reason: string | undefined;
  message: string | undefined;
  ready: boolean;
  podIP: string | undefined;
  nodePort: number | undefined;
  clusterIP: string | undefined;
  createdAt: number;
  deleting: boolean;
  lastTransitionAt: number | undefined;
  lastActivity: number | undefined;
  expiresAt: number | undefined;
  signer: string | undefined;
  hasPod: boolean;
  hasService: boolean;
  podUid: string | undefined;
  podResourceVersion: string | undefined;
  serviceOwnerUid: string | undefined;
  /** The pod's phase (its container runs: its app may answer before kubelet's probe says so). */
  phase: string | undefined;
  /** Startup milestones (epoch ms, whole seconds): scheduled, image ready, container started, Ready. */
  scheduledAt: number | undefined;
  imageReadyAt: number | undefined;
  startedAt: number | undefined;
  readyAt: number | undefined;
  /** Gateway mode: its HTTPRoute exists, the pod that owns it, and whether its gateway refused it. */
  hasRoute: boolean;
  routeOwnerUid: string | undefined;
  routeRefused: boolean;
  /**
   * When this service saw the pod's app answer on the pod's own address before kubelet marked it Ready
   * (the proxy's app check), and in gateway mode when the gateway's data plane first served the route
   * (its route check): what makes "Running" mean usable, whoever asks.
   */
  answeredAt: number | undefined;
  servedAt: number | undefined;
  /** DeerFlow 2.1, read off the pod: its shell capacity and its Lark broker attestation (see PodFacts). */
  shellCapacity: number | undefined;
  larkBroker: boolean | null | undefined;
  /** The Service's uid (what a capability is bound to: it survives a suspend, not a delete) and version. */
  serviceUid: string | undefined;
  serviceResourceVersion: string | undefined;
  /** Its Service carries its request: it can be suspended and woken. */
  resumable: boolean;
  /**
   * Suspend: `suspended` (no pod; Service, URL and files kept), `suspending` (its pod is being removed),
   * `waking` (a pod made by a wake, not yet marked awake); undefined while it simply runs.
   */
  suspension: Suspension | undefined;
  suspendedAt: number | undefined;
  /** What woke its current pod (create, status, wait, proxy, resume), if a wake made it. */
  wokenBy: string | undefined;
  leaseUntil: number | undefined;
};

export type Suspension = 'suspended' | 'suspending' | 'waking';
export const SUSPENDED = 'Suspended';
export const SUSPENDING = 'Suspending';

/**
 * What this service itself saw of a pod (by its uid), each when first seen: its app answering on the pod's
 * address, and (gateway mode, with the route check) the gateway serving its route.
 */
export type Usable = {
  podUid: string;
  answeredAt: number | undefined;
  servedAt: number | undefined;
  /** The pod has been Ready once: from then on kubelet's word alone says whether it is. */
  wasReady: boolean;
};

/**
 * One sandbox's record from its pod and service facts (undefined when neither exists), and what
 * kubelet's events say of its pod's images: a pod waiting for its image says so (PullingImage, with
 * kubelet's message) rather than ContainerCreating. A pod whose container runs and whose app was seen
 * answering is Running before kubelet's probe says so: the proxy sends requests to it already. In
 * gateway mode with the route check, Running waits for the gateway to serve the route.
 */
export function joinRecord(
  id: string,
  pod: PodFacts | undefined,
  svc: ServiceFacts | undefined,
  images?: ImageFacts,
  gateway?: { route: RouteFacts | undefined; checked: boolean },
  seen?: Usable,
): SandboxRecord | undefined {
  if (pod === undefined && svc === undefined && gateway?.route === undefined) return undefined;
  const image = images && pod && images.podUid === pod.uid ? images : undefined;
  const suspendedAs = svc && !svc.deleting ? svc.suspendedAs : undefined;
  const suspension: Suspension | undefined =
    suspendedAs === undefined ? undefined : pod === undefined ? 'suspended' : pod.wokeFrom === suspendedAs ? 'waking' : 'suspending';
  let d = suspended(suspension, svc?.suspendedAt) ?? deriveStatus(pod, svc);
  if (
    image?.pulling &&
    d.status === 'Pending' &&
    (d.reason === undefined || d.reason === 'ContainerCreating' || d.reason === 'PodInitializing')
  )
    d = { ...d, reason: 'PullingImage', message: image.pulling };
  const own = seen && pod && seen.podUid === pod.uid ? seen : undefined;
  const early =
    pod?.ready === 'False' && onlyReadyMissing({ phase: pod.phase, deleting: pod.deleting, status: d.status, reason: d.reason });
  if (!gateway && own?.answeredAt !== undefined && !own.wasReady && early) d = { status: 'Running', reason: undefined, message: undefined };
  const route = gateway?.route;
  if (gateway && pod && !pod.deleting) d = withRoute(d, route);
  if (gateway?.checked && d.status === 'Running' && own?.servedAt === undefined)
    d = { status: 'Pending', reason: ROUTE_NOT_SERVED, message: 'waiting for the gateway to serve the sandbox’s route' };
  return {
    sandboxId: id,
    threadId: pod?.threadId ?? svc?.threadId,
    userId: pod?.userId ?? svc?.userId,
    status: d.status,
    reason: d.reason,
    message: d.message,
    ready: pod?.ready === 'True' && !pod.deleting && suspension !== 'suspending',
    podIP: pod?.podIP,
    nodePort: svc?.nodePort,
    clusterIP: svc?.clusterIP,
    createdAt: Math.min(pod?.createdAt ?? Infinity, svc?.createdAt ?? Infinity, gateway?.route?.createdAt ?? Infinity),
    deleting: (pod?.deleting ?? false) || (svc?.deleting ?? false),
    lastTransitionAt: pod?.transitionAt,
    lastActivity: pod ? pod.lastActivity : svc?.suspendedAt,
    expiresAt: pod?.expiresAt,
    signer: pod?.signer,
    hasPod: pod !== undefined,
    hasService: svc !== undefined,
    podUid: pod?.uid,
    podResourceVersion: pod?.resourceVersion,
    serviceOwnerUid: svc?.ownerUid,
    phase: pod?.phase,
    scheduledAt: pod?.scheduledAt,
    imageReadyAt: image?.readyAt,
    startedAt: pod?.startedAt,
    readyAt: pod?.ready === 'True' ? pod.readyAt : undefined,
    hasRoute: route !== undefined,
    routeOwnerUid: route?.ownerUid,
    routeRefused: route?.state === 'refused',
    answeredAt: own?.answeredAt,
    servedAt: own?.servedAt,
    shellCapacity: pod?.shellCapacity,
    larkBroker: pod?.larkBroker,
    serviceUid: svc?.uid,
    serviceResourceVersion: svc?.resourceVersion,
    resumable: svc?.resumable ?? false,
    suspension,
    suspendedAt: suspension ? svc?.suspendedAt : undefined,
    wokenBy: pod?.wokenBy,
    leaseUntil: pod?.leaseUntil,
  };
}

/** What a suspended or suspending sandbox says (a waking one says what its new pod does). */
function suspended(suspension: Suspension | undefined, at: number | undefined): Derived | undefined {
  const since = at !== undefined && Number.isFinite(at) ? ` since ${new Date(at).toISOString()}` : '';
  if (suspension === 'suspended')
    return { status: 'Pending', reason: SUSPENDED, message: `suspended${since} (no pod; URL and files kept): the next use wakes it` };
  if (suspension === 'suspending')
    return { status: 'Pending', reason: SUSPENDING, message: 'being suspended (its pod is being removed): the next use wakes it' };
  return undefined;
}

/**
 * The container runs and nothing is wrong: only kubelet's Ready is missing (of a record, or of a pod's
 * facts with what was derived from them). The proxy's app check polls such sandboxes, and one whose app
 * answered counts as Running.
 */
export const onlyReadyMissing = (s: {
  phase: string | undefined;
  deleting: boolean;
  status: SandboxStatus;
  reason: string | undefined;
}): boolean =>
  s.phase === 'Running' && !s.deleting && s.status === 'Pending' && (s.reason === undefined || s.reason === 'ContainersNotReady');

/** Gateway mode: the route is accepted, and the gateway has not served it yet (the route check asks it). */
export const ROUTE_NOT_SERVED = 'RouteNotServed';

/**
 * Gateway mode: a sandbox is Running only when its pod is Ready and its route accepted. A route its
 * gateway refused says why (the gateway's reason and message) whatever the pod does: it will not be
 * reachable until someone changes the route or the gateway; never a silent 404.
 */
function withRoute(d: Derived, route: RouteFacts | undefined): Derived {
  if (d.status === 'Succeeded' || d.status === 'Failed' || d.status === 'Unknown') return d;
  if (route?.state === 'refused') return { status: 'Pending', reason: route.reason, message: route.message };
  if (d.status !== 'Running') return d;
  if (route === undefined) return { status: 'Pending', reason: 'RouteMissing', message: "the sandbox's HTTPRoute does not exist" };
  if (route.state === 'pending') return { status: 'Pending', reason: route.reason, message: route.message };
  return d;
}

export const sameRecord = (a: SandboxRecord | undefined, b: SandboxRecord | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && (Object.keys(a) as (keyof SandboxRecord)[]).every((k) => a[k] === b[k]));

/**
 * Running, finished, stuck or gone: a caller waiting for Running learns nothing more by waiting longer.
 * Every wait for a sandbox (`?wait=`, the proxy's X-Sandbox-Wait) ends on this condition.
 */
export const settled = (r: SandboxRecord | undefined): boolean =>
  r === undefined ||
  r.status === 'Running' ||
  r.status === 'Succeeded' ||
  r.status === 'Failed' ||
  r.routeRefused ||
  (r.reason !== undefined && STUCK_REASONS.has(r.reason));
