// The service's version: package.json's, which the image carries (deploy/Dockerfile copies it), the
// chart's appVersion and CHANGELOG.md's latest entry (a test keeps the four equal).

import { readFileSync } from 'node:fs';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;
