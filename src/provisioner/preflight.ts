// Preflight: a server-side dry run (dryRun=All) of a sample sandbox pod and service in the namespace,
// so a policy that would refuse every sandbox (the classic: hostPath under Pod Security `baseline`) is
// reported at startup and in /readyz, with the fix, before the first user hits it.

import type { Config } from '../config.ts';
import { HttpError } from '../http/errors.ts';
import { buildPod, buildService } from './pod-spec.ts';
import { plainRequest } from '../domain/request.ts';
import type { SandboxWriter } from './writer.ts';

const SAMPLE = plainRequest('preflight-check');

function hint(code: string, config: Config, message: string): string {
  const { skills, userData } = config.storage;
  if (code === 'pod_security_violation' && /hostPath/i.test(message) && (skills.source !== 'claim' || userData.source !== 'claim')) {
    return ` Fix: use PVC storage (STORAGE_MODE=pvc with SKILLS_PVC_NAME and USERDATA_PVC_NAME), or label the namespace pod-security.kubernetes.io/enforce=privileged.`;
  }
  if (code === 'pod_security_violation')
    return ' Fix: adjust the SANDBOX_* security settings, or the namespace pod-security.kubernetes.io/enforce label.';
  if (code === 'limit_range_violation')
    return ' Fix: set SANDBOX_CPU_*/SANDBOX_MEMORY_*/SANDBOX_EPHEMERAL_STORAGE_* within the LimitRange.';
  if (code === 'provisioner_forbidden') return " Fix: apply the Role in deploy/base (rbac.yaml) to the provisioner's service account.";
  return '';
}

/** Why sandboxes would be refused in the namespace (with the fix), or undefined when a sample passes. */
export async function preflight(writer: SandboxWriter, config: Config): Promise<string | undefined> {
  for (const [kind, body] of [
    ['pod', buildPod(config, SAMPLE)],
    ['service', buildService(config, SAMPLE.sandboxId)],
  ] as const) {
    try {
      await writer.dryRun(kind, body);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      return `sandbox ${kind}s would be refused in namespace ${config.namespace}: ${err.message}.${hint(err.code, config, err.message)}`;
    }
  }
  return undefined;
}
