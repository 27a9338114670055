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
export class RequestTarget {
  readonly pathname: string;
  readonly search: string;
  #params: URLSearchParams | undefined;

  constructor(pathname: string, search: string) {
    this.pathname = pathname;
    this.search = search;
  }

  /** The query, parsed on first use (the hot paths never read it). */
  get searchParams(): URLSearchParams {
    return (this.#params ??= new URLSearchParams(this.search));
  }
}

export function requestUrl(req: Pick<IncomingMessage, 'url'>): RequestTarget | undefined {
  const target = req.url ?? '/';
  if (target.charCodeAt(0) !== 47 /* / */) return undefined;
  const q = target.indexOf('?');
  return q === -1 ? new RequestTarget(target, '') : new RequestTarget(target.slice(0, q), target.slice(q));
}

export type Context = { req: IncomingMessage; res: ServerResponse; url: RequestTarget; params: string[] };
export type Handler = (ctx: Context) => Promise<void> | void;

/**
 * One row of the route table. Exactly one of `path` (exact), `template` (`/api/sandboxes/{id}/events`:
 * at most one `{param}`, which never holds a `/`, and an optional trailing slash) or `prefix` (the rest
 * of the path is the param).
 */
export type RouteRow = {
  /** The route's name in logs and metrics, e.g. `/api/sandboxes/{id}`. */
  name: string;
  path?: string;
  template?: string;
  prefix?: string;
  /** Handlers by method; `*` answers any method. HEAD falls back to GET. */
  methods: Record<string, Handler>;
  /** Not logged per request (probes and scrapes). */
  quiet?: boolean;
  /**
   * Its GET (and HEAD) handler logs nothing of its own, so it runs without the request context that
   * puts req_id on such lines (hot paths: status, list, probes; the context costs about 0.5 µs).
   */
  getLogsNothing?: boolean;
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

/** A template split around its one parameter (no regular expression: this runs on every request). */
type Template = { row: RouteRow; before: string; after: string; param: boolean };

function compile(row: RouteRow, template: string): Template {
  const open = template.indexOf('{');
  if (open === -1) return { row, before: template, after: '', param: false };
  const close = template.indexOf('}', open);
  if (close === -1 || template.indexOf('{', close) !== -1) throw new Error(`route template ${template}: at most one {param}`);
  return { row, before: template.slice(0, open), after: template.slice(close + 1), param: true };
}

/** Finds a row: exact paths first, then templates, then prefixes, each in table order. */
export function router(rows: RouteRow[]): (pathname: string) => Match | undefined {
  const exact = new Map<string, RouteRow>();
  for (const row of rows) if (row.path !== undefined && !exact.has(row.path)) exact.set(row.path, row);
  const templates = rows.flatMap((r) => (r.template === undefined ? [] : [compile(r, r.template)]));
  const prefixes = rows.filter((r) => r.prefix !== undefined);
  return (pathname) => {
    const row = exact.get(pathname);
    if (row) return { row, params: [] };
    const p = pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
    for (const t of templates) {
      if (!t.param) {
        if (p === t.before) return { row: t.row, params: [] };
      } else if (p.length > t.before.length + t.after.length && p.startsWith(t.before) && p.endsWith(t.after)) {
        const param = p.slice(t.before.length, p.length - t.after.length);
        if (!param.includes('/')) return { row: t.row, params: [param] };
      }
    }
    for (const r of prefixes) {
      if (r.prefix !== undefined && pathname.startsWith(r.prefix)) return { row: r, params: [pathname.slice(r.prefix.length)] };
    }
    return undefined;
  };
}

/** The methods a row answers, as an Allow header lists them (HEAD wherever GET is, and OPTIONS). */
export function allowed(row: RouteRow): string {
  const methods = Object.keys(row.methods);
  return [...methods, ...(row.methods['GET'] && !row.methods['HEAD'] ? ['HEAD'] : []), 'OPTIONS'].join(', ');
}

export function handlerFor(row: RouteRow, method: string): Handler {
  const handler = row.methods[method] ?? (method === 'HEAD' ? row.methods['GET'] : undefined) ?? row.methods['*'];
  if (handler) return handler;
  if (method === 'OPTIONS')
    return ({ res }) => {
      res.writeHead(204, { allow: allowed(row) });
      res.end();
    };
  throw new HttpError('method_not_allowed', `Method ${method} not allowed on ${row.name}`, { headers: { allow: allowed(row) } });
}
