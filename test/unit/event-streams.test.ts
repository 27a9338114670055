// Event streams (src/http/event-stream.ts): HEAD gets headers only; at shutdown every stream ends at once
// with the reason. Their memory bound is measured in test/integration/event-stream-memory.test.ts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { call, raw, readEvents } from '../helpers.ts';
import { setup } from '../service-harness.ts';

test('HEAD /api/events answers the headers and ends; shutdown ends every stream with its reason, and waits with the current state', async (t) => {
  const { service } = await setup(t);
  const url = service.url;
  const head = await raw(url, 'HEAD', '/api/events');
  assert.deepEqual([head.status, head.headers['content-type'], head.body], [200, 'text/event-stream', '']);
  await call(url, 'POST', '/api/sandboxes', { sandbox_id: 'w' });
  const streams = await Promise.all(
    ['/api/events', '/api/sandboxes/w/events'].map(async (path) => {
      const res = await fetch(`${url}${path}`);
      const events: string[] = [];
      const done = readEvents(res, (e) => void events.push(`${e.event}:${JSON.stringify(e.data)}`));
      return { events, done };
    }),
  );
  const waits = Array.from({ length: 5 }, () => call(url, 'GET', '/api/sandboxes/w?wait=60'));
  await new Promise((r) => setTimeout(r, 100));
  const started = Date.now();
  const stopped = service.stop(5000);
  const answers = await Promise.all(waits);
  assert.ok(
    answers.every((a) => a.status === 200 && a.body['status'] === 'Pending'),
    'each wait answers with the current state',
  );
  for (const s of streams) {
    await s.done;
    assert.equal(s.events.at(-1), 'end:{"reason":"shutting_down"}');
  }
  await stopped;
  assert.ok(Date.now() - started < 2000, `the stop took ${Date.now() - started} ms with nothing else open`);
});
