// An in-memory Kubernetes API for unit tests: the `Kube` interface of src/kube/client.ts over a map of
// namespaces, pods and services, with the API server's rules that the service relies on — uids and
// resourceVersions, AlreadyExists, NotFound, delete preconditions (409 Conflict), merge patches, dry
// runs, node port and cluster IP allocation, label-selected lists and watches (replayed from a
// resourceVersion), and the garbage collector's removal of a service owned by a deleted pod. Tests
// can refuse requests the way admission does, and move a pod's status as a kubelet would.
// It is no substitute for the real API server: the integration suite runs against one.

import { randomUUID } from 'node:crypto';
import type { V1DeleteOptions } from '@kubernetes/client-node';
import type { ServiceJson, Wire, WireMeta } from '../src/domain/wire.ts';
import type { Kube, KubeRequestOptions, KubeResponse } from '../src/kube/client.ts';
import { KubeApiError, KubeUnavailableError, type KubeStatus } from '../src/kube/errors.ts';

/** Any object of the store (pods, services, events, nodes, routes, gateways), as JSON; it always has a name. */
export type FakeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: WireMeta & { name: string };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
};
type Resource = 'pods' | 'services' | 'events' | 'nodes' | 'httproutes' | 'gateways';
type Event = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; resource: Resource; object: FakeObject; rv: number };
type Watcher = {
  resource: Resource;
  ns: string;
  selector: string | null;
  onEvent: (type: string, object: unknown) => void;
  onDone: (err: unknown) => void;
};
type Refusal = { method: string; path: RegExp; status: number; body: KubeStatus; times: number };
type Rule = { verbs: string[]; apiGroups: string[]; resources: string[] };

const ALL_RULES: Rule[] = [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }];
const clone = <T>(o: T): T => structuredClone(o);
const status = (code: number, reason: string, message: string, details?: KubeStatus['details']): KubeStatus => ({
  kind: 'Status',
  status: 'Failure',
  code,
  reason,
  message,
  ...(details ? { details } : {}),
});

/** RFC 7386 merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as object) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** `a=b,c` selectors: equality and existence, as the service's own selector uses. */
function selects(selector: string | null, labels: Record<string, string> | undefined): boolean {
  if (!selector) return true;
  return selector.split(',').every((term) => {
    const [k = '', v] = term.split('=');
    return v === undefined ? labels?.[k] !== undefined : labels?.[k] === v;
  });
}

export class FakeKube implements Kube {
  readonly server = 'https://fake-kube.invalid';
  readonly source = 'fake';
  readonly namespaces = new Set<string>();
  /** Every request, in order (method and path). */
  readonly calls: { method: string; path: string; body: unknown }[] = [];
  /** What SelfSubjectRulesReview answers (all verbs by default). */
  rules: Rule[] = ALL_RULES;
  /** Called before each request is served: tests use it to interleave another client's writes. */
  beforeRequest: ((method: string, path: string) => void) | undefined;
  /** When true, the API server answers nothing (a freeze): requests and probes fail as timeouts would. */
  down = false;
  /** Whether the Gateway API (HTTPRoute v1) is served. */
  gatewayApi = false;
  #objects = new Map<string, FakeObject>();
  #history: Event[] = [];
  #watchers = new Set<Watcher>();
  #refusals: Refusal[] = [];
  #rv = 1;
  #nodePort = 30000;
  #clusterIp = 1;

  constructor(namespaces: string[] = ['default']) {
    for (const ns of namespaces) this.namespaces.add(ns);
  }

