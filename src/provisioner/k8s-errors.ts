// The one place that turns the API server's refusals into this service's answers. The API server says
// no in many voices — ResourceQuota, LimitRanger and Pod Security admission answer 403 Forbidden with
// their own message, webhooks and policies say "denied", RBAC says "cannot <verb> resource" — and the
// caller deserves a stable `code` plus the API server's own words in `detail`.

import { HttpError } from '../http/errors.ts';
import { KubeApiError, KubeUnavailableError } from '../kube/errors.ts';

export type KubeTarget = 'pod' | 'service' | 'namespace' | 'sandbox';

const QUOTA_RETRY_SECONDS = 30;
const UNAVAILABLE_RETRY_SECONDS = 5;

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
      { extra, cause: err },
    );
  }
  const message = err.body.message ?? err.message;
  const what = `${capitalize(target)} ${action.startsWith('create') ? 'creation' : action.startsWith('delete') ? 'deletion' : action} refused`;
  const retryAfter = err.body.details?.retryAfterSeconds;

  // Webhooks answer 400/403 and admission policies 422 Invalid; the message is what identifies them.
  if (/admission webhook .* denied the request|ValidatingAdmissionPolicy .* denied request|denied request:/i.test(message)) {
    return new HttpError('admission_denied', `${what}: ${message}`, { extra, cause: err });
  }
  if (/failed to allocate a nodePort: range is full/i.test(message)) {
    return new HttpError(
      'limit_reached',
      `${what}: the cluster's NodePort range is full (${message}); use SANDBOX_SERVICE_TYPE=ClusterIP with the proxy for more sandboxes`,
      {
        headers: { 'retry-after': String(QUOTA_RETRY_SECONDS) },
        extra,
        cause: err,
      },
    );
  }
  if (err.status === 403 || err.body.reason === 'Forbidden') {
    if (/exceeded quota/i.test(message)) {
      return new HttpError('quota_exceeded', `${what}: ${message}`, {
        headers: { 'retry-after': String(QUOTA_RETRY_SECONDS) },
        extra,
        cause: err,
      });
    }
    const pss = /violates PodSecurity "([a-z]+):[^"]*"(?::\s*(.*))?/.exec(message);
    if (pss) {
      return new HttpError(
        'pod_security_violation',
        `${what}: the namespace enforces Pod Security level "${pss[1]}" and the pod violates it: ${pss[2] ?? message}`,
        {
          extra: { ...extra, level: pss[1] },
          cause: err,
        },
      );
    }
    if (
      /(maximum|minimum) [\w.-]+ usage per (Container|Pod|PersistentVolumeClaim)|limit to request ratio|must be (less|greater) than or equal to/i.test(
        message,
      )
    ) {
      return new HttpError('limit_range_violation', `${what}: ${message}`, { extra, cause: err });
    }
    if (/because it is being terminated/i.test(message)) {
      return new HttpError('conflict', `${what}: ${message}`, { extra, cause: err });
    }
    const rbac = /cannot ([a-z]+) resource "([^"]+)"(?: in API group "([^"]*)")?/.exec(message);
    if (rbac) {
      return new HttpError(
        'provisioner_forbidden',
        `The provisioner's service account lacks RBAC permission to ${rbac[1]} ${rbac[2]}${rbac[3] ? ` (${rbac[3]})` : ''}: ${message}`,
        {
          extra: { ...extra, verb: rbac[1], resource: rbac[2] },
          cause: err,
        },
      );
    }
    return new HttpError('admission_denied', `${what}: ${message}`, { extra, cause: err });
  }
  switch (err.status) {
    case 400:
    case 422: {
      const causes = (err.body.details?.causes ?? []).map((c) => `${c.field ?? ''}: ${c.message ?? c.reason ?? ''}`.trim());
      return new HttpError(
        'invalid_object',
        `${what}: ${message}${causes.length && !message.includes(causes[0] ?? '') ? ` (${causes.join('; ')})` : ''}`,
        { extra, cause: err },
      );
    }
    case 401:
      return new HttpError(
        'provisioner_forbidden',
        `The Kubernetes API server rejected the provisioner's credentials (401) while trying to ${action}: ${message}`,
        { extra, cause: err },
      );
    case 409:
      return new HttpError('conflict', `${what}: ${message}`, { extra, cause: err });
    case 429:
      return new HttpError('too_many_requests', `The Kubernetes API server is throttling requests: ${message}`, {
        headers: { 'retry-after': String(retryAfter ?? 1) },
        extra,
        cause: err,
      });
    case 500:
    case 502:
    case 503:
    case 504:
      return new HttpError('cluster_unavailable', `Kubernetes API server error while trying to ${action}: ${message}`, {
        headers: { 'retry-after': String(retryAfter ?? UNAVAILABLE_RETRY_SECONDS) },
        extra,
        cause: err,
      });
    default:
      return new HttpError('internal_error', `Kubernetes API answered ${err.status} while trying to ${action}: ${message}`, {
        extra,
        cause: err,
      });
  }
}

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
