// The OpenAPI 3.1 document, generated from the zod schemas: the request schemas are the ones that
// validate requests, so the document cannot drift from the code. Component schemas are converted from
// one registry, so every reference between them is `#/components/schemas/<Name>` (valid from the
// document's root); the tests validate the document with an OpenAPI validator.

import { VERSION } from '../version.ts';
import { z } from 'zod';
import { STATUSES } from '../domain/sandbox.ts';
import { ERRORS, type ErrorCode } from '../http/errors.ts';
import {
  capabilitiesSchema,
  deletedSchema,
  errorSchema,
  healthSchema,
  presenceSchema,
  readySchema,
  sandboxListSchema,
  sandboxSchema,
} from './answer.ts';
import { createRequestSchema, keepaliveRequestSchema, sandboxIdSchema, threadIdSchema } from './request.ts';

const COMPONENTS = [
  createRequestSchema,
  keepaliveRequestSchema,
  sandboxSchema,
  sandboxListSchema,
  deletedSchema,
  presenceSchema,
  errorSchema,
  healthSchema,
  readySchema,
  capabilitiesSchema,
];
const idOf = (schema: z.ZodType): string => (schema.meta() as { id: string }).id;
const ref = (schema: z.ZodType): { $ref: string } => ({ $ref: `#/components/schemas/${idOf(schema)}` });

/** A JSON Schema for a parameter or a part of a document (no `$schema` of its own). */
function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

/** The component schemas, from one registry: references between them point into the document. */
function componentSchemas(): Record<string, unknown> {
  const registry = z.registry<{ id: string }>();
  for (const schema of COMPONENTS) registry.add(schema, { id: idOf(schema) });
  const { schemas } = z.toJSONSchema(registry, { uri: (id) => `#/components/schemas/${id}`, io: 'input', unrepresentable: 'any' });
  return Object.fromEntries(
    Object.entries(schemas).map(([id, s]) => {
      const { $schema: _, $id: __, ...rest } = s as Record<string, unknown>;
      return [id, rest];
    }),
  );
}

type Parameter = { name: string; in: 'path' | 'query'; required: boolean; description?: string; schema: Record<string, unknown> };

const idParameter: Parameter = { name: 'sandbox_id', in: 'path', required: true, schema: jsonSchema(sandboxIdSchema) };
const waitParameter = (maxSeconds: number): Parameter => ({
  name: 'wait',
  in: 'query',
  required: false,
  description: `Seconds to wait for the sandbox to be Running (or stuck) before answering; at most ${maxSeconds}`,
  schema: { type: 'number', minimum: 0, maximum: maxSeconds, default: 0 },
});

type Op = {
  summary: string;
  parameters?: Parameter[];
  body?: z.ZodType;
  ok: Record<number, z.ZodType | 'text'>;
  errors: ErrorCode[];
  /** No API key needed (probes, metrics). */
  open?: boolean;
};

const JSON_ERROR = { 'application/json': { schema: ref(errorSchema) } };

/** Each error code's status, described by every code that answers it. */
function errorResponses(codes: ErrorCode[]): Record<string, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) byStatus.set(ERRORS[code].status, [...(byStatus.get(ERRORS[code].status) ?? []), code]);
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      String(status),
      { description: list.map((c) => `\`${c}\`: ${ERRORS[c].doc}`).join(' '), content: JSON_ERROR },
    ]),
  );
}

function operation(op: Op): Record<string, unknown> {
  const responses: Record<string, unknown> = {};
  for (const [status, schema] of Object.entries(op.ok)) {
    responses[status] =
      schema === 'text'
        ? { description: 'OK', content: { 'text/plain': { schema: { type: 'string' } } } }
        : { description: 'OK', content: { 'application/json': { schema: ref(schema) } } };
  }
  return {
    summary: op.summary,
    ...(op.open ? { security: [] } : {}),
    ...(op.parameters?.length ? { parameters: op.parameters } : {}),
    ...(op.body
      ? { requestBody: { required: op.body !== keepaliveRequestSchema, content: { 'application/json': { schema: ref(op.body) } } } }
      : {}),
    responses: { ...responses, ...errorResponses(op.errors) },
  };
}

/** What any /api route may answer besides its own: no key, and a body that cannot be read. */
const API: ErrorCode[] = ['unauthorized'];
const BODY: ErrorCode[] = ['invalid_json', 'unsupported_media_type', 'payload_too_large', 'request_timeout', 'validation_failed'];

function stream(summary: string, events: string, parameters: Parameter[], errors: ErrorCode[]): Record<string, unknown> {
  return {
    get: {
      summary,
      ...(parameters.length ? { parameters } : {}),
      responses: {
        200: { description: events, content: { 'text/event-stream': { schema: { type: 'string' } } } },
        ...errorResponses(errors),
      },
    },
  };
}

