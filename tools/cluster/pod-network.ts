// The local cluster's pod network: a network namespace of its own, joined to the host by a veth pair,
// where every pod has an address of 198.18.0.0/15 (the range reserved for benchmarks, RFC 2544) and
// its stand-in listens on podIP:port. The namespace routes its whole pod subnet to itself (an AnyIP
// `local` route), so a pod address needs no interface set-up: binding it is enough. The host routes
// the subnet through the veth, so kube-controller-manager's EndpointSlices, a gateway, the fake node's
// probes and the proxy reach pods as in a cluster. No other non-loopback address is used.
//
// Several clusters may run at once (the tests, a benchmark, `npm run dev`): each takes a slot, a /30
// link in 198.18.0.0/18 and a /18 of pod addresses above it, and its namespace is named after the
// slot and its state directory, so a namespace left by a killed run is recognised and removed.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type PodNetwork = {
  netns: string;
  hostIf: string;
  /** The host's and the namespace's ends of the link (the pod host's control server listens on the latter). */
  hostIp: string;
  nsIp: string;
  /** Pod addresses: `${prefix}.<n>` for n in [0, 16384) after the first few, as 198.x.y.z. */
  subnet: string;
  firstPod: number;
  size: number;
};

const SLOTS = 7;
const OWNERS = '/tmp/sandbox-provisioner-netns';

const ip4 = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
const BASE = (198 << 24) | (18 << 16); // 198.18.0.0

/** The slot's addresses: a /30 link at 198.18.0.(4 slot), and the slot's /18 of pod addresses from 198.18.64.0. */
function slotNetwork(slot: number, netns: string): PodNetwork {
  const link = (BASE + 4 * slot) >>> 0;
  const pods = (BASE + (slot + 1) * 16384) >>> 0;
  return {
    netns,
    hostIf: `${netns.slice(0, 10)}h`,
    hostIp: ip4(link + 1),
    nsIp: ip4(link + 2),
    subnet: `${ip4(pods)}/18`,
    firstPod: pods + 16,
    size: 16384 - 32,
  };
}

/** The address of the n-th pod of a network. */
export const podAddress = (net: PodNetwork, n: number): string => ip4((net.firstPod + (n % net.size)) >>> 0);

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function sh(what: string, ...args: string[]): void {
  try {
    ip(...args);
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? err).trim();
    throw new Error(`pod network: ${what} failed (ip ${args.join(' ')}): ${stderr}`);
  }
}

/** Namespaces of ours whose cluster directory is gone (a run killed before cluster:down) are removed. */
function removeStale(): void {
  mkdirSync(OWNERS, { recursive: true });
  for (const name of readdirSync(OWNERS)) {
    const dir = readFileSync(join(OWNERS, name), 'utf8');
    if (existsSync(join(dir, 'state.json'))) continue;
    destroy(name);
  }
}

/** Makes the pod network of the cluster in `dir`; fails with a clear message where namespaces cannot be made. */
export function createPodNetwork(dir: string): PodNetwork {
  try {
    ip('netns', 'list');
  } catch (err) {
    throw new Error(`the local cluster needs a pod network: \`ip netns\` (iproute2) is not usable here: ${String(err).split('\n')[0]}`);
  }
  removeStale();
  const taken = new Set(
    ip('netns', 'list')
      .split('\n')
      .map((l) => /^sbx(\d)-/.exec(l)?.[1])
      .filter(Boolean)
      .map(Number),
  );
  const slot = [...Array(SLOTS).keys()].find((s) => !taken.has(s));
  if (slot === undefined) throw new Error(`pod network: all ${SLOTS} slots are in use (ip netns list); stop a local cluster first`);
  const netns = `sbx${slot}-${createHash('sha256').update(dir).digest('hex').slice(0, 6)}`;
  const net = slotNetwork(slot, netns);
  try {
    ip('netns', 'add', netns);
  } catch (err) {
    throw new Error(
      `the local cluster needs a pod network, and this user cannot make a network namespace (run as root, or with CAP_NET_ADMIN): ${String((err as { stderr?: string }).stderr ?? err).trim()}`,
    );
  }
  writeFileSync(join(OWNERS, netns), dir);
  const nsIf = `${netns.slice(0, 10)}n`;
  sh('the veth pair', 'link', 'add', net.hostIf, 'type', 'veth', 'peer', 'name', nsIf);
  sh('moving the veth', 'link', 'set', nsIf, 'netns', netns);
  sh('the host address', 'addr', 'add', `${net.hostIp}/30`, 'dev', net.hostIf);
  sh('the host link', 'link', 'set', net.hostIf, 'up');
  sh('the namespace address', '-n', netns, 'addr', 'add', `${net.nsIp}/30`, 'dev', nsIf);
  sh('the namespace link', '-n', netns, 'link', 'set', nsIf, 'up');
  sh('the namespace loopback', '-n', netns, 'link', 'set', 'lo', 'up');
  sh('pod addresses (AnyIP)', '-n', netns, 'route', 'add', 'local', net.subnet, 'dev', 'lo');
  sh('the route to the pods', 'route', 'add', net.subnet, 'via', net.nsIp, 'dev', net.hostIf);
  return net;
}

function destroy(netns: string): void {
  try {
    ip('netns', 'del', netns); // takes its end of the veth, and so the pair and the host's route, with it
  } catch {
    // already gone
  }
  rmSync(join(OWNERS, netns), { force: true });
}

export function destroyPodNetwork(net: PodNetwork | undefined): void {
  if (net) destroy(net.netns);
}

export function podNetworkAlive(net: PodNetwork | undefined): boolean {
  if (!net) return false;
  try {
    return ip('netns', 'list')
      .split('\n')
      .some((l) => l.startsWith(`${net.netns} `) || l === net.netns);
  } catch {
    return false;
  }
}

/** The argv that runs a command inside the pod network. */
export const inPodNetwork = (net: PodNetwork, argv: string[]): string[] => ['ip', 'netns', 'exec', net.netns, ...argv];
