// The reverse proxy: /s/<id>.<capability>/<rest>, /sandboxes/<id>/<rest> and <id><host suffix>/<rest>
// -> the sandbox's /<rest>, over HTTP, streaming and WebSocket.
//
// Engines, chosen by measurement (bench/proxy.ts, bench/proxy-engine.ts): ordinary requests go through
// an undici Pool per sandbox with `dispatch` and a handler that writes the upstream body straight into
// the client response with backpressure (see #forward); WebSocket upgrades go through http-proxy-3,
// which pipes the two sockets once the upgrade is done.
//
// Safety: the upstream address comes only from the watch view (never from the request), and the id
// segment is validated after percent-decoding, so `..`, `%2e%2e` or `%2f` cannot name another sandbox.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent as HttpAgent } from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { LRUCache } from 'lru-cache';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { Config } from '../config.ts';
import { settled, type SandboxRecord } from '../domain/record.ts';
import { CAPABILITY_PREFIX, capabilityPath, PLAIN_PREFIX, serviceOrigin, TOKEN_PARAM } from '../domain/sandbox.ts';
import type { Capabilities } from '../http/capability.ts';
import { HttpError, rawErrorResponse, sandboxNotFound } from '../http/errors.ts';
import { forwarded, hasApiKey, isBearerKey, parseSandboxId } from '../http/io.ts';
import type { Context, HostRoute, RequestTarget, RouteRow, UpgradeRow } from '../http/server.ts';
import type { Logger } from '../log.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  // Node answers `Expect: 100-continue` itself; undici refuses to send it upstream.
  'expect',
]);

export type ProxyStats = {
  onRequest?: (outcome: string) => void;
  onBytes?: (direction: 'in' | 'out', bytes: number) => void;
  onUpstreamError?: (kind: string) => void;
};

export type ProxyDeps = {
  config: Config;
  view: SandboxView;
  log: Logger;
  capabilities: Capabilities;
  /** Whether a peer is a trusted proxy (TRUSTED_PROXIES), whose X-Forwarded-* headers are believed. */
  trusted: (address: string | undefined) => boolean;
  /** Called for each successfully proxied request (idle clean-up uses it). */
  onActivity?: (id: string) => void;
  stats?: ProxyStats;
};

/** What goes away when the client does: a response or an upgraded socket. */
type Closable = { once(event: 'close', listener: () => void): unknown; off(event: 'close', listener: () => void): unknown };

/** A client may ask to be held until the sandbox is Ready, for up to this many seconds. */
export const WAIT_HEADER = 'x-sandbox-wait';

/**
 * How a request names its sandbox: by the plain path (`/sandboxes/<id>/...`, API-key holders), by its
 * capability URL (`/s/<id>.<token>/...`), or by host (`<id><PROXY_HOST_SUFFIX>`, token in a cookie or,
 * on the first request, the query). `rest` is what goes on to the sandbox (without any token).
 */
type Entry = {
  form: 'plain' | 'capability' | 'host';
  rawId: string;
  token: string | undefined;
  /** The token came in the query (host routing): answer with a cookie and a redirect. */
  tokenInQuery: boolean;
  rest: string;
};

/** The entry of a path under `/sandboxes/` or `/s/`; undefined when it is under neither. */
export function pathEntry(url: RequestTarget): Entry | undefined {
  const form = url.pathname.startsWith(PLAIN_PREFIX) ? 'plain' : url.pathname.startsWith(CAPABILITY_PREFIX) ? 'capability' : undefined;
  if (!form) return undefined;
  const tail = url.pathname.slice((form === 'plain' ? PLAIN_PREFIX : CAPABILITY_PREFIX).length);
  const slash = tail.indexOf('/');
  const segment = slash === -1 ? tail : tail.slice(0, slash);
  const rest = (slash === -1 ? '/' : tail.slice(slash)) + url.search;
  if (form === 'plain') return { form, rawId: segment, token: undefined, tokenInQuery: false, rest };
  const dot = segment.lastIndexOf('.');
  return {
    form,
    rawId: dot === -1 ? segment : segment.slice(0, dot),
    token: dot === -1 ? '' : segment.slice(dot + 1),
    tokenInQuery: false,
    rest,
  };
}

