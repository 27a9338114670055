// Scenarios 1-3: status and list queries with 1,000 sandboxes present (against a bare node:http server
// and a cacheless variant that reads the API server per request, as the reference does), and creates
// (against the API server's own time for a pod and a service; ?wait= against the moment Ready is seen).

import { join } from 'node:path';
import { KubeHttp } from '../tools/cluster/kube-http.ts';
import {
  freePort,
  hasCommand,
  interleaved,
  load,
  loadInterleaved,
  percentile,
  pin,
  row,
  startProcess,
  wrk,
  type Load,
  type Row,
} from './lib.ts';

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export async function queryBench(ctx: {
  provisioner: string;
  /** The provisioner's process: pinned to core 0 with the baselines (one at a time is loaded). */
  provisionerPid: number | undefined;
  /** Everything else (control plane, this process): core 1, with the load generator. */
  otherPids: number[];
  kubeconfig: string;
  ns: string;
  id: string;
  duration: number;
}): Promise<Row[]> {
  const stops: (() => void)[] = [];
  try {
    const sample = await (await fetch(`${ctx.provisioner}/api/sandboxes/${ctx.id}`)).text();
    const barePort = await freePort();
    const bare = await startProcess(process.execPath, [join(import.meta.dirname, 'bare-json.ts'), String(barePort), sample], /listening/);
    stops.push(() => bare.child.kill('SIGKILL'));
    const cachelessPort = await freePort();
    const cacheless = await startProcess(
      process.execPath,
      [join(import.meta.dirname, 'cacheless.ts'), String(cachelessPort), ctx.kubeconfig, ctx.ns],
      /listening/,
    );
    stops.push(() => cacheless.child.kill('SIGKILL'));
    const bareUrl = `http://127.0.0.1:${barePort}/api/sandboxes/${ctx.id}`;
    const cachelessUrl = `http://127.0.0.1:${cachelessPort}/api/sandboxes/${ctx.id}`;
    const ours = `${ctx.provisioner}/api/sandboxes/${ctx.id}`;
    // wrk (one C thread, the least CPU per request) on core 1; each server under test alone on core 0.
    const useWrk = await hasCommand('wrk');
    if (useWrk) {
      for (const pid of [ctx.provisionerPid, bare.child.pid, cacheless.child.pid]) await pin(pid, 0);
      for (const pid of [process.pid, ...ctx.otherPids]) await pin(pid, 1);
    }
    const urls: Record<string, string> = { bare: bareUrl, ours, cacheless: cachelessUrl };
    const duration = Math.max(2, Math.round(ctx.duration / 2));
    for (const url of Object.values(urls)) await (useWrk ? wrk(url, { duration: 1, cpu: 1 }) : load(url, { duration: 1 }));
    const m = useWrk
      ? await interleaved<Load>(Object.keys(urls), 3, (t) => wrk(urls[t] ?? '', { duration, cpu: 1 }))
      : await loadInterleaved(urls, { rounds: 3, duration });
    const [b, o, c] = [m['bare'], m['ours'], m['cacheless']] as [Load, Load, Load];
    const s1 = '1 status (1,000 present)';
    const rows = [
      row(s1, 'bare node:http constant JSON req/s', b.rps, `req/s (p99 ${b.p99} ms)`),
      row(s1, 'GET /api/sandboxes/{id} req/s', o.rps, `req/s (p99 ${o.p99} ms, ${useWrk ? 'wrk, pinned' : 'autocannon'})`, {
        baseline: 'bare node:http',
        ratio: o.rps / b.rps,
        target: '>= 0.85x',
        met: o.rps >= 0.85 * b.rps,
      }),
      row(s1, 'cacheless (reads API server) req/s', c.rps, `req/s (p99 ${c.p99} ms)`),
      row(s1, 'GET /api/sandboxes/{id} vs cacheless', o.rps, 'req/s', {
        baseline: 'cacheless',
        ratio: o.rps / c.rps,
        target: '>= 20x',
        met: o.rps >= 20 * c.rps,
      }),
    ];
    const s2 = '2 list (1,000 present)';
    const listOurs: number[] = [];
    for (let i = 0; i < 30; i++) listOurs.push(await timed(async () => (await fetch(`${ctx.provisioner}/api/sandboxes`)).arrayBuffer()));
    const listCacheless: number[] = [];
    for (let i = 0; i < 3; i++)
      listCacheless.push(await timed(async () => (await fetch(`http://127.0.0.1:${cachelessPort}/api/sandboxes`)).arrayBuffer()));
    const lo = percentile(listOurs, 50);
    const lc = percentile(listCacheless, 50);
    rows.push(
      row(s2, 'GET /api/sandboxes latency (p50)', lo, 'ms', {
        baseline: `cacheless (${lc.toFixed(0)} ms)`,
        ratio: lc / lo,
        target: '>= 50x faster',
        met: lc / lo >= 50,
      }),
    );
    return rows;
  } finally {
    for (const s of stops) s();
  }
}

