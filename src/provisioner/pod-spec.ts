// Pure builders of the Kubernetes objects of one sandbox: the Pod and the Service, as DeerFlow's
// provisioner builds them (test/unit/golden.test.ts compares them with its own output), every number
// from configuration.

import { posix } from 'node:path';
import type { V1Container, V1Pod, V1SecurityContext, V1Service, V1Toleration, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import type { Config } from '../config.ts';
import {
  ANNOTATION_EXPIRES_AT,
  ANNOTATION_SIGNER,
  CLAIM_STATE_DIR,
  LARK_BROKER_URL,
  LARK_CREDENTIALS,
  LARK_RUNTIME_PATH,
  LARK_RUNTIME_VOLUME,
  LARK_BROKER_CONTAINER,
  LARK_SHIM_CONTAINER,
  MAX_SHELL_SESSIONS_ENV,
  SKILL_CATEGORIES,
  skillPath,
  SKILLS_VIEWS,
  USER_DATA_PATH,
  ANNOTATION_THREAD_ID,
  ANNOTATION_USER_ID,
  ANNOTATION_REQUEST,
  LABEL_APP,
  LABEL_APP_VALUE,
  LABEL_MANAGED_BY,
  LABEL_SANDBOX_ID,
  MANAGED_BY,
  capabilityPath,
  GATEWAY_GROUP,
  podName,
  routeName,
  SANDBOX_CONTAINER,
  serviceName,
} from '../domain/sandbox.ts';
import { fillTemplate, type ExtraMount, type SandboxRequest } from '../domain/request.ts';
import type { HttpRoute } from '../domain/wire.ts';

export function sandboxLabels(id: string): Record<string, string> {
  return {
    [LABEL_APP]: LABEL_APP_VALUE,
    [LABEL_SANDBOX_ID]: id,
    'app.kubernetes.io/name': 'deer-flow',
    'app.kubernetes.io/component': 'sandbox',
    [LABEL_MANAGED_BY]: MANAGED_BY,
  };
}

const join = (...parts: string[]): string => parts.join('/').replace(/\/{2,}/g, '/');

type Storage = { volumes: V1Volume[]; mounts: V1VolumeMount[]; sidecarMounts: V1VolumeMount[] };

/**
 * Volumes and mounts for skills, user data, extra mounts and the Lark integration, in the reference's
 * order. Extra mounts live on the user-data claim when there is one (sub-path `deer-flow/<path under the
 * base dir>`), else on host paths. With Lark, the runtime comes from an init container's emptyDir; with
 * the broker, the credentials are mounted into the broker sidecar only, never into the sandbox.
 */
function storage(config: Config, req: SandboxRequest): Storage {
  const { skills, userData } = config.storage;
  const volumes: V1Volume[] = [];
  const mounts: V1VolumeMount[] = [];
  const sidecarMounts: V1VolumeMount[] = [];
  // DeerFlow 2.1: an extra mount on a skill category takes the place of that category's default; the
  // one skills volume (claim or the seed's host path) goes only when all four are given.
  const overridden = new Set(req.extraMounts.map((m) => m.containerPath));
  const whole = SKILL_CATEGORIES.every((c) => overridden.has(skillPath(req.skillsRoot, c)));
  switch (skills.source) {
    case 'claim': {
      if (whole) break;
      const subPath = fillTemplate(skills.subPathTemplate, req);
      volumes.push({ name: 'skills', persistentVolumeClaim: { claimName: skills.claim, readOnly: true } });
      mounts.push({ name: 'skills', mountPath: req.skillsRoot, readOnly: true, ...(subPath ? { subPath } : {}) });
      break;
    }
    case 'hostPath':
      if (whole) break;
      volumes.push({ name: 'skills', hostPath: { path: skills.path, type: 'Directory' } });
      mounts.push({ name: 'skills', mountPath: req.skillsRoot, readOnly: true });
      break;
    case 'views':
      for (const view of SKILLS_VIEWS) {
        const mountPath = skillPath(req.skillsRoot, view.category);
        if (overridden.has(mountPath)) continue;
        volumes.push({ name: view.volume, hostPath: { path: join(skills.baseDir, ...view.hostPath(req.userId)), type: 'Directory' } });
        mounts.push({ name: view.volume, mountPath, readOnly: true });
      }
  }
  const dataPath = fillTemplate(userData.template, req);
  if (userData.source === 'claim') {
    volumes.push({ name: 'user-data', persistentVolumeClaim: { claimName: userData.claim } });
    mounts.push({ name: 'user-data', mountPath: USER_DATA_PATH, readOnly: false, subPath: dataPath });
  } else {
    volumes.push({ name: 'user-data', hostPath: { path: join(userData.threadsPath, dataPath), type: 'DirectoryOrCreate' } });
    mounts.push({ name: 'user-data', mountPath: USER_DATA_PATH, readOnly: false });
  }

  const claim = userData.source === 'claim' ? userData.claim : undefined;
  const base = config.extraMounts.baseDir ?? '/';
  const volumeOf = (name: string, m: ExtraMount): V1Volume =>
    claim
      ? { name, persistentVolumeClaim: { claimName: claim } }
      : { name, hostPath: { path: m.hostPath, type: m.readOnly ? 'Directory' : 'DirectoryOrCreate' } };
  const subPathOf = (m: ExtraMount): { subPath?: string } =>
    claim ? { subPath: posix.join(CLAIM_STATE_DIR, posix.relative(base, m.hostPath)) } : {};
  const lark = req.larkRuntime || req.larkBroker;
  const byBroker = new Set<string>(req.larkBroker ? LARK_CREDENTIALS.map((c) => c.containerPath) : []);
  const onSandbox = req.extraMounts.filter((m) => !(lark && m.containerPath === LARK_RUNTIME_PATH) && !byBroker.has(m.containerPath));
  onSandbox.forEach((m, index) => {
    volumes.push(volumeOf(`extra-${index}`, m));
    mounts.push({ name: `extra-${index}`, mountPath: m.containerPath, readOnly: m.readOnly, ...subPathOf(m) });
  });
  if (lark) {
    volumes.push({ name: LARK_RUNTIME_VOLUME, emptyDir: {} });
    mounts.push({ name: LARK_RUNTIME_VOLUME, mountPath: LARK_RUNTIME_PATH, readOnly: true });
  }
  for (const credential of LARK_CREDENTIALS) {
    const m = byBroker.size ? req.extraMounts.find((e) => e.containerPath === credential.containerPath) : undefined;
    if (!m) continue;
    volumes.push(volumeOf(credential.volume, m));
    sidecarMounts.push({ name: credential.volume, mountPath: credential.sidecarPath, readOnly: m.readOnly, ...subPathOf(m) });
  }
  return { volumes, mounts, sidecarMounts };
}

/** The sandbox container's security context: the profile's (SANDBOX_SECURITY_PROFILE), each part overridable. */
function containerSecurity(config: Config): V1SecurityContext {
  const s = config.sandbox.security;
  const capabilities = {
    ...(s.dropCapabilities.length ? { drop: s.dropCapabilities } : {}),
    ...(s.addCapabilities.length ? { add: s.addCapabilities } : {}),
  };
  return {
    privileged: false,
    allowPrivilegeEscalation: s.allowPrivilegeEscalation,
    ...(Object.keys(capabilities).length ? { capabilities } : {}),
  };
}

/** The Lark init container and broker sidecar: never privileged, no escalation (and no capabilities when hardened). */
function helperSecurity(config: Config): V1SecurityContext {
  const drop = config.sandbox.security.helperDropCapabilities;
  return { privileged: false, allowPrivilegeEscalation: false, ...(drop.length ? { capabilities: { drop } } : {}) };
}

/** The Lark init container (runtime, or the broker's shim) and the broker sidecar, as the reference builds them. */
function larkContainers(
  config: Config,
  req: SandboxRequest,
  sidecarMounts: V1VolumeMount[],
): { init: V1Container[]; sidecars: V1Container[] } {
  if (!req.larkRuntime && !req.larkBroker) return { init: [], sidecars: [] };
  const pullPolicy = config.sandbox.pullPolicy;
  const init: V1Container = {
    name: req.larkBroker ? LARK_SHIM_CONTAINER : 'lark-cli-init',
    image: req.larkBroker ? config.lark.brokerImage : config.lark.initImage,
    imagePullPolicy: pullPolicy,
    ...(req.larkBroker ? { args: ['install-shim', LARK_RUNTIME_PATH] } : {}),
    env: [{ name: 'LARK_CLI_RUNTIME_DEST', value: LARK_RUNTIME_PATH }],
    volumeMounts: [{ name: LARK_RUNTIME_VOLUME, mountPath: LARK_RUNTIME_PATH, readOnly: false }],
    securityContext: helperSecurity(config),
  };
  if (!req.larkBroker) return { init: [init], sidecars: [] };
  const [config_, , data] = LARK_CREDENTIALS;
  const env = [
    { name: 'LARKSUITE_CLI_CONFIG_DIR', value: config_.sidecarPath },
    { name: 'LARKSUITE_CLI_DATA_DIR', value: data.sidecarPath },
    ...(config.lark.denySubcommands ? [{ name: 'DEERFLOW_LARK_BROKER_DENY_SUBCOMMANDS', value: config.lark.denySubcommands }] : []),
  ];
  const sidecar: V1Container = {
    name: LARK_BROKER_CONTAINER,
    image: config.lark.brokerImage,
    imagePullPolicy: pullPolicy,
    args: ['serve'],
    env,
    volumeMounts: sidecarMounts,
    securityContext: helperSecurity(config),
  };
  return { init: [init], sidecars: [sidecar] };
}

export function buildPod(config: Config, req: SandboxRequest, now: number = Date.now(), signer?: string): V1Pod {
  const c = config.sandbox;
  const probe = (p: { initialDelaySeconds: number; periodSeconds: number }) => ({
    httpGet: { path: c.probePath, port: c.port },
    initialDelaySeconds: p.initialDelaySeconds,
    periodSeconds: p.periodSeconds,
    timeoutSeconds: c.probeTimeoutSeconds,
    failureThreshold: c.probeFailureThreshold,
  });
  const { volumes, mounts, sidecarMounts } = storage(config, req);
  const lark = larkContainers(config, req, sidecarMounts);
  const env = [
    ...(req.maxShellSessions !== undefined ? [{ name: MAX_SHELL_SESSIONS_ENV, value: String(req.maxShellSessions) }] : []),
    ...(req.larkBroker ? [{ name: 'DEERFLOW_LARK_BROKER_URL', value: LARK_BROKER_URL }] : []),
  ];
  if (c.shmSize) {
    // Chromium in the AIO image wants more shared memory than a container's default 64 MiB.
    volumes.push({ name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: c.shmSize } });
    mounts.push({ name: 'dshm', mountPath: '/dev/shm' });
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: podName(req.sandboxId),
      namespace: config.namespace,
      labels: sandboxLabels(req.sandboxId),
      annotations: {
        [ANNOTATION_THREAD_ID]: req.threadId,
        [ANNOTATION_USER_ID]: req.userId,
        ...(req.ttlSeconds ? { [ANNOTATION_EXPIRES_AT]: new Date(now + req.ttlSeconds * 1000).toISOString() } : {}),
        ...(signer ? { [ANNOTATION_SIGNER]: signer } : {}),
      },
    },
    spec: {
      containers: [
        {
          name: SANDBOX_CONTAINER,
          image: c.image,
          imagePullPolicy: c.pullPolicy,
          ports: [{ name: 'http', containerPort: c.port, protocol: 'TCP' }],
          resources: { requests: { ...c.requests }, limits: { ...c.limits } },
          volumeMounts: mounts,
          ...(c.startup
            ? {
                startupProbe: {
                  httpGet: { path: c.probePath, port: c.port },
                  periodSeconds: c.startup.periodSeconds,
                  timeoutSeconds: 1,
                  failureThreshold: c.startup.failureThreshold,
                },
              }
            : {}),
          readinessProbe: probe(c.readiness),
          livenessProbe: probe(c.liveness),
          ...(env.length ? { env } : {}),
          securityContext: containerSecurity(config),
        },
        ...lark.sidecars,
      ],
      ...(lark.init.length ? { initContainers: lark.init } : {}),
      volumes,
      restartPolicy: 'Always',
      // Untrusted code gets no Kubernetes credentials.
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      ...(c.security.seccompProfile !== 'none' || c.security.runAsNonRoot
        ? {
            securityContext: {
              ...(c.security.seccompProfile !== 'none' ? { seccompProfile: { type: c.security.seccompProfile } } : {}),
              ...(c.security.runAsNonRoot ? { runAsNonRoot: true } : {}),
            },
          }
        : {}),
      ...(c.runtimeClassName ? { runtimeClassName: c.runtimeClassName } : {}),
      ...(Object.keys(c.nodeSelector).length ? { nodeSelector: { ...c.nodeSelector } } : {}),
      ...(c.tolerations.length ? { tolerations: c.tolerations as V1Toleration[] } : {}),
    },
  };
}

