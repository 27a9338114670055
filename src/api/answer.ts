// What the API answers, as zod schemas (the OpenAPI document and the TypeScript types both come from
// them), and the rendering of a sandbox record into its answer. Rendering never writes.

import { z } from 'zod';
import type { Config } from '../config.ts';
import type { SandboxRecord } from '../domain/record.ts';
import { capabilityPath, DEFAULT_SHELL_SESSIONS, serviceOrigin, STATUSES } from '../domain/sandbox.ts';
import type { Capabilities } from '../http/capability.ts';
import { ERRORS, type ErrorCode } from '../http/errors.ts';
import { WAKE_TRIGGERS, type WakeTrigger } from '../provisioner/writer.ts';

export const sandboxSchema = z
  .object({
    sandbox_id: z.string(),
    sandbox_url: z.string(),
    /** Proxy and host modes: the sandbox's capability (in proxy mode it is part of sandbox_url already). */
    sandbox_token: z.string().optional(),
    status: z.enum(STATUSES),
    max_shell_sessions: z
      .number()
      .int()
      .describe(
        'DeerFlow 2.1: the shell sessions the sandbox runs, read from its pod (MAX_SHELL_SESSIONS; 10 when unset, 0 when unreadable)',
      ),
    container_id: z.string().nullable().describe('DeerFlow 2.1: the pod’s uid, a new one for each pod of this id'),
    lark_cli_broker: z
      .boolean()
      .nullable()
      .describe('DeerFlow 2.1: the pod runs the Lark broker (true), no Lark broker (false), or a contradictory mix (null)'),
    thread_id: z.string().nullable(),
    user_id: z.string().nullable(),
    created_at: z.string().nullable(),
    expires_at: z.string().optional(),
    /** Only with MOUNT_CONTRACT_VERSION set (docs/api.md): no client of today's DeerFlow reads it. */
    mount_contract_version: z.number().int().optional(),
    reason: z.string().optional(),
    message: z.string().optional(),
    suspended_at: z
      .string()
      .optional()
      .describe(
        'When the sandbox was suspended (no pod; URL, capability and files kept): status Pending, reason Suspended until its next use wakes it',
      ),
    woken_by: z.enum(WAKE_TRIGGERS).optional().describe('What woke the sandbox’s current pod from a suspension'),
    timings: z
      .object({
        scheduled_s: z.number().optional(),
        image_ready_s: z.number().optional(),
        started_s: z.number().optional(),
        ready_s: z.number().optional(),
        app_answered_s: z.number().optional(),
        route_served_s: z.number().optional(),
      })
      .describe(
        'Seconds from the sandbox’s creation to its pod being scheduled, its image ready (kubelet’s Pulled event), its container started and its pod Ready, as far as they happened (the API server’s clock, whole seconds); and to its app answering on the pod’s address before Ready (then it is Running already) and, in gateway mode, the gateway serving its route (Running waits for it), as this service saw them',
      ),
  })
  .meta({ id: 'Sandbox' });
export type SandboxAnswer = z.infer<typeof sandboxSchema>;

export const sandboxListSchema = z.object({ sandboxes: z.array(sandboxSchema), count: z.number().int() }).meta({ id: 'SandboxList' });
export const presenceSchema = z
  .object({
    sandbox_id: z.string(),
    exists: z.boolean(),
    container_id: z.string().nullable().describe('The pod’s uid; null when no pod exists'),
  })
  .meta({ id: 'Presence' });
export const deletedSchema = z.object({ ok: z.literal(true), sandbox_id: z.string() }).meta({ id: 'Deleted' });
const issueSchema = z.object({ loc: z.array(z.string()), msg: z.string(), type: z.string() });
export const errorSchema = z
  .object({
    detail: z
      .union([z.string(), z.array(issueSchema)])
      .describe('What went wrong; for validation_failed, as FastAPI answers, the list of problems ({loc, msg, type})'),
    code: z.enum(Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]]),
    message: z.string().optional().describe('validation_failed: the problems in one sentence'),
  })
  .loose()
  .meta({ id: 'Error' });
