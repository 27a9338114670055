// The operator's page in a real browser: Debian's Chromium driven by playwright-core (which downloads no
// browser). Each test saves a screenshot under test-results/screenshots/ (git-ignored).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { admin, call, eventually, namespace, objectsIn, provisioner, setBehavior } from '../helpers.ts';

const shots = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots');
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-headless-shell'].find((p) => existsSync(p));

let browser: Browser | undefined;
async function page(t: { after: (fn: () => Promise<void>) => void }): Promise<{ page: Page; errors: string[] }> {
  assert.ok(CHROMIUM, "Chromium is needed for the dashboard's browser tests: sudo apt-get install -y chromium (docs/development.md)");
  browser ??= await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  t.after(() => context.close());
  const p = await context.newPage();
  const errors: string[] = [];
  p.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${m.text()} (${m.location().url})`);
  });
  p.on('pageerror', (e) => errors.push(String(e)));
  return { page: p, errors };
}
test.after(() => browser?.close());

async function screenshot(p: Page, name: string): Promise<void> {
  mkdirSync(shots, { recursive: true });
  await p.screenshot({ path: join(shots, `${name}.png`) });
}

const row = (p: Page, id: string) => p.locator(`.row[data-id="${id}"]`);
const badge = async (p: Page, id: string) => (await row(p, id).locator('.badge').textContent()) ?? '';

test('the page: a new sandbox appears within 1 s and turns Running in place; a crash loop shows its reason; delete from the page', async (t) => {
  const ns = await namespace(t, 'dash');
  const p = await provisioner(t, ns, { SANDBOX_TTL_SECONDS: '7200' });
  const { page: ui, errors } = await page(t);
  await ui.goto(`${p.url}/`);
  assert.equal(new URL(ui.url()).pathname, '/ui/');
  await ui.locator('#connection', { hasText: 'live' }).waitFor();

  // Held Pending by the fake node until told otherwise, so each state can be seen.
  await setBehavior(ns, 'sandbox-one', 'never-ready');
  const started = performance.now();
  assert.equal((await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'one', thread_id: 'thread-1', user_id: 'alice' })).status, 201);
  await row(ui, 'one').waitFor();
  const appeared = performance.now() - started;
  t.diagnostic(`a new sandbox appeared in the page ${appeared.toFixed(0)} ms after the create was sent`);
  assert.ok(appeared < 1000, `appeared after ${appeared.toFixed(0)} ms`);
  assert.equal(await badge(ui, 'one'), 'Pending');
  const handle = await row(ui, 'one').elementHandle();
  await setBehavior(ns, 'sandbox-one', 'ready');
  await row(ui, 'one').locator('.badge', { hasText: 'Running' }).waitFor();
  assert.equal(await row(ui, 'one').count(), 1, 'one row, updated in place');
  assert.ok(handle);

  await setBehavior(ns, 'sandbox-loop', 'crashloop');
  await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'loop' });
  await row(ui, 'loop').locator('.reason', { hasText: 'CrashLoopBackOff' }).waitFor();
  // Stuck is its own count (it waits for someone to act), not an amber Pending beside "Failed 0".
  const count = (state: string) => ui.locator('#counts li', { hasText: state }).locator('b');
  await ui.locator('#counts li', { hasText: 'Stuck' }).locator('b', { hasText: '1' }).waitFor();
  assert.equal(await count('Pending').textContent(), '0');
  await ui.locator('#status').selectOption('Stuck');
  await ui.locator('#shown', { hasText: '1 of 2' }).waitFor();
  assert.equal(await ui.locator('.viewport .row').getAttribute('data-id'), 'loop');
  await ui.locator('#status').selectOption('');

  // Details: reason, transitions, create-to-Running.
  await row(ui, 'one').click();
  await ui.locator('#d-id', { hasText: 'one' }).waitFor();
  assert.match((await ui.locator('#d-transitions').textContent()) ?? '', /Running.*Pending|Pending.*Running/s);
  assert.match((await ui.locator('#d-ready').textContent()) ?? '', /\d+(\.\d)? s/);
  // The startup breakdown: seconds from the creation to each milestone.
  assert.match(
    (await ui.locator('#d-timings').textContent()) ?? '',
    /scheduled\d+ s.*image ready\d+ s.*container started\d+ s.*Ready\d+ s/s,
  );
  // The container's log, from the API, in the pane; a crash loop's says how it ended.
  await ui.locator('#d-logs', { hasText: /starting .*the sandbox app on/ }).waitFor();
  await row(ui, 'loop').click();
  await ui.locator('#d-logs', { hasText: 'killed: out of memory' }).waitFor();
  await row(ui, 'one').click();
  await ui.locator('#d-id', { hasText: 'one' }).waitFor();
  await ui.locator('#version', { hasText: /^v\d+\.\d+\.\d+$/ }).waitFor();
  await ui.locator('#nodes', { hasText: /image (on all|missing on)/ }).waitFor();
  assert.equal(await ui.locator('#counts').getByText('Running').count(), 1);
  await screenshot(ui, 'dashboard');

  // Delete, confirmed, through the same API the clients use.
  ui.once('dialog', (d) => void d.accept());
  await ui.locator('#delete').click();
  await eventually('pod and service gone', async () => {
    const o = await objectsIn(ns);
    return !o.pods.includes('sandbox-one') && !o.services.includes('sandbox-one-svc') ? true : undefined;
  });
  await row(ui, 'one').waitFor({ state: 'detached' });
  assert.deepEqual(errors, [], 'no console error');
});

test('with an API key the page asks for it, shows nothing without it, and keeps it out of URLs and lasting storage', async (t) => {
  const ns = await namespace(t, 'dashkey');
  const p = await provisioner(t, ns, { PROVISIONER_API_KEY: 'dash-key', PROVISIONER_ALLOW_ANONYMOUS: 'false' });
  await call(p.url, 'POST', '/api/sandboxes?wait=20', { sandbox_id: 'secret-box' }, { 'x-api-key': 'dash-key' });
  const { page: ui, errors } = await page(t);
  await ui.goto(`${p.url}/ui/`);
  await ui.locator('#login').waitFor();
  assert.equal(await ui.locator('#main').isVisible(), false);
  assert.ok(!((await ui.content()) ?? '').includes('secret-box'), 'nothing of the sandboxes without the key');
  // Locked, it says so, rather than count zero sandboxes.
  await ui.locator('#counts', { hasText: 'locked' }).waitFor();
  await new Promise((r) => setTimeout(r, 1500)); // the page re-renders every second
  assert.doesNotMatch((await ui.locator('#counts').textContent()) ?? '', /\d/);
  await screenshot(ui, 'dashboard-key');

  await ui.locator('#key').fill('wrong');
  await ui.locator('#login button').click();
  await ui.locator('#login-error', { hasText: 'refused' }).waitFor();
  await ui.locator('#key').fill('dash-key');
  await ui.locator('#login button').click();
  await row(ui, 'secret-box').waitFor();
  assert.ok(!ui.url().includes('dash-key'), 'not in the URL');
  assert.equal(await ui.evaluate('JSON.stringify(localStorage)'), '{}', 'nothing in lasting storage');
  // The 401s of the wrong key are expected console errors of the browser's own; none from the page.
  assert.deepEqual(
    errors.filter((e) => !/401/.test(e)),
    [],
  );
});

test('1,000 sandboxes render and filter without stalling the page', async (t) => {
  const ns = await namespace(t, 'dashbig');
  const kube = admin();
  const labels = (id: string) => ({ app: 'deer-flow-sandbox', 'sandbox-id': id });
  const ids = Array.from({ length: 1000 }, (_, i) => `sb-${String(i).padStart(4, '0')}`);
  // Pods bound to another node: the fake node leaves them Pending, so only the view does work.
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(
      ids.slice(i, i + 50).flatMap((id) => [
        kube.post(`/api/v1/namespaces/${ns}/pods`, {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: `sandbox-${id}`, labels: labels(id), annotations: { 'sandbox.deer-flow/thread-id': `thread-${id}` } },
          spec: { nodeName: 'elsewhere', containers: [{ name: 'sandbox', image: 'x' }] },
        }),
        kube.post(`/api/v1/namespaces/${ns}/services`, {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: `sandbox-${id}-svc`, labels: labels(id) },
          spec: { selector: { 'sandbox-id': id }, ports: [{ name: 'http', port: 8080 }] },
        }),
      ]),
    );
  }
  const p = await provisioner(t, ns, { SANDBOX_SERVICE_TYPE: 'ClusterIP' });
  await eventually('the view holds them', () => (p.view.size === 1000 ? true : undefined), 30_000);
  const { page: ui, errors } = await page(t);
  await ui.goto(`${p.url}/ui/`);
  await ui.locator('#shown', { hasText: '1000 of 1000' }).waitFor({ timeout: 15_000 });
  const rendered = await ui.locator('.viewport .row').count();
  assert.ok(rendered < 80, `only the visible rows are in the page (${rendered})`);

  // The time from typing to the filtered table, measured in the page (the page's code, as a string: the
  // tests' TypeScript has no DOM types).
  const filterMs = Number(
    await ui.evaluate(`new Promise((resolve) => {
      const search = document.getElementById('search');
      const started = performance.now();
      search.value = 'sb-042';
      search.dispatchEvent(new Event('input'));
      const check = () => document.getElementById('shown')?.textContent === '10 of 1000' ? resolve(performance.now() - started) : requestAnimationFrame(check);
      check();
    })`),
  );
  t.diagnostic(`filtering 1,000 sandboxes took ${filterMs.toFixed(1)} ms`);
  assert.ok(filterMs < 500, `filtering took ${filterMs.toFixed(1)} ms`);
  // Oldest first, then by id: pods created in one concurrent batch may straddle a second of creationTimestamp.
  const listed = (await call(p.url, 'GET', '/api/sandboxes')).body['sandboxes'] as { sandbox_id: string; created_at: string }[];
  const expected = listed
    .filter((s) => s.sandbox_id.startsWith('sb-042'))
    .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.sandbox_id.localeCompare(b.sandbox_id))
    .map((s) => s.sandbox_id);
  assert.deepEqual(
    expected.toSorted(),
    Array.from({ length: 10 }, (_, i) => `sb-042${i}`),
  );
  assert.deepEqual(await ui.locator('.viewport .row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id'))), expected);
  await ui.locator('#search').fill('');
  await ui.locator('#status').selectOption('Pending');
  await ui.locator('#shown', { hasText: '1000 of 1000' }).waitFor();
  await ui.locator('#viewport').evaluate((v) => v.scrollTo(0, v.scrollHeight));
  await row(ui, 'sb-0999').waitFor();
  await screenshot(ui, 'dashboard-1000');
  assert.deepEqual(errors, []);
});
