// Removes what a crash (of this process, another replica, or the reference provisioner) left behind:
// a service whose pod is gone, or a pod without its service, once older than a grace period (a create
// in progress takes milliseconds between the two). Runs at startup and periodically; deletes are
// idempotent, so several replicas may reconcile at once.

import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { SandboxWriter } from './writer.ts';

export type ReconcileResult = { removedServices: string[]; removedPods: string[] };

export async function reconcile(deps: {
  config: Config;
  view: SandboxView;
  writer: SandboxWriter;
  log: Logger;
  now?: () => number;
}): Promise<ReconcileResult> {
  const { config, view, writer, log } = deps;
  const now = deps.now?.() ?? Date.now();
  const result: ReconcileResult = { removedServices: [], removedPods: [] };
  for (const r of view.list()) {
    if (r.deleting || writer.busy(r.sandboxId) || now - r.createdAt < config.reconcile.graceMs) continue;
    const orphan = !r.hasPod && r.hasService ? 'service' : r.hasPod && !r.hasService ? 'pod' : undefined;
    if (!orphan || !(await writer.removeObject(r.sandboxId, orphan))) continue;
    (orphan === 'service' ? result.removedServices : result.removedPods).push(r.sandboxId);
    log.warn(
      { sandbox_id: r.sandboxId, object: orphan },
      `reconciler removed an orphaned ${orphan} (its ${orphan === 'service' ? 'pod' : 'service'} is gone)`,
    );
  }
  return result;
}
