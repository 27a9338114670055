// The REST API: /health, /readyz, /api/capabilities and /api/sandboxes[/{id}]. Status and list queries
// are answered from the watch view alone; only create and delete talk to the Kubernetes API.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { RequestTarget } from '../app.ts';
import type { Config } from '../config.ts';
import { HttpError } from '../errors.ts';
import { hasApiKey, readJson, sendJson, sendJsonText, validate } from '../http.ts';
import { STATUSES } from '../watch/sandbox.ts';
import type { Activity } from '../lifecycle/activity.ts';
import type { Metrics } from '../metrics.ts';
import type { SandboxRecord } from '../watch/sandbox-view.ts';
import { createRequestSchema, keepaliveRequestSchema, parseSandboxId, THREAD_ID, toSandboxRequest } from './request.ts';
import { settled, type Sandboxes } from './sandboxes.ts';

export type Route = { route: string; handle: () => Promise<void> | void };

const listQuerySchema = z.object({
  thread_id: z.string().regex(THREAD_ID, 'thread_id must match ^[A-Za-z0-9_-]{1,64}$').optional(),
  status: z.enum(STATUSES).optional(),
});

export type ApiDeps = {
  config: Config;
  sandboxes: Sandboxes;
  /** Extra readiness checks (the admission preflight, shutdown) shown in /readyz; a failing `shutdown` makes it 503. */
  readiness?: () => { name: string; ok: boolean; detail?: string }[];
  activity?: Activity;
  metrics?: Metrics;
  onCreateStarted?: (id: string) => void;
};

/** `?wait=<seconds>`: absent means 0; bounded by MAX_WAIT_SECONDS. */
function waitSeconds(url: RequestTarget, max: number): number {
  const raw = url.searchParams.get('wait');
  if (raw === null || raw === '') return 0;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new HttpError('validation_failed', `wait must be a number of seconds between 0 and ${max}`);
  return Math.min(n, max);
}

/** Finds the handler for an /api, /health or /readyz request; undefined when the path is not ours. */
export function apiRoute(deps: ApiDeps, req: IncomingMessage, res: ServerResponse, url: RequestTarget): Route | undefined {
  const { config, sandboxes } = deps;
  const view = sandboxes.view;
  const path = url.pathname;
  const method = req.method ?? 'GET';
  const allow = (methods: string[], route: string, handlers: Record<string, () => Promise<void> | void>): Route => ({
    route,
    handle: () => {
      const handler = handlers[method] ?? (method === 'HEAD' ? handlers['GET'] : undefined);
      if (!handler) throw new HttpError('method_not_allowed', `Method ${method} not allowed on ${route}`, { headers: { allow: methods.join(', ') } });
      return handler();
    },
  });

  if (path === '/health') return allow(['GET'], '/health', { GET: () => sendJson(res, 200, { status: 'ok' }) });
  if (path === '/readyz') {
    return allow(['GET'], '/readyz', {
      GET: () => {
        const h = view.health();
        const extra = deps.readiness?.() ?? [];
        const problems = [h.reason, ...extra.filter((c) => !c.ok).map((c) => c.detail)].filter(Boolean);
        const down = !h.synced || !h.healthy || extra.some((c) => c.name === 'shutdown' && !c.ok);
        const body = { status: down ? 'unavailable' : 'ok', synced: h.synced, healthy: h.healthy, stale: h.stale, sandboxes: view.size, checks: extra };
        if (down) return sendJson(res, 503, { ...body, detail: problems.join('; '), code: 'not_ready' });
        return sendJson(res, 200, problems.length ? { ...body, detail: problems.join('; ') } : body);
      },
    });
  }
  if (!path.startsWith('/api/')) return undefined;

  const authorize = (): void => {
    if (config.apiKey && !hasApiKey(req, config.apiKey)) throw new HttpError('unauthorized', 'Invalid or missing API key');
  };
  const guarded = (route: Route): Route => ({ route: route.route, handle: () => (authorize(), route.handle()) });

  if (path === '/api/capabilities') {
    return guarded(
      allow(['GET'], '/api/capabilities', {
        GET: () =>
          sendJson(res, 200, {
            mount_contract_version: config.mountContractVersion,
            lark_cli_init_image: Boolean(config.lark.initImage),
            lark_cli_broker_image: Boolean(config.lark.brokerImage),
            storage_mode: config.storage.mode,
            service_type: config.sandbox.serviceType,
          }),
      }),
    );
  }
  if (path === '/api/sandboxes' || path === '/api/sandboxes/') {
    return guarded(
      allow(['GET', 'POST'], '/api/sandboxes', {
        GET: () => {
          const q = validate(listQuerySchema, Object.fromEntries(url.searchParams));
          const items = view.list((r) => (q.thread_id === undefined || r.threadId === q.thread_id) && (q.status === undefined || r.status === q.status));
          const base = requestBase(req);
          sendJsonText(res, 200, `{"sandboxes":[${items.map((r) => sandboxes.responseText(r, base)).join(',')}],"count":${items.length}}`);
        },
        POST: async () => {
          const wait = waitSeconds(url, config.maxWaitSeconds);
          const body = validate(createRequestSchema, await readJson(req, config.maxBodyBytes));
          const request = toSandboxRequest(body, config);
          deps.onCreateStarted?.(request.sandboxId);
          let created: boolean;
          let record: SandboxRecord;
          try {
            ({ created, record } = await sandboxes.create(request));
          } catch (err) {
            deps.metrics?.creates.inc({ outcome: err instanceof HttpError ? err.code : 'internal_error' });
            throw err;
          }
          deps.metrics?.creates.inc({ outcome: created ? 'created' : 'existing' });
          if (created) deps.activity?.created(request.sandboxId);
          else deps.activity?.touch(request.sandboxId);
          if (wait > 0 && !settled(record)) record = (await view.waitFor(request.sandboxId, settled, wait * 1000, abortOnClose(req, res))) ?? record;
          sendJsonText(res, created ? 201 : 200, sandboxes.responseText(record, requestBase(req)));
        },
      }),
    );
  }
  const match = /^\/api\/sandboxes\/([^/]+)\/?$/.exec(path);
  if (match) {
    return guarded(
      allow(['GET', 'DELETE'], '/api/sandboxes/{id}', {
        GET: async () => {
          const id = parseSandboxId(match[1] ?? '');
          const wait = waitSeconds(url, config.maxWaitSeconds);
          let record = view.get(id);
          if (record && wait > 0 && !settled(record)) record = await view.waitFor(id, (r) => r === undefined || settled(r), wait * 1000, abortOnClose(req, res));
          if (!record) throw new HttpError('sandbox_not_found', `Sandbox '${id}' not found`);
          deps.activity?.touch(id);
          sendJsonText(res, 200, sandboxes.responseText(record, requestBase(req)));
        },
        DELETE: async () => {
          const id = parseSandboxId(match[1] ?? '');
          try {
            deps.metrics?.deletes.inc({ outcome: (await sandboxes.delete(id)) ? 'deleted' : 'missing' });
          } catch (err) {
            deps.metrics?.deletes.inc({ outcome: err instanceof HttpError ? err.code : 'internal_error' });
            throw err;
          }
          sendJson(res, 200, { ok: true, sandbox_id: id });
        },
      }),
    );
  }
  const sub = /^\/api\/sandboxes\/([^/]+)\/(keepalive|events)\/?$/.exec(path);
  if (sub?.[2] === 'keepalive') {
    return guarded(
      allow(['POST'], '/api/sandboxes/{id}/keepalive', {
        POST: async () => {
          const id = parseSandboxId(sub[1] ?? '');
          const hasBody = Number(req.headers['content-length'] ?? '0') > 0 || req.headers['transfer-encoding'] !== undefined;
          const body = validate(keepaliveRequestSchema, hasBody ? await readJson(req, config.maxBodyBytes) : {});
          if (!view.get(id)) throw new HttpError('sandbox_not_found', `Sandbox '${id}' not found`);
          await sandboxes.keepalive(id, body.ttl_seconds ?? undefined);
          deps.activity?.touch(id);
          const record = await view.waitFor(id, (r) => r === undefined || r.lastActivity !== undefined, 2000);
          if (!record) throw new HttpError('sandbox_not_found', `Sandbox '${id}' not found`);
          sendJsonText(res, 200, sandboxes.responseText(record, requestBase(req)));
        },
      }),
    );
  }
  if (sub?.[2] === 'events') {
    return guarded(allow(['GET'], '/api/sandboxes/{id}/events', { GET: () => streamEvents(sandboxes, parseSandboxId(sub[1] ?? ''), req, res, requestBase(req)) }));
  }
  return undefined;
}

