// A node:test reporter that writes the ten slowest tests, one a line: what tools/coverage.ts shows when
// the unit tier runs over its time budget.

type TestEvent = { type: string; data: { name: string; nesting: number; details?: { duration_ms?: number } } };

export default async function* slowest(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const times: [number, string][] = [];
  for await (const event of source)
    if (event.type === 'test:pass' || event.type === 'test:fail')
      if (event.data.nesting === 0) times.push([event.data.details?.duration_ms ?? 0, event.data.name]);
  times.sort((a, b) => b[0] - a[0]);
  for (const [ms, name] of times.slice(0, 10)) yield `  ${ms.toFixed(0).padStart(6)} ms  ${name}\n`;
}
