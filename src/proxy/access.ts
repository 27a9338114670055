// The proxy's second step: whether a request may reach the sandbox it names. The API key; or, on the
// plain path with no key set, an anonymous setup allowed on purpose; or a capability valid for the
// sandbox's Service. Every candidate is checked, even for an unknown id (against a MAC nobody
// holds): the same work either way, so ids cannot be probed by timing.

import type { IncomingMessage } from 'node:http';
import type { SandboxRecord } from '../domain/record.ts';
import { hasApiKey } from '../http/auth.ts';
import type { Capabilities } from '../http/capability.ts';
import type { Entry } from './entry.ts';

/** At most this many capabilities of one request are checked (a host request may carry several cookies). */
export const MAX_TOKENS = 4;

export type AccessRules = { apiKey: string; allowAnonymous: boolean };

export class Access {
  #rules: AccessRules;
  #capabilities: Capabilities;

  constructor(rules: AccessRules, capabilities: Capabilities) {
    this.#rules = rules;
    this.#capabilities = capabilities;
  }

  allowed(req: IncomingMessage, entry: Entry, id: string, record: SandboxRecord | undefined): boolean {
    const { apiKey, allowAnonymous } = this.#rules;
    if (apiKey && hasApiKey(req, apiKey)) return true;
    if (entry.form === 'plain') return !apiKey && allowAnonymous;
    // A host request offers its own cookie and any planted beside it; any that verifies admits.
    // Bound to the Service: it outlives a suspend (the pod goes), not a delete.
    const serviceUid = record ? (record.serviceUid ?? '') : undefined;
    let ok = false;
    for (const token of entry.tokens.slice(0, MAX_TOKENS)) ok = this.#capabilities.verify(id, serviceUid, token) || ok;
    return ok;
  }
}
