// The fake node: stands in for a kubelet (and the scheduler) on the local control plane.
// - registers Node `fake-node` and keeps it Ready;
// - binds pending pods to itself and, after FAKE_NODE_READY_DELAY_MS, marks them Running and Ready;
// - models the AIO image where a client would notice: a `sandbox` container that cannot setuid or
//   escalate privileges crash-loops, as supervisord and sudo would;
// - can be told to fail a pod (annotation `fake-node/behavior` or POST /behavior on the control port):
//   never-ready, crash (Failed), crashloop (CrashLoopBackOff after OOMKilled), image-pull
//   (ImagePullBackOff), unschedulable;
// - force-deletes terminating pods;
// - for each NodePort Service whose selected pod is Ready, serves the sandbox stand-in on
//   127.0.0.1:<nodePort>, and stops when the pod or the service goes away.

import { createServer, type Server } from 'node:http';
import { KubeHttp, type KubeObject, type WatchEvent } from './kube-http.ts';
import { startStandin } from './sandbox-standin.ts';

export const NODE_NAME = 'fake-node';
export const BEHAVIOR_ANNOTATION = 'fake-node/behavior';
export const BEHAVIORS = ['ready', 'never-ready', 'crash', 'crashloop', 'image-pull', 'unschedulable'] as const;
export type Behavior = (typeof BEHAVIORS)[number];

type SecurityContext = { allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[]; add?: string[] } };
type PodSpec = { nodeName?: string; containers?: { name: string; image: string; securityContext?: SecurityContext }[] };

/**
 * What the AIO sandbox image does under a securityContext it cannot live with: supervisord starts its
 * services as the `gem` user (setuid/setgid) and `sudo` needs privilege escalation. Without them the
 * container exits at once and the kubelet reports CrashLoopBackOff. Undefined when it can start.
 */
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
type ServiceSpec = { type?: string; selector?: Record<string, string>; ports?: { nodePort?: number }[] };

const key = (o: KubeObject): string => `${o.metadata.namespace}/${o.metadata.name}`;
const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const log = (msg: string): void => console.log(`${new Date().toISOString()} ${msg}`);

export class FakeNode {
  #kube: KubeHttp;
  #readyDelayMs: number;
  #abort = new AbortController();
  #pods = new Map<string, KubeObject>();
  #services = new Map<string, KubeObject>();
  #behaviors = new Map<string, Behavior>();
  #timers = new Map<string, NodeJS.Timeout>();
  #handled = new Map<string, string>(); // pod key -> uid it was started for
  #listeners = new Map<number, { server: Promise<Server | undefined>; service: string }>();
  #nextIp = 1;
  #serving = new Set<string>(); // pods whose container listens (before Ready, as a readiness probe implies)
  #podIndex = new Map<string, Set<string>>(); // namespace/sandbox-id -> pod keys
  #serviceIndex = new Map<string, Set<string>>();

  constructor(kube: KubeHttp, readyDelayMs: number) {
    this.#kube = kube;
    this.#readyDelayMs = readyDelayMs;
  }

  async start(): Promise<void> {
    await this.#register();
    const signal = this.#abort.signal;
    const onError = (err: unknown) => log(`watch error: ${String(err)}`);
    void this.#kube.informer(
      '/api/v1/pods',
      { onSync: (items) => this.#syncAll(this.#pods, items, (p) => this.#onPod(p)), onEvent: (e) => this.#podEvent(e), onError },
      signal,
    );
    void this.#kube.informer(
      '/api/v1/services',
      {
        onSync: (items) => this.#syncAll(this.#services, items, (s) => this.#onService(s)),
        onEvent: (e) => this.#serviceEvent(e),
        onError,
      },
      signal,
    );
    const heartbeat = setInterval(() => void this.#patchNodeStatus().catch((err: unknown) => log(`heartbeat: ${String(err)}`)), 20_000);
    signal.addEventListener('abort', () => clearInterval(heartbeat));
  }

  setBehavior(namespace: string, name: string, behavior: Behavior): void {
    const k = `${namespace}/${name}`;
    this.#behaviors.set(k, behavior);
    const pod = this.#pods.get(k);
    if (pod) {
      this.#handled.delete(k);
      this.#onPod(pod);
    }
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    for (const timer of this.#timers.values()) clearTimeout(timer);
    await Promise.all([...this.#listeners.keys()].map((port) => this.#closePort(port)));
  }

  async #register(): Promise<void> {
    const existing = await this.#kube.find(`/api/v1/nodes/${NODE_NAME}`);
    if (!existing) {
      await this.#kube.post('/api/v1/nodes', {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: NODE_NAME, labels: { 'kubernetes.io/hostname': NODE_NAME, 'kubernetes.io/os': 'linux', type: 'fake' } },
        spec: {},
      });
    }
    await this.#patchNodeStatus();
    log(`node ${NODE_NAME} registered`);
  }

