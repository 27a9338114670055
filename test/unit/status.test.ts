import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Answers, NO_ADDRESS_REASON } from '../../src/api/answer.ts';
import { loadConfig } from '../../src/config.ts';
import {
  deriveStatus,
  imageFacts,
  joinRecord,
  settled,
  slimEvent,
  slimPod,
  slimService,
  type PodFacts,
  type ServiceFacts,
} from '../../src/domain/record.ts';

const pod = (over: Partial<PodFacts> = {}): PodFacts => ({
  sandboxId: 'a',
  uid: 'u',
  resourceVersion: '1',
  threadId: 't',
  userId: 'default',
  phase: 'Running',
  ready: 'True',
  podIP: '10.0.0.1',
  createdAt: 0,
  deleting: false,
  reason: undefined,
  message: undefined,
  transitionAt: undefined,
  lastActivity: undefined,
  expiresAt: undefined,
  signer: undefined,
  scheduledAt: undefined,
  startedAt: undefined,
  readyAt: undefined,
  shellCapacity: 10,
  larkBroker: false,
  wokenBy: undefined,
  wokeFrom: undefined,
  leaseUntil: undefined,
  ...over,
});
const svc = (over: Partial<ServiceFacts> = {}): ServiceFacts => ({
  sandboxId: 'a',
  uid: 's',
  resourceVersion: '1',
  nodePort: 30001,
  clusterIP: '10.96.0.1',
  ownerUid: undefined,
  createdAt: 0,
  deleting: false,
  resumable: true,
  suspendedAs: undefined,
  suspendedAt: undefined,
  threadId: undefined,
  userId: undefined,
  ...over,
});

test('deriveStatus: the documented statuses and the odd cases', () => {
  const cases: [string, PodFacts | undefined, ServiceFacts | undefined, string, string | undefined][] = [
    ['ready pod', pod(), svc(), 'Running', undefined],
    ['running but not ready', pod({ ready: 'False' }), svc(), 'Pending', 'ContainersNotReady'],
    ['crash loop', pod({ ready: 'False', reason: 'CrashLoopBackOff' }), svc(), 'Pending', 'CrashLoopBackOff'],
    ['pending pull', pod({ phase: 'Pending', ready: 'False', reason: 'ImagePullBackOff' }), svc(), 'Pending', 'ImagePullBackOff'],
    ['unschedulable', pod({ phase: 'Pending', ready: 'False', reason: 'Unschedulable' }), svc(), 'Pending', 'Unschedulable'],
    ['succeeded', pod({ phase: 'Succeeded', ready: 'False' }), svc(), 'Succeeded', undefined],
    ['failed OOM', pod({ phase: 'Failed', ready: 'False', reason: 'OOMKilled' }), svc(), 'Failed', 'OOMKilled'],
    // A real kubelet: evicted over its ephemeral-storage limit, the app exited 0 on SIGTERM.
    ['evicted, app exited 0', pod({ phase: 'Succeeded', ready: 'False', reason: 'Evicted' }), svc(), 'Failed', 'Evicted'],
    ['pod terminating', pod({ deleting: true }), svc(), 'Terminating', 'Terminating'],
    ['node lost', pod({ ready: 'Unknown' }), svc(), 'Unknown', 'NodeLost'],
    ['phase unknown', pod({ phase: 'Unknown', ready: 'False' }), svc(), 'Unknown', 'NodeLost'],
    ['pod gone, service left', undefined, svc(), 'Unknown', 'PodMissing'],
    ['pod gone, service being deleted', undefined, svc({ deleting: true }), 'Terminating', 'Terminating'],
    ['service gone, pod left', pod(), undefined, 'Running', 'ServiceMissing'],
    ['service terminating', pod(), svc({ deleting: true }), 'Running', 'ServiceMissing'],
  ];
  for (const [name, p, s, status, reason] of cases) {
    const d = deriveStatus(p, s);
    assert.equal(d.status, status, name);
    assert.equal(d.reason, reason, name);
  }
});

