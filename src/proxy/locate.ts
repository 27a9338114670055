// The proxy's third step: where the sandbox is, from the watch view only (never from the request). A
// request to a sandbox that is starting is held (PROXY_WAIT_READY_SECONDS, or the client's
// X-Sandbox-Wait) until it is Ready, stuck or gone, or until its app answers on the pod's own address
// (PROXY_EARLY_READY: the request then goes to the pod). A sandbox that turned Ready a moment ago, by
// the view's own clock, may not be routed yet through its node port or Service (kube-proxy programs it
// a moment after Ready): the request waits until that upstream accepts a connection, then goes once.

import type { IncomingMessage } from 'node:http';
import type { Config } from '../config.ts';
import { settled, type SandboxRecord } from '../domain/record.ts';
import { capabilityPath, PLAIN_PREFIX, serviceOrigin } from '../domain/sandbox.ts';
import { HttpError, sandboxNotFound } from '../http/errors.ts';
import { parseSandboxId } from '../http/input.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { Access } from './access.ts';
import { AppCheck, podOrigin } from './app-check.ts';
import type { Entry } from './entry.ts';
import { WAIT_HEADER } from './headers.ts';
import type { Upstreams } from './upstream.ts';

/**
 * Where a request goes: the sandbox, its upstream origin, and the prefix the client sees it under; and
 * `release`, to call once the exchange is over (it counted as open from the moment it was let in).
 */
export type Target = { id: string; origin: string; prefix: string; record: SandboxRecord; release: () => void };

/** What goes away when the client does: a response or an upgraded socket. */
export type Closable = { once(event: 'close', listener: () => void): unknown; off(event: 'close', listener: () => void): unknown };

/** For this long after the view saw a sandbox turn Ready, its node port or Service may not route yet. */
export const JUST_READY_MS = 5000;

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

export class Locator {
  #config: Config;
  #view: SandboxView;
  #access: Access;
  #upstreams: Upstreams;
  #appCheck: AppCheck | undefined;
  /** Sandboxes (by id, for their pod uid) whose routed upstream has accepted a connection since Ready. */
  #routed = new Map<string, string>();

  #wake: ((id: string) => Promise<unknown>) | undefined;
  #open: (id: string) => () => void;

  constructor(deps: {
    config: Config;
    view: SandboxView;
    access: Access;
    upstreams: Upstreams;
    /** Wakes a suspended sandbox. */
    wake?: (id: string) => Promise<unknown>;
    /** Counts an exchange open to a sandbox (a held one too: it waits for that sandbox); answers its release. */
    open: (id: string) => () => void;
  }) {
    this.#config = deps.config;
    this.#wake = deps.wake;
    this.#open = deps.open;
    this.#view = deps.view;
    this.#access = deps.access;
    this.#upstreams = deps.upstreams;
    const { sandbox, proxy } = deps.config;
    if (proxy.earlyReady) {
      this.#appCheck = new AppCheck({ path: sandbox.probePath, port: sandbox.port, upstreams: deps.upstreams, view: deps.view });
      // Gateway mode routes through the sandbox's Service, which has it only once Ready: nothing to see early.
      if (!deps.config.gateway) this.#appCheck.watch();
    }
  }

  stop(): void {
    this.#appCheck?.stop();
  }

  /** Forgets what it knew of a sandbox that is gone or has a new pod. */
  forget(id: string): void {
    this.#routed.delete(id);
  }

