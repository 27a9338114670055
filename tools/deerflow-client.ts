// DeerFlow's RemoteSandboxBackend, both generations that run in the field, as their own code does it:
// - the seed's (bytedance/deer-flow backend/.../aio_sandbox/backend.py, f1f4af99): create the sandbox
//   through the provisioner, poll `<sandbox_url>/v1/sandbox` (5 s timeout a try, 1 s between tries, 60 s
//   in all) until it answers 200, check `is_alive` (GET the sandbox: status "Running"), then run commands
//   at `<sandbox_url>/v1/shell/exec`;
// - DeerFlow 2.1's (remote_backend.py on DeerFlow's main; ../shared/spec/deerflow-2.1/CONTRACT.md §7):
//   the same, plus presence before create (its quarantine path), `skills_container_path` always and
//   `max_shell_sessions` when its subagents need more than 10 shells, the gateway's extra mounts, and the
//   checks it makes of every answer (it raises where this raises).
// Tests and the startup benchmark use it to see what the real clients see, in every URL mode.

import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';

export type CreateBody = { sandbox_id: string; thread_id?: string; user_id?: string } & Record<string, unknown>;

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

/** DeerFlow's write_file and read_file (the AIO image's /v1/file/write and /v1/file/read); read answers undefined when the file is not there. */
export async function writeFile(sandboxUrl: string, file: string, content: string): Promise<void> {
  const res = await request(`${sandboxUrl}/v1/file/write`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ file, content }),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`write_file ${file}: ${res.statusCode} ${text.slice(0, 300)}`);
}

export async function readFile(sandboxUrl: string, file: string): Promise<string | undefined> {
  const res = await request(`${sandboxUrl}/v1/file/read`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ file }),
  });
  const text = await res.body.text();
  if (res.statusCode === 404) return undefined;
  if (res.statusCode !== 200) throw new Error(`read_file ${file}: ${res.statusCode} ${text.slice(0, 300)}`);
  return (JSON.parse(text) as { data: { content: string } }).data.content;
}

/** The extra mounts a default DeerFlow 2.1 gateway sends (8): ACP workspace, the four skill categories, Lark's config, locks and data. */
export function deerflow21Mounts(
  base: string,
  user: string,
): { extra_mounts: { host_path: string; container_path: string; read_only: boolean }[] } {
  const u = `${base}/users/${user}`;
  const lark = `${u}/integrations/lark-cli`;
  return {
    extra_mounts: [
      { host_path: `${u}/acp-workspace`, container_path: '/mnt/acp-workspace', read_only: true },
      { host_path: `${base}/skills_view/public`, container_path: '/mnt/skills/public', read_only: true },
      { host_path: `${u}/skills_view/custom`, container_path: '/mnt/skills/custom', read_only: true },
      { host_path: `${u}/skills_view/legacy`, container_path: '/mnt/skills/legacy', read_only: true },
      { host_path: `${u}/skills_view/integrations`, container_path: '/mnt/skills/integrations', read_only: true },
      { host_path: `${lark}/config`, container_path: '/mnt/integrations/lark-cli/config', read_only: true },
      { host_path: `${lark}/config/locks`, container_path: '/mnt/integrations/lark-cli/config/locks', read_only: false },
      { host_path: `${lark}/data`, container_path: '/mnt/integrations/lark-cli/data', read_only: false },
    ],
  };
}

export type Generation = 'seed' | '2.1';
type Answer = Record<string, unknown>;

/** One acquire and release of a sandbox, as the given generation of DeerFlow's backend does them. */
export class DeerFlowBackend {
  readonly generation: Generation;
  #provisioner: string;
  #headers: Record<string, string>;
  /** What this client saw, call by call: what a closing note says a gateway sees. */
  readonly seen: string[] = [];

  constructor(provisioner: string, generation: Generation, headers: Record<string, string> = {}) {
    this.#provisioner = provisioner;
    this.generation = generation;
    this.#headers = headers;
  }

