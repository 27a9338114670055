// Observability routes: GET /metrics (Prometheus text) and GET /openapi.json.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestTarget } from './app.ts';
import type { Metrics } from './metrics.ts';
import { openApiDocument } from './openapi.ts';
import type { Route } from './provisioner/routes.ts';
import { sendJson } from './http.ts';

export function observeRoutes(metrics: Metrics) {
  let openapi: string | undefined;
  return (req: IncomingMessage, res: ServerResponse, url: RequestTarget): Route | undefined => {
    if (url.pathname === '/metrics' && req.method === 'GET') {
      return {
        route: '/metrics',
        handle: async () => {
          const text = await metrics.registry.metrics();
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
      };
    }
    if (url.pathname === '/openapi.json' && req.method === 'GET') {
      return {
        route: '/openapi.json',
        handle: () => {
          openapi ??= JSON.stringify(openApiDocument());
          sendJson(res, 200, JSON.parse(openapi));
        },
      };
    }
    return undefined;
  };
}