/**
 * GET /api/sandboxes/{id}/events: Server-Sent Events of the sandbox's status transitions, fed by the
 * watch (no API server cost): `event: status` with the sandbox answer on connect and on each change of
 * status or reason, `event: deleted` when it is gone (then the stream ends), and a comment every 15 s.
 */
function streamEvents(sandboxes: Sandboxes, id: string, req: IncomingMessage, res: ServerResponse, base: string | undefined): void {
  const view = sandboxes.view;
  const first = view.get(id);
  if (!first) throw new HttpError('sandbox_not_found', `Sandbox '${id}' not found`);
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
  let seq = 0;
  const send = (event: string, data: unknown): void => {
    seq += 1;
    res.write(`id: ${seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  let last = `${first.status}/${first.reason ?? ''}`;
  send('status', sandboxes.response(first, base));
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
  const end = (): void => {
    clearInterval(heartbeat);
    unsubscribe();
    if (!res.writableEnded) res.end();
  };
  const unsubscribe = view.subscribe((change) => {
    if (change.record === undefined) {
      send('deleted', { sandbox_id: id });
      return end();
    }
    const key = `${change.record.status}/${change.record.reason ?? ''}`;
    if (key === last) return;
    last = key;
    send('status', sandboxes.response(change.record, base));
  }, id);
  res.once('close', end);
  req.socket.setTimeout(0);
}

/** An AbortSignal that fires when the client goes away (so waits end with it). */
function abortOnClose(req: IncomingMessage, res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => controller.abort());
  req.once('aborted', () => controller.abort());
  return controller.signal;
}

/** The origin the caller used to reach this service (honouring X-Forwarded-Proto/Host from a front proxy). */
function requestBase(req: IncomingMessage): string | undefined {
  const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v)?.split(',')[0]?.trim();
  const host = first(req.headers['x-forwarded-host']) ?? req.headers.host;
  if (!host || !/^[A-Za-z0-9.\-:[\]]+$/.test(host)) return undefined;
  const proto = first(req.headers['x-forwarded-proto']) === 'https' ? 'https' : 'http';
  return `${proto}://${host}`;
}
