// Capabilities: an unguessable per-sandbox token, HMAC-SHA256 of the sandbox id and its pod's uid under
// a signing key. Holding it is the right to reach that sandbox through the proxy; a sandbox deleted
// and made again (a new pod uid) gets a new one. Several keys verify (rotation); the first signs.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';

/** 24 bytes of the HMAC (192 bits), base64url: 32 characters. */
const TOKEN_BYTES = 24;

export class Capabilities {
  #keys: Buffer[];
  /**
   * The expected MACs of a sandbox (one per key), by id and pod uid: an HMAC costs 25-30 µs in Node (most
   * of it setting up the key), a lookup and a constant-time compare about 1 µs. Measured in bench/.
   */
  #expected = new LRUCache<string, Buffer[]>({ max: 20_000 });
  /** True when no key was configured and one was made for this process (tokens die with it). */
  readonly ephemeral: boolean;

  constructor(keys: readonly string[]) {
    this.ephemeral = keys.length === 0;
    this.#keys = this.ephemeral ? [randomBytes(32)] : keys.map((k) => Buffer.from(k, 'utf8'));
  }

  #mac(key: Buffer, id: string, podUid: string): Buffer {
    return createHmac('sha256', key).update(`${id}\n${podUid}`).digest().subarray(0, TOKEN_BYTES);
  }

  sign(id: string, podUid: string): string {
    return this.#mac(this.#keys[0] ?? Buffer.alloc(0), id, podUid).toString('base64url');
  }

  /** Constant-time check of `token` against every key. */
  verify(id: string, podUid: string, token: string): boolean {
    const given = Buffer.from(token, 'base64url');
    if (given.length !== TOKEN_BYTES || given.toString('base64url') !== token) return false;
    const cacheKey = `${id}\n${podUid}`;
    let expected = this.#expected.get(cacheKey);
    if (expected === undefined) {
      expected = this.#keys.map((key) => this.#mac(key, id, podUid));
      this.#expected.set(cacheKey, expected);
    }
    let ok = false;
    for (const mac of expected) ok = timingSafeEqual(mac, given) || ok;
    return ok;
  }
}
