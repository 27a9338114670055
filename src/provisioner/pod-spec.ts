// Pure builders of the Kubernetes objects of one sandbox: the Pod and the Service, as the reference's
// "Pod Specification" and "Service Specification" describe them, every number from configuration.

import type { V1Container, V1Pod, V1SecurityContext, V1Service, V1Toleration, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import type { Config } from '../config.ts';
import {
  ANNOTATION_EXPIRES_AT,
  LARK_CREDENTIAL_PATHS,
  LARK_RUNTIME_PATH,
  SKILLS_PATH,
  USER_DATA_PATH,
  ANNOTATION_THREAD_ID,
  ANNOTATION_USER_ID,
  LABEL_APP,
  LABEL_APP_VALUE,
  LABEL_MANAGED_BY,
  LABEL_SANDBOX_ID,
  MANAGED_BY,
  podName,
  serviceName,
} from '../domain/sandbox.ts';
import { userDataPath, type SandboxRequest } from './request.ts';

export const CONTAINER_NAME = 'sandbox';
const LARK_BROKER_PORT = 8788;

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

/** Volumes and the sandbox container's mounts for skills, user data and validated extra mounts. */
function storage(config: Config, req: SandboxRequest): { volumes: V1Volume[]; mounts: V1VolumeMount[]; sidecarMounts: V1VolumeMount[] } {
  const s = config.storage;
  const dataPath = userDataPath(s.userDataTemplate, req);
  const volumes: V1Volume[] =
    s.mode === 'hostPath'
      ? [
          { name: 'skills', hostPath: { path: s.skillsHostPath, type: 'Directory' } },
          { name: 'user-data', hostPath: { path: join(s.threadsHostPath, dataPath), type: 'DirectoryOrCreate' } },
        ]
      : [
          { name: 'skills', persistentVolumeClaim: { claimName: s.skillsClaim, readOnly: true } },
          { name: 'user-data', persistentVolumeClaim: { claimName: s.userDataClaim } },
        ];
  const mounts: V1VolumeMount[] = [
    {
      name: 'skills',
      mountPath: SKILLS_PATH,
      readOnly: true,
      ...(s.mode === 'pvc' && s.skillsSubPath ? { subPath: s.skillsSubPath } : {}),
    },
    { name: 'user-data', mountPath: USER_DATA_PATH, readOnly: false, ...(s.mode === 'pvc' ? { subPath: dataPath } : {}) },
  ];
  const sidecarMounts: V1VolumeMount[] = [];
  const base = config.extraMounts.baseDir ?? '/';
  req.extraMounts.forEach((m, index) => {
    if ((req.larkRuntime || req.larkBroker) && m.containerPath === LARK_RUNTIME_PATH) return; // supplied by the init container
    const name = `extra-${index}`;
    if (s.mode === 'hostPath') volumes.push({ name, hostPath: { path: m.hostPath, type: m.readOnly ? 'Directory' : 'DirectoryOrCreate' } });
    else volumes.push({ name, persistentVolumeClaim: { claimName: s.userDataClaim } });
    const subPath = s.mode === 'pvc' ? { subPath: m.hostPath.slice(base.length).replace(/^\/+/, '') } : {};
    const sidecarPath = LARK_CREDENTIAL_PATHS[m.containerPath];
    if (req.larkBroker && sidecarPath !== undefined) {
      sidecarMounts.push({ name, mountPath: sidecarPath, readOnly: m.readOnly, ...subPath });
    } else {
      mounts.push({ name, mountPath: m.containerPath, readOnly: m.readOnly, ...subPath });
    }
  });
  return { volumes, mounts, sidecarMounts };
}

/** The sandbox container's security context: safe by default, every part configurable. */
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

export function buildPod(config: Config, req: SandboxRequest, now: number = Date.now()): V1Pod {
  const c = config.sandbox;
  const probe = (p: { initialDelaySeconds: number; periodSeconds: number }) => ({
    httpGet: { path: c.probePath, port: c.port },
    initialDelaySeconds: p.initialDelaySeconds,
    periodSeconds: p.periodSeconds,
    timeoutSeconds: c.probeTimeoutSeconds,
    failureThreshold: c.probeFailureThreshold,
  });
  const { volumes, mounts, sidecarMounts } = storage(config, req);
  const initContainers: V1Container[] = [];
  const sidecars: V1Container[] = [];
  const env: { name: string; value: string }[] = [];
  if (req.larkRuntime || req.larkBroker) {
    volumes.push({ name: 'lark-cli-runtime', emptyDir: {} });
    mounts.push({ name: 'lark-cli-runtime', mountPath: LARK_RUNTIME_PATH, readOnly: true });
    const broker = req.larkBroker;
    initContainers.push({
      name: broker ? 'lark-cli-shim-init' : 'lark-cli-init',
      image: broker ? config.lark.brokerImage : config.lark.initImage,
      imagePullPolicy: c.pullPolicy,
      ...(broker ? { args: ['install-shim', LARK_RUNTIME_PATH] } : {}),
      env: [{ name: 'LARK_CLI_RUNTIME_DEST', value: LARK_RUNTIME_PATH }],
      volumeMounts: [{ name: 'lark-cli-runtime', mountPath: LARK_RUNTIME_PATH, readOnly: false }],
      securityContext: { privileged: false, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
    });
    if (broker) {
      sidecars.push({
        name: 'lark-cli-broker',
        image: config.lark.brokerImage,
        imagePullPolicy: c.pullPolicy,
        args: ['serve'],
        env: [{ name: 'LARK_BROKER_LISTEN', value: `127.0.0.1:${LARK_BROKER_PORT}` }],
        volumeMounts: sidecarMounts,
        securityContext: { privileged: false, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      });
      env.push({ name: 'DEERFLOW_LARK_BROKER_URL', value: `http://127.0.0.1:${LARK_BROKER_PORT}` });
    }
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
      },
    },
    spec: {
      containers: [
        {
          name: CONTAINER_NAME,
          image: c.image,
          imagePullPolicy: c.pullPolicy,
          ports: [{ name: 'http', containerPort: c.port, protocol: 'TCP' }],
          resources: { requests: { ...c.requests }, limits: { ...c.limits } },
          volumeMounts: mounts,
          readinessProbe: probe(c.readiness),
          livenessProbe: probe(c.liveness),
          ...(env.length ? { env } : {}),
          securityContext: containerSecurity(config),
        },
        ...sidecars,
      ],
      ...(initContainers.length ? { initContainers } : {}),
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

/** The Service; with `owner`, an ownerReference to the pod so the garbage collector removes it with the pod. */
export function buildService(config: Config, id: string, owner?: { name: string; uid: string }): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: serviceName(id),
      namespace: config.namespace,
      labels: sandboxLabels(id),
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