/** A query string without one parameter, the rest left exactly as sent. */
function withoutParam(search: string, name: string): { search: string; value: string | undefined } {
  let value: string | undefined;
  const kept = search
    .slice(1)
    .split('&')
    .filter((pair) => {
      const eq = pair.indexOf('=');
      if (pair === '' || decodeURIComponent((eq === -1 ? pair : pair.slice(0, eq)).replaceAll('+', ' ')) !== name) return pair !== '';
      value = eq === -1 ? '' : decodeURIComponent(pair.slice(eq + 1).replaceAll('+', ' '));
      return false;
    });
  return { search: kept.length ? `?${kept.join('&')}` : '', value };
}

/** The value of one cookie, and the Cookie header without it. */
function withoutCookie(header: string | undefined, name: string): { header: string | undefined; value: string | undefined } {
  if (header === undefined) return { header, value: undefined };
  let value: string | undefined;
  const kept = header.split(';').filter((pair) => {
    const [k = '', ...v] = pair.trim().split('=');
    if (k !== name) return pair.trim() !== '';
    value = v.join('=');
    return false;
  });
  return { header: kept.length ? kept.map((p) => p.trim()).join('; ') : undefined, value };
}

export class SandboxProxy {
  #trusted: (address: string | undefined) => boolean;
  #capabilities: Capabilities;
  #config: Config;
  #view: SandboxView;
  #log: Logger;
  #deps: ProxyDeps;
  #pools: LRUCache<string, Pool>;
  #ws = createProxyServer({ ws: true, xfwd: true });
  #wsAgent = new HttpAgent({ keepAlive: false });
  #open = new Set<{ destroy: () => void }>();

  constructor(deps: ProxyDeps) {
    this.#deps = deps;
    this.#config = deps.config;
    this.#trusted = deps.trusted;
    this.#capabilities = deps.capabilities;
    this.#view = deps.view;
    this.#log = deps.log;
    // One keep-alive pool per sandbox origin, bounded; evicted pools close their idle connections.
    this.#pools = new LRUCache<string, Pool>({ max: 2048, dispose: (pool) => void pool.close().catch(() => pool.destroy()) });
    this.#ws.on('error', (err) => this.#log.debug({ err: String(err) }, 'websocket proxy error'));
  }

  /** The upstream origin of a sandbox, from the view only. */
  origin(record: SandboxRecord): string | undefined {
    const p = this.#config.proxy;
    switch (p.upstream) {
      case 'nodeport':
        return record.nodePort === undefined ? undefined : `http://${p.upstreamHost}:${record.nodePort}`;
      case 'service':
        return record.hasService ? serviceOrigin(record.sandboxId, this.#config.namespace, this.#config.sandbox.port) : undefined;
      case 'pod':
        return record.podIP === undefined
          ? undefined
          : `http://${record.podIP.includes(':') ? `[${record.podIP}]` : record.podIP}:${this.#config.sandbox.port}`;
    }
  }

  #pool(origin: string): Pool {
    let pool = this.#pools.get(origin);
    if (!pool) {
      const p = this.#config.proxy;
      pool = new Pool(origin, {
        connections: p.connectionsPerSandbox,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connect: { timeout: p.connectTimeoutMs },
        headersTimeout: p.readTimeoutMs,
        bodyTimeout: p.idleTimeoutMs,
      });
      this.#pools.set(origin, pool);
    }
    return pool;
  }

