// Capabilities: an unguessable per-sandbox token, HMAC-SHA256 of the sandbox id and its Service's uid under
// a signing key. Holding it is the right to reach that sandbox through the proxy. The Service outlives a
// suspend (the pod goes, the URL stays); a sandbox deleted and made again (a new Service) gets a new one.
// Several keys verify (rotation); the first signs.

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
  /** MACs that no token matches but by chance (one per key): what an unknown id is compared with. */
  #nobody: Buffer[];
  /** True when no key was configured and one was made for this process (tokens die with it). */
  readonly ephemeral: boolean;

  constructor(keys: readonly string[]) {
    this.ephemeral = keys.length === 0;
    this.#keys = this.ephemeral ? [randomBytes(32)] : keys.map((k) => Buffer.from(k, 'utf8'));
    this.#nobody = this.#keys.map(() => randomBytes(TOKEN_BYTES));
  }

  #mac(key: Buffer, id: string, ownerUid: string): Buffer {
    return createHmac('sha256', key).update(`${id}\n${ownerUid}`).digest().subarray(0, TOKEN_BYTES);
  }

  /**
   * A fingerprint of the signing key (not the key: an HMAC of a fixed text under it), written on each
   * sandbox, so replicas that sign with different keys find out (their URLs are 404 on each other).
   */
  get fingerprint(): string {
    return createHmac('sha256', this.#keys[0] ?? Buffer.alloc(0))
      .update('sandbox-provisioner signing key fingerprint')
      .digest('base64url')
      .slice(0, 16);
  }

  sign(id: string, ownerUid: string): string {
    return (this.#expectedOf(id, ownerUid)[0] ?? Buffer.alloc(0)).toString('base64url');
  }

  #expectedOf(id: string, ownerUid: string): Buffer[] {
    const cacheKey = `${id}\n${ownerUid}`;
    let expected = this.#expected.get(cacheKey);
    if (expected === undefined) {
      expected = this.#keys.map((key) => this.#mac(key, id, ownerUid));
      this.#expected.set(cacheKey, expected);
    }
    return expected;
  }

  /**
   * Constant-time check of `token` against every key. `ownerUid` undefined: the sandbox does not exist,
   * and the token is compared all the same, against a MAC nobody holds, so that an unknown id and a
   * wrong capability for a real one take the same time (ids cannot be probed). The MACs of a real one
   * are made when it is signed (its create or status answer), so its checks are lookups too.
   */
  verify(id: string, ownerUid: string | undefined, token: string): boolean {
    const given = Buffer.from(token, 'base64url');
    if (given.length !== TOKEN_BYTES || given.toString('base64url') !== token) return false;
    const cached = this.#expected.get(`${id}\n${ownerUid ?? ''}`); // one lookup either way
    const expected = ownerUid === undefined ? this.#nobody : (cached ?? this.#expectedOf(id, ownerUid));
    let ok = false;
    for (const mac of expected) ok = timingSafeEqual(mac, given) || ok;
    return ok && ownerUid !== undefined;
  }
}
