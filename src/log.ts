// Structured JSON logs (pino). Secrets never reach a log line: known secret fields are redacted. Lines
// logged while a request is handled carry its `req_id` (from an AsyncLocalStorage the HTTP server
// enters per request), and every error is logged in one shape: `err: {type, message, code?}`.

import { AsyncLocalStorage } from 'node:async_hooks';
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export const REDACT = [
  'req.headers["x-api-key"]',
  'req.headers.authorization',
  'headers["x-api-key"]',
  'headers.authorization',
  'apiKey',
  'token',
];

/** The request being handled, if any: its id goes on every line logged meanwhile. */
export const requestContext = new AsyncLocalStorage<{ reqId: string }>();

/** The one shape of `err` in a log line; the stack only where asked for (`stack` beside it). */
export function errorFields(err: unknown): { type: string; message: string; code?: string } {
  if (!(err instanceof Error)) return { type: typeof err, message: String(err) };
  const code = (err as { code?: unknown }).code;
  return { type: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}) };
}

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'sandbox-provisioner' },
      redact: { paths: REDACT, censor: '[redacted]' },
      serializers: { err: errorFields },
      mixin: () => {
        const context = requestContext.getStore();
        return context ? { req_id: context.reqId } : {};
      },
    },
    destination ?? process.stdout,
  );
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger = (): Logger => pino({ level: 'silent' });