  /** Refuses the next `times` requests matching method and path with this status (as admission would). */
  refuse(
    method: string,
    path: RegExp,
    code: number,
    message: string,
    options: { reason?: string; times?: number; details?: KubeStatus['details'] } = {},
  ): void {
    this.#refusals.push({
      method,
      path,
      status: code,
      body: status(code, options.reason ?? 'Forbidden', message, options.details),
      times: options.times ?? 1,
    });
  }

  /** Puts a node (cluster-scoped), as a kubelet registers and updates it. */
  putNode(node: FakeObject): FakeObject {
    const existing = this.#objects.get(`nodes//${node.metadata.name}`);
    return this.#store(
      'nodes',
      '',
      existing ? (mergePatch(existing, node) as FakeObject) : { ...node, metadata: { ...node.metadata, uid: randomUUID() } },
      existing ? 'MODIFIED' : 'ADDED',
    );
  }

  get(resource: Resource, ns: string, name: string): FakeObject | undefined {
    const o = this.#objects.get(`${resource}/${ns}/${name}`);
    return o && clone(o);
  }

  list(resource: Resource, ns: string): FakeObject[] {
    return [...this.#objects.entries()].filter(([k]) => k.startsWith(`${resource}/${ns}/`)).map(([, o]) => clone(o));
  }

  /** Puts an object as another client would (created or replaced), with its watch event. */
  put(resource: Resource, ns: string, object: FakeObject): FakeObject {
    const key = `${resource}/${ns}/${object.metadata.name}`;
    const existing = this.#objects.get(key);
    return this.#store(
      resource,
      ns,
      existing ? (mergePatch(existing, object) as FakeObject) : this.#created(resource, ns, object),
      existing ? 'MODIFIED' : 'ADDED',
    );
  }

  /** Moves a pod's status as a kubelet would: Running and Ready (at `podIP`), or anything given. */
  setPodStatus(ns: string, name: string, statusPatch: Record<string, unknown>): FakeObject {
    const pod = this.#objects.get(`pods/${ns}/${name}`);
    if (!pod) throw new Error(`no pod ${ns}/${name}`);
    return this.#store('pods', ns, { ...pod, status: mergePatch(pod.status, statusPatch) as Record<string, unknown> }, 'MODIFIED');
  }

  /** `at`: the node's clock when it marked the pod Ready (another machine's clock: it may be skewed). */
  ready(ns: string, name: string, podIP = '127.0.0.1', at = new Date()): FakeObject {
    const t = at.toISOString();
    return this.setPodStatus(ns, name, {
      phase: 'Running',
      podIP,
      conditions: [
        { type: 'PodScheduled', status: 'True', lastTransitionTime: t },
        { type: 'Ready', status: 'True', lastTransitionTime: t },
      ],
    });
  }

  async request(method: string, path: string, options: KubeRequestOptions = {}): Promise<KubeResponse> {
    this.beforeRequest?.(method, path);
    this.calls.push({ method, path, body: options.body });
    if (this.down) throw new KubeUnavailableError(method, path, { name: 'TimeoutError' });
    const refusal = this.#refusals.find((r) => r.method === method && r.path.test(path));
    if (refusal) {
      refusal.times -= 1;
      if (refusal.times <= 0) this.#refusals.splice(this.#refusals.indexOf(refusal), 1);
      throw new KubeApiError(method, path, refusal.status, refusal.body);
    }
    const body = this.#serve(method, new URL(path, 'http://fake'), options.body);
    return { status: method === 'POST' ? 201 : 200, body: clone(body), text: JSON.stringify(body) };
  }

  async watch(
    path: string,
    onEvent: (type: string, object: unknown) => void,
    onDone: (err: unknown) => void,
  ): Promise<{ abort: () => void }> {
    const url = new URL(path, 'http://fake');
    const [, ns = '', resource = 'nodes'] =
      /^\/apis?(?:\/gateway\.networking\.k8s\.io)?\/v1\/namespaces\/([^/]+)\/(pods|services|events|httproutes)$/.exec(url.pathname) ?? [];
    const watcher: Watcher = { resource: resource as Resource, ns, selector: url.searchParams.get('labelSelector'), onEvent, onDone };
    const from = Number(url.searchParams.get('resourceVersion') ?? '0');
    for (const e of this.#history) if (e.rv > from) this.#deliver(watcher, e);
    this.#watchers.add(watcher);
    return {
      abort: () => {
        if (this.#watchers.delete(watcher)) onDone(undefined);
      },
    };
  }

  /** Logs are kubelet's: this fake API has none (the integration tests read them through a real API server). */
  async stream(path: string): Promise<NodeJS.ReadableStream> {
    throw new KubeApiError('GET', path, 404, { message: 'the fake API serves no pod logs', code: 404 });
  }

  async probe(): Promise<void> {
    if (this.down) throw new KubeUnavailableError('GET', '/version', { name: 'TimeoutError' });
  }

  async close(): Promise<void> {
    for (const w of this.#watchers) w.onDone(undefined);
    this.#watchers.clear();
  }

  #deliver(w: Watcher, e: Event): void {
    if (w.resource === e.resource && e.object.metadata.namespace === w.ns && selects(w.selector, e.object.metadata.labels))
      w.onEvent(e.type, clone(e.object));
  }

  #store(resource: Resource, ns: string, object: FakeObject, type: Event['type']): FakeObject {
    this.#rv += 1;
    object.metadata.resourceVersion = String(this.#rv);
    const key = `${resource}/${ns}/${object.metadata.name}`;
    if (type === 'DELETED') this.#objects.delete(key);
    else this.#objects.set(key, object);
    const event: Event = { type, resource, object: clone(object), rv: this.#rv };
    this.#history.push(event);
    for (const w of this.#watchers) this.#deliver(w, event);
    return clone(object);
  }

  #created(resource: Resource, ns: string, body: FakeObject): FakeObject {
    const object = clone(body);
    object.metadata = {
      ...object.metadata,
      namespace: ns,
      uid: randomUUID(),
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    if (resource === 'services') {
      const spec = (object.spec ??= {}) as NonNullable<ServiceJson['spec']>;
      spec.clusterIP ??= `10.96.0.${this.#clusterIp++ % 250}`;
      if (spec.type === 'NodePort') for (const p of spec.ports ?? []) p.nodePort ??= this.#nodePort++;
    } else {
      object.status = { phase: 'Pending', ...object.status };
    }
    return object;
  }

  #serve(method: string, url: URL, body: unknown): unknown {
    const p = url.pathname;
    if (p === '/version') return { major: '1', minor: '37', gitVersion: 'v1.37.2-fake' };
    if (p === '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews') return { status: { resourceRules: this.rules, incomplete: false } };
    if (p === '/api/v1/namespaces' && method === 'POST') {
      const name = (body as FakeObject).metadata.name;
      if (this.namespaces.has(name))
        throw new KubeApiError(method, p, 409, status(409, 'AlreadyExists', `namespaces "${name}" already exists`));
      this.namespaces.add(name);
      return body;
    }
    if (p === '/api/v1/nodes') return this.#list('nodes', '', url);
    if (p === '/apis/gateway.networking.k8s.io/v1' && this.gatewayApi) return { resources: [{ name: 'httproutes' }, { name: 'gateways' }] };
    const nsMatch =
      (this.gatewayApi && /^\/apis\/gateway\.networking\.k8s\.io\/v1\/namespaces\/([^/]+)\/(httproutes|gateways)(?:\/([^/]+))?$/.exec(p)) ||
      /^\/api\/v1\/namespaces\/([^/]+)(?:\/(pods|services|events|serviceaccounts)(?:\/([^/]+))?)?$/.exec(p);
    if (!nsMatch)
      throw new KubeApiError(method, p, 404, status(404, 'NotFound', `the server could not find the requested resource (${method} ${p})`));
    const [, ns = '', resource, name] = nsMatch;
    if (!this.namespaces.has(ns))
      throw new KubeApiError(method, p, 404, status(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' }));
    if (resource === undefined) return { metadata: { name: ns } };
    if (resource === 'serviceaccounts') return { metadata: { name, namespace: ns } };
    const r = resource as Resource;
    if (name === undefined) return method === 'POST' ? this.#create(r, ns, body as FakeObject, url) : this.#list(r, ns, url);
    const key = `${r}/${ns}/${name}`;
    const current = this.#objects.get(key);
    const kind = r === 'pods' ? 'pods' : 'services';
    if (!current) throw new KubeApiError(method, p, 404, status(404, 'NotFound', `${kind} "${name}" not found`, { name, kind }));
    if (method === 'GET') return current;
    if (method === 'PATCH') {
      // A resourceVersion in the patch is a precondition (optimistic concurrency), as the API server makes it.
      const expected = (body as Partial<FakeObject> | undefined)?.metadata?.resourceVersion;
      if (expected !== undefined && expected !== current.metadata.resourceVersion)
        throw new KubeApiError(
          method,
          p,
          409,
          status(
            409,
            'Conflict',
            `Operation cannot be fulfilled on ${r} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
          ),
        );
      return this.#store(r, ns, mergePatch(current, body) as FakeObject, 'MODIFIED');
    }
    if (method === 'DELETE') return this.#delete(r, ns, current, body as Wire<V1DeleteOptions> | undefined);
    throw new KubeApiError(method, p, 405, status(405, 'MethodNotAllowed', `${method} is not supported`));
  }

  #create(r: Resource, ns: string, body: FakeObject, url: URL): FakeObject {
    const key = `${r}/${ns}/${body.metadata.name}`;
    if (this.#objects.has(key))
      throw new KubeApiError(
        'POST',
        url.pathname,
        409,
        status(409, 'AlreadyExists', `${r} "${body.metadata.name}" already exists`, { name: body.metadata.name, kind: r }),
      );
    const object = this.#created(r, ns, body);
    return url.searchParams.get('dryRun') === 'All' ? object : this.#store(r, ns, object, 'ADDED');
  }

  #list(r: Resource, ns: string, url: URL): unknown {
    const selector = url.searchParams.get('labelSelector');
    const items = this.list(r, ns).filter((o) => selects(selector, o.metadata.labels));
    return { kind: 'List', items, metadata: { resourceVersion: String(this.#rv) } };
  }

  #delete(r: Resource, ns: string, current: FakeObject, options: Wire<V1DeleteOptions> | undefined): FakeObject {
    const pre = options?.preconditions;
    if (
      (pre?.uid && pre.uid !== current.metadata.uid) ||
      (pre?.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion)
    ) {
      throw new KubeApiError(
        'DELETE',
        `${r}/${current.metadata.name}`,
        409,
        status(409, 'Conflict', `Operation cannot be fulfilled on ${r} "${current.metadata.name}": the object has been modified`),
      );
    }
    const gone = this.#store(r, ns, current, 'DELETED');
    // The garbage collector: dependents of a deleted pod go too.
    if (r === 'pods') {
      for (const dependent of ['services', 'httproutes'] as const) {
        for (const o of this.list(dependent, ns)) {
          if (o.metadata.ownerReferences?.some((ref) => ref.uid === current.metadata.uid)) this.#store(dependent, ns, o, 'DELETED');
        }
      }
    }
    return gone;
  }
}
