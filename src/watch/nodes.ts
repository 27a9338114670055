// Which nodes sandboxes may run on hold the sandbox image, from the nodes' own status.images (kubelet
// lists the images it holds): a node without it makes the first sandbox there wait for a pull of
// several GB. Nodes are listed by SANDBOX_NODE_SELECTOR, and count when Ready, schedulable, and their
// NoSchedule/NoExecute taints are tolerated by SANDBOX_TOLERATIONS. Watched only with list and watch
// on nodes (a ClusterRole, deploy/components/image-prepull).

import type { V1Taint, V1Toleration } from '@kubernetes/client-node';
import type { NodeJson } from '../domain/wire.ts';
import { Reflector, type ListFn, type ReflectorLog, type WatchFn } from './reflector.ts';

type Toleration = Pick<V1Toleration, 'key' | 'operator' | 'value' | 'effect'>;
type Taint = Pick<V1Taint, 'key' | 'value' | 'effect'>;
type NodeFacts = { name: string; resourceVersion: string; eligible: boolean; images: Set<string> };

/** An image reference as kubelet reports it: registry and tag made explicit (`nginx` is docker.io/library/nginx:latest). */
export function normalizeImage(ref: string): string {
  const at = ref.indexOf('@');
  const name = at === -1 ? ref : ref.slice(0, at);
  const first = name.split('/')[0] ?? '';
  const qualified =
    name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')
      ? name
      : `docker.io/${name.includes('/') ? '' : 'library/'}${name}`;
  if (at !== -1) return qualified + ref.slice(at);
  return /:[^/]+$/.test(qualified) ? qualified : `${qualified}:latest`;
}

const tolerates = (tolerations: Toleration[], t: Taint): boolean =>
  t.effect === 'PreferNoSchedule' ||
  tolerations.some(
    (o) =>
      (o.effect === undefined || o.effect === '' || o.effect === t.effect) &&
      (o.operator === 'Exists'
        ? o.key === undefined || o.key === '' || o.key === t.key
        : o.key === t.key && (o.value ?? '') === (t.value ?? '')),
  );

export type NodeImagesSummary = { eligible: number; lacking: string[] };

export class NodeImages {
  #reflector: Reflector<NodeJson, NodeFacts>;
  #nodes = new Map<string, NodeFacts>();
  #image: string;
  #started = false;

  constructor(options: { list: ListFn<NodeJson>; watch: WatchFn; image: string; tolerations: Toleration[]; log?: ReflectorLog }) {
    this.#image = normalizeImage(options.image);
    this.#reflector = new Reflector<NodeJson, NodeFacts>({
      name: 'nodes',
      list: options.list,
      watch: options.watch,
      ...(options.log ? { log: options.log } : {}),
      slim: (raw) => {
        const name = raw.metadata?.name;
        if (!name) return undefined;
        const ready = raw.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
        const taints = (raw.spec?.taints ?? []).filter((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
        const eligible = ready && !raw.spec?.unschedulable && taints.every((t) => tolerates(options.tolerations, t));
        const images = new Set((raw.status?.images ?? []).flatMap((i) => i.names ?? []).map(normalizeImage));
        const resourceVersion = raw.metadata?.resourceVersion ?? '';
        return { key: name, obj: { name, resourceVersion, eligible, images }, resourceVersion };
      },
      handler: {
        add: (k, n) => void this.#nodes.set(k, n),
        update: (k, n) => void this.#nodes.set(k, n),
        delete: (k) => void this.#nodes.delete(k),
      },
    });
  }

  start(): void {
    this.#started = true;
    this.#reflector.start();
  }

  stop(): Promise<void> {
    return this.#reflector.stop();
  }

  /** Eligible nodes, and those of them without the sandbox image; undefined before the first list (or when not watched). */
  summary(): NodeImagesSummary | undefined {
    if (!this.#started || !this.#reflector.stats.synced) return undefined;
    const eligible = [...this.#nodes.values()].filter((n) => n.eligible);
    return {
      eligible: eligible.length,
      lacking: eligible
        .filter((n) => !n.images.has(this.#image))
        .map((n) => n.name)
        .sort(),
    };
  }
}
