// `npm run cluster:up | cluster:down | dev` — the local control plane from the command line.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { defaultStateDir, down, up } from './cluster.ts';

const command = process.argv[2];

/** The local cluster's signing key for `npm run dev`, made once and kept in its state dir. */
function devSigningKey(dir: string): string {
  const file = join(dir, 'dev-signing-key');
  if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600 });
  return readFileSync(file, 'utf8').trim();
}
const log = (line: string): void => console.error(`[cluster] ${line}`);

switch (command) {
  case 'up': {
    const state = await up({ log });
    log(`kubectl --kubeconfig ${state.kubeconfig} get nodes`);
    console.log(state.kubeconfig);
    break;
  }
  case 'down':
    await down();
    log(`stopped and removed ${defaultStateDir()}`);
    break;
  case 'dev': {
    // The provisioner in the foreground against the local cluster, with host paths under the state dir.
    const state = await up({ log });
    const skills = join(state.dir, 'skills');
    const threads = join(state.dir, 'threads');
    mkdirSync(skills, { recursive: true });
    mkdirSync(threads, { recursive: true });
    const env = {
      KUBECONFIG_PATH: state.kubeconfig,
      // One signing key for the local cluster's life: sandboxes made by an earlier run keep their URLs.
      PROXY_SIGNING_KEYS: devSigningKey(state.dir),
      NODE_HOST: '127.0.0.1',
      SKILLS_HOST_PATH: skills,
      THREADS_HOST_PATH: threads,
      EXTRA_MOUNTS_BASE_DIR: state.dir,
      // A local cluster for one developer: the API is open unless a key is given.
      ...(process.env['PROVISIONER_API_KEY'] ? {} : { PROVISIONER_ALLOW_ANONYMOUS: 'true' }),
      ...process.env,
    };
    if (env.PROVISIONER_ALLOW_ANONYMOUS === 'true')
      log('PROVISIONER_ALLOW_ANONYMOUS=true: no API key needed on this local setup (set PROVISIONER_API_KEY to require one)');
    log(`provisioner on http://localhost:${process.env['PORT'] ?? 8002} (kubeconfig ${state.kubeconfig})`);
    // In a process group of its own: the terminal's Ctrl-C reaches this script only, which passes it on
    // once (reaching both, the provisioner saw a second signal and skipped its drain).
    const child = spawn(process.execPath, [resolve(import.meta.dirname, '..', '..', 'src', 'main.ts')], {
      stdio: 'inherit',
      env,
      detached: true,
    });
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
    child.on('exit', (code) => {
      // By design the control plane outlives the provisioner, so the next `npm run dev` starts in seconds.
      log(
        `provisioner stopped; the local control plane is still running (kubeconfig ${state.kubeconfig}). Stop it with: npm run cluster:down`,
      );
      process.exit(code ?? 0);
    });
    break;
  }
  default:
    console.error('usage: node tools/cluster/cli.ts up|down|dev');
    process.exit(2);
}
