// Scenario 4: the proxy against direct access, configurable-http-proxy and nginx (one worker), all on
// the same upstream (the fake node's stand-in sandbox), in one run; plus streaming throughput.

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, load, loadInterleaved, percentile, row, startProcess, type Load, type Row } from './lib.ts';

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

export async function proxyBench(ctx: {
  provisioner: string;
  nodePort: number;
  sandboxId: string;
  /** `/s/<id>.<capability>`: the same sandbox by its capability URL. */
  capabilityPath: string;
  duration: number;
}): Promise<Row[]> {
  const upstream = `http://127.0.0.1:${ctx.nodePort}`;
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
    ).catch(async () => {
      throw new Error('configurable-http-proxy did not start');
    });
    stop.push(() => chp.child.kill('SIGKILL'));
    await waitForPort(`http://127.0.0.1:${chpPort}/v1/sandbox`);

    let nginxUrl: string | undefined;
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
  upstream sandbox { server 127.0.0.1:${ctx.nodePort}; keepalive 64; }
  server {
    listen 127.0.0.1:${nginxPort};
    location / { proxy_pass http://sandbox; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`,
    );
    const nginx = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
    nginx.on('error', () => {});
    stop.push(() => nginx.kill('SIGKILL'));
    try {
      await waitForPort(`http://127.0.0.1:${nginxPort}/v1/sandbox`);
      nginxUrl = `http://127.0.0.1:${nginxPort}/v1/sandbox`;
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
    const bareUrl = `http://127.0.0.1:${barePort}/v1/sandbox`;

    const ours = `${ctx.provisioner}/sandboxes/${ctx.sandboxId}/v1/sandbox`;
    const capability = `${ctx.provisioner}${ctx.capabilityPath}/v1/sandbox`;
    // Warm every path once, then measure each in turn.
    for (const url of [
      `${upstream}/v1/sandbox`,
      ours,
      capability,
      bareUrl,
      `http://127.0.0.1:${chpPort}/v1/sandbox`,
      ...(nginxUrl ? [nginxUrl] : []),
    ])
      await load(url, { duration: 1 });
    const measured = await loadInterleaved(
      {
        direct: `${upstream}/v1/sandbox`,
        ours,
        capability,
        bare: bareUrl,
        chp: `http://127.0.0.1:${chpPort}/v1/sandbox`,
        ...(nginxUrl ? { nginx: nginxUrl } : {}),
      },
      { rounds: 3, duration: Math.max(2, Math.round(ctx.duration / 2)) },
    );
    const {
      direct,
      ours: mine,
      capability: capLoad,
      bare: bareLoad,
      chp: chpLoad,
    } = measured as Record<'direct' | 'ours' | 'capability' | 'bare' | 'chp', Load>;
    const nginxLoad = measured['nginx'];

    const s = '4 proxy';
    const rows: Row[] = [
      row(s, 'direct req/s (50 conns)', direct.rps, 'req/s'),
      row(s, 'direct p50 / p99', direct.p99, `ms p99 (p50 ${direct.p50} ms)`),
      row(s, 'this proxy req/s', mine.rps, 'req/s', {
        baseline: 'configurable-http-proxy',
        ratio: mine.rps / chpLoad.rps,
        target: '>= 2x',
        met: mine.rps >= 2 * chpLoad.rps,
      }),
      row(s, 'this proxy p50 / p99', mine.p99, `ms p99 (p50 ${mine.p50} ms)`),
      row(s, 'this proxy by capability URL req/s', capLoad.rps, 'req/s', {
        baseline: 'the plain path (no check)',
        ratio: capLoad.rps / mine.rps,
      }),
      row(s, 'capability URL p50 / p99', capLoad.p99, `ms p99 (p50 ${capLoad.p50} ms)`),
      row(s, 'bare undici forwarder req/s', bareLoad.rps, 'req/s'),
      row(s, 'this proxy vs the bare forwarder', mine.rps, 'req/s', { baseline: 'bare undici forwarder', ratio: mine.rps / bareLoad.rps }),
      row(s, 'configurable-http-proxy req/s', chpLoad.rps, 'req/s'),
      row(s, 'configurable-http-proxy p50 / p99', chpLoad.p99, `ms p99 (p50 ${chpLoad.p50} ms)`),
      row(s, 'added p99 latency vs direct', mine.p99 - direct.p99, 'ms', {
        baseline: 'direct',
        ratio: mine.p99 / Math.max(direct.p99, 0.001),
        target: '<= 2 ms added',
        met: mine.p99 - direct.p99 <= 2,
      }),
    ];
    if (nginxLoad) {
      rows.push(row(s, 'nginx (1 worker) req/s', nginxLoad.rps, 'req/s'));
      rows.push(row(s, 'nginx p50 / p99', nginxLoad.p99, `ms p99 (p50 ${nginxLoad.p50} ms)`));
      rows.push(
        row(s, 'this proxy req/s vs nginx', mine.rps, 'req/s', {
          baseline: 'nginx (1 worker)',
          ratio: mine.rps / nginxLoad.rps,
          target: '>= 0.5x',
          met: mine.rps >= 0.5 * nginxLoad.rps,
        }),
      );
    }
    if (mine.errors + mine.non2xx > 0) console.error(`proxy load had ${mine.errors} errors and ${mine.non2xx} non-2xx answers`);

    const size = 200 * 1024 * 1024;
    await downloadMBps(`${upstream}/v1/file/download?size=${size / 4}`);
    const directRuns: number[] = [];
    const proxiedRuns: number[] = [];
    for (let i = 0; i < 3; i++) {
      directRuns.push(await downloadMBps(`${upstream}/v1/file/download?size=${size}`));
      proxiedRuns.push(await downloadMBps(`${ctx.provisioner}/sandboxes/${ctx.sandboxId}/v1/file/download?size=${size}`));
    }
    const directMBps = percentile(directRuns, 50);
    const proxiedMBps = percentile(proxiedRuns, 50);
    rows.push(
      row(s, '200 MiB download through the proxy', proxiedMBps, 'MiB/s', {
        baseline: `direct (${directMBps.toFixed(0)} MiB/s)`,
        ratio: proxiedMBps / directMBps,
        target: '>= 0.8x',
        met: proxiedMBps >= 0.8 * directMBps,
      }),
    );
    return rows;
  } finally {
    for (const s of stop) s();
  }
}
