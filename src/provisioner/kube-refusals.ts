// The one place that turns the API server's refusals into this service's answers. The API server says
// no in many voices — ResourceQuota, LimitRanger and Pod Security admission answer 403 Forbidden with
// their own message, webhooks and policies say "denied", RBAC says "cannot <verb> resource" — and the
// caller deserves a stable `code` plus the API server's own words in `detail`. The voices are a table:
// the first row that recognises a refusal answers it.

import { HttpError, type ErrorCode } from '../http/errors.ts';
import { KubeApiError, KubeUnavailableError } from '../kube/errors.ts';

export type KubeTarget = 'pod' | 'service' | 'route' | 'namespace' | 'sandbox';

const QUOTA_RETRY_SECONDS = 30;
const UNAVAILABLE_RETRY_SECONDS = 5;

/** A refusal as the rows see it: its HTTP status, the V1Status message, what was refused and while doing what. */
type Refusal = { status: number; message: string; what: string; action: string; err: KubeApiError };

type Row = {
  /** Recognises the refusal; a RegExp match is passed on to `detail` and `extra`. */
  when: (r: Refusal) => RegExpExecArray | boolean | null;
  code: ErrorCode;
  detail?: (r: Refusal, m: RegExpExecArray | undefined) => string;
  extra?: (m: RegExpExecArray | undefined) => Record<string, unknown>;
  /** Seconds for Retry-After; `server` takes the API server's own hint. */
  retryAfter?: number | ((r: Refusal) => number);
};

const forbidden = (r: Refusal): boolean => r.status === 403 || r.err.body.reason === 'Forbidden';
const matches =
  (pattern: RegExp, onlyForbidden = false) =>
  (r: Refusal) =>
    (!onlyForbidden || forbidden(r)) && pattern.exec(r.message);
const serverHint = (fallback: number) => (r: Refusal) => r.err.body.details?.retryAfterSeconds ?? fallback;

const ROWS: Row[] = [
  // Webhooks answer 400/403 and admission policies 422 Invalid; the message is what identifies them.
  {
    when: matches(/admission webhook .* denied the request|ValidatingAdmissionPolicy .* denied request|denied request:/i),
    code: 'admission_denied',
  },
  {
    when: matches(/failed to allocate a nodePort: range is full/i),
    code: 'limit_reached',
    detail: (r) =>
      `${r.what}: the cluster's NodePort range is full (${r.message}); use SANDBOX_SERVICE_TYPE=ClusterIP with the proxy for more sandboxes`,
    retryAfter: QUOTA_RETRY_SECONDS,
  },
  { when: matches(/exceeded quota/i, true), code: 'quota_exceeded', retryAfter: QUOTA_RETRY_SECONDS },
  {
    when: matches(/violates PodSecurity "([a-z]+):[^"]*"(?::\s*(.*))?/, true),
    code: 'pod_security_violation',
    detail: (r, m) => `${r.what}: the namespace enforces Pod Security level "${m?.[1]}" and the pod violates it: ${m?.[2] ?? r.message}`,
    extra: (m) => ({ level: m?.[1] }),
  },
  {
    when: matches(
      /(maximum|minimum) [\w.-]+ usage per (Container|Pod|PersistentVolumeClaim)|limit to request ratio|must be (less|greater) than or equal to/i,
      true,
    ),
    code: 'limit_range_violation',
  },
  { when: matches(/because it is being terminated/i, true), code: 'conflict' },
  {
    when: matches(/cannot ([a-z]+) resource "([^"]+)"(?: in API group "([^"]*)")?/, true),
    code: 'provisioner_forbidden',
    detail: (r, m) =>
      `The provisioner's service account lacks RBAC permission to ${m?.[1]} ${m?.[2]}${m?.[3] ? ` (${m[3]})` : ''}: ${r.message}`,
    extra: (m) => ({ verb: m?.[1], resource: m?.[2] }),
  },
  // Any other 403 is an admission plugin's refusal in its own words.
  { when: forbidden, code: 'admission_denied' },
  { when: (r) => r.status === 400 || r.status === 422, code: 'invalid_object', detail: (r) => `${r.what}: ${r.message}${causes(r)}` },
  {
    when: (r) => r.status === 401,
    code: 'provisioner_forbidden',
    detail: (r) => `The Kubernetes API server rejected the provisioner's credentials (401) while trying to ${r.action}: ${r.message}`,
  },
  { when: (r) => r.status === 409, code: 'conflict' },
  // A create in a namespace that is gone (deleted under a running service): the writer makes it again
  // when it may, else answers this.
  {
    when: (r) => r.status === 404 && r.err.body.details?.kind === 'namespaces',
    code: 'namespace_missing',
    detail: (r) => `The sandbox namespace ${r.err.body.details?.name ?? ''} does not exist (deleted?): ${r.message}`,
    retryAfter: QUOTA_RETRY_SECONDS,
  },
  {
    when: (r) => r.status === 429,
    code: 'too_many_requests',
    detail: (r) => `The Kubernetes API server is throttling requests: ${r.message}`,
    retryAfter: serverHint(1),
  },
  {
    when: (r) => r.status >= 500 && r.status <= 504,
    code: 'cluster_unavailable',
    detail: (r) => `Kubernetes API server error while trying to ${r.action}: ${r.message}`,
    retryAfter: serverHint(UNAVAILABLE_RETRY_SECONDS),
  },
];

/** The field-level causes of an invalid object, when its message does not already say them. */
function causes(r: Refusal): string {
  const list = (r.err.body.details?.causes ?? []).map((c) => `${c.field ?? ''}: ${c.message ?? c.reason ?? ''}`.trim());
  return list.length && !r.message.includes(list[0] ?? '') ? ` (${list.join('; ')})` : '';
}

/** This service's answer to an error of the Kubernetes API while doing `action` to `target`. */
export function fromKube(err: unknown, target: KubeTarget, action: string): HttpError {
  if (err instanceof HttpError) return err;
  const extra = { object: target };
  if (err instanceof KubeUnavailableError) {
    return new HttpError('cluster_unavailable', `Kubernetes API server unavailable while trying to ${action}: ${err.message}`, {
      headers: { 'retry-after': String(UNAVAILABLE_RETRY_SECONDS) },
      extra,
      cause: err,
    });
  }
  if (!(err instanceof KubeApiError)) {
    return new HttpError(
      'internal_error',
      `Unexpected error while trying to ${action}: ${err instanceof Error ? err.message : String(err)}`,
      {
        extra,
        cause: err,
      },
    );
  }
  const verb = action.startsWith('create') ? 'creation' : action.startsWith('delete') ? 'deletion' : action;
  const refusal: Refusal = {
    status: err.status,
    message: err.body.message ?? err.message,
    what: `${target.charAt(0).toUpperCase()}${target.slice(1)} ${verb} refused`,
    action,
    err,
  };
  for (const row of ROWS) {
    const hit = row.when(refusal);
    if (!hit) continue;
    const m = hit === true ? undefined : hit;
    const retry = typeof row.retryAfter === 'function' ? row.retryAfter(refusal) : row.retryAfter;
    return new HttpError(row.code, row.detail?.(refusal, m) ?? `${refusal.what}: ${refusal.message}`, {
      ...(retry !== undefined ? { headers: { 'retry-after': String(retry) } } : {}),
      extra: { ...extra, ...row.extra?.(m) },
      cause: err,
    });
  }
  return new HttpError('internal_error', `Kubernetes API answered ${err.status} while trying to ${action}: ${refusal.message}`, {
    extra,
    cause: err,
  });
}
