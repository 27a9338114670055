// The fake node: stands in for a kubelet, the scheduler's binding and kube-proxy on the local control
// plane, following their rules (kubelet-model.ts), so what tests and benchmarks measure holds for a
// real cluster.
// - registers Node `fake-node`, keeps it Ready (a heartbeat) and reports the images it holds;
// - binds pending pods to itself and runs each as a kubelet would (pod-runner.ts): images pulled per
//   node with kubelet's events, containers started, probed on kubelet's schedule at their addresses in
//   the pod network (pod-network.ts), where pod-host.ts runs their apps;
// - for each NodePort Service with a Ready pod, forwards 127.0.0.1:<nodePort> to that pod (kube-proxy);
// - force-deletes terminating pods, and stops their apps.
//
// Settings (environment, and POST /settings on the control port): FAKE_NODE_START_MS (300) from the
// image's presence to the containers' start, FAKE_NODE_APP_START_MS (0) from a container's start until
// its app answers, FAKE_NODE_PULL_MS (0) to pull an image that is not on the node, and
// FAKE_NODE_IMAGE_SIZE_BYTES. POST /images {"present": [...]} sets which images the node holds (an
// empty list is a cold node); POST /behavior makes a pod fail.

import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContainerLogs } from './kubelet-logs.ts';
import { PullQueue } from './kubelet-model.ts';
import type { NodeJson, PodJson, ServiceJson } from '../../src/domain/wire.ts';
import { KubeHttp, type KubeObject, type WatchEvent } from './kube-http.ts';
import { POD_HOST_PORT, type PodProcess } from './pod-host.ts';
import { podAddress, type PodNetwork } from './pod-network.ts';
import { BEHAVIORS, PodRun, type Behavior, type Node, type PodRef, type PodSpec } from './pod-runner.ts';

export { BEHAVIORS, type Behavior } from './pod-runner.ts';
export const NODE_NAME = 'fake-node';
export const BEHAVIOR_ANNOTATION = 'fake-node/behavior';

/**
 * How the node behaves: the container runtime's start, the app's start, a pull of an image of
 * imageSizeBytes (an image listed in imageSizes pulls in proportion to its size), and a pull that finds
 * the layers there.
 */
export type Settings = {
  startMs: number;
  appStartMs: number;
  pullMs: number;
  presentPullMs: number;
  imageSizeBytes: number;
  imageSizes: Record<string, number>;
  /** The USER of images that set one; every other image runs as root (kubelet's runAsNonRoot check reads it). */
  imageUsers: Record<string, string>;
};

type PodStatus = NonNullable<PodJson['status']>;
type ServiceSpec = NonNullable<ServiceJson['spec']>;

const key = (o: KubeObject): string => `${o.metadata.namespace}/${o.metadata.name}`;
const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const log = (msg: string): void => console.log(`${new Date().toISOString()} ${msg}`);

function isReady(pod: KubeObject): boolean {
  const conditions = ((pod.status ?? {}) as PodStatus).conditions ?? [];
  return conditions.some((c) => c.type === 'Ready' && c.status === 'True');
}

export class FakeNode {
  #kube: KubeHttp;
  #net: PodNetwork;
  #settings: Settings;
  #abort = new AbortController();
  #pods = new Map<string, KubeObject>();
  #services = new Map<string, KubeObject>();
  #behaviors = new Map<string, Behavior>();
  #runs = new Map<string, { run: PodRun; ip: number }>();
  /** Pods and services by namespace/sandbox-id: an event looks only at its own sandbox (10,000 per namespace stay cheap). */
  #index = new Map<Map<string, KubeObject>, Map<string, Set<string>>>();
  #freeIps: number[] = [];
  #nextIp = 0;
  #images = new Map<string, number>(); // image -> size in bytes
  #pulls = new PullQueue();
  /** Images being pulled, and when each will be on the node: a pull queued behind another of the same image finds it there. */
  #arriving = new Map<string, number>();
  #forwarders = new Map<number, { server: TcpServer; service: string; target: string }>();
  #containerLogs = new ContainerLogs();
  #kubeletPort = 0;
  /** The API server's serving certificate, which the node's kubelet port presents too. */
  #pki: string | undefined;
  /** Pods the scheduler holds back (a claim missing or unbound), tried again every 2 s as it does. */
  #holding = new Set<string>();

