// The operator's live view, fed by the watch: GET /api/events streams every sandbox of the namespace
// (Server-Sent Events: a snapshot, then each change, with heartbeats; no Kubernetes call per client),
// and keeps a bounded history in memory for the dashboard: each sandbox's recent transitions, counts by
// status over the last hour, and create-to-Running times.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { LRUCache } from 'lru-cache';
import { STUCK_REASONS, type SandboxRecord } from '../domain/record.ts';
import { STATUSES, type SandboxStatus } from '../domain/sandbox.ts';
import type { Answers, SandboxAnswer } from '../api/answer.ts';
import type { EventStream, EventStreams } from '../http/event-stream.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';

export type Transition = { at: string; status: SandboxStatus; reason?: string };

/**
 * What the dashboard counts a sandbox as: its status, except that a Pending one that waits for someone
 * to act (a crash loop, an image that cannot be pulled, no node to run on) is Stuck, counted apart.
 */
export const STATES = ['Pending', 'Stuck', ...STATUSES.filter((s) => s !== 'Pending')] as const;
export type DashboardState = (typeof STATES)[number];
export const stateOf = (r: SandboxRecord): DashboardState =>
  r.status === 'Pending' && r.reason !== undefined && STUCK_REASONS.has(r.reason) ? 'Stuck' : r.status;

/** One sandbox as the dashboard shows it: the API's answer plus what an operator looks at. */
export type DashboardRow = SandboxAnswer & {
  state: DashboardState;
  last_activity_at: string;
  create_to_running_s?: number;
  transitions: Transition[];
};

export type Sample = { at: string; counts: Record<DashboardState, number> };

const TRANSITIONS_PER_SANDBOX = 20;
const SAMPLE_EVERY_MS = 30_000;
/** An hour of samples. */
const SAMPLES = 120;
const DURATIONS = 500;

/** A connected stream, and where it reached the service (sandbox URLs may depend on it). */
type Client = { base: string | undefined; stream: EventStream };

export type FeedDeps = {
  view: SandboxView;
  answers: Answers;
  lastActivity: (record: SandboxRecord) => number;
  /** Nodes sandboxes may run on, and those lacking the sandbox image (when nodes are watched). */
  nodes?: () => { eligible: number; lacking: string[] } | undefined;
  streams: EventStreams;
  now?: () => number;
};

export class Feed {
  #deps: FeedDeps;
  #now: () => number;
  #transitions = new LRUCache<string, Transition[]>({ max: 50_000 });
  #readyAfter = new LRUCache<string, number>({ max: 50_000 });
  #samples: Sample[] = [];
  #durations: { at: string; seconds: number }[] = [];
  #clients = new Set<Client>();
  #timer: NodeJS.Timeout;

  constructor(deps: FeedDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    deps.view.subscribe((change) => this.#onChange(change.id, change.record, change.previous));
    this.#timer = setInterval(() => this.#sample(), SAMPLE_EVERY_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #iso = (ms: number): string => new Date(ms).toISOString();

  #onChange(id: string, record: SandboxRecord | undefined, previous: SandboxRecord | undefined): void {
    if (record === undefined) {
      this.#transitions.delete(id);
      this.#readyAfter.delete(id);
      return this.#send('removed', () => ({ sandbox_id: id }));
    }
    if (previous?.status !== record.status || previous.reason !== record.reason) {
      const list = this.#transitions.get(id) ?? [];
      list.push(this.#transitionNow(record));
      this.#transitions.set(id, list.slice(-TRANSITIONS_PER_SANDBOX));
    }
    if (record.status === 'Running' && previous?.status !== 'Running' && !this.#readyAfter.has(id) && Number.isFinite(record.createdAt)) {
      // From the pod's creation (the API server's clock, whole seconds) to the watch seeing it Ready.
      const seconds = Math.max(0, (this.#now() - record.createdAt) / 1000);
      this.#readyAfter.set(id, seconds);
      this.#durations.push({ at: this.#iso(this.#now()), seconds });
      if (this.#durations.length > DURATIONS) this.#durations.shift();
    }
    this.#send('change', (base) => this.row(record, base));
  }

  #sample(): void {
    const counts = Object.fromEntries(STATES.map((s) => [s, 0])) as Record<DashboardState, number>;
    // Activity changes no record (it is kept in memory between writes): send it with each sample.
    const activity: Record<string, string> = {};
    for (const r of this.#deps.view.list()) {
      counts[stateOf(r)] += 1;
      activity[r.sandboxId] = this.#iso(this.#deps.lastActivity(r));
    }
    const sample = { at: this.#iso(this.#now()), counts };
    this.#samples.push(sample);
    if (this.#samples.length > SAMPLES) this.#samples.shift();
    this.#send('sample', () => ({ sample, activity, nodes: this.#deps.nodes?.() ?? null }));
  }

  row(record: SandboxRecord, base?: string): DashboardRow {
    const ready = this.#readyAfter.get(record.sandboxId);
    return {
      ...this.#deps.answers.answer(record, base),
      state: stateOf(record),
      last_activity_at: this.#iso(this.#deps.lastActivity(record)),
      ...(ready !== undefined ? { create_to_running_s: Math.round(ready * 10) / 10 } : {}),
      transitions: this.#transitions.get(record.sandboxId) ?? [this.#transitionNow(record)],
    };
  }

  #transitionNow(record: SandboxRecord): Transition {
    return { at: this.#iso(this.#now()), status: record.status, ...(record.reason ? { reason: record.reason } : {}) };
  }

  #send(event: string, data: (base: string | undefined) => unknown): void {
    for (const client of this.#clients) client.stream.send(event, data(client.base));
  }

  /** GET /api/events: `snapshot` (every sandbox, the samples and durations), then `change`, `removed` and `sample`. */
  stream(req: IncomingMessage, res: ServerResponse, base: string | undefined): void {
    const stream = this.#deps.streams.open(req, res);
    if (!stream) return;
    stream.send('snapshot', {
      sandboxes: this.#deps.view.list().map((r) => this.row(r, base)),
      samples: this.#samples,
      durations: this.#durations,
      sample_every_s: SAMPLE_EVERY_MS / 1000,
      nodes: this.#deps.nodes?.() ?? null,
    });
    const client: Client = { base, stream };
    this.#clients.add(client);
    stream.onClose(() => this.#clients.delete(client));
  }
}
