// Gateway mode: a Gateway accepts a sandbox's HTTPRoute before its data plane routes it (Traefik answered
// `503 no available server` for about 240 ms after Accepted). So that Running means a request through the
// gateway reaches the sandbox, Running waits for the gateway itself to serve the route: for a sandbox whose
// pod is Ready and whose route is accepted, this asks the gateway (GATEWAY_PUBLIC_URL, the sandbox's
// capability path, the probe path) every 100 ms until the sandbox's app answers, then tells the view
// (routeServed). A gateway this service cannot reach (it is addressed differently from here) does not hold
// sandboxes back for ever: after GATEWAY_ROUTE_CHECK_SECONDS the route counts as served, with a warning.

import type { Config } from '../config.ts';
import { ROUTE_NOT_SERVED, type SandboxRecord } from '../domain/record.ts';
import { capabilityPath } from '../domain/sandbox.ts';
import type { Capabilities } from '../http/capability.ts';
import type { Logger } from '../log.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import { sleep } from './app-check.ts';
import type { Upstreams } from './upstream.ts';

const EVERY_MS = 100;

export class RouteCheck {
  #view: SandboxView;
  #upstreams: Upstreams;
  #capabilities: Capabilities;
  #log: Logger;
  #origin: string;
  #probePath: string;
  #limitMs: number;
  /** The polls under way, by sandbox id (for one pod uid each). */
  #polls = new Map<string, { podUid: string; stop: AbortController }>();
  #unsubscribe: () => void;

  constructor(deps: { config: Config; view: SandboxView; upstreams: Upstreams; capabilities: Capabilities; log: Logger }) {
    const { config } = deps;
    this.#view = deps.view;
    this.#upstreams = deps.upstreams;
    this.#capabilities = deps.capabilities;
    this.#log = deps.log;
    this.#origin = config.gateway?.publicUrl ?? '';
    this.#probePath = config.sandbox.probePath;
    this.#limitMs = config.gateway?.routeCheckMs ?? 0;
    this.#unsubscribe = deps.view.subscribe(({ id, record }) => {
      const waiting = record?.reason === ROUTE_NOT_SERVED && record.podUid !== undefined ? record.podUid : undefined;
      const poll = this.#polls.get(id);
      if (poll && poll.podUid !== waiting) {
        poll.stop.abort();
        this.#polls.delete(id);
      }
      if (record && waiting !== undefined && !this.#polls.has(id)) this.#start(record);
    });
    for (const record of deps.view.list((r) => r.reason === ROUTE_NOT_SERVED && r.podUid !== undefined)) this.#start(record);
  }

  #start(record: SandboxRecord): void {
    const { sandboxId: id, podUid = '', serviceUid = '' } = record;
    const stop = new AbortController();
    this.#polls.set(id, { podUid, stop });
    void this.#poll(id, podUid, serviceUid, stop.signal).finally(() => {
      if (this.#polls.get(id)?.stop === stop) this.#polls.delete(id);
    });
  }

  async #poll(id: string, podUid: string, serviceUid: string, signal: AbortSignal): Promise<void> {
    const path = `${capabilityPath(id, this.#capabilities.sign(id, serviceUid))}${this.#probePath}`;
    const deadline = Date.now() + this.#limitMs;
    while (!signal.aborted) {
      if (await this.#upstreams.answers(this.#origin, id, path, signal)) return this.#view.routeServed(id, podUid);
      if (Date.now() >= deadline) {
        this.#log.warn(
          { sandbox_id: id, gateway: this.#origin, waited_ms: this.#limitMs },
          'the gateway did not serve the sandbox’s route from here in time; counting it as served (is GATEWAY_PUBLIC_URL reachable from the provisioner?)',
        );
        return this.#view.routeServed(id, podUid);
      }
      await sleep(EVERY_MS, signal);
    }
  }

  stop(): void {
    this.#unsubscribe();
    for (const poll of this.#polls.values()) poll.stop.abort();
    this.#polls.clear();
  }
}
