/**
 * Address arithmetic the generator needs: IPv4 as unsigned 32-bit numbers,
 * IPv6 as bigints, prefixes, containment, random addresses inside a prefix,
 * and RFC 5952 text for IPv6.
 */
import type { Rng } from './prng.js';

export function parseV4(s: string): number {
  const parts = s.split('.');
  if (parts.length !== 4) throw new Error(`bad IPv4 address: ${s}`);
  let n = 0;
  for (const p of parts) {
    const v = Number(p);
    if (!/^\d{1,3}$/.test(p) || v > 255) throw new Error(`bad IPv4 address: ${s}`);
    n = n * 256 + v;
  }
  return n;
}

export function formatV4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function parseV6(s: string): bigint {
  let text = s;
  // An embedded IPv4 tail (::ffff:10.0.0.1) becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = parseV4(v4[1]);
    text = text.slice(0, v4.index) + `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) throw new Error(`bad IPv6 address: ${s}`);
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = 8 - head.length - tail.length;
  if ((halves.length === 1 && fill !== 0) || (halves.length === 2 && fill < 1)) throw new Error(`bad IPv6 address: ${s}`);
  const groups = [...head, ...(halves.length === 2 ? new Array<string>(fill).fill('0') : []), ...tail];
  let n = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new Error(`bad IPv6 address: ${s}`);
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  return n;
}

/** RFC 5952 text: lower case, no leading zeros, the longest run (≥ 2) of zero groups as `::`. */
export function formatV6(n: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((n >> BigInt(i * 16)) & 0xffffn));
  return formatV6Groups(groups);
}

export function formatV6Groups(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export interface Prefix {
  family: 4 | 6;
  /** The network address: a number for IPv4, a bigint for IPv6. */
  base: bigint;
  len: number;
}

export function familyOf(addr: string): 4 | 6 {
  return addr.includes(':') ? 6 : 4;
}

/** A prefix or a single address (a /32 or /128). */
export function parsePrefix(s: string): Prefix {
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = familyOf(addr);
  const bits = family === 4 ? 32 : 128;
  const len = slash < 0 ? bits : Number(s.slice(slash + 1));
  if (!Number.isInteger(len) || len < 0 || len > bits) throw new Error(`bad prefix: ${s}`);
  const raw = family === 4 ? BigInt(parseV4(addr)) : parseV6(addr);
  const hostBits = BigInt(bits - len);
  const base = (raw >> hostBits) << hostBits;
  return { family, base, len };
}

export function prefixContains(p: Prefix, family: 4 | 6, addr: bigint): boolean {
  if (p.family !== family) return false;
  const hostBits = BigInt((family === 4 ? 32 : 128) - p.len);
  return addr >> hostBits === p.base >> hostBits;
}

export function addressValue(addr: string): bigint {
  return familyOf(addr) === 4 ? BigInt(parseV4(addr)) : parseV6(addr);
}

export function formatAddress(family: 4 | 6, n: bigint): string {
  return family === 4 ? formatV4(Number(n)) : formatV6(n);
}

function randomBits(rng: Rng, bits: number): bigint {
  let n = 0n;
  let left = bits;
  while (left > 0) {
    const take = Math.min(32, left);
    const chunk = take === 32 ? rng.u32() : rng.u32() >>> (32 - take);
    n = (n << BigInt(take)) | BigInt(chunk);
    left -= take;
  }
  return n;
}

/** A random address inside the prefix; for a prefix of 4 or more addresses, not its first or last. */
export function randomInPrefix(p: Prefix, rng: Rng): bigint {
  const hostBits = (p.family === 4 ? 32 : 128) - p.len;
  if (hostBits === 0) return p.base;
  const size = 1n << BigInt(hostBits);
  let off = randomBits(rng, hostBits);
  if (size >= 4n) {
    if (off === 0n) off = 1n;
    if (off === size - 1n) off = size - 2n;
  }
  return p.base + off;
}
