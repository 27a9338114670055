// Reading what a request carries: a bounded JSON body that must arrive in time, its validation (422
// naming each field, as FastAPI does), and a sandbox id taken from a path.

import type { IncomingMessage } from 'node:http';
import type { z } from 'zod';
import { isSandboxId, sandboxIdProblem } from '../domain/sandbox.ts';
import { HttpError } from './errors.ts';

const JSON_TYPE = /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i;

/** The limits of a JSON request body. */
export type BodyLimits = { maxBytes: number; timeoutMs: number };

/** Whether a request says it carries a body (a Content-Length above 0, or a Transfer-Encoding). */
export function declaresBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return length !== undefined ? Number(length) > 0 : req.headers['transfer-encoding'] !== undefined;
}

/** Answers that end the connection: the rest of the body is not read. */
const closing = { connection: 'close' };

/**
 * Reads a JSON body of at most `maxBytes` that arrives within `timeoutMs` (a body trickled byte by byte
 * must not hold a socket forever); 413, 408, 415 and 400 with a clear detail otherwise.
 */
export async function readJson(req: IncomingMessage, { maxBytes, timeoutMs }: BodyLimits): Promise<unknown> {
  const type = req.headers['content-type'];
  if (type !== undefined && !JSON_TYPE.test(type)) {
    throw new HttpError('unsupported_media_type', `Content-Type must be application/json, not ${JSON.stringify(type)}`);
  }
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > maxBytes)
    throw new HttpError('payload_too_large', `Request body of ${declared} bytes exceeds the limit of ${maxBytes} bytes`, {
      headers: closing,
    });
  const text = (await readBody(req, maxBytes, timeoutMs)).toString('utf8');
  if (text.trim() === '') throw new HttpError('invalid_json', 'Request body is empty; expected a JSON object');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError('invalid_json', `Request body is not valid JSON: ${(err as Error).message}`);
  }
}

function readBody(req: IncomingMessage, maxBytes: number, timeoutMs: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err?: HttpError): void => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('error', onError);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes)
        done(new HttpError('payload_too_large', `Request body exceeds the limit of ${maxBytes} bytes`, { headers: closing }));
      else chunks.push(chunk);
    };
    const onEnd = (): void => done();
    const onError = (): void => done(new HttpError('invalid_request', 'The request body was cut off', { headers: closing }));
    const timer = setTimeout(
      () => done(new HttpError('request_timeout', `The request body did not arrive within ${timeoutMs / 1000}s`, { headers: closing })),
      timeoutMs,
    );
    req.on('data', onData).on('end', onEnd).on('error', onError);
  });
}

/** At most this many validation issues are reported (with a count of the rest), each clipped: an answer's size never follows its input's. */
export const MAX_ISSUES = 10;
const clip = (s: string, max: number): string => (s.length > max ? `${s.slice(0, max)}…` : s);

/** Validates with zod; a failure is a 422 naming each field of the body (or query), as FastAPI does. */
export function validate<T extends z.ZodType>(schema: T, value: unknown, where: 'body' | 'query' = 'body'): z.infer<T> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const all = parsed.error.issues;
  const issues = all
    .slice(0, MAX_ISSUES)
    .map((i) => ({ loc: [where, ...i.path.map((p) => clip(String(p), 64))], msg: clip(i.message, 200), type: i.code }));
  const more = all.length - issues.length;
  const detail = issues.map((i) => `${i.loc.slice(1).join('.') || where}: ${i.msg}`).join('; ') + (more > 0 ? `; and ${more} more` : '');
  throw new HttpError('validation_failed', detail, { issues, ...(more > 0 ? { extra: { more_errors: more } } : {}) });
}

/** Validates a sandbox id taken from a URL path (after percent-decoding, so `%2e%2e` is refused too). */
export function parseSandboxId(raw: string): string {
  if (isSandboxId(raw)) return raw; // the hot path: an id needs no decoding
  let id: string;
  try {
    id = raw.includes('%') ? decodeURIComponent(raw) : raw;
  } catch {
    throw new HttpError('invalid_sandbox_id', 'sandbox id is not valid percent-encoding');
  }
  if (isSandboxId(id)) return id;
  throw new HttpError('invalid_sandbox_id', sandboxIdProblem(id) ?? 'invalid sandbox id');
}
