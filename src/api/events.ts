// GET /api/sandboxes/{id}/events: Server-Sent Events of one sandbox's status transitions, fed by the
// watch (no API server cost): `event: status` with the sandbox answer on connect and on each change of
// status or reason, `event: deleted` when it is gone (then the stream ends), and a comment every 15 s.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { sandboxNotFound } from '../http/errors.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { Answers } from './answer.ts';

const HEARTBEAT_MS = 15_000;

export function streamSandboxEvents(
  { view, answers }: { view: SandboxView; answers: Answers },
  id: string,
  req: IncomingMessage,
  res: ServerResponse,
  base: string | undefined,
): void {
  const first = view.get(id);
  if (!first) throw sandboxNotFound(id);
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
  let seq = 0;
  const send = (event: string, data: unknown): void => {
    seq += 1;
    res.write(`id: ${seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  let last = `${first.status}/${first.reason ?? ''}`;
  send('status', answers.answer(first, base));
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
  const end = (): void => {
    clearInterval(heartbeat);
    unsubscribe();
    if (!res.writableEnded) res.end();
  };
  const unsubscribe = view.subscribe((change) => {
    if (change.record === undefined) {
      send('deleted', { sandbox_id: id });
      return end();
    }
    const key = `${change.record.status}/${change.record.reason ?? ''}`;
    if (key === last) return;
    last = key;
    send('status', answers.answer(change.record, base));
  }, id);
  res.once('close', end);
  req.socket.setTimeout(0);
}
