// The OpenAPI 3.1 document, generated from the zod schemas: the request schemas are the ones that
// validate requests, so the document cannot drift from the code.

import { z } from 'zod';
import { ERRORS, type ErrorCode } from '../http/errors.ts';
import { capabilitiesSchema, deletedSchema, errorSchema, healthSchema, readySchema, sandboxListSchema, sandboxSchema } from './answer.ts';
import { createRequestSchema, keepaliveRequestSchema, sandboxIdSchema } from './request.ts';

/** The path parameter `sandbox_id`, described by the same schema that validates it in bodies. */
const idParameter = { name: 'sandbox_id', in: 'path', required: true, schema: z.toJSONSchema(sandboxIdSchema) };

type Op = {
  summary: string;
  withId?: boolean;
  query?: Record<string, string>;
  body?: z.ZodType;
  ok: Record<number, z.ZodType | 'text'>;
  errors: ErrorCode[];
};

const ref = (schema: z.ZodType): { $ref: string } => ({ $ref: `#/components/schemas/${(schema.meta() as { id: string }).id}` });

function operation(op: Op): Record<string, unknown> {
  const responses: Record<string, unknown> = {};
  for (const [status, schema] of Object.entries(op.ok)) {
    responses[status] =
      schema === 'text'
        ? { description: 'OK', content: { 'text/plain': { schema: { type: 'string' } } } }
        : { description: 'OK', content: { 'application/json': { schema: ref(schema) } } };
  }
  for (const code of op.errors)
    responses[String(ERRORS[code].status)] ??= {
      description: ERRORS[code].doc,
      content: { 'application/json': { schema: ref(errorSchema) } },
    };
  return {
    summary: op.summary,
    parameters: [
      ...(op.withId ? [idParameter] : []),
      ...Object.entries(op.query ?? {}).map(([name, description]) => ({
        name,
        in: 'query',
        required: false,
        description,
        schema: { type: 'string' },
      })),
    ],
    ...(op.body
      ? { requestBody: { required: op.body !== keepaliveRequestSchema, content: { 'application/json': { schema: ref(op.body) } } } }
      : {}),
    responses,
  };
}

/** A proxied path: any method, the sandbox's own answers, and the proxy's errors. */
function proxied(summary: string, parameters: unknown[]): Record<string, unknown> {
  return {
    summary,
    parameters: [...parameters, { name: 'path', in: 'path', required: true, schema: { type: 'string' } }],
    responses: {
      200: { description: 'The sandbox’s answer' },
      404: { description: `${ERRORS.sandbox_not_found.doc} Also without a valid capability or API key, so ids cannot be probed.` },
      408: { description: ERRORS.request_timeout.doc },
      502: { description: ERRORS.upstream_unreachable.doc },
      503: { description: ERRORS.sandbox_not_ready.doc },
      504: { description: ERRORS.upstream_timeout.doc },
    },
  };
}

function componentSchemas(): Record<string, unknown> {
  const schemas: Record<string, unknown> = {};
  for (const s of [
    createRequestSchema,
    keepaliveRequestSchema,
    sandboxSchema,
    sandboxListSchema,
    deletedSchema,
    errorSchema,
    healthSchema,
    readySchema,
    capabilitiesSchema,
  ]) {
    schemas[(s.meta() as { id: string }).id] = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' });
  }
  return schemas;
}

