// The fake node's container logs, served as kubelet serves them: the API server's pod log endpoint
// (`kubectl logs`, the provisioner's GET /api/sandboxes/{id}/logs) asks the node at its InternalIP and
// kubelet port for /containerLogs/<namespace>/<pod>/<container>?tailLines=&follow=. The lines are the
// model's account of each container (what it ran, how it ended), as a runtime would have written them.

import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

type Log = { lines: string[]; followers: Set<ServerResponse> };

/** Lines kept per container (kubelet rotates its files; the model keeps a bounded tail). */
const KEPT = 5000;

export class ContainerLogs {
  #logs = new Map<string, Log>();
  #server: Server | undefined;

  write(namespace: string, pod: string, container: string, line: string): void {
    const k = `${namespace}/${pod}/${container}`;
    const log = this.#logs.get(k) ?? { lines: [], followers: new Set() };
    this.#logs.set(k, log);
    const text = `${new Date().toISOString()} ${line}\n`;
    log.lines.push(text);
    if (log.lines.length > KEPT) log.lines.splice(0, log.lines.length - KEPT);
    for (const res of log.followers) res.write(text);
  }

  /** A pod is gone: its logs go, and whoever follows them is ended. */
  forget(namespace: string, pod: string): void {
    for (const [k, log] of this.#logs)
      if (k.startsWith(`${namespace}/${pod}/`)) {
        for (const res of log.followers) res.end();
        this.#logs.delete(k);
      }
  }

  /** kubelet's HTTPS port on `host`, with the cluster's serving certificate (the API server does not verify it without a CA). */
  async listen(
    host: string,
    certFile: string,
    keyFile: string,
    waiting: (namespace: string, pod: string, container: string) => string | undefined,
  ): Promise<number> {
    this.#server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (req, res) => {
      const url = new URL(req.url ?? '/', 'https://node');
      const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
      if (req.method !== 'GET' || !m) {
        res.writeHead(404).end('404 page not found\n');
        return;
      }
      const [, namespace = '', pod = '', container = ''] = m;
      const known = this.#logs.get(`${namespace}/${pod}/${container}`);
      // kubelet's refusal for a container that never ran (the API server answers it as a 400 Status).
      const reason = known ? undefined : waiting(namespace, pod, container);
      if (reason) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(`container "${container}" in pod "${pod}" is waiting to start: ${reason}`);
        return;
      }
      const log = known ?? { lines: [], followers: new Set<ServerResponse>() };
      const tail = Number(url.searchParams.get('tailLines') ?? '-1');
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write((tail > 0 ? log.lines.slice(-tail) : tail === 0 ? [] : log.lines).join(''));
      if (url.searchParams.get('follow') !== 'true') return void res.end();
      this.#logs.set(`${namespace}/${pod}/${container}`, log);
      log.followers.add(res);
      res.on('close', () => log.followers.delete(res));
    });
    this.#server.listen(0, host);
    await new Promise<void>((resolve, reject) => {
      this.#server?.once('listening', resolve).once('error', reject);
    });
    return (this.#server.address() as AddressInfo).port;
  }

  close(): void {
    for (const log of this.#logs.values()) for (const res of log.followers) res.end();
    this.#server?.close();
  }
}
