// The REST API's rows of the route table: /health, /readyz, /openapi.json, /api/capabilities and
// /api/sandboxes[/{id}[/keepalive|/events]]. Status and list queries are answered from the watch view
// alone; creates and deletes go through the writer, activity and keepalives through the activity store.

import { VERSION } from '../version.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import type { Config } from '../config.ts';
import { settled, type SandboxRecord } from '../domain/record.ts';
import type { SandboxRequest } from '../domain/request.ts';
import { DEFAULT_SHELL_SESSIONS, SANDBOX_CONTAINER, STATUSES } from '../domain/sandbox.ts';
import { HttpError, queryProblem, sandboxNotFound } from '../http/errors.ts';
import { declaresBody, parseSandboxId, readJson, validate } from '../http/input.ts';
import { untilAccepting } from '../http/reachable.ts';
import { abortOnClose, sendJson, sendJsonSized, sendJsonText } from '../http/reply.ts';
import type { Context, RequestTarget, RouteRow } from '../http/router.ts';
import type { Activity } from '../lifecycle/activity.ts';
import type { Suspender } from '../lifecycle/suspender.ts';
import { countOutcome, type CreateTimings } from '../observe/creates.ts';
import type { Metrics } from '../observe/metrics.ts';
import type { Check } from '../provisioner/housekeeping.ts';
import type { ReadLogs } from '../provisioner/logs.ts';
import type { SandboxWriter } from '../provisioner/writer.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { Answers } from './answer.ts';
import { streamSandboxEvents } from './events.ts';
import type { EventStreams } from '../http/event-stream.ts';
import { openApiDocument } from './openapi.ts';
import { CAPABILITY_REFRESH, createRequestSchema, keepaliveRequestSchema, threadIdSchema, toSandboxRequest } from './request.ts';

/** The most lines a logs answer starts with (kubelet keeps its own bounded files anyway). */
const MAX_TAIL_LINES = 10_000;
const DEFAULT_TAIL_LINES = 500;

export const listQuerySchema = z.object({ thread_id: threadIdSchema.optional(), status: z.enum(STATUSES).optional() });

/** How long after a wake a status read waits for the node port to accept connections, at most. */
const JUST_ROUTED_MS = 5000;

/** A status read wakes a suspended sandbox (DeerFlow's is_alive) unless it says `?wake=false` (a monitor). */
const WAKE_PARAM = 'wake';

export type ApiDeps = {
  config: Config;
  view: SandboxView;
  writer: SandboxWriter;
  activity: Activity;
  /** Suspend and wake (the writer's, with the active limits and what counts as idle). */
  suspender: Suspender;
  answers: Answers;
  /** The origin the caller used (X-Forwarded-* from trusted proxies only): sandbox URLs in proxy mode start with it. */
  base: (req: IncomingMessage) => string | undefined;
  /** Extra readiness checks (the admission preflight, shutdown) shown in /readyz; a failing `shutdown` makes it 503. */
  readiness: () => Check[];
  metrics: Metrics;
  creates: CreateTimings;
  /** Every event stream of the service (bounded per client, ended at shutdown). */
  streams: EventStreams;
  /** A sandbox's container logs, from the API server (the view does not hold them). */
  readLogs: ReadLogs;
};

/** `GET /api/sandboxes/{id}/logs`: kubelet's log of one of the sandbox's containers. */
export const logsQuerySchema = z.object({
  tail_lines: z.coerce.number().int().min(1).max(MAX_TAIL_LINES).optional(),
  follow: z.enum(['true', 'false']).optional(),
  container: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a container name')
    .optional(),
});

/** `?wait=<seconds>`: absent means 0; bounded by MAX_WAIT_SECONDS. */
function waitMs(url: RequestTarget, maxSeconds: number): number {
  if (url.search === '') return 0; // the hot path: no query at all
  const raw = url.searchParams.get('wait');
  if (raw === null || raw === '') return 0;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw queryProblem('wait', `must be a number of seconds between 0 and ${maxSeconds}`, 'number_parsing');
  return Math.min(n, maxSeconds) * 1000;
}

/** The DeerFlow provisioner contracts this service speaks (docs/api.md). */
export const CONTRACTS = ['deerflow-seed', 'deerflow-2.1'];

/**
 * DeerFlow 2.1: the sandbox a create answers must have what the request asked, whoever made its pod (an
 * earlier create, a racing one): the shell capacity at least, and the Lark broker mode when Lark was asked.
 * Replacing a sandbox that falls short is the gateway's call (it knows whether the sandbox is idle), as
 * with DeerFlow's own provisioner.
 */
