// The one place that turns configuration into a @kubernetes/client-node client: kubeconfig or in-cluster
// config, the K8S_API_SERVER override (keeping TLS verification), and a pooled JSON transport with a
// per-request timeout whose errors are this project's own (errors.ts).

import { existsSync, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import type https from 'node:https';
import { KubeConfig, type Cluster } from '@kubernetes/client-node';
import { Agent, request as undiciRequest } from 'undici';
import type { Config } from '../config.ts';
import { KubeApiError, KubeconfigError, KubeUnavailableError, type KubeStatus } from './errors.ts';

/** Loads the kubeconfig named by KUBECONFIG_PATH, else the in-cluster config. Fails with one clear line. */
export function loadKubeConfig(config: Pick<Config, 'kubeconfigPath' | 'apiServer' | 'apiServerInsecure'>): {
  kc: KubeConfig;
  source: string;
} {
  const kc = new KubeConfig();
  const path = config.kubeconfigPath;
  let source: string;
  if (existsSync(path)) {
    if (statSync(path).isDirectory()) {
      throw new KubeconfigError(
        `KUBECONFIG_PATH=${path} is a directory, expected a kubeconfig file (mount the file itself, e.g. ~/.kube/config:/root/.kube/config:ro)`,
      );
    }
    try {
      readFileSync(path);
      kc.loadFromFile(path);
    } catch (err) {
      throw new KubeconfigError(`KUBECONFIG_PATH=${path} could not be read as a kubeconfig: ${(err as Error).message.split('\n')[0]}`);
    }
    source = path;
  } else if (process.env['KUBERNETES_SERVICE_HOST']) {
    kc.loadFromCluster();
    source = 'in-cluster service account';
  } else {
    throw new KubeconfigError(
      `no kubeconfig at KUBECONFIG_PATH=${path}, and not running inside a cluster (KUBERNETES_SERVICE_HOST unset): set KUBECONFIG_PATH or KUBECONFIG to your kubeconfig`,
    );
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubeconfigError(`kubeconfig ${source} has no current context/cluster`);
  if (config.apiServer) {
    replaceCluster(kc, cluster, overrideServer(cluster, config.apiServer, config.apiServerInsecure));
  }
  return { kc, source };
}

/**
 * K8S_API_SERVER replaces the kubeconfig's address (typically 127.0.0.1 -> host.docker.internal). TLS stays
 * verified against the kubeconfig's CA; when the original address was a DNS name, it is kept as the TLS
 * server name so the API server's certificate still matches. K8S_API_SERVER_INSECURE=true skips
 * verification, as the reference provisioner always did.
 */
export function overrideServer(cluster: Cluster, server: string, insecure: boolean): Cluster {
  const originalHost = new URL(cluster.server).hostname;
  const tlsServerName =
    cluster.tlsServerName ?? (isIP(originalHost) === 0 && originalHost !== new URL(server).hostname ? originalHost : undefined);
  return {
    ...cluster,
    server: server.replace(/\/+$/, ''),
    skipTLSVerify: insecure || cluster.skipTLSVerify,
    ...(tlsServerName ? { tlsServerName } : {}),
  };
}

function replaceCluster(kc: KubeConfig, old: Cluster, next: Cluster): void {
  kc.clusters = kc.clusters.map((c) => (c.name === old.name ? next : c));
}

/**
 * A JSON client for the API server. Authentication comes from the KubeConfig on every request (tokens
 * rotate), but connections are pooled in one keep-alive agent: the library builds a new agent, and so a
 * new TLS handshake, per request, which would dominate the cost of a create.
 */
export type KubeResponse = { status: number; body: unknown; text: string };

export type KubeRequestOptions = { body?: unknown; contentType?: string; timeoutMs?: number; signal?: AbortSignal };

/** What the rest of the service uses of the API server (KubeClient; in unit tests, an in-memory fake). */
export interface Kube {
  readonly server: string;
  readonly source: string;
  request(method: string, path: string, options?: KubeRequestOptions): Promise<KubeResponse>;
  watch(
    path: string,
    onEvent: (type: string, object: unknown) => void,
    onDone: (err: unknown) => void,
    idleMs?: number,
  ): Promise<{ abort: () => void }>;
  probe(timeoutMs: number): Promise<void>;
  /** A GET whose answer is streamed (a pod's log, followed): its body, once the status is 200. */
  stream(path: string, signal: AbortSignal): Promise<NodeJS.ReadableStream>;
  close(): Promise<void>;
}

export class KubeClient implements Kube {
  readonly kc: KubeConfig;
  readonly server: string;
  readonly source: string;
  #timeoutMs: number;
  #agent: Agent | undefined;

  constructor(kc: KubeConfig, source: string, timeoutMs: number) {
    this.kc = kc;
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new KubeconfigError(`kubeconfig ${source} has no current cluster`);
    this.server = cluster.server.replace(/\/+$/, '');
    this.source = source;
    this.#timeoutMs = timeoutMs;
  }

  async #prepare(): Promise<{ headers: Record<string, string>; agent: Agent }> {
    const opts: https.RequestOptions = {};
    await this.kc.applyToHTTPSOptions(opts);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(opts.headers ?? {})) if (v !== undefined) headers[k.toLowerCase()] = String(v);
    this.#agent ??= new Agent({
      connections: 64,
      keepAliveTimeout: 30_000,
      connect: {
        ...(opts.ca ? { ca: opts.ca as string | Buffer } : {}),
        ...(opts.cert ? { cert: opts.cert as string | Buffer } : {}),
        ...(opts.key ? { key: opts.key as string | Buffer } : {}),
        ...(opts.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
        ...((opts as { servername?: string }).servername ? { servername: (opts as { servername?: string }).servername } : {}),
      },
    });
    return { headers, agent: this.#agent };
  }

  /** Sends one request; throws KubeApiError for error answers and KubeUnavailableError when unreachable. */
  async request(method: string, path: string, options: KubeRequestOptions = {}): Promise<KubeResponse> {
    const { headers, agent } = await this.#prepare();
    headers['accept'] = 'application/json';
    headers['user-agent'] = 'sandbox-provisioner';
    if (options.body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.#timeoutMs);
    let res;
    try {
      res = await undiciRequest(this.server + path, {
        method: method as 'GET',
        headers,
        dispatcher: agent,
        signal: options.signal ? AbortSignal.any([timeout, options.signal]) : timeout,
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      });
    } catch (err) {
      throw new KubeUnavailableError(method, path, err);
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      throw new KubeUnavailableError(method, path, err);
    }
    if (res.statusCode >= 400) throw new KubeApiError(method, path, res.statusCode, parseStatus(text));
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = { message: text.slice(0, 500) };
    }
    return { status: res.statusCode, body, text };
  }

  /**
   * Streams a watch (`path` must carry `watch=true`): one onEvent call per JSON line, then onDone once,
   * with undefined when the server ended the watch, or the error. A watch silent for `idleMs` (no
   * event and no bookmark) is treated as dead: callers pass more than the watch's `timeoutSeconds`.
   */
  async watch(
    path: string,
    onEvent: (type: string, object: unknown) => void,
    onDone: (err: unknown) => void,
    idleMs = 600_000,
  ): Promise<{ abort: () => void }> {
    const { headers, agent } = await this.#prepare();
    const controller = new AbortController();
    let done = false;
    const finish = (err: unknown): void => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      controller.abort();
      onDone(err);
    };
    let idle = setTimeout(() => finish(new Error(`watch idle for ${idleMs} ms`)), idleMs);
    const touch = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => finish(new Error(`watch idle for ${idleMs} ms`)), idleMs);
    };
    undiciRequest(this.server + path, {
      method: 'GET',
      headers: { ...headers, accept: 'application/json' },
      dispatcher: agent,
      signal: controller.signal,
      bodyTimeout: 0,
    })
      .then(async (res) => {
        if (res.statusCode !== 200) {
          return finish(new KubeApiError('WATCH', path, res.statusCode, parseStatus(await res.body.text())));
        }
        let pending = '';
        for await (const chunk of res.body) {
          touch();
          pending += (chunk as Buffer).toString('utf8');
          let nl: number;
          while ((nl = pending.indexOf('\n')) >= 0) {
            const line = pending.slice(0, nl);
            pending = pending.slice(nl + 1);
            if (line.trim() === '') continue;
            const event = JSON.parse(line) as { type: string; object: unknown };
            onEvent(event.type, event.object);
            if (done) return;
          }
        }
        finish(undefined);
      })
      .catch((err: unknown) => finish(done ? undefined : new KubeUnavailableError('WATCH', path, err)));
    return { abort: () => finish(undefined) };
  }

  async stream(path: string, signal: AbortSignal): Promise<NodeJS.ReadableStream> {
    const { headers, agent } = await this.#prepare();
    let res;
    try {
      res = await undiciRequest(this.server + path, {
        method: 'GET',
        headers: { ...headers, accept: '*/*', 'user-agent': 'sandbox-provisioner' },
        dispatcher: agent,
        signal,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: 0,
      });
    } catch (err) {
      throw new KubeUnavailableError('GET', path, err);
    }
    if (res.statusCode >= 400) throw new KubeApiError('GET', path, res.statusCode, parseStatus(await res.body.text()));
    return res.body;
  }

  /** Any answer of the API server, within `timeoutMs` (GET /version: cheap, and open to every identity). */
  async probe(timeoutMs: number): Promise<void> {
    try {
      await this.request('GET', '/version', { timeoutMs });
    } catch (err) {
      if (!(err instanceof KubeApiError)) throw err; // an HTTP error is still an answer
    }
  }

  async close(): Promise<void> {
    await this.#agent?.close();
  }
}

/** The V1Status of an error answer; a body that is not one becomes its message. */
function parseStatus(text: string): KubeStatus {
  try {
    const body = JSON.parse(text) as unknown;
    if (body !== null && typeof body === 'object') return body as KubeStatus;
  } catch {
    // not JSON: the text itself is the message
  }
  return { message: text.slice(0, 500) };
}

export function makeKube(config: Config): KubeClient {
  const { kc, source } = loadKubeConfig(config);
  return new KubeClient(kc, source, config.k8sTimeoutMs);
}
