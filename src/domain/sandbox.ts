// What a sandbox is called and where it lives, written once: object names, labels, annotations, the
// API paths and DNS name of its objects, the rules for identifiers, and the container paths it mounts.
// Pure facts: this module imports nothing.

/** A pod's phase as DeerFlow reads it, Running only when the app can answer, and Terminating for a pod being deleted (DeerFlow 2.1). */
export const STATUSES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown', 'Terminating'] as const;
export type SandboxStatus = (typeof STATUSES)[number];

export const LABEL_APP = 'app';
export const LABEL_APP_VALUE = 'deer-flow-sandbox';
export const LABEL_SANDBOX_ID = 'sandbox-id';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'sandbox-provisioner';
export const ANNOTATION_THREAD_ID = 'sandbox.deer-flow/thread-id';
export const ANNOTATION_USER_ID = 'sandbox.deer-flow/user-id';
export const ANNOTATION_LAST_ACTIVITY = 'sandbox.deer-flow/last-activity';
export const ANNOTATION_EXPIRES_AT = 'sandbox.deer-flow/expires-at';
/** The fingerprint of the key that signs the sandbox's capability (not the key): replicas must agree. */
export const ANNOTATION_SIGNER = 'sandbox.deer-flow/signer';
/** On the Service: the validated request its pods are made from (JSON of SandboxRequest), so a suspended sandbox can wake. */
export const ANNOTATION_REQUEST = 'sandbox.deer-flow/request';
/** On the Service: when the sandbox was suspended (its pod removed, Service, URL and files kept); absent while it runs. */
export const ANNOTATION_SUSPENDED_AT = 'sandbox.deer-flow/suspended-at';
/** On a pod made by a wake: what woke it, and the suspended-at it woke from (tells a wake in progress from a suspend in progress). */
export const ANNOTATION_WOKEN_BY = 'sandbox.deer-flow/woken-by';
export const ANNOTATION_WOKE_FROM = 'sandbox.deer-flow/woke-from';
/** On the pod: a lease (a run under way) holds off suspension until this time. */
export const ANNOTATION_LEASE_UNTIL = 'sandbox.deer-flow/lease-until';
/** What both the list and the watch select: every sandbox object, including ones made by the reference. */
export const SANDBOX_SELECTOR = `${LABEL_APP}=${LABEL_APP_VALUE},${LABEL_SANDBOX_ID}`;

export const podName = (id: string): string => `sandbox-${id}`;
/** The sandbox image's container in the pod (others are the Lark helpers). */
export const SANDBOX_CONTAINER = 'sandbox';
export const serviceName = (id: string): string => `sandbox-${id}-svc`;

// ---- identifiers ----

/** `sandbox-<id>-svc` must fit a 63-character DNS label, so the id has at most 51 characters. */
export const MAX_SANDBOX_ID = 63 - serviceName('').length;
export const SANDBOX_ID = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const SANDBOX_ID_LENGTH_RULE = `sandbox_id must be at most ${MAX_SANDBOX_ID} characters (so that sandbox-<id>-svc fits 63)`;
export const SANDBOX_ID_RULE =
  'sandbox_id must be a DNS-1123 label: lowercase letters, digits and -, starting and ending with a letter or digit';
export const THREAD_ID = /^[A-Za-z0-9_-]{1,64}$/;
export const USER_ID = /^[A-Za-z0-9_-]{1,128}$/;

export const isSandboxId = (id: string): boolean => id.length <= MAX_SANDBOX_ID && SANDBOX_ID.test(id);

/** Why `id` is not a sandbox id, or undefined when it is one. */
export function sandboxIdProblem(id: string): string | undefined {
  if (id.length > MAX_SANDBOX_ID) return SANDBOX_ID_LENGTH_RULE;
  if (!SANDBOX_ID.test(id)) return SANDBOX_ID_RULE;
  return undefined;
}

// ---- Kubernetes API paths and addresses ----

export const namespacePath = (ns: string): string => `/api/v1/namespaces/${encodeURIComponent(ns)}`;
export const podsPath = (ns: string): string => `${namespacePath(ns)}/pods`;
export const servicesPath = (ns: string): string => `${namespacePath(ns)}/services`;
export const eventsPath = (ns: string): string => `${namespacePath(ns)}/events`;

// ---- Gateway API (SANDBOX_URL_MODE=gateway): one HTTPRoute per sandbox ----

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const GATEWAY_API = `/apis/${GATEWAY_GROUP}/v1`;
export const routeName = (id: string): string => `sandbox-${id}`;
export const routesPath = (ns: string): string => `${GATEWAY_API}/namespaces/${encodeURIComponent(ns)}/httproutes`;
export const routePath = (ns: string, id: string): string => `${routesPath(ns)}/${routeName(id)}`;
/** A Gateway a route attaches to: `namespace/name[/sectionName]` (GATEWAY_PARENT_REFS). */
export type ParentRef = { namespace: string; name: string; sectionName?: string };
export const podPath = (ns: string, id: string): string => `${podsPath(ns)}/${podName(id)}`;
export const servicePath = (ns: string, id: string): string => `${servicesPath(ns)}/${serviceName(id)}`;