function meetsRequest(request: SandboxRequest, record: SandboxRecord): void {
  const capacity = record.shellCapacity ?? DEFAULT_SHELL_SESSIONS;
  if (request.maxShellSessions !== undefined && capacity < request.maxShellSessions)
    throw new HttpError(
      'shell_capacity_conflict',
      'Existing sandbox shell capacity is below the requested value; replacement must be coordinated by the Gateway',
    );
  if ((request.larkRuntime || request.larkBroker) && record.larkBroker !== request.larkBroker)
    throw new HttpError(
      'lark_broker_conflict',
      'Existing sandbox has an incompatible Lark broker mode; replacement must be coordinated by the Gateway',
      { headers: CAPABILITY_REFRESH },
    );
}

/** `pvc` when skills and user data both come from claims, `hostPath` when neither does, else `mixed`. */
function storageMode(config: Config): 'pvc' | 'hostPath' | 'mixed' {
  const claims = [config.storage.skills.source, config.storage.userData.source].filter((s) => s === 'claim').length;
  return claims === 2 ? 'pvc' : claims === 0 ? 'hostPath' : 'mixed';
}

/** The API's handlers, each a method: the route table below only names them. */
class Api {
  #deps: ApiDeps;
  #openapi: string | undefined;

  constructor(deps: ApiDeps) {
    this.#deps = deps;
  }