/** A proxied path: any method, the sandbox's own answers, and the proxy's errors. */
function proxied(summary: string, parameters: Parameter[], security: Record<string, string[]>[]): Record<string, unknown> {
  const op = {
    summary,
    security,
    parameters: [
      ...parameters,
      { name: 'path', in: 'path', required: true, description: 'The path on the sandbox', schema: { type: 'string' } },
    ],
    responses: {
      default: { description: 'The sandbox’s own answer, streamed as it comes' },
      ...errorResponses(['invalid_sandbox_id', 'request_timeout', 'upstream_unreachable', 'sandbox_not_ready', 'upstream_timeout']),
      404: {
        description: `${ERRORS.sandbox_not_found.doc} Also without a valid capability or API key, so ids cannot be probed.`,
        content: JSON_ERROR,
      },
    },
  };
  return { get: op, post: op, put: op, patch: op, delete: op };
}

const listParameters: Parameter[] = [
  { name: 'thread_id', in: 'query', required: false, description: 'Only this thread’s sandboxes', schema: jsonSchema(threadIdSchema) },
  {
    name: 'status',
    in: 'query',
    required: false,
    description: 'Only sandboxes in this status',
    schema: { type: 'string', enum: [...STATUSES] },
  },
];

const CREATE_ERRORS: ErrorCode[] = [
  'invalid_request',
  'unsupported_feature',
  'invalid_object',
  'pod_security_violation',
  'limit_range_violation',
  'admission_denied',
  'conflict',
  'shell_capacity_conflict',
  'lark_broker_conflict',
  'lark_broker_not_configured',
  'quota_exceeded',
  'limit_reached',
  'active_limit_reached',
  'too_many_requests',
  'provisioner_forbidden',
  'internal_error',
  'cluster_unavailable',
  'namespace_missing',
  'create_timeout',
];

