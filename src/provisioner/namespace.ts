// The sandbox namespace: made when missing and allowed (CREATE_NAMESPACE), checked at every housekeeping
// round, and made again when a create finds it gone under the running service. What is wrong with it
// is kept for /readyz.

import type { Config } from '../config.ts';
import { namespacePath } from '../domain/sandbox.ts';
import { HttpError } from '../http/errors.ts';
import type { Kube } from '../kube/client.ts';
import { isConflict, isForbidden, isNotFound } from '../kube/errors.ts';
import type { Logger } from '../log.ts';

/** The namespace could not be made ready; `final` when retrying cannot help (not allowed to create it). */
export class NamespaceError extends Error {
  readonly final: boolean;
  constructor(message: string, final: boolean) {
    super(message);
    this.final = final;
  }
}

export class SandboxNamespace {
  #config: Config;
  #kube: Kube;
  #log: Logger;
  #ns: string;
  #saidNamespaceUnreadable = false;
  /** What is wrong with the sandbox namespace since the last check (undefined: nothing known). */
  problem: string | undefined;

  constructor(deps: { config: Config; kube: Kube; log: Logger }) {
    this.#config = deps.config;
    this.#kube = deps.kube;
    this.#log = deps.log;
    this.#ns = deps.config.namespace;
  }

  /**
   * A create found the namespace gone (deleted under the running service): made again when this
   * identity may (then the create is retried once), else a 503 `namespace_missing` that says why.
   */
  async restore(refusal: HttpError): Promise<void> {
    this.#log.error({ namespace: this.#ns }, `the sandbox namespace ${this.#ns} is gone: ${refusal.message}`);
    try {
      await this.ensure();
    } catch (err) {
      throw new HttpError('namespace_missing', err instanceof Error ? err.message : String(err), {
        headers: refusal.headers,
        extra: { namespace: this.#ns },
        cause: err,
      });
    }
  }

  /** Makes sure the namespace exists (creating it when allowed), then that its default service account does. */
  async ensure(): Promise<void> {
    try {
      await this.#ensure();
      this.problem = undefined;
    } catch (err) {
      this.problem = err instanceof Error ? err.message : String(err);
      throw err;
    }
  }

  async #ensure(): Promise<void> {
    const ns = this.#ns;
    try {
      await this.#kube.request('GET', namespacePath(ns));
      return;
    } catch (err) {
      if (isForbidden(err)) {
        if (!this.#saidNamespaceUnreadable)
          this.#log.info({ namespace: ns }, 'cannot read namespaces (namespaced RBAC); assuming the namespace exists');
        this.#saidNamespaceUnreadable = true;
        return;
      }
      if (!isNotFound(err)) throw err;
    }
    if (!this.#config.createNamespace) throw new NamespaceError(`namespace ${ns} does not exist and CREATE_NAMESPACE=false`, true);
    try {
      await this.#kube.request('POST', '/api/v1/namespaces', {
        body: {
          apiVersion: 'v1',
          kind: 'Namespace',
          metadata: { name: ns, labels: { 'app.kubernetes.io/name': 'deer-flow', 'app.kubernetes.io/component': 'sandbox' } },
        },
      });
      this.#log.info({ namespace: ns }, 'created namespace');
    } catch (err) {
      if (isForbidden(err)) {
        throw new NamespaceError(
          `namespace ${ns} does not exist and the provisioner may not create it (RBAC: ${(err as Error).message}); create it, or grant the optional ClusterRole in deploy/`,
          true,
        );
      }
      if (!isConflict(err)) throw err;
    }
    // Pods are refused until the service account controller has made the namespace's default account.
    for (let i = 0; i < 100; i++) {
      try {
        await this.#kube.request('GET', `${namespacePath(ns)}/serviceaccounts/default`);
        return;
      } catch (err) {
        if (isForbidden(err)) return;
        if (!isNotFound(err)) throw err;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
