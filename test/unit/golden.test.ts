// Golden tests: the Pod and Service this service builds, against what DeerFlow's reference provisioner
// builds for the same request and settings — produced by running the reference's own builder functions
// at pinned commits (test/fixtures/reference/generate.py says how). With default settings they are equal
// field by field, in both skills layouts, except for the deliberate differences listed here.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { validate } from '../../src/http/input.ts';
import { buildPod, buildService } from '../../src/provisioner/pod-spec.ts';
import { createRequestSchema, toSandboxRequest } from '../../src/api/request.ts';

type Json = Record<string, unknown>;
type Fixture = { commit: string; env: Record<string, string>; request: Json; pod: Json; service: Json };

const dir = join(import.meta.dirname, '..', 'fixtures', 'reference');
const fixtures = (layout: 'current' | 'seed' | 'chart' | 'v21'): [string, Fixture][] =>
  readdirSync(join(dir, layout))
    .filter((f) => f.endsWith('.json'))
    .map((f) => [`${layout}/${f}`, JSON.parse(readFileSync(join(dir, layout, f), 'utf8')) as Fixture]);

/**
 * What this service adds on purpose, removed before comparing (each with its reason). Nothing else may
 * differ: no field of the reference is dropped, and no other field is added.
 */
const DELIBERATE: { what: string; why: string; drop: (o: { pod: Json; service: Json }) => void }[] = [
  {
    what: 'apiVersion and kind on both objects',
    why: 'the objects are complete manifests (the reference leaves them to its client library)',
    drop: ({ pod, service }) => {
      for (const o of [pod, service]) {
        delete o['apiVersion'];
        delete o['kind'];
      }
    },
  },
  {
    what: 'the label app.kubernetes.io/managed-by=sandbox-provisioner on both objects',
    why: 'kubectl and the ValidatingAdmissionPolicy can tell which provisioner made a sandbox; the watch selects on app and sandbox-id only, so the reference’s sandboxes are adopted',
    drop: ({ pod, service }) => {
      for (const o of [pod, service]) delete ((o['metadata'] as Json)['labels'] as Json)['app.kubernetes.io/managed-by'];
    },
  },
  {
    what: 'pod annotations sandbox.deer-flow/thread-id and user-id',
    why: 'status, list and expiry answer thread_id and user_id after a restart; annotations, as thread ids reach 64 characters and label values stop at 63',
    drop: ({ pod }) => delete (pod['metadata'] as Json)['annotations'],
  },
  {
    what: 'automountServiceAccountToken: false and enableServiceLinks: false',
    why: 'untrusted code gets no Kubernetes credentials and no addresses of other services; the AIO image uses neither',
    drop: ({ pod }) => {
      delete (pod['spec'] as Json)['automountServiceAccountToken'];
      delete (pod['spec'] as Json)['enableServiceLinks'];
    },
  },
  {
    what: 'the sandbox container’s probes (SANDBOX_PROBE_PROFILE=startup, the default)',
    why: 'a startup probe every second (for up to 5 minutes) follows the app, and readiness and liveness start once it passes, so a sandbox is Ready about half a second after its app answers instead of 5 to 10 s after its start; SANDBOX_PROBE_PROFILE=reference builds the reference’s probes (tested below)',
    drop: ({ pod }) => {
      const sandbox = ((pod['spec'] as Json)['containers'] as Json[])[0] as Json;
      const http = (sandbox['readinessProbe'] as Json)['httpGet'];
      assert.deepEqual(sandbox['startupProbe'], { httpGet: http, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 300 });
      assert.deepEqual(sandbox['readinessProbe'], {
        httpGet: http,
        initialDelaySeconds: 0,
        periodSeconds: 5,
        timeoutSeconds: 3,
        failureThreshold: 3,
      });
      assert.deepEqual(sandbox['livenessProbe'], {
        httpGet: http,
        initialDelaySeconds: 0,
        periodSeconds: 10,
        timeoutSeconds: 3,
        failureThreshold: 3,
      });
      delete sandbox['startupProbe'];
      (sandbox['readinessProbe'] as Json)['initialDelaySeconds'] = 5;
      (sandbox['livenessProbe'] as Json)['initialDelaySeconds'] = 10;
    },
  },
];

