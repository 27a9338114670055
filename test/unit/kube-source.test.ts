// The watch sources against a tiny fake API server on loopback (no control plane): a watch refused with
// HTTP 410 Gone, as an API server does for a compacted resourceVersion, must lead to a relist — not to
// the same watch retried at the same resourceVersion forever.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../../src/kube/client.ts';
import { kubeSources } from '../../src/watch/kube-source.ts';
import { SandboxView } from '../../src/watch/sandbox-view.ts';

test('a watch answered with HTTP 410 Gone relists, then watches from the new resourceVersion', async (t) => {
  const requests: string[] = [];
  let podLists = 0;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const kind = url.pathname.endsWith('/pods') ? 'pods' : 'services';
    const watching = url.searchParams.get('watch') === 'true';
    requests.push(`${watching ? 'WATCH' : 'LIST'} ${kind}${watching ? ` rv=${url.searchParams.get('resourceVersion')}` : ''}`);
    if (!watching) {
      if (kind === 'pods') podLists += 1;
      const items =
        kind === 'pods' && podLists > 1
          ? [
              {
                metadata: {
                  name: 'sandbox-a',
                  uid: 'u1',
                  resourceVersion: '20',
                  labels: { 'sandbox-id': 'a' },
                  creationTimestamp: '2026-01-01T00:00:00Z',
                },
              },
            ]
          : [];
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ kind: 'List', items, metadata: { resourceVersion: podLists > 1 ? '20' : '10' } }));
    }
    if (kind === 'pods' && url.searchParams.get('resourceVersion') === '10') {
      res.writeHead(410, { 'content-type': 'application/json' });
      return res.end(
        JSON.stringify({ kind: 'Status', status: 'Failure', message: 'too old resource version: 10 (15)', reason: 'Expired', code: 410 }),
      );
    }
    res.writeHead(200, { 'content-type': 'application/json' }); // an open watch with no events
    res.flushHeaders();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const client = new KubeClient(kc, 'test', 5000);
  const view = new SandboxView({ ...kubeSources(client, 'ns') });
  t.after(async () => {
    await view.stop();
    await client.close();
  });
  view.start();
  const record = await view.waitFor('a', (r) => r !== undefined, 5000);
  assert.equal(record?.podUid, 'u1', 'the relist found the pod');
  assert.equal(view.stats().relists, 1);
  assert.equal(view.stats().restarts, 0, 'a 410 is a relist, not an error to retry');
  for (let i = 0; i < 100 && !requests.includes('WATCH pods rv=20'); i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(
    requests.filter((r) => r.includes('pods')),
    ['LIST pods', 'WATCH pods rv=10', 'LIST pods', 'WATCH pods rv=20'],
  );
});
