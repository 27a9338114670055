// What the provisioner's identity may do in the sandbox namespace, asked once at startup and at every
// housekeeping (one SelfSubjectRulesReview lists every rule that applies there). A feature whose verb
// is missing degrades instead of failing requests: DeerFlow's Helm chart, for one, grants no `patch`.

import type { V1ResourceRule, V1SelfSubjectAccessReview, V1SelfSubjectRulesReview } from '@kubernetes/client-node';
import type { Wire } from '../domain/wire.ts';
import type { Kube } from '../kube/client.ts';

/** A verb the provisioner uses, by feature. `essential`: without it the feature is an error, not degraded. */
export type Need = { verb: string; resource: string; group: string; feature: string; essential: boolean };

const core = (verbs: string[], resource: string, feature: string, essential: boolean): Need[] =>
  verbs.map((verb) => ({ verb, resource, group: '', feature, essential }));

/** Every deployment's needs. */
const NEEDS: readonly Need[] = [
  ...core(['list', 'watch'], 'pods', 'the sandbox view (list and watch)', true),
  ...core(['list', 'watch'], 'services', 'the sandbox view (list and watch)', true),
  ...core(['create'], 'pods', 'creates (and the admission preflight, a dry run)', true),
  ...core(['create'], 'services', 'creates (and the admission preflight, a dry run)', true),
  ...core(['get'], 'pods', 'creates racing another replica, expiry retries', true),
  ...core(['get'], 'services', 'creates racing another replica', true),
  ...core(['delete'], 'pods', 'deletes, expiry and the orphan reconciler', true),
  ...core(['delete'], 'services', 'deletes, expiry and the orphan reconciler', true),
  ...core(
    ['patch'],
    'pods',
    'activity and keepalive written to the pod (without it they are kept in memory: lost on restart, not shared by replicas)',
    false,
  ),
  ...core(
    ['patch'],
    'services',
    'the service owned by its pod (without it the reconciler alone removes a service whose pod is gone)',
    false,
  ),
  ...core(['list', 'watch'], 'events', 'image pulls in answers (reason PullingImage with kubelet’s message, timings.image_ready_s)', false),
  ...core(
    ['list', 'watch'],
    'nodes',
    'how many nodes lack the sandbox image, in /readyz, metrics and the dashboard (a ClusterRole: deploy/components/image-prepull)',
    false,
  ),
];

/** SANDBOX_URL_MODE=gateway: the sandboxes' HTTPRoutes, and a look at the Gateways they attach to. */
const GATEWAY_NEEDS: readonly Need[] = [
  ...['create', 'delete', 'get', 'list', 'watch', 'patch'].map((verb) => ({
    verb,
    resource: 'httproutes',
    group: 'gateway.networking.k8s.io',
    feature: 'gateway mode (one HTTPRoute per sandbox: deploy/components/gateway)',
    essential: true,
  })),
  {
    verb: 'get',
    resource: 'gateways',
    group: 'gateway.networking.k8s.io',
    feature: '/readyz saying when a Gateway of GATEWAY_PARENT_REFS does not exist (deploy/components/gateway)',
    essential: false,
  },
];

/** STORAGE_MODE=pvc: a look at the claims every sandbox mounts. */
const CLAIM_NEEDS: readonly Need[] = core(
  ['get'],
  'persistentvolumeclaims',
  '/readyz saying when a claim of SKILLS_PVC_NAME or USERDATA_PVC_NAME is missing or not bound',
  false,
);

/** What this deployment uses: every deployment's needs, the gateway's in gateway mode, the claims' in pvc mode. */
export const needsFor = (uses: { gateway: boolean; claims: boolean }): readonly Need[] => [
  ...NEEDS,
  ...(uses.gateway ? GATEWAY_NEEDS : []),
  ...(uses.claims ? CLAIM_NEEDS : []),
];

/** The Role rule (or, for cluster-scoped nodes, the ClusterRole rule) that grants a need. */
const ruleFor = (n: Need): string =>
  `add to the ${n.resource === 'nodes' ? 'ClusterRole' : 'Role'}: {apiGroups: ["${n.group}"], resources: ["${n.resource}"], verbs: ["${n.verb}"]}`;

type Rule = Pick<Wire<V1ResourceRule>, 'apiGroups' | 'resources' | 'resourceNames'> & { verbs?: string[] };

const covers = (rule: Rule, n: Need): boolean =>
  (rule.verbs ?? []).some((v) => v === n.verb || v === '*') &&
  (rule.apiGroups ?? []).some((g) => g === n.group || g === '*') &&
  (rule.resources ?? []).some((r) => r === n.resource || r === '*') &&
  (rule.resourceNames ?? []).length === 0;

export class Permissions {
  /** Missing verbs; empty while unknown (the review failed): then everything is tried, as before. */
  readonly missing: readonly Need[];
  readonly known: boolean;

  constructor(rules: Rule[] | undefined, needs: readonly Need[] = NEEDS) {
    this.known = rules !== undefined;
    this.missing = rules === undefined ? [] : needs.filter((n) => !rules.some((r) => covers(r, n)));
  }

  can(verb: string, resource: string): boolean {
    return !this.missing.some((n) => n.verb === verb && n.resource === resource);
  }

  /** One line a missing verb: the feature, and the Role rule that turns it on. */
  describe(): string | undefined {
    if (this.missing.length === 0) return undefined;
    return this.missing
      .map((n) => `${n.essential ? 'missing' : 'degraded'}: ${n.feature}: needs ${n.verb} on ${n.resource}; ${ruleFor(n)}`)
      .join('; ');
  }
}

/**
 * What this identity may do, as last reviewed: the one store the writer, activity and housekeeping
 * read. Until a review is in, everything is tried.
 */
export class Grants {
  #current = new Permissions(undefined);

  can(verb: string, resource: string): boolean {
    return this.#current.can(verb, resource);
  }

  use(permissions: Permissions): void {
    this.#current = permissions;
  }
}

/**
 * Asks the API server what this identity may do in `namespace`. An incomplete rule list (another
 * authorizer than RBAC) may leave out what is allowed, so each verb it lacks is then asked on its own
 * (SelfSubjectAccessReview). An unknown answer permits everything: requests are tried, as before.
 */
export async function reviewPermissions(kube: Kube, namespace: string, needs: readonly Need[] = NEEDS): Promise<Permissions> {
  try {
    const res = await kube.request('POST', '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews', {
      body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace } },
    });
    const status = (res.body as Wire<V1SelfSubjectRulesReview>).status;
    const rules = [...(status?.resourceRules ?? [])];
    if (status?.incomplete) {
      for (const need of new Permissions(rules, needs).missing) {
        const review = await kube.request('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: {
              resourceAttributes: {
                ...(need.resource === 'nodes' ? {} : { namespace }),
                verb: need.verb,
                group: need.group,
                resource: need.resource,
              },
            },
          },
        });
        if ((review.body as Wire<V1SelfSubjectAccessReview>).status?.allowed)
          rules.push({ verbs: [need.verb], apiGroups: [need.group], resources: [need.resource] });
      }
    }
    return new Permissions(rules, needs);
  } catch {
    return new Permissions(undefined, needs);
  }
}
