// The API key: who may use /api/* (and the proxy's plain path). Compared in constant time; with no key
// configured every request is refused, unless anonymous access was allowed on purpose.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { HttpError } from './errors.ts';

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

/** What a 401 asks for (RFC 9110 11.6.1): the key as a bearer token (or, equally, X-API-Key). */
const CHALLENGE = { 'www-authenticate': 'Bearer realm="sandbox-provisioner"' };

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
      { headers: CHALLENGE },
    );
  }
  if (!hasApiKey(req, auth.apiKey)) throw new HttpError('unauthorized', 'Invalid or missing API key', { headers: CHALLENGE });
}
