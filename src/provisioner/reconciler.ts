// Mends what a crash (of this process, another replica, or the reference provisioner) left behind: it
// removes a service whose pod is gone, or a pod without its service, and sets a service's missing
// ownerReference to its pod, once older than a grace period (a create in progress takes milliseconds
// between the two). In nodeport mode it gives a NodePort to a sandbox made under another URL mode (a
// ClusterIP Service has no address in this mode). Runs at startup and periodically; each action is
// idempotent, so several replicas may reconcile at once.

import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { SandboxRecord } from '../domain/record.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { SandboxWriter } from './writer.ts';

export type ReconcileResult = {
  removedServices: string[];
  removedPods: string[];
  ownersSet: string[];
  routesMended: string[];
  removedRoutes: string[];
  nodePortsGiven: string[];
  /** Suspends and wakes a crash left half done, finished. */
  suspendsFinished: string[];
  wakesFinished: string[];
};

export async function reconcile(deps: {
  config: Config;
  view: SandboxView;
  writer: SandboxWriter;
  log: Logger;
  now?: () => number;
}): Promise<ReconcileResult> {
  const { config, view, writer, log } = deps;
  const now = deps.now?.() ?? Date.now();
  const result: ReconcileResult = {
    removedServices: [],
    removedPods: [],
    ownersSet: [],
    routesMended: [],
    removedRoutes: [],
    nodePortsGiven: [],
    suspendsFinished: [],
    wakesFinished: [],
  };
  for (const r of view.list()) {
    if (r.deleting || writer.busy(r.sandboxId) || now - r.createdAt < config.reconcile.graceMs) continue;
    // A suspended sandbox is its Service alone: not an orphan. Half a suspend or wake is finished.
    if (r.suspension === 'suspended') continue;
    if (r.suspension !== undefined && now - (r.suspendedAt ?? 0) >= config.reconcile.graceMs) {
      await finishSuspension(r, writer, log, result);
      continue;
    }
    if (config.gateway && (await mendRoute(r, writer, result))) continue;
    if (r.hasPod && r.hasService && r.podUid !== undefined && r.serviceOwnerUid !== r.podUid) {
      if (await writer.setOwner(r.sandboxId, r.podUid)) result.ownersSet.push(r.sandboxId);
      continue;
    }
    if (r.hasPod && r.hasService && r.nodePort === undefined && needsNodePort(config)) {
      if (await writer.makeNodePort(r.sandboxId)) {
        result.nodePortsGiven.push(r.sandboxId);
        log.info({ sandbox_id: r.sandboxId }, 'reconciler made the service of a sandbox from another URL mode a NodePort one');
      }
      continue;
    }
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

/** A Service that says suspended beside a pod: a wake's pod is marked awake, any other pod removed. */
async function finishSuspension(r: SandboxRecord, writer: SandboxWriter, log: Logger, result: ReconcileResult): Promise<void> {
  try {
    if (r.suspension === 'waking') {
      await writer.wake(r.sandboxId, 'reconcile');
      result.wakesFinished.push(r.sandboxId);
    } else if (await writer.suspend(r.sandboxId)) result.suspendsFinished.push(r.sandboxId);
    log.info({ sandbox_id: r.sandboxId, was: r.suspension }, 'reconciler finished a suspend or wake left half done');
  } catch (err) {
    log.warn({ sandbox_id: r.sandboxId, err }, 'could not finish a suspend or wake (the reconciler will retry)');
  }
}

/**
 * Gateway mode: a route whose pod is gone is removed (the garbage collector does it too, when the
 * route was owned); a sandbox without its route, or with one made for an earlier pod, gets its own.
 */
async function mendRoute(
  r: SandboxRecord,
  writer: Pick<SandboxWriter, 'ensureRoute' | 'removeObject'>,
  result: ReconcileResult,
): Promise<boolean> {
  if (!r.hasPod && r.hasRoute) {
    if (await writer.removeObject(r.sandboxId, 'route')) result.removedRoutes.push(r.sandboxId);
    return !r.hasService;
  }
  if (r.hasPod && r.hasService && r.podUid !== undefined && (!r.hasRoute || r.routeOwnerUid !== r.podUid)) {
    if (await writer.ensureRoute(r.sandboxId, r.podUid, r.serviceUid)) result.routesMended.push(r.sandboxId);
    return true;
  }
  return false;
}

/** nodeport mode: every sandbox's address is its node port. */
export function needsNodePort(config: Config): boolean {
  return config.sandboxUrl.mode === 'nodeport' && !config.gateway && config.sandbox.serviceType === 'NodePort';
}
