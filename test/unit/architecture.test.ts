// The module map in docs/development.md is the architecture: each row names a module of src/, its job, and what
// it may import. This test reads that table and every import of src/**/*.ts, and fails on an import the
// map does not allow, on a module the map does not name, on a map that is not layered (its own rows
// forming a cycle), and on any import cycle between files; tools/ is held to no cycles and to leaning
// on nothing but itself and src/.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { stripTypeScriptTypes } from 'node:module';
import { test } from 'node:test';
import { parse } from 'acorn';
import { simple } from 'acorn-walk';

const root = resolve(import.meta.dirname, '..', '..');
const src = join(root, 'src');

/** Rows of the module map (docs/development.md): | `src/x/` (or `src/x.ts`, several per row) | job | `a`, `b` or — |. */
function moduleMap(): Map<string, Set<string>> {
  const doc = readFileSync(join(root, 'docs', 'development.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Module map'));
  const map = new Map<string, Set<string>>();
  for (const line of section.split('\n').slice(1)) {
    if (line.startsWith('#')) break;
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 4 || !cells[1]?.includes('`src/')) continue;
    const may = new Set([...(cells[3] ?? '').matchAll(/`([a-z.]+)`/g)].map((m) => m[1] ?? ''));
    for (const m of (cells[1] ?? '').matchAll(/`src\/([a-z-]+)(?:\.ts|\/)`/g)) map.set(m[1] ?? '', may);
  }
  return map;
}

/** The unit of a file: its folder under src/, or the file's own name (without .ts) for files at the top. */
const unitOf = (file: string): string => (relative(src, file).split('/')[0] ?? '').replace(/\.ts$/, '');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Relative imports of a file (static, type-only and dynamic), resolved to files. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [
    ...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/g),
    ...text.matchAll(/import\(\s*'([^']+)'\s*\)/g),
  ].map((m) => m[1] ?? '');
  return specs.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s));
}

const files = sources(src);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

test('the module map is layered: no module may import one that may import it back', () => {
  const map = moduleMap();
  assert.ok(map.size >= 10, `the module map of docs/development.md was found (${map.size} rows)`);
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (unit: string, path: string[]): void => {
    if (done.has(unit)) return;
    assert.ok(!visiting.has(unit), `the module map has a cycle: ${[...path, unit].join(' -> ')}`);
    visiting.add(unit);
    for (const next of map.get(unit) ?? []) if (next !== 'everything') visit(next, [...path, unit]);
    visiting.delete(unit);
    done.add(unit);
  };
  for (const unit of map.keys()) visit(unit, []);
});

test('every import in src/ is one the module map allows, and every module is on the map', () => {
  const map = moduleMap();
  const problems: string[] = [];
  for (const [file, imports] of graph) {
    const unit = unitOf(file);
    const may = map.get(unit);
    if (!may) {
      problems.push(`${relative(root, file)}: module ${unit} is not in the module map (docs/development.md)`);
      continue;
    }
    for (const target of imports) {
      const other = unitOf(target);
      if (other !== unit && !may.has(other) && !may.has('everything'))
        problems.push(`${relative(root, file)} imports ${relative(root, target)}: ${unit} may not import ${other}`);
    }
  }
  assert.deepEqual(problems, []);
});

/** The import cycles among `files` (each named relative to the repository). */
function cyclesIn(g: Map<string, string[]>): string[] {
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const visit = (file: string, path: string[]): void => {
    const s = state.get(file);
    if (s === 'done') return;
    if (s === 'visiting') {
      cycles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(root, f)).join(' -> '));
      return;
    }
    state.set(file, 'visiting');
    for (const next of g.get(file) ?? []) if (g.has(next)) visit(next, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of g.keys()) visit(file, []);
  return cycles;
}

test('no import cycle between files of src/', () => {
  assert.deepEqual(cyclesIn(graph), []);
});

const tools = join(root, 'tools');
const toolGraph = new Map(sources(tools).map((f) => [f, importsOf(f)]));

