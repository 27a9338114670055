// How a request names its sandbox, parsed without side effects: by the plain path (`/sandboxes/<id>/...`,
// API-key holders), by its capability URL (`/s/<id>.<token>/...`), or by host (`<id><PROXY_HOST_SUFFIX>`,
// the token in a cookie or, on the first request, the query). `rest` is what goes on to the sandbox,
// without any token. Nothing here is trusted yet: the id is validated and the token checked later.

import { CAPABILITY_PREFIX, PLAIN_PREFIX, TOKEN_PARAM } from '../domain/sandbox.ts';
import type { RequestTarget } from '../http/router.ts';

export type Entry = {
  form: 'plain' | 'capability' | 'host';
  rawId: string;
  token: string | undefined;
  /** The token came in the query (host routing): answer with a cookie and a redirect. */
  tokenInQuery: boolean;
  rest: string;
};

/** The entry of a path under `/sandboxes/` or `/s/`; undefined when it is under neither. */
export function pathEntry(url: RequestTarget): Entry | undefined {
  const form = url.pathname.startsWith(PLAIN_PREFIX) ? 'plain' : url.pathname.startsWith(CAPABILITY_PREFIX) ? 'capability' : undefined;
  if (!form) return undefined;
  const tail = url.pathname.slice((form === 'plain' ? PLAIN_PREFIX : CAPABILITY_PREFIX).length);
  const slash = tail.indexOf('/');
  const segment = slash === -1 ? tail : tail.slice(0, slash);
  const rest = (slash === -1 ? '/' : tail.slice(slash)) + url.search;
  if (form === 'plain') return { form, rawId: segment, token: undefined, tokenInQuery: false, rest };
  const dot = segment.lastIndexOf('.');
  return {
    form,
    rawId: dot === -1 ? segment : segment.slice(0, dot),
    token: dot === -1 ? '' : segment.slice(dot + 1),
    tokenInQuery: false,
    rest,
  };
}

/** The sandbox label of a Host header under `suffix` (`<label><suffix>[:port]`), or undefined. */
export function hostLabel(host: string, suffix: string): string | undefined {
  const name = host.replace(/:\d+$/, '').toLowerCase();
  return name.endsWith(suffix) && name.length > suffix.length ? name.slice(0, -suffix.length) : undefined;
}

/** The entry of a request on a sandbox host: the token from the query (first request) or the cookie. */
export function hostEntry(url: RequestTarget, cookieHeader: string | undefined, label: string): Entry {
  const query = withoutParam(url.search, TOKEN_PARAM);
  const token = query.value ?? withoutCookie(cookieHeader, TOKEN_PARAM).value;
  return { form: 'host', rawId: label, token, tokenInQuery: query.value !== undefined, rest: url.pathname + query.search };
}

// A capability path as logged: /s/<id>.<token>/... becomes /s/<id>.*/..., so no log line holds a capability.
export const capabilityLogPath = (path: string): string => path.replace(/^(\/s\/[^/.]*)\.[^/]*/, '$1.*');

/** A query string without one parameter, the rest left exactly as sent. */
export function withoutParam(search: string, name: string): { search: string; value: string | undefined } {
  let value: string | undefined;
  const kept = search
    .slice(1)
    .split('&')
    .filter((pair) => {
      const eq = pair.indexOf('=');
      if (pair === '' || decodeURIComponent((eq === -1 ? pair : pair.slice(0, eq)).replaceAll('+', ' ')) !== name) return pair !== '';
      value = eq === -1 ? '' : decodeURIComponent(pair.slice(eq + 1).replaceAll('+', ' '));
      return false;
    });
  return { search: kept.length ? `?${kept.join('&')}` : '', value };
}

/** The value of one cookie, and the Cookie header without it. */
export function withoutCookie(header: string | undefined, name: string): { header: string | undefined; value: string | undefined } {
  if (header === undefined) return { header, value: undefined };
  let value: string | undefined;
  const kept = header.split(';').filter((pair) => {
    const [k = '', ...v] = pair.trim().split('=');
    if (k !== name) return pair.trim() !== '';
    value = v.join('=');
    return false;
  });
  return { header: kept.length ? kept.map((p) => p.trim()).join('; ') : undefined, value };
}
