/**
 * Which peers may tell the server a client's address (X-Forwarded-For).
 *
 * Why: the client address is the audit record's `source`, the login throttle's source and the
 * anonymous rate-limit key. If any client could set it with a header, one attacker could pose as
 * every address in turn and dodge all three. So the header is believed only when the socket peer is a
 * proxy the operator listed (`trusted_proxies` / RAMPART_TRUSTED_PROXIES); by default none is, and
 * request.ip is the socket peer. The list goes to Fastify's `trustProxy` (proxy-addr): the client
 * address is then the rightmost X-Forwarded-For entry not itself a trusted proxy.
 */
import { isIP } from 'node:net';

/**
 * Validates a list of IP addresses and CIDR blocks (`10.0.0.1`, `10.1.0.0/16`, `fd00::/8`). Throws a
 * RangeError naming the bad entry. A /0 block is refused: trusting everyone would let any client pick
 * its own address.
 */
export function parseTrustedProxies(entries: readonly string[]): string[] {
  return entries.map((raw) => {
    const entry = raw.trim();
    const [address = '', prefix, ...rest] = entry.split('/');
    const version = isIP(address);
    const max = version === 4 ? 32 : 128;
    const bits = prefix === undefined ? max : /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
    if (version === 0 || rest.length > 0 || !(bits >= 0 && bits <= max) || address.includes('%'))
      throw new RangeError(
        `trusted proxy ${JSON.stringify(raw)} is not an IP address or CIDR block (e.g. 10.0.0.1 or 10.1.0.0/16)`,
      );
    if (bits === 0)
      throw new RangeError(
        `trusted proxy ${JSON.stringify(raw)} would trust every address; list the proxies themselves`,
      );
    return entry;
  });
}

/** The comma-separated form of the environment variable; empty entries are ignored. */
export function parseTrustedProxiesList(text: string): string[] {
  return parseTrustedProxies(
    text
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );
}
