// Structured JSON logs (pino). Secrets never reach a log line: known secret fields are redacted.

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

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, base: { service: 'sandbox-provisioner' }, redact: { paths: REDACT, censor: '[redacted]' } },
    destination ?? process.stdout,
  );
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger = (): Logger => pino({ level: 'silent' });
