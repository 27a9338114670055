// Environment -> typed, validated configuration. Parsed once in main (never at import time), so tests
// pass their own env. Names from the reference provisioner are kept. Each setting is declared once: the
// schema validates the environment and its transform shapes it; `Config` is the schema's output type.

import { isIP } from 'node:net';
import { delimiter, isAbsolute } from 'node:path';
import { z } from 'zod';
import { DEFAULT_EXTRA_MOUNT_PATHS } from './domain/sandbox.ts';

const DEFAULT_IMAGE = 'enterprise-public-cn-beijing.cr.volces.com/vefaas-public/all-in-one-sandbox:latest';

function isAddressOrCidr(entry: string): boolean {
  const [ip = '', bits, ...rest] = entry.split('/');
  const family = isIP(ip);
  if (family === 0 || rest.length) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
}

/** A sandbox's securityContext by profile; each SANDBOX_* security variable overrides its part. */
const PROFILES = {
  // Exactly what DeerFlow's provisioner sets, which the AIO image (supervisord, sudo, Chromium) needs.
  reference: {
    allowPrivilegeEscalation: true,
    dropCapabilities: [] as string[],
    seccompProfile: 'none' as const,
    helperDropCapabilities: [] as string[],
  },
  // For images built to run without setuid: no escalation, no capabilities, the runtime's seccomp filter.
  hardened: {
    allowPrivilegeEscalation: false,
    dropCapabilities: ['ALL'],
    seccompProfile: 'RuntimeDefault' as const,
    helperDropCapabilities: ['ALL'],
  },
};

/**
 * When kubelet probes a sandbox. `startup` follows the app: a startup probe every second (for up to
 * SANDBOX_STARTUP_MAX_SECONDS, as a first image pull and a slow start may take minutes) holds the
 * others, and readiness is probed the moment it passes, so a sandbox is Ready half a second after its
 * app answers on average. `reference`: DeerFlow's provisioner's probes, readiness after 5 s then every
 * 5 s (Ready 5 to 10 s after the container starts, whatever the app does).
 */
const PROBE_PROFILES = {
  startup: { readiness: { initialDelaySeconds: 0, periodSeconds: 5 }, liveness: { initialDelaySeconds: 0, periodSeconds: 10 } },
  reference: { readiness: { initialDelaySeconds: 5, periodSeconds: 5 }, liveness: { initialDelaySeconds: 10, periodSeconds: 10 } },
};

