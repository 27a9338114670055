// Event streams have a bound: 50 clients that never read, through 1,000 changes, hold at most their
// bound each. A memory measurement (a full GC and the heap after it): in the integration tier, in a
// process of its own, where nothing else in the process moves the figures.

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { test } from 'node:test';
import { call, readEvents } from '../helpers.ts';
import { NS, setup } from '../service-harness.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap and buffers in use after a full collection. */
function memory(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external + m.arrayBuffers;
}

/** A client that asks for the stream and never reads a byte of it. */
function stalledClient(url: string): Promise<Socket> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname, () => {
      socket.write(`GET /api/events HTTP/1.1\r\nHost: ${u.host}\r\n\r\n`);
      socket.pause();
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

const metric = async (url: string, name: string): Promise<number> => {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 'NaN');
};

test('50 clients that never read, through 1,000 changes of 8 KB: each is closed past its bound, and memory stays under 80 MB (300 MB unbounded)', async (t) => {
  const { kube, service } = await setup(t);
  const url = service.url;
  const ids = Array.from({ length: 20 }, (_, i) => `s${i}`);
  for (const id of ids) await call(url, 'POST', '/api/sandboxes', { sandbox_id: id });
  const clients = await Promise.all(Array.from({ length: 50 }, () => stalledClient(url)));
  t.after(() => clients.forEach((c) => c.destroy()));
  await new Promise((r) => setTimeout(r, 200));
  const before = memory();
  let most = 0;
  for (let i = 0; i < 1000; i++) {
    const id = ids[i % ids.length] ?? '';
    // An 8 KB kubelet message, different each time: every change is an 8 KB event for each client.
    const message = `pulling ${'x'.repeat(8000)} ${i}`;
    kube.setPodStatus(NS, `sandbox-${id}`, {
      containerStatuses: [{ name: 'sandbox', ready: false, state: { waiting: { reason: 'ContainerCreating', message } } }],
    });
    if (i % 50 === 49) {
      await new Promise((r) => setImmediate(r));
      most = Math.max(most, memory() - before);
    }
  }
  await new Promise((r) => setTimeout(r, 100));
  most = Math.max(most, memory() - before);
  // Unbounded, the 50 clients would hold 400 MB (less what the kernel's socket buffers take). Bounded,
  // each holds at most 256 KiB beyond its snapshot before it is closed.
  assert.ok(most < 80 * 1024 * 1024, `memory grew by ${(most / 1048576).toFixed(1)} MB`);
  assert.equal(await metric(url, 'sandbox_provisioner_event_streams_closed_total{reason="slow_reader"}'), 50);
  assert.equal(await metric(url, 'sandbox_provisioner_event_streams'), 0);
  assert.equal(await metric(url, 'sandbox_provisioner_event_streams_queued_bytes'), 0);
  // A client that reads gets the snapshot as before.
  const res = await fetch(`${url}/api/events`);
  const [first] = await readEvents(res, () => true);
  assert.equal(first?.event, 'snapshot');
});