test('slimPod keeps only the facts, and rejects objects whose name does not match their label', () => {
  const raw = {
    metadata: {
      name: 'sandbox-a',
      uid: 'uid-1',
      resourceVersion: '42',
      labels: { app: 'deer-flow-sandbox', 'sandbox-id': 'a' },
      annotations: { 'sandbox.deer-flow/thread-id': 'th', 'kubectl.kubernetes.io/last-applied-configuration': 'x'.repeat(5000) },
      creationTimestamp: '2026-01-01T00:00:00Z',
      managedFields: [{ manager: 'x' }],
    },
    spec: { containers: [{ name: 'sandbox', image: 'img' }] },
    status: {
      phase: 'Running',
      podIP: '10.1.1.1',
      conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: '2026-01-01T00:00:05Z' }],
      containerStatuses: [
        {
          name: 'sandbox',
          image: 'sandbox:1',
          imageID: '',
          restartCount: 3,
          ready: false,
          state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off' } },
          lastState: { terminated: { reason: 'OOMKilled', exitCode: 137 } },
        },
      ],
    },
  };
  const facts = slimPod(raw);
  assert.ok(facts);
  assert.equal(facts.sandboxId, 'a');
  assert.equal(facts.threadId, 'th');
  assert.equal(facts.reason, 'CrashLoopBackOff');
  assert.match(facts.message ?? '', /OOMKilled/);
  assert.equal(facts.createdAt, Date.parse('2026-01-01T00:00:00Z'));
  assert.equal(facts.transitionAt, Date.parse('2026-01-01T00:00:05Z'));
  assert.ok(JSON.stringify(facts).length < 400, 'no spec, managedFields or big annotations kept');
  assert.equal(slimPod({ ...raw, metadata: { ...raw.metadata, name: 'other' } }), undefined);
  assert.equal(slimPod({ metadata: { name: 'sandbox-a' } }), undefined);
});

test('slimPod reports an unschedulable pod and a deletion in progress', () => {
  const facts = slimPod({
    metadata: { name: 'sandbox-b', labels: { 'sandbox-id': 'b' }, deletionTimestamp: '2026-01-01T00:00:00Z' },
    status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/1 nodes' }] },
  });
  assert.equal(facts?.reason, 'Unschedulable');
  assert.equal(facts?.deleting, true);
});

test('slimService takes the http node port', () => {
  const facts = slimService({
    metadata: { name: 'sandbox-a-svc', labels: { 'sandbox-id': 'a' } },
    spec: {
      clusterIP: '10.96.0.9',
      ports: [
        { name: 'metrics', port: 9090, nodePort: 1 },
        { name: 'http', port: 8080, nodePort: 30123 },
      ],
    },
  });
  assert.equal(facts?.nodePort, 30123);
  assert.equal(slimService({ metadata: { name: 'sandbox-a', labels: { 'sandbox-id': 'a' } } }), undefined);
});

test('a wait for Running ends on Running, finished or stuck sandboxes, not on a service seen before its pod', async () => {
  assert.equal(settled(joinRecord('a', undefined, svc())), false, 'pod and service are created at once: the service may be seen first');
  assert.equal(settled(joinRecord('a', pod(), svc())), true);
  assert.equal(settled(joinRecord('a', pod({ phase: 'Pending', ready: 'False', reason: 'ImagePullBackOff' }), svc())), true);
  assert.equal(settled(joinRecord('a', pod({ phase: 'Pending', ready: 'False', reason: 'ContainerCreating' }), svc())), false);
  assert.equal(settled(joinRecord('a', pod({ phase: 'Failed', ready: 'False' }), svc())), true);
});

