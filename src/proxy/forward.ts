// Forwarding, once the proxy has decided where a request goes. Per sandbox origin, two keep-alive pools,
// bounded, with backpressure both ways: requests without a body (polls, downloads, event streams) go
// through http1.ts, whose reads land in reused buffers; requests with a body (exec, uploads) through
// undici, which streams the upload. WebSocket upgrades go through http-proxy-3, which pipes the two
// sockets once the upgrade is done. Engines chosen by measurement (bench/proxy.ts, bench/proxy-engine.ts).

import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent as HttpAgent } from 'node:http';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createProxyServer } from 'http-proxy-3';
import { LRUCache } from 'lru-cache';
import { Pool, type Dispatcher } from 'undici';
import { Http1Pool } from './http1.ts';

export type UpstreamOptions = {
  connectionsPerSandbox: number;
  connectTimeoutMs: number;
  readTimeoutMs: number;
  idleTimeoutMs: number;
};

/** What one forwarded HTTP request came to: answered, the client went away or stalled, or the upstream failed. */
export type Outcome = 'ok' | 'client_closed' | 'client_timeout' | { error: Error };

export type ForwardRequest = {
  origin: string;
  path: string;
  method: string;
  headers: Record<string, string | string[]>;
  hasBody: boolean;
  /** The answer's status and headers as the client gets them. */
  onHeaders: (statusCode: number, headers: Record<string, string | string[] | undefined>) => void;
};

/** The two pools of one sandbox origin (the undici one made on its first request with a body). */
type OriginPools = { bodiless: Http1Pool; withBody?: Pool };

export class Upstreams {
  #options: UpstreamOptions;
  #pools: LRUCache<string, OriginPools>;
  #ws = createProxyServer({ ws: true, xfwd: true });
  #wsAgent = new HttpAgent({ keepAlive: false });
  #open = new Set<Duplex>();
  #opening = new WeakMap<Duplex, () => void>();
  #inflight = new Set<Promise<Outcome>>();

