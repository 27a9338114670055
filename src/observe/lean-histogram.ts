// A Prometheus histogram for hot paths: an observation is a bucket search and three additions on a
// series the caller holds. prom-client's child `observe` validates and hashes its labels on every call
// (about a microsecond, as much as the rest of a status answer's own work), so the per-request
// duration histogram lives here and is written after the registry's text in the same format.

/** One label set: counts per bucket (the last is +Inf), their sum and count. */
export class Series {
  readonly labels: string;
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  readonly #bounds: readonly number[];

  constructor(labels: string, bounds: readonly number[]) {
    this.labels = labels;
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count += 1;
  }
}

const escape = (v: string): string => v.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('"', '\\"');

export class LeanHistogram {
  readonly name: string;
  readonly help: string;
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, Series>();

  constructor(name: string, help: string, buckets: number[]) {
    this.name = name;
    this.help = help;
    this.#bounds = [...buckets].sort((a, b) => a - b);
  }

  /** The series of one label set (hold it, or cache it under a key of your own). */
  series(labels: Record<string, string | number>): Series {
    const text = Object.entries(labels)
      .map(([k, v]) => `${k}="${escape(String(v))}"`)
      .join(',');
    let series = this.#series.get(text);
    if (series === undefined) this.#series.set(text, (series = new Series(text, this.#bounds)));
    return series;
  }

  /** The Prometheus text exposition of every series. */
  exposition(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.#series.values()) {
      const rest = s.labels ? `,${s.labels}` : '';
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += s.counts[i] as number;
        lines.push(`${this.name}_bucket{le="${le}"${rest}} ${cumulative}`);
      });
      lines.push(`${this.name}_bucket{le="+Inf"${rest}} ${s.count}`);
      lines.push(`${this.name}_sum${s.labels ? `{${s.labels}}` : ''} ${s.sum}`);
      lines.push(`${this.name}_count${s.labels ? `{${s.labels}}` : ''} ${s.count}`);
    }
    return `${lines.join('\n')}\n`;
  }
}
