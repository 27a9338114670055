// The API's hot path alone, without a cluster: the whole service over the in-memory API
// (test/fake-kube.ts) holding `count` Ready sandboxes, on a port, for profiling and A/B runs of status
// and list answers (the bench's status row measures the same path against the real control plane).
//   node [--cpu-prof] bench/api-engine.ts <port> [count]

import { loadConfig } from '../src/config.ts';
import { silentLogger } from '../src/log.ts';
import { start } from '../src/service.ts';
import { FakeKube } from '../test/fake-kube.ts';

const [portArg = '0', countArg = '1000'] = process.argv.slice(2);
const kube = new FakeKube(['bench']);
const labels = (id: string) => ({ app: 'deer-flow-sandbox', 'sandbox-id': id });
for (let i = 0; i < Number(countArg); i++) {
  kube.put('pods', 'bench', { metadata: { name: `sandbox-s${i}`, labels: labels(`s${i}`) } });
  kube.put('services', 'bench', { metadata: { name: `sandbox-s${i}-svc`, labels: labels(`s${i}`) }, spec: { type: 'ClusterIP' } });
  kube.ready('bench', `sandbox-s${i}`);
}
const config = loadConfig({
  K8S_NAMESPACE: 'bench',
  PORT: portArg,
  HOST: '127.0.0.1',
  SANDBOX_SERVICE_TYPE: 'ClusterIP',
  SKILLS_HOST_PATH: '/s',
  PROVISIONER_ALLOW_ANONYMOUS: 'true',
  LOG_LEVEL: 'warn',
});
const service = await start(config, silentLogger(), { kube });
await service.view.synced;
console.log(`listening on ${service.url} with ${service.view.size} sandboxes`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(0));
