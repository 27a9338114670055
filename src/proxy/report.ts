// The proxy's last step: how a forwarded exchange ended, counted, logged and turned into the client's
// answer when it has none yet. Upstream errors are mapped here once, from undici's codes.

import type { Logger } from '../log.ts';
import { HttpError } from '../http/errors.ts';
import type { Outcome } from './upstream.ts';

export type ProxyStats = {
  onRequest?: (outcome: string) => void;
  onBytes?: (direction: 'in' | 'out', bytes: number) => void;
  onUpstreamError?: (kind: string) => void;
  onWebSocket?: (event: 'opened' | 'closed') => void;
};

export type UpstreamErrorKind = 'timeout' | 'refused' | 'reset' | 'dns' | 'protocol' | 'other';

/** What kind of failure an upstream error is, by its code (undici's, or the system's). */
export function upstreamErrorKind(err: unknown): UpstreamErrorKind {
  const code = (err as { code?: string }).code ?? '';
  if (/^UND_ERR_(HEADERS|BODY|CONNECT)_TIMEOUT$/.test(code)) return 'timeout';
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'reset';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'dns';
  // The sandbox answered something that is not HTTP as RFC 9112 has it.
  if (code.startsWith('HPE_') || code === 'UPSTREAM_PROTOCOL' || /^UND_ERR_(HEADERS_OVERFLOW|RES_CONTENT_LENGTH_MISMATCH)$/.test(code))
    return 'protocol';
  return 'other';
}

export class Report {
  #log: Logger;
  #stats: ProxyStats | undefined;
  #onActivity: ((id: string) => void) | undefined;
  #idleTimeoutMs: number;
  /** This service is shutting down: what is cut now is ours, not the sandbox's. */
  closing = false;

  constructor(deps: { log: Logger; stats?: ProxyStats; onActivity?: (id: string) => void; idleTimeoutMs: number }) {
    this.#log = deps.log;
    this.#stats = deps.stats;
    this.#onActivity = deps.onActivity;
    this.#idleTimeoutMs = deps.idleTimeoutMs;
  }

  /** Counts and logs how a forwarded request ended; true when answered, throws the answer for the client when it has none yet. */
  request(id: string, outcome: Outcome): boolean {
    if (outcome === 'client_timeout') {
      this.#stats?.onRequest?.(outcome);
      throw new HttpError('request_timeout', `The request body to sandbox '${id}' stalled for ${this.#idleTimeoutMs / 1000}s`, {
        headers: { connection: 'close' },
      });
    }
    if (outcome === 'client_closed') {
      this.#stats?.onRequest?.(outcome); // the upstream request was cancelled with it
      return false;
    }
    if (outcome !== 'ok' && this.closing) {
      this.#stats?.onRequest?.('shutdown');
      this.#log.info({ sandbox_id: id }, 'proxied request cut: the grace period of the shutdown ended');
      return false;
    }
    if (outcome !== 'ok') {
      const answer = this.upstreamError(outcome.error, id);
      if (outcome.cut) return false; // the head was written: the connection was cut instead
      throw answer;
    }
    this.#onActivity?.(id);
    this.#stats?.onRequest?.('ok');
    return true;
  }

  bytes(bytesIn: number, bytesOut: number): void {
    this.#stats?.onBytes?.('in', bytesIn);
    this.#stats?.onBytes?.('out', bytesOut);
  }

  /** The client's answer to an upstream failure, counted and logged. */
  upstreamError(err: unknown, id: string): HttpError {
    const kind = upstreamErrorKind(err);
    const code = (err as { code?: string }).code ?? '';
    this.#stats?.onUpstreamError?.(kind);
    this.#stats?.onRequest?.(kind === 'timeout' ? 'upstream_timeout' : 'upstream_error');
    const message = err instanceof Error ? err.message : String(err);
    if (kind === 'other') this.#log.warn({ sandbox_id: id, err }, 'proxy upstream error');
    else this.#log.info({ sandbox_id: id, kind, code, detail: message }, 'proxy upstream error');
    if (kind === 'timeout') return new HttpError('upstream_timeout', `Sandbox '${id}' did not answer in time (${message})`);
    if (kind === 'protocol')
      return new HttpError('upstream_unreachable', `Sandbox '${id}' answered with a malformed HTTP message (${code || message})`);
    return new HttpError('upstream_unreachable', `Sandbox '${id}' could not be reached: ${code || message}`);
  }

  /**
   * A WebSocket session the sandbox accepted: counted when it opens and closes, and logged at its close
   * like an HTTP request (its path without any capability, duration and bytes each way).
   */
  session(id: string, path: string, client: { bytesRead?: number; bytesWritten?: number; once(e: 'close', f: () => void): unknown }): void {
    this.#stats?.onWebSocket?.('opened');
    this.#onActivity?.(id);
    const started = performance.now();
    client.once('close', () => {
      const bytesIn = client.bytesRead ?? 0;
      const bytesOut = client.bytesWritten ?? 0;
      this.#stats?.onWebSocket?.('closed');
      this.bytes(bytesIn, bytesOut);
      this.#onActivity?.(id);
      const ms = Math.round(performance.now() - started);
      this.#log.info({ sandbox_id: id, path: path.split('?')[0], ms, bytes_in: bytesIn, bytes_out: bytesOut }, 'websocket session closed');
    });
  }

  /** A WebSocket upgrade the sandbox could not take. */
  upgradeError(id: string, err: Error): HttpError {
    this.#stats?.onUpstreamError?.('websocket');
    this.#log.info({ sandbox_id: id, err }, 'websocket upstream error');
    const code = (err as { code?: string }).code ?? String(err);
    return upstreamErrorKind(err) === 'timeout'
      ? new HttpError('upstream_timeout', `Sandbox '${id}' did not answer the upgrade in time`)
      : new HttpError('upstream_unreachable', `Sandbox '${id}' could not be reached: ${code}`);
  }
}
