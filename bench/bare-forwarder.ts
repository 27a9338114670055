// The smallest forwarder Node.js can do with undici (no routing, validation or header work): the
// ceiling the proxy benchmark compares this service's proxy to. Usage: bare-forwarder.ts <port> <upstream>
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [port, upstream] = process.argv.slice(2);
const pool = new Pool(upstream ?? '', { connections: 64 });
createServer((req, res) => {
  pool
    .stream(
      { path: req.url ?? '/', method: (req.method ?? 'GET') as 'GET', headers: { accept: req.headers.accept ?? '*/*' }, opaque: res },
      ({ statusCode, headers, opaque }) => {
        (opaque as typeof res).writeHead(statusCode, headers as Record<string, string>);
        return opaque as typeof res;
      },
    )
    .catch(() => res.destroy());
}).listen(Number(port), '127.0.0.1', () => console.log('listening'));