export async function createBench(ctx: { provisioner: string; kube: KubeHttp; ns: string; count: number }): Promise<Row[]> {
  const s = '3 create';
  const pod = (name: string) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'bench-raw' } },
    spec: { containers: [{ name: 'sandbox', image: 'x' }], automountServiceAccountToken: false },
  });
  const svc = (name: string) => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `${name}-svc` },
    spec: { type: 'NodePort', selector: { x: name }, ports: [{ name: 'http', port: 8080 }] },
  });
  // Ready as an independent watcher sees it, to measure what ?wait= adds on top.
  const readyAt = new Map<string, number>();
  const abort = new AbortController();
  void ctx.kube.informer(
    `/api/v1/namespaces/${ctx.ns}/pods`,
    {
      onSync: () => {},
      onEvent: (e) => {
        const ready = ((e.object.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some(
          (c) => c.type === 'Ready' && c.status === 'True',
        );
        if (ready && !readyAt.has(e.object.metadata.name)) readyAt.set(e.object.metadata.name, performance.now());
      },
    },
    abort.signal,
  );
  try {
    const raw: number[] = [];
    const ours: number[] = [];
    const added: number[] = [];
    for (let i = 0; i < ctx.count; i++) {
      raw.push(
        await timed(async () => {
          await ctx.kube.post(`/api/v1/namespaces/${ctx.ns}/pods`, pod(`raw-${i}`));
          await ctx.kube.post(`/api/v1/namespaces/${ctx.ns}/services`, svc(`raw-${i}`));
        }),
      );
      ours.push(
        await timed(async () =>
          (
            await fetch(`${ctx.provisioner}/api/sandboxes`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ sandbox_id: `c${i}` }),
            })
          ).arrayBuffer(),
        ),
      );
      const res = await fetch(`${ctx.provisioner}/api/sandboxes?wait=30`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sandbox_id: `w${i}` }),
      });
      const answered = performance.now();
      const body = (await res.json()) as { status: string };
      const seen = readyAt.get(`sandbox-w${i}`);
      if (body.status === 'Running' && seen !== undefined) added.push(Math.max(0, answered - seen));
    }
    const r = percentile(raw, 50);
    const o = percentile(ours, 50);
    return [
      row(s, 'API server: pod + service, sequential (p50)', r, 'ms'),
      row(s, 'POST /api/sandboxes to answer (p50)', o, 'ms', {
        baseline: 'API server pod + service',
        ratio: o / r,
        target: '<= 1.2x',
        met: o <= 1.2 * r,
      }),
      row(s, '?wait= answer after Ready is seen, p50', percentile(added, 50), 'ms'),
      row(s, '?wait= answer after Ready is seen, p99', percentile(added, 99), 'ms', {
        baseline: 'an independent watch',
        ratio: 1,
        target: '<= 50 ms added',
        met: percentile(added, 99) <= 50,
      }),
    ];
  } finally {
    abort.abort();
  }
}
