// DeerFlow's RemoteSandboxBackend, as its own code does it (bytedance/deer-flow
// backend/packages/harness/deerflow/community/aio_sandbox/backend.py, f1f4af99): create the sandbox
// through the provisioner, poll `<sandbox_url>/v1/sandbox` (5 s timeout a try, 1 s between tries, 60 s
// in all) until it answers 200, then run commands at `<sandbox_url>/v1/shell/exec`. Tests and the
// startup benchmark use it to see what the real client sees, in every URL mode.

import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';

export type CreateBody = { sandbox_id: string; thread_id?: string; user_id?: string };

/** POST /api/sandboxes; the sandbox answer (throws on anything but 200/201). */
export async function createSandbox(
  provisioner: string,
  body: CreateBody,
  headers: Record<string, string> = {},
): Promise<{ sandbox_url: string } & Record<string, unknown>> {
  const res = await fetch(`${provisioner}/api/sandboxes`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const answer = (await res.json()) as { sandbox_url?: string } & Record<string, unknown>;
  if (!res.ok || !answer.sandbox_url) throw new Error(`create ${body.sandbox_id}: ${res.status} ${JSON.stringify(answer)}`);
  return answer as { sandbox_url: string } & Record<string, unknown>;
}

/** wait_for_sandbox_ready: true once GET <sandbox_url>/v1/sandbox answers 200, false after `timeoutS`. */
export async function waitForSandboxReady(sandboxUrl: string, timeoutS = 60): Promise<boolean> {
  const deadline = Date.now() + timeoutS * 1000;
  while (Date.now() < deadline) {
    const poll = await request(`${sandboxUrl}/v1/sandbox`, { headersTimeout: 5000, bodyTimeout: 5000 }).catch(() => undefined);
    const ok = poll?.statusCode === 200;
    await poll?.body.dump().catch(() => undefined);
    if (ok) return true;
    await sleep(1000);
  }
  return false;
}

/** POST <sandbox_url>/v1/shell/exec {command}; the command's output (throws on anything but 200). */
export async function execute(sandboxUrl: string, command: string): Promise<string> {
  const res = await request(`${sandboxUrl}/v1/shell/exec`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ command }),
    headersTimeout: 600_000,
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`exec: ${res.statusCode} ${text.slice(0, 300)}`);
  return (JSON.parse(text) as { data: { output: string } }).data.output;
}
