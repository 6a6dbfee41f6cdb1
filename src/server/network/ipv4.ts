/** IPv4 arithmetic for IPAM: CIDRs parsed strictly, addresses as unsigned 32-bit integers. */
import { InvalidInputError } from '../../api/errors.js';

export interface Subnet {
  /** Network address as an integer. */
  base: number;
  prefixLength: number;
  /** Normalized text, e.g. 10.0.0.0/24. */
  cidr: string;
}

export function ipToInt(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4) throw new InvalidInputError(`not an IPv4 address: ${ip}`);
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255)
      throw new InvalidInputError(`not an IPv4 address: ${ip}`);
    value = value * 256 + Number(part);
  }
  return value;
}

export function intToIp(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

function maskOf(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/**
 * Parses `a.b.c.d/n`. `strict`: the host bits must be zero (a network's subnet); otherwise they are
 * cleared (a rule's remote CIDR written as 10.0.0.5/24 means 10.0.0.0/24).
 */
export function parseCidr(text: string, options: { strict?: boolean } = {}): Subnet {
  const match = /^([0-9.]+)\/([0-9]{1,2})$/.exec(text);
  if (!match) throw new InvalidInputError(`not an IPv4 CIDR: ${text}`);
  const prefixLength = Number(match[2]);
  if (prefixLength > 32) throw new InvalidInputError(`not an IPv4 CIDR: ${text}`);
  const address = ipToInt(match[1]!);
  const base = (address & maskOf(prefixLength)) >>> 0;
  if (options.strict && base !== address)
    throw new InvalidInputError(`${text} has host bits set; the subnet is ${intToIp(base)}/${prefixLength}`);
  return { base, prefixLength, cidr: `${intToIp(base)}/${prefixLength}` };
}

/** The addresses VMs can get: all but the network and broadcast addresses and the first host (gateway). */
export function usableRange(subnet: Subnet): { first: number; last: number; count: number } {
  const size = 2 ** (32 - subnet.prefixLength);
  const first = subnet.base + 2;
  const last = subnet.base + size - 2;
  return { first, last, count: Math.max(0, last - first + 1) };
}

export function contains(subnet: Subnet, ip: string): boolean {
  return (ipToInt(ip) & maskOf(subnet.prefixLength)) >>> 0 === subnet.base;
}
