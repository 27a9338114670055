// The route table: how a request target is split, the rows every feature contributes (API, proxy,
// metrics, dashboard), and the lookup of the row and handler for a path and method. Pure: no server.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { HttpError } from './errors.ts';

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

export type Match = { row: RouteRow; params: string[] };

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

export function handlerFor(row: RouteRow, method: string): Handler {
  const handler = row.methods[method] ?? (method === 'HEAD' ? row.methods['GET'] : undefined) ?? row.methods['*'];
  if (handler) return handler;
  const allowed = Object.keys(row.methods);
  throw new HttpError('method_not_allowed', `Method ${method} not allowed on ${row.name}`, { headers: { allow: allowed.join(', ') } });
}
