// Where the proxy's time goes: reads the V8 CPU profile the provisioner wrote under load (--cpu-prof)
// and prints the functions with the most self time, and the shares of this project's code, undici,
// Node's own http/net/stream code, the garbage collector and idle time.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] };
type Profile = { nodes: Node[]; samples: number[]; timeDeltas: number[] };

function category(url: string, name: string): string {
  if (name === '(idle)') return 'idle';
  if (name === '(garbage collector)') return 'garbage collector';
  if (name === '(program)') return 'V8 and native (program)';
  if (url.includes('/src/')) return 'this project (src/)';
  if (url.includes('node_modules/undici')) return 'undici';
  if (url.includes('node_modules/')) return 'other dependencies';
  if (url.startsWith('node:')) return "Node's own (http, net, streams)";
  return url === '' ? 'native' : 'other';
}

export function summarizeProfile(dir: string): string {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) return `no .cpuprofile in ${dir}`;
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const busy =
    total - [...self.entries()].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0);
  const fns = new Map<string, number>();
  const cats = new Map<string, number>();
  for (const [id, t] of self) {
    const f = byId.get(id)?.callFrame;
    if (!f) continue;
    const where = f.url ? `${f.url.replace(/^.*\/(node_modules\/|src\/)/, '$1')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    fns.set(key, (fns.get(key) ?? 0) + t);
    const c = category(f.url, f.functionName);
    cats.set(c, (cats.get(c) ?? 0) + t);
  }
  const pct = (t: number, of: number): string => `${((100 * t) / of).toFixed(1).padStart(5)}%`;
  const lines = [
    `CPU profile of the provisioner under the proxy load (${(total / 1e6).toFixed(1)} s sampled, ${pct(busy, total).trim()} busy)`,
  ];
  lines.push('  by kind of code (share of busy time):');
  for (const [c, t] of [...cats].filter(([c]) => c !== 'idle').sort((a, b) => b[1] - a[1])) lines.push(`    ${pct(t, busy)}  ${c}`);
  lines.push('  functions with the most self time (share of busy time):');
  for (const [f, t] of [...fns]
    .filter(([f]) => !f.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 20))
    lines.push(`    ${pct(t, busy)}  ${f}`);
  return lines.join('\n');
}
