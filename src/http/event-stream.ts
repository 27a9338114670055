// Server-Sent Events, with a bound: every stream of the service (the dashboard's /api/events and each
// sandbox's events) is opened here and kept in one registry. A client that stops reading is closed once
// more than `maxQueuedBytes` wait for it (the page reconnects and gets a snapshot), so memory never
// follows a stalled reader; at shutdown every stream ends at once with an event that says why, so
// no open page holds the drain. HEAD gets the headers and no stream.

import type { IncomingMessage, ServerResponse } from 'node:http';

export type StreamOptions = {
  /** Bytes queued for one client (in the response and its socket) past which it is closed. */
  maxQueuedBytes: number;
  heartbeatMs: number;
  /** Told when a stream is closed by the service: for a slow reader, or at shutdown. */
  onClosed?: (why: 'slow_reader' | 'shutdown') => void;
};

const HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };

export class EventStream {
  #res: ServerResponse;
  #seq = 0;
  #heartbeat: NodeJS.Timeout;
  #closers: (() => void)[] = [];
  #options: StreamOptions;
  #bound: number;
  closed = false;

  constructor(res: ServerResponse, options: StreamOptions) {
    this.#res = res;
    this.#options = options;
    this.#bound = options.maxQueuedBytes;
    this.#heartbeat = setInterval(() => this.#write(': keep-alive\n\n'), options.heartbeatMs);
    res.once('close', () => this.#closed());
  }

  /** Sends one event (numbered); false when the stream is closed, or closes now for a slow reader. */
  send(event: string, data: unknown): boolean {
    this.#seq += 1;
    const text = `id: ${this.#seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    // The first event (the dashboard's snapshot) may be large: the bound comes on top of it.
    if (this.#seq === 1) this.#bound += text.length;
    return this.#write(text);
  }

  /** Ends the stream after a last event (`end` with the reason), e.g. at shutdown. */
  end(event: string, data: unknown): void {
    if (this.closed) return;
    this.send(event, data);
    this.#res.end();
    this.#closed();
  }

  get queued(): number {
    return this.#res.writableLength;
  }

  /** Called once when the stream is over, whoever ended it. */
  onClose(fn: () => void): void {
    if (this.closed) fn();
    else this.#closers.push(fn);
  }

  #write(text: string): boolean {
    if (this.closed) return false;
    // What waits for this client: in the response's own buffer and in its socket's.
    if (this.#res.writableLength > this.#bound) {
      this.#options.onClosed?.('slow_reader');
      this.#res.destroy();
      this.#closed();
      return false;
    }
    this.#res.write(text);
    return true;
  }

  #closed(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.#heartbeat);
    for (const fn of this.#closers.splice(0)) fn();
  }
}

/** Every open event stream of the service. */
export class EventStreams {
  #open = new Set<EventStream>();
  #ended: { event: string; data: unknown } | undefined;
  #options: StreamOptions;

  constructor(options: StreamOptions) {
    this.#options = options;
  }

  /**
   * Answers a stream request: the headers, then a stream to send on (undefined for HEAD, or once the
   * service is shutting down: that request gets the last event at once).
   */
  open(req: IncomingMessage, res: ServerResponse): EventStream | undefined {
    res.writeHead(200, HEADERS);
    req.socket.setTimeout(0);
    if (req.method === 'HEAD') return void res.end();
    const stream = new EventStream(res, this.#options);
    if (this.#ended) {
      stream.end(this.#ended.event, this.#ended.data);
      return undefined;
    }
    this.#open.add(stream);
    stream.onClose(() => this.#open.delete(stream));
    return stream;
  }

  get size(): number {
    return this.#open.size;
  }

  /** Bytes waiting for the open streams' clients (in their responses and sockets). */
  queuedBytes(): number {
    let sum = 0;
    for (const stream of this.#open) sum += stream.queued;
    return sum;
  }

  /** Ends every stream with `event` (and any opened later at once): shutdown. */
  endAll(event: string, data: unknown): void {
    this.#ended = { event, data };
    for (const stream of [...this.#open]) {
      this.#options.onClosed?.('shutdown');
      stream.end(event, data);
    }
  }
}
