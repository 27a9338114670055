// One line of documentation per setting of config.ts, in groups. The type makes it complete: a setting
// added to config.ts without a line here does not compile. tools/config-docs.ts writes from it (with
// each default read from the schema) the table of docs/configuration.md, the `config:` block of the
// Helm chart's values.yaml and its values.schema.json; a unit test keeps all three current.

import type { envFields } from './config.ts';

export type Setting = keyof typeof envFields.shape;
type Doc = { group: string; doc: string; unset?: string };

const server = (doc: string, unset?: string): Doc => ({ group: 'Server and API', doc, ...(unset ? { unset } : {}) });
const kube = (doc: string, unset?: string): Doc => ({ group: 'Kubernetes', doc, ...(unset ? { unset } : {}) });
const pod = (doc: string, unset?: string): Doc => ({ group: 'Sandbox pod', doc, ...(unset ? { unset } : {}) });
const probes = (doc: string, unset?: string): Doc => ({ group: 'Sandbox probes', doc, ...(unset ? { unset } : {}) });
const security = (doc: string, unset?: string): Doc => ({ group: 'Sandbox security', doc, ...(unset ? { unset } : {}) });
const storage = (doc: string, unset?: string): Doc => ({ group: 'Storage', doc, ...(unset ? { unset } : {}) });
const life = (doc: string, unset?: string): Doc => ({ group: 'Lifecycle and limits', doc, ...(unset ? { unset } : {}) });
const access = (doc: string, unset?: string): Doc => ({ group: 'Sandbox URLs and the proxy', doc, ...(unset ? { unset } : {}) });