  #patchNodeStatus(): Promise<KubeObject> {
    const resources = { cpu: '64', memory: '256Gi', pods: '20000', 'ephemeral-storage': '1Ti' };
    const t = now();
    return this.#kube.mergePatch(`/api/v1/nodes/${NODE_NAME}/status`, {
      status: {
        capacity: resources,
        allocatable: resources,
        addresses: [
          { type: 'InternalIP', address: '127.0.0.1' },
          { type: 'Hostname', address: NODE_NAME },
        ],
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
      },
    });
  }

  #syncAll(store: Map<string, KubeObject>, items: KubeObject[], onItem: (o: KubeObject) => void): void {
    const seen = new Set(items.map(key));
    for (const [k, old] of store) if (!seen.has(k)) this.#remove(store, old);
    for (const item of items) {
      this.#put(store, item);
      onItem(item);
    }
  }

  #indexKey(obj: KubeObject): string | undefined {
    const id = obj.metadata.labels?.['sandbox-id'];
    return id === undefined ? undefined : `${obj.metadata.namespace}/${id}`;
  }

  #put(store: Map<string, KubeObject>, obj: KubeObject): void {
    const old = store.get(key(obj));
    if (old) this.#unindex(store, old);
    store.set(key(obj), obj);
    const k = this.#indexKey(obj);
    if (k === undefined) return;
    const index = store === this.#pods ? this.#podIndex : this.#serviceIndex;
    const set = index.get(k) ?? new Set<string>();
    set.add(key(obj));
    index.set(k, set);
  }

  #unindex(store: Map<string, KubeObject>, obj: KubeObject): void {
    const k = this.#indexKey(obj);
    if (k === undefined) return;
    const index = store === this.#pods ? this.#podIndex : this.#serviceIndex;
    index.get(k)?.delete(key(obj));
    if (index.get(k)?.size === 0) index.delete(k);
  }

  #remove(store: Map<string, KubeObject>, obj: KubeObject): void {
    store.delete(key(obj));
    if (store === this.#pods) {
      clearTimeout(this.#timers.get(key(obj)));
      this.#timers.delete(key(obj));
      this.#handled.delete(key(obj));
      this.#behaviors.delete(key(obj));
      this.#serving.delete(key(obj));
    }
    this.#unindex(store, obj);
    this.#refreshPortsFor(obj);
  }

  #podEvent(event: WatchEvent): void {
    if (event.type === 'DELETED') return this.#remove(this.#pods, event.object);
    this.#put(this.#pods, event.object);
    this.#onPod(event.object);
  }

  #serviceEvent(event: WatchEvent): void {
    if (event.type === 'DELETED') return this.#remove(this.#services, event.object);
    this.#put(this.#services, { ...event.object, kind: 'Service' });
    this.#onService(event.object);
  }

  #behaviorOf(pod: KubeObject): Behavior {
    const fromAnnotation = pod.metadata.annotations?.[BEHAVIOR_ANNOTATION];
    if (fromAnnotation && (BEHAVIORS as readonly string[]).includes(fromAnnotation)) return fromAnnotation as Behavior;
    return this.#behaviors.get(key(pod)) ?? 'ready';
  }

  #onPod(pod: KubeObject): void {
    const k = key(pod);
    const ns = pod.metadata.namespace ?? '';
    const spec = (pod.spec ?? {}) as PodSpec;
    if (pod.metadata.deletionTimestamp) {
      clearTimeout(this.#timers.get(k));
      this.#timers.delete(k);
      this.#refreshPortsFor(pod);
      void this.#kube
        .delete(`/api/v1/namespaces/${ns}/pods/${pod.metadata.name}`, { gracePeriodSeconds: 0 })
        .catch((err: unknown) => log(`force delete ${k}: ${String(err)}`));
      return;
    }
    this.#refreshPortsFor(pod);
    if (this.#handled.get(k) === pod.metadata.uid) return;
    if (spec.nodeName && spec.nodeName !== NODE_NAME) return;
    this.#handled.set(k, pod.metadata.uid ?? '');
    const behavior = this.#behaviorOf(pod);
    void this.#drive(pod, behavior, spec).catch((err: unknown) => {
      log(`drive ${k} (${behavior}): ${String(err)}`);
      this.#handled.delete(k);
    });
  }

  async #drive(pod: KubeObject, behavior: Behavior, spec: PodSpec): Promise<void> {
    const ns = pod.metadata.namespace ?? '';
    const name = pod.metadata.name;
    const base = `/api/v1/namespaces/${ns}/pods/${name}`;
    if (behavior === 'unschedulable') {
      await this.#kube.mergePatch(`${base}/status`, {
        status: {
          phase: 'Pending',
          conditions: [
            {
              type: 'PodScheduled',
              status: 'False',
              reason: 'Unschedulable',
              message: '0/1 nodes are available: 1 Insufficient cpu.',
              lastTransitionTime: now(),
            },
          ],
        },
      });
      return;
    }
    if (!spec.nodeName) {
      await this.#kube.post(`${base}/binding`, {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name },
        target: { apiVersion: 'v1', kind: 'Node', name: NODE_NAME },
      });
    }
    const containers = spec.containers ?? [];
    const ip = `10.244.${Math.floor(this.#nextIp / 250)}.${(this.#nextIp % 250) + 1}`;
    this.#nextIp += 1;
    const t = now();
    const statusOf = (state: Record<string, unknown>, ready: boolean, extra: Record<string, unknown> = {}) =>
      containers.map((c) => ({ name: c.name, image: c.image, imageID: '', ready, started: ready, restartCount: 0, state, ...extra }));
    const conditions = (ready: boolean) => [
      { type: 'PodScheduled', status: 'True', lastTransitionTime: t },
      { type: 'Initialized', status: 'True', lastTransitionTime: t },
      { type: 'ContainersReady', status: ready ? 'True' : 'False', lastTransitionTime: now() },
      { type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: now() },
    ];
    /** A container that keeps exiting: CrashLoopBackOff now, its last termination as given. */
    const crashLoop = (message: string, terminated: Record<string, unknown>) => ({
      phase: 'Running',
      podIP: ip,
      podIPs: [{ ip }],
      conditions: conditions(false),
      containerStatuses: statusOf({ waiting: { reason: 'CrashLoopBackOff', message } }, false, {
        restartCount: 3,
        lastState: { terminated: { ...terminated, finishedAt: now() } },
      }),
    });
    await this.#kube.mergePatch(`${base}/status`, {
      status: {
        phase: 'Pending',
        hostIP: '127.0.0.1',
        startTime: t,
        conditions: conditions(false),
        containerStatuses: statusOf({ waiting: { reason: behavior === 'image-pull' ? 'ImagePullBackOff' : 'ContainerCreating' } }, false),
      },
    });
    if (behavior === 'image-pull') return;
    await new Promise<void>((ok) => {
      this.#timers.set(key(pod), setTimeout(ok, this.#readyDelayMs));
    });
    if (!this.#pods.has(key(pod)) || this.#pods.get(key(pod))?.metadata.deletionTimestamp) return;
    const running = { running: { startedAt: t } };
    const refusal = behavior === 'ready' ? aioImageRefusal(spec) : undefined;
    let status: Record<string, unknown>;
    switch (refusal ? 'refused' : behavior) {
      case 'refused':
        status = crashLoop(`back-off 10s restarting failed container=sandbox: ${refusal}`, {
          exitCode: 1,
          reason: 'Error',
          message: refusal,
        });
        break;
      case 'ready':
        // A kubelet reports Ready only once the readiness probe passed, i.e. the server listens: start the
        // stand-in first, so nobody who sees Ready can race its listener.
        this.#serving.add(key(pod));
        this.#refreshPortsFor(pod);
        await Promise.all([...this.#listeners.values()].map((l) => l.server));
        status = {
          phase: 'Running',
          podIP: ip,
          podIPs: [{ ip }],
          conditions: conditions(true),
          containerStatuses: statusOf(running, true),
        };
        break;
      case 'never-ready':
        status = {
          phase: 'Running',
          podIP: ip,
          podIPs: [{ ip }],
          conditions: conditions(false),
          containerStatuses: statusOf(running, false),
        };
        break;
      case 'crashloop':
        status = crashLoop('back-off 10s restarting failed container', { exitCode: 137, reason: 'OOMKilled' });
        break;
      case 'crash':
        status = {
          phase: 'Failed',
          podIP: ip,
          podIPs: [{ ip }],
          conditions: conditions(false),
          containerStatuses: statusOf({ terminated: { exitCode: 1, reason: 'Error', finishedAt: now() } }, false),
        };
        break;
    }
    await this.#kube.mergePatch(`${base}/status`, { status });
    log(`pod ${key(pod)} -> ${behavior}`);
  }

  #onService(svc: KubeObject): void {
    this.#refreshPortsFor(svc);
  }

  // Pods and services are matched by selector. Sandboxes select on `sandbox-id`, so both are indexed by
  // namespace + that label and an event looks only at its own sandbox (10,000 per namespace stay cheap);
  // objects without the label fall back to a scan of the namespace.
  #group(obj: KubeObject): (o: KubeObject) => boolean {
    const ns = obj.metadata.namespace;
    const id = obj.metadata.labels?.['sandbox-id'];
    return (o) => o.metadata.namespace === ns && (id === undefined || o.metadata.labels?.['sandbox-id'] === id);
  }

  #refreshPortsFor(changed: KubeObject): void {
    const inGroup = this.#group(changed);
    const pods = this.#candidates(this.#pods, changed).filter(
      (p) => inGroup(p) && (isReady(p) || this.#serving.has(key(p))) && !p.metadata.deletionTimestamp,
    );
    const wanted = new Map<number, { service: KubeObject; pod: KubeObject }>();
    const groupServices = this.#candidates(this.#services, changed).filter(inGroup);
    for (const svc of groupServices) {
      if (svc.metadata.deletionTimestamp) continue;
      const spec = (svc.spec ?? {}) as ServiceSpec;
      if (spec.type !== 'NodePort' || !spec.selector) continue;
      const selector = Object.entries(spec.selector);
      const pod = pods.find((p) => selector.every(([k, v]) => p.metadata.labels?.[k] === v));
      if (!pod) continue;
      for (const port of spec.ports ?? []) if (port.nodePort) wanted.set(port.nodePort, { service: svc, pod });
    }
    const groupKeys = new Set(groupServices.map(key));
    if (changed.kind === 'Service' || this.#services.has(key(changed)) === false) groupKeys.add(key(changed));
    for (const [port, entry] of this.#listeners) {
      if (groupKeys.has(entry.service) && !wanted.has(port)) void this.#closePort(port);
    }
    for (const [port, { service, pod }] of wanted) {
      if (this.#listeners.has(port)) continue;
      const info = {
        namespace: pod.metadata.namespace ?? '',
        pod: pod.metadata.name,
        sandboxId: pod.metadata.labels?.['sandbox-id'] ?? pod.metadata.name,
      };
      const server = startStandin(info, port).catch((err: unknown) => {
        log(`listen ${port}: ${String(err)}`);
        return undefined;
      });
      this.#listeners.set(port, { server, service: key(service) });
    }
  }

  /** Objects of `store` that may be in the same group as `changed` (index lookup by sandbox id). */
  #candidates(store: Map<string, KubeObject>, changed: KubeObject): KubeObject[] {
    const id = changed.metadata.labels?.['sandbox-id'];
    const ns = changed.metadata.namespace ?? '';
    if (id === undefined) return [...store.values()];
    const index = store === this.#pods ? this.#podIndex : this.#serviceIndex;
    return [...(index.get(`${ns}/${id}`) ?? [])].flatMap((k) => store.get(k) ?? []);
  }

  async #closePort(port: number): Promise<void> {
    const entry = this.#listeners.get(port);
    this.#listeners.delete(port);
    const server = await entry?.server;
    if (!server) return;
    server.closeAllConnections();
    server.close();
    server.emit('close');
  }
}

