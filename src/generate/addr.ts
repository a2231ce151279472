/**
 * What the generator needs of addresses beyond src/netset/ip.ts: prefixes
 * that must parse (a bad one in a generated or sampled document is a bug, so
 * it throws) and random addresses inside a prefix.
 */
import { parsePrefix, prefixRange, type Addr, type Prefix } from '../netset/ip.js';
import type { Rng } from './prng.js';

/** A prefix or a single address (a /32 or /128); throws when it does not parse. */
export function prefixOf(text: string): Prefix {
  const r = parsePrefix(text);
  if ('error' in r) throw new Error(`bad prefix ${text}: ${r.error}`);
  return r.prefix;
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
export function randomInPrefix(p: Prefix, rng: Rng): Addr {
  const hostBits = (typeof p.addr === 'number' ? 32 : 128) - p.len;
  if (hostBits === 0) return p.addr;
  const size = 1n << BigInt(hostBits);
  let off = randomBits(rng, hostBits);
  if (size >= 4n) {
    if (off === 0n) off = 1n;
    if (off === size - 1n) off = size - 2n;
  }
  const [lo] = prefixRange(p);
  return typeof lo === 'number' ? lo + Number(off) : lo + off;
}
