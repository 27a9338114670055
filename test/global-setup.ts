// node --test global setup: one real control plane for the whole run (each test file then works in a
// namespace of its own), stopped at the end. If it cannot start, the run fails with the reason: the
// integration tests never skip silently.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { down, up } from '../tools/cluster/cluster.ts';
import { gateway } from '../tools/cluster/gateway.ts';
import { helmBinary } from '../tools/cluster/helm.ts';

let dir: string | undefined;

export async function globalSetup(): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), 'sandbox-provisioner-test-'));
  const started = Date.now();
  try {
    const log = (line: string): boolean => process.stderr.write(`[cluster] ${line}\n`);
    // The gateway (Traefik, built from its Go module once) too: gateway mode's tests route through it.
    await gateway(await up({ dir, log }), log);
    // And Helm (built once), for the chart's tests.
    process.env['HELM_BIN'] = helmBinary(log);
  } catch (err) {
    await down(dir);
    throw new Error(`the local control plane could not start, so the integration tests cannot run:\n${(err as Error).message}`);
  }
  process.stderr.write(`[cluster] up in ${Date.now() - started} ms at ${dir}\n`);
  process.env['TEST_CLUSTER_DIR'] = dir;
}

export async function globalTeardown(): Promise<void> {
  if (dir) await down(dir);
}
