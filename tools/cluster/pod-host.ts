// The processes of the local cluster's pods: runs inside the pod network's namespace (pod-network.ts)
// and listens on each pod's own address, as a container's app would. The fake node tells it, on a
// control port at the namespace's end of the link, when a pod's container starts (its app begins to
// answer `appStartMs` later: before that a connection is refused, as to a port nothing listens on)
// and when it stops.
//
//   ip netns exec <ns> node tools/cluster/pod-host.ts <control address> <control port>

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { startStandin, type StandinInfo } from './sandbox-standin.ts';

export const POD_HOST_PORT = 9099;

export type PodProcess = StandinInfo & {
  ip: string;
  port: number;
  /** From the container's start until the app answers. */
  appStartMs: number;
  /** False: the app answers, but its health endpoint (/v1/sandbox) fails, so readiness never passes. */
  healthy: boolean;
  /** The container's plain environment values. */
  env?: Record<string, string>;
  /** Its mounts backed by the node's disk: the directory each container path is. */
  mounts?: { containerPath: string; dir: string; readOnly: boolean }[];
};

type Running = { timer: NodeJS.Timeout | undefined; server: Promise<Server> | undefined; listeningAt: number | undefined };

const pods = new Map<string, Running>();

async function stop(ip: string): Promise<void> {
  const running = pods.get(ip);
  pods.delete(ip);
  if (!running) return;
  clearTimeout(running.timer);
  const server = await running.server?.catch(() => undefined);
  server?.closeAllConnections();
  server?.close();
  server?.emit('close');
}

async function start(p: PodProcess): Promise<void> {
  await stop(p.ip);
  const running: Running = { timer: undefined, server: undefined, listeningAt: undefined };
  pods.set(p.ip, running);
  const listen = (): Promise<void> => {
    running.server = startStandin(p, p.port, p.ip, { healthy: p.healthy, env: p.env ?? {}, mounts: p.mounts ?? [] });
    return running.server.then(
      () => void (running.listeningAt = Date.now()),
      (err: unknown) => console.error(`${p.ip}:${p.port}: ${String(err)}`),
    );
  };
  // An app that starts at once listens before the container is reported started.
  if (p.appStartMs <= 0) return listen();
  running.timer = setTimeout(() => void listen(), p.appStartMs);
}

async function body(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return text;
}

function control(req: IncomingMessage, res: ServerResponse): void {
  const ip = /^\/pods\/([0-9.]+)$/.exec(req.url ?? '')?.[1];
  const done = (status: number, text = ''): void => void res.writeHead(status).end(text);
  if (!ip) return done(404);
  // GET: when the pod's app began to answer (an oracle for benchmarks: epoch ms, or null).
  if (req.method === 'GET') return done(200, JSON.stringify({ listeningAt: pods.get(ip)?.listeningAt ?? null }));
  const work =
    req.method === 'PUT' ? body(req).then((b) => start(JSON.parse(b) as PodProcess)) : req.method === 'DELETE' ? stop(ip) : undefined;
  if (!work) return done(405);
  work.then(
    () => done(204),
    (err: unknown) => done(400, String(err)),
  );
}

if (import.meta.main) {
  const [address = '127.0.0.1', port = String(POD_HOST_PORT)] = process.argv.slice(2);
  createServer(control).listen(Number(port), address, () => console.log(`pod host: control on ${address}:${port}`));
  process.on('SIGTERM', () => process.exit(0));
}
