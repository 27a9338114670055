// The one engine between this proxy and a sandbox: undici, for every exchange. HTTP requests (with or
// without a body, streamed both ways with backpressure), WebSocket upgrades (undici's upgrade dispatch:
// the sandbox's answer to the upgrade is under a timeout and cancelled with the client), the app check
// and "does its port accept yet" all go through one keep-alive Pool per upstream origin, kept in an LRU
// and closed when the sandbox that owns it goes.
//
// The upstream is untrusted: a sandbox's code can replace its app with any server. undici's parser
// (llhttp, strict) refuses what RFC 9112 calls an error (Content-Length with Transfer-Encoding, two
// Content-Lengths, bad chunk sizes, CR/LF/NUL in a field, a head over 16 KiB) and checks that a body
// is as long as its Content-Length. This engine adds what it must on the client's side: the client gets
// what the sandbox declared or a cut connection, never a message framed as whole that is not; 1xx heads
// are bounded and never forwarded; bytes the sandbox sends after its answer end that upstream connection.
//
// Memory is a budget. Per forwarded exchange: one socket read (64 KiB) in undici, and the response's
// write buffer (16 KiB, plus the one chunk that filled it) before the upstream is paused; per sandbox,
// that times PROXY_CONNECTIONS_PER_SANDBOX; idle pooled connections hold no buffers.

import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { LRUCache } from 'lru-cache';
import { buildConnector, Pool, type Dispatcher } from 'undici';

export type UpstreamOptions = {
  connectionsPerSandbox: number;
  connectTimeoutMs: number;
  /** For the answer's head (HTTP). */
  readTimeoutMs: number;
  /** For a silent body, either way. */
  idleTimeoutMs: number;
};

/** What one forwarded HTTP request came to: answered, the client went away or stalled, or the upstream failed. */
export type Outcome = 'ok' | 'client_closed' | 'client_timeout' | { error: Error; cut: boolean };

export type Headers = Record<string, string | string[] | undefined>;

export type ForwardRequest = {
  origin: string;
  /** The sandbox the origin belongs to: its pools close when it goes (release). */
  owner: string;
  path: string;
  method: string;
  headers: Record<string, string | string[]>;
  hasBody: boolean;
  /** The answer's status and headers as the client gets them. */
  responseHeaders: (headers: Headers) => Record<string, string | string[]>;
};

export type UpgradeRequest = Omit<ForwardRequest, 'method' | 'hasBody'> & {
  /** The protocol the client asked for (its Upgrade header). */
  protocol: string;
  /** The sandbox switched protocols: the session runs until either side closes. */
  onOpen: (upstream: Duplex) => void;
  /** The sandbox could not be reached, or failed before answering: nothing was written to the client yet. */
  onError: (err: Error) => void;
};

/** An upstream that misbehaved in a way its parser accepts (too many 1xx heads). */
export class UpstreamProtocolError extends Error {
  code = 'UPSTREAM_PROTOCOL';
}

/** At most this many informational (1xx) heads before the answer; more is a broken or hostile upstream. */
export const MAX_INFORMATIONAL = 16;
/** The app check: each try must answer within this. */
const CHECK_TIMEOUT_MS = 500;
const KEEP_ALIVE_MS = 30_000;
const POOLS = 4096;

export class Upstreams {
  #options: UpstreamOptions;
  #connect: buildConnector.connector;
  #pools: LRUCache<string, Pool>;
  /** The pool keys of each sandbox. */
  #owned = new Map<string, Set<string>>();
  #sessions = new Set<Duplex>();
  #inflight = new Set<Promise<unknown>>();

  constructor(options: UpstreamOptions) {
    this.#options = options;
    this.#connect = buildConnector({ timeout: options.connectTimeoutMs });
    // Evicted or released pools finish what they carry, then close.
    this.#pools = new LRUCache<string, Pool>({ max: POOLS, dispose: (pool) => void pool.close().catch(() => pool.destroy()) });
  }

