// Writing answers: JSON bodies (serialized here or already serialized by a hot path), error answers
// from the registry, and a signal that fires when the client goes away.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpError } from './errors.ts';
import { declaresBody } from './input.ts';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** Sends JSON that is already serialized (hot paths cache their answers). */
export function sendJsonText(res: ServerResponse, status: number, text: string, headers?: Record<string, string>): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Sends JSON already serialized, its byte length known (the status answer's hot path: nothing to measure per request). */
export function sendJsonSized(res: ServerResponse, status: number, text: string, length: number): void {
  res.writeHead(status, ['content-type', 'application/json', 'content-length', String(length)]);
  res.end(text);
}

/**
 * An error answer. One given before the request's body was read whole (a stalled upload, an upstream
 * that refused it, a 401 before the body) also ends the connection: the rest of that body would
 * otherwise be read and thrown away, and a client that stopped sending would hold the socket.
 */
export function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  const unread = res.req && !res.req.complete && declaresBody(res.req);
  sendJson(res, err.status, err.body(), unread ? { ...err.headers, connection: 'close' } : err.headers);
}

/** An AbortSignal that fires when the client goes away (so waits end with it). */
export function abortOnClose(req: IncomingMessage, res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => controller.abort());
  req.once('aborted', () => controller.abort());
  return controller.signal;
}
