// SIGTERM under load, on the real control plane with the provisioner as its own process: what holds a
// drain ends at once (?wait= requests answer with the current state, event streams end with the
// reason), so with nothing downloading the process is gone in seconds; downloads get the grace period
// and are then cut with a log line that says so, never logged or counted as the sandbox's errors. And
// the namespace deleted under a running service: made again when allowed, else a clear 503.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { get, type IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { admin, call, eventually, namespace, readEvents, setBehavior, spawnProvisioner, type SseEvent } from '../helpers.ts';

/** The provisioner's log lines from now on, parsed. */
function logLines(child: { stdout: NodeJS.ReadableStream | null }): { msg: string; [k: string]: unknown }[] {
  const lines: { msg: string }[] = [];
  if (child.stdout) createInterface({ input: child.stdout }).on('line', (l) => lines.push(JSON.parse(l) as { msg: string }));
  return lines;
}

test('SIGTERM with 20 waits and 10 event streams open: each gets its answer at once, and the process is gone in seconds', async (t) => {
  const ns = await namespace(t, 'shut');
  const p = await spawnProvisioner(t, ns, { SHUTDOWN_GRACE_SECONDS: '20' });
  await setBehavior(ns, 'sandbox-slow', 'never-ready');
  await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'slow' });
  const waits = Array.from({ length: 20 }, () => call(p.url, 'GET', '/api/sandboxes/slow?wait=60'));
  const streams = await Promise.all(
    Array.from({ length: 10 }, async () => {
      const seen: SseEvent[] = [];
      const res = await fetch(`${p.url}/api/events`);
      return { seen, done: readEvents(res, (e) => void seen.push(e)) };
    }),
  );
  await new Promise((r) => setTimeout(r, 300));
  const started = Date.now();
  const exited = once(p.child, 'exit');
  p.child.kill('SIGTERM');
  const answers = await Promise.all(waits);
  const answeredMs = Date.now() - started;
  assert.ok(
    answers.every((a) => a.status === 200 && a.body['status'] === 'Pending'),
    'every wait answers with the current state',
  );
  for (const s of streams) {
    await s.done;
    assert.deepEqual(s.seen.at(-1), { event: 'end', data: { reason: 'shutting_down' } });
  }
  const [code] = await exited;
  const exitMs = Date.now() - started;
  assert.equal(code, 0);
  assert.ok(answeredMs < 2000, `the waits answered after ${answeredMs} ms`);
  assert.ok(exitMs < 5000, `the process exited after ${exitMs} ms (grace 20 s)`);
});

test('SIGTERM with downloads running: a request under way finishes, endless downloads are cut at the grace period and logged as such', async (t) => {
  const ns = await namespace(t, 'shutdl');
  const p = await spawnProvisioner(t, ns, { SHUTDOWN_GRACE_SECONDS: '2' });
  const log = logLines(p.child);
  assert.equal((await call(p.url, 'POST', '/api/sandboxes?wait=30', { sandbox_id: 'dl' })).body['status'], 'Running');
  // Endless: 10 GB each, read by clients that stop after the first bytes. Under way: an answer that
  // takes a second (a long exec, say).
  const endless: IncomingMessage[] = await Promise.all(
    Array.from(
      { length: 5 },
      () =>
        new Promise<IncomingMessage>((resolve, reject) =>
          get(`${p.url}/sandboxes/dl/v1/file/download?size=${10 * 1024 ** 3}`, (res) => res.once('data', () => resolve(res.pause()))).on(
            'error',
            reject,
          ),
        ),
    ),
  );
  for (const res of endless) res.on('error', () => undefined);
  const underWay = call(p.url, 'GET', '/sandboxes/dl/v1/slow?ms=1000');
  await new Promise((r) => setTimeout(r, 100));
  const started = Date.now();
  const exited = once(p.child, 'exit');
  p.child.kill('SIGTERM');
  assert.deepEqual((await underWay).body, { slept: true }, 'a request under way when SIGTERM came finishes within the grace period');
  await exited;
  const exitMs = Date.now() - started;
  assert.ok(exitMs >= 1900 && exitMs < 6000, `exited after ${exitMs} ms (grace 2 s)`);
  await eventually('the log is read to its end', () => (log.some((l) => l.msg === 'shutting down') ? true : undefined));
  const cut = log.filter((l) => l.msg === 'proxied request cut: the grace period of the shutdown ended');
  assert.equal(cut.length, 5, 'each endless download is said to be cut by the shutdown');
  assert.deepEqual(
    log.filter((l) => /upstream/.test(l.msg)),
    [],
    'a cut made by our own shutdown is not an upstream error',
  );
});

test('the namespace deleted under a running service: made again when it may; else 503 namespace_missing and /readyz says so', async (t) => {
  const kube = admin();
  for (const mayCreate of [true, false]) {
    const ns = await namespace(t, mayCreate ? 'nsback' : 'nsgone');
    // The admin identity may create namespaces; CREATE_NAMESPACE=false stands for an identity that may not.
    const p = await spawnProvisioner(t, ns, { CREATE_NAMESPACE: mayCreate ? 'true' : 'false', RECONCILE_INTERVAL_SECONDS: '3600' });
    const log = logLines(p.child);
    assert.equal((await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'a' })).status, 201);
    await kube.delete(`/api/v1/namespaces/${ns}`);
    await eventually('the namespace is gone', async () => ((await kube.find(`/api/v1/namespaces/${ns}`)) ? undefined : true), 60_000);
    const again = await call(p.url, 'POST', '/api/sandboxes', { sandbox_id: 'b' });
    if (mayCreate) {
      assert.equal(again.status, 201, JSON.stringify(again.body));
      assert.ok(await kube.find(`/api/v1/namespaces/${ns}/pods/sandbox-b`), 'the sandbox is in the namespace made again');
    } else {
      assert.deepEqual([again.status, again.body['code']], [503, 'namespace_missing']);
      assert.match(String(again.body['detail']), new RegExp(`namespace ${ns} does not exist`));
      const ready = await call(p.url, 'GET', '/readyz');
      assert.match(JSON.stringify(ready.body), new RegExp(`namespace ${ns} does not exist`));
    }
    assert.ok(
      log.some((l) => l.level === 50 && l.msg.startsWith(`the sandbox namespace ${ns} is gone`)),
      'an error-level line says the namespace is gone',
    );
  }
});

test('a second signal exits at once, without waiting for the drain (Ctrl-C twice)', async (t) => {
  const ns = await namespace(t, 'shut2');
  const p = await spawnProvisioner(t, ns, { SHUTDOWN_GRACE_SECONDS: '60' });
  assert.equal((await call(p.url, 'POST', '/api/sandboxes?wait=30', { sandbox_id: 'dl' })).body['status'], 'Running');
  const download = await new Promise<IncomingMessage>((resolve, reject) =>
    get(`${p.url}/sandboxes/dl/v1/file/download?size=${10 * 1024 ** 3}`, (res) => res.once('data', () => resolve(res.pause()))).on(
      'error',
      reject,
    ),
  );
  download.on('error', () => undefined);
  const exited = once(p.child, 'exit');
  p.child.kill('SIGINT');
  await new Promise((r) => setTimeout(r, 300));
  const started = Date.now();
  p.child.kill('SIGINT');
  const [code] = await exited;
  assert.equal(code, 1);
  assert.ok(Date.now() - started < 1000, `exited ${Date.now() - started} ms after the second signal`);
});
