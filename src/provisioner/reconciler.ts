// Removes what a crash (of this process, another replica, or the reference provisioner) left behind:
// a service whose pod is gone, or a pod without its service, once older than a grace period (a create
// in progress takes milliseconds between the two). Runs at startup and periodically; deletes are
// idempotent, so several replicas may reconcile at once.

import type { Config } from '../config.ts';
import { DELETE_IN_BACKGROUND, type KubeClient } from '../kube.ts';
import type { Logger } from '../log.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import { podName, serviceName } from '../watch/sandbox.ts';
import { isNotFound } from './k8s-errors.ts';

export type ReconcileResult = { removedServices: string[]; removedPods: string[] };

export async function reconcile(deps: { config: Config; kube: KubeClient; view: SandboxView; log: Logger; busy?: (id: string) => boolean; now?: () => number }): Promise<ReconcileResult> {
  const { config, kube, view, log } = deps;
  const now = deps.now?.() ?? Date.now();
  const base = `/api/v1/namespaces/${encodeURIComponent(config.namespace)}`;
  const result: ReconcileResult = { removedServices: [], removedPods: [] };
  for (const r of view.list()) {
    if (r.deleting || deps.busy?.(r.sandboxId) || now - r.createdAt < config.reconcile.graceMs) continue;
    const orphan = !r.hasPod && r.hasService ? { kind: 'service', path: `${base}/services/${serviceName(r.sandboxId)}` } : r.hasPod && !r.hasService ? { kind: 'pod', path: `${base}/pods/${podName(r.sandboxId)}` } : undefined;
    if (!orphan) continue;
    try {
      await kube.request('DELETE', orphan.path, { body: DELETE_IN_BACKGROUND });
      (orphan.kind === 'service' ? result.removedServices : result.removedPods).push(r.sandboxId);
      log.warn({ sandbox_id: r.sandboxId, object: orphan.kind }, `reconciler removed an orphaned ${orphan.kind} (its ${orphan.kind === 'service' ? 'pod' : 'service'} is gone)`);
    } catch (err) {
      if (!isNotFound(err)) log.error({ sandbox_id: r.sandboxId, err: String(err) }, `reconciler could not remove orphaned ${orphan.kind}`);
    }
  }
  return result;
}
