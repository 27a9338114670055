// Shared pieces of the benchmarks: result rows, the table, HTTP load with autocannon, child processes.

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
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

/** A free loopback port for a process the benchmark starts (external programs cannot report theirs). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as { port: number }).port;
  await new Promise((ok) => server.close(ok));
  return port;
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
