// A lean HTTP/1.1 client for the proxy's requests without a body (GET, HEAD, DELETE, OPTIONS: polls,
// downloads, event streams), built for throughput: sockets read into a few large buffers of their own
// (net's `onread`), which are written on to the client as they are and reused once written, instead of
// a fresh 64 KiB buffer per read and a copy out of a parser. Measured on a 200 MiB download through the
// pod network (bench/proxy.ts): undici reaches about 0.8x of nginx; raw forwarding with reused 1 MiB
// buffers reaches nginx. The response head is parsed here (at most 64 KiB), and the body is framed by
// Content-Length, chunked encoding or the connection's end, as RFC 9112 section 6 says. Keep-alive
// connections are pooled per origin (an origin is one sandbox: no connection is ever shared between two).

import { connect, type Socket } from 'node:net';

/** What a response is written to: the head once, then the body in order, then the end (or an error). */
export type Sink = {
  head: (status: number, headers: Record<string, string | string[]>) => void;
  /** Writes a body slice; `done` is called once it has left (its buffer may then be reused). False: slow down. */
  body: (chunk: Buffer, done: () => void) => boolean;
  /** Resumes reading after `body` returned false. */
  onDrain: (resume: () => void) => void;
  end: () => void;
};

export type Http1Options = {
  connections: number;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  keepAliveMs: number;
};

/** Errors named as undici names them, so callers judge both engines alike. */
export class UpstreamError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

const MAX_HEAD = 64 * 1024;
const BUFFERS = 4;
const BUFFER_SIZE = 1024 * 1024;
const CRLF2 = Buffer.from('\r\n\r\n');

type Framing = { kind: 'none' } | { kind: 'length'; left: number } | { kind: 'chunked' } | { kind: 'close' };