  /** The node's disk: hostPath volumes and claims' volumes live under it (see nodeMounts). */
  #diskDir: string;

  constructor(kube: KubeHttp, net: PodNetwork, settings: Settings, pki?: string, diskDir = join(tmpdir(), 'fake-node-disk')) {
    this.#kube = kube;
    this.#diskDir = diskDir;
    this.#net = net;
    this.#settings = settings;
    this.#pki = pki;
  }

  async start(): Promise<void> {
    if (this.#pki)
      this.#kubeletPort = await this.#containerLogs.listen(
        this.#net.hostIp,
        join(this.#pki, 'apiserver.crt'),
        join(this.#pki, 'apiserver.key'),
        (namespace, pod, container) => {
          const status = (this.#pods.get(`${namespace}/${pod}`)?.status ?? {}) as PodStatus;
          const waiting = status.containerStatuses?.find((c) => c.name === container)?.state?.waiting;
          return waiting ? waiting.reason || 'ContainerCreating' : undefined;
        },
      );
    await this.#register();
    const signal = this.#abort.signal;
    const onError = (err: unknown) => log(`watch error: ${String(err)}`);
    void this.#kube.informer(
      '/api/v1/pods',
      { onSync: (items) => this.#sync(this.#pods, items), onEvent: (e) => this.#event(this.#pods, e), onError },
      signal,
    );
    void this.#kube.informer(
      '/api/v1/services',
      { onSync: (items) => this.#sync(this.#services, items), onEvent: (e) => this.#event(this.#services, e), onError },
      signal,
    );
    const heartbeat = setInterval(() => void this.#patchNode({}).catch((err: unknown) => log(`heartbeat: ${String(err)}`)), 20_000);
    signal.addEventListener('abort', () => clearInterval(heartbeat));
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await Promise.all([...this.#runs.values()].map((r) => r.run.stop()));
    this.#containerLogs.close();
    for (const f of this.#forwarders.values()) f.server.close();
  }

  settings(patch: Partial<Settings> = {}): Settings {
    Object.assign(this.#settings, patch);
    return this.#settings;
  }

  /** Which images the node holds (a cold node: none), as its status reports them. */
  async setImages(present: string[]): Promise<void> {
    this.#images = new Map(present.map((image) => [image, this.#sizeOf(image)]));
    this.#arriving.clear();
    await this.#patchNode({ images: this.#nodeImages() });
  }

  setBehavior(namespace: string, name: string, behavior: Behavior): void {
    const k = `${namespace}/${name}`;
    this.#behaviors.set(k, behavior);
    const pod = this.#pods.get(k);
    if (pod && this.#runs.get(k)) void this.#release(k).then(() => this.#onPod(pod));
  }

  // ---- the node object ----

  async #register(): Promise<void> {
    const existing = await this.#kube.find(`/api/v1/nodes/${NODE_NAME}`);
    if (!existing) {
      await this.#kube.post('/api/v1/nodes', {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: NODE_NAME, labels: { 'kubernetes.io/hostname': NODE_NAME, 'kubernetes.io/os': 'linux', type: 'fake' } },
        spec: { podCIDR: this.#net.subnet, podCIDRs: [this.#net.subnet] },
      });
    }
    await this.#patchNode({ images: this.#nodeImages() });
    // The node lifecycle controller (off here: the fake node keeps no lease) removes the not-ready
    // taint the API server puts on a new node once it reports Ready; without it nothing tolerating
    // only the usual taints (a DaemonSet's pods) would be scheduled.
    const node = await this.#kube.get(`/api/v1/nodes/${NODE_NAME}`);
    const taints = ((node.spec ?? {}) as NonNullable<NodeJson['spec']>).taints ?? [];
    const kept = taints.filter((t) => t.key !== 'node.kubernetes.io/not-ready' && t.key !== 'node.kubernetes.io/unreachable');
    if (kept.length !== taints.length)
      await this.#kube.mergePatch(`/api/v1/nodes/${NODE_NAME}`, { spec: { taints: kept.length ? kept : null } });
    log(`node ${NODE_NAME} registered (pods in ${this.#net.subnet}, network namespace ${this.#net.netns})`);
  }

  /** kubelet's list of the node's images: largest first, at most 50. */
  #nodeImages(): { names: string[]; sizeBytes: number }[] {
    return [...this.#images]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 50)
      .map(([image, sizeBytes]) => ({ names: [image], sizeBytes }));
  }

  #patchNode(extra: Record<string, unknown>): Promise<KubeObject> {
    const resources = { cpu: '64', memory: '256Gi', pods: '20000', 'ephemeral-storage': '1Ti' };
    const t = now();
    return this.#kube.mergePatch(`/api/v1/nodes/${NODE_NAME}/status`, {
      status: {
        capacity: resources,
        allocatable: resources,
        addresses: [
          { type: 'InternalIP', address: this.#net.hostIp },
          { type: 'Hostname', address: NODE_NAME },
        ],
        // Where the API server asks for logs (by InternalIP: --kubelet-preferred-address-types).
        ...(this.#kubeletPort ? { daemonEndpoints: { kubeletEndpoint: { Port: this.#kubeletPort } } } : {}),
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'KubeletReady',
            message: 'fake node is ready',
            lastHeartbeatTime: t,
            lastTransitionTime: t,
          },
        ],
        nodeInfo: { kubeletVersion: 'v1.37.2', containerRuntimeVersion: 'fake://1', operatingSystem: 'linux', architecture: 'amd64' },
        ...extra,
      },
    });
  }

  // ---- what each pod needs of its node ----

  #node(): Node {
    return {
      name: NODE_NAME,
      hostIP: this.#net.hostIp,
      settings: () => this.#settings,
      ensureImage: (image, policy, onPulling) => this.#ensureImage(image, policy, onPulling),
      patchStatus: (pod, status) =>
        this.#kube.mergePatch(`/api/v1/namespaces/${pod.namespace}/pods/${pod.name}/status`, { status }).then(
          () => true,
          (err: unknown) => {
            if (String(err).includes('-> 404')) return true; // the pod is gone: nothing to write
            log(`status of ${pod.namespace}/${pod.name}: ${String(err)}; writing it again`);
            return false;
          },
        ),
      event: (pod, container, type, reason, message) => this.#postEvent(pod, container, type, reason, message),
      log: (pod, container, line) => this.#containerLogs.write(pod.namespace, pod.name, container, line),
      startApp: (pod, ip, port, { mounts, ...app }) =>
        this.#podHost('PUT', ip, {
          ...{ ...pod, pod: pod.name, ip, port, appStartMs: this.#settings.appStartMs, ...app },
          mounts: mounts.map((m) => ({
            containerPath: m.containerPath,
            readOnly: m.readOnly,
            // The node's disk: a directory of its own, never the machine's own paths.
            dir: 'host' in m ? join(this.#diskDir, 'host', m.host) : join(this.#diskDir, 'claims', pod.namespace, m.claim, m.subPath),
          })),
        }),
      stopApp: (ip) => this.#podHost('DELETE', ip),
      readObject: (path) => this.#kube.find<{ data?: Record<string, string> }>(path),
    };
  }

  #sizeOf(image: string): number {
    return this.#settings.imageSizes[image] ?? this.#settings.imageSizeBytes;
  }

  async #ensureImage(image: string, policy: string | undefined, onPulling: () => void) {
    const present = this.#images.has(image);
    if (policy === 'Never' || (present && policy !== 'Always'))
      return present ? { pulled: false, pullMs: 0, totalMs: 0, sizeBytes: 0 } : ('absent' as const);
    onPulling();
    const asked = Date.now();
    const s = this.#settings;
    const pullMs = Math.round((s.pullMs * this.#sizeOf(image)) / s.imageSizeBytes);
    const { start, end } = this.#pulls.schedule(
      asked,
      pullMs,
      s.presentPullMs,
      (at) => this.#images.has(image) || (this.#arriving.get(image) ?? Infinity) <= at,
    );
    if (!this.#images.has(image)) this.#arriving.set(image, Math.min(end, this.#arriving.get(image) ?? Infinity));
    await new Promise((r) => setTimeout(r, end - asked));
    if (!this.#images.has(image)) {
      this.#arriving.delete(image);
      this.#images.set(image, this.#sizeOf(image));
      await this.#patchNode({ images: this.#nodeImages() }).catch((err: unknown) => log(`node images: ${String(err)}`));
    }
    return { pulled: true, pullMs: end - start, totalMs: Date.now() - asked, sizeBytes: this.#sizeOf(image) };
  }

  #postEvent(pod: PodRef, container: string | undefined, type: string, reason: string, message: string): void {
    const t = now();
    const component = reason === 'Scheduled' ? 'default-scheduler' : 'kubelet';
    void this.#kube
      .post(`/api/v1/namespaces/${pod.namespace}/events`, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${pod.name}.${randomBytes(8).toString('hex')}`, namespace: pod.namespace },
        involvedObject: {
          apiVersion: 'v1',
          kind: 'Pod',
          name: pod.name,
          namespace: pod.namespace,
          uid: pod.uid,
          ...(container ? { fieldPath: `spec.containers{${container}}` } : {}),
        },
        reason,
        message,
        type,
        source: { component, ...(component === 'kubelet' ? { host: NODE_NAME } : {}) },
        firstTimestamp: t,
        lastTimestamp: t,
        count: 1,
        reportingComponent: component,
        reportingInstance: component === 'kubelet' ? NODE_NAME : '',
      })
      .catch((err: unknown) => log(`event ${reason} of ${pod.namespace}/${pod.name}: ${String(err)}`));
  }

  async #podHost(method: 'PUT' | 'DELETE', ip: string, body?: PodProcess): Promise<void> {
    const res = await fetch(`http://${this.#net.nsIp}:${POD_HOST_PORT}/pods/${ip}`, {
      method,
      ...(body ? { body: JSON.stringify(body) } : {}),
    }).catch((err: unknown) => err as Error);
    if (res instanceof Error || res.status >= 300) log(`pod host ${method} ${ip}: ${res instanceof Error ? res.message : res.status}`);
  }

  // ---- pods ----

  #sync(store: Map<string, KubeObject>, items: KubeObject[]): void {
    const seen = new Set(items.map(key));
    for (const [k, old] of store) if (!seen.has(k)) this.#event(store, { type: 'DELETED', object: old });
    for (const item of items) this.#event(store, { type: 'MODIFIED', object: item });
  }

