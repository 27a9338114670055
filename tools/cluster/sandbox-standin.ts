// A stand-in for the sandbox image's HTTP API (all-in-one-sandbox): the app of every sandbox pod of the
// local cluster, listening on the pod's address in the pod network (pod-host.ts). Shapes follow the
// image's API; extra routes exist for proxy tests.

import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { WebSocketServer } from 'ws';

export type StandinInfo = { namespace: string; pod: string; sandboxId: string };

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function html(res: ServerResponse, text: string): void {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<{ bytes: number; sha256: string; text: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const head: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
    if (bytes <= 65536) head.push(chunk);
  }
  return { bytes, sha256: hash.digest('hex'), text: Buffer.concat(head).toString('utf8') };
}

function download(res: ServerResponse, size: number): void {
  const chunk = Buffer.alloc(64 * 1024, 'sandbox-data-');
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  let left = size;
  const pump = (): void => {
    while (left > 0) {
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      if (!res.write(piece)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

function sse(req: IncomingMessage, res: ServerResponse, url: URL): void {
  const count = Number(url.searchParams.get('count') ?? '5');
  const interval = Number(url.searchParams.get('interval') ?? '200');
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.flushHeaders();
  let sent = 0;
  const timer = setInterval(() => {
    sent += 1;
    res.write(`id: ${sent}\nevent: output\ndata: ${JSON.stringify({ seq: sent, at: Date.now() })}\n\n`);
    if (sent >= count) {
      clearInterval(timer);
      res.end();
    }
  }, interval);
  req.on('close', () => clearInterval(timer));
}

export type StandinOptions = {
  /** False: /v1/sandbox (the health endpoint probes use) answers 503. */
  healthy?: boolean;
  /** The container's environment: MAX_SHELL_SESSIONS bounds the shell sessions, as in the AIO image (10 unless set). */
  env?: Record<string, string>;
  /** Its mounts backed by the node's disk (hostPath, claims): files under them outlive the pod. */
  mounts?: { containerPath: string; dir: string; readOnly: boolean }[];
};

/**
 * The AIO image's file API (/v1/file/write, /v1/file/read): a path under a disk-backed mount is a file
 * on the node's disk, there for the next pod of the same mounts; any other path is in the container's
 * own layer (kept in memory here), gone with the pod.
 */
class Files {
  #mounts: NonNullable<StandinOptions['mounts']>;
  #layer = new Map<string, string>();

  constructor(mounts: StandinOptions['mounts'] = []) {
    this.#mounts = [...mounts].sort((a, b) => b.containerPath.length - a.containerPath.length);
  }

  #where(file: string): { disk: string; readOnly: boolean } | undefined {
    const path = posix.normalize(file);
    const m = this.#mounts.find((x) => path === x.containerPath || path.startsWith(`${x.containerPath}/`));
    return m ? { disk: join(m.dir, path.slice(m.containerPath.length)), readOnly: m.readOnly } : undefined;
  }

  async write(file: string, content: string): Promise<{ status: number; body: unknown }> {
    if (!file.startsWith('/')) return { status: 400, body: { success: false, message: 'file must be an absolute path' } };
    const where = this.#where(file);
    if (!where) this.#layer.set(posix.normalize(file), content);
    else if (where.readOnly) return { status: 500, body: { success: false, message: `[Errno 30] Read-only file system: '${file}'` } };
    else {
      await mkdir(dirname(where.disk), { recursive: true });
      await writeFile(where.disk, content);
    }
    return { status: 200, body: { success: true, message: 'File written', data: { file, bytes_written: Buffer.byteLength(content) } } };
  }

  async read(file: string): Promise<{ status: number; body: unknown }> {
    const where = this.#where(file);
    const content = where ? await readFile(where.disk, 'utf8').catch(() => undefined) : this.#layer.get(posix.normalize(file));
    if (content === undefined) return { status: 404, body: { success: false, message: `File not found: ${file}` } };
    return { status: 200, body: { success: true, message: 'File read', data: { file, content } } };
  }
}

async function fileCall(files: Files, req: IncomingMessage, res: ServerResponse, op: 'read' | 'write'): Promise<void> {
  let parsed: { file?: unknown; content?: unknown };
  try {
    parsed = JSON.parse((await readBody(req)).text) as typeof parsed;
  } catch {
    return json(res, 422, { success: false, message: 'invalid JSON', data: null });
  }
  const file = String(parsed.file ?? '');
  const { status, body } = op === 'write' ? await files.write(file, String(parsed.content ?? '')) : await files.read(file);
  json(res, status, body);
}

/**
 * The image's shell sessions: each exec runs in a session (the one named by `id`, or a new one), and
 * beyond MAX_SHELL_SESSIONS the least recently used session is dropped to make room, as the AIO image
 * does (DeerFlow #5178: the 11th subagent shell evicted a live one).
 */
class ShellSessions {
  /** Open sessions, least recently used first. */
  #open = new Set<string>();
  #made = 0;
  readonly capacity: number;

  constructor(env: Record<string, string>) {
    const n = Number(env['MAX_SHELL_SESSIONS'] ?? '10');
    this.capacity = Number.isInteger(n) && n > 0 ? n : 10;
  }

  /** The session an exec runs in, made (and the oldest evicted past capacity) when it is new. */
  use(id: string | undefined): { id: string; evicted: string | undefined } {
    const session = id ?? `session-${++this.#made}`;
    let evicted: string | undefined;
    if (!this.#open.has(session) && this.#open.size >= this.capacity) {
      evicted = this.#open.keys().next().value;
      if (evicted !== undefined) this.#open.delete(evicted);
    }
    this.#open.delete(session);
    this.#open.add(session);
    return { id: session, evicted };
  }

  get ids(): string[] {
    return [...this.#open.keys()];
  }
}

/** POST /v1/shell/exec: the command echoed, in the session named by `id` (or a new one). */
async function exec(info: StandinInfo, shells: ShellSessions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readBody(req);
  let parsed: { command?: unknown; id?: unknown };
  try {
    parsed = JSON.parse(body.text) as { command?: unknown; id?: unknown };
  } catch {
    return json(res, 422, { success: false, message: 'invalid JSON', data: null });
  }
  const command = String(parsed.command ?? '');
  const session = shells.use(typeof parsed.id === 'string' && parsed.id !== '' ? parsed.id : undefined);
  json(res, 200, {
    success: true,
    message: 'ok',
    data: { session_id: session.id, evicted_session: session.evicted ?? null, output: command, exit_code: 0, sandbox_id: info.sandboxId },
  });
}

async function handle(
  info: StandinInfo,
  options: StandinOptions,
  shells: ShellSessions,
  req: IncomingMessage,
  res: ServerResponse,
  files: Files,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://standin');
  if ((req.headers.accept ?? '').includes('text/event-stream')) return sse(req, res, url);
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /v1/sandbox':
      if (options.healthy === false) return json(res, 503, { success: false, message: 'Sandbox is starting', data: null });
      return json(res, 200, {
        success: true,
        message: 'Sandbox is running',
        data: { sandbox_id: info.sandboxId, pod: info.pod, namespace: info.namespace },
        home_dir: '/home/gem',
        version: '1.0.0-standin',
        detail: null,
      });
    case 'POST /v1/shell/exec':
      return exec(info, shells, req, res);
    case 'GET /v1/shell/sessions':
      return json(res, 200, { success: true, data: { capacity: shells.capacity, sessions: shells.ids } });
    case 'POST /v1/file/write':
      return fileCall(files, req, res, 'write');
    case 'POST /v1/file/read':
      return fileCall(files, req, res, 'read');
    case 'GET /v1/file/download':
      return download(res, Number(url.searchParams.get('size') ?? String(200 * 1024 * 1024)));
    case 'POST /v1/file/upload': {
      const body = await readBody(req);
      return json(res, 200, { success: true, data: { bytes: body.bytes, sha256: body.sha256 } });
    }
    case 'GET /v1/slow': {
      const timer = setTimeout(() => json(res, 200, { slept: true }), Number(url.searchParams.get('ms') ?? '1000'));
      req.on('close', () => clearTimeout(timer));
      return;
    }
    // The image's browser apps sit behind the same port and use root-relative URLs: the VNC page loads
    // /vnc/app.js and opens a WebSocket at /websockify (see the README on host routing).
    case 'GET /vnc/index.html':
      return html(
        res,
        '<!doctype html><html><head><title>noVNC</title><script src="/vnc/app.js"></script></head><body><canvas id="screen"></canvas></body></html>',
      );
    case 'GET /vnc/app.js':
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return void res.end("const ws = new WebSocket(`ws://${location.host}/websockify`); ws.onopen = () => ws.send('RFB 003.008');");
    case 'GET /code-server/':
      return html(
        res,
        '<!doctype html><html><head><title>code-server</title><link rel="stylesheet" href="/code-server/static/app.css"></head><body></body></html>',
      );
    case 'GET /v1/docs':
      return html(res, '<!doctype html><html><head><title>AIO Sandbox API</title></head><body><div id="swagger-ui"></div></body></html>');
    case 'GET /v1/redirect':
      res.writeHead(302, { location: url.searchParams.get('to') ?? '/v1/sandbox' });
      return void res.end();
    default: {
      // Echo: what the proxy delivered (method, path, query, headers, body size).
      const body = await readBody(req);
      return json(res, url.pathname.startsWith('/missing') ? 404 : 200, {
        sandbox_id: info.sandboxId,
        method: req.method,
        url: req.url,
        headers: req.headers,
        body_bytes: body.bytes,
      });
    }
  }
}

/** Starts a stand-in sandbox on host:port. Resolves once listening. */
export async function startStandin(info: StandinInfo, port: number, host = '127.0.0.1', options: StandinOptions = {}): Promise<Server> {
  const shells = new ShellSessions(options.env ?? {});
  const files = new Files(options.mounts);
  const server = createServer((req, res) => {
    handle(info, options, shells, req, res, files).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { success: false, message: String(err) });
      else res.destroy();
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (!(req.url ?? '').startsWith('/v1/shell/ws') && !(req.url ?? '').startsWith('/websockify')) {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on('close', (code) => {
        if (ws.readyState !== ws.CLOSED) ws.close(code === 1005 ? 1000 : code);
      });
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((ok, fail) => server.once('error', fail).listen(port, host, ok));
  server.on('close', () => {
    for (const ws of wss.clients) ws.terminate();
  });
  return server;
}