/** The cluster DNS origin of a sandbox's service (ClusterIP URLs and the `service` proxy upstream). */
export const serviceOrigin = (id: string, ns: string, port: number): string => `http://${serviceName(id)}.${ns}.svc.cluster.local:${port}`;

// ---- how the proxy addresses a sandbox ----

/** `/sandboxes/<id>/...`: for API-key holders (and anonymous local setups). */
export const PLAIN_PREFIX = '/sandboxes/';
/** `/s/<id>.<capability>/...`: the sandbox_url of proxy mode; the capability is the right to use it. */
export const CAPABILITY_PREFIX = '/s/';
export const capabilityPath = (id: string, token: string): string => `${CAPABILITY_PREFIX}${id}.${token}`;
/** Host routing: the capability's query parameter on the first request, then its cookie. */
export const TOKEN_PARAM = 'sandbox_token';

// ---- container paths ----

export const SKILLS_PATH = '/mnt/skills';
export const USER_DATA_PATH = '/mnt/user-data';
/** DeerFlow's three skills views (DEER_FLOW_HOST_BASE_DIR layout): volume, host path under the base dir, category under the skills root. */
export const SKILLS_VIEWS = [
  { volume: 'skills-public', hostPath: (_userId: string) => ['skills_view', 'public'], category: 'public' },
  { volume: 'skills-custom', hostPath: (userId: string) => ['users', userId, 'skills_view', 'custom'], category: 'custom' },
  { volume: 'skills-legacy', hostPath: (userId: string) => ['users', userId, 'skills_view', 'legacy'], category: 'legacy' },
] as const;
/** Where a claim holds DeerFlow's state (user data, extra mounts): the host base dir maps to this sub-path. */
export const CLAIM_STATE_DIR = 'deer-flow';

/** The AIO image's shell sessions when MAX_SHELL_SESSIONS is not set (DeerFlow's DEFAULT_MAX_SHELL_SESSIONS). */
export const DEFAULT_SHELL_SESSIONS = 10;
export const MAX_SHELL_SESSIONS_ENV = 'MAX_SHELL_SESSIONS';
/** DeerFlow 2.1's skill categories under the skills root: each may be replaced by an extra mount. */
export const SKILL_CATEGORIES = ['public', 'custom', 'legacy', 'integrations'] as const;
/** Where a skill category is mounted under a skills root. */
export const skillPath = (root: string, category: (typeof SKILL_CATEGORIES)[number]): string => `${root}/${category}`;
/** Paths no skills root may equal, lie under, or hold (DeerFlow 2.1). */
export const RESERVED_MOUNT_PATHS = ['/mnt/user-data', '/mnt/acp-workspace', '/mnt/integrations/lark-cli'] as const;
/** The Lark broker sidecar and the shim's init container, by name (the broker attestation reads them off the pod). */
export const LARK_BROKER_CONTAINER = 'lark-cli-broker';
export const LARK_SHIM_CONTAINER = 'lark-cli-shim-init';

const LARK = '/mnt/integrations/lark-cli';
export const LARK_RUNTIME_PATH = `${LARK}/runtime`;
export const LARK_RUNTIME_VOLUME = 'lark-cli-runtime';
/** Lark credentials: their path in the sandbox, where the broker sidecar mounts them instead, and its volume. */
export const LARK_CREDENTIALS = [
  { containerPath: `${LARK}/config`, sidecarPath: '/var/lark/config', volume: 'lark-cli-config' },
  { containerPath: `${LARK}/config/locks`, sidecarPath: '/var/lark/config/locks', volume: 'lark-cli-locks' },
  { containerPath: `${LARK}/data`, sidecarPath: '/var/lark/data', volume: 'lark-cli-data' },
] as const;
export const LARK_BROKER_URL = 'http://127.0.0.1:8788';
/** The paths under which a sandbox container mount holds Lark credentials (DeerFlow reads them by prefix). */
export const LARK_CREDENTIAL_ROOTS = [`${LARK}/config`, `${LARK}/data`] as const;

/** Container paths DeerFlow's clients may send as extra mounts, beside the skill categories under the request's skills root. */
export const DEFAULT_EXTRA_MOUNT_PATHS = [
  `${USER_DATA_PATH}/.upload-conversions`,
  '/mnt/acp-workspace',
  ...LARK_CREDENTIALS.map((c) => c.containerPath),
  LARK_RUNTIME_PATH,
];
