// `npm run cluster:up | cluster:down | dev` — the local control plane from the command line.

import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { defaultStateDir, down, up } from './cluster.ts';

const command = process.argv[2];
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
    const child = spawn(process.execPath, [resolve(import.meta.dirname, '..', '..', 'src', 'main.ts')], { stdio: 'inherit', env });
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
