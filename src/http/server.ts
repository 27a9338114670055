// The HTTP server: one route table that every feature (API, proxy, observability) contributes rows to,
// so this module imports no feature. It answers every error as JSON from the error registry, 405 with
// `Allow` for a known path and an unknown method, and logs one line per request with its id.

import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log.ts';
import { HttpError, rawErrorResponse } from './errors.ts';
import { sendError } from './io.ts';

/**
 * The request target, split but not normalised: WHATWG URL parsing would resolve `..` and `%2e%2e`
 * segments (`/sandboxes/a/%2e%2e/b` would become `/sandboxes/b`), so routing sees the raw path and
 * each route validates its own segments. Only origin-form targets (`/path`) are accepted.
 */
export type RequestTarget = { pathname: string; search: string; searchParams: URLSearchParams };

export function requestUrl(req: IncomingMessage): RequestTarget | undefined {
  const target = req.url ?? '/';
  if (!target.startsWith('/')) return undefined;
  const q = target.indexOf('?');
  const pathname = q === -1 ? target : target.slice(0, q);
  const search = q === -1 ? '' : target.slice(q);
  let params: URLSearchParams | undefined;
  // Parsed on first use: the proxy's hot path never reads it.
  return {
    pathname,
    search,
    get searchParams() {
      return (params ??= new URLSearchParams(search));
    },
  };
}

export type Context = { req: IncomingMessage; res: ServerResponse; url: RequestTarget; params: string[] };
export type Handler = (ctx: Context) => Promise<void> | void;

/** One row of the route table. Exactly one of `path`, `pattern` (its groups are the params) or `prefix` (the rest is the param). */
export type RouteRow = {
  /** The route's name in logs and metrics, e.g. `/api/sandboxes/{id}`. */
  name: string;
  path?: string;
  pattern?: RegExp;
  prefix?: string;
  /** Handlers by method; `*` answers any method. HEAD falls back to GET. */
  methods: Record<string, Handler>;
  /** Not logged per request (probes and scrapes). */
  quiet?: boolean;
  /** The path as logged, when the path itself carries a secret (a capability). */
  logPath?: (pathname: string) => string;
};

/** WebSocket (and other) upgrades under a path prefix. */
export type UpgradeRow = { prefix: string; handle: (req: IncomingMessage, socket: Duplex, head: Buffer, url: RequestTarget) => void };

/** Routing by Host before paths: `match` gives the row's param (e.g. a sandbox id) for hosts it serves. */
export type HostRoute = {
  match: (host: string) => string | undefined;
  row: RouteRow;
  upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer, url: RequestTarget, param: string) => void;
};

export type RequestObserver = (info: { method: string; route: string; status: number; seconds: number }) => void;

export type ServerOptions = {
  routes: RouteRow[];
  upgrades?: UpgradeRow[];
  log: Logger;
  /** Every path under `prefix` is authenticated first (before routing, so unknown paths cannot be probed): `check` throws an HttpError. */
  authenticate?: { prefix: string; check: (req: IncomingMessage) => void };
  /** Connections held at once; one more is answered 503 `server_busy` and closed. */
  maxConnections?: number;
  hosts?: HostRoute;
  observe?: RequestObserver;
};

type Match = { row: RouteRow; params: string[] };

/** Request ids: this process's random prefix and a counter (a UUID per request cost more than the id is worth). */
const idPrefix = randomBytes(6).toString('base64url');
let idCounter = 0;
const nextRequestId = (): string => `${idPrefix}-${(idCounter++).toString(36)}`;

/** Finds a row: exact paths first, then patterns, then prefixes, each in table order. */
export function router(rows: RouteRow[]): (pathname: string) => Match | undefined {
  const exact = new Map<string, RouteRow>();
  for (const row of rows) if (row.path !== undefined && !exact.has(row.path)) exact.set(row.path, row);
  const patterns = rows.filter((r) => r.pattern !== undefined);
  const prefixes = rows.filter((r) => r.prefix !== undefined);
  return (pathname) => {
    const row = exact.get(pathname);
    if (row) return { row, params: [] };
    for (const r of patterns) {
      const m = r.pattern?.exec(pathname);
      if (m) return { row: r, params: m.slice(1).map((p) => p ?? '') };
    }
    for (const r of prefixes) {
      if (r.prefix !== undefined && pathname.startsWith(r.prefix)) return { row: r, params: [pathname.slice(r.prefix.length)] };
    }
    return undefined;
  };
}

