import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { test } from 'node:test';
import { Feed } from '../../src/dashboard/feed.ts';
import { EventStreams } from '../../src/http/event-stream.ts';
import type { SandboxRecord } from '../../src/domain/record.ts';
import type { Answers } from '../../src/api/answer.ts';
import type { SandboxView } from '../../src/watch/sandbox-view.ts';

/** The events a stream wrote, parsed. */
function streamInto(feed: Feed): { events: { event: string; data: unknown }[]; close: () => void } {
  const events: { event: string; data: unknown }[] = [];
  const res = Object.assign(new EventEmitter(), {
    writeHead: () => res,
    write: (chunk: string) => {
      const m = /^(?:id: \d+\n)?event: (\w+)\ndata: (.*)\n\n$/s.exec(chunk);
      if (m) events.push({ event: m[1] ?? '', data: JSON.parse(m[2] ?? 'null') });
      return true;
    },
  });
  const req = { socket: { setTimeout: () => undefined } };
  feed.stream(req as unknown as IncomingMessage, res as unknown as ServerResponse, undefined);
  return { events, close: () => res.emit('close') };
}

test('every 30 s the event stream carries a sample: counts by status and each sandbox’s last activity', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const now = Date.parse('2026-11-29T12:00:00Z');
  const record = (sandboxId: string, status: SandboxRecord['status']): SandboxRecord =>
    ({ sandboxId, status, createdAt: now - 60_000 }) as SandboxRecord;
  const records = [record('a', 'Running'), record('b', 'Pending'), record('c', 'Running')];
  const view = { subscribe: () => () => undefined, list: () => records } as unknown as SandboxView;
  const answers = { answer: (r: SandboxRecord) => ({ sandbox_id: r.sandboxId }) } as unknown as Answers;
  const streams = new EventStreams({ maxQueuedBytes: 1 << 20, heartbeatMs: 15_000 });
  const feed = new Feed({ view, answers, streams, lastActivity: (r) => now - (r.sandboxId === 'b' ? 5000 : 1000), now: () => now });
  const stream = streamInto(feed);
  t.after(() => {
    stream.close();
    feed.stop();
  });

  t.mock.timers.tick(30_000);
  const samples = stream.events.filter((e) => e.event === 'sample');
  assert.equal(samples.length, 1);
  const sample = samples[0]?.data as { sample: { at: string; counts: Record<string, number> }; activity: Record<string, string> };
  assert.equal(sample.sample.at, '2026-11-29T12:00:00.000Z');
  assert.equal(sample.sample.counts['Running'], 2);
  assert.equal(sample.sample.counts['Pending'], 1);
  assert.equal(sample.sample.counts['Failed'], 0);
  assert.deepEqual(sample.activity, { a: '2026-11-29T11:59:59.000Z', b: '2026-11-29T11:59:55.000Z', c: '2026-11-29T11:59:59.000Z' });

  // A client connecting later finds the sample in its snapshot.
  const later = streamInto(feed);
  t.after(later.close);
  const snapshot = later.events[0]?.data as { samples: unknown[] };
  assert.deepEqual(snapshot.samples, [sample.sample]);
});
