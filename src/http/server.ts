// The HTTP server: one route table that every feature (API, proxy, observability) contributes rows to,
// so this module imports no feature. It answers every error as JSON from the error registry, 405 with
// `Allow` for a known path and an unknown method, and logs one line per request with its id.

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  createServer,
  ServerResponse,
  type IncomingMessage,
  type OutgoingHttpHeader,
  type OutgoingHttpHeaders,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { requestContext, type Logger } from '../log.ts';
import { HttpError, rawErrorResponse } from './errors.ts';
import { sendError } from './reply.ts';
import { handlerFor, requestUrl, router, type HostRoute, type RouteRow, type UpgradeRow } from './router.ts';

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

/** Request ids: this process's random prefix and a counter (a UUID per request cost more than the id is worth). */
const idPrefix = `${randomBytes(6).toString('base64url')}-`;
let idCounter = 0;

/** The client's X-Request-Id when it sent a usable one, else one of ours. */
function requestIdOf(req: IncomingMessage): string {
  const header = req.headers['x-request-id'];
  return typeof header === 'string' && header.length <= 128 ? header : idPrefix + (idCounter++).toString(36);
}

/**
 * A response that carries its exchange's own facts (request id, start, route), so the per-request work
 * needs no closures: the hot path of a status answer is about a microsecond of this service's own code
 * on top of what Node's HTTP server costs (bench/api-engine.ts).
 */
class RoutedResponse<Request extends IncomingMessage = IncomingMessage> extends ServerResponse<Request> {
  requestId = '';
  started = 0;
  route = 'unmatched';
  row: RouteRow | undefined;

  /** The request id goes out with the answer's own headers, in its one writeHead call (no setHeader). */
  override writeHead(statusCode: number, a?: unknown, b?: unknown): this {
    const message = typeof a === 'string' ? a : undefined;
    const headers = (message === undefined ? a : b) as OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined;
    const withId =
      headers === undefined
        ? { 'x-request-id': this.requestId }
        : Array.isArray(headers)
          ? [...headers, 'x-request-id', this.requestId]
          : { ...headers, 'x-request-id': this.requestId };
    return message === undefined ? super.writeHead(statusCode, withId) : super.writeHead(statusCode, message, withId);
  }
}

type Dispatch = (req: IncomingMessage, res: RoutedResponse) => void;

export function createHttpServer(options: ServerOptions): Server {
  const dispatch = dispatcher(options);
  const onClose = closeHandler(options);
  const refused = new WeakSet<Duplex>();
  // requestTimeout 0: proxied uploads may stream for long; API bodies have their own deadline (readJson),
  // proxied ones an idle timeout. requireHostHeader off: a missing Host is answered below, as JSON.
  const server = createServer(
    { requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 65_000, requireHostHeader: false, ServerResponse: RoutedResponse },
    (req, res) => {
      if (refused.has(req.socket)) return;
      res.started = performance.now();
      res.requestId = requestIdOf(req);
      dispatch(req, res);
      // Answered already (a synchronous handler: status, list, probes): observed now, with no listener.
      if (res.writableEnded) onClose.call(res);
      else res.on('close', onClose);
    },
  );
  limitConnections(server, options.maxConnections ?? Infinity, refused);
  server.on('upgrade', (req, socket, head) => {
    if (refused.has(socket)) return;
    requestContext.run({ reqId: requestIdOf(req) }, upgrade, req, socket, head);
  });
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!oneHost(req)) return void socket.end(rawErrorResponse(duplicateHost()));
    const url = requestUrl(req);
    const byHost = req.headers.host === undefined ? undefined : options.hosts?.match(req.headers.host);
    if (url && byHost !== undefined) return options.hosts?.upgrade(req, socket, head, url, byHost);
    const row = url && options.upgrades?.find((u) => url.pathname.startsWith(u.prefix));
    if (url && row) return row.handle(req, socket, head, url);
    socket.end(rawErrorResponse(new HttpError('not_found', `Not Found: no upgrade at ${url?.pathname ?? 'this path'}`)));
  };
  server.on('clientError', (err: Error & { code?: string }, socket) => {
    if (!socket.writable) return void socket.destroy(err);
    socket.end(
      rawErrorResponse(
        err.code === 'HPE_HEADER_OVERFLOW'
          ? new HttpError('headers_too_large', 'Request header fields too large')
          : new HttpError('invalid_request', 'Bad Request'),
      ),
    );
  });
  return server;
}

