// The request histogram (src/observe/lean-histogram.ts) writes what prom-client's Histogram writes for
// the same observations: same buckets, cumulative counts, sum and count, label escaping.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { LeanHistogram } from '../../src/observe/lean-histogram.ts';

test('the exposition equals prom-client’s for the same observations', async () => {
  const buckets = [0.001, 0.01, 0.1, 1];
  const registry = new Registry();
  const reference = new Histogram({ name: 'h', help: 'a help', labelNames: ['route', 'status'], buckets, registers: [registry] });
  const lean = new LeanHistogram('h', 'a help', buckets);
  const observations: [string, string, number][] = [
    ['/a', '200', 0.0005],
    ['/a', '200', 0.001],
    ['/a', '200', 0.05],
    ['/b "x"\\y', '404', 3],
    ['/a', '200', 1],
  ];
  for (const [route, status, v] of observations) {
    reference.observe({ route, status }, v);
    lean.series({ route, status }).observe(v);
  }
  const sorted = (text: string) => text.trim().split('\n').sort();
  assert.deepEqual(sorted(lean.exposition()), sorted(await registry.metrics()));
});
