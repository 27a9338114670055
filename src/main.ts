// Entry point: configuration from the environment, then the service; SIGTERM/SIGINT stop it cleanly.

import { ConfigError, loadConfig } from './config.ts';
import { StartupError } from './kube/errors.ts';
import { createLogger } from './log.ts';
import { start } from './service.ts';

let config;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (err instanceof ConfigError) {
    for (const problem of err.problems) process.stderr.write(`config error: ${problem}\n`);
    process.exit(2);
  }
  throw err;
}
const log = createLogger(config.logLevel);
let service;
try {
  service = await start(config, log);
} catch (err) {
  if (err instanceof StartupError) {
    process.stderr.write(`fatal: ${err.message}\n`);
    process.exit(2);
  }
  if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
    process.stderr.write(
      `fatal: ${config.host}:${config.port} is in use (another provisioner, or npm run dev, may be running there): stop it, or set PORT\n`,
    );
    process.exit(2);
  }
  throw err;
}
const running = service;
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    // A second signal (Ctrl-C again) does not wait for the drain.
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting for the drain');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    void running.stop().then(() => process.exit(0));
  });
}