  /** The pool of one sandbox's origin: a pool never serves two sandboxes, so releasing one leaves the others'. */
  #pool(origin: string, owner: string): Pool {
    const key = `${owner} ${origin}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      const o = this.#options;
      pool = new Pool(origin, {
        connections: o.connectionsPerSandbox,
        pipelining: 1,
        keepAliveTimeout: KEEP_ALIVE_MS,
        connect: this.#connect,
        headersTimeout: o.readTimeoutMs,
        bodyTimeout: o.idleTimeoutMs,
      });
      this.#pools.set(key, pool);
      const keys = this.#owned.get(owner) ?? new Set<string>();
      this.#owned.set(owner, keys.add(key));
    }
    return pool;
  }

  /** How many pools are open (a gauge, and the tests' check that a deleted sandbox's pool is gone). */
  get pools(): number {
    return this.#pools.size;
  }

  /** Closes the pools of a sandbox that is gone (or has a new pod): requests in flight finish first. */
  release(owner: string): void {
    for (const key of this.#owned.get(owner) ?? []) this.#pools.delete(key);
    this.#owned.delete(owner);
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    void p.finally(() => this.#inflight.delete(p));
    return p;
  }

  /**
   * Sends the request upstream and writes the answer into `res` as it arrives, with backpressure. A
   * client that goes away aborts the upstream request; a body silent for the idle timeout is cut. An
   * upstream failure after the head was written cuts the client's connection (`cut`): the client sees
   * an incomplete message, never a shorter one passed off as whole.
   */
  forward(req: IncomingMessage, res: ServerResponse, f: ForwardRequest): Promise<Outcome> {
    return this.#track(new Promise<Outcome>((resolve) => this.#dispatch(req, res, f, resolve)));
  }

  #dispatch(req: IncomingMessage, res: ServerResponse, f: ForwardRequest, resolve: (o: Outcome) => void): void {
    let controller: Dispatcher.DispatchController | undefined;
    let ended: 'client_closed' | 'client_timeout' | undefined;
    const informational = statusCheck();
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
    const stopWatchingBody = (): void => {
      req.socket?.setTimeout(0);
      req.off('timeout', onStall);
    };
    const done = (outcome: Outcome): void => {
      res.off('close', onClose);
      res.off('drain', onDrain);
      stopWatchingBody();
      resolve(outcome);
    };
    res.once('close', onClose);
    res.on('drain', onDrain);
    if (f.hasBody) {
      req.setTimeout(this.#options.idleTimeoutMs, onStall);
      req.once('end', stopWatchingBody);
    }
    this.#pool(f.origin, f.owner).dispatch(
      { path: f.path, method: f.method as Dispatcher.HttpMethod, headers: f.headers, body: f.hasBody ? req : null },
      {
        onRequestStart: (c) => {
          controller = c;
          if (ended) c.abort(new Error(ended));
        },
        onResponseStart: (c, status, headers) => {
          const wrong = informational(status);
          if (wrong) return void (wrong !== 'skip' && c.abort(wrong));
          // A value Node will not write (writeHead throws) aborts the request: the client gets a clean 502.
          res.writeHead(status, f.responseHeaders(headers));
          // A stream of unknown length (SSE, chunked) gets its head at once, then each chunk as it is
          // written: nothing is buffered. Sized bodies go out with the head (one write).
          if (headers['content-length'] === undefined) res.flushHeaders();
        },
        onResponseData: (c, chunk) => {
          if (!res.write(chunk)) c.pause();
        },
        onResponseEnd: () => {
          res.end();
          done('ok');
        },
        onResponseError: (_c, error) => {
          if (ended) return done(ended);
          const cut = res.headersSent;
          if (cut) res.destroy();
          done({ error, cut });
        },
      },
    );
  }

  /**
   * Upgrades a client's request (its headers already filtered) on the sandbox. On 101 the two sockets
   * are piped until either closes; any other answer goes back to the client as it is, then the
   * connection closes. The answer must come within the connect timeout; the client's close cancels it.
   */
  upgrade(socket: Duplex, head: Buffer, u: UpgradeRequest): void {
    let controller: Dispatcher.DispatchController | undefined;
    let answered = false;
    const informational = statusCheck();
    const onClientClose = (): void => controller?.abort(new Error('client_closed'));
    const stopWatching = (): void => void socket.off('close', onClientClose);
    socket.once('close', onClientClose);
    this.#sessions.add(socket);
    socket.once('close', () => this.#sessions.delete(socket));
    const onDrain = (): void => controller?.resume();
    this.#pool(u.origin, u.owner).dispatch(
      { path: u.path, method: 'GET', headers: u.headers, upgrade: u.protocol, headersTimeout: this.#options.connectTimeoutMs },
      {
        onRequestStart: (c) => {
          controller = c;
          if (socket.destroyed) c.abort(new Error('client_closed'));
        },
        onRequestUpgrade: (_c, status, headers, upstream) => {
          stopWatching();
          answered = true;
          const out = { ...u.responseHeaders(headers), connection: 'Upgrade', upgrade: String(headers['upgrade'] ?? u.protocol) };
          socket.write(rawHead(status, out));
          if (head.length > 0) upstream.write(head);
          splice(socket, upstream);
          u.onOpen(upstream);
        },
        onResponseStart: (c, status, headers) => {
          const wrong = informational(status);
          if (wrong) return void (wrong !== 'skip' && c.abort(wrong));
          answered = true;
          socket.write(rawHead(status, { ...u.responseHeaders(headers), connection: 'close' }));
          socket.on('drain', onDrain);
        },
        onResponseData: (c, chunk) => {
          if (!socket.write(chunk)) c.pause();
        },
        onResponseEnd: () => {
          stopWatching();
          socket.end();
        },
        onResponseError: (_c, err) => {
          stopWatching();
          if (socket.destroyed) return;
          if (answered) socket.destroy();
          else u.onError(err);
        },
      },
    );
  }

  /**
   * Whether `origin` accepts a connection, asked with the same connector the pools use: false only
   * for a refusal (nothing listens there yet); a connection that times out is not a refusal.
   */
  accepts(origin: string): Promise<boolean> {
    const { hostname, host, port, protocol } = new URL(origin);
    return new Promise((resolve) =>
      this.#connect({ hostname, host, port, protocol }, (err, socket) => {
        socket?.destroy();
        resolve((err as NodeJS.ErrnoException | null)?.code !== 'ECONNREFUSED');
      }),
    );
  }

  /** Waits until `origin` accepts a connection (every 100 ms), at most `ms`; whether it did. */
  async whenAccepting(origin: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    const until = performance.now() + ms;
    for (;;) {
      if (await this.accepts(origin)) return true;
      if (performance.now() >= until || signal?.aborted) return false;
      await sleep(100, undefined, { signal }).catch(() => undefined);
    }
  }

  /** Whether the app at `origin` answers `path` with 2xx or 3xx within the check's timeout (the app check). */
  answers(origin: string, owner: string, path: string, signal: AbortSignal): Promise<boolean> {
    return this.#track(
      new Promise<boolean>((resolve) => {
        let status = 0;
        let controller: Dispatcher.DispatchController | undefined;
        const cancel = (): void => controller?.abort(new Error('app check ended'));
        const timer = setTimeout(cancel, CHECK_TIMEOUT_MS);
        signal.addEventListener('abort', cancel, { once: true });
        const done = (ok: boolean): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', cancel);
          resolve(ok);
        };
        this.#pool(origin, owner).dispatch(
          { path, method: 'GET', headers: { 'user-agent': 'sandbox-provisioner/app-check' }, headersTimeout: CHECK_TIMEOUT_MS },
          {
            onRequestStart: (c) => {
              controller = c;
              if (signal.aborted) c.abort(new Error('app check ended'));
            },
            onResponseStart: (_c, s) => void (status = s),
            onResponseData: () => undefined,
            onResponseEnd: () => done(status >= 200 && status < 400),
            onResponseError: () => done(false),
          },
        );
      }),
    );
  }

  /** Closes every WebSocket session and upstream pool (shutdown); resolves once what they cut has settled. */
  async close(): Promise<void> {
    for (const socket of this.#sessions) socket.destroy();
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    this.#owned.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
    await Promise.allSettled([...this.#inflight]);
  }
}

/**
 * The check of each head's status for one exchange: 'skip' for an informational head (not forwarded;
 * more than MAX_INFORMATIONAL is an error), an error for a status RFC 9110 calls invalid (outside
 * 100-599), undefined for the answer itself.
 */
function statusCheck(): (status: number) => 'skip' | UpstreamProtocolError | undefined {
  let seen = 0;
  return (status) => {
    if (status > 599) return new UpstreamProtocolError(`status ${status} is outside 100-599`);
    if (status >= 200) return undefined;
    seen += 1;
    return seen > MAX_INFORMATIONAL ? new UpstreamProtocolError(`more than ${MAX_INFORMATIONAL} informational answers`) : 'skip';
  };
}

/** A status line and header fields, as written on a raw socket (an upgrade's answer). */
function rawHead(status: number, headers: IncomingHttpHeaders | Record<string, string | string[]>): Buffer {
  let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) text += `${name}: ${v}\r\n`;
  }
  return Buffer.from(`${text}\r\n`, 'latin1');
}

/** Pipes two sockets both ways; when either ends, errors or closes, both go. */
function splice(a: Duplex, b: Duplex): void {
  const end = (): void => {
    a.destroy();
    b.destroy();
  };
  for (const s of [a, b]) {
    s.once('error', end);
    s.once('close', end);
    (s as Duplex & { setTimeout?: (ms: number) => void }).setTimeout?.(0);
  }
  a.pipe(b);
  b.pipe(a);
}
