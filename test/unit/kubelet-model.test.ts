// The kubelet rules the fake node follows (tools/cluster/kubelet-model.ts): when probes run, how results
// flip a container's state, serialized image pulls, and the Pulled event's text.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  crashBackoffMs,
  goDuration,
  nextTick,
  probedAtStart,
  probePasses,
  probeRule,
  ProbeState,
  PullQueue,
  pulledMessage,
} from '../../tools/cluster/kubelet-model.ts';

const S = 1000;

test('probe ticks: start + phase + k·period, none before the initial delay', () => {
  const rule = probeRule({ initialDelaySeconds: 5, periodSeconds: 5 });
  const start = 100 * S;
  // The reference's readiness probe: the first tick that counts is in [5 s, 10 s) after the start.
  for (const phase of [0, 1 * S, 2.5 * S, 4.999 * S]) {
    const first = nextTick(rule, start, phase, start);
    assert.ok(first - start >= 5 * S && first - start < 10 * S, `phase ${phase}: first probe at +${first - start} ms`);
    assert.equal(nextTick(rule, start, phase, first + 1), first + 5 * S, 'then every period');
  }
  const noDelay = probeRule({ periodSeconds: 1 });
  assert.equal(nextTick(noDelay, start, 300, start), start + 300);
  assert.equal(nextTick(noDelay, start, 300, start + 301), start + 1300);
  assert.equal(nextTick(noDelay, start, 300, start + 1300), start + 1300, 'a tick exactly at `after` counts');
});

test('the example of the issue: an app answering after 2 s is Ready at 5-10 s with the reference probe, within a period with 1 s probes', () => {
  const start = 0;
  const appAt = 2 * S;
  const firstPassing = (rule: ReturnType<typeof probeRule>, phase: number) => {
    let t = nextTick(rule, start, phase, start);
    while (t < appAt) t = nextTick(rule, start, phase, t + 1);
    return t;
  };
  const reference = probeRule({ initialDelaySeconds: 5, periodSeconds: 5 });
  const fast = probeRule({ periodSeconds: 1 });
  for (let phase = 0; phase < 5 * S; phase += 500) {
    const ready = firstPassing(reference, phase);
    assert.ok(ready >= 5 * S && ready < 10 * S);
  }
  const lags: number[] = [];
  for (let phase = 0; phase < S; phase += 100) lags.push(firstPassing(fast, phase) - appAt);
  assert.ok(lags.every((l) => l >= 0 && l < S));
  assert.equal(lags.reduce((a, b) => a + b) / lags.length, 450, 'half a period on average over phases 0, 100, ... 900 ms');
});

test('readiness is also probed at the container start only with no initial delay and no startup probe', () => {
  assert.equal(probedAtStart(probeRule({ periodSeconds: 5 }), false), true);
  assert.equal(probedAtStart(probeRule({ initialDelaySeconds: 5, periodSeconds: 5 }), false), false);
  assert.equal(probedAtStart(probeRule({ periodSeconds: 5 }), true), false, 'gated by the startup probe');
});

test('results flip a probe’s state at the thresholds; HTTP 200-399 passes', () => {
  const state = new ProbeState(probeRule({ failureThreshold: 3, successThreshold: 1 }), false);
  assert.equal(state.record(false), false);
  assert.equal(state.record(true), true);
  assert.equal(state.passing, true);
  assert.deepEqual([state.record(false), state.record(false)], [false, false]);
  assert.equal(state.failures, 2);
  assert.equal(state.record(false), true, 'the third failure in a row');
  assert.equal(state.passing, false);
  assert.deepEqual([200, 302, 399, 400, 503, undefined].map(probePasses), [true, true, true, false, false, false]);
  assert.deepEqual([1, 2, 3, 10].map(crashBackoffMs), [10 * S, 20 * S, 40 * S, 300 * S]);
});

test('pulls are serialized per node; an image pulled meanwhile takes a moment', () => {
  const q = new PullQueue();
  const present = new Set<string>();
  const a = q.schedule(0, 10 * S, 100, () => present.has('img'));
  present.add('img');
  const b = q.schedule(1 * S, 10 * S, 100, () => present.has('img'));
  assert.deepEqual(a, { start: 0, end: 10 * S });
  assert.deepEqual(b, { start: 10 * S, end: 10 * S + 100 }, 'waited for the first pull, then found the layers there');
  const c = q.schedule(60 * S, 3 * S, 100, () => false);
  assert.deepEqual(c, { start: 60 * S, end: 63 * S });
});

test('durations and the Pulled event read as kubelet writes them', () => {
  assert.deepEqual([0, 7, 523, 1000, 1200, 3456, 59_999, 61_500, 3_723_000].map(goDuration), [
    '0s',
    '7ms',
    '523ms',
    '1s',
    '1.2s',
    '3.456s',
    '59.999s',
    '1m1.5s',
    '1h2m3s',
  ]);
  assert.equal(
    pulledMessage('img:1', 1234, 3456, 42),
    'Successfully pulled image "img:1" in 1.234s (3.456s including waiting). Image size: 42 bytes.',
  );
});
