/**
 * IP addresses, prefixes and address sets, for both families.
 *
 * An address is a plain value: IPv4 as an unsigned 32-bit integer in a number,
 * IPv6 as a bigint. The family is the JS type, so no tag is needed.
 * IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are the IPv4 address they map:
 * parsing normalizes them to the number, so one host never has two identities.
 */
import { BigIntervalSet, IntervalSet } from './interval.js';

/**
 * An IP address. INVARIANT: a number is an integer in 0..2^32−1 (IPv4); a
 * bigint is in 0..2^128−1 (IPv6). Parsed bigints never fall in the
 * IPv4-mapped range ::ffff:0:0/96 (those become numbers).
 */
export type Addr = number | bigint;

/** The largest IPv4 address, 255.255.255.255. */
export const MAX_V4 = 0xffffffff;
/** The largest IPv6 address, ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff. */
export const MAX_V6 = (1n << 128n) - 1n;
/** The IPv4-mapped prefix ::ffff:0:0/96, shifted right by 32 bits. */
const MAPPED_HIGH = 0xffffn;

/** The family of an address: 4 for a number, 6 for a bigint. */
export function familyOf(a: Addr): 4 | 6 {
  return typeof a === 'number' ? 4 : 6;
}

/** Whether `a` is a valid address of its family (an integer in range). */
export function isAddr(a: unknown): a is Addr {
  if (typeof a === 'number') return Number.isInteger(a) && a >= 0 && a <= MAX_V4;
  if (typeof a === 'bigint') return a >= 0n && a <= MAX_V6;
  return false;
}

/**
 * Parses a dotted quad within `s[start..end)` strictly: four decimal octets
 * 0..255, no sign, no whitespace, no leading zeros (`01.2.3.4` is rejected,
 * since other tools read it as octal). Returns -1 when invalid.
 */
