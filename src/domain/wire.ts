// Kubernetes API objects as they come off the wire: @kubernetes/client-node's models, as JSON.
//
// The service reads lists, watch events and write answers as JSON (src/kube/client.ts), not through the
// library's ObjectSerializer: that copies every field of every object on every watch event, for nothing the
// slim functions of record.ts need. So a model's Date fields hold the RFC 3339 strings the API server sent;
// Wire<T> is the model with that said in its type.

import type { CoreV1Event, V1ListMeta, V1Node, V1ObjectMeta, V1PersistentVolumeClaim, V1Pod, V1Service } from '@kubernetes/client-node';

/** T with every Date (at any depth) as the string JSON carries. */
export type Wire<T> = T extends Date
  ? string
  : T extends readonly (infer U)[]
    ? Wire<U>[]
    : T extends object
      ? { [K in keyof T]: Wire<T[K]> }
      : T;

export type WireMeta = Wire<V1ObjectMeta>;
export type PodJson = Wire<V1Pod>;
export type ServiceJson = Wire<V1Service>;
export type EventJson = Wire<CoreV1Event>;
export type NodeJson = Wire<V1Node>;
export type PersistentVolumeClaimJson = Wire<V1PersistentVolumeClaim>;

/**
 * A list answer: its items and the list's own metadata. The model calls the continue token `_continue`
 * (`continue` is a reserved word to its generator); the JSON calls it `continue`.
 */
export type WireList<T> = { items?: T[]; metadata?: Omit<Wire<V1ListMeta>, '_continue'> & { continue?: string } };

type Condition = { type?: string; status?: string; reason?: string; message?: string; lastTransitionTime?: string };

/**
 * A Gateway API HTTPRoute (gateway.networking.k8s.io/v1), the fields this service writes and reads. It and
 * the Gateway are the API types written here: client-node is generated from the core OpenAPI document and has no
 * models for CRDs, and the Gateway API project publishes its types for Go only.
 */
export type HttpRoute = {
  apiVersion?: string;
  kind?: string;
  metadata?: WireMeta;
  spec?: {
    parentRefs?: { group?: string; kind?: string; name?: string; namespace?: string; sectionName?: string }[];
    hostnames?: string[];
    rules?: {
      matches?: { path?: { type?: string; value?: string } }[];
      filters?: Record<string, unknown>[];
      backendRefs?: { name?: string; namespace?: string; port?: number }[];
    }[];
  };
  status?: {
    parents?: {
      parentRef?: { name?: string; namespace?: string; sectionName?: string };
      controllerName?: string;
      conditions?: Condition[];
    }[];
  };
};

/** A Gateway (gateway.networking.k8s.io/v1): only its status conditions are read (Programmed). */
export type Gateway = { apiVersion?: string; kind?: string; metadata?: WireMeta; status?: { conditions?: Condition[] } };