/** A parsed response head, or undefined while incomplete; throws on a malformed one. */
function parseHead(
  head: Buffer,
): { status: number; headers: Record<string, string | string[]>; close: boolean; length: number } | undefined {
  const end = head.indexOf(CRLF2);
  if (end === -1) return undefined;
  const lines = head.subarray(0, end).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!status)
    throw new UpstreamError('UND_ERR_SOCKET', `malformed status line from the sandbox: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const headers: Record<string, string | string[]> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || /[\s]/.test(line.slice(0, colon)))
      throw new UpstreamError('UND_ERR_SOCKET', 'malformed header line from the sandbox');
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    const seen = headers[name];
    headers[name] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
  }
  const connection = String(headers['connection'] ?? '').toLowerCase();
  return {
    status: Number(status[2]),
    headers,
    close: status[1] === '0' ? !connection.includes('keep-alive') : connection.includes('close'),
    length: end + 4,
  };
}

function framing(method: string, status: number, headers: Record<string, string | string[]>): Framing {
  if (method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)) return { kind: 'none' };
  const te = headers['transfer-encoding'];
  if (te !== undefined) {
    if (/(^|,)\s*chunked\s*$/i.test(String(te))) return { kind: 'chunked' };
    return { kind: 'close' };
  }
  const cl = headers['content-length'];
  if (cl !== undefined) {
    if (Array.isArray(cl) || !/^\d+$/.test(cl)) throw new UpstreamError('UND_ERR_SOCKET', 'invalid Content-Length from the sandbox');
    return { kind: 'length', left: Number(cl) };
  }
  return { kind: 'close' };
}

/** One upstream connection: one exchange at a time, its bytes read into reused buffers. */
class Connection {
  readonly socket: Socket;
  #buffers = Array.from({ length: BUFFERS }, () => ({ data: Buffer.allocUnsafe(BUFFER_SIZE), pending: 0 }));
  #exchange: Exchange | undefined;
  #starved = false;
  closed = false;

  constructor(host: string, port: number, onGone: () => void) {
    this.socket = connect({
      host,
      port,
      noDelay: true,
      onread: { buffer: () => this.#free(), callback: (n, buf) => this.#data(buf, n) },
    });
    this.socket.on('error', (err) => this.#fail(err));
    this.socket.on('close', () => {
      this.closed = true;
      if (this.#exchange) this.#exchange.closed();
      onGone();
    });
  }

  /** A buffer no write still holds; a fresh one (not reused) in the rare case that all are held. */
  #free(): Buffer {
    return this.#buffers.find((b) => b.pending === 0)?.data ?? Buffer.allocUnsafe(BUFFER_SIZE);
  }

  #data(buf: Uint8Array, n: number): boolean {
    const owner = this.#buffers.find((b) => b.data.buffer === buf.buffer && b.data.byteOffset === buf.byteOffset);
    if (!this.#exchange) {
      this.socket.destroy(); // bytes nobody asked for: the connection cannot be trusted
      return false;
    }
    const keepReading = this.#exchange.data(Buffer.from(buf.buffer, buf.byteOffset, n), owner);
    // Every buffer held by writes not yet done: stop reading until one is.
    if (keepReading && this.#buffers.every((b) => b.pending > 0)) {
      this.#starved = true;
      return false;
    }
    return keepReading;
  }

  /** A write holding `owner` is done: its buffer may be read into again. */
  released(): void {
    if (this.#starved && this.#buffers.some((b) => b.pending === 0)) {
      this.#starved = false;
      this.socket.resume();
    }
  }

  start(exchange: Exchange): void {
    this.#exchange = exchange;
    this.socket.resume();
  }

  finish(reusable: boolean): boolean {
    this.#exchange = undefined;
    if (!reusable || this.closed) {
      this.socket.destroy();
      return false;
    }
    return true;
  }

  #fail(err: Error): void {
    this.#exchange?.fail(err);
  }
}

/** One request and its response on a connection. */
class Exchange {
  #conn: Connection;
  #method: string;
  #sink: Sink;
  #done: (err: Error | undefined, reusable: boolean) => void;
  #head: Buffer[] = [];
  #headBytes = 0;
  #framing: Framing | undefined;
  #close = false;
  #chunk: { left: number; state: 'size' | 'data' | 'crlf' | 'trailers'; line: string } = { left: 0, state: 'size', line: '' };
  #finished = false;
  #headersTimer: NodeJS.Timeout;
  #idleTimer: NodeJS.Timeout | undefined;
  #idleMs: number;

  constructor(
    conn: Connection,
    method: string,
    sink: Sink,
    timeouts: { headersMs: number; idleMs: number },
    done: (err: Error | undefined, reusable: boolean) => void,
  ) {
    this.#conn = conn;
    this.#method = method;
    this.#sink = sink;
    this.#done = done;
    this.#idleMs = timeouts.idleMs;
    this.#headersTimer = setTimeout(
      () => this.fail(new UpstreamError('UND_ERR_HEADERS_TIMEOUT', 'Headers Timeout Error')),
      timeouts.headersMs,
    );
  }

  /** Bytes of the connection; false stops reading (the client is slow; `onDrain` resumes). */
  data(chunk: Buffer, owner: { pending: number } | undefined): boolean {
    if (this.#finished) return false;
    try {
      if (!this.#framing) {
        const rest = this.#readHead(chunk);
        if (rest === undefined || rest.length === 0) return this.#framing ? this.#maybeDone() : true;
        chunk = rest;
      }
      this.#touch();
      return this.#readBody(chunk, owner);
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
  }

  #readHead(chunk: Buffer): Buffer | undefined {
    this.#head.push(Buffer.from(chunk)); // a copy: the read buffer is reused
    this.#headBytes += chunk.length;
    const all = Buffer.concat(this.#head);
    const head = parseHead(all);
    if ((head?.length ?? this.#headBytes) > MAX_HEAD)
      throw new UpstreamError('UND_ERR_HEADERS_OVERFLOW', 'the sandbox sent a response head over 64 KiB');
    if (!head) return undefined;
    if (head.status >= 100 && head.status < 200) {
      // 1xx (100 Continue, 103 Early Hints): not forwarded; the final answer follows.
      this.#head = [];
      this.#headBytes = 0;
      return this.#readHead(all.subarray(head.length));
    }
    clearTimeout(this.#headersTimer);
    this.#touch();
    this.#framing = framing(this.#method, head.status, head.headers);
    this.#close = head.close || this.#framing.kind === 'close';
    this.#sink.head(head.status, head.headers);
    return all.subarray(head.length);
  }

  #readBody(chunk: Buffer, owner: { pending: number } | undefined): boolean {
    const f = this.#framing;
    if (!f || f.kind === 'none') throw new UpstreamError('UND_ERR_SOCKET', 'the sandbox sent bytes after its response');
    if (f.kind === 'close') return this.#write(chunk, owner);
    if (f.kind === 'length') {
      if (chunk.length > f.left) throw new UpstreamError('UND_ERR_SOCKET', 'the sandbox sent more than its Content-Length');
      f.left -= chunk.length;
      const more = chunk.length === 0 || this.#write(chunk, owner);
      return f.left === 0 ? this.#maybeDone() : more;
    }
    return this.#readChunked(chunk, owner);
  }

  /** Chunked encoding, decoded: the sink gets the data; sizes, extensions and trailers stay here. */
  #readChunked(chunk: Buffer, owner: { pending: number } | undefined): boolean {
    const c = this.#chunk;
    let more = true;
    let i = 0;
    while (i < chunk.length && !this.#finished) {
      if (c.state === 'data') {
        const take = Math.min(c.left, chunk.length - i);
        more = this.#write(chunk.subarray(i, i + take), owner) && more;
        c.left -= take;
        i += take;
        if (c.left === 0) c.state = 'crlf';
        continue;
      }
      const nl = chunk.indexOf(10, i);
      const piece = chunk.subarray(i, nl === -1 ? chunk.length : nl + 1).toString('latin1');
      i = nl === -1 ? chunk.length : nl + 1;
      c.line += piece;
      if (c.line.length > 4096) throw new UpstreamError('UND_ERR_SOCKET', 'a chunk line from the sandbox is too long');
      if (nl === -1) continue;
      const line = c.line.replace(/\r?\n$/, '');
      c.line = '';
      if (c.state === 'crlf') {
        if (line !== '') throw new UpstreamError('UND_ERR_SOCKET', 'malformed chunked body from the sandbox');
        c.state = 'size';
      } else if (c.state === 'size') {
        const size = /^([0-9a-fA-F]{1,12})(?:\s*;.*)?$/.exec(line);
        if (!size) throw new UpstreamError('UND_ERR_SOCKET', 'malformed chunk size from the sandbox');
        c.left = parseInt(size[1] ?? '0', 16);
        c.state = c.left === 0 ? 'trailers' : 'data';
      } else if (line === '') {
        this.#framing = { kind: 'length', left: 0 };
        if (i < chunk.length) throw new UpstreamError('UND_ERR_SOCKET', 'the sandbox sent bytes after its response');
        return this.#maybeDone();
      }
    }
    return more;
  }

  #write(chunk: Buffer, owner: { pending: number } | undefined): boolean {
    if (chunk.length === 0) return true;
    if (owner) owner.pending += 1;
    const ok = this.#sink.body(chunk, () => {
      if (owner) owner.pending -= 1;
      this.#conn.released();
    });
    if (!ok) {
      // The client is slow, not the sandbox: no idle timeout while it catches up.
      clearTimeout(this.#idleTimer);
      this.#sink.onDrain(() => {
        this.#touch();
        this.#conn.socket.resume();
      });
    }
    return ok;
  }

  /** The response is complete when its framing says so (Content-Length reached, last chunk, no body). */
  #maybeDone(): boolean {
    const f = this.#framing;
    const complete = f?.kind === 'none' || (f?.kind === 'length' && f.left === 0);
    if (!complete) return true;
    this.#end(undefined, !this.#close);
    return true; // an idle connection keeps reading, to see it close
  }

  /** The connection closed: the end of a close-delimited body, an error for any other. */
  closed(): void {
    if (this.#framing?.kind === 'close') return this.#end(undefined, false);
    this.fail(new UpstreamError('ECONNRESET', 'the sandbox closed the connection before its response was complete'));
  }

  fail(err: Error): void {
    this.#end(err, false);
  }

  #touch(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => this.fail(new UpstreamError('UND_ERR_BODY_TIMEOUT', 'Body Timeout Error')), this.#idleMs);
  }

  #end(err: Error | undefined, reusable: boolean): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#headersTimer);
    clearTimeout(this.#idleTimer);
    if (!err) this.#sink.end();
    this.#done(err, reusable);
  }
}

/** Keep-alive connections to one origin (host and port), at most `connections` at once. */
export class Http1Pool {
  #host: string;
  #port: number;
  #authority: string;
  #o: Http1Options;
  #closing = false;
  #idle: { conn: Connection; timer: NodeJS.Timeout }[] = [];
  #open = 0;
  #waiting: (() => void)[] = [];
  #all = new Set<Connection>();

  constructor(origin: string, options: Http1Options) {
    const u = new URL(origin);
    this.#host = u.hostname.replace(/^\[|\]$/g, '');
    this.#port = Number(u.port || 80);
    this.#authority = u.host;
    this.#o = options;
  }

  /**
   * Sends a request without a body and streams its response into `sink`. Resolves when the response
   * has ended, or rejects (a connect error keeps its code: ECONNREFUSED...). `signal` aborts it.
   */
  async request(
    req: { method: string; path: string; headers: Record<string, string | string[]> },
    sink: Sink,
    signal: AbortSignal,
  ): Promise<void> {
    const conn = await this.#connection(signal);
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => exchange.fail(new UpstreamError('UND_ERR_ABORTED', 'Request aborted'));
      const exchange = new Exchange(
        conn,
        req.method,
        sink,
        { headersMs: this.#o.headersTimeoutMs, idleMs: this.#o.idleTimeoutMs },
        (err, reusable) => {
          signal.removeEventListener('abort', onAbort);
          this.#release(conn, reusable && !err);
          if (err) reject(err);
          else resolve();
        },
      );
      conn.start(exchange);
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      let head = `${req.method} ${req.path} HTTP/1.1\r\n`;
      if (req.headers['host'] === undefined) head += `host: ${this.#authority}\r\n`;
      for (const [name, value] of Object.entries(req.headers)) {
        for (const v of Array.isArray(value) ? value : [value]) {
          if (/[\r\n]/.test(name) || /[\r\n]/.test(v)) continue; // Node already refuses these from clients
          head += `${name}: ${v}\r\n`;
        }
      }
      conn.socket.write(`${head}\r\n`, 'latin1');
    });
  }

  /** An idle connection, a new one, or the next to be released when `connections` are busy. */
  async #connection(signal: AbortSignal): Promise<Connection> {
    for (;;) {
      const idle = this.#idle.pop();
      if (idle) {
        clearTimeout(idle.timer);
        if (!idle.conn.closed) return idle.conn;
        continue;
      }
      if (this.#open < this.#o.connections) return this.#connect(signal);
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
      if (signal.aborted) throw new UpstreamError('UND_ERR_ABORTED', 'Request aborted');
    }
  }

  #connect(signal: AbortSignal): Promise<Connection> {
    this.#open += 1;
    const conn = new Connection(this.#host, this.#port, () => {
      if (!this.#all.delete(conn)) return;
      this.#open -= 1;
      this.#idle = this.#idle.filter((i) => i.conn !== conn);
      this.#waiting.shift()?.();
    });
    this.#all.add(conn);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new UpstreamError('UND_ERR_CONNECT_TIMEOUT', 'Connect Timeout Error')), this.#o.connectTimeoutMs);
      const onAbort = (): void => fail(new UpstreamError('UND_ERR_ABORTED', 'Request aborted'));
      const cleanup = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        conn.socket.off('error', fail).off('connect', ok);
      };
      function ok(): void {
        cleanup();
        resolve(conn);
      }
      function fail(err: Error): void {
        cleanup();
        conn.socket.destroy();
        reject(err);
      }
      conn.socket.once('connect', ok).once('error', fail);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  #release(conn: Connection, reusable: boolean): void {
    if (!conn.finish(reusable && !this.#closing)) return;
    const timer = setTimeout(() => conn.socket.destroy(), this.#o.keepAliveMs);
    timer.unref();
    this.#idle.push({ conn, timer });
    this.#waiting.shift()?.();
  }

  /** Closes every connection, or (graceful) the idle ones now and the others when their exchange ends. */
  close(graceful: boolean): void {
    this.#closing = true;
    for (const i of this.#idle) {
      clearTimeout(i.timer);
      i.conn.socket.destroy();
    }
    this.#idle = [];
    if (!graceful) for (const conn of this.#all) conn.socket.destroy();
  }
}