/** This service's objects for a fixture's settings and request, as plain JSON. */
function ours(fixture: Fixture, extraEnv: Record<string, string> = {}): { pod: Json; service: Json } {
  const config = loadConfig({ ...fixture.env, ...extraEnv });
  const request = toSandboxRequest(validate(createRequestSchema, fixture.request), config);
  const json = (o: unknown): Json => JSON.parse(JSON.stringify(o)) as Json;
  return { pod: json(buildPod(config, request, 0)), service: json(buildService(config, request.sandboxId)) };
}

const GROUPS = {
  current: 'today’s skills layout (DEER_FLOW_HOST_BASE_DIR)',
  seed: 'the seed’s skills layout (SKILLS_HOST_PATH)',
  chart: 'the environments DeerFlow’s Helm chart produces (no skills or base dir set)',
  v21: 'DeerFlow 2.1’s requests (a default gateway’s 8 extra mounts, its shell capacity, another skills root, claims)',
} as const;

for (const [layout, what] of Object.entries(GROUPS) as [keyof typeof GROUPS, string][]) {
  test(`golden, ${what}: pod and service equal the reference’s, but for the deliberate differences`, () => {
    const cases = fixtures(layout);
    assert.ok(cases.length >= 3, `${cases.length} fixtures`);
    for (const [name, fixture] of cases) {
      const objects = ours(fixture);
      for (const d of DELIBERATE) d.drop(objects);
      assert.deepEqual(objects.pod, fixture.pod, `${name} (reference ${fixture.commit}): pod`);
      assert.deepEqual(objects.service, fixture.service, `${name}: service`);
    }
  });
}

test('golden: with SANDBOX_PROBE_PROFILE=reference the probes are the reference’s own', () => {
  const probes = DELIBERATE.filter((d) => !d.what.includes('probes'));
  for (const [name, fixture] of [...fixtures('current'), ...fixtures('seed')]) {
    const objects = ours(fixture, { SANDBOX_PROBE_PROFILE: 'reference' });
    for (const d of probes) d.drop(objects);
    assert.deepEqual(objects.pod, fixture.pod, name);
  }
});

test('golden: the hardened profile differs from the reference only in the security contexts', () => {
  for (const [name, fixture] of fixtures('current')) {
    const objects = ours(fixture, { SANDBOX_SECURITY_PROFILE: 'hardened' });
    for (const d of DELIBERATE) d.drop(objects);
    const spec = objects.pod['spec'] as { securityContext?: Json; containers: Json[]; initContainers?: Json[] };
    // Why these differ: an image built to run without setuid needs no escalation, no capabilities, and
    // runs under the runtime's seccomp filter. The AIO image cannot (see README, "Security profiles").
    assert.deepEqual(spec.securityContext, { seccompProfile: { type: 'RuntimeDefault' } }, name);
    assert.deepEqual(
      spec.containers[0]?.['securityContext'],
      { privileged: false, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      name,
    );
    for (const helper of [...spec.containers.slice(1), ...(spec.initContainers ?? [])]) {
      assert.deepEqual(
        helper['securityContext'],
        { privileged: false, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
        name,
      );
    }
    const reference = structuredClone(fixture.pod) as { spec: Json & { containers: Json[]; initContainers?: Json[] } };
    const strip = (o: { spec: Json & { containers: Json[]; initContainers?: Json[] } }): void => {
      delete o.spec['securityContext'];
      for (const c of [...o.spec.containers, ...(o.spec.initContainers ?? [])]) delete c['securityContext'];
    };
    strip(reference);
    strip(objects.pod as typeof reference);
    assert.deepEqual(objects.pod, reference, `${name}: nothing else differs`);
  }
});
