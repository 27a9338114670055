// Helm for the chart's tests: built once from its Go module by build-helm.sh into the cache, like the
// control plane and Traefik.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export function helmBinary(log: (line: string) => void): string {
  log('helm: building or reusing the cached binary (tools/cluster/build-helm.sh)');
  return (
    execFileSync('bash', [join(import.meta.dirname, 'build-helm.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      .trim()
      .split('\n')
      .at(-1) ?? ''
  );
}
