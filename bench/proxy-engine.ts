// The proxy engine alone, without a cluster: the service's HTTP server and SandboxProxy over a view
// that holds one sandbox (fed by a fixed list and a silent watch), in front of the stand-in sandbox.
// For profiling and A/B runs of the proxy's hot path:
//   node bench/proxy-engine.ts upstream <port>        the stand-in sandbox alone on <port>
//   node bench/proxy-engine.ts proxy <port> <upstream port>   /sandboxes/bench/... on <port>

import type { AddressInfo } from 'node:net';
import { loadConfig } from '../src/config.ts';
import { Capabilities } from '../src/http/capability.ts';
import { createHttpServer } from '../src/http/server.ts';
import { silentLogger } from '../src/log.ts';
import { createMetrics, proxyStats, requestObserver } from '../src/observe/metrics.ts';
import { SandboxProxy } from '../src/proxy/proxy.ts';
import { SandboxView } from '../src/watch/sandbox-view.ts';
import { startStandin } from '../tools/cluster/sandbox-standin.ts';

const [mode, portArg = '0', upstreamArg = '0'] = process.argv.slice(2);
if (mode === 'upstream') {
  const upstream = await startStandin({ namespace: 'bench', pod: 'sandbox-bench', sandboxId: 'bench' }, Number(portArg));
  console.log(`listening on ${(upstream.address() as AddressInfo).port}`);
  await new Promise(() => undefined);
}
const port = Number(portArg);
const nodePort = Number(upstreamArg);
const labels = { app: 'deer-flow-sandbox', 'sandbox-id': 'bench' };
const pod = {
  metadata: { name: 'sandbox-bench', uid: 'u1', resourceVersion: '1', labels, creationTimestamp: new Date().toISOString() },
  status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
};
const service = {
  metadata: { name: 'sandbox-bench-svc', uid: 's1', resourceVersion: '1', labels },
  spec: { ports: [{ name: 'http', port: 8080, nodePort }] },
};
const silent = async () => ({ abort: () => undefined });
const view = new SandboxView({
  listPods: async () => ({ items: [pod], resourceVersion: '1', continueToken: undefined }),
  listServices: async () => ({ items: [service], resourceVersion: '1', continueToken: undefined }),
  watchPods: silent,
  watchServices: silent,
});
view.start();
await view.synced;

const config = loadConfig({ NODE_HOST: '127.0.0.1', PROVISIONER_ALLOW_ANONYMOUS: 'true', LOG_LEVEL: 'silent' });
const metrics = createMetrics(() => view);
const proxy = new SandboxProxy({
  config,
  view,
  log: silentLogger(),
  capabilities: new Capabilities([]),
  trusted: () => false,
  stats: proxyStats(metrics),
  activity: { touch: () => undefined },
});
const rows = proxy.routes();
const server = createHttpServer({ routes: rows.routes, upgrades: rows.upgrades, log: silentLogger(), observe: requestObserver(metrics) });
server.listen(port, '127.0.0.1', () =>
  console.log(`listening on ${(server.address() as AddressInfo).port}, upstream 127.0.0.1:${nodePort}`),
);
// A clean exit on SIGINT/SIGTERM, so --cpu-prof writes its profile.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(0));
