// A sandbox's container logs, read through the API server's pod log endpoint (which asks kubelet),
// with its refusals as this service's answers.

import { podName, podPath } from '../domain/sandbox.ts';
import { HttpError, sandboxNotFound } from '../http/errors.ts';
import type { Kube } from '../kube/client.ts';
import { KubeApiError } from '../kube/errors.ts';
import { fromKube } from './kube-refusals.ts';

export type LogQuery = { container: string; tailLines: number; follow: boolean };

export type ReadLogs = (id: string, query: LogQuery, signal: AbortSignal) => Promise<NodeJS.ReadableStream>;

export function logReader(kube: Pick<Kube, 'stream'>, namespace: string): ReadLogs {
  return async (id, q, signal) => {
    const query = new URLSearchParams({ container: q.container, tailLines: String(q.tailLines) });
    if (q.follow) query.set('follow', 'true');
    try {
      return await kube.stream(`${podPath(namespace, id)}/log?${query}`, signal);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) throw sandboxNotFound(id);
      // 400: kubelet's "container ... is waiting to start", an unknown container, a pod on no node yet.
      if (err instanceof KubeApiError && err.status === 400)
        throw new HttpError('logs_unavailable', `Sandbox '${id}': ${err.body.message ?? err.message}`);
      throw fromKube(err, 'pod', `read the logs of pod ${podName(id)}`);
    }
  };
}