export function openApiDocument(): Record<string, unknown> {
  const api: ErrorCode[] = ['unauthorized', 'cluster_unavailable'];
  const schemas = componentSchemas();
  return {
    openapi: '3.1.0',
    info: {
      title: 'Sandbox provisioner',
      version: '0.1.0',
      description: 'Creates one Pod and one Service per sandbox on Kubernetes; compatible with DeerFlow’s provisioner API.',
    },
    paths: {
      '/health': { get: operation({ summary: 'Liveness (no Kubernetes call)', ok: { 200: healthSchema }, errors: [] }) },
      '/readyz': {
        get: operation({
          summary: 'Readiness: the view has synced and its watches are live',
          ok: { 200: readySchema },
          errors: ['not_ready'],
        }),
      },
      '/metrics': { get: operation({ summary: 'Prometheus metrics', ok: { 200: 'text' }, errors: [] }) },
      '/api/capabilities': { get: operation({ summary: 'Capabilities (DeerFlow’s probe)', ok: { 200: capabilitiesSchema }, errors: api }) },
      '/api/sandboxes': {
        get: operation({
          summary: 'List sandboxes (from the watch view)',
          query: { thread_id: 'only this thread', status: 'only this status' },
          ok: { 200: sandboxListSchema },
          errors: [...api, 'validation_failed'],
        }),
        post: operation({
          summary: 'Create a sandbox (idempotent)',
          query: { wait: 'seconds to wait for Running' },
          body: createRequestSchema,
          ok: { 200: sandboxSchema, 201: sandboxSchema },
          errors: [
            ...api,
            'invalid_json',
            'invalid_request',
            'unsupported_feature',
            'payload_too_large',
            'unsupported_media_type',
            'validation_failed',
            'invalid_object',
            'pod_security_violation',
            'limit_range_violation',
            'admission_denied',
            'conflict',
            'quota_exceeded',
            'limit_reached',
            'too_many_requests',
            'provisioner_forbidden',
            'create_timeout',
          ],
        }),
      },
      '/api/sandboxes/{sandbox_id}': {
        get: operation({
          summary: 'A sandbox (from the watch view)',
          withId: true,
          query: { wait: 'seconds to wait for Running' },
          ok: { 200: sandboxSchema },
          errors: [...api, 'invalid_sandbox_id', 'sandbox_not_found'],
        }),
        delete: operation({
          summary: 'Delete a sandbox (also 200 when missing)',
          withId: true,
          ok: { 200: deletedSchema },
          errors: [...api, 'invalid_sandbox_id', 'provisioner_forbidden'],
        }),
      },
      '/api/sandboxes/{sandbox_id}/keepalive': {
        post: operation({
          summary: 'Record activity and optionally extend the sandbox’s life',
          withId: true,
          body: keepaliveRequestSchema,
          ok: { 200: sandboxSchema },
          errors: [...api, 'invalid_sandbox_id', 'sandbox_not_found', 'validation_failed'],
        }),
      },
      '/api/events': {
        get: {
          summary: 'Server-Sent Events of every sandbox of the namespace, from the watch (what the dashboard at /ui/ draws)',
          responses: {
            200: {
              description:
                'event: snapshot (data: {sandboxes: [Sandbox with last_activity_at, create_to_running_s, transitions], samples, durations, sample_every_s}), ' +
                'then event: change (data: one such sandbox), event: removed (data: {sandbox_id}) and every 30 s event: sample ' +
                '(data: {sample: {at, counts by status}, activity: {sandbox_id: last activity}}); a comment every 15 s keeps it open',
              content: { 'text/event-stream': { schema: { type: 'string' } } },
            },
            401: { description: ERRORS.unauthorized.doc, content: { 'application/json': { schema: ref(errorSchema) } } },
          },
        },
      },
      '/api/sandboxes/{sandbox_id}/events': {
        get: {
          summary: 'Server-Sent Events of the sandbox’s status transitions, ending when it is deleted',
          parameters: [idParameter],
          responses: {
            200: {
              description: 'event: status (data: Sandbox), then event: deleted',
              content: { 'text/event-stream': { schema: { type: 'string' } } },
            },
            404: { description: ERRORS.sandbox_not_found.doc, content: { 'application/json': { schema: ref(errorSchema) } } },
          },
        },
      },
      '/s/{capability}/{path}': {
        get: proxied(
          'Reverse proxy to the sandbox by its capability URL, the sandbox_url of proxy mode (any method; WebSocket upgrades too)',
          [{ name: 'capability', in: 'path', required: true, description: '<sandbox_id>.<sandbox_token>', schema: { type: 'string' } }],
        ),
      },
      '/sandboxes/{sandbox_id}/{path}': {
        get: proxied('Reverse proxy to the sandbox for API-key holders (any method; WebSocket upgrades too)', [idParameter]),
      },
    },
    components: {
      schemas,
      securitySchemes: { apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' }, bearer: { type: 'http', scheme: 'bearer' } },
    },
  };
}
