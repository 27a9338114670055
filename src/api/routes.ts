// The REST API's rows of the route table: /health, /readyz, /openapi.json, /api/capabilities and
// /api/sandboxes[/{id}[/keepalive|/events]]. Status and list queries are answered from the watch view
// alone; creates and deletes go through the writer, activity and keepalives through the activity store.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Config } from '../config.ts';
import { settled, type SandboxRecord } from '../domain/record.ts';
import { STATUSES } from '../domain/sandbox.ts';
import { HttpError, sandboxNotFound } from '../http/errors.ts';
import { parseSandboxId, readJson, validate } from '../http/input.ts';
import { abortOnClose, sendJson, sendJsonText } from '../http/reply.ts';
import type { RequestTarget, RouteRow } from '../http/router.ts';
import type { Activity } from '../lifecycle/activity.ts';
import { countOutcome, type CreateTimings } from '../observe/creates.ts';
import type { Metrics } from '../observe/metrics.ts';
import type { Check } from '../provisioner/housekeeping.ts';
import type { SandboxWriter } from '../provisioner/writer.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { Answers } from './answer.ts';
import { streamSandboxEvents } from './events.ts';
import { openApiDocument } from './openapi.ts';
import { createRequestSchema, keepaliveRequestSchema, threadIdSchema, toSandboxRequest } from './request.ts';

export const listQuerySchema = z.object({ thread_id: threadIdSchema.optional(), status: z.enum(STATUSES).optional() });

export type ApiDeps = {
  config: Config;
  view: SandboxView;
  writer: SandboxWriter;
  activity: Activity;
  answers: Answers;
  /** The origin the caller used (X-Forwarded-* from trusted proxies only): sandbox URLs in proxy mode start with it. */
  base: (req: IncomingMessage) => string | undefined;
  /** Extra readiness checks (the admission preflight, shutdown) shown in /readyz; a failing `shutdown` makes it 503. */
  readiness: () => Check[];
  metrics: Metrics;
  creates: CreateTimings;
};

/** `?wait=<seconds>`: absent means 0; bounded by MAX_WAIT_SECONDS. */
function waitMs(url: RequestTarget, maxSeconds: number): number {
  const raw = url.searchParams.get('wait');
  if (raw === null || raw === '') return 0;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0)
    throw new HttpError('validation_failed', `wait must be a number of seconds between 0 and ${maxSeconds}`);
  return Math.min(n, maxSeconds) * 1000;
}

/** `pvc` when skills and user data both come from claims, `hostPath` when neither does, else `mixed`. */
function storageMode(config: Config): 'pvc' | 'hostPath' | 'mixed' {
  const claims = [config.storage.skills.source, config.storage.userData.source].filter((s) => s === 'claim').length;
  return claims === 2 ? 'pvc' : claims === 0 ? 'hostPath' : 'mixed';
}

