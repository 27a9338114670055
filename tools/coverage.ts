// Line and branch coverage of src/ per folder, from the LCOV file Node's test runner writes
// (--experimental-test-coverage --test-reporter=lcov). Node reports only the files a test loaded, which
// flatters a run that never loads the riskiest modules; here every file of src/ counts: a file no test
// loaded counts all its lines as uncovered (V8 cannot tell its branches, so it adds none).
//
//   node tools/coverage.ts run unit|full   runs the unit tests alone, or the whole suite (with the
//                                          local control plane), then reports and checks the floors
//   node tools/coverage.ts <file.lcov>     reports an LCOV file
//
// A run exits non-zero when a test fails or a figure is below its floor (FLOORS below, set from the
// figures reached, with a margin).

import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { stripTypeScriptTypes } from 'node:module';

/** Percent floors: the whole of src/ outside the composition root, and each folder. */
const FLOORS: Record<'unit' | 'full', { lines: number; branches: number; folders: Record<string, number> }> = {
  unit: { lines: 90, branches: 80, folders: { api: 85, http: 85, proxy: 85, provisioner: 85, watch: 85, lifecycle: 85 } },
  full: { lines: 95, branches: 87, folders: { api: 90, http: 90, proxy: 90, provisioner: 90, watch: 90, lifecycle: 90 } },
};
/** The composition root: wiring, exercised by every test that starts the service, reported on its own line. */
const ROOT_FILES = new Set(['src/main.ts', 'src/service.ts']);

type FileCoverage = { lines: number; linesHit: number; branches: number; branchesHit: number; loaded: boolean };

const root = resolve(import.meta.dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [relative(root, join(dir, e.name))] : [],
  );
}

export function parseLcov(text: string): Map<string, FileCoverage> {
  const files = new Map<string, FileCoverage>();
  let current: FileCoverage | undefined;
  for (const line of text.split('\n')) {
    const [tag, value = ''] = line.split(/:(.*)/s);
    if (tag === 'SF') {
      current = { lines: 0, linesHit: 0, branches: 0, branchesHit: 0, loaded: true };
      files.set(relative(root, resolve(root, value)), current);
    } else if (current && tag === 'LF') current.lines = Number(value);
    else if (current && tag === 'LH') current.linesHit = Number(value);
    else if (current && tag === 'BRF') current.branches = Number(value);
    else if (current && tag === 'BRH') current.branchesHit = Number(value);
  }
  return files;
}

/**
 * Every file of src/: as Node reported it, or unloaded with all its lines uncovered. A file of types only
 * (imported with `import type`, so never loaded) has no line to run: it is left out.
 */
export function allSources(reported: Map<string, FileCoverage>): Map<string, FileCoverage> {
  const all = new Map<string, FileCoverage>();
  for (const file of sources(join(root, 'src'))) {
    const text = readFileSync(join(root, file), 'utf8');
    const found = reported.get(file);
    if (found) all.set(file, found);
    else if (!typesOnly(text)) all.set(file, { lines: text.split('\n').length, linesHit: 0, branches: 0, branchesHit: 0, loaded: false });
  }
  return all;
}

/** Nothing is left of the file once its types and comments are stripped. */
const typesOnly = (text: string): boolean =>
  stripTypeScriptTypes(text, { mode: 'strip' })
    .replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '')
    .trim() === '';

const folderOf = (file: string): string => (ROOT_FILES.has(file) ? '(composition root)' : (file.split('/')[1] ?? '').replace(/\.ts$/, ''));
const pct = (hit: number, total: number): number => (total === 0 ? 100 : (100 * hit) / total);

type Totals = FileCoverage & { files: number; loadedFiles: number };

function sum(entries: FileCoverage[]): Totals {
  return entries.reduce<Totals>(
    (a, c) => ({
      lines: a.lines + c.lines,
      linesHit: a.linesHit + c.linesHit,
      branches: a.branches + c.branches,
      branchesHit: a.branchesHit + c.branchesHit,
      loaded: true,
      files: a.files + 1,
      loadedFiles: a.loadedFiles + (c.loaded ? 1 : 0),
    }),
    { lines: 0, linesHit: 0, branches: 0, branchesHit: 0, loaded: true, files: 0, loadedFiles: 0 },
  );
}

