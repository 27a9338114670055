// Binds the view's list and watch functions to the Kubernetes API: the label selector is applied on
// both the list and the watch, lists are paged, watches ask for bookmarks and end server-side after a
// jittered few minutes (so connections are recycled and load balancers never cut them silently).

import { eventsPath, podsPath, routesPath, SANDBOX_SELECTOR, servicesPath } from '../domain/sandbox.ts';
import type { Kube } from '../kube/client.ts';
import { KubeApiError } from '../kube/errors.ts';
import type { EventJson, HttpRoute, NodeJson, PodJson, ServiceJson, WireList } from '../domain/wire.ts';
import { Gone, type ListFn, type WatchFn } from './reflector.ts';

/** Sandbox objects by label; kubelet's events of pods by field (events carry no labels). */
/** How long past its server-side deadline a silent watch is given before it counts as dead. */
export const WATCH_DEADLINE_GRACE_SECONDS = 30;

type Selector = { labelSelector: string } | { fieldSelector: string };

function list<T>(client: Kube, collection: string, selector: Selector): ListFn<T> {
  return async ({ limit, continueToken }) => {
    const query = new URLSearchParams({ ...selector, limit: String(limit) });
    if (continueToken) query.set('continue', continueToken);
    const res = await client.request('GET', `${collection}?${query}`);
    const body = res.body as WireList<T>;
    return {
      items: body.items ?? [],
      resourceVersion: body.metadata?.resourceVersion ?? '',
      continueToken: body.metadata?.continue || undefined,
    };
  };
}

function watch(client: Kube, collection: string, selector: Selector, random: () => number): WatchFn {
  return (resourceVersion, onEvent, onDone) => {
    const timeoutSeconds = 240 + Math.floor(random() * 120);
    const query = new URLSearchParams({
      watch: 'true',
      ...selector,
      allowWatchBookmarks: 'true',
      resourceVersion,
      timeoutSeconds: String(timeoutSeconds),
    });
    return client.watch(
      `${collection}?${query}`,
      (type, object) => onEvent(type as Parameters<typeof onEvent>[0], object),
      // The API server may refuse a too-old resourceVersion with HTTP 410 before the stream starts.
      (err) => onDone(err instanceof KubeApiError && err.status === 410 ? new Gone(err.message) : err),
      // A quiet watch is not a dead one: a namespace with no change sends nothing, and the API server
      // sends bookmarks only for watches its cache serves (never for events, which it does not cache).
      // Only a watch still open past its own deadline is dead; the API probe sees a frozen server sooner.
      (timeoutSeconds + WATCH_DEADLINE_GRACE_SECONDS) * 1000,
    );
  };
}

export function kubeSources(client: Kube, namespace: string, random: () => number = Math.random) {
  const sandboxes = { labelSelector: SANDBOX_SELECTOR };
  const podEvents = { fieldSelector: 'involvedObject.kind=Pod' };
  return {
    listPods: list<PodJson>(client, podsPath(namespace), sandboxes),
    watchPods: watch(client, podsPath(namespace), sandboxes, random),
    listServices: list<ServiceJson>(client, servicesPath(namespace), sandboxes),
    watchServices: watch(client, servicesPath(namespace), sandboxes, random),
    listEvents: list<EventJson>(client, eventsPath(namespace), podEvents),
    watchEvents: watch(client, eventsPath(namespace), podEvents, random),
  };
}

/** Gateway mode: the sandboxes' HTTPRoutes, by the sandbox labels. */
export function routeSources(client: Kube, namespace: string, random: () => number = Math.random) {
  const sandboxes = { labelSelector: SANDBOX_SELECTOR };
  return {
    list: list<HttpRoute>(client, routesPath(namespace), sandboxes),
    watch: watch(client, routesPath(namespace), sandboxes, random),
  };
}

/** The nodes sandboxes may run on: those with the labels of SANDBOX_NODE_SELECTOR. */
export function nodeSources(client: Kube, nodeSelector: Record<string, string>, random: () => number = Math.random) {
  const selector = {
    labelSelector: Object.entries(nodeSelector)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
  };
  return { list: list<NodeJson>(client, '/api/v1/nodes', selector), watch: watch(client, '/api/v1/nodes', selector, random) };
}
