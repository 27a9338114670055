// The dashboard's rows of the route table: the page at /ui/ (files of this folder, no build step, no
// CDN), / sending there, and the namespace-wide event stream at /api/events (behind the API key).

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { RouteRow } from '../http/router.ts';
import { HttpError } from '../http/errors.ts';
import type { Feed } from './feed.ts';

/** The page's files and their types. */
const FILES = [
  ['index.html', 'text/html; charset=utf-8'],
  ['app.js', 'text/javascript; charset=utf-8'],
  ['style.css', 'text/css; charset=utf-8'],
] as const;

/** Everything the page loads comes from here: no inline script, no other origin. */
const HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

/** The page's files, read once, each with an ETag of its content (a new release changes it). */
function staticFiles(): Map<string, { type: string; body: Buffer; etag: string }> {
  const dir = join(import.meta.dirname, 'static');
  return new Map(
    FILES.map(([name, type]) => {
      const body = readFileSync(join(dir, name));
      return [name, { type, body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }];
    }),
  );
}

/** Sends the browser to the page. */
const toPage = ({ res }: { res: ServerResponse }): void => {
  res.writeHead(302, { location: '/ui/', 'content-length': 0 });
  res.end();
};

export function dashboardRoutes(feed: Feed, base: (req: IncomingMessage) => string | undefined): RouteRow[] {
  const files = staticFiles();
  return [
    {
      name: '/',
      path: '/',
      quiet: true,
      methods: { GET: toPage },
    },
    // /ui without its slash: the page's relative URLs need the slash.
    { name: '/ui', path: '/ui', quiet: true, methods: { GET: toPage } },
    {
      name: '/ui/*',
      prefix: '/ui/',
      quiet: true,
      methods: {
        GET: ({ req, res, params }) => {
          const file = files.get(params[0] || 'index.html');
          if (!file) throw new HttpError('not_found', 'Not Found: no such file of the dashboard');
          if (req.headers['if-none-match'] === file.etag) {
            res.writeHead(304, { ...HEADERS, etag: file.etag });
            return void res.end();
          }
          res.writeHead(200, { ...HEADERS, etag: file.etag, 'content-type': file.type, 'content-length': file.body.length });
          res.end(file.body);
        },
      },
    },
    { name: '/api/events', path: '/api/events', methods: { GET: ({ req, res }) => feed.stream(req, res, base(req)) } },
  ];
}
