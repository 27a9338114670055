// Baseline: a bare node:http server answering one constant JSON body (the limit for Node.js).
// Usage: bare-json.ts <port> <body>
import { createServer } from 'node:http';

const [port, body = '{}'] = process.argv.slice(2);
const length = Buffer.byteLength(body);
createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
  res.end(body);
}).listen(Number(port), '127.0.0.1', () => console.log('listening'));