  #answer(req: IncomingMessage, res: ServerResponse, status: number, record: SandboxRecord): void {
    const { answers, base } = this.#deps;
    const { text, length } = answers.serialized(record, answers.perCaller ? base(req) : undefined);
    sendJsonSized(res, status, text, length);
  }

  readyz({ res }: Context): void {
    const { view, readiness } = this.#deps;
    const h = view.health();
    const checks = readiness();
    const problems = [h.reason, ...checks.filter((c) => !c.ok).map((c) => c.detail)].filter(Boolean);
    // Ready means "this replica can answer": synced once and not shutting down. A disconnected or
    // stale watch is reported, not a reason to take every replica out of service at once (status
    // and list answers from memory are most useful exactly then).
    const down = !h.synced || checks.some((c) => c.name === 'shutdown' && !c.ok);
    const body = {
      status: down ? 'unavailable' : 'ok',
      synced: h.synced,
      healthy: h.healthy,
      stale: h.stale,
      sandboxes: view.size,
      checks,
    };
    if (down) throw new HttpError('not_ready', problems.join('; '), { extra: body });
    sendJson(res, 200, problems.length ? { ...body, detail: problems.join('; ') } : body);
  }

  openapi({ res }: Context): void {
    sendJsonText(res, 200, (this.#openapi ??= JSON.stringify(openApiDocument(this.#deps.config.maxWaitSeconds))));
  }

  capabilities({ res }: Context): void {
    const { config } = this.#deps;
    sendJson(res, 200, {
      ...(config.mountContractVersion !== undefined ? { mount_contract_version: config.mountContractVersion } : {}),
      lark_cli_init_image: Boolean(config.lark.initImage),
      lark_cli_broker_image: Boolean(config.lark.brokerImage),
      storage_mode: storageMode(config),
      skills_layout: config.storage.layout,
      service_type: config.sandbox.serviceType,
      contracts: CONTRACTS,
    });
  }

  list({ req, res, url }: Context): void {
    const { view, answers, base } = this.#deps;
    const q = validate(listQuerySchema, Object.fromEntries(url.searchParams), 'query');
    // A sandbox is its pod, or its suspended Service: a service or route left without a pod otherwise is
    // not listed (DeerFlow 2.1 skips it too). Listing wakes nothing.
    const items = view.list(
      (r) =>
        (r.hasPod || r.suspension === 'suspended') &&
        (q.thread_id === undefined || r.threadId === q.thread_id) &&
        (q.status === undefined || r.status === q.status),
    );
    const origin = answers.perCaller ? base(req) : undefined;
    sendJsonText(res, 200, `{"sandboxes":[${items.map((r) => answers.text(r, origin)).join(',')}],"count":${items.length}}`);
  }

  async create({ req, res, url }: Context): Promise<void> {
    const { config, writer, activity, metrics, creates } = this.#deps;
    const wait = waitMs(url, config.maxWaitSeconds);
    const request = toSandboxRequest(validate(createRequestSchema, await readJson(req, config.body)), config);
    creates.started(request.sandboxId);
    const result = await countOutcome(metrics.creates, writer.create(request, { ms: wait, signal: abortOnClose(req, res) }), (r) =>
      r.created ? 'created' : 'existing',
    );
    meetsRequest(request, result.record);
    if (result.created) activity.created(request.sandboxId);
    else activity.touch(request.sandboxId);
    this.#answer(req, res, result.created ? 201 : 200, result.record);
  }

  /**
   * A sandbox from the view: answered synchronously unless the caller waits for it to settle, or it is
   * suspended: then the read wakes it (DeerFlow's is_alive reads this and replaces a sandbox that is not
   * Running) and answers once it runs, within WAKE_WAIT_SECONDS or the caller's `?wait=`. `?wake=false`
   * reads without waking.
   */
  status({ req, res, url, params }: Context): Promise<void> | void {
    const id = parseSandboxId(params[0] ?? '');
    const wait = waitMs(url, this.#deps.config.maxWaitSeconds);
    const record = this.#deps.view.get(id);
    if (record?.suspension && url.search !== '' && url.searchParams.get(WAKE_PARAM) === 'false') return this.#answer(req, res, 200, record);
    if (record?.suspension) return this.#statusAfterWake(req, res, id, wait);
    if (record && wait > 0 && !settled(record)) return this.#statusAfterWait(req, res, id, wait);
    // A service whose pod is gone: 404, what DeerFlow's clients handle (is_alive false), where DeerFlow 2.1 answers a 500.
    if (!record?.hasPod) throw sandboxNotFound(id);
    this.#deps.activity.touch(id);
    this.#answer(req, res, 200, record);
  }

  async #statusAfterWait(req: IncomingMessage, res: ServerResponse, id: string, wait: number): Promise<void> {
    const record = await this.#deps.view.waitFor(id, settled, wait, abortOnClose(req, res));
    if (!record?.hasPod && record?.suspension !== 'suspended') throw sandboxNotFound(id);
    this.#deps.activity.touch(id);
    this.#answer(req, res, 200, record);
  }

  async #statusAfterWake(req: IncomingMessage, res: ServerResponse, id: string, wait: number): Promise<void> {
    const { config, suspender, view } = this.#deps;
    await suspender.wake(id, wait > 0 ? 'wait' : 'status');
    const ms = Math.max(wait, config.suspend.wakeWaitMs);
    const started = performance.now();
    const record = await view.waitFor(id, settled, ms, abortOnClose(req, res));
    // nodeport mode: DeerFlow uses the URL at once after is_alive, so Running waits for the node port
    // to be programmed for the new pod (kube-proxy follows Ready by a moment).
    if (record?.status === 'Running' && record.nodePort !== undefined && config.sandboxUrl.mode === 'nodeport')
      await untilAccepting(config.proxy.upstreamHost, record.nodePort, Math.min(JUST_ROUTED_MS, ms - (performance.now() - started)));
    return this.#statusAfterWait(req, res, id, 0);
  }

  /** Suspends a sandbox now (an operator, or a backend that knows it is done for a while); `?wait=` until its pod is gone. */
  async suspend({ req, res, url, params }: Context): Promise<void> {
    const id = parseSandboxId(params[0] ?? '');
    const wait = waitMs(url, this.#deps.config.maxWaitSeconds);
    if (!this.#deps.view.get(id)) throw sandboxNotFound(id);
    await this.#deps.suspender.suspend(id);
    const done = (r: SandboxRecord | undefined): boolean => r === undefined || r.suspension === 'suspended';
    const record = await this.#deps.view.waitFor(id, (r) => done(r) || (wait <= 0 && r?.suspension !== undefined), Math.max(wait, 2000));
    if (!record) throw sandboxNotFound(id);
    this.#answer(req, res, 200, record);
  }

  /** Wakes a suspended sandbox (a running one is answered as it is); `?wait=` until it runs. */
  async resume({ req, res, url, params }: Context): Promise<void> {
    const id = parseSandboxId(params[0] ?? '');
    const wait = waitMs(url, this.#deps.config.maxWaitSeconds);
    if (!this.#deps.view.get(id)) throw sandboxNotFound(id);
    await this.#deps.suspender.wake(id, 'resume');
    this.#deps.activity.touch(id);
    const record = wait > 0 ? await this.#deps.view.waitFor(id, settled, wait, abortOnClose(req, res)) : this.#deps.view.get(id);
    if (!record) throw sandboxNotFound(id);
    this.#answer(req, res, 200, record);
  }

  async delete({ res, params }: Context): Promise<void> {
    const id = parseSandboxId(params[0] ?? '');
    await countOutcome(this.#deps.metrics.deletes, this.#deps.writer.delete(id), (deleted) => (deleted ? 'deleted' : 'missing'));
    sendJson(res, 200, { ok: true, sandbox_id: id });
  }

  async keepalive({ req, res, params }: Context): Promise<void> {
    const { config, view, activity } = this.#deps;
    const id = parseSandboxId(params[0] ?? '');
    const body = validate(keepaliveRequestSchema, declaresBody(req) ? await readJson(req, config.body) : {});
    const current = view.get(id);
    if (!current) throw sandboxNotFound(id);
    // A keepalive is a use: a suspended sandbox wakes first (its lease and activity go on its new pod).
    if (current.suspension) await this.#deps.suspender.wake(id, 'resume');
    // Written to the pod: answer once the view has it. Kept in memory (no patch permission): now.
    const written = await activity.keepalive(id, body.ttl_seconds ?? undefined, body.lease_seconds ?? undefined);
    // Read-your-writes: the answer (and the next sweep) sees what was just written (lease and expiry too).
    const record =
      written !== undefined ? await view.waitFor(id, (r) => r === undefined || r.lastActivity === written, 2000) : view.get(id);
    if (!record) throw sandboxNotFound(id);
    this.#answer(req, res, 200, record);
  }

  /** DeerFlow 2.1: whether a pod of this id exists (Pending, crashed and Terminating ones do), and its uid. */
  presence({ res, params }: Context): void {
    const id = parseSandboxId(params[0] ?? '');
    const record = this.#deps.view.get(id);
    const exists = record?.hasPod === true;
    sendJson(res, 200, { sandbox_id: id, exists, container_id: (exists && record.podUid) || null });
  }

  /**
   * The sandbox's container logs, from the API server's log endpoint (which asks kubelet): the last
   * `tail_lines` (500), then with `follow=true` each new line until the caller leaves.
   */
  async logs({ req, res, params, url }: Context): Promise<void> {
    const id = parseSandboxId(params[0] ?? '');
    const q = validate(logsQuerySchema, Object.fromEntries(url.searchParams), 'query');
    const record = this.#deps.view.get(id);
    if (!record?.hasPod) throw sandboxNotFound(id);
    const body = await this.#deps.readLogs(
      id,
      { container: q.container ?? SANDBOX_CONTAINER, tailLines: q.tail_lines ?? DEFAULT_TAIL_LINES, follow: q.follow === 'true' },
      abortOnClose(req, res),
    );
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    await pipeline(body, res).catch(() => undefined);
  }

  events({ req, res, params }: Context): void {
    streamSandboxEvents(this.#deps, parseSandboxId(params[0] ?? ''), req, res, this.#deps.base(req));
  }
}

export function apiRoutes(deps: ApiDeps): RouteRow[] {
  const api = new Api(deps);
  return [
    {
      name: '/health',
      path: '/health',
      quiet: true,
      getLogsNothing: true,
      methods: { GET: ({ res }) => sendJson(res, 200, { status: 'ok', version: VERSION }) },
    },
    { name: '/readyz', path: '/readyz', quiet: true, getLogsNothing: true, methods: { GET: (c) => api.readyz(c) } },
    { name: '/openapi.json', path: '/openapi.json', methods: { GET: (c) => api.openapi(c) } },
    { name: '/api/capabilities', path: '/api/capabilities', methods: { GET: (c) => api.capabilities(c) } },
    {
      name: '/api/sandboxes',
      template: '/api/sandboxes',
      getLogsNothing: true,
      methods: { GET: (c) => api.list(c), POST: (c) => api.create(c) },
    },
    {
      name: '/api/sandboxes/{id}',
      template: '/api/sandboxes/{id}',
      getLogsNothing: true,
      methods: { GET: (c) => api.status(c), DELETE: (c) => api.delete(c) },
    },
    {
      name: '/api/sandboxes/{id}/keepalive',
      template: '/api/sandboxes/{id}/keepalive',
      methods: { POST: (c) => api.keepalive(c) },
    },
    { name: '/api/sandboxes/{id}/suspend', template: '/api/sandboxes/{id}/suspend', methods: { POST: (c) => api.suspend(c) } },
    { name: '/api/sandboxes/{id}/resume', template: '/api/sandboxes/{id}/resume', methods: { POST: (c) => api.resume(c) } },
    {
      name: '/api/sandboxes/{id}/presence',
      template: '/api/sandboxes/{id}/presence',
      getLogsNothing: true,
      methods: { GET: (c) => api.presence(c) },
    },
    { name: '/api/sandboxes/{id}/events', template: '/api/sandboxes/{id}/events', methods: { GET: (c) => api.events(c) } },
    { name: '/api/sandboxes/{id}/logs', template: '/api/sandboxes/{id}/logs', methods: { GET: (c) => api.logs(c) } },
  ];
}