export function apiRoutes(deps: ApiDeps): RouteRow[] {
  const { config, view, writer, activity, answers, base, metrics } = deps;
  const answer = (res: ServerResponse, req: IncomingMessage, status: number, record: SandboxRecord): void =>
    sendJsonText(res, status, answers.text(record, base(req)));
  let openapi: string | undefined;

  return [
    { name: '/health', path: '/health', quiet: true, methods: { GET: ({ res }) => sendJson(res, 200, { status: 'ok' }) } },
    {
      name: '/readyz',
      path: '/readyz',
      quiet: true,
      methods: {
        GET: ({ res }) => {
          const h = view.health();
          const checks = deps.readiness();
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
        },
      },
    },
    {
      name: '/openapi.json',
      path: '/openapi.json',
      methods: { GET: ({ res }) => sendJsonText(res, 200, (openapi ??= JSON.stringify(openApiDocument()))) },
    },
    {
      name: '/api/capabilities',
      path: '/api/capabilities',
      methods: {
        GET: ({ res }) =>
          sendJson(res, 200, {
            ...(config.mountContractVersion !== undefined ? { mount_contract_version: config.mountContractVersion } : {}),
            lark_cli_init_image: Boolean(config.lark.initImage),
            lark_cli_broker_image: Boolean(config.lark.brokerImage),
            storage_mode: storageMode(config),
            skills_layout: config.storage.layout,
            service_type: config.sandbox.serviceType,
          }),
      },
    },
    {
      name: '/api/sandboxes',
      pattern: /^\/api\/sandboxes\/?$/,
      methods: {
        GET: ({ req, res, url }) => {
          const q = validate(listQuerySchema, Object.fromEntries(url.searchParams));
          const items = view.list(
            (r) => (q.thread_id === undefined || r.threadId === q.thread_id) && (q.status === undefined || r.status === q.status),
          );
          const origin = base(req);
          sendJsonText(res, 200, `{"sandboxes":[${items.map((r) => answers.text(r, origin)).join(',')}],"count":${items.length}}`);
        },
        POST: async ({ req, res, url }) => {
          const wait = waitMs(url, config.maxWaitSeconds);
          const request = toSandboxRequest(validate(createRequestSchema, await readJson(req, config.body)), config);
          deps.creates.started(request.sandboxId);
          const result = await countOutcome(metrics.creates, writer.create(request), (r) => (r.created ? 'created' : 'existing'));
          if (result.created) activity.created(request.sandboxId);
          else activity.touch(request.sandboxId);
          let record = result.record;
          if (wait > 0 && !settled(record))
            record = (await view.waitFor(request.sandboxId, settled, wait, abortOnClose(req, res))) ?? record;
          answer(res, req, result.created ? 201 : 200, record);
        },
      },
    },
    {
      name: '/api/sandboxes/{id}',
      pattern: /^\/api\/sandboxes\/([^/]+)\/?$/,
      methods: {
        GET: async ({ req, res, url, params }) => {
          const id = parseSandboxId(params[0] ?? '');
          const wait = waitMs(url, config.maxWaitSeconds);
          let record = view.get(id);
          if (record && wait > 0 && !settled(record)) record = await view.waitFor(id, settled, wait, abortOnClose(req, res));
          if (!record) throw sandboxNotFound(id);
          activity.touch(id);
          answer(res, req, 200, record);
        },
        DELETE: async ({ res, params }) => {
          const id = parseSandboxId(params[0] ?? '');
          await countOutcome(metrics.deletes, writer.delete(id), (deleted) => (deleted ? 'deleted' : 'missing'));
          sendJson(res, 200, { ok: true, sandbox_id: id });
        },
      },
    },
    {
      name: '/api/sandboxes/{id}/keepalive',
      pattern: /^\/api\/sandboxes\/([^/]+)\/keepalive\/?$/,
      methods: {
        POST: async ({ req, res, params }) => {
          const id = parseSandboxId(params[0] ?? '');
          const hasBody = Number(req.headers['content-length'] ?? '0') > 0 || req.headers['transfer-encoding'] !== undefined;
          const body = validate(keepaliveRequestSchema, hasBody ? await readJson(req, config.body) : {});
          if (!view.get(id)) throw sandboxNotFound(id);
          // Written to the pod: answer once the view has it. Kept in memory (no patch permission): now.
          const persisted = await activity.keepalive(id, body.ttl_seconds ?? undefined);
          const record = persisted ? await view.waitFor(id, (r) => r === undefined || r.lastActivity !== undefined, 2000) : view.get(id);
          if (!record) throw sandboxNotFound(id);
          answer(res, req, 200, record);
        },
      },
    },
    {
      name: '/api/sandboxes/{id}/events',
      pattern: /^\/api\/sandboxes\/([^/]+)\/events\/?$/,
      methods: { GET: ({ req, res, params }) => streamSandboxEvents(deps, parseSandboxId(params[0] ?? ''), req, res, base(req)) },
    },
  ];
}
