// GET /api/sandboxes/{id}/events: Server-Sent Events of one sandbox's status transitions, fed by the
// watch (no API server cost): `event: status` with the sandbox answer on connect and on each change of
// status or reason, `event: deleted` when it is gone (then the stream ends), `event: end` when the
// service shuts down, and a comment every 15 s. Bounded per client (src/http/event-stream.ts).

import type { IncomingMessage, ServerResponse } from 'node:http';
import { sandboxNotFound } from '../http/errors.ts';
import type { EventStreams } from '../http/event-stream.ts';
import type { SandboxView } from '../watch/sandbox-view.ts';
import type { Answers } from './answer.ts';

export function streamSandboxEvents(
  { view, answers, streams }: { view: SandboxView; answers: Answers; streams: EventStreams },
  id: string,
  req: IncomingMessage,
  res: ServerResponse,
  base: string | undefined,
): void {
  const first = view.get(id);
  if (!first) throw sandboxNotFound(id);
  const stream = streams.open(req, res);
  if (!stream) return;
  let last = `${first.status}/${first.reason ?? ''}`;
  stream.send('status', answers.answer(first, base));
  const unsubscribe = view.subscribe((change) => {
    if (change.record === undefined) return stream.end('deleted', { sandbox_id: id });
    const key = `${change.record.status}/${change.record.reason ?? ''}`;
    if (key === last) return;
    last = key;
    stream.send('status', answers.answer(change.record, base));
  }, id);
  stream.onClose(unsubscribe);
}
