// The origin a caller used to reach this service: its own request, or the X-Forwarded-* headers of a
// trusted front proxy (TRUSTED_PROXIES). Anyone else's X-Forwarded-* could name any host: ignored.

import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';

/** Whether a peer address is one of the trusted proxies (IPs or CIDRs). */
export function trustedPeers(list: readonly string[]): (address: string | undefined) => boolean {
  if (list.length === 0) return () => false;
  const blocks = new BlockList();
  for (const entry of list) {
    const [ip = '', bits] = entry.split('/');
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) blocks.addAddress(ip, type);
    else blocks.addSubnet(ip, Number(bits), type);
  }
  return (address) => {
    if (!address) return false;
    const plain = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
    return blocks.check(plain, isIP(plain) === 6 ? 'ipv6' : 'ipv4');
  };
}

const firstValue = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v)?.split(',')[0]?.trim();

/** The scheme and host the caller used: from X-Forwarded-Proto/Host when a trusted proxy sent them, else from the request itself. */
export function forwarded(
  req: IncomingMessage,
  trusted: (address: string | undefined) => boolean,
): { proto: string; host: string | undefined } {
  const fromProxy = trusted(req.socket.remoteAddress);
  const proto = fromProxy ? firstValue(req.headers['x-forwarded-proto']) : undefined;
  return {
    proto: proto === 'https' || (proto === undefined && (req.socket as { encrypted?: boolean }).encrypted) ? 'https' : 'http',
    host: (fromProxy ? firstValue(req.headers['x-forwarded-host']) : undefined) ?? req.headers.host,
  };
}

/** The origin the caller used to reach this service (X-Forwarded-Proto/Host honoured from trusted proxies only). */
export function requestBase(req: IncomingMessage, trusted: (address: string | undefined) => boolean): string | undefined {
  const { proto, host } = forwarded(req, trusted);
  if (!host || !/^[A-Za-z0-9.\-:[\]]+$/.test(host)) return undefined;
  return `${proto}://${host}`;
}
