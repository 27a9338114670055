// The Grafana board in deploy/examples queries only metrics this service exports.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { createMetrics, metricsText } from '../../src/observe/metrics.ts';

test('every metric named in the Grafana dashboard is one the service exports', async () => {
  const board = JSON.parse(readFileSync(new URL('../../deploy/examples/grafana-dashboard.json', import.meta.url), 'utf8')) as {
    panels: { title: string; targets: { expr: string }[] }[];
  };
  const metrics = createMetrics();
  const exported = new Set<string>();
  for (const [, name = '', type] of (await metricsText(metrics)).matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    exported.add(name);
    // Histograms are queried by their series: _bucket, _sum, _count.
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(name + s);
  }
  const queried = board.panels.flatMap((p) =>
    p.targets.flatMap((t) => [...t.expr.matchAll(/\bsandbox_provisioner_[a-z_]+/g)].map((m) => [p.title, m[0]])),
  );
  assert.ok(queried.length >= 15, `${queried.length} metric references`);
  for (const [panel, name] of queried)
    assert.ok(exported.has(name ?? ''), `panel "${panel}" queries ${name}, which the service does not export`);
  // And the board covers what an operator watches.
  const titles = board.panels.map((p) => p.title).join('\n');
  for (const topic of [/status/i, /create/i, /Running/, /latency/i, /proxy/i, /upstream errors/i, /watch/i]) assert.match(titles, topic);
});

test('gauges every replica reports alike (each sees the whole namespace) are not added up across replicas', () => {
  const board = JSON.parse(readFileSync(new URL('../../deploy/examples/grafana-dashboard.json', import.meta.url), 'utf8')) as {
    panels: { targets: { expr: string }[] }[];
  };
  const exprs = board.panels.flatMap((p) => p.targets.map((t) => t.expr));
  // Two replicas each report every sandbox: sum would show twice as many.
  for (const gauge of [
    'sandbox_provisioner_sandboxes',
    'sandbox_provisioner_nodes_eligible',
    'sandbox_provisioner_nodes_without_sandbox_image',
  ])
    for (const expr of exprs.filter((e) => e.includes(`${gauge}{`))) assert.doesNotMatch(expr, /^\s*sum\b/, expr);
  assert.ok(exprs.some((e) => e.startsWith('max by (status) (sandbox_provisioner_sandboxes{')));
});
