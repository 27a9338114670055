// The reverse proxy's decisions: which sandbox a request names (entry.ts), whether it may reach it (the
// API key, or a capability valid for the sandbox's current pod), where that sandbox is (from the watch
// view only, never from the request), and how its answer is reported. Headers follow headers.ts; the
// bytes are moved by forward.ts. Routes: /s/<id>.<capability>/<rest>, /sandboxes/<id>/<rest> and
// <id><host suffix>/<rest>, to the sandbox's /<rest>, over HTTP, streaming and WebSocket.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config } from '../config.ts';
import { settled, type SandboxRecord } from '../domain/record.ts';
import { CAPABILITY_PREFIX, capabilityPath, PLAIN_PREFIX, serviceOrigin } from '../domain/sandbox.ts';
import { hasApiKey } from '../http/auth.ts';
import type { Capabilities } from '../http/capability.ts';
import { HttpError, rawErrorResponse, sandboxNotFound } from '../http/errors.ts';
import { forwarded } from '../http/forwarded.ts';
import { declaresBody, parseSandboxId } from '../http/input.ts';
import type { Context, HostRoute, RequestTarget, RouteRow, UpgradeRow } from '../http/router.ts';
import type { Logger } from '../log.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import { capabilityLogPath, hostEntry, hostLabel, pathEntry, sameOriginLocation, tokenCookie, type Entry } from './entry.ts';
import { AppCheck } from './app-check.ts';
import { Upstreams, type Outcome } from './forward.ts';
import { filterUpgradeHeaders, requestHeaders, responseHeaders, WAIT_HEADER, type HeaderPolicy } from './headers.ts';