  async #call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Answer }> {
    const res = await fetch(`${this.#provisioner}${path}`, {
      method,
      headers: { ...this.#headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: Answer = {};
    try {
      parsed = JSON.parse(text) as Answer;
    } catch {
      parsed = { text };
    }
    this.seen.push(`${method} ${path} -> ${res.status}`);
    return { status: res.status, body: parsed };
  }

  /** 2.1: GET /presence, checked as its client checks it (RB L241-262). */
  async presence(id: string): Promise<{ exists: boolean; containerId: string | null }> {
    const { status, body } = await this.#call('GET', `/api/sandboxes/${id}/presence`);
    if (status !== 200) throw new Error(`presence ${id}: ${status} ${JSON.stringify(body)}`);
    const containerId = body['container_id'];
    if (body['sandbox_id'] !== id || typeof body['exists'] !== 'boolean')
      throw new Error(`presence ${id}: bad shape ${JSON.stringify(body)}`);
    if (!(containerId === null || (typeof containerId === 'string' && containerId !== '')))
      throw new Error(`presence ${id}: bad container_id ${JSON.stringify(body)}`);
    if (!body['exists'] && containerId !== null) throw new Error(`presence ${id}: absent with a container_id`);
    return { exists: body['exists'], containerId };
  }

  /**
   * Acquire: (2.1: presence) create, poll the sandbox's own /v1/sandbox, then is_alive. `required`: 2.1's
   * shell capacity (max_running + 1); sent only above 10, as its gateway does.
   */
  async acquire(body: CreateBody, required = 10): Promise<{ sandboxUrl: string; answer: Answer }> {
    const id = body.sandbox_id;
    const sent = this.generation === '2.1' ? { skills_container_path: '/mnt/skills', ...body } : body;
    if (this.generation === '2.1') {
      await this.presence(id);
      if (required > 10) Object.assign(sent, { max_shell_sessions: required });
    }
    const created = await this.#call('POST', '/api/sandboxes', sent);
    if (created.status !== 200 && created.status !== 201)
      throw new Error(`create ${id}: ${created.status} ${JSON.stringify(created.body)}`);
    const sandboxUrl = created.body['sandbox_url'];
    if (typeof sandboxUrl !== 'string' || sandboxUrl === '') throw new Error(`create ${id}: no sandbox_url`);
    if (this.generation === '2.1') this.#checkCapacity(created.body, required, 'max_shell_sessions' in sent);
    if (!(await waitForSandboxReady(sandboxUrl))) throw new Error(`sandbox ${id} did not answer at ${sandboxUrl}`);
    const alive = await this.#call('GET', `/api/sandboxes/${id}`);
    if (alive.body['status'] !== 'Running') throw new Error(`is_alive ${id}: ${alive.status} status ${String(alive.body['status'])}`);
    if (this.generation === '2.1') {
      this.#checkCapacity(alive.body, required, false);
      if (alive.body['container_id'] !== created.body['container_id'])
        throw new Error(`${id}: container_id changed between create and get`);
    }
    return { sandboxUrl, answer: created.body };
  }

  /** 2.1 (RB L181-199, L362-365): the key present when sent, an integer, and at least what is required. */
  #checkCapacity(answer: Answer, required: number, sent: boolean): void {
    const value = answer['max_shell_sessions'];
    if (sent && !('max_shell_sessions' in answer)) throw new Error('version skew: the provisioner ignored max_shell_sessions');
    const capacity = value === undefined ? 10 : value;
    if (typeof capacity !== 'number' || !Number.isInteger(capacity) || capacity < required)
      throw new Error(`shell capacity ${JSON.stringify(value)} below ${required}: the sandbox would be replaced`);
  }

  /**
   * is_alive, as both generations check a sandbox they hold before reusing it (RB L273-290): 404 is
   * false, any other non-2xx raises, else `status == "Running"`. False means destroy and create again.
   */
  async isAlive(id: string): Promise<boolean> {
    const { status, body } = await this.#call('GET', `/api/sandboxes/${id}`);
    if (status === 404) return false;
    if (status < 200 || status >= 300) throw new Error(`is_alive ${id}: ${status} ${JSON.stringify(body)}`);
    return body['status'] === 'Running';
  }

  /** The sandboxes the backend lists (2.1 also checks each one's capacity). */
  async list(): Promise<Answer[]> {
    const { status, body } = await this.#call('GET', '/api/sandboxes');
    if (status !== 200 || !Array.isArray(body['sandboxes'])) throw new Error(`list: ${status}`);
    return body['sandboxes'] as Answer[];
  }

  /** Release: DELETE (2.1 raises on anything but 2xx or 404), and 2.1 proves the sandbox absent. */
  async release(id: string): Promise<void> {
    const { status } = await this.#call('DELETE', `/api/sandboxes/${id}`);
    if (this.generation === 'seed') return;
    if (!(status >= 200 && status < 300) && status !== 404) throw new Error(`delete ${id}: ${status}`);
  }
}
