// The proxy's HTTP/1.1 client for requests without a body (src/proxy/http1.ts), against raw TCP
// servers on loopback that answer byte for byte what each case needs: every framing of RFC 9112
// section 6, answers split at every byte, keep-alive reuse, timeouts and errors by undici's codes, and
// backpressure with read buffers reused only once their writes are done.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { Http1Pool, type Http1Options, type Sink } from '../../src/proxy/http1.ts';

type Received = { requests: string[]; connections: number };

const servers: Server[] = [];
after(() => servers.forEach((s) => s.close()));

/** A server that calls `answer` with each request head it reads (no request here has a body). */
async function rawServer(answer: (socket: Socket, head: string, n: number) => void): Promise<{ origin: string; got: Received }> {
  const got: Received = { requests: [], connections: 0 };
  const server = createServer((socket) => {
    got.connections += 1;
    let pending = '';
    socket.on('error', () => undefined);
    socket.on('data', (d) => {
      pending += d.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        got.requests.push(head);
        answer(socket, head, got.requests.length);
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got };
}

const options = (o: Partial<Http1Options> = {}): Http1Options => ({
  connections: 4,
  connectTimeoutMs: 2000,
  headersTimeoutMs: 5000,
  idleTimeoutMs: 5000,
  keepAliveMs: 5000,
  ...o,
});

type Answer = { status: number; headers: Record<string, string | string[]>; body: Buffer };

/**
 * A sink that collects the answer. `delayMs` holds each write's completion (a slow client); every
 * `slowEvery`-th write asks to slow down, and the drain follows its completion, as a socket's would.
 */
function collector(delayMs = 0, slowEvery = 0): { sink: Sink; answer: () => Answer; writes: () => number } {
  const answer: Answer = { status: 0, headers: {}, body: Buffer.alloc(0) };
  const parts: Buffer[] = [];
  let writes = 0;
  let reused = false;
  let waiting: (() => void) | undefined;
  return {
    sink: {
      head: (status, headers) => Object.assign(answer, { status, headers }),
      body: (chunk, done) => {
        writes += 1;
        const copy = Buffer.from(chunk);
        parts.push(copy);
        // What the buffer held when the write completes must be what was handed over.
        const check = (): void => {
          if (!copy.equals(chunk)) reused = true;
          done();
          const w = waiting;
          waiting = undefined;
          w?.();
        };
        if (delayMs) setTimeout(check, delayMs);
        else setImmediate(check);
        return !(slowEvery && writes % slowEvery === 0);
      },
      onDrain: (resume) => void (waiting = resume),
      end: () => undefined,
    },
    answer: () => {
      assert.ok(!reused, 'a read buffer was reused before its write was done');
      return { ...answer, body: Buffer.concat(parts) };
    },
    writes: () => writes,
  };
}

async function get(pool: Http1Pool, path = '/', method = 'GET', c = collector(), signal = new AbortController().signal): Promise<Answer> {
  await pool.request({ method, path, headers: { accept: 'text/plain', 'x-two': ['a', 'b'] } }, c.sink, signal);
  return c.answer();
}

/** Writes `text` one byte at a time, so every parser state sees a split. */
async function dribble(socket: Socket, text: string): Promise<void> {
  for (const byte of Buffer.from(text, 'latin1')) {
    socket.write(Buffer.from([byte]));
    await new Promise((r) => setImmediate(r));
  }
}

test('a sized answer: status, headers (repeated ones as lists), body; the connection is kept and reused', async () => {
  const { origin, got } = await rawServer((s) =>
    s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Empty:\r\n\r\nhello'),
  );
  const pool = new Http1Pool(origin, options());
  const first = await get(pool, '/v1/sandbox?x=1');
  assert.equal(first.status, 200);
  assert.deepEqual(first.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(first.headers['x-empty'], '');
  assert.equal(first.body.toString(), 'hello');
  await get(pool);
  assert.equal(got.connections, 1, 'the second request reused the connection');
  const [line, ...headers] = (got.requests[0] ?? '').split('\r\n');
  assert.equal(line, 'GET /v1/sandbox?x=1 HTTP/1.1');
  assert.deepEqual(headers, [`host: ${new URL(origin).host}`, 'accept: text/plain', 'x-two: a', 'x-two: b']);
  pool.close(false);
});

test('chunked bodies are decoded, with extensions and trailers, when every byte comes on its own', async () => {
  const { origin, got } = await rawServer(
    (s) =>
      void dribble(
        s,
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=x\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n',
      ),
  );
  const pool = new Http1Pool(origin, options());
  const answer = await get(pool);
  assert.equal(answer.body.toString(), 'hello 0123456789');
  assert.equal(answer.headers['transfer-encoding'], 'chunked');
  await get(pool);
  assert.equal(got.connections, 1);
  pool.close(false);
});

test('no body for HEAD, 204 and 304, whatever their Content-Length says; a 1xx is skipped', async () => {
  const { origin, got } = await rawServer((s, head) => {
    const method = head.split(' ')[0];
    const path = head.split(' ')[1];
    if (method === 'HEAD') s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n');
    else if (path === '/204') s.write('HTTP/1.1 204 No Content\r\n\r\n');
    else if (path === '/304') s.write('HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n');
    else s.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  });
  const pool = new Http1Pool(origin, options());
  const head = await get(pool, '/', 'HEAD');
  assert.deepEqual([head.status, head.headers['content-length'], head.body.length], [200, '100', 0]);
  assert.deepEqual([(await get(pool, '/204')).status, (await get(pool, '/304')).status], [204, 304]);
  const hinted = await get(pool, '/hint');
  assert.deepEqual([hinted.status, hinted.body.toString(), hinted.headers['link']], [200, 'ok', undefined]);
  assert.equal(got.connections, 1, 'each answer ended where its framing said, so the connection stayed usable');
  pool.close(false);
});

test('a body without length runs to the close, and that connection is not reused; HTTP/1.0 closes unless kept', async () => {
  const { origin, got } = await rawServer((s, head) => {
    if (head.includes('/ten')) return void s.end('HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi');
    s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ');
    setTimeout(() => s.end('part two'), 20);
  });
  const pool = new Http1Pool(origin, options());
  assert.equal((await get(pool)).body.toString(), 'part one, part two');
  assert.equal((await get(pool, '/ten')).body.toString(), 'hi');
  await get(pool);
  assert.equal(got.connections, 3);
  pool.close(false);
});

test('errors carry undici codes: refused, reset mid-body, malformed, oversized head, timeouts, abort', async () => {
  const closed = await rawServer(() => undefined);
  const port = new URL(closed.origin).port;
  servers.pop()?.close();
  await new Promise((r) => setTimeout(r, 20));
  const code = (p: Promise<unknown>): Promise<string> =>
    p.then(
      () => 'resolved',
      (e: { code?: string }) => e.code ?? 'none',
    );
  assert.equal(await code(get(new Http1Pool(`http://127.0.0.1:${port}`, options()))), 'ECONNREFUSED');

  const { origin } = await rawServer((s, head) => {
    if (head.includes('/cut')) s.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    else if (head.includes('/badlength')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n');
    else if (head.includes('/bad')) s.write('HTTP/9 OK\r\n\r\n');
    else if (head.includes('/huge')) s.write(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`);
    else if (head.includes('/stall')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    // /silent: never answers
  });
  const pool = new Http1Pool(origin, options({ headersTimeoutMs: 150, idleTimeoutMs: 150 }));
  assert.equal(await code(get(pool, '/cut')), 'ECONNRESET');
  assert.equal(await code(get(pool, '/bad')), 'UND_ERR_SOCKET');
  assert.equal(await code(get(pool, '/badlength')), 'UND_ERR_SOCKET');
  assert.equal(await code(get(pool, '/huge')), 'UND_ERR_HEADERS_OVERFLOW');
  assert.equal(await code(get(pool, '/silent')), 'UND_ERR_HEADERS_TIMEOUT');
  assert.equal(await code(get(pool, '/stall')), 'UND_ERR_BODY_TIMEOUT');
  const abort = new AbortController();
  setTimeout(() => abort.abort(), 30);
  const slow = new Http1Pool(origin, options());
  assert.equal(await code(get(slow, '/silent', 'GET', collector(), abort.signal)), 'UND_ERR_ABORTED');
  pool.close(false);
  slow.close(false);
});

test('at most `connections` at once: a third request waits for a free one', async () => {
  let open = 0;
  let most = 0;
  const { origin, got } = await rawServer((s) => {
    open += 1;
    most = Math.max(most, open);
    setTimeout(() => {
      open -= 1;
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx');
    }, 30);
  });
  const pool = new Http1Pool(origin, options({ connections: 2 }));
  const answers = await Promise.all([get(pool), get(pool), get(pool), get(pool), get(pool)]);
  assert.ok(answers.every((a) => a.body.toString() === 'x'));
  assert.equal(most, 2);
  assert.equal(got.connections, 2);
  pool.close(false);
});

test('a large body through a slow client: every byte in order, no read buffer reused before its write is done', async () => {
  const size = 24 * 1024 * 1024;
  const body = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) body.writeUInt32LE(i, i);
  const { origin } = await rawServer((s, head) => {
    const chunked = head.includes('/chunked');
    s.write(`HTTP/1.1 200 OK\r\n${chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${size}`}\r\n\r\n`);
    if (!chunked) return void s.write(body);
    for (let i = 0; i < size; i += 3_000_000) {
      const part = body.subarray(i, i + 3_000_000);
      s.write(`${part.length.toString(16)}\r\n`);
      s.write(part);
      s.write('\r\n');
    }
    s.write('0\r\n\r\n');
  });
  const pool = new Http1Pool(origin, options());
  const digest = createHash('sha256').update(body).digest('hex');
  for (const path of ['/sized', '/chunked']) {
    const slow = collector(2, 2); // every write completes 2 ms later; every second one asks to slow down
    const answer = await get(pool, path, 'GET', slow);
    assert.equal(answer.body.length, size, path);
    assert.equal(createHash('sha256').update(answer.body).digest('hex'), digest, path);
    assert.ok(slow.writes() > 4, 'the body came in several reads');
  }
  pool.close(false);
});

test('close: graceful lets an exchange in flight finish; at once cuts it', async () => {
  const { origin } = await rawServer((s) => setTimeout(() => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 40));
  const graceful = new Http1Pool(origin, options());
  const inFlight = get(graceful);
  await new Promise((r) => setTimeout(r, 10));
  graceful.close(true);
  assert.equal((await inFlight).body.toString(), 'ok');
  const cut = new Http1Pool(origin, options());
  const cutFlight = get(cut).then(
    () => 'resolved',
    (e: { code?: string }) => e.code,
  );
  await new Promise((r) => setTimeout(r, 10));
  cut.close(false);
  assert.equal(await cutFlight, 'ECONNRESET');
});