export function report(
  all: Map<string, FileCoverage>,
  label: string,
): { table: string; byFolder: Map<string, number>; outside: FileCoverage } {
  const folders = new Map<string, FileCoverage[]>();
  for (const [file, c] of all) folders.set(folderOf(file), [...(folders.get(folderOf(file)) ?? []), c]);
  const rows = [...folders.entries()].sort(([a], [b]) => a.localeCompare(b));
  const outside = sum([...all.entries()].filter(([f]) => !ROOT_FILES.has(f)).map(([, c]) => c));
  const line = (name: string, s: ReturnType<typeof sum>) =>
    `  ${name.padEnd(20)} ${pct(s.linesHit, s.lines).toFixed(1).padStart(6)}%  ${pct(s.branchesHit, s.branches).toFixed(1).padStart(6)}%  ${String(s.linesHit).padStart(5)}/${String(s.lines).padEnd(5)}  ${s.loadedFiles}/${s.files} files loaded`;
  const byFolder = new Map<string, number>();
  const out = [`coverage of src/ (${label}), every file counted:`, `  ${'folder'.padEnd(20)}  lines  branches   lines hit`];
  for (const [name, entries] of rows) {
    const s = sum(entries);
    byFolder.set(name, pct(s.linesHit, s.lines));
    out.push(line(name, s));
  }
  out.push(line('all but the root', outside), line('all of src/', sum([...all.values()])));
  return { table: out.join('\n'), byFolder, outside };
}

/** The test runs: which files, and what else the runner needs. */
const RUNS = {
  // One process for the pure tests: a process per file cost 27 s of CPU (module loading) for 11 s of tests.
  unit: { files: ['test/unit/**/*.test.ts'], args: ['--test-isolation=none'], reporter: 'dot', label: 'unit tests alone' },
  full: {
    files: ['test/**/*.test.ts'],
    args: ['--test-concurrency=1', '--test-global-setup=test/global-setup.ts'],
    reporter: 'spec',
    label: 'the whole suite',
  },
};

function check(kind: 'unit' | 'full', lcov: string): boolean {
  const { table, byFolder, outside } = report(allSources(parseLcov(readFileSync(lcov, 'utf8'))), RUNS[kind].label);
  console.log(table);
  const floors = FLOORS[kind];
  const lines = pct(outside.linesHit, outside.lines);
  const branches = pct(outside.branchesHit, outside.branches);
  const problems = [
    lines < floors.lines ? `lines ${lines.toFixed(1)}% < ${floors.lines}%` : '',
    branches < floors.branches ? `branches ${branches.toFixed(1)}% < ${floors.branches}%` : '',
    ...Object.entries(floors.folders).map(([folder, floor]) =>
      (byFolder.get(folder) ?? 0) < floor ? `${folder}/ lines ${(byFolder.get(folder) ?? 0).toFixed(1)}% < ${floor}%` : '',
    ),
  ].filter(Boolean);
  if (problems.length) console.error(`coverage below its floors (${RUNS[kind].label}): ${problems.join('; ')}`);
  return problems.length === 0;
}

/**
 * The unit tier's budget: under 10 s on 2 cores (about 7 s now). Past it the run names its slowest
 * tests; past three times it the run fails (a margin for a loaded machine, not for a slow test).
 */
const UNIT_BUDGET_MS = 10_000;

function checkTime(kind: 'unit' | 'full', ms: number, lcovDir: string): boolean {
  if (kind !== 'unit' || ms <= UNIT_BUDGET_MS) return true;
  const slowest = readFileSync(join(lcovDir, 'unit-times.txt'), 'utf8').trim();
  console.error(
    `the unit tests took ${(ms / 1000).toFixed(1)} s, over their budget of ${UNIT_BUDGET_MS / 1000} s; the slowest:\n${slowest}`,
  );
  return ms <= 3 * UNIT_BUDGET_MS;
}

function run(kind: 'unit' | 'full'): number {
  const r = RUNS[kind];
  mkdirSync(join(root, 'coverage'), { recursive: true });
  const lcov = join(root, 'coverage', `${kind}.lcov`);
  const started = performance.now();
  const test = spawnSync(
    process.execPath,
    [
      '--test',
      ...r.args,
      ...(kind === 'unit'
        ? ['--test-reporter=./tools/test-times.ts', `--test-reporter-destination=${join(root, 'coverage', 'unit-times.txt')}`]
        : []),
      '--experimental-test-coverage',
      '--test-coverage-include=src/**',
      `--test-reporter=${r.reporter}`,
      '--test-reporter-destination=stdout',
      '--test-reporter=lcov',
      `--test-reporter-destination=${lcov}`,
      ...r.files,
    ],
    { cwd: root, stdio: 'inherit' },
  );
  const ms = performance.now() - started;
  const covered = check(kind, lcov);
  const inTime = checkTime(kind, ms, join(root, 'coverage'));
  return test.status !== 0 ? (test.status ?? 1) : covered && inTime ? 0 : 1;
}

if (import.meta.main) {
  const [first, second] = process.argv.slice(2);
  if (first === 'run' && (second === 'unit' || second === 'full')) process.exit(run(second));
  if (!first || first === 'run') {
    console.error('usage: node tools/coverage.ts run unit|full, or node tools/coverage.ts <file.lcov>');
    process.exit(2);
  }
  console.log(report(allSources(parseLcov(readFileSync(first, 'utf8'))), first).table);
}
