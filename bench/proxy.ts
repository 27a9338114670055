// Scenario 4: the proxy against direct access, a bare undici forwarder (the Node.js ceiling for this
// shape), configurable-http-proxy and nginx (one worker), all on the same upstream (the fake node's
// stand-in sandbox), in one run:
// - saturation req/s and latency at 50 connections, with wrk (one C thread: the cheapest generator);
// - latency at a fixed rate (1,000 req/s over 10 connections, bench/rate-load.ts): what a user feels
//   when the machine is not saturated, where saturation p99 is mostly queueing;
// - a 200 MiB download, against nginx's (two processes on two cores cannot match one on its own).
// On 2 cores, every proxy under test is pinned to core 0 and everything else (generator, upstream,
// control plane, this process) to core 1, so each proxy gets one whole core and the ratios compare
// proxies, not scheduling. Measurements are interleaved in rotated rounds; each keeps its median.

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, hasCommand, interleaved, load, percentile, pin, rateLoad, row, startProcess, wrk, type Load, type Row } from './lib.ts';

async function waitForPort(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(url);
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`${url} never answered`);
}

function downloadMBps(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    get(url, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve(bytes / 1024 / 1024 / ((performance.now() - started) / 1000)));
    }).on('error', reject);
  });
}

const PROXY_CPU = 0;
const OTHER_CPU = 1;

