// `npm run dev` as a developer runs it in a terminal: one Ctrl-C (SIGINT to the whole foreground
// process group) drains and stops the provisioner, and the next start keeps the signing key, so the
// capability URLs of sandboxes made before still work.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from '../../tools/cluster/processes.ts';
import { call, cluster, eventually, FAST_PROBES, namespace } from '../helpers.ts';

const root = join(import.meta.dirname, '..', '..');

function dev(env: Record<string, string>) {
  // detached: a process group of its own, as a terminal's foreground job is.
  const child = spawn(process.execPath, [join(root, 'tools', 'cluster', 'cli.ts'), 'dev'], {
    cwd: root,
    detached: true,
    env: { ...process.env, LOCAL_CLUSTER_DIR: cluster().dir, LOG_LEVEL: 'info', ...FAST_PROBES, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

test('npm run dev: one Ctrl-C drains and stops; the next start keeps the signing key, so earlier sandbox URLs work', async (t) => {
  const ns = await namespace(t, 'dev');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = { PORT: String(port), K8S_NAMESPACE: ns, SANDBOX_URL_MODE: 'proxy' };
  const ready = () =>
    eventually(
      'dev is up',
      async () => ((await call(url, 'GET', '/readyz').catch(() => undefined))?.status === 200 ? true : undefined),
      60_000,
    );

  const first = dev(env);
  t.after(() => void (first.child.exitCode === null && process.kill(-(first.child.pid ?? 0), 'SIGKILL')));
  await ready();
  const created = await call(url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'd1' });
  assert.equal(created.status, 201);
  const sandboxUrl = String(created.body['sandbox_url']);
  assert.equal((await fetch(`${sandboxUrl}/v1/sandbox`)).status, 200);

  // The terminal's Ctrl-C reaches every process of the foreground group.
  process.kill(-(first.child.pid ?? 0), 'SIGINT');
  const [code] = (await once(first.child, 'exit')) as [number | null];
  assert.equal(code, 0, first.output());
  assert.match(first.output(), /"msg":"shutting down"/);
  assert.doesNotMatch(first.output(), /second signal/, 'one Ctrl-C is one signal: the drain ran');

  const second = dev(env);
  t.after(() => void (second.child.exitCode === null && process.kill(-(second.child.pid ?? 0), 'SIGKILL')));
  await ready();
  assert.equal((await fetch(`${sandboxUrl}/v1/sandbox`)).status, 200, 'the URL made by the first run works on the second');
  const readyz = await call(url, 'GET', '/readyz');
  assert.doesNotMatch(JSON.stringify(readyz.body), /signing-keys/);
  process.kill(-(second.child.pid ?? 0), 'SIGINT');
  await once(second.child, 'exit');
});
