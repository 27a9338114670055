// Regenerates docs/dashboard.png: the provisioner on the local control plane (`npm run cluster:up`
// first; LOCAL_CLUSTER_DIR as for it) with sandboxes in the states an operator meets (Running, pulling
// its image on a cold node, crash-looping, unschedulable), shown by Debian's Chromium with one
// sandbox's details open. `node tools/screenshot.ts`.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import { readState } from './cluster/cluster.ts';
import { kubeFromState } from './cluster/kube-http.ts';

const root = join(import.meta.dirname, '..');
const dir = process.env['LOCAL_CLUSTER_DIR'] ?? join(root, '.local-cluster');
const state = readState(dir);
if (!state) throw new Error(`no local cluster at ${dir}: npm run cluster:up first`);
const kube = kubeFromState(state);
const ns = 'dashboard-shot';
await kube.delete(`/api/v1/namespaces/${ns}`).catch(() => undefined);
while (await kube.find(`/api/v1/namespaces/${ns}`)) await sleep(200);

const control = state.fakeNodeControl;
const post = (path: string, body: unknown) => fetch(`${control}${path}`, { method: 'POST', body: JSON.stringify(body) });
const port = 18_500 + Math.floor(Math.random() * 400);
const child = spawn(process.execPath, [join(root, 'src', 'main.ts')], {
  env: {
    ...process.env,
    KUBECONFIG_PATH: state.kubeconfig,
    K8S_NAMESPACE: ns,
    CREATE_NAMESPACE: 'true',
    NODE_HOST: '127.0.0.1',
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    PROVISIONER_ALLOW_ANONYMOUS: 'true',
    SANDBOX_TTL_SECONDS: '7200',
    SANDBOX_IDLE_SECONDS: '1800',
    SKILLS_HOST_PATH: '/tmp/skills',
    THREADS_HOST_PATH: '/tmp/threads',
  },
  stdio: 'inherit',
});
try {
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300 && (await fetch(`${url}/readyz`).catch(() => undefined))?.status !== 200; i++) await sleep(100);
  const create = (id: string, thread: string, user: string) =>
    fetch(`${url}/api/sandboxes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sandbox_id: id, thread_id: thread, user_id: user }),
    });
  const users = ['alice', 'bob', 'carol'];
  for (let i = 1; i <= 9; i++) await create(`thread-${String(i).padStart(3, '0')}`, `t-${1000 + i}`, users[i % 3] ?? 'alice');
  for (const [id, behavior] of [
    ['thread-crash', 'crashloop'],
    ['thread-nofit', 'unschedulable'],
    ['thread-badimg', 'image-pull'],
  ] as const) {
    await post('/behavior', { namespace: ns, name: `sandbox-${id}`, behavior });
    await create(id, id.replace('thread-', 't-'), 'bob');
  }
  await sleep(4000);
  // A cold node for the last one: it waits for its image.
  await post('/settings', { pullMs: 60_000 });
  await post('/images', { present: [] });
  await create('thread-new', 't-2001', 'alice');
  await sleep(1500);

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await page.goto(`${url}/ui/`);
  await page.locator('#connection', { hasText: 'live' }).waitFor();
  await page.locator('.row[data-id="thread-002"]').click();
  await sleep(800);
  await page.screenshot({ path: join(root, 'docs', 'dashboard.png') });
  await browser.close();
  console.log('wrote docs/dashboard.png');
} finally {
  child.kill('SIGTERM');
  await post('/settings', { pullMs: 0 });
  await kube.delete(`/api/v1/namespaces/${ns}`).catch(() => undefined);
}