  constructor(options: UpstreamOptions, onWebSocketError: (err: Error) => void) {
    this.#options = options;
    // One keep-alive pool per sandbox origin, bounded; evicted pools close their idle connections.
    this.#pools = new LRUCache<string, OriginPools>({ max: 2048, dispose: (pools) => void closePools(pools, true) });
    this.#ws.on('error', onWebSocketError);
    this.#ws.on('proxyReqWs', (proxyReq, _req, socket) => {
      const onOpen = this.#opening.get(socket);
      this.#opening.delete(socket);
      if (onOpen) proxyReq.once('upgrade', onOpen);
    });
  }

  #origin(origin: string): OriginPools {
    let pools = this.#pools.get(origin);
    if (!pools) {
      const o = this.#options;
      pools = {
        bodiless: new Http1Pool(origin, {
          connections: o.connectionsPerSandbox,
          connectTimeoutMs: o.connectTimeoutMs,
          headersTimeoutMs: o.readTimeoutMs,
          idleTimeoutMs: o.idleTimeoutMs,
          keepAliveMs: KEEP_ALIVE_MS,
        }),
      };
      this.#pools.set(origin, pools);
    }
    return pools;
  }

  #withBody(origin: string): Pool {
    const pools = this.#origin(origin);
    const o = this.#options;
    pools.withBody ??= new Pool(origin, {
      connections: o.connectionsPerSandbox,
      pipelining: 1,
      keepAliveTimeout: KEEP_ALIVE_MS,
      connect: { timeout: o.connectTimeoutMs },
      headersTimeout: o.readTimeoutMs,
      bodyTimeout: o.idleTimeoutMs,
    });
    return pools.withBody;
  }

  /**
   * Sends the request upstream and writes the answer into `res` as it arrives, with backpressure. A
   * client that goes away aborts the upstream request; an upload silent for the idle timeout is cut.
   */
  forward(req: IncomingMessage, res: ServerResponse, f: ForwardRequest): Promise<Outcome> {
    const sent = f.hasBody ? this.#sendWithBody(req, res, f) : this.#sendBodiless(res, f);
    this.#inflight.add(sent);
    void sent.finally(() => this.#inflight.delete(sent));
    return sent;
  }

  /**
   * Through http1.ts: its sink writes each body slice to the client and hands the read buffer back once
   * the write is done. Measured on a 200 MiB download (bench/proxy.ts), about 1.3x undici's throughput.
   */
  #sendBodiless(res: ServerResponse, f: ForwardRequest): Promise<Outcome> {
    const abort = new AbortController();
    let closed = false;
    let resume: (() => void) | undefined;
    const onClose = (): void => {
      if (res.writableFinished) return;
      closed = true;
      abort.abort();
    };
    const onDrain = (): void => {
      const r = resume;
      resume = undefined;
      r?.();
    };
    res.once('close', onClose);
    res.on('drain', onDrain);
    const sink = {
      head: (status: number, headers: Record<string, string | string[]>) => {
        f.onHeaders(status, headers);
        // A stream of unknown length (SSE, chunked) gets its headers at once, then each chunk as it is
        // written: nothing is buffered. Sized bodies send headers with the first chunk (one write).
        if (headers['content-length'] === undefined) res.flushHeaders();
      },
      body: (chunk: Buffer, written: () => void) => res.write(chunk, () => written()),
      onDrain: (r: () => void) => void (resume = r),
      end: () => void res.end(),
    };
    const request = { method: f.method, path: f.path, headers: f.headers };
    return this.#origin(f.origin)
      .bodiless.request(request, sink, abort.signal)
      .then(
        (): Outcome => 'ok',
        (error: Error): Outcome => (closed ? 'client_closed' : { error }),
      )
      .finally(() => {
        res.off('close', onClose);
        res.off('drain', onDrain);
      });
  }

  /**
   * Through undici's `dispatch` with a handler that writes to the response, rather than `pool.stream`: it
   * saves the per-request AbortController (the handler's controller aborts), the intermediate Writable
   * and a promise. Measured with bench/proxy-engine.ts under wrk, as the proxy process's CPU time per
   * request (medians of 8 interleaved rounds): 166 us with dispatch, 200 us with pool.stream, 110 us
   * for the bare forwarder.
   */
  #sendWithBody(req: IncomingMessage, res: ServerResponse, f: ForwardRequest): Promise<Outcome> {
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
      const done = (result: Outcome): void => {
        res.off('close', onClose);
        res.off('drain', onDrain);
        req.socket?.setTimeout(0);
        req.off('timeout', onStall);
        resolve(result);
      };
      res.once('close', onClose);
      req.setTimeout(this.#options.idleTimeoutMs, onStall);
      req.once('end', () => {
        req.socket?.setTimeout(0);
        req.off('timeout', onStall);
      });
      this.#withBody(f.origin).dispatch(
        { path: f.path, method: f.method as 'POST', headers: f.headers, body: req },
        {
          onRequestStart: (c) => {
            controller = c;
            if (ended) c.abort(new Error(ended));
          },
          onResponseStart: (_c, statusCode, headers) => {
            f.onHeaders(statusCode, headers);
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
   * Pipes an upgrade (headers already filtered) to `origin`: `onOpen` once the sandbox switched
   * protocols (the session runs until the client socket closes), `onError` when it cannot be reached.
   */
  upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    origin: string,
    on: { onOpen: () => void; onError: (err: Error) => void },
  ): void {
    this.#open.add(socket);
    this.#opening.set(socket, on.onOpen);
    socket.once('close', () => this.#open.delete(socket));
    const onError = on.onError;
    this.#ws.ws(req, socket, head, { target: origin, agent: this.#wsAgent, proxyTimeout: this.#options.connectTimeoutMs }, (err) =>
      onError(err as Error),
    );
  }

  /**
   * Resolves once `origin` accepts a TCP connection, or after `ms`: a request with a body cannot be sent
   * twice, so before one goes to a sandbox that has just turned Ready (its node port is programmed by
   * kube-proxy a moment later) this waits for the port instead of answering 502 on a refusal.
   */
  async whenAccepting(origin: string, ms: number): Promise<void> {
    const { hostname, port } = new URL(origin);
    const target = { host: hostname.replace(/^\[|\]$/g, ''), port: Number(port || 80) };
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const refused = await new Promise<boolean>((resolve) => {
        const socket = connect(target, () => {
          socket.destroy();
          resolve(false);
        });
        socket.setTimeout(this.#options.connectTimeoutMs, () => {
          socket.destroy();
          resolve(false); // not a refusal: the request itself will time out and say so
        });
        socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
      });
      if (!refused) return;
      await sleep(100);
    }
  }

  /** Closes every proxied WebSocket and upstream pool (shutdown); resolves once the requests they cut have settled. */
  async close(): Promise<void> {
    for (const socket of this.#open) socket.destroy();
    this.#ws.close();
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => closePools(p, false)));
    await Promise.allSettled([...this.#inflight]);
  }
}

const KEEP_ALIVE_MS = 30_000;

/** Closes a sandbox's pools: gracefully (evicted: requests in flight finish) or at once (shutdown). */
async function closePools(pools: OriginPools, graceful: boolean): Promise<void> {
  pools.bodiless.close(graceful);
  await (graceful ? pools.withBody?.close() : pools.withBody?.destroy())?.catch(() => pools.withBody?.destroy());
}
