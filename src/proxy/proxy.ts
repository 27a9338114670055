// The reverse proxy: /sandboxes/<id>/<rest> -> the sandbox's /<rest>, over HTTP, streaming and WebSocket.
//
// Engines, chosen by measurement (bench/proxy.ts): ordinary requests go through an undici Pool per
// sandbox with `pool.stream`, which writes the upstream body straight into the client response with
// backpressure (about twice the requests/s of http-proxy-3 here); WebSocket upgrades go through
// http-proxy-3, which pipes the two sockets once the upgrade is done.
//
// Safety: the upstream address comes only from the watch view (never from the request), and the id
// segment is validated after percent-decoding, so `..`, `%2e%2e` or `%2f` cannot name another sandbox.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent as HttpAgent } from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { LRUCache } from 'lru-cache';
import { Pool, errors as undiciErrors } from 'undici';
import type { Config } from '../config.ts';
import { settled, type SandboxRecord } from '../domain/record.ts';
import { serviceOrigin } from '../domain/sandbox.ts';
import { HttpError, rawErrorResponse, sandboxNotFound } from '../http/errors.ts';
import { forwarded, hasApiKey, parseSandboxId, requireApiKey, trustedPeers } from '../http/io.ts';
import type { RequestTarget, RouteRow, UpgradeRow } from '../http/server.ts';
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
  /** Called for each successfully proxied request (idle clean-up uses it). */
  onActivity?: (id: string) => void;
  stats?: ProxyStats;
};

export const PREFIX = '/sandboxes/';
/** A client may ask to be held until the sandbox is Ready, for up to this many seconds. */
export const WAIT_HEADER = 'x-sandbox-wait';

/** Splits `/sandboxes/<id>/<rest>`; undefined when the path is not under the prefix. */
export function splitPath(pathname: string): { rawId: string; rest: string } | undefined {
  if (!pathname.startsWith(PREFIX)) return undefined;
  const tail = pathname.slice(PREFIX.length);
  const slash = tail.indexOf('/');
  return slash === -1 ? { rawId: tail, rest: '/' } : { rawId: tail.slice(0, slash), rest: tail.slice(slash) };
}

export class SandboxProxy {
  #trusted: (address: string | undefined) => boolean;
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
    this.#trusted = trustedPeers(deps.config.trustedProxies);
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

  /** Finds the sandbox and its upstream, waiting for readiness when asked; throws 4xx/5xx HttpErrors. */
  async #resolve(req: IncomingMessage, rawId: string, signal: AbortSignal): Promise<{ id: string; origin: string }> {
    if (this.#config.proxy.requireApiKey) requireApiKey(req, this.#config.auth);
    const id = parseSandboxId(rawId);
    let record = this.#view.get(id);
    if (!record) throw sandboxNotFound(id);
    if (!record.ready) {
      const asked = Number(req.headers[WAIT_HEADER] ?? '');
      const waitMs =
        Number.isFinite(asked) && asked > 0 ? Math.min(asked * 1000, this.#config.proxy.maxWaitReadyMs) : this.#config.proxy.waitReadyMs;
      if (waitMs > 0) record = await this.#view.waitFor(id, settled, waitMs, signal);
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
    return { id, origin };
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
      if (HOP_BY_HOP.has(name) || named?.has(name) || name === 'x-api-key' || name === WAIT_HEADER) return false;
      if (!fromProxy && name.startsWith('x-forwarded-')) return false;
      return !(name === 'authorization' && key && hasApiKey({ headers: { authorization: String(value) } } as IncomingMessage, key));
    };
  }

  #forwardHeaders(req: IncomingMessage, id: string): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    const passes = this.#passes(req);
    for (const name in req.headers) {
      const value = req.headers[name];
      if (value !== undefined && passes(name, value)) out[name] = value;
    }
    const remote = req.socket.remoteAddress ?? '';
    const { proto, host } = forwarded(req, this.#trusted);
    out['x-forwarded-for'] = out['x-forwarded-for'] ? `${String(out['x-forwarded-for'])}, ${remote}` : remote;
    out['x-forwarded-proto'] = proto;
    out['x-forwarded-host'] = host ?? '';
    out['x-forwarded-prefix'] = `${PREFIX}${id}`;
    return out;
  }

  #rewriteLocation(location: string, id: string, origin: string): string {
    const prefix = `${PREFIX}${id}`;
    if (location.startsWith('/') && !location.startsWith('//')) return `${prefix}${location}`;
    if (location.startsWith(`${origin}/`) || location === origin) return `${prefix}${location.slice(origin.length) || '/'}`;
    return location;
  }

