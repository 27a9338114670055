// The reverse proxy, one pipeline for every request, HTTP and WebSocket alike:
//   entry (entry.ts: which sandbox the path or host names)
//   → access (access.ts: the API key or a capability valid for its current pod)
//   → locate (locate.ts: where it is, from the view; held while it starts)
//   → upstream (upstream.ts: the one engine, undici; headers by headers.ts)
//   → report (report.ts: metrics, activity, logs, the answer to a failure).
// Routes: /s/<id>.<capability>/<rest>, /sandboxes/<id>/<rest> and <id><host suffix>/<rest>, to the
// sandbox's /<rest>.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config } from '../config.ts';
import { CAPABILITY_PREFIX, PLAIN_PREFIX } from '../domain/sandbox.ts';
import type { Capabilities } from '../http/capability.ts';
import { HttpError, rawErrorResponse } from '../http/errors.ts';
import { forwarded } from '../http/forwarded.ts';
import { declaresBody } from '../http/input.ts';
import type { Context, HostRoute, RequestTarget, RouteRow, UpgradeRow } from '../http/router.ts';
import type { Logger } from '../log.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import { Access } from './access.ts';
import { capabilityLogPath, hostEntry, hostLabel, pathEntry, sameOriginLocation, tokenCookie, type Entry } from './entry.ts';
import { requestHeaders, responseHeaders, type HeaderPolicy } from './headers.ts';
import { RouteCheck } from './route-check.ts';
import { Locator, type Target } from './locate.ts';
import { Report, type ProxyStats } from './report.ts';
import { Upstreams } from './upstream.ts';

export type { ProxyStats } from './report.ts';

export type ProxyDeps = {
  config: Config;
  view: SandboxView;
  log: Logger;
  capabilities: Capabilities;
  /** Whether a peer is a trusted proxy (TRUSTED_PROXIES), whose X-Forwarded-* headers are believed. */
  trusted: (address: string | undefined) => boolean;
  /** Told of each successfully proxied request (idle clean-up and suspend use it). */
  activity?: { touch(id: string): void };
  /** Wakes a suspended sandbox (its first request is held until it answers). */
  suspender?: { wake(id: string, by: 'proxy'): Promise<unknown> };
  stats?: ProxyStats;
};

export class SandboxProxy {
  #trusted: (address: string | undefined) => boolean;
  #hostSuffix: string | undefined;
  #policy: HeaderPolicy;
  #upstreams: Upstreams;
  #locator: Locator;
  #report: Report;
  #unsubscribe: () => void;
  #routeCheck: RouteCheck | undefined;
  /** Requests and WebSockets open to each sandbox, held ones too: traffic in flight keeps it from being suspended. */
  #open = new Map<string, number>();