const QUANTITY = /^([0-9]+(\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;
const SUFFIX: Record<string, number> = {
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A Kubernetes quantity (already checked against QUANTITY) in bytes. */
export function quantityBytes(q: string): number {
  const m = QUANTITY.exec(q);
  return m ? Number(m[1]) * (m[3] ? (SUFFIX[m[3]] ?? 1) : 1) : NaN;
}
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

const absolutePath = (what: string) =>
  z.string().refine((p) => isAbsolute(p) && !p.startsWith('~'), {
    message: `${what} must be an absolute path (not relative like ../skills, not ~/skills)`,
  });
const quantity = z.string().regex(QUANTITY, 'must be a Kubernetes quantity such as 500m, 256Mi or 1Gi');
const anySeconds = z.coerce
  .number()
  .int()
  .min(0)
  .max(86_400 * 365);
const seconds = (def: number) => anySeconds.default(def);
const positiveInt = (def: number, max: number) => z.coerce.number().int().min(1).max(max).default(def);
/** A count where 0 means none or no limit. */
const count = (def: number) => z.coerce.number().int().min(0).max(1_000_000).default(def);
const bool = (def: boolean) => z.stringbool().default(def);
const optional = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === '' ? undefined : v), schema.optional());
const splitList = (s: string): string[] =>
  s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
const list = (def: string[]) => z.string().default(def.join(',')).transform(splitList);
/** Comma-separated, or unset (undefined): an empty value is an empty list, not "unset". */
const optionalList = z
  .string()
  .optional()
  .transform((s) => (s === undefined ? undefined : splitList(s)));
/** A relative path template with {user_id} and {thread_id}; `needsThread` when each thread needs its own. */
const relativeTemplate = (needsThread: boolean) =>
  z.string().refine((t) => !t.startsWith('/') && !t.split('/').includes('..') && (!needsThread || t.includes('{thread_id}')), {
    message: `must be a relative path without ..${needsThread ? ' that contains {thread_id}' : ''} (it may contain {user_id} and {thread_id})`,
  });
const hostname = z
  .string()
  .regex(
    /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/,
    'must be a host name or IP address, without scheme or port',
  );
const httpUrl = (what: string) =>
  z.string().refine(
    (s) => {
      try {
        const u = new URL(s);
        return (u.protocol === 'http:' || u.protocol === 'https:') && u.host !== '';
      } catch {
        return false;
      }
    },
    { message: `${what} must be an http(s) URL such as https://host.docker.internal:6443` },
  );

/** Every setting, as the environment gives it (the Helm chart's values schema is generated from this). */
export const envFields = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8002),
  HOST: z.string().default('0.0.0.0'),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),

  K8S_NAMESPACE: z.string().regex(DNS_LABEL, 'must be a DNS-1123 label').default('deer-flow'),
  KUBECONFIG_PATH: optional(z.string()),
  K8S_API_SERVER: optional(httpUrl('K8S_API_SERVER')),
  K8S_API_SERVER_INSECURE: bool(false),
  K8S_REQUEST_TIMEOUT_SECONDS: positiveInt(30, 600),
  K8S_PROBE_SECONDS: positiveInt(5, 600),
  CREATE_NAMESPACE: bool(true),

  SANDBOX_IMAGE: z.string().min(1).default(DEFAULT_IMAGE),
  SANDBOX_IMAGE_PULL_POLICY: z.enum(['Always', 'IfNotPresent', 'Never']).default('IfNotPresent'),
  SANDBOX_CONTAINER_PORT: z.coerce.number().int().min(1).max(65535).default(8080),
  SANDBOX_CPU_REQUEST: quantity.default('100m'),
  SANDBOX_MEMORY_REQUEST: quantity.default('256Mi'),
  SANDBOX_EPHEMERAL_STORAGE_REQUEST: quantity.default('500Mi'),
  SANDBOX_CPU_LIMIT: quantity.default('1000m'),
  SANDBOX_MEMORY_LIMIT: quantity.default('1Gi'),
  SANDBOX_EPHEMERAL_STORAGE_LIMIT: quantity.default('500Mi'),
  SANDBOX_PROBE_PATH: z.string().startsWith('/').default('/v1/sandbox'),
  SANDBOX_PROBE_PROFILE: z.enum(['startup', 'reference']).default('startup'),
  // Unset: the profile's value (PROBE_PROFILES).
  SANDBOX_READINESS_INITIAL_DELAY_SECONDS: optional(anySeconds),
  SANDBOX_READINESS_PERIOD_SECONDS: optional(z.coerce.number().int().min(1).max(3600)),
  SANDBOX_LIVENESS_INITIAL_DELAY_SECONDS: optional(anySeconds),
  SANDBOX_LIVENESS_PERIOD_SECONDS: optional(z.coerce.number().int().min(1).max(3600)),
  SANDBOX_STARTUP_PERIOD_SECONDS: positiveInt(1, 3600),
  SANDBOX_STARTUP_MAX_SECONDS: positiveInt(300, 86_400),
  SANDBOX_PROBE_TIMEOUT_SECONDS: positiveInt(3, 3600),
  SANDBOX_PROBE_FAILURE_THRESHOLD: positiveInt(3, 100),
  SANDBOX_SERVICE_TYPE: z.enum(['NodePort', 'ClusterIP']).default('NodePort'),
  SANDBOX_SECURITY_PROFILE: z.enum(['reference', 'hardened']).default('reference'),
  // Unset: the profile's value. Set (even empty, for the capability lists): overrides the profile.
  SANDBOX_ALLOW_PRIVILEGE_ESCALATION: optional(z.stringbool()),
  SANDBOX_DROP_CAPABILITIES: optionalList,
  SANDBOX_ADD_CAPABILITIES: optionalList,
  SANDBOX_SECCOMP_PROFILE: optional(z.enum(['RuntimeDefault', 'Unconfined', 'none'])),
  SANDBOX_RUN_AS_NON_ROOT: bool(false),
  SANDBOX_SHM_SIZE: optional(quantity),
  SANDBOX_RUNTIME_CLASS: optional(z.string().regex(DNS_SUBDOMAIN, 'must be a RuntimeClass name')),
  SANDBOX_NODE_SELECTOR: z
    .string()
    .default('')
    .transform((s, ctx) => {
      const out: Record<string, string> = {};
      for (const pair of splitList(s)) {
        const [k, v, ...rest] = pair.split('=');
        if (!k || v === undefined || rest.length) ctx.addIssue({ code: 'custom', message: `"${pair}" is not key=value` });
        else out[k] = v;
      }
      return out;
    }),
  SANDBOX_TOLERATIONS: z
    .string()
    .default('[]')
    .transform((s, ctx) => {
      try {
        const v = JSON.parse(s) as unknown;
        if (Array.isArray(v) && v.every((t) => typeof t === 'object' && t !== null)) return v as Record<string, unknown>[];
      } catch {
        // reported below
      }
      ctx.addIssue({
        code: 'custom',
        message: 'must be a JSON array of tolerations, e.g. [{"key":"sandbox","operator":"Exists","effect":"NoSchedule"}]',
      });
      return [];
    }),
  SANDBOX_TTL_SECONDS: seconds(0),
  SANDBOX_IDLE_SECONDS: seconds(0),
  SANDBOX_SWEEP_SECONDS: positiveInt(60, 86_400),
  ACTIVITY_WRITE_INTERVAL_SECONDS: seconds(60),
  MAX_SANDBOXES: count(0),
  MAX_SANDBOXES_PER_THREAD: count(0),
  SANDBOX_SUSPEND_AFTER_SECONDS: seconds(0),
  WAKE_WAIT_SECONDS: positiveInt(8, 600),
  MAX_CONCURRENT_WAKES: positiveInt(16, 1000),
  MAX_ACTIVE_SANDBOXES: count(0),
  MAX_ACTIVE_SANDBOXES_PER_USER: count(0),
  // user=limit,user=limit: per-user limits that replace MAX_ACTIVE_SANDBOXES_PER_USER for those users.
  MAX_ACTIVE_SANDBOXES_USER_OVERRIDES: list([]).transform((items, ctx) => {
    const out = new Map<string, number>();
    for (const item of items) {
      const m = /^([A-Za-z0-9_-]{1,128})=(\d{1,7})$/.exec(item);
      if (!m) {
        ctx.addIssue({ code: 'custom', message: `must be user=limit pairs, e.g. alice=10,bob=2 (got ${JSON.stringify(item)})` });
        continue;
      }
      out.set(m[1] ?? '', Number(m[2]));
    }
    return out;
  }),
  MAX_CONCURRENT_CREATES: positiveInt(16, 1000),
  CREATE_QUEUE_SIZE: count(64),
  CREATE_QUEUE_TIMEOUT_SECONDS: positiveInt(10, 600),
  SHUTDOWN_DELAY_SECONDS: seconds(0),
  SHUTDOWN_GRACE_SECONDS: seconds(25),
  RECONCILE_INTERVAL_SECONDS: positiveInt(300, 86_400),
  RECONCILE_GRACE_SECONDS: seconds(60),

  STORAGE_MODE: z.enum(['hostPath', 'pvc']).optional(),
  DEER_FLOW_HOST_BASE_DIR: optional(absolutePath('DEER_FLOW_HOST_BASE_DIR')),
  SKILLS_HOST_PATH: optional(absolutePath('SKILLS_HOST_PATH')),
  THREADS_HOST_PATH: absolutePath('THREADS_HOST_PATH').default('/.deer-flow/threads'),
  SKILLS_PVC_NAME: optional(z.string().regex(DNS_SUBDOMAIN, 'must be a PersistentVolumeClaim name')),
  USERDATA_PVC_NAME: optional(z.string().regex(DNS_SUBDOMAIN, 'must be a PersistentVolumeClaim name')),
  SKILLS_PVC_SUBPATH_TEMPLATE: optional(relativeTemplate(false)),
  USERDATA_PATH_TEMPLATE: optional(relativeTemplate(true)),
  MOUNT_CONTRACT_VERSION: optional(z.coerce.number().int().min(0).max(2)),

  EXTRA_MOUNTS_BASE_DIR: optional(absolutePath('EXTRA_MOUNTS_BASE_DIR')),
  EXTRA_MOUNTS_ALLOWED_PATHS: list(DEFAULT_EXTRA_MOUNT_PATHS),
  LARK_CLI_INIT_IMAGE: z.string().default(''),
  LARK_CLI_BROKER_IMAGE: z.string().default(''),
  DEERFLOW_LARK_BROKER_DENY_SUBCOMMANDS: z.string().default(''),

  NODE_HOST: hostname.default('host.docker.internal'),
  PROVISIONER_API_KEY: z.string().default(''),
  PROVISIONER_ALLOW_ANONYMOUS: bool(false),
  TRUSTED_PROXIES: list([]).refine(
    (l) => l.every(isAddressOrCidr),
    'must be comma-separated IP addresses or CIDRs, e.g. 10.0.0.0/8,127.0.0.1',
  ),
  MAX_BODY_BYTES: positiveInt(64 * 1024, 16 * 1024 * 1024),
  REQUEST_BODY_TIMEOUT_SECONDS: positiveInt(15, 600),
  MAX_CONNECTIONS: positiveInt(4096, 1_000_000),
  CREATE_TIMEOUT_SECONDS: positiveInt(30, 600),
  MAX_WAIT_SECONDS: positiveInt(300, 3600),

  PROXY_ENABLED: bool(true),
  PROXY_UPSTREAM: z.enum(['nodeport', 'service', 'pod']).default('nodeport'),
  PROXY_UPSTREAM_HOST: optional(hostname),
  PROXY_CONNECT_TIMEOUT_SECONDS: positiveInt(5, 600),
  PROXY_READ_TIMEOUT_SECONDS: positiveInt(900, 86_400),
  PROXY_IDLE_TIMEOUT_SECONDS: positiveInt(900, 86_400),
  PROXY_WAIT_READY_SECONDS: seconds(4),
  PROXY_EARLY_READY: bool(true),
  PROXY_MAX_WAIT_READY_SECONDS: positiveInt(120, 3600),
  PROXY_CONNECTIONS_PER_SANDBOX: positiveInt(64, 10_000),
  PROXY_SIGNING_KEYS: list([]).refine(
    (keys) => keys.every((k) => k.length >= 32),
    'each key must have at least 32 characters (e.g. openssl rand -hex 32)',
  ),
  PROXY_HOST_SUFFIX: optional(
    z.string().regex(/^(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$/, 'must be a DNS suffix with a leading dot, such as .sandboxes.example.com'),
  ),
  SANDBOX_URL_MODE: z.enum(['nodeport', 'proxy', 'host', 'gateway']).default('nodeport'),
  PUBLIC_URL: optional(httpUrl('PUBLIC_URL')),
  // namespace/name[/sectionName] of each Gateway; a lone name is a Gateway in K8S_NAMESPACE.
  GATEWAY_PARENT_REFS: z
    .string()
    .default('')
    .transform((s, ctx) =>
      splitList(s).flatMap((ref) => {
        const parts = ref.split('/');
        const [namespace, name = '', sectionName] = parts.length === 1 ? [undefined, parts[0]] : parts;
        const valid =
          parts.length <= 3 &&
          (namespace === undefined || DNS_LABEL.test(namespace)) &&
          DNS_SUBDOMAIN.test(name) &&
          (sectionName === undefined || DNS_SUBDOMAIN.test(sectionName));
        if (!valid) {
          ctx.addIssue({ code: 'custom', message: `"${ref}" is not name, namespace/name or namespace/name/sectionName of a Gateway` });
          return [];
        }
        return [{ namespace, name, ...(sectionName !== undefined ? { sectionName } : {}) }];
      }),
    ),
  GATEWAY_PUBLIC_URL: optional(httpUrl('GATEWAY_PUBLIC_URL')),
  GATEWAY_ROUTE_CHECK_SECONDS: seconds(10),
  // namespace/name:port of this service's own Service: a suspended sandbox's route points there, so its next request wakes it.
  GATEWAY_WAKE_BACKEND: optional(
    z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9]*[a-z0-9])?:\d{1,5}$/, 'must be namespace/name:port of a Service')
      .transform((v) => {
        const [ns = '', rest = ''] = v.split('/');
        const [name = '', port = ''] = rest.split(':');
        return { namespace: ns, name, port: Number(port) };
      }),
  ),
});

