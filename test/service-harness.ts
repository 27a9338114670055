// The whole service in-process over the in-memory API (test/fake-kube.ts), with a stand-in sandbox on
// loopback as every pod's upstream (PROXY_UPSTREAM=pod, the container port pointing at it): for unit
// tests that go through HTTP without a control plane.

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../src/config.ts';
import { silentLogger, type Logger } from '../src/log.ts';
import { start, type Service } from '../src/service.ts';
import { startStandin } from '../tools/cluster/sandbox-standin.ts';
import { FakeKube } from './fake-kube.ts';

export const NS = 'unit';

export async function setup(
  t: { after: (fn: () => Promise<void> | void) => void },
  env: Record<string, string> = {},
  options: { log?: Logger; upstream?: Server; now?: () => number } = {},
): Promise<{ kube: FakeKube; service: Service; upstream: Server }> {
  const upstream = options.upstream ?? (await startStandin({ namespace: NS, pod: 'standin', sandboxId: 'standin' }, 0));
  if (!upstream.listening) await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    upstream.closeAllConnections();
    upstream.close();
  });
  const kube = new FakeKube([NS]);
  const config = loadConfig({
    K8S_NAMESPACE: NS,
    HOST: '127.0.0.1',
    PORT: '0',
    SKILLS_HOST_PATH: '/skills',
    THREADS_HOST_PATH: '/threads',
    PROXY_UPSTREAM: 'pod',
    SANDBOX_CONTAINER_PORT: String((upstream.address() as AddressInfo).port),
    PROVISIONER_ALLOW_ANONYMOUS: 'true',
    ...env,
  });
  const service = await start(config, options.log ?? silentLogger(), { kube, ...(options.now ? { now: options.now } : {}) });
  t.after(() => service.stop(0));
  await service.view.synced;
  return { kube, service, upstream };
}
