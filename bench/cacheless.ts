// Baseline: the reference provisioner's way, in Node.js — every status query reads the service and the
// pod from the API server, and a list reads all services then each pod. Same transport as the service.
// Usage: cacheless.ts <port> <kubeconfig> <namespace>
import { createServer } from 'node:http';
import { loadConfig } from '../src/config.ts';
import type { PodJson, ServiceJson, WireList } from '../src/domain/wire.ts';
import { makeKube } from '../src/kube/client.ts';

const [port, kubeconfig, namespace] = process.argv.slice(2);
const config = loadConfig({ KUBECONFIG_PATH: kubeconfig, K8S_NAMESPACE: namespace });
const kube = makeKube(config);
const base = `/api/v1/namespaces/${namespace}`;

async function sandbox(id: string): Promise<Record<string, unknown> | undefined> {
  const svc = (await kube.request('GET', `${base}/services/sandbox-${id}-svc`).catch(() => undefined))?.body as ServiceJson | undefined;
  if (!svc) return undefined;
  const pod = (await kube.request('GET', `${base}/pods/sandbox-${id}`).catch(() => undefined))?.body as PodJson | undefined;
  return { sandbox_id: id, sandbox_url: `http://${svc.spec?.clusterIP}:8080`, status: pod?.status?.phase ?? 'NotFound' };
}

createServer((req, res) => {
  const send = (status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const id = /^\/api\/sandboxes\/([^/]+)$/.exec(req.url ?? '')?.[1];
  const work = id
    ? sandbox(id).then((s) => (s ? send(200, s) : send(404, { detail: 'not found' })))
    : kube.request('GET', `${base}/services?labelSelector=app%3Ddeer-flow-sandbox`).then(async (r) => {
        const items = (r.body as WireList<ServiceJson>).items ?? [];
        const out = [];
        for (const svc of items) {
          const sid = svc.metadata?.labels?.['sandbox-id'];
          if (sid) out.push(await sandbox(sid));
        }
        send(200, { sandboxes: out, count: out.length });
      });
  work.catch((err: unknown) => send(500, { detail: String(err) }));
}).listen(Number(port), '127.0.0.1', () => console.log('listening'));