const schema = envFields
  .superRefine((c, ctx) => {
    const claims = [c.SKILLS_PVC_NAME, c.USERDATA_PVC_NAME].filter((v) => v !== undefined).length;
    if (c.STORAGE_MODE === 'pvc' && claims < 2) {
      ctx.addIssue({ code: 'custom', path: ['STORAGE_MODE'], message: 'pvc mode needs both SKILLS_PVC_NAME and USERDATA_PVC_NAME' });
    }
    if (c.STORAGE_MODE === 'hostPath' && claims > 0) {
      ctx.addIssue({ code: 'custom', path: ['STORAGE_MODE'], message: 'hostPath mode takes no SKILLS_PVC_NAME or USERDATA_PVC_NAME' });
    }
    for (const p of c.EXTRA_MOUNTS_ALLOWED_PATHS) {
      if (!p.startsWith('/'))
        ctx.addIssue({ code: 'custom', path: ['EXTRA_MOUNTS_ALLOWED_PATHS'], message: `${p} must be an absolute container path` });
    }
    if (c.SANDBOX_URL_MODE === 'gateway' && (c.GATEWAY_PARENT_REFS.length === 0 || c.GATEWAY_PUBLIC_URL === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['SANDBOX_URL_MODE'],
        message:
          'gateway mode needs GATEWAY_PARENT_REFS (namespace/name[/sectionName] of the Gateway) and GATEWAY_PUBLIC_URL (the address clients use)',
      });
    }
    if (c.SANDBOX_URL_MODE !== 'nodeport' && c.SANDBOX_URL_MODE !== 'gateway' && !c.PROXY_ENABLED) {
      ctx.addIssue({ code: 'custom', path: ['SANDBOX_URL_MODE'], message: `${c.SANDBOX_URL_MODE} mode needs PROXY_ENABLED=true` });
    }
    if (c.SANDBOX_URL_MODE === 'host' && c.PROXY_HOST_SUFFIX === undefined) {
      ctx.addIssue({ code: 'custom', path: ['SANDBOX_URL_MODE'], message: 'host mode needs PROXY_HOST_SUFFIX' });
    }
    // /dev/shm is a memory-backed emptyDir: what is written there counts against the container's memory
    // limit, so a shm as large as the limit leaves nothing for the sandbox's processes.
    const shm = c.SANDBOX_SHM_SIZE === undefined ? 0 : quantityBytes(c.SANDBOX_SHM_SIZE);
    if (shm > 0 && shm >= quantityBytes(c.SANDBOX_MEMORY_LIMIT)) {
      ctx.addIssue({
        code: 'custom',
        path: ['SANDBOX_SHM_SIZE'],
        message: `SANDBOX_SHM_SIZE=${c.SANDBOX_SHM_SIZE} is not below SANDBOX_MEMORY_LIMIT=${c.SANDBOX_MEMORY_LIMIT}: shared memory counts against the memory limit; raise the limit above it (the AIO image's docs use 2Gi of shm, so a limit of 4Gi or more)`,
      });
    }
  })
  .transform((e) => ({
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    namespace: e.K8S_NAMESPACE,
    kubeconfigPath: e.KUBECONFIG_PATH ?? DEFAULT_KUBECONFIG,
    apiServer: e.K8S_API_SERVER,
    apiServerInsecure: e.K8S_API_SERVER_INSECURE,
    k8sTimeoutMs: e.K8S_REQUEST_TIMEOUT_SECONDS * 1000,
    k8sProbeMs: e.K8S_PROBE_SECONDS * 1000,
    createNamespace: e.CREATE_NAMESPACE,
    sandbox: {
      image: e.SANDBOX_IMAGE,
      pullPolicy: e.SANDBOX_IMAGE_PULL_POLICY,
      port: e.SANDBOX_CONTAINER_PORT,
      requests: { cpu: e.SANDBOX_CPU_REQUEST, memory: e.SANDBOX_MEMORY_REQUEST, 'ephemeral-storage': e.SANDBOX_EPHEMERAL_STORAGE_REQUEST },
      limits: { cpu: e.SANDBOX_CPU_LIMIT, memory: e.SANDBOX_MEMORY_LIMIT, 'ephemeral-storage': e.SANDBOX_EPHEMERAL_STORAGE_LIMIT },
      probePath: e.SANDBOX_PROBE_PATH,
      probeProfile: e.SANDBOX_PROBE_PROFILE,
      readiness: {
        initialDelaySeconds:
          e.SANDBOX_READINESS_INITIAL_DELAY_SECONDS ?? PROBE_PROFILES[e.SANDBOX_PROBE_PROFILE].readiness.initialDelaySeconds,
        periodSeconds: e.SANDBOX_READINESS_PERIOD_SECONDS ?? PROBE_PROFILES[e.SANDBOX_PROBE_PROFILE].readiness.periodSeconds,
      },
      liveness: {
        initialDelaySeconds:
          e.SANDBOX_LIVENESS_INITIAL_DELAY_SECONDS ?? PROBE_PROFILES[e.SANDBOX_PROBE_PROFILE].liveness.initialDelaySeconds,
        periodSeconds: e.SANDBOX_LIVENESS_PERIOD_SECONDS ?? PROBE_PROFILES[e.SANDBOX_PROBE_PROFILE].liveness.periodSeconds,
      },
      /** A startup probe (profile `startup`): every periodSeconds, for at most maxSeconds. */
      startup:
        e.SANDBOX_PROBE_PROFILE === 'startup'
          ? {
              periodSeconds: e.SANDBOX_STARTUP_PERIOD_SECONDS,
              failureThreshold: Math.ceil(e.SANDBOX_STARTUP_MAX_SECONDS / e.SANDBOX_STARTUP_PERIOD_SECONDS),
            }
          : undefined,
      probeTimeoutSeconds: e.SANDBOX_PROBE_TIMEOUT_SECONDS,
      probeFailureThreshold: e.SANDBOX_PROBE_FAILURE_THRESHOLD,
      serviceType: e.SANDBOX_SERVICE_TYPE,
      security: {
        profile: e.SANDBOX_SECURITY_PROFILE,
        allowPrivilegeEscalation: e.SANDBOX_ALLOW_PRIVILEGE_ESCALATION ?? PROFILES[e.SANDBOX_SECURITY_PROFILE].allowPrivilegeEscalation,
        dropCapabilities: e.SANDBOX_DROP_CAPABILITIES ?? PROFILES[e.SANDBOX_SECURITY_PROFILE].dropCapabilities,
        addCapabilities: e.SANDBOX_ADD_CAPABILITIES ?? [],
        seccompProfile: e.SANDBOX_SECCOMP_PROFILE ?? PROFILES[e.SANDBOX_SECURITY_PROFILE].seccompProfile,
        runAsNonRoot: e.SANDBOX_RUN_AS_NON_ROOT,
        /** Capabilities the Lark init container and broker sidecar drop. */
        helperDropCapabilities: PROFILES[e.SANDBOX_SECURITY_PROFILE].helperDropCapabilities,
      },
      shmSize: e.SANDBOX_SHM_SIZE,
      runtimeClassName: e.SANDBOX_RUNTIME_CLASS,
      nodeSelector: e.SANDBOX_NODE_SELECTOR,
      tolerations: e.SANDBOX_TOLERATIONS,
    },
    reconcile: { intervalMs: e.RECONCILE_INTERVAL_SECONDS * 1000, graceMs: e.RECONCILE_GRACE_SECONDS * 1000 },
    lifecycle: {
      ttlMs: e.SANDBOX_TTL_SECONDS * 1000,
      idleMs: e.SANDBOX_IDLE_SECONDS * 1000,
      sweepMs: e.SANDBOX_SWEEP_SECONDS * 1000,
      activityWriteMs: e.ACTIVITY_WRITE_INTERVAL_SECONDS * 1000,
      shutdownGraceMs: e.SHUTDOWN_GRACE_SECONDS * 1000,
      shutdownDelayMs: e.SHUTDOWN_DELAY_SECONDS * 1000,
    },
    limits: {
      maxSandboxes: e.MAX_SANDBOXES,
      maxPerThread: e.MAX_SANDBOXES_PER_THREAD,
      maxConcurrentCreates: e.MAX_CONCURRENT_CREATES,
      queueSize: e.CREATE_QUEUE_SIZE,
      queueTimeoutMs: e.CREATE_QUEUE_TIMEOUT_SECONDS * 1000,
      maxActive: e.MAX_ACTIVE_SANDBOXES,
      maxActivePerUser: e.MAX_ACTIVE_SANDBOXES_PER_USER,
      activeOverrides: e.MAX_ACTIVE_SANDBOXES_USER_OVERRIDES,
    },
    suspend: {
      afterMs: e.SANDBOX_SUSPEND_AFTER_SECONDS * 1000,
      wakeWaitMs: e.WAKE_WAIT_SECONDS * 1000,
      maxConcurrentWakes: e.MAX_CONCURRENT_WAKES,
    },
    storage: storage(e),
    mountContractVersion: e.MOUNT_CONTRACT_VERSION,
    extraMounts: { baseDir: e.EXTRA_MOUNTS_BASE_DIR ?? baseDirOf(e), allowedPaths: e.EXTRA_MOUNTS_ALLOWED_PATHS },
    lark: {
      initImage: e.LARK_CLI_INIT_IMAGE,
      brokerImage: e.LARK_CLI_BROKER_IMAGE,
      denySubcommands: e.DEERFLOW_LARK_BROKER_DENY_SUBCOMMANDS,
    },
    nodeHost: e.NODE_HOST,
    auth: { apiKey: e.PROVISIONER_API_KEY, allowAnonymous: e.PROVISIONER_ALLOW_ANONYMOUS },
    trustedProxies: e.TRUSTED_PROXIES,
    body: { maxBytes: e.MAX_BODY_BYTES, timeoutMs: e.REQUEST_BODY_TIMEOUT_SECONDS * 1000 },
    maxConnections: e.MAX_CONNECTIONS,
    createTimeoutMs: e.CREATE_TIMEOUT_SECONDS * 1000,
    maxWaitSeconds: e.MAX_WAIT_SECONDS,
    proxy: {
      enabled: e.PROXY_ENABLED,
      upstream: e.PROXY_UPSTREAM,
      upstreamHost: e.PROXY_UPSTREAM_HOST ?? e.NODE_HOST,
      connectTimeoutMs: e.PROXY_CONNECT_TIMEOUT_SECONDS * 1000,
      readTimeoutMs: e.PROXY_READ_TIMEOUT_SECONDS * 1000,
      idleTimeoutMs: e.PROXY_IDLE_TIMEOUT_SECONDS * 1000,
      waitReadyMs: e.PROXY_WAIT_READY_SECONDS * 1000,
      earlyReady: e.PROXY_EARLY_READY,
      maxWaitReadyMs: e.PROXY_MAX_WAIT_READY_SECONDS * 1000,
      connectionsPerSandbox: e.PROXY_CONNECTIONS_PER_SANDBOX,
      signingKeys: e.PROXY_SIGNING_KEYS,
      hostSuffix: e.PROXY_HOST_SUFFIX,
    },
    sandboxUrl: { mode: e.SANDBOX_URL_MODE, publicUrl: e.PUBLIC_URL?.replace(/\/+$/, '') },
    /** Gateway mode: the Gateways each sandbox's HTTPRoute attaches to, and the address clients use. */
    gateway:
      e.SANDBOX_URL_MODE === 'gateway'
        ? {
            parentRefs: e.GATEWAY_PARENT_REFS.map((r) => ({ ...r, namespace: r.namespace ?? e.K8S_NAMESPACE })),
            publicUrl: (e.GATEWAY_PUBLIC_URL ?? '').replace(/\/+$/, ''),
            /** How long Running may wait for the gateway to serve a route (0: not checked; the proxy's engine checks it). */
            routeCheckMs: e.PROXY_ENABLED ? e.GATEWAY_ROUTE_CHECK_SECONDS * 1000 : 0,
            /** This service's own Service: where a suspended sandbox's route points. */
            wakeBackend: e.GATEWAY_WAKE_BACKEND,
          }
        : undefined,
  }));