  /** The proxy's rows of the route table: any method under /sandboxes/<id>/, and its WebSocket upgrades. */
  routes(): { routes: RouteRow[]; upgrades: UpgradeRow[] } {
    const name = '/sandboxes/{id}/*';
    return {
      routes: [
        {
          name,
          path: '/sandboxes',
          methods: { '*': () => Promise.reject(new HttpError('not_found', 'Not Found: name a sandbox, /sandboxes/<id>/...')) },
        },
        {
          name,
          prefix: PREFIX,
          methods: {
            '*': ({ req, res, url, params }) => {
              const parts = splitPath(url.pathname);
              return this.#web(req, res, parts?.rawId ?? params[0] ?? '', (parts?.rest ?? '/') + url.search);
            },
          },
        },
      ],
      upgrades: [{ prefix: PREFIX, handle: (req, socket, head, url) => this.#upgrade(req, socket, head, url) }],
    };
  }

  async #web(req: IncomingMessage, res: ServerResponse, rawId: string, path: string): Promise<void> {
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort();
    };
    res.once('close', onClose);
    const { id, origin } = await this.#resolve(req, rawId, abort.signal);
    const method = (req.method ?? 'GET') as 'GET';
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
    // An upload that goes silent for the idle timeout is cut (with 408), as a download would be.
    let stalled = false;
    const onStall = (): void => {
      stalled = true;
      abort.abort();
    };
    // On the request, not the socket: with a listener there, Node's own socket timeout handler leaves
    // the socket open, so the 408 can still be written.
    const endStallWatch = (): void => {
      socket.setTimeout(0);
      req.off('timeout', onStall);
    };
    if (hasBody) {
      req.setTimeout(this.#config.proxy.idleTimeoutMs, onStall);
      req.once('end', endStallWatch);
    }
    try {
      await this.#pool(origin).stream(
        { path, method, headers: this.#forwardHeaders(req, id), body: hasBody ? req : null, signal: abort.signal, opaque: res },
        ({ statusCode, headers, opaque }) => {
          const out = opaque as ServerResponse;
          const responseHeaders: Record<string, string | string[]> = {};
          for (const name in headers) {
            const value = headers[name];
            if (value === undefined || HOP_BY_HOP.has(name)) continue;
            responseHeaders[name] = name === 'location' ? this.#rewriteLocation(String(value), id, origin) : value;
          }
          out.writeHead(statusCode, responseHeaders);
          // A stream of unknown length (SSE, chunked) gets its headers at once, then each chunk as it is
          // written: nothing is buffered. Sized bodies send headers with the first chunk (one write).
          if (headers['content-length'] === undefined) out.flushHeaders();
          return out;
        },
      );
    } catch (err) {
      if (stalled) {
        this.#deps.stats?.onRequest?.('client_timeout');
        throw new HttpError(
          'request_timeout',
          `The request body to sandbox '${id}' stalled for ${this.#config.proxy.idleTimeoutMs / 1000}s`,
          {
            headers: { connection: 'close' },
          },
        );
      }
      if (abort.signal.aborted) {
        this.#deps.stats?.onRequest?.('client_closed');
        return; // the client went away; the upstream request was cancelled with it
      }
      throw this.#upstreamError(err, id);
    } finally {
      res.off('close', onClose);
      endStallWatch();
    }
    this.#deps.onActivity?.(id);
    this.#deps.stats?.onRequest?.('ok');
    const declared = Number(req.headers['content-length']);
    this.#deps.stats?.onBytes?.('in', hasBody && Number.isFinite(declared) ? declared : socket.bytesRead - readBefore);
    this.#deps.stats?.onBytes?.('out', socket.bytesWritten - writtenBefore);
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

  /** WebSocket upgrades under /sandboxes/<id>/... (the shell at /v1/shell/ws, VNC, CDP). */
  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: RequestTarget): void {
    const parts = splitPath(url.pathname);
    if (!parts) return;
    const abort = new AbortController();
    socket.once('close', () => abort.abort());
    this.#resolve(req, parts.rawId, abort.signal).then(
      ({ id, origin }) => {
        // The same header rules as HTTP, except that an upgrade needs its Connection and Upgrade headers;
        // http-proxy-3 (xfwd) adds X-Forwarded-For/-Port/-Proto/-Host.
        req.url = parts.rest + url.search;
        const passes = this.#passes(req);
        for (const [name, value] of Object.entries(req.headers)) {
          if (value !== undefined && name !== 'connection' && name !== 'upgrade' && name !== 'host' && !passes(name, value))
            delete req.headers[name];
        }
        req.headers['x-forwarded-prefix'] = `${PREFIX}${id}`;
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