/** RFC 9112 §3.2: a request with more than one Host field is answered 400 (Node would keep the first). */
function oneHost(req: IncomingMessage): boolean {
  const raw = req.rawHeaders;
  let seen = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (name.length !== 4 || name.toLowerCase() !== 'host') continue;
    if (seen) return false;
    seen = true;
  }
  return true;
}

const duplicateHost = (): HttpError => new HttpError('invalid_request', 'A request may carry one Host header field, not several');

/** Routing and the handler's call: synchronous handlers stay synchronous (no promise per request). */
function dispatcher(options: ServerOptions): Dispatch {
  const find = router(options.routes);
  const { authenticate: auth, hosts, log } = options;
  const fail = (res: RoutedResponse, err: unknown): void => {
    if (err instanceof HttpError) {
      if (err.status >= 500) log.warn({ req_id: res.requestId, code: err.code }, err.message);
      return sendError(res, err);
    }
    log.error({ req_id: res.requestId, err, stack: err instanceof Error ? err.stack : undefined }, 'unhandled error');
    sendError(res, new HttpError('internal_error', 'Internal error; see the provisioner log', { extra: { request_id: res.requestId } }));
  };
  return (req, res) => {
    try {
      if (req.headers.host === undefined && req.httpVersion !== '1.0')
        throw new HttpError('invalid_request', 'An HTTP/1.1 request needs a Host header');
      if (!oneHost(req)) throw duplicateHost();
      const url = requestUrl(req);
      if (!url) throw new HttpError('not_found', `Not Found: ${JSON.stringify(req.url?.slice(0, 100))}`);
      const byHost = hosts === undefined || req.headers.host === undefined ? undefined : hosts.match(req.headers.host);
      if (byHost === undefined && auth && url.pathname.startsWith(auth.prefix)) auth.check(req);
      const found = byHost !== undefined && hosts ? { row: hosts.row, params: [byHost] } : find(url.pathname);
      if (!found) throw new HttpError('not_found', `Not Found: ${req.method} ${url.pathname}`);
      res.route = found.row.name;
      res.row = found.row;
      const method = req.method ?? 'GET';
      const handler = handlerFor(found.row, method);
      const ctx = { req, res, url, params: found.params };
      // Lines the handler logs (now or later in its async work) carry the request's id.
      const pending =
        found.row.getLogsNothing && (method === 'GET' || method === 'HEAD')
          ? handler(ctx)
          : requestContext.run({ reqId: res.requestId }, handler, ctx);
      if (pending) pending.catch((err: unknown) => fail(res, err));
    } catch (err) {
      fail(res, err);
    }
  };
}

/** When an exchange ends: its metric, and its log line (a capability in the path is never logged). */
function closeHandler({ observe, log }: ServerOptions): (this: RoutedResponse) => void {
  return function (this: RoutedResponse): void {
    const seconds = (performance.now() - this.started) / 1000;
    const status = this.headersSent ? this.statusCode : 499;
    const method = this.req.method ?? 'GET';
    observe?.({ method, route: this.route, status, seconds });
    if (this.row?.quiet || !log.isLevelEnabled('info')) return;
    const path = this.req.url?.split('?')[0] ?? '';
    log.info(
      {
        req_id: this.requestId,
        method,
        path: this.row?.logPath ? this.row.logPath(path) : path,
        route: this.route,
        status,
        ms: Math.round(seconds * 10_000) / 10,
      },
      'request',
    );
  };
}

/** At most `max` client connections at once: one more is answered 503 `server_busy` and closed. */
function limitConnections(server: Server, max: number, refused: WeakSet<Duplex>): void {
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
}

/** Listens and resolves with the address (port 0: a free one). */
export async function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  server.listen(port, host);
  await once(server, 'listening');
  return server.address() as AddressInfo;
}

/**
 * Stops accepting connections, closes idle keep-alive ones as they become idle, and resolves when every
 * request has ended or `graceMs` has passed (the caller then closes what is left).
 */
export async function closeGracefully(server: Server, graceMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const idle = setInterval(() => server.closeIdleConnections(), 100);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
  await Promise.race([closed, deadline]);
  clearInterval(idle);
  clearTimeout(timer);
}