export const healthSchema = z.object({ status: z.literal('ok'), version: z.string() }).meta({ id: 'Health' });
const checkSchema = z.object({ name: z.string(), ok: z.boolean(), detail: z.string().optional() });
export const readySchema = z
  .object({
    status: z.enum(['ok', 'unavailable']),
    synced: z.boolean(),
    healthy: z.boolean(),
    stale: z.boolean(),
    sandboxes: z.number().int(),
    checks: z.array(checkSchema),
    detail: z.string().optional(),
    code: z.string().optional(),
  })
  .meta({ id: 'Readiness' });
export const capabilitiesSchema = z
  .object({
    mount_contract_version: z.number().int().optional(),
    lark_cli_init_image: z.boolean(),
    lark_cli_broker_image: z.boolean(),
    storage_mode: z.enum(['hostPath', 'pvc', 'mixed']),
    skills_layout: z.enum(['current', 'seed']),
    service_type: z.enum(['NodePort', 'ClusterIP']),
    contracts: z
      .array(z.string())
      .describe('The DeerFlow provisioner contracts this service speaks: `deerflow-seed` (f1f4af99) and `deerflow-2.1`'),
  })
  .meta({ id: 'Capabilities' });

/** The startup milestones of a sandbox, in seconds from its creation. */
export function timings(record: SandboxRecord): SandboxAnswer['timings'] {
  const since = (at: number | undefined) =>
    at === undefined || !Number.isFinite(record.createdAt) ? undefined : Math.max(0, (at - record.createdAt) / 1000);
  const out: SandboxAnswer['timings'] = {};
  const scheduled = since(record.scheduledAt);
  const image = since(record.imageReadyAt);
  const started = since(record.startedAt);
  const ready = since(record.readyAt);
  if (scheduled !== undefined) out.scheduled_s = scheduled;
  if (image !== undefined) out.image_ready_s = image;
  if (started !== undefined) out.started_s = started;
  if (ready !== undefined) out.ready_s = ready;
  const answered = since(record.answeredAt);
  const served = since(record.servedAt);
  if (answered !== undefined) out.app_answered_s = answered;
  if (served !== undefined) out.route_served_s = served;
  return out;
}

const isTrigger = (v: string | undefined): v is WakeTrigger => (WAKE_TRIGGERS as readonly (string | undefined)[]).includes(v);

/** The reason of a sandbox with no address in this URL mode (made under another one). */
export const NO_ADDRESS_REASON = 'NoAddressInThisMode';
const NO_ADDRESS_MESSAGE =
  'made under another URL mode: its Service has no node port yet; the reconciler gives it one (RECONCILE_INTERVAL_SECONDS)';

/** Renders records as answers; the serialized text of a record is cached (records are immutable). */
export class Answers {
  #config: Config;
  #expiresAt: (record: SandboxRecord) => number | undefined;
  /** Per record (records are immutable), with the expiry it was rendered with (a keepalive may move it in memory). */
  #texts = new WeakMap<SandboxRecord, { text: string; length: number; expiresAt: number | undefined }>();
  /** In proxy and host modes without PUBLIC_URL the URL depends on the caller's address, so nothing is cached. */
  readonly perCaller: boolean;

  #capabilities: Capabilities | undefined;

  constructor(config: Config, expiresAt: (record: SandboxRecord) => number | undefined = (r) => r.expiresAt, capabilities?: Capabilities) {
    this.#config = config;
    this.#expiresAt = expiresAt;
    this.#capabilities = capabilities;
    this.perCaller = (config.sandboxUrl.mode === 'proxy' || config.sandboxUrl.mode === 'host') && config.sandboxUrl.publicUrl === undefined;
  }

