// The mapping of the API server's refusals, fed with V1Status bodies captured from the real API server
// (test/fixtures/k8s-status/*.json, captured with curl against `npm run cluster:up`; the node-port one
// from the scale benchmark, which filled the 2,768-port range).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { isAlreadyExists, KubeApiError, KubeUnavailableError, type KubeStatus } from '../../src/kube/errors.ts';
import { fromKube } from '../../src/provisioner/kube-refusals.ts';

const fixture = (name: string): KubeApiError => {
  const body = JSON.parse(readFileSync(new URL(`../fixtures/k8s-status/${name}.json`, import.meta.url), 'utf8')) as KubeStatus;
  return new KubeApiError('POST', '/api/v1/namespaces/x/pods', body.code ?? 500, body);
};

test('each refusal maps to its stable code, status and the API server’s own words', () => {
  const cases: [string, 'pod' | 'service', string, number, RegExp][] = [
    ['quota-exceeded', 'pod', 'quota_exceeded', 429, /exceeded quota: q, requested: pods=1/],
    ['quota-exceeded-service', 'service', 'quota_exceeded', 429, /services=1/],
    ['pod-security', 'pod', 'pod_security_violation', 422, /level "baseline".*hostPath volumes \(volume "skills"\)/],
    ['limit-range', 'pod', 'limit_range_violation', 422, /maximum cpu usage per Container is 500m/],
    ['admission-policy-denied', 'pod', 'admission_denied', 422, /sandboxes are not allowed in this namespace/],
    ['rbac-forbidden', 'pod', 'provisioner_forbidden', 500, /permission to create pods/],
    ['invalid', 'pod', 'invalid_object', 422, /must not contain '\.\.'/],
    ['nodeport-range-full', 'service', 'limit_reached', 429, /NodePort range is full.*ClusterIP/],
  ];
  for (const [name, target, code, status, detail] of cases) {
    const answer = fromKube(fixture(name), target, `create ${target} sandbox-x`);
    assert.equal(answer.code, code, name);
    assert.equal(answer.status, status, name);
    assert.match(answer.message, detail, name);
    assert.equal(answer.body()['object'], target, `${name} says which object was refused`);
  }
});

test('quota answers carry Retry-After; Pod Security answers name the level', () => {
  assert.equal(fromKube(fixture('quota-exceeded'), 'pod', 'create pod').headers['retry-after'], '30');
  assert.equal(fromKube(fixture('pod-security'), 'pod', 'create pod').body()['level'], 'baseline');
  const rbac = fromKube(fixture('rbac-forbidden'), 'pod', 'create pod').body();
  assert.equal(rbac['verb'], 'create');
  assert.equal(rbac['resource'], 'pods');
});

test('an unreachable or timing-out API server is 503 cluster_unavailable with Retry-After', () => {
  const refused = new KubeUnavailableError('POST', '/x', Object.assign(new Error('fetch failed'), { cause: { code: 'ECONNREFUSED' } }));
  const timeout = new KubeUnavailableError('POST', '/x', new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  for (const err of [refused, timeout]) {
    const answer = fromKube(err, 'pod', 'create pod');
    assert.equal(answer.code, 'cluster_unavailable');
    assert.equal(answer.status, 503);
    assert.equal(answer.headers['retry-after'], '5');
  }
  assert.match(fromKube(refused, 'pod', 'create pod').message, /ECONNREFUSED/);
  assert.match(fromKube(timeout, 'pod', 'create pod').message, /timed out/);
});

test('AlreadyExists is recognised (creates adopt the existing object)', () => {
  assert.equal(isAlreadyExists(fixture('already-exists')), true);
  assert.equal(isAlreadyExists(fixture('quota-exceeded')), false);
});