  constructor(deps: ProxyDeps) {
    const { config, view, suspender, activity } = deps;
    this.#trusted = deps.trusted;
    this.#hostSuffix = config.proxy.hostSuffix;
    this.#policy = { trusted: deps.trusted, apiKey: config.auth.apiKey };
    this.#upstreams = new Upstreams(config.proxy);
    this.#locator = new Locator({
      config,
      view,
      access: new Access(config.auth, deps.capabilities),
      upstreams: this.#upstreams,
      ...(suspender ? { wake: (id: string) => suspender.wake(id, 'proxy') } : {}),
      open: (id) => this.#opened(id),
    });
    if ((config.gateway?.routeCheckMs ?? 0) > 0)
      this.#routeCheck = new RouteCheck({ config, view, upstreams: this.#upstreams, capabilities: deps.capabilities, log: deps.log });
    this.#report = new Report({
      log: deps.log,
      idleTimeoutMs: config.proxy.idleTimeoutMs,
      ...(deps.stats ? { stats: deps.stats } : {}),
      ...(activity ? { onActivity: (id: string) => activity.touch(id) } : {}),
    });
    // A sandbox that is gone, or has a new pod, takes its pools (and what was learnt of it) with it.
    this.#unsubscribe = view.subscribe(({ id, record, previous }) => {
      if (record && record.podUid === previous?.podUid && record.podIP === previous?.podIP && record.nodePort === previous?.nodePort)
        return;
      if (!previous) return;
      this.#upstreams.release(id);
      this.#locator.forget(id);
    });
  }

  /** Requests and WebSockets this proxy has open to a sandbox. */
  open(id: string): number {
    return this.#open.get(id) ?? 0;
  }

  /** Counts one exchange open to `id` until `done` is called (once). */
  #opened(id: string): () => void {
    this.#open.set(id, (this.#open.get(id) ?? 0) + 1);
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      const n = (this.#open.get(id) ?? 1) - 1;
      if (n <= 0) this.#open.delete(id);
      else this.#open.set(id, n);
    };
  }

  /** Open upstream pools (one per sandbox origin in use). */
  get pools(): number {
    return this.#upstreams.pools;
  }

  /** The proxy's rows of the route table: any method under /sandboxes/<id>/ and /s/<id>.<token>/, and their WebSocket upgrades. */
  routes(): { routes: RouteRow[]; upgrades: UpgradeRow[] } {
    const web = ({ req, res, url }: Context): Promise<void> => this.#web(req, res, pathEntry(url));
    const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, url: RequestTarget): void =>
      this.#upgrade(req, socket, head, pathEntry(url));
    return {
      routes: [
        {
          name: '/sandboxes/{id}/*',
          path: '/sandboxes',
          methods: { '*': () => Promise.reject(new HttpError('not_found', 'Not Found: name a sandbox, /sandboxes/<id>/...')) },
        },
        { name: '/sandboxes/{id}/*', prefix: PLAIN_PREFIX, methods: { '*': web } },
        // The capability never reaches a log: /s/<id>.<token>/... is logged as /s/<id>.*/...
        { name: '/s/{capability}/*', prefix: CAPABILITY_PREFIX, methods: { '*': web }, logPath: capabilityLogPath },
      ],
      upgrades: [
        { prefix: PLAIN_PREFIX, handle: upgrade },
        { prefix: CAPABILITY_PREFIX, handle: upgrade },
      ],
    };
  }

  /** Host routing (PROXY_HOST_SUFFIX): `<id><suffix>` reaches that sandbox with its paths unchanged. */
  hostRoute(): HostRoute | undefined {
    const suffix = this.#hostSuffix;
    if (suffix === undefined) return undefined;
    return {
      match: (host) => hostLabel(host, suffix),
      row: {
        name: '{id}.<host suffix>/*',
        methods: { '*': ({ req, res, url, params }) => this.#web(req, res, hostEntry(url, req.headers.cookie, params[0] ?? '')) },
      },
      upgrade: (req, socket, head, url, label) => this.#upgrade(req, socket, head, hostEntry(url, req.headers.cookie, label)),
    };
  }

  /** Closes every proxied WebSocket and upstream pool (shutdown): what is cut then is ours, not the sandbox's. */
  close(): Promise<void> {
    this.#report.closing = true;
    this.#unsubscribe();
    this.#routeCheck?.stop();
    this.#locator.stop();
    return this.#upstreams.close();
  }

  /** The headers a sandbox gets: X-Forwarded-Prefix only for the plain path (a capability path is a secret). */
  #requestHeaders(req: IncomingMessage, entry: Entry, target: Target): Record<string, string | string[]> {
    return requestHeaders(req, entry.form === 'plain' ? target.prefix : '', this.#policy);
  }

  async #web(req: IncomingMessage, res: ServerResponse, entry: Entry | undefined): Promise<void> {
    if (!entry) throw new HttpError('not_found', 'Not Found');
    const target = await this.#locator.locate(req, entry, res);
    if (entry.tokenInQuery) {
      target.release();
      return this.#setCookie(req, res, entry, target.id);
    }
    const method = req.method ?? 'GET';
    const hasBody = method !== 'GET' && method !== 'HEAD' && declaresBody(req);
    // Byte counts: a body's declared length (forwarded whole on success), else (chunked) what the client
    // socket read meanwhile; responses by what it wrote. The socket is held here: req.socket is null
    // once the exchange is over.
    const socket = req.socket;
    const readBefore = socket.bytesRead;
    const writtenBefore = socket.bytesWritten;
    const { origin, prefix } = target;
    const outcome = await this.#upstreams
      .forward(req, res, {
        origin,
        owner: target.id,
        path: entry.rest,
        method,
        headers: this.#requestHeaders(req, entry, target),
        hasBody,
        responseHeaders: (headers) => responseHeaders(headers, prefix, origin),
      })
      .finally(target.release);
    if (!this.#report.request(target.id, outcome)) return;
    const declared = Number(req.headers['content-length']);
    this.#report.bytes(
      hasBody && Number.isFinite(declared) ? declared : socket.bytesRead - readBefore,
      socket.bytesWritten - writtenBefore,
    );
  }

  /**
   * Host routing, first request: the capability came in the query. Keep it in a cookie of this host
   * only (HttpOnly, SameSite=Lax, Secure over HTTPS) and send the browser to the same URL without it,
   * so the token leaves the address bar and never reaches the sandbox.
   */
  #setCookie(req: IncomingMessage, res: ServerResponse, entry: Entry, id: string): void {
    const secure = forwarded(req, this.#trusted).proto === 'https' ? '; Secure' : '';
    res.writeHead(302, {
      location: sameOriginLocation(entry.rest),
      'set-cookie': `${tokenCookie(id)}=${entry.tokens[0] ?? ''}; Path=/; HttpOnly; SameSite=Lax${secure}`,
      'cache-control': 'no-store',
      'content-length': 0,
    });
    res.end();
  }

  /** WebSocket upgrades (the shell at /v1/shell/ws, VNC, CDP), by any entry, through the same steps. */
  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, entry: Entry | undefined): void {
    const refuse = (answer: HttpError): void => void (socket.writable && socket.end(rawErrorResponse(answer)));
    if (!entry) return refuse(new HttpError('not_found', 'Not Found'));
    // A socket handed over for an upgrade is half-open: a client that leaves before the sandbox switched
    // protocols sends its end, and nothing else would close it (the hold and the upstream wait end on close).
    const leave = (): void => void socket.destroy();
    socket.once('end', leave);
    this.#locator.locate(req, entry, socket).then(
      (target) => {
        const { id, origin, prefix } = target;
        socket.once('close', target.release);
        this.#upstreams.upgrade(socket, head, {
          origin,
          owner: id,
          path: entry.rest,
          protocol: String(req.headers.upgrade ?? 'websocket'),
          headers: this.#requestHeaders(req, entry, target),
          responseHeaders: (headers) => responseHeaders(headers, prefix, origin),
          onOpen: () => {
            socket.off('end', leave);
            this.#report.session(id, entry.rest, socket as Duplex & { bytesRead?: number; bytesWritten?: number });
          },
          onError: (err) => refuse(this.#report.upgradeError(id, err)),
        });
      },
      (err: unknown) => refuse(err instanceof HttpError ? err : new HttpError('internal_error', 'Internal error')),
    );
  }
}
