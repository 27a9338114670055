// The errors of the Kubernetes transport, as this project's own types (client-node's are not used), and
// the few questions every caller asks of them.

import type { V1Status } from '@kubernetes/client-node';
import type { Wire } from '../domain/wire.ts';

/** The cluster (or the kubeconfig) lacks what this configuration needs: the service cannot start. */
export class StartupError extends Error {}

export class KubeconfigError extends StartupError {}

/** DeleteOptions for every delete here: dependents (a pod's service) are collected in the background. */
export const DELETE_IN_BACKGROUND = { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background' } as const;

/** An error answer of the API server: the HTTP status and its V1Status body (parsed). */
export class KubeApiError extends Error {
  readonly status: number;
  readonly body: KubeStatus;
  readonly method: string;
  readonly path: string;
  constructor(method: string, path: string, status: number, body: KubeStatus) {
    super(body.message ?? `${method} ${path}: HTTP ${status}`);
    this.name = 'KubeApiError';
    this.status = status;
    this.body = body;
    this.method = method;
    this.path = path;
  }
}

/** The API server's answer to a refused request (a Status object). */
export type KubeStatus = Wire<V1Status>;

/** The API server could not be reached or did not answer in time. */
export class KubeUnavailableError extends Error {
  readonly method: string;
  readonly path: string;
  constructor(method: string, path: string, cause: unknown) {
    const c = cause as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } };
    const what = c.name === 'TimeoutError' ? 'timed out' : (c.cause?.code ?? c.code ?? c.cause?.message ?? c.message ?? String(cause));
    super(`${method} ${path}: ${what}`, { cause });
    this.name = 'KubeUnavailableError';
    this.method = method;
    this.path = path;
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeApiError && err.status === 404;
export const isAlreadyExists = (err: unknown): boolean =>
  err instanceof KubeApiError && err.status === 409 && err.body.reason === 'AlreadyExists';
export const isConflict = (err: unknown): boolean => err instanceof KubeApiError && err.status === 409;
export const isForbidden = (err: unknown): boolean => err instanceof KubeApiError && err.status === 403;
