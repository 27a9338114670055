// The deployment's limits on sandboxes (MAX_SANDBOXES, MAX_SANDBOXES_PER_THREAD), counted from the view
// and the creates in flight, checked before a create writes anything.

import type { Config } from '../config.ts';
import type { SandboxRequest } from '../domain/request.ts';
import { HttpError } from '../http/errors.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';

export class Limits {
  #limits: Config['limits'];
  #view: Pick<SandboxView, 'count'>;

  constructor(limits: Config['limits'], view: Pick<SandboxView, 'count'>) {
    this.#limits = limits;
    this.#view = view;
  }

  /** Throws 429 `limit_reached` when one more sandbox (beside `inflight` creates) would pass a limit. */
  check(req: SandboxRequest, inflight: number): void {
    const { maxSandboxes, maxPerThread } = this.#limits;
    if (maxSandboxes > 0) {
      const n = this.#view.count((r) => !r.deleting) + inflight;
      if (n >= maxSandboxes) {
        throw new HttpError('limit_reached', `The limit of ${maxSandboxes} sandboxes (MAX_SANDBOXES) is reached; delete one first`, {
          headers: { 'retry-after': '30' },
        });
      }
    }
    if (maxPerThread > 0 && this.#view.count((r) => !r.deleting && r.threadId === req.threadId) >= maxPerThread) {
      throw new HttpError('limit_reached', `Thread '${req.threadId}' already has ${maxPerThread} sandboxes (MAX_SANDBOXES_PER_THREAD)`, {
        headers: { 'retry-after': '30' },
      });
    }
  }
}
