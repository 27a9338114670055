// A deliberately small Kubernetes REST client for the test tooling (fake node, test helpers). It is kept
// apart from @kubernetes/client-node so the tools that check the service do not share its code paths.

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Agent, request } from 'undici';
import type { WireList, WireMeta } from '../../src/domain/wire.ts';

/** Any API object as JSON (src/domain/wire.ts): its metadata typed, and named (every stored object is); its body per kind. */
export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: WireMeta & { name: string };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [key: string]: unknown;
};

export class KubeError extends Error {
  status: number;
  body: string;
  constructor(method: string, path: string, status: number, body: string) {
    super(`${method} ${path} -> ${status}: ${body.slice(0, 500)}`);
    this.status = status;
    this.body = body;
  }
}

export type WatchEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'; object: KubeObject };

export class KubeHttp {
  readonly server: string;
  #token: string;
  #agent: Agent;

  constructor(server: string, token: string, caFile: string) {
    this.server = server;
    this.#token = token;
    this.#agent = new Agent({ connect: { ca: readFileSync(caFile) }, connections: 64 });
  }

  async request<T = KubeObject>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const res = await request(this.server + path, {
      method: method as 'GET',
      dispatcher: this.#agent,
      headers: { authorization: `Bearer ${this.#token}`, 'content-type': contentType, accept: 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new KubeError(method, path, res.statusCode, text);
    return JSON.parse(text) as T;
  }

  get<T = KubeObject>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  /** GET that answers undefined on 404. */
  async find<T = KubeObject>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (err) {
      if (err instanceof KubeError && err.status === 404) return undefined;
      throw err;
    }
  }

  post<T = KubeObject>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  mergePatch<T = KubeObject>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, body, 'application/merge-patch+json');
  }

  /** DELETE that ignores 404. */
  async delete(path: string, options: Record<string, unknown> = {}): Promise<void> {
    try {
      await this.request('DELETE', path, { kind: 'DeleteOptions', apiVersion: 'v1', ...options });
    } catch (err) {
      if (!(err instanceof KubeError && err.status === 404)) throw err;
    }
  }

  async list(path: string): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    const list = await this.get<WireList<KubeObject>>(path);
    return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? '' };
  }

  /**
   * Lists then watches `path` until `signal` aborts, reconnecting (and relisting on 410 or errors).
   * `onSync` receives each full list; `onEvent` each event after it.
   */
  async informer(
    path: string,
    handlers: { onSync: (items: KubeObject[]) => void; onEvent: (event: WatchEvent) => void; onError?: (err: unknown) => void },
    signal: AbortSignal,
  ): Promise<void> {
    let resourceVersion = '';
    while (!signal.aborted) {
      try {
        if (resourceVersion === '') {
          const listed = await this.list(path);
          resourceVersion = listed.resourceVersion;
          handlers.onSync(listed.items);
        }
        const sep = path.includes('?') ? '&' : '?';
        const res = await request(
          `${this.server}${path}${sep}watch=true&allowWatchBookmarks=true&resourceVersion=${resourceVersion}&timeoutSeconds=60`,
          {
            dispatcher: this.#agent,
            headers: { authorization: `Bearer ${this.#token}` },
            signal,
          },
        );
        if (res.statusCode !== 200) {
          await res.body.dump();
          resourceVersion = '';
          continue;
        }
        for await (const line of createInterface({ input: res.body })) {
          if (line === '') continue;
          const event = JSON.parse(line) as WatchEvent;
          if (event.type === 'ERROR') {
            resourceVersion = '';
            break;
          }
          if (event.object.metadata.resourceVersion) resourceVersion = event.object.metadata.resourceVersion;
          if (event.type !== 'BOOKMARK') handlers.onEvent(event);
        }
      } catch (err) {
        if (signal.aborted) return;
        resourceVersion = '';
        handlers.onError?.(err);
        await new Promise((ok) => setTimeout(ok, 500));
      }
    }
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

export function kubeFromState(state: { server: string; tokens: { admin: string }; dir: string }): KubeHttp {
  return new KubeHttp(state.server, state.tokens.admin, `${state.dir}/pki/apiserver.crt`);
}
