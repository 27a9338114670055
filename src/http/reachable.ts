// Whether a TCP address accepts connections yet: kube-proxy programs a node port a moment after the pod
// behind it turns Ready, so an answer that hands out the node port of a sandbox that just woke waits
// for it. Only a refused connection is waited out; any other failure (no route, a name that does not
// resolve from here) ends the wait at once: this service cannot tell, and the client may.

import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const refused = (host: string, port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1000 });
    const done = (value: boolean): void => {
      socket.destroy();
      resolve(value);
    };
    socket.once('connect', () => done(false));
    socket.once('timeout', () => done(false));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'));
  });

/** Waits (every 100 ms, at most `ms`) while `host:port` refuses connections. */
export async function untilAccepting(host: string, port: number, ms: number, signal?: AbortSignal): Promise<void> {
  const until = performance.now() + ms;
  while ((await refused(host, port)) && performance.now() < until && !signal?.aborted)
    await sleep(100, undefined, { signal }).catch(() => undefined);
}