  /** The capability of a sandbox (proxy and host modes). */
  #token(record: SandboxRecord): string | undefined {
    return this.#config.sandboxUrl.mode === 'nodeport' ? undefined : this.#capabilities?.sign(record.sandboxId, record.serviceUid ?? '');
  }

  /**
   * The sandbox's URL for the caller: the NodePort address (reference behaviour), the service's DNS name
   * (ClusterIP), in proxy mode `<PUBLIC_URL>/s/<id>.<capability>`, in host mode the sandbox's own
   * origin `<scheme>://<id><PROXY_HOST_SUFFIX>[:port]`. With PUBLIC_URL unset, scheme, host and port
   * come from the address the caller itself used to reach this provisioner (`requestBase`).
   */
  url(record: SandboxRecord, requestBase?: string): string {
    const c = this.#config;
    const base = c.sandboxUrl.publicUrl ?? requestBase;
    const token = this.#token(record);
    if (c.sandboxUrl.mode === 'proxy' && base && token) return `${base}${capabilityPath(record.sandboxId, token)}`;
    if (c.gateway && token) return `${c.gateway.publicUrl}${capabilityPath(record.sandboxId, token)}`;
    if (c.sandboxUrl.mode === 'host' && base && c.proxy.hostSuffix) {
      const u = new URL(base);
      return `${u.protocol}//${record.sandboxId}${c.proxy.hostSuffix}${u.port ? `:${u.port}` : ''}`;
    }
    if (record.nodePort !== undefined && c.sandbox.serviceType === 'NodePort') return `http://${c.nodeHost}:${record.nodePort}`;
    if (c.sandbox.serviceType === 'ClusterIP' && record.hasService) return serviceOrigin(record.sandboxId, c.namespace, c.sandbox.port);
    return '';
  }

  answer(record: SandboxRecord, requestBase?: string): SandboxAnswer {
    const c = this.#config;
    const created = Number.isFinite(record.createdAt);
    const token = this.#token(record);
    const expiresAt = this.#expiresAt(record) ?? (c.lifecycle.ttlMs > 0 && created ? record.createdAt + c.lifecycle.ttlMs : undefined);
    const url = this.url(record, requestBase);
    // A sandbox made under another URL mode (a ClusterIP Service in nodeport mode) has no address
    // until the reconciler gives its Service a node port: say so rather than answer a bare "".
    const unaddressed = url === '' && record.hasPod && record.hasService && !record.reason;
    return {
      sandbox_id: record.sandboxId,
      sandbox_url: url,
      ...(token ? { sandbox_token: token } : {}),
      status: record.status,
      max_shell_sessions: record.shellCapacity ?? DEFAULT_SHELL_SESSIONS,
      container_id: record.podUid || null,
      lark_cli_broker: record.larkBroker ?? null,
      thread_id: record.threadId ?? null,
      user_id: record.userId ?? null,
      created_at: created ? new Date(record.createdAt).toISOString() : null,
      ...(expiresAt !== undefined ? { expires_at: new Date(expiresAt).toISOString() } : {}),
      ...(c.mountContractVersion !== undefined ? { mount_contract_version: c.mountContractVersion } : {}),
      ...(record.reason ? { reason: record.reason } : {}),
      ...(record.message ? { message: record.message } : {}),
      ...(unaddressed ? { reason: NO_ADDRESS_REASON, message: NO_ADDRESS_MESSAGE } : {}),
      ...(record.suspension && record.suspendedAt !== undefined && Number.isFinite(record.suspendedAt)
        ? { suspended_at: new Date(record.suspendedAt).toISOString() }
        : {}),
      ...(isTrigger(record.wokenBy) ? { woken_by: record.wokenBy } : {}),
      timings: timings(record),
    };
  }

  /** The answer serialized. */
  text(record: SandboxRecord, requestBase?: string): string {
    return this.#cached(record, requestBase).text;
  }

  /**
   * The answer serialized, with its length in bytes (what a status answer sends: a string goes out in
   * one write with the response head, where a Buffer would take a writev of two).
   */
  serialized(record: SandboxRecord, requestBase?: string): { text: string; length: number } {
    return this.#cached(record, requestBase);
  }

  #cached(record: SandboxRecord, requestBase?: string): { text: string; length: number; expiresAt: number | undefined } {
    const expiresAt = this.#expiresAt(record);
    if (this.perCaller) {
      const text = JSON.stringify(this.answer(record, requestBase));
      return { text, length: Buffer.byteLength(text), expiresAt };
    }
    const cached = this.#texts.get(record);
    if (cached !== undefined && cached.expiresAt === expiresAt) return cached;
    const text = JSON.stringify(this.answer(record));
    const entry = { text, length: Buffer.byteLength(text), expiresAt };
    this.#texts.set(record, entry);
    return entry;
  }
}