export function openApiDocument(maxWaitSeconds = 300): Record<string, unknown> {
  const wait = waitParameter(maxWaitSeconds);
  return {
    openapi: '3.1.0',
    info: {
      title: 'Sandbox provisioner',
      version: VERSION,
      description:
        'Creates one Pod and one Service per sandbox on Kubernetes; compatible with DeerFlow’s provisioner API. ' +
        'Sandboxes are also reached on hosts <sandbox_id><PROXY_HOST_SUFFIX> (host routing), with the capability as a one-time query then a cookie.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    // Every operation needs the API key (either header) unless it says otherwise.
    security: [{ apiKey: [] }, { bearer: [] }],
    paths: {
      '/health': { get: operation({ summary: 'Liveness (no Kubernetes call)', ok: { 200: healthSchema }, errors: [], open: true }) },
      '/readyz': {
        get: operation({
          summary: 'Readiness: the view has synced and its watches are live',
          ok: { 200: readySchema },
          errors: ['not_ready'],
          open: true,
        }),
      },
      '/metrics': { get: operation({ summary: 'Prometheus metrics', ok: { 200: 'text' }, errors: [], open: true }) },
      '/openapi.json': {
        get: {
          summary: 'This document',
          security: [],
          responses: { 200: { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } } },
        },
      },
      '/': { get: { summary: 'Sends browsers to the dashboard', security: [], responses: { 302: { description: 'Location: /ui/' } } } },
      '/ui/{file}': {
        get: {
          summary: 'The dashboard (index.html, app.js, style.css); it asks for the API key itself',
          security: [],
          parameters: [
            { name: 'file', in: 'path', required: true, schema: { type: 'string', enum: ['', 'index.html', 'app.js', 'style.css'] } },
          ],
          responses: {
            200: { description: 'The file, with an ETag (304 when it matches If-None-Match)' },
            304: { description: 'Not modified' },
            ...errorResponses(['not_found']),
          },
        },
      },
      '/api/capabilities': {
        get: operation({ summary: 'Capabilities (DeerFlow’s probe)', ok: { 200: capabilitiesSchema }, errors: API }),
      },
      '/api/sandboxes': {
        get: operation({
          summary: 'List sandboxes (from the watch view)',
          parameters: listParameters,
          ok: { 200: sandboxListSchema },
          errors: [...API, 'validation_failed'],
        }),
        post: operation({
          summary: 'Create a sandbox (idempotent: 200 when it exists, 201 when made)',
          parameters: [wait],
          body: createRequestSchema,
          ok: { 200: sandboxSchema, 201: sandboxSchema },
          errors: [...API, ...BODY, ...CREATE_ERRORS],
        }),
      },
      '/api/sandboxes/{sandbox_id}': {
        get: operation({
          summary:
            'A sandbox (from the watch view). A suspended one wakes and is answered once it runs (within WAKE_WAIT_SECONDS or ?wait=), unless ?wake=false',
          parameters: [
            idParameter,
            wait,
            {
              name: 'wake',
              in: 'query',
              required: false,
              description: 'false: read a suspended sandbox without waking it (monitors, dashboards)',
              schema: { type: 'string', enum: ['true', 'false'] },
            },
          ],
          ok: { 200: sandboxSchema },
          errors: [...API, 'invalid_sandbox_id', 'sandbox_not_found', 'validation_failed'],
        }),
        delete: operation({
          summary: 'Delete a sandbox (also 200 when missing)',
          parameters: [idParameter],
          ok: { 200: deletedSchema },
          errors: [...API, 'invalid_sandbox_id', 'provisioner_forbidden', 'cluster_unavailable', 'internal_error'],
        }),
      },
      '/api/sandboxes/{sandbox_id}/presence': {
        get: operation({
          summary:
            'DeerFlow 2.1: whether a pod of this id exists (Pending, crashed and Terminating pods do; a Service alone does not), with its uid',
          parameters: [idParameter],
          ok: { 200: presenceSchema },
          errors: [...API, 'invalid_sandbox_id'],
        }),
      },
      '/api/sandboxes/{sandbox_id}/suspend': {
        post: operation({
          summary:
            'Suspend a sandbox now: its pod is removed; its Service, sandbox_url, capability, request and files are kept, and its next use wakes it (status Pending, reason Suspended)',
          parameters: [idParameter, wait],
          ok: { 200: sandboxSchema },
          errors: [...API, 'invalid_sandbox_id', 'sandbox_not_found', 'not_resumable', 'cluster_unavailable'],
        }),
      },
      '/api/sandboxes/{sandbox_id}/resume': {
        post: operation({
          summary: 'Wake a suspended sandbox: a new pod from the same request (a running sandbox is answered as it is)',
          parameters: [idParameter, wait],
          ok: { 200: sandboxSchema },
          errors: [...API, 'invalid_sandbox_id', 'sandbox_not_found', ...CREATE_ERRORS, 'not_resumable', 'active_limit_reached'],
        }),
      },
      '/api/sandboxes/{sandbox_id}/keepalive': {
        post: operation({
          summary: 'Record activity and optionally extend the sandbox’s life',
          parameters: [idParameter],
          body: keepaliveRequestSchema,
          ok: { 200: sandboxSchema },
          errors: [...API, ...BODY, 'invalid_sandbox_id', 'sandbox_not_found', 'cluster_unavailable'],
        }),
      },
      '/api/events': stream(
        'Server-Sent Events of every sandbox of the namespace, from the watch (what the dashboard at /ui/ draws)',
        'event: snapshot (data: {sandboxes: [Sandbox with last_activity_at, create_to_running_s, transitions], samples, durations, sample_every_s, nodes}), ' +
          'then event: change (data: one such sandbox), event: removed (data: {sandbox_id}) and every 30 s event: sample ' +
          '(data: {sample: {at, counts by status}, activity: {sandbox_id: last activity}, nodes}); a comment every 15 s keeps it open; ' +
          'event: end (data: {reason}) when the service ends the stream (shutting down). A client that falls more than 256 KiB behind is closed (reconnect for a snapshot).',
        [],
        API,
      ),
      '/api/sandboxes/{sandbox_id}/events': stream(
        'Server-Sent Events of the sandbox’s status transitions, ending when it is deleted',
        'event: status (data: Sandbox) on connect and on each change, then event: deleted (data: {sandbox_id}), or event: end (data: {reason}) at shutdown',
        [idParameter],
        [...API, 'invalid_sandbox_id', 'sandbox_not_found'],
      ),
      '/api/sandboxes/{sandbox_id}/logs': {
        get: {
          summary:
            'The sandbox’s container logs, from the API server’s log endpoint (kubelet’s): the last lines, then, with follow, each new one',
          parameters: [
            idParameter,
            {
              name: 'tail_lines',
              in: 'query',
              required: false,
              description: 'Lines to start with (500)',
              schema: { type: 'integer', minimum: 1, maximum: 10_000 },
            },
            {
              name: 'follow',
              in: 'query',
              required: false,
              description: 'Stream new lines until the caller leaves',
              schema: { enum: ['true', 'false'] },
            },
            { name: 'container', in: 'query', required: false, description: 'The container (sandbox)', schema: { type: 'string' } },
          ],
          responses: {
            200: { description: 'The log, as kubelet keeps it', content: { 'text/plain': { schema: { type: 'string' } } } },
            ...errorResponses([
              ...API,
              'invalid_sandbox_id',
              'validation_failed',
              'sandbox_not_found',
              'logs_unavailable',
              'cluster_unavailable',
            ]),
          },
        },
      },
      '/s/{capability}/{path}': proxied(
        'Reverse proxy to the sandbox by its capability URL, the sandbox_url of proxy mode (any method; WebSocket upgrades too)',
        [{ name: 'capability', in: 'path', required: true, description: '<sandbox_id>.<sandbox_token>', schema: { type: 'string' } }],
        [{}],
      ),
      '/sandboxes/{sandbox_id}/{path}': proxied(
        'Reverse proxy to the sandbox for API-key holders (any method; WebSocket upgrades too)',
        [idParameter],
        [{ apiKey: [] }, { bearer: [] }],
      ),
    },
    components: {
      schemas: componentSchemas(),
      securitySchemes: {
        apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'PROVISIONER_API_KEY' },
        bearer: { type: 'http', scheme: 'bearer', description: 'PROVISIONER_API_KEY as a bearer token' },
      },
    },
  };
}
