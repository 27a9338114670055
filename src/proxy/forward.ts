// Forwarding, once the proxy has decided where a request goes: HTTP through an undici Pool per sandbox
// origin (keep-alive, bounded, with backpressure both ways), WebSocket upgrades through http-proxy-3,
// which pipes the two sockets once the upgrade is done. Engines chosen by measurement (bench/proxy.ts,
// bench/proxy-engine.ts).

import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent as HttpAgent } from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { LRUCache } from 'lru-cache';
import { Pool, type Dispatcher } from 'undici';

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

export class Upstreams {
  #options: UpstreamOptions;
  #pools: LRUCache<string, Pool>;
  #ws = createProxyServer({ ws: true, xfwd: true });
  #wsAgent = new HttpAgent({ keepAlive: false });
  #open = new Set<Duplex>();

  constructor(options: UpstreamOptions, onWebSocketError: (err: Error) => void) {
    this.#options = options;
    // One keep-alive pool per sandbox origin, bounded; evicted pools close their idle connections.
    this.#pools = new LRUCache<string, Pool>({ max: 2048, dispose: (pool) => void pool.close().catch(() => pool.destroy()) });
    this.#ws.on('error', onWebSocketError);
  }

  #pool(origin: string): Pool {
    let pool = this.#pools.get(origin);
    if (!pool) {
      const o = this.#options;
      pool = new Pool(origin, {
        connections: o.connectionsPerSandbox,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connect: { timeout: o.connectTimeoutMs },
        headersTimeout: o.readTimeoutMs,
        bodyTimeout: o.idleTimeoutMs,
      });
      this.#pools.set(origin, pool);
    }
    return pool;
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
  forward(req: IncomingMessage, res: ServerResponse, f: ForwardRequest): Promise<Outcome> {
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
      const done = (result: Outcome): void => {
        res.off('close', onClose);
        res.off('drain', onDrain);
        endStallWatch();
        resolve(result);
      };
      res.once('close', onClose);
      if (f.hasBody) {
        req.setTimeout(this.#options.idleTimeoutMs, onStall);
        req.once('end', endStallWatch);
      }
      this.#pool(f.origin).dispatch(
        { path: f.path, method: f.method as 'GET', headers: f.headers, body: f.hasBody ? req : null },
        {
          onRequestStart: (c) => {
            controller = c;
            if (ended) c.abort(new Error(ended));
          },
          onResponseStart: (_c, statusCode, headers) => {
            f.onHeaders(statusCode, headers);
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

  /** Pipes an upgrade (headers already filtered) to `origin`; `onError` when the upstream cannot be reached. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, origin: string, onError: (err: Error) => void): void {
    this.#open.add(socket);
    socket.once('close', () => this.#open.delete(socket));
    this.#ws.ws(req, socket, head, { target: origin, agent: this.#wsAgent, proxyTimeout: this.#options.connectTimeoutMs }, (err) =>
      onError(err as Error),
    );
  }

  /** Closes every proxied WebSocket and upstream pool (shutdown). */
  async close(): Promise<void> {
    for (const socket of this.#open) socket.destroy();
    this.#ws.close();
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.destroy()));
  }
}
