// Request and response plumbing shared by every feature: JSON in and out, validation, API key checks,
// the sandbox id of a path, and the origin a caller used.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import { isSandboxId, sandboxIdProblem } from '../domain/sandbox.ts';
import { HttpError } from './errors.ts';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** Sends JSON that is already serialized (hot paths cache their answers). */
export function sendJsonText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  sendJson(res, err.status, err.body(), err.headers);
}

const JSON_TYPE = /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i;

/** Reads a JSON body of at most `maxBytes`; 413, 415 and 400 with a clear detail otherwise. */
export async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const type = req.headers['content-type'];
  if (type !== undefined && !JSON_TYPE.test(type)) {
    throw new HttpError('unsupported_media_type', `Content-Type must be application/json, not ${JSON.stringify(type)}`);
  }
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > maxBytes)
    throw new HttpError('payload_too_large', `Request body of ${declared} bytes exceeds the limit of ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpError('payload_too_large', `Request body exceeds the limit of ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpError('invalid_json', 'Request body is empty; expected a JSON object');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError('invalid_json', `Request body is not valid JSON: ${(err as Error).message}`);
  }
}

/** Validates with zod; a failure is a 422 naming each field, as FastAPI does. */
export function validate<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => ({ loc: ['body', ...i.path.map(String)], msg: i.message, type: i.code }));
  const detail = issues.map((i) => `${i.loc.slice(1).join('.') || 'body'}: ${i.msg}`).join('; ');
  throw new HttpError('validation_failed', detail, { extra: { errors: issues } });
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** True when the request carries `key` as X-API-Key or Authorization: Bearer (constant-time compare). */
export function hasApiKey(req: IncomingMessage, key: string): boolean {
  const header = req.headers['x-api-key'];
  const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
  const given = (Array.isArray(header) ? header[0] : header) ?? bearer;
  if (given === undefined) return false;
  return timingSafeEqual(digest(given), digest(key));
}

/** Throws 401 unless the request carries `key` (an empty key means none is configured). */
export function requireApiKey(req: IncomingMessage, key: string): void {
  if (key && !hasApiKey(req, key)) throw new HttpError('unauthorized', 'Invalid or missing API key');
}

/** Validates a sandbox id taken from a URL path (after percent-decoding, so `%2e%2e` is refused too). */
export function parseSandboxId(raw: string): string {
  let id: string;
  try {
    id = raw.includes('%') ? decodeURIComponent(raw) : raw;
  } catch {
    throw new HttpError('invalid_sandbox_id', 'sandbox id is not valid percent-encoding');
  }
  if (isSandboxId(id)) return id; // the hot path of every proxied request
  throw new HttpError('invalid_sandbox_id', sandboxIdProblem(id) ?? 'invalid sandbox id');
}

/** An AbortSignal that fires when the client goes away (so waits end with it). */
export function abortOnClose(req: IncomingMessage, res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => controller.abort());
  req.once('aborted', () => controller.abort());
  return controller.signal;
}

/** The origin the caller used to reach this service (honouring X-Forwarded-Proto/Host from a front proxy). */
export function requestBase(req: IncomingMessage): string | undefined {
  const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v)?.split(',')[0]?.trim();
  const host = first(req.headers['x-forwarded-host']) ?? req.headers.host;
  if (!host || !/^[A-Za-z0-9.\-:[\]]+$/.test(host)) return undefined;
  const proto = first(req.headers['x-forwarded-proto']) === 'https' ? 'https' : 'http';
  return `${proto}://${host}`;
}
