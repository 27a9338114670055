// Both generations of DeerFlow's backend that run in the field, unchanged, in every URL mode DeerFlow can
// use (nodeport, proxy, gateway through Traefik), against the real API server and the fake node: the
// seed's sequence (create, poll the sandbox's /v1/sandbox, then at once is_alive: status "Running", exec)
// and DeerFlow 2.1's (presence before create, skills_container_path, max_shell_sessions above 10, a
// default gateway's 8 extra mounts, container_id equal across create, get and list, exec in as many
// shells as it asked without eviction, DELETE, then presence absent).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeerFlowBackend, deerflow21Mounts, execute, type Generation } from '../../tools/deerflow-client.ts';
import { admin, DEERFLOW_BASE, deerflowEnv, eventually, namespace, provisioner, type UrlMode } from '../helpers.ts';

/**
 * The reference probe profile (readiness 5 s after the container starts, every 5 s): the app answers
 * well before kubelet's probe marks the pod Ready, the window where "Running" must still agree with what
 * the client just saw through the proxy.
 */
const SLOW_READY = { SANDBOX_PROBE_PROFILE: 'reference', SANDBOX_READINESS_INITIAL_DELAY_SECONDS: '3' };

/** Execs in `n` shell sessions of the sandbox (by its URL): the sessions each evicted, in order. */
async function shells(sandboxUrl: string, n: number): Promise<(string | null)[]> {
  const evicted: (string | null)[] = [];
  for (let i = 1; i <= n; i++) {
    const res = await fetch(`${sandboxUrl}/v1/shell/exec`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ command: 'true', id: `subagent-${i}` }),
    });
    evicted.push(((await res.json()) as { data: { evicted_session: string | null } }).data.evicted_session);
  }
  return evicted;
}

async function seed(p: { url: string }, mode: UrlMode): Promise<string[]> {
  const client = new DeerFlowBackend(p.url, 'seed');
  const id = `seed-${mode}`;
  const { sandboxUrl, answer } = await client.acquire({ sandbox_id: id, thread_id: `th-${mode}` });
  assert.equal(answer['status'] === 'Running' || answer['status'] === 'Pending', true);
  assert.equal(await execute(sandboxUrl, 'echo hi'), 'echo hi');
  assert.ok((await client.list()).some((s) => s['sandbox_id'] === id && s['status'] === 'Running'));
  await client.release(id);
  return client.seen;
}

async function deerflow21(p: { url: string }, mode: UrlMode, ns: string): Promise<string[]> {
  const client = new DeerFlowBackend(p.url, '2.1');
  const id = `v21-${mode}`;
  const { sandboxUrl, answer } = await client.acquire(
    { sandbox_id: id, thread_id: `th-${mode}`, user_id: 'alice', ...deerflow21Mounts(DEERFLOW_BASE, 'alice') },
    11,
  );
  const pod = await admin().get(`/api/v1/namespaces/${ns}/pods/sandbox-${id}`);
  assert.equal(answer['container_id'], pod.metadata.uid);
  assert.equal(answer['max_shell_sessions'], 11);
  assert.equal(answer['lark_cli_broker'], false);
  const listed = (await client.list()).find((s) => s['sandbox_id'] === id);
  assert.equal(listed?.['container_id'], pod.metadata.uid, 'container_id equal across create, get and list');
  assert.equal(listed?.['max_shell_sessions'], 11);
  // The capacity is real: 11 subagent shells live at once; a 12th evicts the oldest.
  assert.deepEqual(await shells(sandboxUrl, 11), Array(11).fill(null));
  assert.deepEqual(await shells(sandboxUrl, 12), [...Array(11).fill(null), 'subagent-1']);
  await client.release(id);
  await eventually('presence proves it absent', async () => ((await client.presence(id)).exists ? undefined : true), 60_000);
  assert.deepEqual(await client.presence(id), { exists: false, containerId: null });
  return client.seen;
}

for (const mode of ['nodeport', 'proxy', 'gateway'] as const) {
  test(`DeerFlow's backend, the seed's and 2.1's, unchanged, in ${mode} mode: is_alive says Running right after the poll`, async (t) => {
    const ns = await namespace(t, `df-${mode}`);
    const p = await provisioner(t, ns, await deerflowEnv(mode, SLOW_READY));
    const seen: Record<Generation, string[]> = { seed: await seed(p, mode), '2.1': await deerflow21(p, mode, ns) };
    t.diagnostic(`${mode}: seed ${seen.seed.join(', ')}`);
    t.diagnostic(`${mode}: 2.1 ${seen['2.1'].join(', ')}`);
  });
}
