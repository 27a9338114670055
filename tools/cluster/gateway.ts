// A real Gateway API implementation on the local cluster, for gateway mode's tests and benchmarks:
// the Gateway API's standard CRDs (from the Go module sigs.k8s.io/gateway-api v1.6.1, the version
// Traefik v3.7 speaks; applied server-side, as httproutes' CRD is over the client-side annotation
// limit), Traefik v3.7.13 (built by build-traefik.sh) as a process on the host with the admin
// kubeconfig, a GatewayClass for it and a Gateway whose HTTP listener is Traefik's web entrypoint on a
// loopback port. Traefik routes to pods' addresses in the pod network, from the EndpointSlices.
// Started once per cluster (kept in its state, stopped by cluster:down).

import { execFileSync, spawn } from 'node:child_process';
import { openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Gateway } from '../../src/domain/wire.ts';
import { alive, freePort } from './processes.ts';
import type { ClusterState } from './state.ts';
import { kubeFromState, type KubeObject } from './kube-http.ts';

const here = import.meta.dirname;
export const GATEWAY_API_VERSION = 'v1.6.1';
export const GATEWAY_NAMESPACE = 'gateway';
export const GATEWAY_NAME = 'sandboxes';

export type GatewayInfo = { url: string; port: number; parentRef: string; pid: number };

/** The binary (built once into the cache; about 5 minutes on 2 cores the first time). */
function traefikBinary(log: (line: string) => void): string {
  log('traefik: building or reusing the cached binary (tools/cluster/build-traefik.sh)');
  return (
    execFileSync('bash', [join(here, 'build-traefik.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      .trim()
      .split('\n')
      .at(-1) ?? ''
  );
}

/** The standard CRDs of the Gateway API, from its Go module, applied server-side. */
function installCrds(state: ClusterState): void {
  const download = execFileSync('go', ['mod', 'download', '-json', `sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}`], {
    encoding: 'utf8',
    cwd: join(here, 'k8s'),
  });
  const dir = (JSON.parse(download) as { Dir: string }).Dir;
  execFileSync(
    state.kubectl,
    ['--kubeconfig', state.kubeconfig, 'apply', '--server-side', '--force-conflicts', '-f', join(dir, 'config', 'crd', 'standard')],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
}

async function apply(state: ClusterState, port: number): Promise<void> {
  const kube = kubeFromState(state);
  try {
    // New CRDs: the API server serves them after a moment ("storage is (re)initializing").
    for (let i = 0; i < 300 && !(await kube.find('/apis/gateway.networking.k8s.io/v1/gatewayclasses').catch(() => undefined)); i++)
      await sleep(100);
    const put = async (collection: string, body: KubeObject): Promise<void> => {
      if (await kube.find(`${collection}/${body.metadata.name}`))
        await kube.request('PUT', `${collection}/${body.metadata.name}`, {
          ...body,
          metadata: { ...body.metadata, resourceVersion: (await kube.get(`${collection}/${body.metadata.name}`)).metadata.resourceVersion },
        });
      else await kube.post(collection, body);
    };
    if (!(await kube.find(`/api/v1/namespaces/${GATEWAY_NAMESPACE}`)))
      await kube.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: GATEWAY_NAMESPACE } });
    await put('/apis/gateway.networking.k8s.io/v1/gatewayclasses', {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'GatewayClass',
      metadata: { name: 'traefik' },
      spec: { controllerName: 'traefik.io/gateway-controller' },
    } as never);
    await put(`/apis/gateway.networking.k8s.io/v1/namespaces/${GATEWAY_NAMESPACE}/gateways`, {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: GATEWAY_NAME },
      spec: {
        gatewayClassName: 'traefik',
        // Routes of any namespace may attach (each test works in a namespace of its own).
        listeners: [{ name: 'http', protocol: 'HTTP', port, allowedRoutes: { namespaces: { from: 'All' } } }],
      },
    } as never);
  } finally {
    await kube.close();
  }
}

async function programmed(state: ClusterState): Promise<boolean> {
  const kube = kubeFromState(state);
  try {
    const gw = await kube.find<Gateway>(`/apis/gateway.networking.k8s.io/v1/namespaces/${GATEWAY_NAMESPACE}/gateways/${GATEWAY_NAME}`);
    const conditions = gw?.status?.conditions ?? [];
    return conditions.some((c) => c.type === 'Programmed' && c.status === 'True');
  } finally {
    await kube.close();
  }
}

/** Traefik serving the cluster's Gateway (started once; its state kept with the cluster's). */
export async function gateway(state: ClusterState, log: (line: string) => void = () => {}): Promise<GatewayInfo> {
  if (state.gateway && alive(state.gateway.pid) && (await programmed(state))) return state.gateway;
  const binary = traefikBinary(log);
  installCrds(state);
  const port = state.gateway?.port ?? (await freePort());
  await apply(state, port);
  const logFile = openSync(join(state.dir, 'traefik.log'), 'a');
  const child = spawn(
    binary,
    [
      '--providers.kubernetesgateway=true',
      // Traefik applies configuration changes at most every 2 s by default; tests and benchmarks want a
      // new route in service as soon as it is accepted (the README says what this means for operators).
      '--providers.providersThrottleDuration=100ms',
      `--entrypoints.web.address=127.0.0.1:${port}`,
      '--global.checknewversion=false',
      '--global.sendanonymoususage=false',
      '--log.level=INFO',
    ],
    { detached: true, stdio: ['ignore', logFile, logFile], env: { ...process.env, KUBECONFIG: state.kubeconfig } },
  );
  child.unref();
  if (child.pid === undefined) throw new Error('traefik did not start');
  const info: GatewayInfo = { url: `http://127.0.0.1:${port}`, port, parentRef: `${GATEWAY_NAMESPACE}/${GATEWAY_NAME}`, pid: child.pid };
  state.gateway = info;
  state.pids['traefik'] = child.pid;
  writeFileSync(join(state.dir, 'state.json'), JSON.stringify(state, null, 2));
  for (let i = 0; i < 600; i++) {
    if (
      (await programmed(state).catch(() => false)) &&
      (await fetch(`${info.url}/`).then(
        (r) => r.status === 404,
        () => false,
      ))
    ) {
      log(`traefik ready: Gateway ${info.parentRef} on ${info.url}`);
      return info;
    }
    await sleep(100);
  }
  throw new Error(`traefik did not program Gateway ${info.parentRef} within 60 s (see ${join(state.dir, 'traefik.log')})`);
}

/**
 * After an API server outage: Traefik, like kube-controller-manager, may sit out a long watch backoff
 * before it serves new routes again. Restarted on the same port, it lists everything at once.
 */
export async function restartGateway(state: ClusterState): Promise<void> {
  const pid = state.gateway?.pid;
  if (pid === undefined) return;
  if (alive(pid)) {
    process.kill(pid, 'SIGKILL');
    while (alive(pid)) await sleep(50);
  }
  await gateway(state);
}