export type ProxyStats = {
  onRequest?: (outcome: string) => void;
  onBytes?: (direction: 'in' | 'out', bytes: number) => void;
  onUpstreamError?: (kind: string) => void;
  onWebSocket?: (event: 'opened' | 'closed') => void;
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

const refused = (outcome: Outcome): boolean => typeof outcome === 'object' && (outcome.error as { code?: string }).code === 'ECONNREFUSED';
const justReady = (record: SandboxRecord): boolean => record.readyAt !== undefined && Date.now() - record.readyAt < JUST_READY_MS;

/** What goes away when the client does: a response or an upgraded socket. */
type Closable = { once(event: 'close', listener: () => void): unknown; off(event: 'close', listener: () => void): unknown };

/** Where a request goes: the sandbox, its upstream origin, and the prefix the client sees it under. */
type Target = { id: string; origin: string; prefix: string; record: SandboxRecord };

/** At most this many capabilities of one request are checked (a host request may carry several cookies). */
const MAX_TOKENS = 4;

/** How long after turning Ready a refused connection is retried (or waited out, for a request with a body): the node port's endpoint is programmed (kube-proxy) a moment after Ready. */
const JUST_READY_MS = 5000;

export class SandboxProxy {
  #config: Config;
  #view: SandboxView;
  #log: Logger;
  #deps: ProxyDeps;
  #policy: HeaderPolicy;
  #upstreams: Upstreams;
  #appCheck: AppCheck | undefined;
  #closing = false;

  constructor(deps: ProxyDeps) {
    this.#deps = deps;
    this.#config = deps.config;
    this.#view = deps.view;
    this.#log = deps.log;
    this.#policy = { trusted: deps.trusted, apiKey: deps.config.auth.apiKey };
    this.#upstreams = new Upstreams(deps.config.proxy, (err) => this.#log.debug({ err }, 'websocket proxy error'));
    const { sandbox, proxy } = deps.config;
    if (proxy.earlyReady) this.#appCheck = new AppCheck({ path: sandbox.probePath, port: sandbox.port });
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
    const suffix = this.#config.proxy.hostSuffix;
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
    this.#closing = true;
    return this.#upstreams.close();
  }

  /**
   * Whether this request may reach the sandbox: the API key; or, on the plain path with no key set, an
   * anonymous setup allowed on purpose; or a capability valid for the sandbox's current pod.
   */
  #allowed(req: IncomingMessage, entry: Entry, id: string, record: SandboxRecord | undefined): boolean {
    const { apiKey, allowAnonymous } = this.#config.auth;
    if (apiKey && hasApiKey(req, apiKey)) return true;
    if (entry.form === 'plain') return !apiKey && allowAnonymous;
    // Every candidate is checked, even for an unknown id (against a MAC nobody holds): the same work
    // either way. A host request offers its own cookie and any planted beside it; any that verifies admits.
    const podUid = record ? (record.podUid ?? '') : undefined;
    let ok = false;
    for (const token of entry.tokens.slice(0, MAX_TOKENS)) ok = this.#deps.capabilities.verify(id, podUid, token) || ok;
    return ok;
  }

  /**
   * Finds the sandbox and its upstream, waiting for readiness when asked; throws 4xx/5xx HttpErrors. A
   * request that may not reach it is answered as for an unknown sandbox: ids cannot be probed.
   */
  async #resolve(req: IncomingMessage, entry: Entry, client: Closable): Promise<Target> {
    const id = parseSandboxId(entry.rawId);
    const found = this.#view.get(id);
    if (!this.#allowed(req, entry, id, found) || !found) throw sandboxNotFound(id);
    const { record, direct } = found.ready ? { record: found, direct: undefined } : await this.#waitReady(req, id, client);
    const origin = direct ?? this.origin(record);
    if (!origin)
      throw new HttpError('sandbox_not_ready', `Sandbox '${id}' has no reachable address yet`, { headers: { 'retry-after': '2' } });
    const prefix =
      entry.form === 'plain' ? `${PLAIN_PREFIX}${id}` : entry.form === 'capability' ? capabilityPath(id, entry.tokens[0] ?? '') : '';
    return { id, origin, prefix, record };
  }

  /**
   * Holds a request to a sandbox that is starting (PROXY_WAIT_READY_SECONDS, or the client's
   * X-Sandbox-Wait) until it is Ready, stuck or gone, or until its app answers (PROXY_EARLY_READY: the
   * request then goes to the pod itself); a stuck sandbox, or one still starting when the hold ends,
   * answers 503 with the reason.
   */
  async #waitReady(req: IncomingMessage, id: string, client: Closable): Promise<{ record: SandboxRecord; direct: string | undefined }> {
    const header = req.headers[WAIT_HEADER];
    const asked = header === undefined || header === '' ? NaN : Number(header);
    const p = this.#config.proxy;
    // X-Sandbox-Wait: 0 asks for an answer at once; any other number of seconds, up to PROXY_MAX_WAIT_READY_SECONDS.
    const waitMs = Number.isFinite(asked) && asked >= 0 ? Math.min(asked * 1000, p.maxWaitReadyMs) : p.waitReadyMs;
    let record = this.#view.get(id);
    if (waitMs > 0 && record && !settled(record) && !this.#direct(record)) {
      // Held until Ready, until the app answers, or until the client goes away.
      const gone = new AbortController();
      const onClose = (): void => gone.abort();
      client.once('close', onClose);
      try {
        record = await Promise.race([this.#view.waitFor(id, settled, waitMs, gone.signal), this.#appAnswers(id, waitMs, gone.signal)]);
      } finally {
        gone.abort();
        client.off('close', onClose);
      }
    }
    if (!record) throw sandboxNotFound(id);
    const direct = record.ready ? undefined : this.#direct(record);
    if (record.ready || direct) return { record, direct };
    throw new HttpError(
      'sandbox_not_ready',
      `Sandbox '${id}' is not ready (status ${record.status}${record.reason ? `, ${record.reason}` : ''})`,
      {
        headers: { 'retry-after': '2' },
        extra: { status: record.status, ...(record.reason ? { reason: record.reason } : {}) },
      },
    );
  }

  /** The pod's own address, once its app has answered (a sandbox not yet marked Ready by kubelet). */
  #direct(record: SandboxRecord): string | undefined {
    const answered = record.podUid !== undefined && record.podIP !== undefined && this.#appCheck?.answered(record.podUid);
    return answered && record.phase === 'Running' && record.podIP ? this.#appCheck?.origin(record.podIP) : undefined;
  }

  /** Resolves with the sandbox's record once its container runs and its app answers; never, without PROXY_EARLY_READY. */
  async #appAnswers(id: string, waitMs: number, signal: AbortSignal): Promise<SandboxRecord | undefined> {
    const check = this.#appCheck;
    if (!check) return new Promise<never>(() => undefined);
    const running = (r: SandboxRecord | undefined): boolean => r !== undefined && r.phase === 'Running' && r.podIP !== undefined;
    const record = await this.#view.waitFor(id, (r) => r === undefined || settled(r) || running(r), waitMs, signal);
    if (signal.aborted || !record || !running(record) || record.ready) return new Promise<never>(() => undefined);
    if (await check.until(record.podUid ?? '', record.podIP ?? '', signal)) return this.#view.get(id);
    return new Promise<never>(() => undefined);
  }

  async #web(req: IncomingMessage, res: ServerResponse, entry: Entry | undefined): Promise<void> {
    if (!entry) throw new HttpError('not_found', 'Not Found');
    const { id, origin, prefix, record } = await this.#resolve(req, entry, res);
    if (entry.tokenInQuery) return this.#setCookie(req, res, entry, id);
    const method = req.method ?? 'GET';
    const hasBody = method !== 'GET' && method !== 'HEAD' && declaresBody(req);
    // Byte counts: a body's declared length (forwarded whole on success), else (chunked) what the client
    // socket read meanwhile; responses by what it wrote. No 'data' listener: it would drain the body
    // before undici reads it. The socket is held here: req.socket is null once the exchange is over.
    const socket = req.socket;
    const readBefore = socket.bytesRead;
    const writtenBefore = socket.bytesWritten;
    const request = {
      origin,
      path: entry.rest,
      method,
      headers: requestHeaders(req, prefix, this.#policy),
      hasBody,
      onHeaders: (status: number, headers: Record<string, string | string[] | undefined>) =>
        res.writeHead(status, responseHeaders(headers, prefix, origin)),
    };
    // A sandbox that turned Ready a moment ago may not be routed yet (a node port's endpoint): a request
    // with a body waits until the port accepts; one without is retried on a refused connection.
    if (hasBody && justReady(record)) await this.#upstreams.whenAccepting(origin, JUST_READY_MS);
    let outcome = await this.#upstreams.forward(req, res, request);
    for (let tries = 0; !hasBody && refused(outcome) && justReady(record) && tries < 30; tries++) {
      await new Promise((r) => setTimeout(r, 100));
      outcome = await this.#upstreams.forward(req, res, request);
    }
    if (!this.#report(id, outcome)) return;
    const declared = Number(req.headers['content-length']);
    this.#deps.stats?.onBytes?.('in', hasBody && Number.isFinite(declared) ? declared : socket.bytesRead - readBefore);
    this.#deps.stats?.onBytes?.('out', socket.bytesWritten - writtenBefore);
  }

  /** Counts and logs how a forwarded request ended; true when answered, throws the answer for the client when it has none yet. */
  #report(id: string, outcome: Outcome): boolean {
    if (outcome === 'client_timeout') {
      this.#deps.stats?.onRequest?.(outcome);
      throw new HttpError(
        'request_timeout',
        `The request body to sandbox '${id}' stalled for ${this.#config.proxy.idleTimeoutMs / 1000}s`,
        { headers: { connection: 'close' } },
      );
    }
    if (outcome === 'client_closed') {
      this.#deps.stats?.onRequest?.(outcome); // the upstream request was cancelled with it
      return false;
    }
    if (outcome !== 'ok' && this.#closing) {
      // Cut by this service's own shutdown (the grace period ended): not the sandbox's fault.
      this.#deps.stats?.onRequest?.('shutdown');
      this.#log.info({ sandbox_id: id }, 'proxied request cut: the grace period of the shutdown ended');
      return false;
    }
    if (outcome !== 'ok') throw this.#upstreamError(outcome.error, id);
    this.#deps.onActivity?.(id);
    this.#deps.stats?.onRequest?.('ok');
    return true;
  }

  /**
   * Host routing, first request: the capability came in the query. Keep it in a cookie of this host
   * only (HttpOnly, SameSite=Lax, Secure over HTTPS) and send the browser to the same URL without it,
   * so the token leaves the address bar and never reaches the sandbox.
   */
  #setCookie(req: IncomingMessage, res: ServerResponse, entry: Entry, id: string): void {
    const secure = forwarded(req, this.#deps.trusted).proto === 'https' ? '; Secure' : '';
    res.writeHead(302, {
      location: sameOriginLocation(entry.rest),
      'set-cookie': `${tokenCookie(id)}=${entry.tokens[0] ?? ''}; Path=/; HttpOnly; SameSite=Lax${secure}`,
      'cache-control': 'no-store',
      'content-length': 0,
    });
    res.end();
  }

  #upstreamError(err: unknown, id: string): HttpError {
    const code = (err as { code?: string }).code ?? '';
    // Codes as undici names them; forward.ts's own engine (http1.ts) uses the same.
    const kind = /^UND_ERR_(HEADERS|BODY|CONNECT)_TIMEOUT$/.test(code)
      ? 'timeout'
      : code === 'ECONNREFUSED'
        ? 'refused'
        : code === 'ECONNRESET' || code === 'UND_ERR_SOCKET'
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

  /**
   * A WebSocket session the sandbox accepted: counted when it opens and closes, and logged at its close
   * like an HTTP request (its path without any capability, duration and bytes each way).
   */
  #session(id: string, path: string, socket: Duplex): void {
    const stats = this.#deps.stats;
    stats?.onWebSocket?.('opened');
    const started = performance.now();
    const net = socket as Duplex & { bytesRead?: number; bytesWritten?: number };
    socket.once('close', () => {
      const bytesIn = net.bytesRead ?? 0;
      const bytesOut = net.bytesWritten ?? 0;
      stats?.onWebSocket?.('closed');
      stats?.onBytes?.('in', bytesIn);
      stats?.onBytes?.('out', bytesOut);
      this.#deps.onActivity?.(id);
      const ms = Math.round(performance.now() - started);
      this.#log.info({ sandbox_id: id, path: path.split('?')[0], ms, bytes_in: bytesIn, bytes_out: bytesOut }, 'websocket session closed');
    });
  }

  /** WebSocket upgrades (the shell at /v1/shell/ws, VNC, CDP), by any entry. */
  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, entry: Entry | undefined): void {
    if (!entry) return void socket.end(rawErrorResponse(new HttpError('not_found', 'Not Found')));
    this.#resolve(req, entry, socket).then(
      ({ id, origin, prefix }) => {
        req.url = entry.rest;
        filterUpgradeHeaders(req, prefix, this.#policy);
        this.#upstreams.upgrade(req, socket, head, origin, {
          onOpen: () => this.#session(id, entry.rest, socket),
          onError: (err) => {
            this.#deps.stats?.onUpstreamError?.('websocket');
            this.#log.info({ sandbox_id: id, err }, 'websocket upstream error');
            const why = (err as { code?: string }).code ?? String(err);
            if (socket.writable)
              socket.end(rawErrorResponse(new HttpError('upstream_unreachable', `Sandbox '${id}' could not be reached: ${why}`)));
          },
        });
        this.#deps.onActivity?.(id);
      },
      (err: unknown) => {
        const answer = err instanceof HttpError ? err : new HttpError('internal_error', 'Internal error');
        if (socket.writable) socket.end(rawErrorResponse(answer));
      },
    );
  }
}
