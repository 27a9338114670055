// The create gate (src/provisioner/gate.ts): at most N creates in flight, a FIFO queue of bounded size
// and wait, then an immediate 429 — never a request left without an answer.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpError } from '../../src/http/errors.ts';
import { Gate } from '../../src/provisioner/gate.ts';

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};
const tick = () => new Promise((r) => setImmediate(r));

test('at most `max` run at once; the rest start in arrival order as slots free', async () => {
  const gate = new Gate(2, 10, 10_000);
  const order: number[] = [];
  const work = [0, 1, 2, 3].map(() => deferred());
  const runs = work.map((w, i) => gate.run(async () => (order.push(i), w.promise)));
  await tick();
  assert.deepEqual(order, [0, 1]);
  work[1]?.resolve();
  await tick();
  assert.deepEqual(order, [0, 1, 2]);
  work[0]?.resolve();
  work[2]?.resolve();
  await tick();
  assert.deepEqual(order, [0, 1, 2, 3]);
  work[3]?.resolve();
  await Promise.all(runs);
});

test('a full queue answers 429 at once; a wait past the timeout answers 429; a failing run frees its slot', async () => {
  const gate = new Gate(1, 1, 50);
  const hold = deferred();
  const first = gate.run(() => hold.promise);
  const queued = gate.run(async () => 'late');
  const refused = await gate.run(async () => 'never').catch((e: unknown) => e);
  assert.ok(refused instanceof HttpError && refused.code === 'too_many_requests' && /queue is full/.test(refused.message));
  assert.equal(refused.headers['retry-after'], '1');
  const timedOut = await queued.catch((e: unknown) => e);
  assert.ok(timedOut instanceof HttpError && /waited 0.05s/.test(timedOut.message));
  hold.resolve();
  await first;
  await assert.rejects(
    gate.run(() => Promise.reject(new Error('boom'))),
    /boom/,
  );
  assert.equal(await gate.run(async () => 'free again'), 'free again');
});
