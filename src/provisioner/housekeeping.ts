// Start-up and periodic housekeeping of the sandbox namespace: make sure it exists, learn what this
// identity may do (features whose verb is missing degrade), dry-run a sample sandbox through admission
// (the preflight), and reconcile half-made sandboxes. Each result is a readiness check for /readyz.

import type { Config } from '../config.ts';
import { GATEWAY_API } from '../domain/sandbox.ts';
import type { Gateway, PersistentVolumeClaimJson } from '../domain/wire.ts';
import type { Kube } from '../kube/client.ts';
import { isForbidden, isNotFound, StartupError } from '../kube/errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../observe/metrics.ts';
import type { NodeImages } from '../watch/nodes.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import { needsFor, reviewPermissions } from './permissions.ts';
import { preflight } from './preflight.ts';
import { reconcile } from './reconciler.ts';
import { NamespaceError, type SandboxNamespace } from './namespace.ts';
import type { Grants } from './permissions.ts';
import type { SandboxWriter } from './writer.ts';

/** One line of /readyz: a named check, whether it passes, and what is wrong (with the fix) when not. */
export type Check = { name: string; ok: boolean; detail?: string };

export type HousekeepingDeps = {
  config: Config;
  kube: Kube;
  view: SandboxView;
  writer: SandboxWriter;
  namespace: SandboxNamespace;
  grants: Grants;
  log: Logger;
  metrics: Pick<Metrics, 'orphansRemoved'>;
  /** Nodes and the sandbox image, watched when the identity may (list and watch on nodes). */
  nodes?: NodeImages;
  /** This replica's signing key: its fingerprint, and whether it was generated for this process. */
  signing?: { fingerprint: string; ephemeral: boolean };
};

function signersProblem(n: number, ephemeral: boolean): string {
  return (
    `${n} sandbox${n === 1 ? ' was' : 'es were'} signed with another key than this replica's: their capability URLs (sandbox_url in proxy, host and gateway modes) are 404 here. ` +
    (ephemeral
      ? 'PROXY_SIGNING_KEYS is not set, so each replica (and each restart) made its own key: set it, the same on every replica (a Secret).'
      : 'Replicas sign with different PROXY_SIGNING_KEYS: give every replica the same list (a Secret).')
  );
}

/** pvc mode: the claims every sandbox mounts, with the setting that names each. */
export function claimsOf(config: Config): { name: string; setting: string }[] {
  const { skills, userData } = config.storage;
  return [
    ...(skills.source === 'claim' ? [{ name: skills.claim, setting: 'SKILLS_PVC_NAME' }] : []),
    ...(userData.source === 'claim' ? [{ name: userData.claim, setting: 'USERDATA_PVC_NAME' }] : []),
  ];
}

/** How long start-up waits for the namespace before serving anyway (the view reports what is missing). */
const NAMESPACE_WAIT_MS = 10_000;

export class Housekeeping {
  #deps: HousekeepingDeps;
  #preflight: Check = { name: 'preflight', ok: true, detail: 'not run yet' };
  #permissions: Check = { name: 'permissions', ok: true, detail: 'not checked yet' };
  #first: Promise<void> | undefined;
  #gateways: Check | undefined;
  #claims: Check | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = new AbortController();

  constructor(deps: HousekeepingDeps) {
    this.#deps = deps;
  }

