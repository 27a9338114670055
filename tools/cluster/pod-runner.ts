// One pod on the fake node, run as a kubelet would (kubelet-model.ts has the rules): its init containers
// and containers each wait for their image (pulled in the node's serialized queue, with kubelet's events
// and the node's status.images), are created and started, and are probed on kubelet's schedule from the
// pod's own spec, with real HTTP requests to the pod's address, where pod-host.ts runs its app. A pod
// is Ready only when every container's readiness probe has passed (or it has none and has started).
// Failures a test asks for (annotation fake-node/behavior): never-ready, crash, crashloop, image-pull,
// unschedulable. And the AIO image's own: a `sandbox` container that may not setuid or escalate
// privileges crash-loops, as supervisord and sudo would.

import { request as httpRequest } from 'node:http';
import { posix } from 'node:path';
import type { V1Container, V1PodSpec } from '@kubernetes/client-node';
import type { Wire } from '../../src/domain/wire.ts';
import {
  crashBackoffMs,
  nextTick,
  presentMessage,
  probedAtStart,
  probePasses,
  probeRule,
  ProbeState,
  pulledMessage,
  pullingMessage,
  type HttpProbe,
  type ProbeRule,
} from './kubelet-model.ts';

export const BEHAVIORS = ['ready', 'never-ready', 'crash', 'crashloop', 'image-pull', 'unschedulable'] as const;
export type Behavior = (typeof BEHAVIORS)[number];

export type ContainerSpec = Wire<V1Container>;
export type PodSpec = Partial<Wire<V1PodSpec>>;

/**
 * A container mount backed by the node's disk, as kubelet makes it: a hostPath (`host`, the node's own
 * path) or a claim's volume (`claim`, by name, with the mount's subPath). The node keeps both under a
 * directory of its own, so files written by one pod are there for the next pod of the same mounts.
 */
export type NodeMount = { containerPath: string; readOnly: boolean } & ({ host: string } | { claim: string; subPath: string });

/** The disk-backed mounts of a container (its volumeMounts of hostPath and claim volumes). */
export function nodeMounts(spec: PodSpec, container: Wire<V1Container>): NodeMount[] {
  const out: NodeMount[] = [];
  for (const m of container.volumeMounts ?? []) {
    const v = (spec.volumes ?? []).find((x) => x.name === m.name);
    const readOnly = m.readOnly === true;
    if (v?.hostPath?.path) out.push({ containerPath: m.mountPath, readOnly, host: posix.join(v.hostPath.path, m.subPath ?? '') });
    else if (v?.persistentVolumeClaim?.claimName)
      out.push({ containerPath: m.mountPath, readOnly, claim: v.persistentVolumeClaim.claimName, subPath: m.subPath ?? '' });
  }
  return out;
}
export type PodRef = { namespace: string; name: string; uid: string; sandboxId: string };

/** What a pod's run needs of its node. */
export type Node = {
  name: string;
  hostIP: string;
  settings: () => {
    startMs: number;
    appStartMs: number;
    pullMs: number;
    presentPullMs: number;
    imageSizeBytes: number;
    /** The USER of images that set one (uid or name); every other image runs as root, as the AIO image does. */
    imageUsers: Record<string, string>;
  };
  /**
   * Waits for an image, pulling it in the node's queue when the policy asks (`onPulling` first, as
   * kubelet says Pulling before it waits its turn); `absent` for an image that may not be pulled (Never).
   */
  ensureImage: (
    image: string,
    policy: string | undefined,
    onPulling: () => void,
  ) => Promise<{ pulled: boolean; pullMs: number; totalMs: number; sizeBytes: number } | 'absent'>;
  /** Writes the pod's status; false when the API server could not take it (kubelet's status manager then tries again). */
  patchStatus: (pod: PodRef, status: Record<string, unknown>) => Promise<boolean>;
  event: (pod: PodRef, container: string | undefined, type: 'Normal' | 'Warning', reason: string, message: string) => void;
  /** A line of a container's log (what `kubectl logs` shows). */
  log: (pod: PodRef, container: string, line: string) => void;
  /** Starts the sandbox's app: healthy or not, with the container's plain environment values (the image reads MAX_SHELL_SESSIONS). */
  startApp: (
    pod: PodRef,
    ip: string,
    port: number,
    app: { healthy: boolean; env: Record<string, string>; mounts: NodeMount[] },
  ) => Promise<void>;
  stopApp: (ip: string) => Promise<void>;
  /** A Secret or ConfigMap of the API (its data), or undefined when there is none. */
  readObject: (path: string) => Promise<{ data?: Record<string, string> } | undefined>;
};

