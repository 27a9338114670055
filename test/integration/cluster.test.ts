// The local control plane itself: real API server v1.37.2 with RBAC and admission, the fake node, and a
// stand-in sandbox reachable on its NodePort.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1SubjectAccessReview } from '@kubernetes/client-node';
import WebSocket from 'ws';
import type { Wire } from '../../src/domain/wire.ts';
import { KubeError, KubeHttp } from '../../tools/cluster/kube-http.ts';
import { sandboxPod, sandboxService } from '../../tools/cluster/objects.ts';
import { admin, cluster, eventually, namespace, resourceQuota } from '../helpers.ts';

test('the API server is v1.37.2 and the fake node is Ready', async () => {
  const kube = admin();
  const version = await kube.get<{ gitVersion: string }>('/version');
  assert.equal(version.gitVersion, 'v1.37.2');
  const node = await kube.get('/api/v1/nodes/fake-node');
  const conditions = (node.status as { conditions: { type: string; status: string }[] }).conditions;
  assert.equal(conditions.find((c) => c.type === 'Ready')?.status, 'True');
});

test('RBAC is enforced: a service account with no binding may not create pods', async () => {
  const review = await admin().post<Wire<V1SubjectAccessReview>>('/apis/authorization.k8s.io/v1/subjectaccessreviews', {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user: 'system:serviceaccount:x:y',
      groups: ['system:serviceaccounts'],
      resourceAttributes: { namespace: 'x', verb: 'create', resource: 'pods' },
    },
  });
  assert.equal(review.status?.allowed, false);
  const state = cluster();
  const nobody = new KubeHttp(state.server, state.tokens.nobody, `${state.dir}/pki/apiserver.crt`);
  await assert.rejects(nobody.get('/api/v1/namespaces/default/pods'), (err: unknown) => err instanceof KubeError && err.status === 403);
  await nobody.close();
});

test('a Ready pod behind a NodePort serves the sandbox API on 127.0.0.1:<nodePort>, and stops when deleted', async (t) => {
  const ns = await namespace(t, 'cluster');
  const kube = admin();
  await kube.post(`/api/v1/namespaces/${ns}/pods`, sandboxPod('s1'));
  const svc = await kube.post(`/api/v1/namespaces/${ns}/services`, sandboxService('s1'));
  const nodePort = (svc.spec as { ports: { nodePort: number }[] }).ports[0]?.nodePort;
  assert.ok(nodePort && nodePort >= 30000 && nodePort <= 32767);
  const base = `http://127.0.0.1:${nodePort}`;
  const info = await eventually('sandbox API', async () => {
    const res = await fetch(`${base}/v1/sandbox`);
    return res.status === 200 ? ((await res.json()) as Record<string, unknown>) : undefined;
  });
  for (const key of ['success', 'message', 'data', 'home_dir', 'version', 'detail']) assert.ok(key in info, key);

  const exec = (await (await fetch(`${base}/v1/shell/exec`, { method: 'POST', body: JSON.stringify({ command: 'echo hi' }) })).json()) as {
    data: { output: string };
  };
  assert.equal(exec.data.output, 'echo hi');

  const download = await fetch(`${base}/v1/file/download?size=1048576`);
  assert.equal((await download.arrayBuffer()).byteLength, 1048576);

  const sse = await fetch(`${base}/v1/shell/stream?count=3&interval=20`, { headers: { accept: 'text/event-stream' } });
  assert.equal((await sse.text()).match(/^data: /gm)?.length, 3);

  const ws = new WebSocket(`ws://127.0.0.1:${nodePort}/v1/shell/ws`);
  await new Promise((ok, fail) => ws.once('open', ok).once('error', fail));
  ws.send('ping');
  const echo = await new Promise<string>((ok) => ws.once('message', (data) => ok(String(data))));
  assert.equal(echo, 'ping');
  ws.close();

  await kube.delete(`/api/v1/namespaces/${ns}/pods/sandbox-s1`);
  await eventually('listener closed', async () => {
    try {
      await fetch(`${base}/v1/sandbox`);
      return undefined;
    } catch {
      return true;
    }
  });
});

test('a pod as kubectl run makes it (any container name, --port=8080) behind a NodePort Service answers there', async (t) => {
  const ns = await namespace(t, 'kubectl-run');
  const kube = admin();
  // kubectl run sb --image=x --port=8080 --labels=sandbox-id=sb
  await kube.post(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'sb', labels: { 'sandbox-id': 'sb' } },
    spec: { containers: [{ name: 'sb', image: 'x', ports: [{ containerPort: 8080 }] }] },
  });
  const svc = await kube.post(`/api/v1/namespaces/${ns}/services`, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'sb' },
    spec: { type: 'NodePort', selector: { 'sandbox-id': 'sb' }, ports: [{ port: 8080, targetPort: 8080 }] },
  });
  const nodePort = (svc.spec as { ports: { nodePort: number }[] }).ports[0]?.nodePort;
  const res = await eventually('it answers on its NodePort', () => fetch(`http://127.0.0.1:${nodePort}/v1/sandbox`).catch(() => undefined));
  assert.equal(res.status, 200);
});

test('the fake node can be told to fail a pod', async (t) => {
  const ns = await namespace(t, 'cluster');
  const kube = admin();
  const cases = [
    ['crash', (s: { phase?: string }) => s.phase === 'Failed'],
    [
      'unschedulable',
      (s: { conditions?: { type: string; reason?: string }[] }) =>
        s.conditions?.some((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable'),
    ],
    [
      'never-ready',
      (s: { phase?: string; conditions?: { type: string; status: string }[] }) =>
        s.phase === 'Running' && s.conditions?.find((c) => c.type === 'Ready')?.status === 'False',
    ],
    [
      'image-pull',
      (s: { containerStatuses?: { state?: { waiting?: { reason?: string } } }[] }) =>
        s.containerStatuses?.[0]?.state?.waiting?.reason === 'ImagePullBackOff',
    ],
  ] as const;
  for (const [behavior] of cases) {
    await kube.post(`/api/v1/namespaces/${ns}/pods`, sandboxPod(behavior, { 'fake-node/behavior': behavior }));
  }
  for (const [behavior, check] of cases) {
    await eventually(`pod ${behavior}`, async () => {
      const pod = await kube.get(`/api/v1/namespaces/${ns}/pods/sandbox-${behavior}`);
      return (check as (s: unknown) => boolean)(pod.status ?? {}) ? true : undefined;
    });
  }
});

test('ResourceQuota is enforced (admission plus the controller manager)', async (t) => {
  const ns = await namespace(t, 'cluster');
  const kube = admin();
  await resourceQuota(ns, 'q', { pods: '1' });
  await kube.post(`/api/v1/namespaces/${ns}/pods`, sandboxPod('q1'));
  await assert.rejects(
    kube.post(`/api/v1/namespaces/${ns}/pods`, sandboxPod('q2')),
    (err: unknown) => err instanceof KubeError && err.status === 403 && /exceeded quota/.test(err.body),
  );
});