  /**
   * Whether this request may reach the sandbox: the API key; or, on the plain path with no key set, an
   * anonymous setup allowed on purpose; or a capability valid for the sandbox's current pod.
   */
  #allowed(req: IncomingMessage, entry: Entry, id: string, record: SandboxRecord): boolean {
    const { apiKey, allowAnonymous } = this.#config.auth;
    if (apiKey && hasApiKey(req, apiKey)) return true;
    if (entry.form === 'plain') return !apiKey && allowAnonymous;
    return entry.token !== undefined && this.#capabilities.verify(id, record.podUid ?? '', entry.token);
  }

  /**
   * Finds the sandbox and its upstream, waiting for readiness when asked; throws 4xx/5xx HttpErrors. A
   * request that may not reach it is answered as for an unknown sandbox: ids cannot be probed.
   */
  async #resolve(req: IncomingMessage, entry: Entry, client: Closable): Promise<{ id: string; origin: string; prefix: string }> {
    const id = parseSandboxId(entry.rawId);
    let record = this.#view.get(id);
    if (!record || !this.#allowed(req, entry, id, record)) throw sandboxNotFound(id);
    if (!record.ready) {
      const asked = Number(req.headers[WAIT_HEADER] ?? '');
      const waitMs =
        Number.isFinite(asked) && asked > 0 ? Math.min(asked * 1000, this.#config.proxy.maxWaitReadyMs) : this.#config.proxy.waitReadyMs;
      if (waitMs > 0) {
        // Held until Ready, or until the client goes away.
        const gone = new AbortController();
        const onClose = (): void => gone.abort();
        client.once('close', onClose);
        try {
          record = await this.#view.waitFor(id, settled, waitMs, gone.signal);
        } finally {
          client.off('close', onClose);
        }
      }
      if (!record) throw sandboxNotFound(id);
      if (!record.ready) {
        throw new HttpError(
          'sandbox_not_ready',
          `Sandbox '${id}' is not ready (status ${record.status}${record.reason ? `, ${record.reason}` : ''})`,
          {
            headers: { 'retry-after': '2' },
            extra: { status: record.status, ...(record.reason ? { reason: record.reason } : {}) },
          },
        );
      }
    }
    const origin = this.origin(record);
    if (!origin)
      throw new HttpError('sandbox_not_ready', `Sandbox '${id}' has no reachable address yet`, { headers: { 'retry-after': '2' } });
    const prefix =
      entry.form === 'plain' ? `${PLAIN_PREFIX}${id}` : entry.form === 'capability' ? capabilityPath(id, entry.token ?? '') : '';
    return { id, origin, prefix };
  }

  /**
   * Which client headers go on to the sandbox: not hop-by-hop ones (those listed in RFC 9110 7.6.1, and
   * any named in Connection), not the provisioner's own API key, not this proxy's X-Sandbox-Wait, and
   * X-Forwarded-* only from a trusted proxy (TRUSTED_PROXIES).
   */
  #passes(req: IncomingMessage): (name: string, value: string | string[]) => boolean {
    const fromProxy = this.#trusted(req.socket.remoteAddress);
    const connection = req.headers.connection;
    const named =
      connection && connection !== 'keep-alive' && connection !== 'close'
        ? new Set(connection.split(',').map((t) => t.trim().toLowerCase()))
        : undefined;
    const key = this.#config.auth.apiKey;
    return (name, value) => {
      if (HOP_BY_HOP.has(name) || named?.has(name) || name === 'x-api-key' || name === WAIT_HEADER || name === 'cookie') return false;
      if (!fromProxy && name.startsWith('x-forwarded-')) return false;
      return !(name === 'authorization' && key && isBearerKey(String(value), key));
    };
  }

  /** The Cookie header for the sandbox: the client's, without this proxy's capability cookie. */
  #cookie(req: IncomingMessage): string | undefined {
    return withoutCookie(req.headers.cookie, TOKEN_PARAM).header;
  }

  #forwardHeaders(req: IncomingMessage, prefix: string): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    const passes = this.#passes(req);
    for (const name in req.headers) {
      const value = req.headers[name];
      if (value !== undefined && passes(name, value)) out[name] = value;
    }
    const cookie = this.#cookie(req);
    if (cookie !== undefined) out['cookie'] = cookie;
    const remote = req.socket.remoteAddress ?? '';
    const { proto, host } = forwarded(req, this.#trusted);
    out['x-forwarded-for'] = out['x-forwarded-for'] ? `${String(out['x-forwarded-for'])}, ${remote}` : remote;
    out['x-forwarded-proto'] = proto;
    out['x-forwarded-host'] = host ?? '';
    if (prefix) out['x-forwarded-prefix'] = prefix;
    return out;
  }

  #rewriteLocation(location: string, prefix: string, origin: string): string {
    if (location.startsWith('/') && !location.startsWith('//')) return `${prefix}${location}`;
    if (location.startsWith(`${origin}/`) || location === origin) return `${prefix}${location.slice(origin.length) || '/'}`;
    return location;
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
        {
          name: '/s/{capability}/*',
          prefix: CAPABILITY_PREFIX,
          methods: { '*': web },
          // The capability never reaches a log: /s/<id>.<token>/... is logged as /s/<id>.*/...
          logPath: (path) => path.replace(/^(\/s\/[^/.]*)\.[^/]*/, '$1.*'),
        },
      ],
      upgrades: [
        { prefix: PLAIN_PREFIX, handle: upgrade },
        { prefix: CAPABILITY_PREFIX, handle: upgrade },
      ],
    };
  }

  /** Host routing (PROXY_HOST_SUFFIX): `<id><suffix>` reaches that sandbox with its paths unchanged. */
  hostRoute(): HostRoute | undefined {
    const suffix = this.#config.proxy.hostSuffix;
    if (suffix === undefined) return undefined;
    return {
      match: (host) => {
        const name = host.replace(/:\d+$/, '').toLowerCase();
        return name.endsWith(suffix) && name.length > suffix.length ? name.slice(0, -suffix.length) : undefined;
      },
      row: {
        name: '{id}.<host suffix>/*',
        methods: { '*': ({ req, res, url, params }) => this.#web(req, res, this.#hostEntry(req, url, params[0] ?? '')) },
      },
      upgrade: (req, socket, head, url, label) => this.#upgrade(req, socket, head, this.#hostEntry(req, url, label)),
    };
  }

  #hostEntry(req: IncomingMessage, url: RequestTarget, label: string): Entry {
    const query = withoutParam(url.search, TOKEN_PARAM);
    const token = query.value ?? withoutCookie(req.headers.cookie, TOKEN_PARAM).value;
    return { form: 'host', rawId: label, token, tokenInQuery: query.value !== undefined, rest: url.pathname + query.search };
  }

  async #web(req: IncomingMessage, res: ServerResponse, entry: Entry | undefined): Promise<void> {
    if (!entry) throw new HttpError('not_found', 'Not Found');
    const { id, origin, prefix } = await this.#resolve(req, entry, res);
    if (entry.tokenInQuery) return this.#setCookie(req, res, entry);
    const method = req.method ?? 'GET';
    const hasBody =
      method !== 'GET' &&
      method !== 'HEAD' &&
      (req.headers['content-length'] !== undefined
        ? req.headers['content-length'] !== '0'
        : req.headers['transfer-encoding'] !== undefined);
    // Byte counts: a body's declared length (forwarded whole on success), else (chunked) what the client
    // socket read meanwhile; responses by what it wrote. No 'data' listener: it would drain the body
    // before undici reads it. The socket is held here: req.socket is null once the exchange is over.
    const socket = req.socket;
    const readBefore = socket.bytesRead;
    const writtenBefore = socket.bytesWritten;
    const outcome = await this.#forward(req, res, { origin, prefix, path: entry.rest, method, hasBody });
    if (outcome === 'client_timeout') {
      this.#deps.stats?.onRequest?.(outcome);
      throw new HttpError(
        'request_timeout',
        `The request body to sandbox '${id}' stalled for ${this.#config.proxy.idleTimeoutMs / 1000}s`,
        {
          headers: { connection: 'close' },
        },
      );
    }
    if (outcome === 'client_closed') return void this.#deps.stats?.onRequest?.(outcome); // the upstream request was cancelled with it
    if (outcome !== 'ok') throw this.#upstreamError(outcome.error, id);
    this.#deps.onActivity?.(id);
    this.#deps.stats?.onRequest?.('ok');
    const declared = Number(req.headers['content-length']);
    this.#deps.stats?.onBytes?.('in', hasBody && Number.isFinite(declared) ? declared : socket.bytesRead - readBefore);
    this.#deps.stats?.onBytes?.('out', socket.bytesWritten - writtenBefore);
  }

  /**
   * Sends the request upstream and writes the answer into `res` as it arrives, with backpressure.
   *
   * undici's `dispatch` with a handler that writes to the response, rather than `pool.stream`: it saves
   * the per-request AbortController (the handler's controller aborts), the intermediate Writable and a
   * promise. Measured with bench/proxy-engine.ts under wrk, as the proxy process's CPU time per request
   * (medians of 8 interleaved rounds): 166 us with dispatch, 200 us with pool.stream, 110 us for the
   * bare forwarder. A client that goes away aborts the upstream request; an upload silent for the idle
   * timeout is cut.
   */
  #forward(
    req: IncomingMessage,
    res: ServerResponse,
    { origin, prefix, path, method, hasBody }: { origin: string; prefix: string; path: string; method: string; hasBody: boolean },
  ): Promise<'ok' | 'client_closed' | 'client_timeout' | { error: Error }> {
    return new Promise((resolve) => {
      let controller: Dispatcher.DispatchController | undefined;
      let ended: 'client_closed' | 'client_timeout' | undefined;
      const stop = (why: 'client_closed' | 'client_timeout'): void => {
        ended ??= why;
        controller?.abort(new Error(why));
      };
      const onClose = (): void => {
        if (!res.writableFinished) stop('client_closed');
      };
      const onDrain = (): void => controller?.resume();
      // On the request, not the socket: with a listener there, Node's own socket timeout handler leaves
      // the socket open, so the 408 can still be written.
      const onStall = (): void => stop('client_timeout');
      const endStallWatch = (): void => {
        req.socket?.setTimeout(0);
        req.off('timeout', onStall);
      };
      const done = (result: 'ok' | 'client_closed' | 'client_timeout' | { error: Error }): void => {
        res.off('close', onClose);
        res.off('drain', onDrain);
        endStallWatch();
        resolve(result);
      };
      res.once('close', onClose);
      if (hasBody) {
        req.setTimeout(this.#config.proxy.idleTimeoutMs, onStall);
        req.once('end', endStallWatch);
      }
      this.#pool(origin).dispatch(
        { path, method: method as 'GET', headers: this.#forwardHeaders(req, prefix), body: hasBody ? req : null },
        {
          onRequestStart: (c) => {
            controller = c;
            if (ended) c.abort(new Error(ended));
          },
          onResponseStart: (_c, statusCode, headers) => {
            const out: Record<string, string | string[]> = {};
            for (const name in headers) {
              const value = headers[name];
              if (value === undefined || HOP_BY_HOP.has(name)) continue;
              out[name] = name === 'location' ? this.#rewriteLocation(String(value), prefix, origin) : value;
            }
            res.writeHead(statusCode, out);
            // A stream of unknown length (SSE, chunked) gets its headers at once, then each chunk as it is
            // written: nothing is buffered. Sized bodies send headers with the first chunk (one write).
            if (headers['content-length'] === undefined) res.flushHeaders();
          },
          onResponseData: (c, chunk) => {
            if (!res.write(chunk)) {
              c.pause();
              res.once('drain', onDrain);
            }
          },
          onResponseEnd: () => {
            res.end();
            done('ok');
          },
          onResponseError: (_c, error) => done(ended ?? { error }),
        },
      );
    });
  }

  /**
   * Host routing, first request: the capability came in the query. Keep it in a cookie of this host
   * only (HttpOnly, SameSite=Lax, Secure over HTTPS) and send the browser to the same URL without it,
   * so the token leaves the address bar and never reaches the sandbox.
   */
  #setCookie(req: IncomingMessage, res: ServerResponse, entry: Entry): void {
    const secure = forwarded(req, this.#trusted).proto === 'https' ? '; Secure' : '';
    res.writeHead(302, {
      location: entry.rest,
      'set-cookie': `${TOKEN_PARAM}=${entry.token ?? ''}; Path=/; HttpOnly; SameSite=Lax${secure}`,
      'cache-control': 'no-store',
      'content-length': 0,
    });
    res.end();
  }

  #upstreamError(err: unknown, id: string): HttpError {
    const code = (err as { code?: string }).code ?? '';
    const kind =
      err instanceof undiciErrors.HeadersTimeoutError ||
      err instanceof undiciErrors.BodyTimeoutError ||
      err instanceof undiciErrors.ConnectTimeoutError
        ? 'timeout'
        : code === 'ECONNREFUSED'
          ? 'refused'
          : code === 'ECONNRESET' || err instanceof undiciErrors.SocketError
            ? 'reset'
            : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
              ? 'dns'
              : 'other';
    this.#deps.stats?.onUpstreamError?.(kind);
    this.#deps.stats?.onRequest?.(kind === 'timeout' ? 'upstream_timeout' : 'upstream_error');
    const message = err instanceof Error ? err.message : String(err);
    if (kind === 'other') this.#log.warn({ sandbox_id: id, err }, 'proxy upstream error');
    else this.#log.info({ sandbox_id: id, kind, code }, 'proxy upstream error');
    if (kind === 'timeout') return new HttpError('upstream_timeout', `Sandbox '${id}' did not answer in time (${message})`);
    return new HttpError('upstream_unreachable', `Sandbox '${id}' could not be reached: ${code || message}`);
  }

  /** WebSocket upgrades (the shell at /v1/shell/ws, VNC, CDP), by any entry. */
  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, entry: Entry | undefined): void {
    if (!entry) return void socket.end(rawErrorResponse(new HttpError('not_found', 'Not Found')));
    this.#resolve(req, entry, socket).then(
      ({ id, origin, prefix }) => {
        // The same header rules as HTTP, except that an upgrade needs its Connection and Upgrade headers;
        // http-proxy-3 (xfwd) adds X-Forwarded-For/-Port/-Proto/-Host.
        req.url = entry.rest;
        const passes = this.#passes(req);
        const cookie = this.#cookie(req);
        for (const [name, value] of Object.entries(req.headers)) {
          if (value !== undefined && name !== 'connection' && name !== 'upgrade' && name !== 'host' && !passes(name, value))
            delete req.headers[name];
        }
        if (cookie !== undefined) req.headers.cookie = cookie;
        if (prefix) req.headers['x-forwarded-prefix'] = prefix;
        const tracked = { destroy: () => socket.destroy() };
        this.#open.add(tracked);
        socket.once('close', () => this.#open.delete(tracked));
        this.#ws.ws(
          req,
          socket,
          head,
          { target: origin, agent: this.#wsAgent, proxyTimeout: this.#config.proxy.connectTimeoutMs },
          (err) => {
            this.#deps.stats?.onUpstreamError?.('websocket');
            this.#log.info({ sandbox_id: id, err: String(err) }, 'websocket upstream error');
            if (socket.writable)
              socket.end(
                rawErrorResponse(
                  new HttpError(
                    'upstream_unreachable',
                    `Sandbox '${id}' could not be reached: ${(err as { code?: string }).code ?? String(err)}`,
                  ),
                ),
              );
          },
        );
        this.#deps.onActivity?.(id);
      },
      (err: unknown) => {
        const answer = err instanceof HttpError ? err : new HttpError('internal_error', 'Internal error');
        if (socket.writable) socket.end(rawErrorResponse(answer));
      },
    );
  }

  /** Closes every proxied WebSocket and upstream pool (shutdown). */
  async close(): Promise<void> {
    for (const s of this.#open) s.destroy();
    this.#ws.close();
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.destroy()));
  }
}
