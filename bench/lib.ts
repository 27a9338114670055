// Shared pieces of the benchmarks: result rows, the table, HTTP load with autocannon, child processes.

import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../tools/cluster/processes.ts';

export { freePort };
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';

export type Row = {
  scenario: string;
  measure: string;
  value: number;
  unit: string;
  baseline: string | null;
  ratio: number | null;
  target: string | null;
  met: boolean | null;
};

export function row(
  scenario: string,
  measure: string,
  value: number,
  unit: string,
  compare?: { baseline: string; ratio: number; target?: string; met?: boolean },
): Row {
  return {
    scenario,
    measure,
    value: Math.round(value * 100) / 100,
    unit,
    baseline: compare?.baseline ?? null,
    ratio: compare ? Math.round(compare.ratio * 100) / 100 : null,
    target: compare?.target ?? null,
    met: compare?.met ?? null,
  };
}

export function printTable(rows: Row[]): void {
  const header = ['scenario', 'measure', 'value', 'baseline', 'ratio', 'target', 'met'];
  const lines = rows.map((r) => [
    r.scenario,
    r.measure,
    `${r.value} ${r.unit}`,
    r.baseline ?? '',
    r.ratio === null ? '' : `${r.ratio}x`,
    r.target ?? '',
    r.met === null ? '' : r.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
  console.log(fmt(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) console.log(fmt(l));
}

export type Load = { rps: number; p50: number; p99: number; errors: number; non2xx: number };

export async function load(
  url: string,
  options: { connections?: number; duration?: number; headers?: Record<string, string> } = {},
): Promise<Load> {
  const result = await autocannon({
    url,
    connections: options.connections ?? 50,
    duration: options.duration ?? 8,
    headers: options.headers ?? {},
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

/** Starts a process and resolves once a stdout/stderr line matches `ready` (with its match). */
export function startProcess(
  command: string,
  args: string[],
  ready: RegExp,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ child: ChildProcess; match: RegExpMatchArray }> {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not become ready`)), 60_000);
    const onLine = (line: string): void => {
      const match = ready.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve({ child, match });
      }
    };
    if (child.stdout) createInterface({ input: child.stdout }).on('line', onLine);
    if (child.stderr) createInterface({ input: child.stderr }).on('line', onLine);
    child.once('exit', (code) => reject(new Error(`${command} exited with ${code} before it was ready`)));
  });
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/**
 * Loads several targets in interleaved rounds (the order rotates each round) and keeps each target's
 * median: on a shared, noisy machine, back-to-back runs of one target after another mostly measure
 * the machine's mood; interleaving gives every target the same conditions.
 */
export async function loadInterleaved(
  urls: Record<string, string>,
  options: { rounds?: number; duration?: number } = {},
): Promise<Record<string, Load>> {
  const rounds = options.rounds ?? 3;
  const names = Object.keys(urls);
  const seen: Record<string, Load[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + r) % names.length] ?? '';
      seen[name]?.push(await load(urls[name] ?? '', { duration: options.duration ?? 4 }));
    }
  }
  const median = (values: number[]): number => percentile(values, 50);
  return Object.fromEntries(
    names.map((n) => {
      const all = seen[n] ?? [];
      return [
        n,
        {
          rps: median(all.map((l) => l.rps)),
          p50: median(all.map((l) => l.p50)),
          p99: median(all.map((l) => l.p99)),
          errors: all.reduce((s, l) => s + l.errors, 0),
          non2xx: all.reduce((s, l) => s + l.non2xx, 0),
        },
      ];
    }),
  );
}

const run = (command: string, args: string[]): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} exited with ${code}`))));
  });

export const hasCommand = (name: string): Promise<boolean> =>
  run('sh', ['-c', `command -v ${name}`]).then(
    () => true,
    () => false,
  );

/**
 * Pins a process (all its threads) to one CPU. On 2 cores, the proxy under test gets core 0 to itself
 * while the load generator, the upstream and the control plane share core 1: the ratios then compare
 * the proxies, not how the scheduler mixed them with the load generator.
 */
export async function pin(pid: number | undefined, cpu: number): Promise<void> {
  if (pid === undefined || !(await hasCommand('taskset'))) return;
  await run('taskset', ['-a', '-cp', String(cpu), String(pid)]).catch(() => undefined);
}

const ms = (value: string, unit: string): number => Number(value) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);

