// Request and response plumbing shared by every feature: JSON in and out, validation, API key checks,
// the sandbox id of a path, and the origin a caller used.

import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
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

/** The limits of a JSON request body. */
export type BodyLimits = { maxBytes: number; timeoutMs: number };

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
  const body = await new Promise<Buffer>((resolve, reject) => {
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
  const text = body.toString('utf8');
  if (text.trim() === '') throw new HttpError('invalid_json', 'Request body is empty; expected a JSON object');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError('invalid_json', `Request body is not valid JSON: ${(err as Error).message}`);
  }
}

/** At most this many validation issues are reported (with a count of the rest), each clipped: an answer's size never follows its input's. */
export const MAX_ISSUES = 10;
const clip = (s: string, max: number): string => (s.length > max ? `${s.slice(0, max)}…` : s);

/** Validates with zod; a failure is a 422 naming each field, as FastAPI does. */
export function validate<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const all = parsed.error.issues;
  const issues = all
    .slice(0, MAX_ISSUES)
    .map((i) => ({ loc: ['body', ...i.path.map((p) => clip(String(p), 64))], msg: clip(i.message, 200), type: i.code }));
  const more = all.length - issues.length;
  const detail = issues.map((i) => `${i.loc.slice(1).join('.') || 'body'}: ${i.msg}`).join('; ') + (more > 0 ? `; and ${more} more` : '');
  throw new HttpError('validation_failed', detail, { extra: { errors: issues, ...(more > 0 ? { more_errors: more } : {}) } });
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
const matchesKey = (given: string | undefined, key: string): boolean => given !== undefined && timingSafeEqual(digest(given), digest(key));

/** True when an Authorization header is `Bearer <key>` (constant-time compare). */
export function isBearerKey(authorization: string | undefined, key: string): boolean {
  return matchesKey(/^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1], key);
}

/** True when the request carries `key` as X-API-Key or Authorization: Bearer (constant-time compare). */
export function hasApiKey(req: IncomingMessage, key: string): boolean {
  const header = req.headers['x-api-key'];
  if (header === undefined) return isBearerKey(req.headers.authorization, key);
  return matchesKey(Array.isArray(header) ? header[0] : header, key);
}

/**
 * Throws 401 unless the request carries the API key. With no key configured, every request is refused
 * (fail closed, as DeerFlow's provisioner does) unless anonymous access was allowed on purpose.
 */
export function requireApiKey(req: IncomingMessage, auth: { apiKey: string; allowAnonymous: boolean }): void {
  if (!auth.apiKey) {
    if (auth.allowAnonymous) return;
    throw new HttpError(
      'unauthorized',
      'PROVISIONER_API_KEY is not set, so the API is closed: set it (clients send it as X-API-Key), or set PROVISIONER_ALLOW_ANONYMOUS=true on purpose',
    );
  }
  if (!hasApiKey(req, auth.apiKey)) throw new HttpError('unauthorized', 'Invalid or missing API key');
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

/**
 * Whether a peer address is one of the trusted proxies (`TRUSTED_PROXIES`: IPs or CIDRs), whose
 * X-Forwarded-* headers are believed. Anyone else's are ignored: they could name any host.
 */
export function trustedPeers(list: readonly string[]): (address: string | undefined) => boolean {
  if (list.length === 0) return () => false;
  const blocks = new BlockList();
  for (const entry of list) {
    const [ip = '', bits] = entry.split('/');
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) blocks.addAddress(ip, type);
    else blocks.addSubnet(ip, Number(bits), type);
  }
  return (address) => {
    if (!address) return false;
    const plain = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
    return blocks.check(plain, isIP(plain) === 6 ? 'ipv6' : 'ipv4');
  };
}

const firstValue = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v)?.split(',')[0]?.trim();

/** The scheme and host the caller used: from X-Forwarded-Proto/Host when a trusted proxy sent them, else from the request itself. */
export function forwarded(
  req: IncomingMessage,
  trusted: (address: string | undefined) => boolean,
): { proto: string; host: string | undefined } {
  const fromProxy = trusted(req.socket.remoteAddress);
  const proto = fromProxy ? firstValue(req.headers['x-forwarded-proto']) : undefined;
  return {
    proto: proto === 'https' || (proto === undefined && (req.socket as { encrypted?: boolean }).encrypted) ? 'https' : 'http',
    host: (fromProxy ? firstValue(req.headers['x-forwarded-host']) : undefined) ?? req.headers.host,
  };
}

/** The origin the caller used to reach this service (X-Forwarded-Proto/Host honoured from trusted proxies only). */
export function requestBase(req: IncomingMessage, trusted: (address: string | undefined) => boolean): string | undefined {
  const { proto, host } = forwarded(req, trusted);
  if (!host || !/^[A-Za-z0-9.\-:[\]]+$/.test(host)) return undefined;
  return `${proto}://${host}`;
}
