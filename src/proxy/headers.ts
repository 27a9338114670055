// The header policy of the proxy, one for HTTP and WebSocket alike: which client headers go on to the
// sandbox (no hop-by-hop ones, not the provisioner's API key or capability cookie, X-Forwarded-* only
// from trusted proxies), what this proxy adds (X-Forwarded-For/-Proto/-Host, and -Prefix for the plain
// path: a capability never reaches the sandbox), and what of the sandbox's answer comes back (no
// hop-by-hop headers; a Location under the sandbox's prefix; under a path prefix, a CSP that gives the
// sandbox's documents an origin of their own).

import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { isBearerKey } from '../http/auth.ts';
import { forwarded } from '../http/forwarded.ts';
import { isTokenCookie, withoutCookies } from './entry.ts';

export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  // Node answers `Expect: 100-continue` itself; undici refuses to send it upstream.
  'expect',
]);

/** A client may ask to be held until the sandbox is Ready, for up to this many seconds (not forwarded). */
export const WAIT_HEADER = 'x-sandbox-wait';

export type HeaderPolicy = {
  /** Whether a peer is a trusted proxy (TRUSTED_PROXIES), whose X-Forwarded-* headers are believed. */
  trusted: (address: string | undefined) => boolean;
  /** The provisioner's API key: never forwarded to a sandbox. */
  apiKey: string;
};

/**
 * Which client headers go on to the sandbox: not hop-by-hop ones (those listed in RFC 9110 7.6.1, and
 * any named in Connection), not the provisioner's own API key, not this proxy's X-Sandbox-Wait, not the
 * Cookie (sent again without the capability cookie), and X-Forwarded-* only from a trusted proxy.
 */
function passes(req: IncomingMessage, policy: HeaderPolicy): (name: string, value: string | string[]) => boolean {
  const fromProxy = policy.trusted(req.socket.remoteAddress);
  const connection = req.headers.connection;
  const named =
    connection && connection !== 'keep-alive' && connection !== 'close'
      ? new Set(connection.split(',').map((t) => t.trim().toLowerCase()))
      : undefined;
  return (name, value) => {
    if (HOP_BY_HOP.has(name) || named?.has(name) || name === 'x-api-key' || name === WAIT_HEADER || name === 'cookie') return false;
    if (!fromProxy && name.startsWith('x-forwarded-')) return false;
    return !(name === 'authorization' && policy.apiKey && isBearerKey(String(value), policy.apiKey));
  };
}

/** The Cookie header for the sandbox: the client's, without this proxy's capability cookies. */
const sandboxCookie = (req: IncomingMessage): string | undefined => withoutCookies(req.headers.cookie, isTokenCookie);

/**
 * The headers of a proxied request (HTTP or upgrade): the client's that pass, and X-Forwarded-For/-Proto/
 * -Host, and X-Forwarded-Prefix when `prefix` is given (the plain path; never a capability path).
 */
export function requestHeaders(req: IncomingMessage, prefix: string, policy: HeaderPolicy): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const pass = passes(req, policy);
  for (const name in req.headers) {
    const value = req.headers[name];
    if (value !== undefined && pass(name, value)) out[name] = value;
  }
  const cookie = sandboxCookie(req);
  if (cookie !== undefined) out['cookie'] = cookie;
  const remote = req.socket.remoteAddress ?? '';
  const { proto, host } = forwarded(req, policy.trusted);
  out['x-forwarded-for'] = out['x-forwarded-for'] ? `${String(out['x-forwarded-for'])}, ${remote}` : remote;
  out['x-forwarded-proto'] = proto;
  out['x-forwarded-host'] = host ?? '';
  if (prefix) out['x-forwarded-prefix'] = prefix;
  return out;
}

/** A Location the sandbox sent, under the sandbox's prefix when it points into the sandbox. */
export function rewriteLocation(location: string, prefix: string, origin: string): string {
  if (location.startsWith('/') && !location.startsWith('//')) return `${prefix}${location}`;
  if (location.startsWith(`${origin}/`) || location === origin) return `${prefix}${location.slice(origin.length) || '/'}`;
  return location;
}

/**
 * A cookie the sandbox sets, as the client gets it: never one of this proxy's capability cookies; never
 * for a parent domain (its Domain attribute is dropped, so it stays on this host: on a sandbox host,
 * siblings are same-site, and a parent-domain cookie would reach every one of them); and, under a path
 * prefix, its Path under that prefix, as Location is.
 */
export function sandboxSetCookie(value: string, prefix: string): string | undefined {
  const [pair = '', ...attributes] = value.split(';');
  if (isTokenCookie(pair.split('=', 1)[0]?.trim() ?? '')) return undefined;
  const kept = attributes.flatMap((attribute) => {
    const [name = '', ...rest] = attribute.split('=');
    const key = name.trim().toLowerCase();
    if (key === 'domain') return [];
    if (key === 'path' && prefix) return [` Path=${prefix}${rest.join('=').trim().replace(/^\/?/, '/')}`];
    return [attribute];
  });
  return [pair, ...kept].join(';');
}

/**
 * Under a path prefix (`/sandboxes/<id>`, `/s/<id>.<capability>`) a sandbox's pages are served on this
 * service's own origin, the dashboard's, which holds the API key. CSP `sandbox` without
 * `allow-same-origin` gives them an opaque origin of their own: their scripts run, but cannot read this
 * origin's storage or pages. Apps that need an origin (cookies, storage) belong on host routing.
 */
export const SANDBOX_DOCUMENT_CSP =
  'sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads allow-pointer-lock allow-presentation allow-orientation-lock';

/** The headers of the sandbox's answer that go back to the client. */
export function responseHeaders(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
  prefix: string,
  origin: string,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    if (name === 'set-cookie') {
      const cookies = (Array.isArray(value) ? value : [value]).flatMap((c) => sandboxSetCookie(c, prefix) ?? []);
      if (cookies.length) out[name] = cookies;
      continue;
    }
    out[name] = name === 'location' ? rewriteLocation(String(value), prefix, origin) : value;
  }
  if (prefix) {
    const own = out['content-security-policy'];
    out['content-security-policy'] =
      own === undefined ? SANDBOX_DOCUMENT_CSP : [...(Array.isArray(own) ? own : [own]), SANDBOX_DOCUMENT_CSP];
  }
  return out;
}