  #event(store: Map<string, KubeObject>, event: WatchEvent): void {
    const o = store === this.#services ? { ...event.object, kind: 'Service' } : event.object;
    const group = this.#group(o);
    const index = this.#index.get(store) ?? new Map<string, Set<string>>();
    this.#index.set(store, index);
    if (event.type === 'DELETED') {
      store.delete(key(o));
      index.get(group)?.delete(key(o));
    } else {
      store.set(key(o), o);
      index.set(group, (index.get(group) ?? new Set()).add(key(o)));
    }
    if (store === this.#pods) {
      if (event.type === 'DELETED') void this.#release(key(o));
      else this.#onPod(o);
    }
    this.#forward(o);
  }

  #behaviorOf(pod: KubeObject): Behavior {
    const fromAnnotation = pod.metadata.annotations?.[BEHAVIOR_ANNOTATION];
    if (fromAnnotation && (BEHAVIORS as readonly string[]).includes(fromAnnotation)) return fromAnnotation as Behavior;
    return this.#behaviors.get(key(pod)) ?? 'ready';
  }

  #onPod(pod: KubeObject): void {
    const k = key(pod);
    const ns = pod.metadata.namespace ?? '';
    if (pod.metadata.deletionTimestamp) {
      void this.#release(k);
      void this.#kube
        .delete(`/api/v1/namespaces/${ns}/pods/${pod.metadata.name}`, { gracePeriodSeconds: 0 })
        .catch((err: unknown) => log(`force delete ${k}: ${String(err)}`));
      return;
    }
    const spec = (pod.spec ?? {}) as PodSpec;
    const run = this.#runs.get(k)?.run;
    if (run?.ref.uid === pod.metadata.uid) return;
    if (run) void this.#release(k);
    if (spec.nodeName && spec.nodeName !== NODE_NAME) return;
    if (((pod.status ?? {}) as PodStatus).phase === 'Succeeded') return;
    void this.#admit(pod, spec).catch((err: unknown) => log(`run ${k}: ${String(err)}`));
  }

  /** The scheduler's binding, then the pod run. */
  async #admit(pod: KubeObject, spec: PodSpec): Promise<void> {
    const ns = pod.metadata.namespace ?? '';
    const name = pod.metadata.name;
    const ref: PodRef = { namespace: ns, name, uid: pod.metadata.uid ?? '', sandboxId: pod.metadata.labels?.['sandbox-id'] ?? name };
    const behavior = this.#behaviorOf(pod);
    if (behavior === 'unschedulable') return this.#unschedulable(ref, '0/1 nodes are available: 1 Insufficient cpu.');
    if (!spec.nodeName && (await this.#heldForClaims(pod, spec, ref))) return;
    const ip = this.#freeIps.shift() ?? this.#nextIp++;
    const run = new PodRun(this.#node(), ref, spec, behavior, podAddress(this.#net, ip));
    this.#runs.set(key(pod), { run, ip });
    if (!spec.nodeName) {
      const bound = await this.#kube
        .post(`/api/v1/namespaces/${ns}/pods/${name}/binding`, {
          apiVersion: 'v1',
          kind: 'Binding',
          metadata: { name },
          target: { apiVersion: 'v1', kind: 'Node', name: NODE_NAME },
        })
        .then(
          () => true,
          // 409: bound already (an earlier try whose answer was lost): this node runs it.
          (err: unknown) => (String(err).includes('-> 409') ? true : err),
        );
      if (bound !== true) {
        // Not bound (the API server is out): the scheduler tries again, as kube-scheduler's queue does;
        // keeping the run would have left the pod Pending for good.
        this.#runs.delete(key(pod));
        this.#freeIps.push(ip);
        log(`bind ${key(pod)}: ${String(bound)}; trying again`);
        return this.#retry(pod, 1000);
      }
      this.#postEvent(ref, undefined, 'Normal', 'Scheduled', `Successfully assigned ${ns}/${name} to ${NODE_NAME}`);
    }
    await run.run();
  }

  /**
   * The scheduler's volume binding: a pod whose PersistentVolumeClaim is missing or not bound is not
   * scheduled (Unschedulable, with kube-scheduler's words) until it is; tried again every 2 s.
   */
  async #heldForClaims(pod: KubeObject, spec: PodSpec, ref: PodRef): Promise<boolean> {
    const claims = (spec.volumes ?? []).flatMap((v) => (v.persistentVolumeClaim ? [v.persistentVolumeClaim.claimName] : []));
    if (claims.length === 0) return false;
    const k = key(pod);
    if (this.#holding.has(k)) return true;
    this.#holding.add(k);
    let problem: string | undefined;
    for (const name of claims) {
      const claim = await this.#kube.find(`/api/v1/namespaces/${ref.namespace}/persistentvolumeclaims/${name}`).catch(() => undefined);
      if (!claim) problem = `persistentvolumeclaim "${name}" not found`;
      else if ((claim.status as { phase?: string } | undefined)?.phase !== 'Bound')
        problem = 'pod has unbound immediate PersistentVolumeClaims';
      if (problem) break;
    }
    if (!problem) {
      this.#holding.delete(k);
      return false;
    }
    const message = `0/1 nodes are available: ${problem}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.`;
    const shown = ((pod.status ?? {}) as PodStatus).conditions?.find((c) => c.type === 'PodScheduled')?.message;
    if (shown !== message) await this.#unschedulable(ref, message).catch((err: unknown) => log(`hold ${k}: ${String(err)}`));
    this.#retry(pod, 2000, () => this.#holding.delete(k));
    return true;
  }

  /** The scheduler's answer for a pod it cannot place: Pending, PodScheduled False (Unschedulable), and its event. */
  async #unschedulable(ref: PodRef, message: string): Promise<void> {
    await this.#kube.mergePatch(`/api/v1/namespaces/${ref.namespace}/pods/${ref.name}/status`, {
      status: {
        phase: 'Pending',
        conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message, lastTransitionTime: now() }],
      },
    });
    this.#postEvent(ref, undefined, 'Warning', 'FailedScheduling', message);
  }

  /** Tries a pod again after `ms`, as the scheduler's queue does, if it is still the same pod. */
  #retry(pod: KubeObject, ms: number, before?: () => void): void {
    setTimeout(() => {
      before?.();
      const latest = this.#pods.get(key(pod));
      if (!this.#abort.signal.aborted && latest && latest.metadata.uid === pod.metadata.uid) this.#onPod(latest);
    }, ms).unref();
  }

  async #release(k: string): Promise<void> {
    const entry = this.#runs.get(k);
    if (!entry) return;
    this.#runs.delete(k);
    await entry.run.stop();
    this.#containerLogs.forget(entry.run.ref.namespace, entry.run.ref.name);
    this.#freeIps.push(entry.ip);
  }

  // ---- kube-proxy: NodePorts ----

  /** Sandboxes select on `sandbox-id`: objects are grouped by namespace and that label (others by namespace). */
  #group(o: KubeObject): string {
    return `${o.metadata.namespace}/${o.metadata.labels?.['sandbox-id'] ?? ''}`;
  }

  /** The objects of `store` in the group of `o`. */
  #inGroup(store: Map<string, KubeObject>, o: KubeObject): KubeObject[] {
    if (o.metadata.labels?.['sandbox-id'] === undefined)
      return [...store.values()].filter((x) => x.metadata.namespace === o.metadata.namespace);
    return [...(this.#index.get(store)?.get(this.#group(o)) ?? [])].flatMap((k) => store.get(k) ?? []);
  }

  /** NodePort Services of the changed object's sandbox (or namespace): forward each to a Ready pod, or to nothing. */
  #forward(changed: KubeObject): void {
    // Services without a sandbox-id label (`kubectl expose`, a Service of one's own) may select any pod
    // of the namespace: with one there, every pod of the namespace is looked at.
    const ungrouped =
      changed.metadata.labels?.['sandbox-id'] === undefined
        ? []
        : [...(this.#index.get(this.#services)?.get(`${changed.metadata.namespace}/`) ?? [])].flatMap((k) => this.#services.get(k) ?? []);
    const candidates = ungrouped.length
      ? [...this.#pods.values()].filter((p) => p.metadata.namespace === changed.metadata.namespace)
      : this.#inGroup(this.#pods, changed);
    const pods = candidates.filter((p) => isReady(p) && !p.metadata.deletionTimestamp);
    const services = [...this.#inGroup(this.#services, changed), ...ungrouped];
    const wanted = new Map<number, { service: string; target: string }>();
    for (const svc of services) {
      const spec = (svc.spec ?? {}) as ServiceSpec;
      if (svc.metadata.deletionTimestamp || spec.type !== 'NodePort' || !spec.selector) continue;
      const selector = Object.entries(spec.selector);
      const pod = pods.find((p) => selector.every(([k, v]) => p.metadata.labels?.[k] === v));
      const ip = (pod?.status as PodStatus | undefined)?.podIP;
      if (!ip) continue;
      for (const port of spec.ports ?? []) {
        const target = typeof port.targetPort === 'number' ? port.targetPort : (port.port ?? 8080);
        if (port.nodePort) wanted.set(port.nodePort, { service: key(svc), target: `${ip}:${target}` });
      }
    }
    const groupServices = new Set(services.map(key));
    if (changed.kind === 'Service') groupServices.add(key(changed));
    for (const [port, f] of this.#forwarders) {
      if (groupServices.has(f.service) && wanted.get(port)?.target !== f.target) {
        f.server.close();
        this.#forwarders.delete(port);
      }
    }
    for (const [port, w] of wanted)
      if (!this.#forwarders.has(port)) this.#forwarders.set(port, { ...w, server: forwarder(port, w.target) });
  }
}

/** A TCP forwarder from 127.0.0.1:port to host:port, as kube-proxy forwards a node port to a Ready endpoint. */
function forwarder(port: number, target: string): TcpServer {
  const [host = '', targetPort = ''] = target.split(':');
  const server = createTcpServer((client) => {
    const upstream = connect(Number(targetPort), host);
    client.pipe(upstream).pipe(client);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  server.on('error', (err) => log(`node port ${port}: ${String(err)}`));
  server.on('close', () => undefined);
  return server.listen(port, '127.0.0.1');
}

function controlServer(node: FakeNode, port: number): void {
  const routes: Record<string, (body: Record<string, unknown>) => Promise<unknown> | unknown> = {
    'POST /behavior': ({ namespace, name, behavior }) => {
      if (!BEHAVIORS.includes(behavior as Behavior)) throw new Error(`unknown behavior ${String(behavior)}`);
      node.setBehavior(String(namespace), String(name), behavior as Behavior);
    },
    'POST /settings': (body) => node.settings(body as Partial<Settings>),
    'GET /settings': () => node.settings(),
    'POST /images': ({ present }) => node.setImages((present as string[] | undefined) ?? []),
  };
  createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      const route = routes[`${req.method} ${req.url}`];
      if (!route) return void res.writeHead(404).end();
      Promise.resolve()
        .then(() => route(text ? (JSON.parse(text) as Record<string, unknown>) : {}))
        .then(
          (out) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out ?? { ok: true })),
          (err: unknown) => res.writeHead(400).end(JSON.stringify({ detail: String(err) })),
        );
    });
  }).listen(port, '127.0.0.1');
}