/** Saturation load with wrk (C, one thread: the least CPU per request of the generators here), on `cpu`. */
export async function wrk(url: string, options: { connections?: number; duration?: number; cpu?: number } = {}): Promise<Load> {
  const args = ['-t1', `-c${options.connections ?? 50}`, `-d${options.duration ?? 5}s`, '--latency', url];
  const out = options.cpu === undefined ? await run('wrk', args) : await run('taskset', ['-c', String(options.cpu), 'wrk', ...args]);
  const latency = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)$`, 'm').exec(out);
    return m ? ms(m[1] ?? '', m[2] ?? 'ms') : NaN;
  };
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    p50: latency('50'),
    p99: latency('99'),
    errors: Number(/Socket errors:.*?(\d+)/.exec(out)?.[1] ?? 0),
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0),
  };
}

export type RateLoad = { requests: number; errors: number; p50: number; p90: number; p99: number; p999: number; max: number };

/** Fixed-rate latency (bench/rate-load.ts, its own process, on `cpu`). */
export async function rateLoad(
  url: string,
  options: { rate: number; duration: number; connections: number; cpu?: number },
): Promise<RateLoad> {
  const args = [import.meta.dirname + '/rate-load.ts', url, String(options.rate), String(options.duration), String(options.connections)];
  const out =
    options.cpu === undefined
      ? await run(process.execPath, args)
      : await run('taskset', ['-c', String(options.cpu), process.execPath, ...args]);
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as RateLoad;
}

/** Runs `measure` for each target in turn, `rounds` times in rotated order, and keeps each target's median run. */
export async function interleaved<T extends Record<string, number>>(
  targets: string[],
  rounds: number,
  measure: (target: string) => Promise<T>,
): Promise<Record<string, T>> {
  const seen: Record<string, T[]> = Object.fromEntries(targets.map((t) => [t, []]));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < targets.length; i++) {
      const target = targets[(i + r) % targets.length] ?? '';
      seen[target]?.push(await measure(target));
    }
  }
  return Object.fromEntries(
    targets.map((t) => {
      const runs = seen[t] ?? [];
      const keys = Object.keys(runs[0] ?? {});
      return [
        t,
        Object.fromEntries(
          keys.map((k) => [
            k,
            percentile(
              runs.map((run) => run[k] ?? NaN),
              50,
            ),
          ]),
        ) as T,
      ];
    }),
  );
}

/**
 * The provisioner as its own process, as deployed, on a free port, against the local cluster's
 * kubeconfig; resolves once /readyz answers 200. `env` may depend on the port (PUBLIC_URL); with
 * `profileDir`, it runs under --cpu-prof.
 */
export async function startProvisioner(o: {
  kubeconfig: string;
  ns: string;
  env?: Record<string, string> | ((port: number) => Record<string, string>);
  profileDir?: string;
}): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const cpuProf = o.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`] : [];
  const env = typeof o.env === 'function' ? o.env(port) : (o.env ?? {});
  const child = spawn(process.execPath, [...cpuProf, join(import.meta.dirname, '..', 'src', 'main.ts')], {
    env: {
      ...process.env,
      KUBECONFIG_PATH: o.kubeconfig,
      K8S_NAMESPACE: o.ns,
      NODE_HOST: '127.0.0.1',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      PROVISIONER_ALLOW_ANONYMOUS: 'true',
      ...env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    if ((await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200) return { url, child };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error('the provisioner did not become ready');
}
