// Preflight: a server-side dry run (dryRun=All) of a sample sandbox pod and service in the namespace,
// so a policy that would refuse every sandbox (the classic: hostPath under Pod Security `baseline`) is
// reported at startup and in /readyz, with the fix, before the first user hits it.

import type { Config } from '../config.ts';
import type { KubeClient } from '../kube.ts';
import { fromKube } from './k8s-errors.ts';
import { buildPod, buildService } from './pod-spec.ts';
import type { SandboxRequest } from './request.ts';

export type Check = { name: string; ok: boolean; detail?: string };

const SAMPLE: SandboxRequest = {
  sandboxId: 'preflight-check',
  threadId: 'preflight-check',
  userId: 'default',
  extraMounts: [],
  includeLegacySkills: false,
  larkRuntime: false,
  larkBroker: false,
  ttlSeconds: undefined,
};

function hint(code: string, config: Config, message: string): string {
  if (code === 'pod_security_violation' && /hostPath/i.test(message) && config.storage.mode === 'hostPath') {
    return ` Fix: use PVC storage (STORAGE_MODE=pvc with SKILLS_PVC_NAME and USERDATA_PVC_NAME), or label the namespace pod-security.kubernetes.io/enforce=privileged.`;
  }
  if (code === 'pod_security_violation') return ' Fix: adjust the SANDBOX_* security settings, or the namespace pod-security.kubernetes.io/enforce label.';
  if (code === 'limit_range_violation') return ' Fix: set SANDBOX_CPU_*/SANDBOX_MEMORY_*/SANDBOX_EPHEMERAL_STORAGE_* within the LimitRange.';
  if (code === 'provisioner_forbidden') return ' Fix: apply the Role in deploy/base (rbac.yaml) to the provisioner\'s service account.';
  return '';
}

export async function preflight(kube: KubeClient, config: Config): Promise<Check> {
  const base = `/api/v1/namespaces/${encodeURIComponent(config.namespace)}`;
  try {
    await kube.request('POST', `${base}/pods?dryRun=All`, { body: buildPod(config, SAMPLE) });
  } catch (err) {
    const answer = fromKube(err, 'pod', 'create a sandbox pod (dry run)');
    return { name: 'preflight', ok: false, detail: `sandbox pods would be refused in namespace ${config.namespace}: ${answer.message}.${hint(answer.code, config, answer.message)}` };
  }
  try {
    await kube.request('POST', `${base}/services?dryRun=All`, { body: buildService(config, SAMPLE.sandboxId) });
  } catch (err) {
    const answer = fromKube(err, 'service', 'create a sandbox service (dry run)');
    return { name: 'preflight', ok: false, detail: `sandbox services would be refused in namespace ${config.namespace}: ${answer.message}.${hint(answer.code, config, answer.message)}` };
  }
  return { name: 'preflight', ok: true };
}