/** How often kubelet's pod worker tries a pod again whose container config cannot be made (a missing Secret). */
const CONFIG_RETRY_MS = 2000;

/** What the AIO sandbox image does under a securityContext it cannot live with; undefined when it can start. */
export function aioImageRefusal(spec: PodSpec): string | undefined {
  const sc = spec.containers?.find((c) => c.name === 'sandbox')?.securityContext;
  const drop = sc?.capabilities?.drop ?? [];
  const add = sc?.capabilities?.add ?? [];
  const lacks = (cap: string): boolean => (drop.includes('ALL') || drop.includes(cap)) && !add.includes(cap);
  if (lacks('SETUID') || lacks('SETGID')) {
    return "supervisord: Error: Can't drop privilege as nonroot user gem: setuid/setgid not permitted (capabilities SETUID/SETGID dropped)";
  }
  if (sc?.allowPrivilegeEscalation === false) {
    return 'sudo: effective uid is not 0, is /usr/bin/sudo on a file system with the nosuid option set? (allowPrivilegeEscalation: false)';
  }
  return undefined;
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

type State = { waiting?: { reason: string; message?: string }; running?: { startedAt: string }; terminated?: Record<string, unknown> };

/** A probe of one container: its rule, its random phase, its state, and its next tick. */
type Probe = { kind: 'startup' | 'readiness' | 'liveness'; rule: ProbeRule; phase: number; state: ProbeState; path: string; port: number };

class Container {
  readonly spec: ContainerSpec;
  state: State = { waiting: { reason: 'ContainerCreating' } };
  lastState: State = {};
  restartCount = 0;
  started = false;
  ready = false;
  startAt = 0;
  probes: Probe[] = [];

  constructor(spec: ContainerSpec) {
    this.spec = spec;
  }

  get port(): number {
    return this.spec.ports?.[0]?.containerPort ?? 8080;
  }

  status(): Record<string, unknown> {
    return {
      name: this.spec.name,
      image: this.spec.image,
      imageID: this.startAt ? `docker.io/library/${this.spec.image}@sha256:fake` : '',
      containerID: this.startAt ? `fake://${this.spec.name}-${this.restartCount}` : undefined,
      ready: this.ready,
      started: this.started,
      restartCount: this.restartCount,
      state: this.state,
      lastState: this.lastState,
    };
  }
}

/** How soon a status the API server did not take is written again. */
const STATUS_RETRY_MS = 1000;

export class PodRun {
  readonly ref: PodRef;
  readonly ip: string;
  #node: Node;
  #spec: PodSpec;
  #behavior: Behavior;
  #containers: Container[];
  #inits: Container[];
  #phase: 'Pending' | 'Running' | 'Failed' = 'Pending';
  #conditions = new Map<string, { status: string; at: number; reason?: string; message?: string }>();
  #startTime = Date.now();
  #timers = new Set<NodeJS.Timeout>();
  #stopped = false;
  #patching: Promise<void> = Promise.resolve();
  #resyncing = false;

  constructor(node: Node, ref: PodRef, spec: PodSpec, behavior: Behavior, ip: string) {
    this.#node = node;
    this.ref = ref;
    this.#spec = spec;
    this.#behavior = behavior;
    this.ip = ip;
    this.#containers = (spec.containers ?? []).map((c) => new Container(c));
    this.#inits = (spec.initContainers ?? []).map((c) => new Container(c));
  }

  /** Runs the pod from binding to its containers' probes; resolves once its containers are started. */
  async run(): Promise<void> {
    const now = Date.now();
    this.#condition('PodScheduled', 'True', now);
    this.#condition('Initialized', this.#inits.length ? 'False' : 'True', now);
    this.#condition('ContainersReady', 'False', now);
    this.#condition('Ready', 'False', now);
    await this.#sync();
    for (const init of this.#inits) if (!(await this.#runInit(init))) return;
    this.#condition('Initialized', 'True', Date.now());
    for (const c of this.#containers) if (!(await this.#image(c))) return;
    for (const c of this.#containers) if (!(await this.#config(c))) return;
    await this.#sleep(this.#node.settings().startMs);
    if (this.#stopped) return;
    if (this.#behavior === 'crash') return this.#fail();
    await Promise.all(this.#containers.map((c) => this.#start(c)));
    this.#phase = 'Running';
    await this.#sync();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await this.#node.stopApp(this.ip);
  }

  #condition(type: string, status: string, at: number, why: { reason?: string; message?: string } = {}): void {
    const current = this.#conditions.get(type);
    if (current?.status === status && current.reason === why.reason) return;
    this.#conditions.set(type, { status, at, ...why });
  }

  #status(): Record<string, unknown> {
    return {
      phase: this.#phase,
      hostIP: this.#node.hostIP,
      hostIPs: [{ ip: this.#node.hostIP }],
      podIP: this.ip,
      podIPs: [{ ip: this.ip }],
      startTime: iso(this.#startTime),
      conditions: [...this.#conditions].map(([type, c]) => ({
        type,
        status: c.status,
        lastProbeTime: null,
        lastTransitionTime: iso(c.at),
        ...(c.reason ? { reason: c.reason } : {}),
        ...(c.message ? { message: c.message } : {}),
      })),
      ...(this.#inits.length ? { initContainerStatuses: this.#inits.map((c) => c.status()) } : {}),
      containerStatuses: this.#containers.map((c) => c.status()),
    };
  }

  /** Status patches go out in order, one at a time. */
  #sync(): Promise<void> {
    const status = this.#status();
    this.#patching = this.#patching.then(async () => {
      if (this.#stopped || (await this.#node.patchStatus(this.ref, status))) return;
      // The API server did not take it (an outage): kubelet's status manager writes the latest status
      // again until it does, so a pod started meanwhile is not left "running, not started".
      if (this.#resyncing) return;
      this.#resyncing = true;
      this.#after(STATUS_RETRY_MS, () => {
        this.#resyncing = false;
        void this.#sync();
      });
    });
    return this.#patching;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#timers.delete(t);
        resolve();
      }, ms);
      this.#timers.add(t);
    });
  }

  #after(ms: number, fn: () => void): void {
    const t = setTimeout(
      () => {
        this.#timers.delete(t);
        if (!this.#stopped) fn();
      },
      Math.max(0, ms),
    );
    this.#timers.add(t);
  }

  /** The image of a container, as kubelet's image manager gets it; false when it cannot be had. */
  async #image(c: Container): Promise<boolean> {
    // The API server refuses a pod container without an image; the model has it optional.
    const { image = '', imagePullPolicy } = c.spec;
    if (this.#behavior === 'image-pull' && c === this.#containers[0]) {
      this.#node.event(this.ref, c.spec.name, 'Normal', 'Pulling', pullingMessage(image));
      const why = `rpc error: code = NotFound desc = failed to pull and unpack image "${image}": not found`;
      this.#node.event(this.ref, c.spec.name, 'Warning', 'Failed', `Failed to pull image "${image}": ${why}`);
      c.state = { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}": ErrImagePull: ${why}` } };
      await this.#sync();
      return false;
    }
    const got = await this.#node.ensureImage(image, imagePullPolicy, () =>
      this.#node.event(this.ref, c.spec.name, 'Normal', 'Pulling', pullingMessage(image)),
    );
    if (this.#stopped) return false;
    if (got === 'absent') {
      const message = `Container image "${image}" is not present with pull policy of Never`;
      this.#node.event(this.ref, c.spec.name, 'Warning', 'ErrImageNeverPull', message);
      c.state = { waiting: { reason: 'ErrImageNeverPull', message } };
      await this.#sync();
      return false;
    }
    const message = got.pulled ? pulledMessage(image, got.pullMs, got.totalMs, got.sizeBytes) : presentMessage(image);
    this.#node.event(this.ref, c.spec.name, 'Normal', 'Pulled', message);
    return true;
  }

  /**
   * The container's environment, as kubelet builds it before creating the container: every Secret and
   * ConfigMap it names (not `optional`) must exist, with the keys it names. Until they do, the container
   * waits in CreateContainerConfigError with kubelet's message (and a Failed event), tried again every
   * few seconds; false when the pod stopped meanwhile.
   */
  async #config(c: Container): Promise<boolean> {
    let told = '';
    for (;;) {
      const missing = (await this.#missingConfig(c.spec)) ?? this.#nonRootRefusal(c);
      if (this.#stopped) return false;
      if (missing === undefined) return true;
      if (missing !== told) {
        told = missing;
        this.#node.event(this.ref, c.spec.name, 'Warning', 'Failed', `Error: ${missing}`);
        c.state = { waiting: { reason: 'CreateContainerConfigError', message: missing } };
        await this.#sync();
      }
      await this.#sleep(CONFIG_RETRY_MS);
    }
  }

  /**
   * kubelet's runAsNonRoot check, made before it creates the container: with runAsNonRoot and no
   * runAsUser, the image's USER must be a non-zero uid (the AIO image runs as root).
   */
  #nonRootRefusal(c: Container): string | undefined {
    const pod = this.#spec.securityContext;
    const own = c.spec.securityContext;
    if (!(own?.runAsNonRoot ?? pod?.runAsNonRoot)) return undefined;
    const where = `(pod: "${this.ref.name}_${this.ref.namespace}(${this.ref.uid})", container: ${c.spec.name})`;
    const uid = own?.runAsUser ?? pod?.runAsUser;
    if (uid !== undefined && uid !== null) return uid === 0 ? `container's runAsUser breaks non-root policy ${where}` : undefined;
    const user = this.#node.settings().imageUsers[c.spec.image ?? ''] ?? '0';
    if (!/^\d+$/.test(user))
      return `container has runAsNonRoot and image has non-numeric user (${user}), cannot verify user is non-root ${where}`;
    return Number(user) === 0 ? `container has runAsNonRoot and image will run as root ${where}` : undefined;
  }

  /** kubelet's words for the first reference of the container's environment that cannot be resolved. */
  async #missingConfig(spec: ContainerSpec): Promise<string | undefined> {
    const ns = this.ref.namespace;
    const refs: { kind: 'Secret' | 'ConfigMap'; name: string; key?: string }[] = [];
    for (const e of spec.envFrom ?? []) {
      if (e.secretRef && !e.secretRef.optional) refs.push({ kind: 'Secret', name: e.secretRef.name ?? '' });
      if (e.configMapRef && !e.configMapRef.optional) refs.push({ kind: 'ConfigMap', name: e.configMapRef.name ?? '' });
    }
    for (const e of spec.env ?? []) {
      const s = e.valueFrom?.secretKeyRef;
      const m = e.valueFrom?.configMapKeyRef;
      if (s && !s.optional) refs.push({ kind: 'Secret', name: s.name ?? '', key: s.key });
      if (m && !m.optional) refs.push({ kind: 'ConfigMap', name: m.name ?? '', key: m.key });
    }
    for (const r of refs) {
      const object = await this.#node.readObject(`/api/v1/namespaces/${ns}/${r.kind === 'Secret' ? 'secrets' : 'configmaps'}/${r.name}`);
      if (!object) return `${r.kind === 'Secret' ? 'secret' : 'configmap'} "${r.name}" not found`;
      if (r.key !== undefined && object.data?.[r.key] === undefined) return `couldn't find key ${r.key} in ${r.kind} ${ns}/${r.name}`;
    }
    return undefined;
  }

  async #runInit(c: Container): Promise<boolean> {
    if (!(await this.#image(c))) return false;
    const at = Date.now();
    this.#node.event(this.ref, c.spec.name, 'Normal', 'Created', `Created container: ${c.spec.name}`);
    this.#node.event(this.ref, c.spec.name, 'Normal', 'Started', `Started container ${c.spec.name}`);
    // Init containers here exit at once (an image puller's `true`, a copy of a runtime).
    c.startAt = at;
    c.state = { terminated: { exitCode: 0, reason: 'Completed', startedAt: iso(at), finishedAt: iso(Date.now()) } };
    c.ready = true;
    await this.#sync();
    return !this.#stopped;
  }

  #fail(): Promise<void> {
    this.#phase = 'Failed';
    for (const c of this.#containers) {
      c.state = { terminated: { exitCode: 1, reason: 'Error', finishedAt: iso(Date.now()) } };
    }
    return this.#sync();
  }

  /** Creates and starts a container: its app (the `sandbox` container's stand-in) and its probes. */
  async #start(c: Container): Promise<void> {
    const now = Date.now();
    c.startAt = now;
    c.state = { running: { startedAt: iso(now) } };
    this.#node.event(this.ref, c.spec.name, 'Normal', 'Created', `Created container: ${c.spec.name}`);
    this.#node.event(this.ref, c.spec.name, 'Normal', 'Started', `Started container ${c.spec.name}`);
    const refusal = c.spec.name === 'sandbox' && this.#behavior === 'ready' ? aioImageRefusal(this.#spec) : undefined;
    this.#node.log(
      this.ref,
      c.spec.name,
      `starting ${c.spec.image ?? ''}${c === this.#app() ? ` (the sandbox app on ${this.ip}:${c.port})` : ''}`,
    );
    if (refusal || this.#behavior === 'crashloop') {
      const terminated = refusal ? { exitCode: 1, reason: 'Error', message: refusal } : { exitCode: 137, reason: 'OOMKilled' };
      this.#node.log(this.ref, c.spec.name, refusal ? `fatal: ${refusal}` : 'killed: out of memory (exit code 137)');
      return this.#crashLoop(
        c,
        refusal ? `back-off 10s restarting failed container=sandbox: ${refusal}` : 'back-off 10s restarting failed container',
        terminated,
      );
    }
    if (c === this.#app()) {
      const env = Object.fromEntries((c.spec.env ?? []).flatMap((e) => (e.value === undefined ? [] : [[e.name, e.value]])));
      const mounts = nodeMounts(this.#spec, c.spec);
      await this.#node.startApp(this.ref, this.ip, c.port, { healthy: this.#behavior !== 'never-ready', env, mounts });
    }
    if (this.#stopped) return;
    this.#probes(c, now);
  }

  /**
   * The container the node runs the stand-in app for: the sandbox container, or else the first that
   * declares a port (`kubectl run x --image=y --port=8080` answers on its pod IP and NodePort too).
   */
  #app(): Container | undefined {
    return this.#containers.find((c) => c.spec.name === 'sandbox') ?? this.#containers.find((c) => (c.spec.ports?.length ?? 0) > 0);
  }

  #crashLoop(c: Container, message: string, terminated: Record<string, unknown>): void {
    c.restartCount = 3;
    c.lastState = { terminated: { ...terminated, finishedAt: iso(Date.now()) } };
    c.state = { waiting: { reason: 'CrashLoopBackOff', message } };
    this.#node.event(
      this.ref,
      c.spec.name,
      'Warning',
      'BackOff',
      `Back-off restarting failed container ${c.spec.name} in pod ${this.ref.name}_${this.ref.namespace}(${this.ref.uid})`,
    );
  }

  #probes(c: Container, start: number): void {
    const make = (kind: Probe['kind'], probe: HttpProbe | undefined): Probe[] => {
      if (!probe?.httpGet) return [];
      const rule = probeRule(probe);
      const named = c.spec.ports?.find((p) => p.name === probe.httpGet?.port)?.containerPort;
      const port = typeof probe.httpGet.port === 'number' ? probe.httpGet.port : (named ?? c.port);
      // Each worker's ticker started when the pod was admitted: a random phase relative to this start.
      const phase = Math.floor(Math.random() * rule.periodMs);
      return [{ kind, rule, phase, state: new ProbeState(rule, kind === 'liveness'), path: probe.httpGet.path ?? '/', port }];
    };
    c.probes = [
      ...make('startup', c.spec.startupProbe),
      ...make('readiness', c.spec.readinessProbe),
      ...make('liveness', c.spec.livenessProbe),
    ];
    const startup = c.probes.find((p) => p.kind === 'startup');
    const readiness = c.probes.find((p) => p.kind === 'readiness');
    c.started = startup === undefined;
    if (!readiness && c.started) this.#setReady(c, true);
    for (const p of c.probes) this.#schedule(c, p, start, start);
    if (readiness && probedAtStart(readiness.rule, startup !== undefined))
      this.#after(0, () => void this.#probe(c, readiness, start, false));
  }

  /** The probe's next tick after `after`; a probe held by the startup probe is skipped until it passes. */
  #schedule(c: Container, p: Probe, start: number, after: number): void {
    const at = nextTick(p.rule, start, p.phase, after);
    this.#after(at - Date.now(), () => {
      if (c.startAt !== start) return; // the container was restarted meanwhile
      const held = p.kind !== 'startup' && !c.started;
      const done = p.kind === 'startup' && c.started;
      if (done) return;
      if (!held) void this.#probe(c, p, start, true);
      else this.#schedule(c, p, start, at + 1);
    });
  }

  async #probe(c: Container, p: Probe, start: number, reschedule: boolean): Promise<void> {
    const at = Date.now();
    const outcome = await httpGet(this.ip, p.port, p.path, p.rule.timeoutMs);
    if (this.#stopped || c.startAt !== start) return;
    const ok = probePasses(outcome.status);
    if (!ok) {
      const what = `${p.kind.charAt(0).toUpperCase()}${p.kind.slice(1)} probe failed: ${outcome.error ?? `HTTP probe failed with statuscode: ${outcome.status}`}`;
      this.#node.event(this.ref, c.spec.name, 'Warning', 'Unhealthy', what);
    }
    const changed = p.state.record(ok);
    if (reschedule) this.#schedule(c, p, start, at + 1);
    if (p.kind === 'startup' && ok) {
      c.started = true;
      // The status sync that sees the container started triggers its readiness probe at once.
      const readiness = c.probes.find((q) => q.kind === 'readiness');
      if (readiness) void this.#probe(c, readiness, start, false);
      else this.#setReady(c, true);
      await this.#sync();
    } else if (p.kind === 'readiness' && changed) {
      this.#setReady(c, p.state.passing);
    } else if (p.kind !== 'readiness' && !ok && p.state.failures >= p.rule.failureThreshold) {
      this.#restart(c, `Container ${c.spec.name} failed ${p.kind} probe, will be restarted`);
    }
  }

  #setReady(c: Container, ready: boolean): void {
    c.ready = ready;
    const all = this.#containers.every((x) => x.ready);
    const now = Date.now();
    this.#condition('ContainersReady', all ? 'True' : 'False', now);
    this.#condition('Ready', all ? 'True' : 'False', now);
    void this.#sync();
  }

  /** kubelet kills a container that failed its startup or liveness probe, and starts it again after its back-off. */
  #restart(c: Container, why: string): void {
    this.#node.event(this.ref, c.spec.name, 'Normal', 'Killing', why);
    this.#node.log(this.ref, c.spec.name, `stopped: ${why}`);
    void this.#node.stopApp(this.ip);
    c.restartCount += 1;
    c.lastState = { terminated: { exitCode: 137, reason: 'Error', startedAt: iso(c.startAt), finishedAt: iso(Date.now()) } };
    c.state = {
      waiting: {
        reason: 'CrashLoopBackOff',
        message: `back-off ${crashBackoffMs(c.restartCount) / 1000}s restarting failed container=${c.spec.name}`,
      },
    };
    c.started = false;
    c.startAt = 0;
    this.#setReady(c, false);
    this.#after(crashBackoffMs(c.restartCount), () => void this.#start(c).then(() => this.#sync()));
  }
}

/** One HTTP GET as a kubelet's prober sends it: the status, or why there was none. */
function httpGet(host: string, port: number, path: string, timeoutMs: number): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    const target = `Get "http://${host}:${port}${path}"`;
    const req = httpRequest({ host, port, path, timeout: timeoutMs, headers: { 'user-agent': 'kube-probe/1.37' }, agent: false }, (res) => {
      res.resume();
      resolve({ status: res.statusCode });
    });
    req.on('timeout', () => req.destroy(new Error('context deadline exceeded (Client.Timeout exceeded while awaiting headers)')));
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({
        error: `${target}: ${err.code === 'ECONNREFUSED' ? `dial tcp ${host}:${port}: connect: connection refused` : err.message}`,
      }),
    );
    req.end();
  });
}