  /** Start-up: the namespace (waited for at most 10 s), then permissions; the first round and the period run in the background. */
  async start(): Promise<void> {
    if (this.#deps.config.gateway) await this.#checkGatewayApi();
    await Promise.race([this.#ensureNamespace(), new Promise((r) => setTimeout(r, NAMESPACE_WAIT_MS).unref())]);
    await this.#checkPermissions();
  }

  /** Starts the periodic rounds (the first at once). */
  schedule(): void {
    this.#first ??= this.#round();
    this.#timer ??= setInterval(() => void this.#round(), this.#deps.config.reconcile.intervalMs);
    this.#timer.unref();
  }

  /** One round now, after the first (tests, and operators through the service). */
  runNow(): Promise<void> {
    return (this.#first ?? Promise.resolve()).then(() => this.#round());
  }

  checks(): Check[] {
    const problem = this.#deps.namespace.problem;
    const namespace: Check[] = problem ? [{ name: 'namespace', ok: false, detail: problem }] : [];
    return [
      ...namespace,
      this.#preflight,
      this.#permissions,
      ...this.#signers(),
      ...this.#images(),
      ...(this.#gateways ? [this.#gateways] : []),
      ...(this.#claims ? [this.#claims] : []),
    ];
  }

  /**
   * Sandboxes signed with another key than this replica's (another replica, or this one before a
   * restart, when keys are generated per process): their capability URLs are 404 here.
   */
  #signers(): Check[] {
    const { view, signing } = this.#deps;
    if (!signing) return [];
    const foreign = view.count((r) => r.signer !== undefined && r.signer !== signing.fingerprint);
    if (foreign === 0) return [];
    return [{ name: 'signing-keys', ok: false, detail: signersProblem(foreign, signing.ephemeral) }];
  }

  /** Gateway mode needs the Gateway API's HTTPRoute (v1, standard channel): without it, no start. */
  async #checkGatewayApi(): Promise<void> {
    const res = await this.#deps.kube
      .request('GET', GATEWAY_API)
      .catch((err: unknown) => (isNotFound(err) ? undefined : Promise.reject(err)));
    const kinds = (res?.body as { resources?: { name?: string }[] } | undefined)?.resources?.map((r) => r.name) ?? [];
    if (!kinds.includes('httproutes')) {
      throw new StartupError(
        `SANDBOX_URL_MODE=gateway needs the Gateway API's HTTPRoute (${GATEWAY_API}, standard channel), which this cluster does not serve: install the CRDs (kubectl apply --server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.6.1/standard-install.yaml) and a Gateway API implementation`,
      );
    }
  }

  /**
   * pvc mode: the claims every sandbox mounts exist and are bound (when this identity may read them). A
   * sandbox on a missing or unbound claim never starts: the scheduler holds it Pending, Unschedulable.
   */
  async #checkClaims(): Promise<void> {
    const { config, kube } = this.#deps;
    const claims = claimsOf(config);
    const problems: string[] = [];
    for (const { name, setting } of claims) {
      try {
        const res = await kube.request('GET', `/api/v1/namespaces/${config.namespace}/persistentvolumeclaims/${name}`);
        const claim = res.body as PersistentVolumeClaimJson;
        const phase = claim.status?.phase ?? 'Pending';
        if (phase !== 'Bound')
          problems.push(
            `PersistentVolumeClaim ${name} (${setting}) is ${phase}, not Bound: sandboxes stay Pending until it is (a storage class with ${claim.spec?.accessModes?.join(', ') || 'ReadWriteMany'} access must provide it)`,
          );
      } catch (err) {
        if (isForbidden(err)) return; // not allowed to look: the sandboxes' scheduling still tells
        problems.push(
          isNotFound(err)
            ? `PersistentVolumeClaim ${name} (${setting}) does not exist in ${config.namespace}: sandboxes stay Pending until it does (create it, or set the chart's claims.create)`
            : String(err),
        );
      }
    }
    this.#claims = claims.length
      ? { name: 'claims', ok: problems.length === 0, ...(problems.length ? { detail: problems.join('; ') } : {}) }
      : undefined;
  }

  /** The Gateways of GATEWAY_PARENT_REFS exist and are programmed (when this identity may read them). */
  async #checkGateways(): Promise<void> {
    const { config, kube } = this.#deps;
    if (!config.gateway) return;
    const problems: string[] = [];
    for (const p of config.gateway.parentRefs) {
      try {
        const res = await kube.request('GET', `${GATEWAY_API}/namespaces/${p.namespace}/gateways/${p.name}`);
        const conditions = (res.body as Gateway).status?.conditions ?? [];
        const programmed = conditions.find((c) => c.type === 'Programmed');
        if (programmed?.status === 'False')
          problems.push(`Gateway ${p.namespace}/${p.name} is not programmed: ${programmed.message ?? ''}`);
      } catch (err) {
        if (isForbidden(err)) return; // not allowed to look: route statuses still tell
        problems.push(
          isNotFound(err)
            ? `Gateway ${p.namespace}/${p.name} (GATEWAY_PARENT_REFS) does not exist: no sandbox route will be accepted`
            : String(err),
        );
      }
    }
    this.#gateways = { name: 'gateways', ok: problems.length === 0, ...(problems.length ? { detail: problems.join('; ') } : {}) };
  }

  /** Nodes without the sandbox image: the first sandbox on each waits for its pull (minutes for the AIO image). */
  #images(): Check[] {
    const n = this.#deps.nodes?.summary();
    if (!n) return [];
    const image = this.#deps.config.sandbox.image;
    if (n.lacking.length === 0)
      return [{ name: 'images', ok: true, detail: `${image} is on all ${n.eligible} nodes sandboxes may run on` }];
    const names = n.lacking.slice(0, 10).join(', ') + (n.lacking.length > 10 ? `, and ${n.lacking.length - 10} more` : '');
    return [
      {
        name: 'images',
        ok: false,
        detail: `${image} is missing on ${n.lacking.length} of ${n.eligible} nodes sandboxes may run on (${names}): the first sandbox on each waits for its pull; deploy/components/image-prepull pulls it ahead`,
      },
    ];
  }

  /** Starts what the identity may watch beyond sandboxes: kubelet's events, the nodes' images. */
  startWatches(view: SandboxView): void {
    const { grants, nodes, signing, log } = this.#deps;
    // Said once per foreign key, at error level: capability URLs fail half of the time behind a Service.
    const said = new Set<string>();
    view.subscribe(({ record }) => {
      const signer = record?.signer;
      if (!signing || signer === undefined || signer === signing.fingerprint || said.has(signer)) return;
      said.add(signer);
      log.error({ signer, own: signing.fingerprint, sandbox_id: record?.sandboxId }, signersProblem(1, signing.ephemeral));
    });
    view.start({ events: grants.can('list', 'events') && grants.can('watch', 'events') });
    if (grants.can('list', 'nodes') && grants.can('watch', 'nodes')) nodes?.start();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#stopped.abort();
  }

  async #ensureNamespace(): Promise<void> {
    const { namespace, log, config } = this.#deps;
    for (let attempt = 1; !this.#stopped.signal.aborted; attempt++) {
      try {
        return await namespace.ensure();
      } catch (err) {
        log.error({ namespace: config.namespace, attempt }, `namespace check failed: ${(err as Error).message}`);
        if (err instanceof NamespaceError && err.final) return;
        await new Promise((r) => setTimeout(r, Math.min(30_000, 500 * 2 ** attempt)).unref());
      }
    }
  }

