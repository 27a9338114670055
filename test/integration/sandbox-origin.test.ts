// A sandbox's page served by path (proxy mode: /s/<id>.<capability>/..., /sandboxes/<id>/...) comes
// from this service's own origin, the dashboard's, which keeps the API key in sessionStorage. In a real
// browser (Debian's Chromium), the sandbox's script must not reach that key, the dashboard's page, or
// this origin's answers. Before the fix it read the key from the tab's sessionStorage.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { call } from '../helpers.ts';
import { NS, setup } from '../service-harness.ts';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-headless-shell'].find((p) => existsSync(p));
const DASHBOARD_KEY = 'sandbox-provisioner-key';

/** The hostile page: it tries every way to the dashboard's key and pages, and says what it got. */
const PAGE = `<!doctype html><html><head><title>sandbox</title></head><body><script>
(async () => {
  const r = { origin: self.origin };
  const tryIt = async (name, f) => { try { r[name] = await f(); } catch (e) { r[name] = 'blocked: ' + e.name; } };
  await tryIt('storage', () => sessionStorage.getItem(${JSON.stringify(DASHBOARD_KEY)}));
  await tryIt('local', () => localStorage.length);
  await tryIt('cookie', () => document.cookie);
  await tryIt('fetch', async () => (await (await fetch('/ui/')).text()).slice(0, 30));
  await tryIt('frame', () => new Promise((resolve, reject) => {
    const f = document.createElement('iframe');
    f.src = '/ui/';
    f.onload = () => { try { resolve(f.contentWindow.sessionStorage.getItem(${JSON.stringify(DASHBOARD_KEY)})); } catch (e) { reject(e); } };
    document.body.appendChild(f);
  }));
  window.result = r;
  document.title = 'done';
})();
</script></body></html>`;

test('a sandbox page served by path runs in an origin of its own: no key, no dashboard, no same-origin fetch', async (t) => {
  assert.ok(CHROMIUM, 'Chromium is needed for the browser tests: sudo apt-get install -y chromium (docs/development.md)');
  const app = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(PAGE);
  });
  const { kube, service } = await setup(
    t,
    { PROVISIONER_API_KEY: 'k', PROVISIONER_ALLOW_ANONYMOUS: 'false', SANDBOX_URL_MODE: 'proxy', PROXY_SIGNING_KEYS: 's'.repeat(32) },
    { upstream: app },
  );
  const created = await call(service.url, 'POST', '/api/sandboxes?wait=0', { sandbox_id: 'page' }, { 'x-api-key': 'k' });
  kube.ready(NS, 'sandbox-page');
  await service.view.waitFor('page', (r) => r?.ready === true, 2000);

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.after(() => browser.close());
  const context = await browser.newContext();
  const page = await context.newPage();
  // The operator opened the dashboard and gave it the key; then, in the same tab, a sandbox's page.
  await page.goto(`${service.url}/ui/`);
  await page.evaluate(`sessionStorage.setItem(${JSON.stringify(DASHBOARD_KEY)}, 'k')`);
  for (const url of [String(created.body['sandbox_url']), `${service.url}/sandboxes/page`]) {
    // The plain path wants the key: a browser that sends it (an extension, a gateway adding it).
    if (url.includes('/sandboxes/')) await context.setExtraHTTPHeaders({ 'x-api-key': 'k' });
    await page.goto(`${url}/index.html`, { waitUntil: 'load' });
    await page.waitForFunction("document.title === 'done'", undefined, { timeout: 10_000 });
    const r = JSON.parse(String(await page.evaluate('JSON.stringify(window.result)'))) as Record<string, string>;
    t.diagnostic(`${new URL(url).pathname.split('.')[0]}: ${JSON.stringify(r)}`);
    assert.equal(r['origin'], 'null', 'an opaque origin');
    assert.match(String(r['storage']), /^blocked: SecurityError/, 'the dashboard key is out of reach');
    assert.match(String(r['local']), /^blocked: SecurityError/);
    assert.match(String(r['fetch']), /^blocked: TypeError/, "this origin's pages cannot be read");
    assert.match(String(r['frame']), /^blocked: SecurityError/, "the dashboard's frame cannot be read");
  }
});
