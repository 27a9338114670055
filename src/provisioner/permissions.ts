// What the provisioner's identity may do in the sandbox namespace, asked once at startup and at every
// housekeeping (one SelfSubjectRulesReview lists every rule that applies there). A feature whose verb
// is missing degrades instead of failing requests: DeerFlow's Helm chart, for one, grants no `patch`.

import type { Kube } from '../kube/client.ts';

/** Each verb the provisioner uses, by feature. `essential`: without it the feature is an error, not degraded. */
export const NEEDS: readonly { verb: string; resource: string; feature: string; essential: boolean }[] = [
  { verb: 'list', resource: 'pods', feature: 'the sandbox view (list and watch)', essential: true },
  { verb: 'watch', resource: 'pods', feature: 'the sandbox view (list and watch)', essential: true },
  { verb: 'list', resource: 'services', feature: 'the sandbox view (list and watch)', essential: true },
  { verb: 'watch', resource: 'services', feature: 'the sandbox view (list and watch)', essential: true },
  { verb: 'create', resource: 'pods', feature: 'creates (and the admission preflight, a dry run)', essential: true },
  { verb: 'create', resource: 'services', feature: 'creates (and the admission preflight, a dry run)', essential: true },
  { verb: 'get', resource: 'pods', feature: 'creates racing another replica, expiry retries', essential: true },
  { verb: 'get', resource: 'services', feature: 'creates racing another replica', essential: true },
  { verb: 'delete', resource: 'pods', feature: 'deletes, expiry and the orphan reconciler', essential: true },
  { verb: 'delete', resource: 'services', feature: 'deletes, expiry and the orphan reconciler', essential: true },
  {
    verb: 'patch',
    resource: 'pods',
    feature: 'activity and keepalive written to the pod (without it they are kept in memory: lost on restart, not shared by replicas)',
    essential: false,
  },
  {
    verb: 'patch',
    resource: 'services',
    feature: 'the service owned by its pod (without it the reconciler alone removes a service whose pod is gone)',
    essential: false,
  },
  ...(['list', 'watch'] as const).map((verb) => ({
    verb,
    resource: 'events' as const,
    feature: 'image pulls in answers (reason PullingImage with kubelet’s message, timings.image_ready_s)',
    essential: false as const,
  })),
  ...(['list', 'watch'] as const).map((verb) => ({
    verb,
    resource: 'nodes' as const,
    feature:
      'how many nodes lack the sandbox image, in /readyz, metrics and the dashboard (a ClusterRole: deploy/components/image-prepull)',
    essential: false as const,
  })),
];

export type Need = (typeof NEEDS)[number];

/** The Role rule (or, for cluster-scoped nodes, the ClusterRole rule) that grants a need. */
const ruleFor = (n: Need): string =>
  `add to the ${n.resource === 'nodes' ? 'ClusterRole' : 'Role'}: {apiGroups: [""], resources: ["${n.resource}"], verbs: ["${n.verb}"]}`;

type Rule = { verbs?: string[]; apiGroups?: string[]; resources?: string[]; resourceNames?: string[] };

const covers = (rule: Rule, verb: string, resource: string): boolean =>
  (rule.verbs ?? []).some((v) => v === verb || v === '*') &&
  (rule.apiGroups ?? []).some((g) => g === '' || g === '*') &&
  (rule.resources ?? []).some((r) => r === resource || r === '*') &&
  (rule.resourceNames ?? []).length === 0;

export class Permissions {
  /** Missing verbs; empty while unknown (the review failed): then everything is tried, as before. */
  readonly missing: readonly Need[];
  readonly known: boolean;

  constructor(rules: Rule[] | undefined) {
    this.known = rules !== undefined;
    this.missing = rules === undefined ? [] : NEEDS.filter((n) => !rules.some((r) => covers(r, n.verb, n.resource)));
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
 * Asks the API server what this identity may do in `namespace`. An incomplete rule list (another
 * authorizer than RBAC) may leave out what is allowed, so each verb it lacks is then asked on its own
 * (SelfSubjectAccessReview). An unknown answer permits everything: requests are tried, as before.
 */
export async function reviewPermissions(kube: Kube, namespace: string): Promise<Permissions> {
  try {
    const res = await kube.request('POST', '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews', {
      body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace } },
    });
    const status = (res.body as { status?: { resourceRules?: Rule[]; incomplete?: boolean } }).status;
    const rules = [...(status?.resourceRules ?? [])];
    if (status?.incomplete) {
      for (const need of new Permissions(rules).missing) {
        const review = await kube.request('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: {
              resourceAttributes: {
                ...(need.resource === 'nodes' ? {} : { namespace }),
                verb: need.verb,
                group: '',
                resource: need.resource,
              },
            },
          },
        });
        if ((review.body as { status?: { allowed?: boolean } }).status?.allowed)
          rules.push({ verbs: [need.verb], apiGroups: [''], resources: [need.resource] });
      }
    }
    return new Permissions(rules);
  } catch {
    return new Permissions(undefined);
  }
}