export const SETTINGS: Record<Setting, Doc> = {
  PORT: server('HTTP port of the API, the proxy, the dashboard and /metrics.'),
  HOST: server('Listen address.'),
  LOG_LEVEL: server('Log level: trace, debug, info, warn, error or silent (JSON lines on stdout).'),
  PROVISIONER_API_KEY: server(
    '/api/* requires it as X-API-Key or Authorization: Bearer. Unset: /api/* answers 401 (fail closed, as DeerFlow’s provisioner); /health, /readyz and /metrics stay open. Keep it in a Secret.',
    'the API is closed',
  ),
  PROVISIONER_ALLOW_ANONYMOUS: server('true opens /api/* without a key, on purpose (a local setup; npm run dev sets it and says so).'),
  TRUSTED_PROXIES: server(
    'Comma-separated IPs or CIDRs of front proxies whose X-Forwarded-Host/-Proto/-For are believed (sandbox URLs without PUBLIC_URL, and what the proxy forwards). Anyone else’s are ignored.',
  ),
  MAX_BODY_BYTES: server('Largest accepted API request body (413 above).'),
  REQUEST_BODY_TIMEOUT_SECONDS: server('An API request body must arrive within this time (408, connection closed).'),
  MAX_CONNECTIONS: server('Client connections held at once; one more is answered 503 server_busy and closed.'),
  MAX_WAIT_SECONDS: server('Cap of ?wait= on create and status.'),
  SHUTDOWN_DELAY_SECONDS: server(
    'After SIGTERM, keep serving this long (with /readyz failing) before the listener closes, while endpoints stop sending here. Waits and event streams end at once.',
  ),
  SHUTDOWN_GRACE_SECONDS: server('Then, how long requests in flight (downloads, long commands) may take before they are cut.'),

  K8S_NAMESPACE: kube(
    'Namespace of the sandboxes; made at startup when missing and allowed (the chart and deploy/ use the provisioner’s own).',
  ),
  CREATE_NAMESPACE: kube(
    'Create the namespace when it does not exist (needs the namespaces ClusterRole of deploy/components/namespace-creator).',
  ),
  KUBECONFIG_PATH: kube(
    'Kubeconfig file; when it does not exist, the in-cluster service account is used. A directory or unreadable file is fatal.',
    'the first file of `KUBECONFIG`, else `/root/.kube/config` (the reference’s)',
  ),
  K8S_API_SERVER: kube('Replaces the kubeconfig’s server address (e.g. https://host.docker.internal:6443).', 'the kubeconfig’s'),
  K8S_API_SERVER_INSECURE: kube('Skip TLS verification of the API server (what the reference did with K8S_API_SERVER).'),
  K8S_REQUEST_TIMEOUT_SECONDS: kube('Timeout of each Kubernetes API request.'),
  K8S_PROBE_SECONDS: kube(
    'How often the API server is probed (GET /version): a frozen or unreachable server shows in /readyz within about two periods; watches restart after 3 failed probes.',
  ),

  SANDBOX_IMAGE: pod('Sandbox image (pin a version in production; keep the image-prepull DaemonSet equal).'),
  SANDBOX_IMAGE_PULL_POLICY: pod('Always, IfNotPresent or Never.'),
  SANDBOX_CONTAINER_PORT: pod('Port of the sandbox’s HTTP API (container, Service and probes).'),
  SANDBOX_CPU_REQUEST: pod('CPU request of the sandbox container.'),
  SANDBOX_CPU_LIMIT: pod('CPU limit of the sandbox container.'),
  SANDBOX_MEMORY_REQUEST: pod('Memory request of the sandbox container.'),
  SANDBOX_MEMORY_LIMIT: pod('Memory limit of the sandbox container (it must be above SANDBOX_SHM_SIZE).'),
  SANDBOX_EPHEMERAL_STORAGE_REQUEST: pod('Ephemeral storage request.'),
  SANDBOX_EPHEMERAL_STORAGE_LIMIT: pod('Ephemeral storage limit.'),
  SANDBOX_SHM_SIZE: pod(
    'A memory-backed emptyDir of this size at /dev/shm (the AIO image’s docs give Chromium 2Gi). It counts against the memory limit, so it must be below it.',
    'no /dev/shm volume',
  ),
  SANDBOX_SERVICE_TYPE: pod('NodePort (sandbox_url http://NODE_HOST:<nodePort>) or ClusterIP (reached through the proxy or a gateway).'),
  SANDBOX_NODE_SELECTOR: pod('k=v,k2=v2: the nodes sandboxes may run on.'),
  SANDBOX_TOLERATIONS: pod('A JSON array of tolerations for sandbox pods.'),
  SANDBOX_RUNTIME_CLASS: pod('e.g. gvisor or kata: the strong isolation for untrusted code.', 'the cluster’s default runtime'),
  NODE_HOST: pod('Host DeerFlow’s backend uses to reach node ports (a host name or IP, no scheme).'),

  SANDBOX_PROBE_PATH: probes('Path of the sandbox’s startup, readiness and liveness probes.'),
  SANDBOX_PROBE_PROFILE: probes(
    'startup: a startup probe every SANDBOX_STARTUP_PERIOD_SECONDS holds the others, so a sandbox is Ready about half a second after its app answers; reference: DeerFlow’s probes (readiness after 5 s, then every 5 s).',
  ),
  SANDBOX_STARTUP_PERIOD_SECONDS: probes('startup profile: period of the startup probe.'),
  SANDBOX_STARTUP_MAX_SECONDS: probes(
    'startup profile: how long the startup probe allows (a first image pull and a slow start may take minutes).',
  ),
  SANDBOX_READINESS_INITIAL_DELAY_SECONDS: probes('Readiness probe initial delay.', 'the profile’s (0 startup, 5 reference)'),
  SANDBOX_READINESS_PERIOD_SECONDS: probes('Readiness probe period.', 'the profile’s (5)'),
  SANDBOX_LIVENESS_INITIAL_DELAY_SECONDS: probes('Liveness probe initial delay.', 'the profile’s (0 startup, 10 reference)'),
  SANDBOX_LIVENESS_PERIOD_SECONDS: probes('Liveness probe period.', 'the profile’s (10)'),
  SANDBOX_PROBE_TIMEOUT_SECONDS: probes('Timeout of each probe.'),
  SANDBOX_PROBE_FAILURE_THRESHOLD: probes('Failures before a readiness or liveness probe counts as failed.'),

  SANDBOX_SECURITY_PROFILE: security(
    'reference (what the AIO image needs: supervisord and sudo switch users) or hardened (no escalation, no capabilities, RuntimeDefault seccomp). The four settings below override its parts.',
  ),
  SANDBOX_ALLOW_PRIVILEGE_ESCALATION: security('allowPrivilegeEscalation of the sandbox container.', 'the profile’s'),
  SANDBOX_DROP_CAPABILITIES: security('Comma-separated capabilities to drop (an empty value drops none).', 'the profile’s'),
  SANDBOX_ADD_CAPABILITIES: security('Comma-separated capabilities to add.', 'none'),
  SANDBOX_SECCOMP_PROFILE: security('RuntimeDefault, Unconfined or none (no seccompProfile field).', 'the profile’s'),
  SANDBOX_RUN_AS_NON_ROOT: security(
    'Require a non-root user (Pod Security restricted). kubelet then refuses an image whose USER is root or a name (CreateContainerConfigError): the AIO image runs as root.',
  ),

  STORAGE_MODE: storage('Optional check: pvc requires both claims, hostPath neither.', 'no check'),
  DEER_FLOW_HOST_BASE_DIR: storage(
    'DeerFlow’s state directory on the node: today’s skills layout (three views under it) and the base of extra mounts. With SKILLS_HOST_PATH alone, the seed’s layout.',
    '/.deer-flow, unless SKILLS_HOST_PATH is set',
  ),
  SKILLS_HOST_PATH: storage(
    'Seed layout, no skills claim: the skills directory on the node, mounted read-only at /mnt/skills.',
    'today’s layout',
  ),
  THREADS_HOST_PATH: storage('No user-data claim: the threads directory on the node.'),
  SKILLS_PVC_NAME: storage('A claim for skills (mounted read-only at /mnt/skills); needs ReadOnlyMany access.', 'host paths'),
  USERDATA_PVC_NAME: storage('A claim for user data; needs ReadWriteMany access (every sandbox, any node).', 'host paths'),
  SKILLS_PVC_SUBPATH_TEMPLATE: storage('Sub-path of the skills claim; may use {user_id} and {thread_id}.', 'the claim’s root'),
  USERDATA_PATH_TEMPLATE: storage(
    'Where a thread’s user data lies under THREADS_HOST_PATH or in the user-data claim; must contain {thread_id}.',
    '{thread_id}/user-data (host path) or deer-flow/users/{user_id}/threads/{thread_id}/user-data (claim)',
  ),
  MOUNT_CONTRACT_VERSION: storage('Reported to DeerFlow’s client in /api/capabilities and in sandbox answers.', 'not reported'),
  EXTRA_MOUNTS_BASE_DIR: storage(
    'Host directory under which extra mounts must lie.',
    'DEER_FLOW_HOST_BASE_DIR; with neither set, extra mounts are refused',
  ),
  EXTRA_MOUNTS_ALLOWED_PATHS: storage(
    'Comma-separated container paths extra mounts may use, beside the four skill categories under the request’s skills root (DeerFlow 2.1’s list).',
  ),
  LARK_CLI_INIT_IMAGE: storage('Enables provision_lark_cli_runtime: the init container’s image.'),
  LARK_CLI_BROKER_IMAGE: storage('Enables provision_lark_cli_broker: the broker sidecar’s image.'),
  DEERFLOW_LARK_BROKER_DENY_SUBCOMMANDS: storage('Passed to the Lark broker sidecar: comma-separated lark-cli subcommands it refuses.'),

  SANDBOX_TTL_SECONDS: life('Maximum age of a sandbox (0: off); a keepalive may extend its own.'),
  SANDBOX_IDLE_SECONDS: life('Idle time after which a sandbox is deleted (0: off); proxied requests and keepalives count as activity.'),
  SANDBOX_SWEEP_SECONDS: life('Expiry sweep period.'),
  ACTIVITY_WRITE_INTERVAL_SECONDS: life('Least time between activity annotation writes per sandbox.'),
  MAX_SANDBOXES: life('Sandboxes at most (0: no limit); one more is answered 429 limit_reached.'),
  MAX_SANDBOXES_PER_THREAD: life('Sandboxes per thread at most (0: no limit).'),
  SANDBOX_SUSPEND_AFTER_SECONDS: life(
    'Idle time after which a sandbox is suspended (0: off): its pod is removed, its Service, URL, capability and files kept; its next use wakes it. Idle: no API call for it, no proxied request or open stream, no lease.',
  ),
  WAKE_WAIT_SECONDS: life(
    'Longest a status read of a suspended sandbox waits for it to wake (DeerFlow’s status check gives up after 10 s).',
  ),
  MAX_CONCURRENT_WAKES: life('Wakes in flight at once (beyond: a queue, as for creates).'),
  MAX_ACTIVE_SANDBOXES: life(
    'Sandboxes with a pod at most (0: no limit); one more suspends the least recently used idle one, or is answered 429 active_limit_reached.',
  ),
  MAX_ACTIVE_SANDBOXES_PER_USER: life('The same, per user_id (0: no limit); the user’s own least recently used idle sandbox is suspended.'),
  MAX_ACTIVE_SANDBOXES_USER_OVERRIDES: life('Comma-separated user=limit pairs replacing MAX_ACTIVE_SANDBOXES_PER_USER for those users.'),
  MAX_CONCURRENT_CREATES: life('Creates in flight at once.'),
  CREATE_QUEUE_SIZE: life('Creates waiting for a slot; one more is answered 429 too_many_requests.'),
  CREATE_QUEUE_TIMEOUT_SECONDS: life('Longest a create waits for a slot.'),
  CREATE_TIMEOUT_SECONDS: life('Longest a create waits (for a deletion in progress, or a node port).'),
  RECONCILE_INTERVAL_SECONDS: life('Period of housekeeping: permissions, the admission preflight, orphans, the namespace.'),
  RECONCILE_GRACE_SECONDS: life('Age under which a half-made sandbox is left to the create that is making it.'),

  SANDBOX_URL_MODE: access(
    'nodeport: sandbox_url is http://NODE_HOST:<nodePort>; proxy: <PUBLIC_URL or the caller’s address>/s/<id>.<capability>; host: <scheme>://<id><PROXY_HOST_SUFFIX>; gateway: <GATEWAY_PUBLIC_URL>/s/<id>.<capability> through an HTTPRoute.',
  ),
  PUBLIC_URL: access('The address clients use to reach this service, for proxy and host sandbox URLs.', 'the address the caller used'),
  PROXY_ENABLED: access('Serve /s/..., /sandboxes/... and host routing.'),
  PROXY_UPSTREAM: access(
    'How the proxy reaches a sandbox: nodeport (PROXY_UPSTREAM_HOST:<nodePort>), service (cluster DNS) or pod (pod IP).',
  ),
  PROXY_UPSTREAM_HOST: access('Host of nodeport upstreams.', 'NODE_HOST'),
  PROXY_CONNECT_TIMEOUT_SECONDS: access('Upstream connect timeout; also how long a sandbox may take to answer a WebSocket upgrade.'),
  PROXY_READ_TIMEOUT_SECONDS: access('Longest wait for a sandbox’s response headers (DeerFlow’s commands run up to 600 s).'),
  PROXY_IDLE_TIMEOUT_SECONDS: access('Longest silence inside a response body, or an upload.'),
  PROXY_WAIT_READY_SECONDS: access(
    'Requests to a sandbox that is starting are held this long by default (clients ask with X-Sandbox-Wait).',
  ),
  PROXY_MAX_WAIT_READY_SECONDS: access('The longest hold a client may ask for.'),
  PROXY_EARLY_READY: access(
    'A starting sandbox is Running (status, ?wait=, events, proxied requests) as soon as its app answers on the pod’s address, before kubelet marks it Ready; the pod must be reachable from the provisioner.',
  ),
  PROXY_CONNECTIONS_PER_SANDBOX: access('Keep-alive connections per sandbox (each stalled download holds about 210 KiB).'),
  PROXY_SIGNING_KEYS: access(
    'Comma-separated keys (at least 32 characters each) for capabilities: the first signs, all verify. Give every replica the same (a Secret); otherwise each makes its own and /readyz says so.',
    'one made at startup, for this process only',
  ),
  PROXY_HOST_SUFFIX: access(
    'e.g. .sandboxes.example.com: requests for <id>.sandboxes.example.com go to that sandbox, paths unchanged. Use a domain of its own (docs/access.md).',
    'no host routing',
  ),
  GATEWAY_PARENT_REFS: access(
    'Gateway mode: the Gateway(s) of each sandbox’s HTTPRoute, namespace/name[/sectionName] (a lone name is in K8S_NAMESPACE).',
  ),
  GATEWAY_PUBLIC_URL: access('Gateway mode: the address clients reach the Gateway at.', 'required in gateway mode'),
  GATEWAY_WAKE_BACKEND: access(
    'namespace/name:port of this service’s own Service: while a sandbox is suspended its HTTPRoute points there, so its next request wakes it (needs a ReferenceGrant across namespaces).',
    'a suspended sandbox’s route answers 503 until a status read or create wakes it',
  ),
  GATEWAY_ROUTE_CHECK_SECONDS: access(
    'Gateway mode: Running waits until a request through GATEWAY_PUBLIC_URL reaches the sandbox (a Gateway accepts a route before its data plane serves it), at most this long; 0: not checked.',
  ),
};
