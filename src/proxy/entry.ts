// How a request names its sandbox, parsed without side effects: by the plain path (`/sandboxes/<id>/...`,
// API-key holders), by its capability URL (`/s/<id>.<token>/...`), or by host (`<id><PROXY_HOST_SUFFIX>`,
// the token in a cookie or, on the first request, the query). `rest` is what goes on to the sandbox,
// without any token. Nothing here is trusted yet: the id is validated and the token checked later.

import { CAPABILITY_PREFIX, PLAIN_PREFIX, TOKEN_PARAM } from '../domain/sandbox.ts';
import type { RequestTarget } from '../http/router.ts';

export type Entry = {
  form: 'plain' | 'capability' | 'host';
  rawId: string;
  /** The capabilities the request offers; any that verifies admits it (none on the plain path). */
  tokens: string[];
  /** The token came in the query (host routing): answer with a cookie and a redirect. */
  tokenInQuery: boolean;
  rest: string;
};

/**
 * The capability cookie of one sandbox host, named per sandbox: a cookie planted for a sibling's name
 * (through a parent domain) is just another candidate, never a replacement for this one.
 */
export const tokenCookie = (id: string): string => `${TOKEN_PARAM}_${id}`;

/** Whether a cookie name is one of this proxy's capability cookies (never sent on to a sandbox). */
export const isTokenCookie = (name: string): boolean => name === TOKEN_PARAM || name.startsWith(`${TOKEN_PARAM}_`);

/** The entry of a path under `/sandboxes/` or `/s/`; undefined when it is under neither. */
export function pathEntry(url: RequestTarget): Entry | undefined {
  const form = url.pathname.startsWith(PLAIN_PREFIX) ? 'plain' : url.pathname.startsWith(CAPABILITY_PREFIX) ? 'capability' : undefined;
  if (!form) return undefined;
  const tail = url.pathname.slice((form === 'plain' ? PLAIN_PREFIX : CAPABILITY_PREFIX).length);
  const slash = tail.indexOf('/');
  const segment = slash === -1 ? tail : tail.slice(0, slash);
  const rest = (slash === -1 ? '/' : tail.slice(slash)) + url.search;
  if (form === 'plain') return { form, rawId: segment, tokens: [], tokenInQuery: false, rest };
  const dot = segment.lastIndexOf('.');
  return {
    form,
    rawId: dot === -1 ? segment : segment.slice(0, dot),
    tokens: [dot === -1 ? '' : segment.slice(dot + 1)],
    tokenInQuery: false,
    rest,
  };
}

/** The sandbox label of a Host header under `suffix` (`<label><suffix>[:port]`), or undefined. */
export function hostLabel(host: string, suffix: string): string | undefined {
  const name = host.replace(/:\d+$/, '').toLowerCase();
  return name.endsWith(suffix) && name.length > suffix.length ? name.slice(0, -suffix.length) : undefined;
}

/**
 * The entry of a request on a sandbox host: the token from the query (first request), else every
 * capability cookie the browser sent for this host (its own, and any planted beside it).
 */
export function hostEntry(url: RequestTarget, cookieHeader: string | undefined, label: string): Entry {
  const query = withoutParam(url.search, TOKEN_PARAM);
  const tokens =
    query.value !== undefined ? [query.value] : cookieValues(cookieHeader, (name) => name === tokenCookie(label) || name === TOKEN_PARAM);
  return { form: 'host', rawId: label, tokens, tokenInQuery: query.value !== undefined, rest: url.pathname + query.search };
}

/**
 * Where the token redirect sends the browser: the same path and query on this same host, whatever the
 * request line held (`//evil.example/x`, `/\evil.example/x`, `/.//evil.example` are paths here, and
 * must not become a Location another host could be read from).
 */
export function sameOriginLocation(rest: string): string {
  // The path is read as a path of this host (the authority ends at the first slash), normalized, and its
  // leading slashes folded into one: nothing in it can name another host.
  const u = new URL(`http://sandbox.invalid/${rest.replace(/^[/\\]+/, '')}`);
  return u.pathname.replace(/^\/+/, '/') + u.search;
}

// A capability path as logged: /s/<id>.<token>/... becomes /s/<id>.*/..., so no log line holds a capability.
export const capabilityLogPath = (path: string): string => path.replace(/^(\/s\/[^/.]*)\.[^/]*/, '$1.*');

/** Form-decoding that never throws: a malformed escape (`%ZZ`, a lone `%`) leaves the text as sent. */
function formDecode(text: string): string {
  const spaced = text.replaceAll('+', ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

/** A query string without one parameter, the rest left exactly as sent (malformed escapes included). */
export function withoutParam(search: string, name: string): { search: string; value: string | undefined } {
  let value: string | undefined;
  const kept = search
    .slice(1)
    .split('&')
    .filter((pair) => {
      const eq = pair.indexOf('=');
      if (pair === '' || formDecode(eq === -1 ? pair : pair.slice(0, eq)) !== name) return pair !== '';
      value = eq === -1 ? '' : formDecode(pair.slice(eq + 1));
      return false;
    });
  return { search: kept.length ? `?${kept.join('&')}` : '', value };
}

/** The values of every cookie whose name passes `wanted`, in the order sent. */
export function cookieValues(header: string | undefined, wanted: (name: string) => boolean): string[] {
  if (header === undefined) return [];
  const values: string[] = [];
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq !== -1 && wanted(pair.slice(0, eq).trim())) values.push(pair.slice(eq + 1).trim());
  }
  return values;
}

/** The Cookie header without the cookies whose name passes `dropped` (undefined when none is left). */
export function withoutCookies(header: string | undefined, dropped: (name: string) => boolean): string | undefined {
  if (header === undefined) return undefined;
  const kept = header
    .split(';')
    .map((pair) => pair.trim())
    .filter((pair) => pair !== '' && !dropped(pair.split('=', 1)[0] ?? ''));
  return kept.length ? kept.join('; ') : undefined;
}
