// `npm run bench [-- scenario...]`: starts the local control plane and the provisioner, runs the
// scenarios (status, list, create, proxy, scale; all by default), prints one table, writes
// bench/results/latest.json and stops what it started. Every figure is measured side by side with its
// baseline in the same run, and reported with the ratio.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { down, up } from '../tools/cluster/cluster.ts';
import { gateway } from '../tools/cluster/gateway.ts';
import { kubeFromState } from '../tools/cluster/kube-http.ts';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { printTable, startProvisioner, type Row } from './lib.ts';
import { capabilityPath as capabilityPathOf } from '../src/domain/sandbox.ts';
import { Capabilities } from '../src/http/capability.ts';
import { summarizeProfile } from './profile.ts';
import { proxyBench } from './proxy.ts';
import { createBench, queryBench } from './api.ts';
import { fill, scaleBench } from './scale.ts';
import { startupBench } from './startup.ts';

const all = ['status', 'list', 'create', 'proxy', 'startup', 'scale'];
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const scenarios = wanted.length ? wanted : all;
const duration = Number(process.env['BENCH_DURATION'] ?? '8');
const dir = join(import.meta.dirname, '..', '.local-cluster-bench');
const profileDir = join(import.meta.dirname, 'results', 'profile');

const state = await up({ dir, log: (l) => console.error(`[cluster] ${l}`) });
const kube = kubeFromState(state);
const rows: Row[] = [];
const stops: (() => Promise<void> | void)[] = [];

/** The control plane's processes: pinned away from the process under test. */
const clusterPids = (): number[] =>
  ['fake-node', 'pod-host', 'kube-apiserver', 'etcd', 'kube-controller-manager']
    .map((p) => state.pids[p])
    .filter((p): p is number => p !== undefined);

async function namespace(name: string): Promise<string> {
  await kube.delete(`/api/v1/namespaces/${name}`);
  for (let i = 0; i < 600 && (await kube.find(`/api/v1/namespaces/${name}`)); i++) await new Promise((r) => setTimeout(r, 100));
  await kube.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  for (let i = 0; i < 100 && !(await kube.find(`/api/v1/namespaces/${name}/serviceaccounts/default`)); i++)
    await new Promise((r) => setTimeout(r, 100));
  return name;
}

/** The provisioner as its own process, as deployed (with BENCH_PROFILE=1 and `profile`, under --cpu-prof). */
async function provisioner(ns: string, env: Record<string, string> = {}, profile = false): Promise<{ url: string; child: ChildProcess }> {
  const started = await startProvisioner({ kubeconfig: state.kubeconfig, ns, env, ...(profile ? { profileDir } : {}) });
  stops.push(() => void started.child.kill('SIGTERM'));
  return started;
}

try {
  if (scenarios.includes('status') || scenarios.includes('list')) {
    const ns = await namespace('bench-query');
    await fill(kube, ns, 1000);
    const profiling = process.env['BENCH_PROFILE'] === '1';
    rmSync(profileDir, { recursive: true, force: true });
    const { url, child } = await provisioner(ns, { SANDBOX_SERVICE_TYPE: 'ClusterIP', LOG_LEVEL: 'error' }, profiling);
    for (let i = 0; i < 600 && (await (await fetch(`${url}/api/sandboxes/s999`)).status) !== 200; i++)
      await new Promise((r) => setTimeout(r, 100));
    const otherPids = clusterPids();
    rows.push(
      ...(await queryBench({
        provisioner: url,
        provisionerPid: child.pid,
        otherPids,
        kubeconfig: state.kubeconfig,
        ns,
        id: 's500',
        duration,
      })),
    );
    if (profiling) {
      child.kill('SIGTERM');
      await once(child, 'exit');
      console.log(summarizeProfile(profileDir));
    }
  }
  if (scenarios.includes('create')) {
    const ns = await namespace('bench-create');
    const { url } = await provisioner(ns);
    rows.push(...(await createBench({ provisioner: url, kube, ns, count: Number(process.env['BENCH_CREATE_COUNT'] ?? '30') })));
  }
  if (scenarios.includes('proxy')) {
    const ns = await namespace('bench-proxy');
    const signingKey = 'k'.repeat(32);
    const profiling = process.env['BENCH_PROFILE'] === '1';
    rmSync(profileDir, { recursive: true, force: true });
    // One sandbox, in gateway mode: reached directly (its pod's address), through this service's proxy
    // (plain path and capability URL), and through Traefik by its HTTPRoute.
    const gw = await gateway(state, (l) => console.error(`[cluster] ${l}`));
    const { url, child } = await provisioner(
      ns,
      {
        LOG_LEVEL: 'error',
        PROXY_SIGNING_KEYS: signingKey,
        SANDBOX_URL_MODE: 'gateway',
        GATEWAY_PARENT_REFS: gw.parentRef,
        GATEWAY_PUBLIC_URL: gw.url,
        SANDBOX_SERVICE_TYPE: 'ClusterIP',
        PROXY_UPSTREAM: 'pod',
      },
      profiling,
    );
    const created = (await (
      await fetch(`${url}/api/sandboxes?wait=30`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sandbox_id: 'bench' }),
      })
    ).json()) as { sandbox_url: string; status: string };
    if (created.status !== 'Running') throw new Error(`the bench sandbox is ${created.status}`);
    const pod = await kube.get(`/api/v1/namespaces/${ns}/pods/sandbox-bench`);
    const podIP = (pod.status as { podIP?: string } | undefined)?.podIP;
    // The same sandbox by its capability URL (what proxy mode hands out), signed as the service signs.
    const capabilityPath = capabilityPathOf('bench', new Capabilities([signingKey]).sign('bench', pod.metadata.uid ?? ''));
    const otherPids = clusterPids();
    rows.push(
      ...(await proxyBench({
        provisioner: url,
        provisionerPid: child.pid,
        otherPids,
        upstream: `http://${podIP}:8080`,
        gateway: { url: created.sandbox_url, pid: gw.pid },
        sandboxId: 'bench',
        capabilityPath,
        duration,
      })),
    );
    if (profiling) {
      child.kill('SIGTERM');
      await once(child, 'exit');
      console.log(summarizeProfile(profileDir));
    }
  }
  if (scenarios.includes('startup')) {
    rows.push(...(await startupBench({ state, kube, namespace })));
  }
  if (scenarios.includes('scale')) {
    const ns = await namespace('bench-scale');
    rows.push(
      ...(await scaleBench({ kube, kubeconfig: state.kubeconfig, ns, count: Number(process.env['BENCH_SCALE_COUNT'] ?? '10000') })),
    );
  }
} finally {
  for (const stop of stops) await stop();
  await kube.close();
  if (!process.argv.includes('--keep-cluster')) await down(dir);
}

printTable(rows);
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(join(import.meta.dirname, 'results', 'latest.json'), `${JSON.stringify(rows, null, 2)}\n`);
console.log(`\nwritten to bench/results/latest.json (${rows.length} rows)`);