  /** What this identity may do: features whose verb is missing degrade, said once in the log and in /readyz. */
  async #checkPermissions(): Promise<void> {
    const { kube, grants, log, config } = this.#deps;
    const permissions = await reviewPermissions(
      kube,
      config.namespace,
      needsFor({ gateway: config.gateway !== undefined, claims: claimsOf(config).length > 0 }),
    );
    grants.use(permissions);
    const detail = permissions.known
      ? permissions.describe()
      : 'could not be checked (SelfSubjectRulesReview failed); every request is tried';
    if (detail !== this.#permissions.detail && detail) log.warn({ namespace: config.namespace }, `permissions: ${detail}`);
    this.#permissions = { name: 'permissions', ok: permissions.missing.length === 0, ...(detail ? { detail } : {}) };
  }

  async #round(): Promise<void> {
    const { config, view, writer, log, metrics } = this.#deps;
    try {
      // The namespace may have been deleted since: made again when allowed, else said in /readyz.
      await this.#deps.namespace
        .ensure()
        .catch((err: unknown) => log.error({ namespace: config.namespace, err }, 'namespace check failed'));
      await this.#checkPermissions();
      await this.#checkGateways();
      await this.#checkClaims();
      const refused = await preflight(writer, config);
      this.#preflight = { name: 'preflight', ok: refused === undefined, ...(refused ? { detail: refused } : {}) };
      if (refused) log.error({ namespace: config.namespace }, refused);
      await view.synced;
      const removed = await reconcile({ config, view, writer, log });
      metrics.orphansRemoved.inc({ object: 'pod' }, removed.removedPods.length);
      metrics.orphansRemoved.inc({ object: 'service' }, removed.removedServices.length);
    } catch (err) {
      log.warn({ err }, 'housekeeping failed; will retry');
    }
  }
}