function handlerFor(row: RouteRow, method: string): Handler {
  const handler = row.methods[method] ?? (method === 'HEAD' ? row.methods['GET'] : undefined) ?? row.methods['*'];
  if (handler) return handler;
  const allowed = Object.keys(row.methods);
  throw new HttpError('method_not_allowed', `Method ${method} not allowed on ${row.name}`, { headers: { allow: allowed.join(', ') } });
}

export function createHttpServer(options: ServerOptions): Server {
  const { log } = options;
  const find = router(options.routes);
  const auth = options.authenticate;
  const refused = new WeakSet<Duplex>();
  // requestTimeout 0: proxied uploads may stream for long; API bodies have their own deadline (readJson),
  // proxied ones an idle timeout. requireHostHeader off: a missing Host is answered below, as JSON.
  const server = createServer(
    { requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 65_000, requireHostHeader: false },
    (req, res) => {
      if (refused.has(req.socket)) return;
      const started = performance.now();
      const header = req.headers['x-request-id'];
      const requestId = typeof header === 'string' && header.length <= 128 ? header : nextRequestId();
      res.setHeader('x-request-id', requestId);
      let route = 'unmatched';
      let quiet = false;
      let logPath = (pathname: string): string => pathname;
      res.once('close', () => {
        const seconds = (performance.now() - started) / 1000;
        const status = res.headersSent ? res.statusCode : 499;
        options.observe?.({ method: req.method ?? 'GET', route, status, seconds });
        if (quiet || !log.isLevelEnabled('info')) return;
        log.info(
          {
            req_id: requestId,
            method: req.method,
            path: logPath(req.url?.split('?')[0] ?? ''),
            route,
            status,
            ms: Math.round(seconds * 10_000) / 10,
          },
          'request',
        );
      });
      const handle = async (): Promise<void> => {
        if (req.headers.host === undefined && req.httpVersion !== '1.0')
          throw new HttpError('invalid_request', 'An HTTP/1.1 request needs a Host header');
        const url = requestUrl(req);
        if (!url) throw new HttpError('not_found', `Not Found: ${JSON.stringify(req.url?.slice(0, 100))}`);
        const byHost = req.headers.host === undefined ? undefined : options.hosts?.match(req.headers.host);
        if (byHost === undefined && auth && url.pathname.startsWith(auth.prefix)) auth.check(req);
        const found = byHost !== undefined && options.hosts ? { row: options.hosts.row, params: [byHost] } : find(url.pathname);
        if (!found) throw new HttpError('not_found', `Not Found: ${req.method} ${url.pathname}`);
        route = found.row.name;
        quiet = found.row.quiet === true;
        if (found.row.logPath) logPath = found.row.logPath;
        await handlerFor(found.row, req.method ?? 'GET')({ req, res, url, params: found.params });
      };
      handle().catch((err: unknown) => {
        if (err instanceof HttpError) {
          if (err.status >= 500) log.warn({ req_id: requestId, code: err.code }, err.message);
          return sendError(res, err);
        }
        log.error({ req_id: requestId, err }, 'unhandled error');
        sendError(res, new HttpError('internal_error', 'Internal error; see the provisioner log', { extra: { request_id: requestId } }));
      });
    },
  );
  const max = options.maxConnections ?? Infinity;
  let open = 0;
  server.on('connection', (socket: Duplex) => {
    if (open >= max) {
      refused.add(socket);
      socket.end(
        rawErrorResponse(
          new HttpError('server_busy', `The provisioner holds ${max} connections (MAX_CONNECTIONS); retry shortly`, {
            headers: { 'retry-after': '1' },
          }),
        ),
      );
      return;
    }
    open += 1;
    socket.once('close', () => (open -= 1));
  });
  server.on('upgrade', (req, socket, head) => {
    if (refused.has(socket)) return;
    const url = requestUrl(req);
    const byHost = req.headers.host === undefined ? undefined : options.hosts?.match(req.headers.host);
    if (url && byHost !== undefined) return options.hosts?.upgrade(req, socket, head, url, byHost);
    const row = url && options.upgrades?.find((u) => url.pathname.startsWith(u.prefix));
    if (url && row) return row.handle(req, socket, head, url);
    socket.end(rawErrorResponse(new HttpError('not_found', `Not Found: no upgrade at ${url?.pathname ?? 'this path'}`)));
  });
  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end(rawErrorResponse(new HttpError('invalid_request', 'Bad Request')));
    else socket.destroy(err);
  });
  return server;
}