test('tools/ (the local cluster, the build and doc tools) has no import cycle and leans only on src/; src/ never imports tools/ or test/', () => {
  assert.ok(toolGraph.size >= 10, `tools/ was read (${toolGraph.size} files)`);
  assert.deepEqual(cyclesIn(toolGraph), []);
  const problems: string[] = [];
  for (const [file, imports] of toolGraph)
    for (const target of imports)
      if (!target.startsWith(`${tools}/`) && !target.startsWith(`${src}/`))
        problems.push(`${relative(root, file)} imports ${relative(root, target)}`);
  for (const [file, imports] of graph)
    for (const target of imports)
      if (!target.startsWith(`${src}/`)) problems.push(`${relative(root, file)} imports ${relative(root, target)}`);
  assert.deepEqual(problems, []);
});

test('the checks see real imports (a sanity check of the parser)', () => {
  const service = graph.get(join(src, 'service.ts')) ?? [];
  assert.ok(service.includes(join(src, 'watch', 'sandbox-view.ts')), 'service.ts imports the view');
  assert.ok(service.length >= 10);
});

/**
 * Kubernetes API objects are typed by client-node's models, as JSON (src/domain/wire.ts, the one place that
 * also writes the Gateway API's two types, which client-node lacks). A `metadata`, `spec` or `status` key
 * of an object type written anywhere else is a hand-made copy of an API type. A key is in a type when
 * stripping the types blanks it: values (a fixture's `status: { phase: 'Running' }`) stay.
 */
test('Kubernetes wire types come from client-node: no hand-written metadata/spec/status types outside src/domain/wire.ts', () => {
  const copies: string[] = [];
  for (const dir of ['src', 'tools', 'test', 'bench']) {
    for (const file of sources(join(root, dir))) {
      if (file === join(src, 'domain', 'wire.ts')) continue;
      const text = readFileSync(file, 'utf8');
      const js = stripTypeScriptTypes(text, { mode: 'strip' });
      for (const m of text.matchAll(/\b(?:metadata|spec|status)\??\s*:\s*\{/g))
        if (js.slice(m.index, m.index + m[0].length).trim() === '')
          copies.push(`${relative(root, file)}:${text.slice(0, m.index).split('\n').length}`);
    }
  }
  assert.deepEqual(copies, []);
});

/**
 * Functions longer than this are split, except declarative tables: a function whose body only declares
 * values and returns one object or array literal (a route table, an OpenAPI document, metric
 * definitions), each of whose nested functions is measured on its own.
 */
const MAX_FUNCTION_LINES = 80;

type Node = {
  type: string;
  loc: { start: { line: number }; end: { line: number } };
  body?: Node | Node[];
  argument?: Node | null;
  expression?: boolean;
};

function isTable(fn: Node): boolean {
  const body = fn.body as Node | undefined;
  if (!body) return false;
  if (fn.expression) return body.type === 'ObjectExpression' || body.type === 'ArrayExpression';
  const statements = (body.body as Node[] | undefined) ?? [];
  const last = statements.at(-1);
  return (
    last?.type === 'ReturnStatement' &&
    (last.argument?.type === 'ObjectExpression' || last.argument?.type === 'ArrayExpression') &&
    statements.slice(0, -1).every((s) => s.type === 'VariableDeclaration')
  );
}

test(`no function of src/ or tools/ is longer than ${MAX_FUNCTION_LINES} lines, but for declarative tables`, () => {
  const long: string[] = [];
  for (const file of [...sources(src), ...sources(join(root, 'tools'))]) {
    // Types stripped in place (white space keeps every position), then parsed as JavaScript.
    const js = stripTypeScriptTypes(readFileSync(file, 'utf8'), { mode: 'strip' });
    const visit = (fn: Node): void => {
      const lines = fn.loc.end.line - fn.loc.start.line + 1;
      if (lines > MAX_FUNCTION_LINES && !isTable(fn)) long.push(`${relative(root, file)}:${fn.loc.start.line}: ${lines} lines`);
    };
    simple(parse(js, { ecmaVersion: 'latest', sourceType: 'module', locations: true }), {
      FunctionDeclaration: visit,
      FunctionExpression: visit,
      ArrowFunctionExpression: visit,
    } as Parameters<typeof simple>[1]);
  }
  assert.deepEqual(long, []);
});
