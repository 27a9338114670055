// One registry of error codes: each has an HTTP status, a stable machine-readable `code`, and a line of
// documentation (the error table of docs/api.md is checked against this list by a test). Answers are JSON
// `{"detail": "...", "code": "..."}` — `detail` as FastAPI writes it, so existing clients keep working.

export const ERRORS = {
  invalid_json: { status: 400, doc: 'The body is not valid JSON.' },
  invalid_request: {
    status: 400,
    doc: 'The request is well-formed but not acceptable (for example an extra mount outside the allowed paths).',
  },
  invalid_sandbox_id: { status: 400, doc: 'A sandbox id in the path is not a DNS-1123 label short enough for `sandbox-<id>-svc`.' },
  unsupported_feature: { status: 400, doc: 'A feature flag was requested that this provisioner is not configured for.' },
  unauthorized: {
    status: 401,
    doc: 'The request did not carry `PROVISIONER_API_KEY` (as `X-API-Key` or `Authorization: Bearer`), or no key is set and `PROVISIONER_ALLOW_ANONYMOUS` is not `true`.',
  },
  not_found: { status: 404, doc: 'No such route.' },
  sandbox_not_found: { status: 404, doc: 'No sandbox with this id.' },
  method_not_allowed: { status: 405, doc: 'The route exists but not with this method.' },
  request_timeout: {
    status: 408,
    doc: 'The request body did not arrive in time (`REQUEST_BODY_TIMEOUT_SECONDS` for the API, `PROXY_IDLE_TIMEOUT_SECONDS` of silence for a proxied upload).',
  },
  payload_too_large: { status: 413, doc: 'The body is larger than `MAX_BODY_BYTES`.' },
  headers_too_large: { status: 431, doc: 'The request headers are larger than Node.js accepts (16 KiB by default).' },
  unsupported_media_type: { status: 415, doc: 'The body is not `application/json`.' },
  validation_failed: {
    status: 422,
    doc: 'A field of the body or query is missing, has the wrong type or does not match its pattern. As FastAPI answers: `detail` is a list of `{loc, msg, type}`; `message` sums it up.',
  },
  invalid_object: { status: 422, doc: 'The Kubernetes API server rejected the pod or service as invalid (for example a bad host path).' },
  pod_security_violation: {
    status: 422,
    doc: 'Pod Security admission refused the sandbox pod; `detail` names the level and the offending fields.',
  },
  limit_range_violation: { status: 422, doc: 'A LimitRange in the namespace refused the sandbox resources.' },
  admission_denied: { status: 422, doc: 'An admission webhook or policy denied the request; `detail` carries its message.' },
  conflict: {
    status: 409,
    doc: 'The sandbox is being deleted (retry after it is gone), or a suspend found requests open to it (`Retry-After` is set).',
  },
  logs_unavailable: {
    status: 409,
    doc: 'The sandbox’s container has no log to give yet (not started, or its pod is not on a node); `detail` has kubelet’s words.',
  },
  shell_capacity_conflict: {
    status: 409,
    doc: 'DeerFlow 2.1: the existing sandbox runs fewer shell sessions than `max_shell_sessions` asks; the gateway replaces it (DELETE, then create).',
  },
  lark_broker_conflict: {
    status: 409,
    doc: 'DeerFlow 2.1: the existing sandbox’s Lark broker mode differs from the one asked, or the Lark runtime was asked without the broker this provisioner is configured with; `X-DeerFlow-Capability-Refresh: lark-broker` tells the gateway to read `/api/capabilities` again.',
  },
  not_resumable: {
    status: 409,
    doc: 'Suspend and wake: the sandbox’s Service holds no request this service wrote (made by an earlier version or another provisioner); delete it and create it again.',
  },
  quota_exceeded: { status: 429, doc: 'A ResourceQuota in the namespace is exhausted (`Retry-After` is set).' },
  limit_reached: { status: 429, doc: 'The provisioner’s own sandbox limit is reached.' },
  active_limit_reached: {
    status: 429,
    doc: 'MAX_ACTIVE_SANDBOXES or MAX_ACTIVE_SANDBOXES_PER_USER is reached and no sandbox under it is idle to suspend; `detail` names the limit (`Retry-After` is set).',
  },
  too_many_requests: {
    status: 429,
    doc: 'Too many creates in flight, or the API server is throttling; retry shortly (`Retry-After` is set).',
  },
  provisioner_forbidden: { status: 500, doc: 'The provisioner’s own RBAC lacks a permission; `detail` names the verb and resource.' },
  internal_error: { status: 500, doc: 'An unexpected error; the log has the details.' },
  upstream_unreachable: { status: 502, doc: 'Proxy: the sandbox refused or reset the connection.' },
  cluster_unavailable: { status: 503, doc: 'The Kubernetes API server is unreachable or timing out (`Retry-After` is set).' },
  not_ready: { status: 503, doc: '`/readyz`: the sandbox view has not synced or its watch is down.' },
  namespace_missing: {
    status: 503,
    doc: 'The sandbox namespace was deleted and this provisioner may not create it; `/readyz` says so too (`Retry-After` is set).',
  },
  lark_broker_not_configured: {
    status: 503,
    doc: 'DeerFlow 2.1: `provision_lark_cli_broker` was asked and `LARK_CLI_BROKER_IMAGE` is not set; with `X-DeerFlow-Capability-Refresh: lark-broker`.',
  },
  server_busy: { status: 503, doc: 'The provisioner holds `MAX_CONNECTIONS` connections already (`Retry-After` is set).' },
  sandbox_not_ready: { status: 503, doc: 'Proxy: the sandbox exists but is not Ready yet (`Retry-After` is set).' },
  upstream_timeout: { status: 504, doc: 'Proxy: the sandbox did not answer in time.' },
  create_timeout: { status: 504, doc: 'The sandbox was created but Kubernetes did not allocate its node port in time.' },
} as const satisfies Record<string, { status: number; doc: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** The longest `detail` of an answer, in characters. */
export const MAX_DETAIL = 2000;

/** One problem of a 422, as FastAPI reports it: where (`["body", "sandbox_id"]`, `["query", "wait"]`), what, and its kind. */
export type Issue = { loc: string[]; msg: string; type: string };

export class HttpError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly extra: Record<string, unknown>;
  /** A 422's problems: then `detail` is this list (FastAPI's shape) and `message` the sentence. */
  readonly issues: Issue[] | undefined;

  constructor(
    code: ErrorCode,
    detail: string,
    options: { headers?: Record<string, string>; extra?: Record<string, unknown>; cause?: unknown; issues?: Issue[] } = {},
  ) {
    // A detail may quote the request (a path, a header): clipped, so no input makes an answer large.
    super(
      detail.length > MAX_DETAIL ? `${detail.slice(0, MAX_DETAIL)}…` : detail,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'HttpError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.headers = options.headers ?? {};
    this.extra = options.extra ?? {};
    this.issues = options.issues;
  }

  body(): Record<string, unknown> {
    if (this.issues) return { detail: this.issues, code: this.code, message: this.message, ...this.extra };
    return { detail: this.message, code: this.code, ...this.extra };
  }
}

/** A 422 for one query parameter. */
export function queryProblem(name: string, msg: string, type = 'invalid'): HttpError {
  return new HttpError('validation_failed', `${name}: ${msg}`, { issues: [{ loc: ['query', name], msg, type }] });
}

/** The one "no such sandbox" answer (API, events, keepalive and proxy alike). */
export const sandboxNotFound = (id: string): HttpError => new HttpError('sandbox_not_found', `Sandbox '${id}' not found`);

/** An error as a raw HTTP/1.1 response, for sockets that are not (or no longer) an HTTP response: upgrades, client errors. */
export function rawErrorResponse(err: HttpError): string {
  const body = JSON.stringify(err.body());
  let extra = '';
  for (const [k, v] of Object.entries(err.headers)) extra += `${k}: ${v}\r\n`;
  return `HTTP/1.1 ${err.status} ${err.code}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`;
}