export function settingsFromEnv(env: NodeJS.ProcessEnv): Settings {
  const n = (name: string, def: number) => Number(env[name] ?? def);
  return {
    startMs: n('FAKE_NODE_START_MS', 300),
    appStartMs: n('FAKE_NODE_APP_START_MS', 0),
    pullMs: n('FAKE_NODE_PULL_MS', 0),
    presentPullMs: 100,
    imageSizeBytes: n('FAKE_NODE_IMAGE_SIZE_BYTES', 2_684_354_560),
    imageSizes: { 'registry.k8s.io/pause:3.10': 736_000 },
    imageUsers: { 'registry.k8s.io/pause:3.10': '65535' },
  };
}

if (import.meta.main) {
  const kubeconfig = process.env['KUBECONFIG'];
  if (!kubeconfig) throw new Error('fake-node: KUBECONFIG is required');
  const { readState } = await import('./cluster.ts');
  const { dirname } = await import('node:path');
  const state = readState(dirname(kubeconfig));
  if (!state?.podNetwork) throw new Error(`fake-node: no cluster state with a pod network next to ${kubeconfig}`);
  const { kubeFromState } = await import('./kube-http.ts');
  const node = new FakeNode(
    kubeFromState(state),
    state.podNetwork,
    settingsFromEnv(process.env),
    join(state.dir, 'pki'),
    join(state.dir, 'node-disk'),
  );
  await node.start();
  controlServer(node, Number(process.env['FAKE_NODE_CONTROL_PORT'] ?? '0'));
  process.on('SIGTERM', () => void node.stop().then(() => process.exit(0)));
}