function parseV4(s: string, start: number, end: number): number {
  let parts = 0;
  let val = 0;
  let acc = 0;
  let digits = 0;
  for (let i = start; i <= end; i++) {
    const c = i < end ? s.charCodeAt(i) : 46; // a sentinel '.' closes the last octet
    if (c >= 48 && c <= 57) {
      if (digits > 0 && acc === 0) return -1; // leading zero
      acc = acc * 10 + (c - 48);
      digits++;
      if (acc > 255) return -1;
    } else if (c === 46) {
      if (digits === 0 || parts === 4) return -1;
      val = val * 256 + acc;
      parts++;
      acc = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  return parts === 4 ? val : -1;
}

/** Parses one IPv6 group of 1 to 4 hex digits, or returns -1. */
function parseHexGroup(g: string): number {
  if (g.length === 0 || g.length > 4) return -1;
  let v = 0;
  for (let i = 0; i < g.length; i++) {
    const c = g.charCodeAt(i);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

/**
 * Parses the colon-separated groups of one side of `::` into 16-bit values,
 * appending to `out`. When `v4Tail` is set, the last group may be a dotted quad
 * (two groups). Returns false when invalid.
 */
function parseGroups(part: string, v4Tail: boolean, out: number[]): boolean {
  if (part.length === 0) return true;
  const groups = part.split(':');
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i];
    if (v4Tail && i === groups.length - 1 && g.includes('.')) {
      const v4 = parseV4(g, 0, g.length);
      if (v4 < 0) return false;
      out.push(Math.floor(v4 / 65536), v4 % 65536);
    } else {
      const v = parseHexGroup(g);
      if (v < 0) return false;
      out.push(v);
    }
  }
  return true;
}

/** Parses IPv6 text (with `::` and an optional dotted-quad tail) to its 128-bit value without normalizing; null when invalid or zoned. */
function parseV6(s: string): bigint | null {
  if (s.includes('%')) return null; // zone ids are not addresses
  const dbl = s.indexOf('::');
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return null;
  const head: number[] = [];
  const tail: number[] = [];
  if (dbl === -1) {
    if (!parseGroups(s, true, head) || head.length !== 8) return null;
  } else {
    const after = s.slice(dbl + 2);
    if (!parseGroups(s.slice(0, dbl), false, head) || !parseGroups(after, true, tail)) return null;
    if (head.length + tail.length > 7) return null; // `::` stands for at least one group
  }
  const groups = dbl === -1 ? head : [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  return v;
}

/** Raw parse without IPv4-mapped normalization: the family as written and the value. */
function parseRaw(s: string): Addr | null {
  if (s.includes(':')) return parseV6(s);
  const v = parseV4(s, 0, s.length);
  return v < 0 ? null : v;
}

/** Whether an IPv6 value lies in the IPv4-mapped range ::ffff:0:0/96. */
function isMapped(v: bigint): boolean {
  return v >> 32n === MAPPED_HIGH;
}

/**
 * Parses an address strictly: a dotted quad (no leading zeros, octets
 * 0..255, exactly four parts) or full IPv6 syntax including `::` and an
 * embedded dotted-quad tail. Zone ids (`fe80::1%eth0`), whitespace, brackets
 * and prefix lengths are rejected. IPv4-mapped addresses (`::ffff:1.2.3.4`,
 * in any spelling) normalize to the IPv4 number. Returns null when invalid.
 */
export function parseAddr(s: string): Addr | null {
  const a = parseRaw(s);
  if (typeof a === 'bigint' && isMapped(a)) return Number(a & 0xffffffffn);
  return a;
}

/** Formats an IPv4 number as a dotted quad. */
function formatV4(a: number): string {
  return `${Math.floor(a / 16777216)}.${Math.floor(a / 65536) % 256}.${Math.floor(a / 256) % 256}.${a % 256}`;
}

/**
 * Formats an address: IPv4 as a dotted quad; IPv6 in RFC 5952 canonical form
 * (lowercase hex, no leading zeros, the longest run of two or more zero
 * groups compressed to `::`, the first such run on ties; IPv4-mapped values
 * in mixed notation `::ffff:a.b.c.d`, RFC 5952 section 5). Throws RangeError
 * for a value that is not a valid address.
 */
export function formatAddr(a: Addr): string {
  if (!isAddr(a)) throw new RangeError(`${String(a)} is not an IPv4 or IPv6 address value`);
  if (typeof a === 'number') return formatV4(a);
  if (isMapped(a)) return `::ffff:${formatV4(Number(a & 0xffffffffn))}`;
  const groups: number[] = new Array<number>(8);
  for (let i = 0; i < 8; i++) groups[i] = Number((a >> BigInt(112 - 16 * i)) & 0xffffn);
  let bestStart = -1;
  let bestLen = 1; // only runs of two or more are compressed
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
  const hex = (from: number, to: number) => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

/**
 * A CIDR prefix. INVARIANT: `len` is an integer in 0..32 when `addr` is a
 * number (IPv4) and in 0..128 when it is a bigint (IPv6), and `addr` has no
 * bits set beyond the first `len` (it is the lowest address of the prefix).
 */
export interface Prefix {
  /** The first address of the prefix; its type gives the family. */
  readonly addr: Addr;
  /** The prefix length in bits. */
  readonly len: number;
}

/** The result of {@link parsePrefix}: a (masked) prefix, or a short lowercase error phrase. */
export type ParsePrefixResult = { prefix: Prefix; hostBitsSet: boolean } | { error: string };

/** Clears the host bits of an IPv4 address for a prefix length. */
function maskV4(a: number, len: number): number {
  const size = 2 ** (32 - len);
  return a - (a % size);
}

/** Clears the host bits of an IPv6 address for a prefix length. */
function maskV6(a: bigint, len: number): bigint {
  const host = (1n << BigInt(128 - len)) - 1n;
  return a & ~host & MAX_V6;
}

/**
 * Parses `a.b.c.d/n`, `x::/n`, or a bare address (= /32 or /128). The length
 * is decimal without leading zeros. When host bits are set, the prefix is
 * returned masked with `hostBitsSet: true`. An IPv4-mapped prefix
 * (`::ffff:10.0.0.0/104`, length 96 or more) becomes the IPv4 prefix it maps
 * (`10.0.0.0/8`), matching {@link parseAddr}. Errors are short lowercase
 * phrases without a final period, such as
 * `prefix length 33 is out of range for IPv4 (0-32)`.
 */
export function parsePrefix(s: string): ParsePrefixResult {
  const slash = s.indexOf('/');
  const addrText = slash === -1 ? s : s.slice(0, slash);
  if (addrText.includes('%')) return { error: 'zone ids are not allowed in addresses' };
  const raw = parseRaw(addrText);
  if (raw === null) return { error: 'not an IPv4 or IPv6 address' };
  const bits = typeof raw === 'number' ? 32 : 128;
  let len = bits;
  if (slash !== -1) {
    const lenText = s.slice(slash + 1);
    if (lenText === '') return { error: 'prefix length is missing after `/`' };
    if (!/^(0|[1-9][0-9]{0,3})$/.test(lenText)) return { error: `prefix length \`${lenText}\` is not a decimal number` };
    len = Number(lenText);
    if (len > bits) return { error: `prefix length ${len} is out of range for IPv${bits === 32 ? 4 : 6} (0-${bits})` };
  }
  if (typeof raw === 'number') {
    const addr = maskV4(raw, len);
    return { prefix: { addr, len }, hostBitsSet: addr !== raw };
  }
  if (isMapped(raw) && len >= 96) {
    const v4 = Number(raw & 0xffffffffn);
    const addr = maskV4(v4, len - 96);
    return { prefix: { addr, len: len - 96 }, hostBitsSet: addr !== v4 };
  }
  const addr = maskV6(raw, len);
  return { prefix: { addr, len }, hostBitsSet: addr !== raw };
}

/** Formats a prefix as `address/len`, always with the length (even /32 and /128). */
export function formatPrefix(p: Prefix): string {
  return `${formatAddr(p.addr)}/${p.len}`;
}

/** Builds a prefix with the host bits of `addr` cleared. Throws RangeError for an invalid address or length. */
export function makePrefix(addr: Addr, len: number): Prefix {
  if (!isAddr(addr)) throw new RangeError(`${String(addr)} is not an IPv4 or IPv6 address value`);
  const bits = typeof addr === 'number' ? 32 : 128;
  if (!Number.isInteger(len) || len < 0 || len > bits) throw new RangeError(`prefix length ${len} is out of range for IPv${bits === 32 ? 4 : 6} (0-${bits})`);
  return { addr: typeof addr === 'number' ? maskV4(addr, len) : maskV6(addr, len), len };
}

/** The first and last address of a prefix (host bits of `addr`, if any, are ignored). */
export function prefixRange(p: Prefix & { readonly addr: number }): [number, number];
export function prefixRange(p: Prefix & { readonly addr: bigint }): [bigint, bigint];
export function prefixRange(p: Prefix): [number, number] | [bigint, bigint];
export function prefixRange(p: Prefix): [number, number] | [bigint, bigint] {
  if (typeof p.addr === 'number') {
    const size = 2 ** (32 - p.len);
    const lo = p.addr - (p.addr % size);
    return [lo, lo + size - 1];
  }
  const host = (1n << BigInt(128 - p.len)) - 1n;
  const lo = p.addr & ~host & MAX_V6;
  return [lo, lo | host];
}

/** The number of trailing zero bits of `x` (x > 0), capped at `cap`. */
function trailingZeros(x: bigint, cap: number): number {
  let n = 0;
  while (n < cap && (x & 1n) === 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}

/**
 * The minimal CIDR decomposition of `[lo, hi]` in a `bits`-wide space: greedily
 * the largest aligned block starting at `lo` that fits. Each emitted prefix is
 * maximal (its parent is not inside the range), which makes the cover minimal.
 */
function rangeToPrefixes(lo: bigint, hi: bigint, bits: number, emit: (addr: bigint, len: number) => void): void {
  while (lo <= hi) {
    let k = lo === 0n ? bits : trailingZeros(lo, bits);
    while (k > 0 && lo + (1n << BigInt(k)) - 1n > hi) k--;
    emit(lo, bits - k);
    lo += 1n << BigInt(k);
  }
}

/** rangeToPrefixes for IPv4 in plain numbers (no bigint arithmetic): the hot path of rendering address sets. */
function rangeToPrefixesV4(lo: number, hi: number, emit: (addr: number, len: number) => void): void {
  while (lo <= hi) {
    // The largest aligned block at lo: its size is the lowest set bit of lo (2^32 for 0).
    let size = lo === 0 ? 4294967296 : lo % 2 === 1 ? 1 : 2 ** (31 - Math.clz32((lo & -lo) >>> 0));
    while (lo + size - 1 > hi) size /= 2;
    emit(lo, 32 - Math.log2(size));
    lo += size;
  }
}

/** Throws unless `a` is a valid address. */
function checkAddr(a: Addr): void {
  if (!isAddr(a)) throw new RangeError(`${String(a)} is not an IPv4 or IPv6 address value`);
}

/**
 * An immutable set of IPv4 and IPv6 addresses, one canonical interval set per
 * family. The families are disjoint spaces: `::/0` does not contain IPv4
 * addresses even though IPv4-mapped IPv6 text parses to IPv4.
 */
export class IpSet {
  /** The empty set. */
  static readonly EMPTY: IpSet = new IpSet(IntervalSet.EMPTY, BigIntervalSet.EMPTY);
  /** Every IPv4 address (0.0.0.0/0). */
  static readonly ALL_V4: IpSet = new IpSet(IntervalSet.of(0, MAX_V4), BigIntervalSet.EMPTY);
  /** Every IPv6 address (::/0). */
  static readonly ALL_V6: IpSet = new IpSet(IntervalSet.EMPTY, BigIntervalSet.of(0n, MAX_V6));
  /** Every address of both families (0.0.0.0/0 and ::/0). */
  static readonly ALL: IpSet = new IpSet(IntervalSet.of(0, MAX_V4), BigIntervalSet.of(0n, MAX_V6));

  /** The IPv4 addresses. INVARIANT: a subset of 0..2^32−1. */
  readonly v4: IntervalSet;
  /** The IPv6 addresses. INVARIANT: a subset of 0..2^128−1. */
  readonly v6: BigIntervalSet;

  private constructor(v4: IntervalSet, v6: BigIntervalSet) {
    this.v4 = v4;
    this.v6 = v6;
  }

  /** Wraps per-family sets, reusing the shared constants when possible. */
  private static make(v4: IntervalSet, v6: BigIntervalSet): IpSet {
    if (v4.isEmpty() && v6.isEmpty()) return IpSet.EMPTY;
    return new IpSet(v4, v6);
  }

  /** Combines per-family interval sets. Throws RangeError when a set reaches outside its family's address space. */
  static fromParts(v4: IntervalSet, v6: BigIntervalSet): IpSet {
    const hi4 = v4.max();
    const hi6 = v6.max();
    const lo6 = v6.min();
    if (hi4 !== undefined && hi4 > MAX_V4) throw new RangeError(`IPv4 set reaches ${hi4}, beyond ${MAX_V4}`);
    if ((hi6 !== undefined && hi6 > MAX_V6) || (lo6 !== undefined && lo6 < 0n)) throw new RangeError('IPv6 set reaches outside 0..2^128-1');
    return IpSet.make(v4, v6);
  }

  /** The union of per-family address ranges `[lo, hi]` (inclusive, any order, may overlap). */
  static fromRanges(v4: Iterable<readonly [number, number]>, v6: Iterable<readonly [bigint, bigint]>): IpSet {
    return IpSet.fromParts(IntervalSet.fromIntervals(v4), BigIntervalSet.fromIntervals(v6));
  }

  /** The union of the prefixes. */
  static fromPrefixes(prefixes: Iterable<Prefix>): IpSet {
    const v4: [number, number][] = [];
    const v6: [bigint, bigint][] = [];
    for (const p of prefixes) {
      checkAddr(p.addr);
      const r = prefixRange(p);
      if (typeof r[0] === 'number') v4.push(r as [number, number]);
      else v6.push(r as [bigint, bigint]);
    }
    return IpSet.make(IntervalSet.fromIntervals(v4), BigIntervalSet.fromIntervals(v6));
  }

  /** The set of the given addresses. */
  static fromAddrs(addrs: Iterable<Addr>): IpSet {
    const v4: [number, number][] = [];
    const v6: [bigint, bigint][] = [];
    for (const a of addrs) {
      checkAddr(a);
      if (typeof a === 'number') v4.push([a, a]);
      else v6.push([a, a]);
    }
    return IpSet.make(IntervalSet.fromIntervals(v4), BigIntervalSet.fromIntervals(v6));
  }

  /** The addresses in either set. */
  union(other: IpSet): IpSet {
    return IpSet.make(this.v4.union(other.v4), this.v6.union(other.v6));
  }

  /** The addresses in both sets. */
  intersect(other: IpSet): IpSet {
    return IpSet.make(this.v4.intersect(other.v4), this.v6.intersect(other.v6));
  }

  /** The addresses of this set that are not in `other`. */
  subtract(other: IpSet): IpSet {
    return IpSet.make(this.v4.subtract(other.v4), this.v6.subtract(other.v6));
  }

  /** The addresses of both families that are not in this set. */
  complement(): IpSet {
    return IpSet.ALL.subtract(this);
  }

  /** Whether the sets share an address (no allocation). */
  overlaps(other: IpSet): boolean {
    return this.v4.overlaps(other.v4) || this.v6.overlaps(other.v6);
  }

  /** Whether every address of this set is in `other`. */
  isSubset(other: IpSet): boolean {
    return this.v4.isSubset(other.v4) && this.v6.isSubset(other.v6);
  }

  /** Whether the sets have the same addresses. */
  equals(other: IpSet): boolean {
    return this.v4.equals(other.v4) && this.v6.equals(other.v6);
  }

  /** Whether the set has no address. */
  isEmpty(): boolean {
    return this.v4.isEmpty() && this.v6.isEmpty();
  }

  /** Whether `a` is in the set (binary search, no allocation). */
  has(a: Addr): boolean {
    return typeof a === 'number' ? this.v4.has(a) : this.v6.has(a);
  }

  /**
   * The minimal CIDR decomposition: the fewest prefixes whose union is the
   * set. IPv4 prefixes first, each family in ascending address order.
   */
  toPrefixes(): Prefix[] {
    const out: Prefix[] = [];
    const b4 = this.v4.bounds;
    for (let i = 0; i < b4.length; i += 2) rangeToPrefixesV4(b4[i], b4[i + 1], (addr, len) => out.push({ addr, len }));
    const b6 = this.v6.bounds;
    for (let i = 0; i < b6.length; i += 2) rangeToPrefixes(b6[i], b6[i + 1], 128, (addr, len) => out.push({ addr, len }));
    return out;
  }

  /**
   * The prefixes of {@link toPrefixes}, comma-and-space separated, with /32
   * and /128 shown as bare addresses: `10.0.0.0/8, 192.168.1.1, 2001:db8::/32`.
   * The empty set is `none`.
   */
  toString(): string {
    if (this.isEmpty()) return 'none';
    return this.toPrefixes()
      .map((p) => (p.len === (typeof p.addr === 'number' ? 32 : 128) ? formatAddr(p.addr) : formatPrefix(p)))
      .join(', ');
  }
}
