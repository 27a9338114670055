// What a running local cluster is: its folder, addresses, credentials and processes, as cluster.ts
// writes it to the state dir and every tool that uses the cluster reads it. Types only: a tool that
// needs the cluster's shape imports it from here, not from cluster.ts (no cycle through the starter).

import type { PodNetwork } from './pod-network.ts';

/** Tokens the API server accepts (static token file). Tests use the restricted ones for RBAC checks. */
export type ClusterTokens = { admin: string; nobody: string };

export type ClusterState = {
  dir: string;
  /** kubectl of the same version as the API server (built with it; `kubectl` from PATH with KUBEBUILDER_ASSETS). */
  kubectl: string;
  kubeconfig: string;
  server: string;
  etcdUrl: string;
  tokens: ClusterTokens;
  fakeNodeControl: string;
  controllerManagerPort: number;
  ports: { etcd: number; etcdPeer: number; api: number; controllerManager: number; fakeNodeControl: number };
  /** The pods' network namespace and addresses (pod-network.ts). */
  podNetwork: PodNetwork;
  /** Traefik and its Gateway, once gateway.ts started them. */
  gateway?: { url: string; port: number; parentRef: string; pid: number };
  pids: Record<string, number>;
};
