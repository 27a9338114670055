// A sandbox whose code replaced its app with a server of its own: it answers each request with the
// bytes it is given (a script), on 127.0.0.2 while honest sandboxes are on 127.0.0.1. For the tests of
// what a hostile upstream can do to the proxy and to other sandboxes' clients.

import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Client } from 'undici';
import type { FakeKube } from './fake-kube.ts';
import { call } from './helpers.ts';
import { NS, setup } from './service-harness.ts';
import type { Service } from '../src/service.ts';

/** What the hostile app does with one request: bytes to write (each element one write), then close or keep the connection. */
export type Script = { writes: (string | Buffer)[]; close: boolean; hang?: boolean };

export const HOSTILE_IP = '127.0.0.2';

/** A forged answer that a hostile sandbox tries to slip into another request's place. */
export const FORGED_BODY = '{"forged":"by the hostile sandbox"}';
export const FORGED = `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${FORGED_BODY.length}\r\n\r\n${FORGED_BODY}`;

export type Hostile = {
  server: Server;
  script: Script;
  /** Sockets the proxy opened to it that are still open. */
  open: Set<Socket>;
  /** Upgrade or other requests it saw (heads). */
  heads: string[];
};

/** Listens on HOSTILE_IP at `port` (the port honest sandboxes use on 127.0.0.1). */
export async function hostileUpstream(t: { after: (fn: () => void) => void }, port: number): Promise<Hostile> {
  const h: Hostile = {
    server: createServer(),
    script: { writes: ['HTTP/1.1 204 No Content\r\n\r\n'], close: false },
    open: new Set(),
    heads: [],
  };
  h.server.on('connection', (socket) => {
    h.open.add(socket);
    socket.on('close', () => h.open.delete(socket));
    socket.on('error', () => undefined);
    let buffered = '';
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1');
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1) return;
      h.heads.push(buffered.slice(0, end));
      buffered = buffered.slice(end + 4);
      const script = h.script;
      if (script.hang) return;
      void (async () => {
        for (const w of script.writes) {
          if (socket.destroyed) return;
          socket.write(w);
          if (script.writes.length > 1) await new Promise((r) => setImmediate(r));
        }
        if (script.close) socket.end();
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    h.server.once('error', reject);
    h.server.listen(port, HOSTILE_IP, resolve);
  });
  t.after(() => {
    for (const s of h.open) s.destroy();
    h.server.close();
  });
  return h;
}

/** Two sandboxes: `good` (the stand-in at 127.0.0.1) and `evil` (the hostile app at 127.0.0.2), both Ready. */
export async function twoSandboxes(kube: FakeKube, service: Service): Promise<void> {
  for (const [id, ip] of [
    ['good', '127.0.0.1'],
    ['evil', HOSTILE_IP],
  ] as const) {
    await call(service.url, 'POST', '/api/sandboxes?wait=0', { sandbox_id: id });
    kube.ready(NS, `sandbox-${id}`, ip);
    await service.view.waitFor(id, (r) => r?.ready === true, 2000);
  }
}

/** A WebSocket upgrade to the hostile sandbox, as a client's raw bytes. */
export const UPGRADE_TO_EVIL =
  'GET /sandboxes/evil/v1/shell/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

/** The service with both sandboxes, the hostile one reading every request and never answering. */
export async function neverAnswering(
  t: Parameters<typeof setup>[0],
  env: Record<string, string>,
): Promise<{ service: Service; evil: Hostile; address: URL }> {
  const { kube, service, upstream } = await setup(t, env);
  const evil = await hostileUpstream(t, upstreamPort(upstream));
  await twoSandboxes(kube, service);
  evil.script = { writes: [], close: false, hang: true };
  return { service, evil, address: new URL(service.url) };
}

export const upstreamPort = (server: { address(): AddressInfo | string | null }): number => (server.address() as AddressInfo).port;

export type Seen = { status: number; body: string } | { error: string };

/** One request on a keep-alive client connection: what that client saw. */
export async function through(client: Client, path: string, timeoutMs = 5000): Promise<Seen> {
  try {
    const res = await client.request({ path, method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    return { status: res.statusCode, body: await res.body.text() };
  } catch (err) {
    return { error: (err as { code?: string }).code ?? String(err) };
  }
}

/** A client with one keep-alive connection to the service, as DeerFlow's requests.Session or undici keeps one. */
export const keepAliveClient = (url: string): Client => new Client(url, { pipelining: 1, keepAliveTimeout: 60_000 });

/**
 * A keep-alive client that reads as Python's http.client does: an answer is framed by its own head
 * (Content-Length, chunked, or until close), and whatever bytes follow stay in the buffer for the next
 * answer. What a proxy writes beyond what it declared becomes the next request's answer here.
 */
export class LazyClient {
  #socket: Socket;
  #buffer = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(url: string) {
    const u = new URL(url);
    this.#socket = connect(Number(u.port), u.hostname);
    this.#socket.on('data', (d: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, d]);
      this.#wake?.();
    });
    this.#socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
    this.#socket.on('error', () => undefined);
  }

  async #until(ready: () => boolean, deadline: number): Promise<boolean> {
    while (!ready()) {
      if (this.#closed || performance.now() > deadline) return ready();
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 50);
      });
    }
    return true;
  }

  #take(n: number): Buffer {
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  /** Sends a GET and reads one answer; an error when the connection closed or stalled before a whole answer. */
  async get(path: string, timeoutMs = 5000): Promise<Seen> {
    if (this.#closed) return { error: 'closed' };
    this.#socket.write(`GET ${path} HTTP/1.1\r\nHost: provisioner\r\n\r\n`);
    const deadline = performance.now() + timeoutMs;
    if (!(await this.#until(() => this.#buffer.includes('\r\n\r\n'), deadline))) return { error: 'no head' };
    const head = this.#take(this.#buffer.indexOf('\r\n\r\n') + 4).toString('latin1');
    const status = Number(head.slice(9, 12));
    const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
    if (length !== undefined) {
      const n = Number(length);
      if (!(await this.#until(() => this.#buffer.length >= n, deadline))) return { error: 'short body' };
      return { status, body: this.#take(n).toString('latin1') };
    }
    if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      let body = '';
      for (;;) {
        if (!(await this.#until(() => this.#buffer.includes('\r\n'), deadline))) return { error: 'short chunk' };
        const size = parseInt(this.#take(this.#buffer.indexOf('\r\n') + 2).toString('latin1'), 16);
        if (!(await this.#until(() => this.#buffer.length >= size + 2, deadline))) return { error: 'short chunk' };
        body += this.#take(size + 2)
          .subarray(0, size)
          .toString('latin1');
        if (size === 0) return { status, body };
      }
    }
    await this.#until(() => false, deadline);
    return { status, body: this.#take(this.#buffer.length).toString('latin1') };
  }

  close(): void {
    this.#socket.destroy();
  }
}