/**
 * The Service; with `owner`, an ownerReference to the pod so the garbage collector removes it with the
 * pod. With `req`, it carries the request its pods are made from (and its thread and user): what a
 * suspended sandbox, which has no pod, wakes from.
 */
export function buildService(config: Config, id: string, owner?: { name: string; uid: string }, req?: SandboxRequest): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: serviceName(id),
      namespace: config.namespace,
      labels: sandboxLabels(id),
      ...(req
        ? {
            annotations: {
              [ANNOTATION_THREAD_ID]: req.threadId,
              [ANNOTATION_USER_ID]: req.userId,
              [ANNOTATION_REQUEST]: JSON.stringify(req),
            },
          }
        : {}),
      ...(owner
        ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: owner.name, uid: owner.uid, blockOwnerDeletion: false }] }
        : {}),
    },
    spec: {
      type: config.sandbox.serviceType,
      selector: { [LABEL_SANDBOX_ID]: id },
      ports: [{ name: 'http', port: config.sandbox.port, targetPort: config.sandbox.port, protocol: 'TCP' }],
    },
  };
}

/**
 * Container paths an extra mount may neither equal nor contain: the skills root (its categories may each be
 * replaced, the root not) and the user data.
 */
export const builtinMountPaths = (skillsRoot: string): string[] => [skillsRoot, USER_DATA_PATH];