  /** The upstream origin of a sandbox, from the view only. */
  origin(record: SandboxRecord): string | undefined {
    const p = this.#config.proxy;
    switch (p.upstream) {
      case 'nodeport':
        return record.nodePort === undefined ? undefined : `http://${p.upstreamHost}:${record.nodePort}`;
      case 'service':
        return record.hasService ? serviceOrigin(record.sandboxId, this.#config.namespace, this.#config.sandbox.port) : undefined;
      case 'pod':
        return record.podIP === undefined ? undefined : podOrigin(record.podIP, this.#config.sandbox.port);
    }
  }

  /**
   * Finds the sandbox and its upstream, waiting for readiness when asked; throws 4xx/5xx HttpErrors. A
   * request that may not reach it is answered as for an unknown sandbox: ids cannot be probed.
   */
  async locate(req: IncomingMessage, entry: Entry, client: Closable): Promise<Target> {
    const id = parseSandboxId(entry.rawId);
    const found = this.#view.get(id);
    if (!this.#access.allowed(req, entry, id, found) || !found) throw sandboxNotFound(id);
    const release = this.#open(id);
    try {
      return { ...(await this.#find(req, entry, id, found, client)), release };
    } catch (err) {
      release();
      throw err;
    }
  }

  async #find(req: IncomingMessage, entry: Entry, id: string, found: SandboxRecord, client: Closable): Promise<Omit<Target, 'release'>> {
    // A suspended sandbox wakes on its first request, which is held (as for one starting) until it answers.
    const waking = found.suspension !== undefined && this.#wake !== undefined;
    if (waking) await this.#wake?.(id);
    const { record, direct } =
      found.ready && !waking ? { record: found, direct: undefined } : await this.#waitReady(req, id, client, waking);
    const origin = direct ?? this.origin(record);
    if (!origin)
      throw new HttpError('sandbox_not_ready', `Sandbox '${id}' has no reachable address yet`, { headers: { 'retry-after': '2' } });
    if (!direct) await this.#routedYet(id, record, origin);
    const prefix =
      entry.form === 'plain' ? `${PLAIN_PREFIX}${id}` : entry.form === 'capability' ? capabilityPath(id, entry.tokens[0] ?? '') : '';
    return { id, origin, prefix, record };
  }

  /**
   * Just Ready, by the view's clock: waits (the rest of JUST_READY_MS at most) until the upstream
   * accepts a connection, once per pod; then the request goes once, whether it has a body or not.
   */
  async #routedYet(id: string, record: SandboxRecord, origin: string): Promise<void> {
    if (this.#routed.get(id) === record.podUid) return;
    const readyFor = this.#view.readyFor(id);
    if (readyFor === undefined || readyFor >= JUST_READY_MS) return;
    if (await this.#upstreams.whenAccepting(origin, JUST_READY_MS - readyFor)) this.#routed.set(id, record.podUid ?? '');
  }

  /**
   * Holds a request to a sandbox that is starting until it is Ready, stuck or gone, or until its app
   * answers; a stuck sandbox, or one still starting when the hold ends, answers 503 with the reason.
   */
  async #waitReady(
    req: IncomingMessage,
    id: string,
    client: Closable,
    waking = false,
  ): Promise<{ record: SandboxRecord; direct: string | undefined }> {
    const header = req.headers[WAIT_HEADER];
    const asked = header === undefined || header === '' ? NaN : Number(header);
    const p = this.#config.proxy;
    // X-Sandbox-Wait: 0 asks for an answer at once; any other number of seconds, up to PROXY_MAX_WAIT_READY_SECONDS.
    // A request that woke its sandbox waits for it at least WAKE_WAIT_SECONDS (a wake is a start the client did not ask for).
    const held = waking ? Math.max(p.waitReadyMs, this.#config.suspend.wakeWaitMs) : p.waitReadyMs;
    const waitMs = Number.isFinite(asked) && asked >= 0 ? Math.min(asked * 1000, p.maxWaitReadyMs) : held;
    let record = this.#view.get(id);
    if (waitMs > 0 && record && !settled(record) && !this.#direct(record)) {
      const gone = new AbortController();
      const onClose = (): void => gone.abort();
      client.once('close', onClose);
      try {
        record = await Promise.race([this.#view.waitFor(id, settled, waitMs, gone.signal), this.#appAnswers(id, waitMs, gone.signal)]);
      } finally {
        gone.abort();
        client.off('close', onClose);
      }
    }
    if (!record) throw sandboxNotFound(id);
    const direct = record.ready ? undefined : this.#direct(record);
    if (record.ready || direct) return { record, direct };
    throw new HttpError(
      'sandbox_not_ready',
      `Sandbox '${id}' is not ready (status ${record.status}${record.reason ? `, ${record.reason}` : ''})`,
      {
        headers: { 'retry-after': '2' },
        extra: { status: record.status, ...(record.reason ? { reason: record.reason } : {}) },
      },
    );
  }

  /** The pod's own address, once its app has answered (a sandbox not yet marked Ready by kubelet). */
  #direct(record: SandboxRecord): string | undefined {
    const answered = this.#appCheck !== undefined && record.answeredAt !== undefined && record.status === 'Running';
    return answered && record.podIP ? podOrigin(record.podIP, this.#config.sandbox.port) : undefined;
  }

  /** Resolves with the sandbox's record once its container runs and its app answers; never, without PROXY_EARLY_READY. */
  async #appAnswers(id: string, waitMs: number, signal: AbortSignal): Promise<SandboxRecord | undefined> {
    const check = this.#appCheck;
    if (!check) return never();
    const running = (r: SandboxRecord | undefined): boolean => r !== undefined && r.phase === 'Running' && r.podIP !== undefined;
    const record = await this.#view.waitFor(id, (r) => r === undefined || settled(r) || running(r), waitMs, signal);
    if (signal.aborted || !record || !running(record) || record.ready) return never();
    if (await check.until(id, record.podUid ?? '', record.podIP ?? '', signal)) return this.#view.get(id);
    return never();
  }
}