function isReady(pod: KubeObject): boolean {
  const conditions = ((pod.status ?? {}) as { conditions?: { type: string; status: string }[] }).conditions ?? [];
  return conditions.some((c) => c.type === 'Ready' && c.status === 'True');
}

function controlServer(node: FakeNode, port: number): Server {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      try {
        if (req.method === 'POST' && req.url === '/behavior') {
          const { namespace, name, behavior } = JSON.parse(body) as { namespace: string; name: string; behavior: Behavior };
          if (!BEHAVIORS.includes(behavior)) throw new Error(`unknown behavior ${behavior}`);
          node.setBehavior(namespace, name, behavior);
          res.writeHead(200).end('{"ok":true}');
          return;
        }
        res.writeHead(404).end();
      } catch (err) {
        res.writeHead(400).end(JSON.stringify({ detail: String(err) }));
      }
    });
  });
  return server.listen(port, '127.0.0.1');
}

if (import.meta.main) {
  const kubeconfig = process.env['KUBECONFIG'];
  if (!kubeconfig) throw new Error('fake-node: KUBECONFIG is required');
  const { readState } = await import('./cluster.ts');
  const { dirname } = await import('node:path');
  const state = readState(dirname(kubeconfig));
  if (!state) throw new Error(`fake-node: no cluster state next to ${kubeconfig}`);
  const { kubeFromState } = await import('./kube-http.ts');
  const node = new FakeNode(kubeFromState(state), Number(process.env['FAKE_NODE_READY_DELAY_MS'] ?? '300'));
  await node.start();
  controlServer(node, Number(process.env['FAKE_NODE_CONTROL_PORT'] ?? '0'));
  process.on('SIGTERM', () => void node.stop().then(() => process.exit(0)));
}
