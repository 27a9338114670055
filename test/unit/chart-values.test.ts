// The chart's values and what is derived from the settings stay current (tools/config-docs.ts): the
// `config:` block of values.yaml, values.schema.json, the table of docs/configuration.md and the chart's
// copies of deploy/ files; the defaults the chart renders are ones the service accepts; and each value
// set in the repository passes the schema.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadAllYaml } from '@kubernetes/client-node';
import { Ajv } from 'ajv';
import { envFields, loadConfig } from '../../src/config.ts';
import { VERSION } from '../../src/version.ts';
import { SETTINGS } from '../../src/config-docs.ts';
import { baseSettings, chartDefaults, stale, valuesSchema } from '../../tools/config-docs.ts';

const chart = join(import.meta.dirname, '..', '..', 'deploy', 'helm', 'sandbox-provisioner');
const yaml = (file: string) => loadAllYaml(readFileSync(join(chart, file), 'utf8'))[0] as Record<string, unknown>;

test('values.yaml, values.schema.json, docs/configuration.md and the chart’s copies are current', () => {
  assert.deepEqual(stale(), [], 'run: npm run config-docs');
});

test('every setting is documented and in values.yaml with the chart’s default; secrets are not', () => {
  assert.deepEqual(Object.keys(SETTINGS).sort(), Object.keys(envFields.shape).sort());
  const config = yaml('values.yaml')['config'] as Record<string, unknown>;
  for (const [name, value] of chartDefaults()) assert.deepEqual(config[name], value, name);
  for (const secret of ['PROVISIONER_API_KEY', 'PROXY_SIGNING_KEYS']) assert.equal(secret in config, false, secret);
  // deploy/base's settings are the chart's defaults, so both ways of installing run the same service.
  for (const [name, value] of baseSettings()) if (name in config) assert.equal(String(config[name]), value, name);
});

test('the chart’s default settings are accepted by the service as they would reach it (strings in a ConfigMap)', () => {
  const config = yaml('values.yaml')['config'] as Record<string, unknown>;
  const env = Object.fromEntries(Object.entries(config).flatMap(([k, v]) => (v === null ? [] : [[k, String(v)]])));
  assert.doesNotThrow(() => loadConfig({ ...env, K8S_NAMESPACE: 'deer-flow' }));
});

test('the schema accepts every value set of the repository and refuses typos', () => {
  const validate = new Ajv({ allErrors: true, strict: false }).compile(valuesSchema());
  const defaults = yaml('values.yaml');
  for (const file of ['values.yaml', 'values-deerflow.yaml', 'ci/production-values.yaml', 'ci/gateway-values.yaml']) {
    const extra = yaml(file);
    const merged = { ...defaults, ...extra, config: { ...(defaults['config'] as object), ...(extra['config'] as object) } };
    assert.ok(validate(merged), `${file}: ${JSON.stringify(validate.errors)}`);
  }
  assert.equal(validate({ ...defaults, replicaCnt: 2 }), false);
  assert.equal(validate({ ...defaults, config: { ...(defaults['config'] as object), SANDBOX_IMAGES: 'x' } }), false);
});

test('one version: package.json’s is the chart’s appVersion, the image tag deploy/ names, and CHANGELOG.md’s latest entry', () => {
  const root = join(chart, '..', '..', '..');
  const chartYaml = yaml('Chart.yaml');
  assert.equal(chartYaml['appVersion'], VERSION);
  assert.equal(chartYaml['version'], VERSION);
  assert.match(
    readFileSync(join(root, 'deploy', 'base', 'deployment.yaml'), 'utf8'),
    new RegExp(`image: sandbox-provisioner:${VERSION.replaceAll('.', '\\.')}\\n`),
  );
  assert.equal(/^## (\S+)$/m.exec(readFileSync(join(root, 'CHANGELOG.md'), 'utf8'))?.[1], VERSION);
});