test('image events: a pod waiting for its image says PullingImage with kubelet’s message; its image time is the last Pulled', () => {
  const ev = (name: string, reason: string, at: string, container = 'spec.containers{sandbox}', uid = 'u') =>
    slimEvent({
      metadata: { name, resourceVersion: '1' },
      involvedObject: { kind: 'Pod', name: 'sandbox-a', uid, fieldPath: container },
      reason,
      message: `${reason} image "x"`,
      lastTimestamp: at,
    });
  const pulling = ev('e1', 'Pulling', '2026-01-01T00:00:00Z');
  const pulled = ev('e2', 'Pulled', '2026-01-01T00:00:07Z');
  assert.ok(pulling && pulled);
  assert.equal(slimEvent({ metadata: { name: 'x' }, involvedObject: { kind: 'Pod', name: 'sandbox-a' }, reason: 'Scheduled' }), undefined);
  assert.equal(
    slimEvent({
      metadata: { name: 'x' },
      involvedObject: { kind: 'Pod', name: 'other' },
      reason: 'Pulled',
      lastTimestamp: '2026-01-01T00:00:00Z',
    }),
    undefined,
  );
  const waiting = imageFacts('u', [pulling]);
  assert.deepEqual(waiting, { podUid: 'u', pulling: 'Pulling image "x"', readyAt: undefined });
  const creating = pod({ phase: 'Pending', ready: 'False', reason: 'ContainerCreating' });
  const r = joinRecord('a', creating, svc(), waiting);
  assert.deepEqual([r?.status, r?.reason, r?.message], ['Pending', 'PullingImage', 'Pulling image "x"']);
  const done = imageFacts('u', [pulled, pulling]);
  assert.deepEqual(done, { podUid: 'u', pulling: undefined, readyAt: Date.parse('2026-01-01T00:00:07Z') });
  assert.equal(joinRecord('a', creating, svc(), done)?.reason, 'ContainerCreating');
  assert.equal(joinRecord('a', creating, svc(), imageFacts('other-pod', [pulling]))?.reason, 'ContainerCreating', 'another pod’s events');
  const sameSecond = ev('e3', 'Pulled', '2026-01-01T00:00:00Z');
  assert.equal(
    imageFacts('u', [sameSecond as NonNullable<typeof sameSecond>, pulling])?.pulling,
    undefined,
    'Pulled after Pulling in the same second',
  );
  const stuck = pod({ phase: 'Pending', ready: 'False', reason: 'ImagePullBackOff' });
  assert.equal(joinRecord('a', stuck, svc(), waiting)?.reason, 'ImagePullBackOff', 'a stuck pull says so');
});

test('a sandbox with no address in this URL mode says why instead of a bare sandbox_url ""', () => {
  const nodeport = new Answers(loadConfig({ K8S_NAMESPACE: 'n', NODE_HOST: 'h' }));
  const made = joinRecord('a', pod(), svc({ nodePort: undefined }));
  assert.ok(made);
  const answer = nodeport.answer(made);
  assert.equal(answer.sandbox_url, '');
  assert.equal(answer.reason, NO_ADDRESS_REASON);
  assert.match(String(answer.message), /another URL mode/);
  const given = nodeport.answer(joinRecord('a', pod(), svc())!);
  assert.equal(given.sandbox_url, 'http://h:30001');
  assert.equal(given.reason, undefined);
});

test('an eviction is the reason of an evicted pod, over what its containers said on the way out', () => {
  const facts = slimPod({
    metadata: { name: 'sandbox-a', labels: { 'sandbox-id': 'a' } },
    status: {
      phase: 'Succeeded',
      reason: 'Evicted',
      message: 'Pod ephemeral local storage usage exceeds the total limit of containers 500Mi.',
      containerStatuses: [
        {
          name: 'sandbox',
          image: 'x',
          imageID: '',
          ready: false,
          restartCount: 0,
          state: { terminated: { exitCode: 0, reason: 'Completed' } },
        },
      ],
    },
  });
  assert.equal(facts?.reason, 'Evicted');
  assert.match(String(facts?.message), /ephemeral local storage/);
  const record = joinRecord('a', facts, svc());
  assert.equal(record?.status, 'Failed');
  assert.equal(record?.reason, 'Evicted');
});