export type Config = z.output<typeof schema>;

/** DeerFlow's provisioner's default state directory on the node (its DEER_FLOW_HOST_BASE_DIR). */
const REFERENCE_BASE_DIR = '/.deer-flow';

/**
 * DeerFlow's state directory on the node, which selects the skills layout: DEER_FLOW_HOST_BASE_DIR;
 * undefined when only the seed's SKILLS_HOST_PATH is given (the seed layout); with neither, the
 * reference's default, so an unchanged deployment of DeerFlow's (its Helm chart sets neither) gets the
 * volumes its own provisioner would build.
 */
const baseDirOf = (e: { DEER_FLOW_HOST_BASE_DIR?: string | undefined; SKILLS_HOST_PATH?: string | undefined }): string | undefined =>
  e.DEER_FLOW_HOST_BASE_DIR ?? (e.SKILLS_HOST_PATH === undefined ? REFERENCE_BASE_DIR : undefined);

/**
 * Where skills and user data come from, each on its own (as the reference allows): a claim when one is
 * named, else host paths. The skills layout follows DeerFlow's: with a base dir, today's three views
 * (public, the user's custom, legacy) under it; with SKILLS_HOST_PATH alone, the seed's single mount.
 */
function storage(e: {
  DEER_FLOW_HOST_BASE_DIR?: string | undefined;
  SKILLS_HOST_PATH?: string | undefined;
  THREADS_HOST_PATH: string;
  SKILLS_PVC_NAME?: string | undefined;
  USERDATA_PVC_NAME?: string | undefined;
  SKILLS_PVC_SUBPATH_TEMPLATE?: string | undefined;
  USERDATA_PATH_TEMPLATE?: string | undefined;
}) {
  const baseDir = baseDirOf(e);
  const skills = e.SKILLS_PVC_NAME
    ? { source: 'claim' as const, claim: e.SKILLS_PVC_NAME, subPathTemplate: e.SKILLS_PVC_SUBPATH_TEMPLATE ?? '' }
    : baseDir !== undefined || e.SKILLS_HOST_PATH === undefined
      ? { source: 'views' as const, baseDir: baseDir ?? REFERENCE_BASE_DIR }
      : { source: 'hostPath' as const, path: e.SKILLS_HOST_PATH };
  const userData = e.USERDATA_PVC_NAME
    ? {
        source: 'claim' as const,
        claim: e.USERDATA_PVC_NAME,
        template: e.USERDATA_PATH_TEMPLATE ?? 'deer-flow/users/{user_id}/threads/{thread_id}/user-data',
      }
    : { source: 'hostPath' as const, threadsPath: e.THREADS_HOST_PATH, template: e.USERDATA_PATH_TEMPLATE ?? '{thread_id}/user-data' };
  return { layout: baseDir === undefined ? ('seed' as const) : ('current' as const), skills, userData };
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.join('\n')}`);
    this.problems = problems;
  }
}

/** What the operator should know about a configuration that is valid but risky, one line each (logged at start-up). */
export function configWarnings(config: Config, signingKeyMadeHere: boolean): string[] {
  const warnings: string[] = [];
  if (signingKeyMadeHere && config.sandboxUrl.mode !== 'nodeport')
    warnings.push(
      'PROXY_SIGNING_KEYS is not set: a key was made for this process, so sandbox URLs stop working when it restarts and differ between replicas',
    );
  if (config.sandbox.security.runAsNonRoot)
    warnings.push(
      'SANDBOX_RUN_AS_NON_ROOT=true: kubelet refuses a container whose image runs as root or as a user name (CreateContainerConfigError, "image will run as root"); the AIO sandbox image runs as root, so this needs an image whose USER is a non-zero uid',
    );
  if (!config.auth.apiKey && config.auth.allowAnonymous)
    warnings.push('PROVISIONER_ALLOW_ANONYMOUS=true: the API is open to anyone who can reach this port');
  if (!config.auth.apiKey && !config.auth.allowAnonymous)
    warnings.push(
      'PROVISIONER_API_KEY is not set: /api/* answers 401 to everyone (set the key, or PROVISIONER_ALLOW_ANONYMOUS=true on purpose)',
    );
  return warnings;
}

/** Parses the environment. Throws ConfigError with one line per problem, naming the variable. */
/** The reference's kubeconfig path (the Compose file mounts ~/.kube/config there). */
const DEFAULT_KUBECONFIG = '/root/.kube/config';

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // KUBECONFIG, which every Kubernetes tool reads, names the kubeconfig when KUBECONFIG_PATH does not
  // (its first file: a list is merged by kubectl, not here).
  const kubeconfig = env['KUBECONFIG']?.split(delimiter).find((p) => p !== '');
  if (!env['KUBECONFIG_PATH'] && kubeconfig) env = { ...env, KUBECONFIG_PATH: kubeconfig };
  const parsed = schema.safeParse(env);
  if (!parsed.success) throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`));
  return parsed.data;
}
