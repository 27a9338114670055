// The HTTP server: routes a request to the API or the proxy, answers every error as JSON from the error
// registry, and logs one line per request with its id.

import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { HttpError } from './errors.ts';
import { sendError } from './http.ts';
import type { Logger } from './log.ts';
import { apiRoute, type ApiDeps, type Route } from './provisioner/routes.ts';

export type RequestObserver = (info: { method: string; route: string; status: number; seconds: number }) => void;

export type AppDeps = ApiDeps & {
  log: Logger;
  /** Other routes (proxy, metrics, openapi), tried after the API. */
  routes?: ((req: IncomingMessage, res: ServerResponse, url: RequestTarget) => Route | undefined)[];
  /** WebSocket upgrades (the proxy); returns false when the path is not its own. */
  upgrade?: (req: IncomingMessage, socket: Duplex, head: Buffer, url: RequestTarget) => boolean;
  observe?: RequestObserver;
};

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
  return { pathname, search, searchParams: new URLSearchParams(search) };
}

export function createApp(deps: AppDeps): Server {
  const { log } = deps;
  const server = createServer({ requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 65_000 }, (req, res) => {
    const started = performance.now();
    const requestId = typeof req.headers['x-request-id'] === 'string' && req.headers['x-request-id'].length <= 128 ? req.headers['x-request-id'] : randomUUID();
    res.setHeader('x-request-id', requestId);
    let route = 'unmatched';
    res.once('close', () => {
      const seconds = (performance.now() - started) / 1000;
      const status = res.headersSent ? res.statusCode : 499;
      deps.observe?.({ method: req.method ?? 'GET', route, status, seconds });
      if (route === '/health' || route === '/readyz' || route === '/metrics' || !log.isLevelEnabled('info')) return;
      log.info({ req_id: requestId, method: req.method, path: req.url?.split('?')[0], route, status, ms: Math.round(seconds * 10_000) / 10 }, 'request');
    });
    const handle = async (): Promise<void> => {
      const url = requestUrl(req);
      if (!url) throw new HttpError('not_found', `Not Found: ${JSON.stringify(req.url?.slice(0, 100))}`);
      let found = apiRoute(deps, req, res, url);
      for (const r of deps.routes ?? []) found ??= r(req, res, url);
      if (!found) throw new HttpError('not_found', `Not Found: ${req.method} ${url.pathname}`);
      route = found.route;
      await found.handle();
    };
    handle().catch((err: unknown) => {
      if (err instanceof HttpError) {
        if (err.status >= 500) log.warn({ req_id: requestId, code: err.code }, err.message);
        return sendError(res, err);
      }
      log.error({ req_id: requestId, err }, 'unhandled error');
      sendError(res, new HttpError('internal_error', 'Internal error; see the provisioner log', { extra: { request_id: requestId } }));
    });
  });
  server.on('upgrade', (req, socket, head) => {
    const url = requestUrl(req);
    if (url && deps.upgrade?.(req, socket, head, url)) return;
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"detail":"Not Found","code":"not_found"}');
  });
  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"detail":"Bad Request","code":"invalid_request"}');
    else socket.destroy(err);
  });
  return server;
}
