// Capabilities (src/http/capability.ts): unguessable per-sandbox tokens bound to the pod's uid, several
// verifying keys for rotation, and nothing but a well-formed token of the right length accepted.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Capabilities } from '../../src/http/capability.ts';

const A = 'a'.repeat(32);
const B = 'b'.repeat(32);

test('a token verifies for its sandbox and pod only', () => {
  const caps = new Capabilities([A]);
  const token = caps.sign('abc', 'uid-1');
  assert.match(token, /^[A-Za-z0-9_-]{32}$/, '192 bits, base64url');
  assert.equal(caps.verify('abc', 'uid-1', token), true);
  assert.equal(caps.verify('abc', 'uid-1', token), true, 'again, from the memo');
  assert.equal(caps.verify('abd', 'uid-1', token), false, 'another sandbox');
  assert.equal(caps.verify('abc', 'uid-2', token), false, 'the same id made again: a new pod, a new token');
  assert.equal(caps.verify('abc', 'uid-1', `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`), false);
  assert.equal(caps.verify('abc', 'uid-1', token.slice(1)), false, 'too short');
  assert.equal(caps.verify('abc', 'uid-1', `${token}=`), false, 'not canonical base64url');
  assert.equal(caps.verify('abc', 'uid-1', ''), false);
});

test('rotation: the first key signs, every key verifies; no key configured makes one for this process', () => {
  const old = new Capabilities([A]).sign('abc', 'u');
  const rotated = new Capabilities([B, A]);
  assert.equal(rotated.verify('abc', 'u', old), true, 'URLs signed with the old key keep working');
  assert.notEqual(rotated.sign('abc', 'u'), old);
  assert.equal(new Capabilities([B]).verify('abc', 'u', old), false, 'once the old key is dropped, its URLs die');
  const ephemeral = new Capabilities([]);
  assert.equal(ephemeral.ephemeral, true);
  assert.equal(new Capabilities([]).verify('abc', 'u', ephemeral.sign('abc', 'u')), false, 'another process, another key');
});