export async function proxyBench(ctx: {
  provisioner: string;
  provisionerPid: number | undefined;
  /** Processes that are not under test (upstream, control plane): pinned to the other core. */
  otherPids: number[];
  /** The sandbox's own address (its pod in the pod network): "direct". */
  upstream: string;
  /** The same sandbox through Traefik (gateway mode's sandbox_url), and Traefik's process. */
  gateway: { url: string; pid: number };
  sandboxId: string;
  /** `/s/<id>.<capability>`: the same sandbox by its capability URL. */
  capabilityPath: string;
  duration: number;
}): Promise<Row[]> {
  const upstream = ctx.upstream;
  const stop: (() => void)[] = [];
  try {
    const chpPort = await freePort();
    const chp = await startProcess(
      join('node_modules', '.bin', 'configurable-http-proxy'),
      [
        '--ip',
        '127.0.0.1',
        '--port',
        String(chpPort),
        '--default-target',
        upstream,
        '--no-prepend-path',
        '--api-port',
        String(await freePort()),
      ],
      /Proxying http|listening/i,
    );
    stop.push(() => chp.child.kill('SIGKILL'));
    await waitForPort(`http://127.0.0.1:${chpPort}/v1/sandbox`);

    let nginx: string | undefined;
    const nginxPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'bench-nginx-'));
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream sandbox { server ${new URL(upstream).host}; keepalive 64; }
  server {
    listen 127.0.0.1:${nginxPort};
    location / { proxy_pass http://sandbox; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
`,
    );
    const nginxProcess = spawn('taskset', ['-c', String(PROXY_CPU), 'nginx', '-c', join(dir, 'nginx.conf'), '-p', dir], {
      stdio: 'ignore',
    });
    nginxProcess.on('error', () => {});
    stop.push(() => void spawn('pkill', ['-f', join(dir, 'nginx.conf')]));
    try {
      await waitForPort(`http://127.0.0.1:${nginxPort}/v1/sandbox`);
      nginx = `http://127.0.0.1:${nginxPort}`;
    } catch {
      console.error('nginx is not installed or did not start (apt-get install nginx-light); its rows are skipped');
    }

    // The Node.js ceiling for this shape: a bare undici forwarder with no routing, checks or headers work.
    const barePort = await freePort();
    const bare = await startProcess(
      process.execPath,
      [join(import.meta.dirname, 'bare-forwarder.ts'), String(barePort), upstream],
      /listening/,
    );
    stop.push(() => bare.child.kill('SIGKILL'));

    for (const pid of [ctx.provisionerPid, chp.child.pid, bare.child.pid, ctx.gateway.pid]) await pin(pid, PROXY_CPU);
    for (const pid of [process.pid, ...ctx.otherPids]) await pin(pid, OTHER_CPU);

    const origins: Record<string, string> = {
      direct: upstream,
      ours: `${ctx.provisioner}/sandboxes/${ctx.sandboxId}`,
      capability: `${ctx.provisioner}${ctx.capabilityPath}`,
      bare: `http://127.0.0.1:${barePort}`,
      chp: `http://127.0.0.1:${chpPort}`,
      traefik: ctx.gateway.url,
      ...(nginx ? { nginx } : {}),
    };
    const targets = Object.keys(origins);
    const useWrk = await hasCommand('wrk');
    const seconds = Math.max(2, Math.round(ctx.duration / 2));
    // Warm every path once, then measure each in turn.
    for (const t of targets) await load(`${origins[t]}/v1/sandbox`, { duration: 1 });
    const saturation = await interleaved<Load>(targets, 3, (t) =>
      useWrk
        ? wrk(`${origins[t]}/v1/sandbox`, { duration: seconds, cpu: OTHER_CPU })
        : load(`${origins[t]}/v1/sandbox`, { duration: seconds }),
    );
    const at = (t: string): Load => saturation[t] ?? { rps: NaN, p50: NaN, p99: NaN, errors: 0, non2xx: 0 };
    const [direct, ours, cap, bareLoad, chpLoad] = ['direct', 'ours', 'capability', 'bare', 'chp'].map(at) as [
      Load,
      Load,
      Load,
      Load,
      Load,
    ];

    const fixedTargets = targets.filter((t) => ['direct', 'ours', 'bare', 'nginx', 'traefik'].includes(t));
    const fixed = await interleaved(fixedTargets, 3, (t) =>
      rateLoad(`${origins[t]}/v1/sandbox`, { rate: 1000, duration: Math.max(4, ctx.duration), connections: 10, cpu: OTHER_CPU }),
    );

    const s = '4 proxy';
    const generator = useWrk ? 'wrk, 1 thread' : 'autocannon';
    const rows: Row[] = [
      row(s, `direct req/s (50 conns, ${generator})`, direct.rps, 'req/s'),
      row(s, 'this proxy req/s', ours.rps, 'req/s', {
        baseline: 'bare undici forwarder',
        ratio: ours.rps / bareLoad.rps,
        target: '>= 0.9x',
        met: ours.rps >= 0.9 * bareLoad.rps,
      }),
      row(s, 'this proxy req/s vs configurable-http-proxy', ours.rps, 'req/s', {
        baseline: 'configurable-http-proxy',
        ratio: ours.rps / chpLoad.rps,
        target: '>= 2x',
        met: ours.rps >= 2 * chpLoad.rps,
      }),
      row(s, 'this proxy by capability URL req/s', cap.rps, 'req/s', { baseline: 'the plain path (no check)', ratio: cap.rps / ours.rps }),
      row(s, 'bare undici forwarder req/s', bareLoad.rps, 'req/s'),
      row(s, 'configurable-http-proxy req/s', chpLoad.rps, 'req/s'),
      row(s, 'saturation p50 / p99: direct', direct.p99, `ms p99 (p50 ${direct.p50} ms)`),
      row(s, 'saturation p50 / p99: this proxy', ours.p99, `ms p99 (p50 ${ours.p50} ms)`),
    ];
    const traefik = saturation['traefik'];
    if (traefik) {
      // Gateway mode: the same sandbox through Traefik (Go, on the same one core), by its HTTPRoute.
      rows.push(row(s, 'Traefik v3.7 (gateway mode) req/s', traefik.rps, `req/s (p50 ${traefik.p50} ms, p99 ${traefik.p99} ms)`));
      rows.push(row(s, 'Traefik req/s vs this proxy', traefik.rps, 'req/s', { baseline: 'this proxy', ratio: traefik.rps / ours.rps }));
    }
    const nginxLoad = saturation['nginx'];
    if (nginxLoad) {
      rows.push(row(s, 'nginx (1 worker) req/s', nginxLoad.rps, 'req/s'));
      rows.push(
        row(s, 'this proxy req/s vs nginx', ours.rps, 'req/s', {
          baseline: 'nginx (1 worker)',
          ratio: ours.rps / nginxLoad.rps,
          target: 'reported (stretch >= 0.5x)',
          met: ours.rps >= 0.5 * nginxLoad.rps,
        }),
      );
    }
    const fd = fixed['direct'];
    const fo = fixed['ours'];
    if (fd && fo) {
      const pcts = (f: { p50: number; p90: number }) => `ms p99 (p50 ${f.p50.toFixed(3)}, p90 ${f.p90.toFixed(3)} ms)`;
      rows.push(row(s, 'at 1,000 req/s: direct', fd.p99, pcts(fd)));
      rows.push(row(s, 'at 1,000 req/s: this proxy', fo.p99, pcts(fo)));
      for (const t of ['bare', 'nginx', 'traefik']) {
        const f = fixed[t];
        if (f) rows.push(row(s, `at 1,000 req/s: ${t}`, f.p99, pcts(f)));
      }
      rows.push(row(s, 'at 1,000 req/s: added p50 / p90 over direct', fo.p90 - fd.p90, `ms p90 (p50 ${(fo.p50 - fd.p50).toFixed(3)} ms)`));
      rows.push(
        // On a shared 2-core machine the p99 of every target (direct included) is set by stalls of the
        // core the generator and upstream share; compare it with direct's own p99 before reading it.
        row(s, 'at 1,000 req/s: added p99 over direct', fo.p99 - fd.p99, 'ms', {
          baseline: `direct (p99 ${fd.p99.toFixed(1)} ms)`,
          ratio: fo.p99 / fd.p99,
          target: '<= 1 ms added',
          met: fo.p99 - fd.p99 <= 1,
        }),
      );
    }
    if (ours.errors + ours.non2xx > 0) console.error(`proxy load had ${ours.errors} errors and ${ours.non2xx} non-2xx answers`);

    const size = 200 * 1024 * 1024;
    const streams = { direct: upstream, ours: origins['ours'] ?? '', traefik: ctx.gateway.url, ...(nginx ? { nginx } : {}) };
    // Each target warmed once, then 7 interleaved rounds (a download takes about half a second).
    for (const origin of Object.values(streams)) await downloadMBps(`${origin}/v1/file/download?size=${size / 4}`);
    const runs: Record<string, number[]> = {};
    for (let i = 0; i < 7; i++) {
      for (const [name, origin] of Object.entries(streams))
        (runs[name] ??= []).push(await downloadMBps(`${origin}/v1/file/download?size=${size}`));
    }
    const mbps = (name: string): number => percentile(runs[name] ?? [], 50);
    rows.push(row(s, '200 MiB download: direct', mbps('direct'), 'MiB/s'));
    rows.push(
      row(s, '200 MiB download: Traefik', mbps('traefik'), 'MiB/s', { baseline: 'this proxy', ratio: mbps('traefik') / mbps('ours') }),
    );
    if (nginx) {
      rows.push(row(s, '200 MiB download: nginx', mbps('nginx'), 'MiB/s'));
      rows.push(
        row(s, '200 MiB download through this proxy', mbps('ours'), 'MiB/s', {
          baseline: 'nginx (1 worker)',
          ratio: mbps('ours') / mbps('nginx'),
          target: '>= 0.9x',
          met: mbps('ours') >= 0.9 * mbps('nginx'),
        }),
      );
    }
    rows.push(
      row(s, '200 MiB download through this proxy vs direct', mbps('ours'), 'MiB/s', {
        baseline: 'direct',
        ratio: mbps('ours') / mbps('direct'),
      }),
    );
    return rows;
  } finally {
    for (const s of stop) s();
  }
}