/**
 * Gateway mode: the sandbox's HTTPRoute (Gateway API v1, standard channel). Requests under
 * `/s/<id>.<capability>` are sent to the sandbox's Service with that prefix replaced by `/`, as the
 * built-in proxy does in proxy mode; anything else is the gateway's 404. Owned by the pod, so it goes
 * with it (and a sandbox made again gets a new path).
 */
export function buildRoute(config: Config, id: string, token: string, owner: { name: string; uid: string }): HttpRoute {
  const route = suspendedRoute(config, id, token);
  return {
    ...route,
    metadata: {
      ...route.metadata,
      ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: owner.name, uid: owner.uid, blockOwnerDeletion: false }],
    },
    spec: {
      ...route.spec,
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: capabilityPath(id, token) } }],
          filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } }],
          backendRefs: [{ name: serviceName(id), port: config.sandbox.port }],
        },
      ],
    },
  };
}

/**
 * The route of a suspended sandbox (no pod owns it): with GATEWAY_WAKE_BACKEND its requests go, path
 * unchanged, to this service's own proxy, which wakes the sandbox and forwards them; without it, to the
 * sandbox's Service, which has no endpoint then (the gateway's 503 until a status read or create wakes it).
 */
export function suspendedRoute(config: Config, id: string, token: string): HttpRoute {
  const wake = config.gateway?.wakeBackend;
  return {
    apiVersion: `${GATEWAY_GROUP}/v1`,
    kind: 'HTTPRoute',
    metadata: { name: routeName(id), namespace: config.namespace, labels: sandboxLabels(id) },
    spec: {
      parentRefs: (config.gateway?.parentRefs ?? []).map((p) => ({ group: GATEWAY_GROUP, kind: 'Gateway', ...p })),
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: capabilityPath(id, token) } }],
          backendRefs: wake
            ? [{ name: wake.name, namespace: wake.namespace, port: wake.port }]
            : [{ name: serviceName(id), port: config.sandbox.port }],
        },
      ],
    },
  };
}
