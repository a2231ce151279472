/**
 * Longest-prefix match over IPv4 and IPv6 prefixes.
 *
 * The table flattens the nested prefixes once, at build time, into a sorted
 * array of segment starts per family that partitions the whole address space;
 * each segment carries the value of the most specific prefix covering it (or
 * none). A lookup is then one binary search for the last start at or below
 * the address, with no allocation.
 */
import { MAX_V4, MAX_V6, type Addr, type Prefix } from './ip.js';
import { floorIndex } from './search.js';

/** One input of {@link LpmTable.build}. */
export interface LpmEntry<V> {
  /** The prefix; host bits, if any, are ignored. */
  readonly prefix: Prefix;
  /** The value a lookup returns for addresses whose most specific prefix this is. */
  readonly value: V;
}

/** Options of {@link LpmTable.build}. */
export interface LpmOptions<V> {
  /**
   * Combines the values of two entries with the same exact prefix: `a` is the
   * value so far (earlier entries), `b` the later one. Without it, the later
   * entry wins.
   */
  readonly onDuplicate?: (a: V, b: V) => V;
}

/** A flattened family: segment starts (ascending, starting at 0) and the value index of each (-1: no prefix). */
interface Segments<T> {
  starts: T[];
  vals: number[];
}

/**
 * Flattens laminar (nested or disjoint) ranges, sorted by `lo` ascending and
 * then by length descending (outer before inner), into segments. A stack holds
 * the ranges open at the sweep position; whenever one closes, the range below
 * it (or nothing) takes over.
 */
function flatten<T extends number | bigint>(
  los: readonly T[],
  his: readonly T[],
  vis: readonly number[],
  zero: T,
  max: T,
  succ: (x: T) => T,
): Segments<T> {
  const starts: T[] = [zero];
  const vals: number[] = [-1];
  // Positions arrive in non-decreasing order; a start at the same position as
  // the last one replaces it (the earlier segment was empty), which keeps the
  // starts strictly ascending. Neighbouring segments never share a value: each
  // prefix is distinct, and a segment follows one of a different prefix.
  const emit = (pos: T, vi: number) => {
    const n = starts.length;
    if (starts[n - 1] === pos) vals[n - 1] = vi;
    else {
      starts.push(pos);
      vals.push(vi);
    }
  };
  const stack: number[] = [];
  for (let k = 0; k < los.length; k++) {
    const lo = los[k];
    while (stack.length > 0 && his[stack[stack.length - 1]] < lo) {
      const t = stack.pop()!;
      emit(succ(his[t]), stack.length > 0 ? vis[stack[stack.length - 1]] : -1);
    }
    emit(lo, vis[k]);
    stack.push(k);
  }
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (his[t] !== max) emit(succ(his[t]), stack.length > 0 ? vis[stack[stack.length - 1]] : -1);
  }
  return { starts, vals };
}

/**
 * The stable order of `n` items by a key given as 16-bit digits, least
 * significant digit first: an LSD radix sort (one counting pass per digit),
 * or a comparison sort for small inputs where the 2^16 buckets would dominate.
 * Items with equal keys keep their input order.
 */
function radixOrder(n: number, digits: readonly Uint16Array[]): Uint32Array {
  let order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  if (n < 2048) {
    const idx = Array.from(order).sort((x, y) => {
      for (let d = digits.length - 1; d >= 0; d--) {
        const diff = digits[d][x] - digits[d][y];
        if (diff !== 0) return diff;
      }
      return x - y;
    });
    return Uint32Array.from(idx);
  }
  let tmp = new Uint32Array(n);
  const count = new Uint32Array(65537);
  for (const d of digits) {
    count.fill(0);
    for (let i = 0; i < n; i++) count[d[i] + 1]++;
    for (let b = 0; b < 65536; b++) count[b + 1] += count[b];
    for (let i = 0; i < n; i++) {
      const x = order[i];
      tmp[count[d[x]]++] = x;
    }
    const t = order;
    order = tmp;
    tmp = t;
  }
  return order;
}

/**
 * Builds a jump table over the top `bits` bits of the IPv4 space: `jump[h]` is
 * the last segment whose start is at or below `h * 2^(32-bits)`, so the
 * segment of an address `a` lies between `jump[a >>> (32-bits)]` and the next
 * entry. It narrows a lookup's binary search to one slice of the space.
 */
function buildJump(starts: Uint32Array, bits: number): Uint32Array {
  const slots = 2 ** bits;
  const step = 2 ** (32 - bits);
  const jump = new Uint32Array(slots + 1);
  let idx = 0;
  for (let h = 0; h <= slots; h++) {
    const pos = h * step;
    while (idx + 1 < starts.length && starts[idx + 1] <= pos) idx++;
    jump[h] = idx;
  }
  return jump;
}

/** One family's entries, in input order, before sorting and deduplication. */
interface Pending<T, V> {
  los: T[];
  lens: number[];
  vals: V[];
}

/**
 * Sorts one family's entries by (lo, len) stably, combines exact duplicates
 * in input order, and flattens the result into segments. `digitsOf` gives the
 * sort key as 16-bit digits, least significant first.
 */
function prepare<T extends number | bigint, V>(
  pending: Pending<T, V>,
  digits: readonly Uint16Array[],
  span: (lo: T, len: number) => T,
  zero: T,
  max: T,
  succ: (x: T) => T,
  values: V[],
  onDuplicate: ((a: V, b: V) => V) | undefined,
): Segments<T> {
  const n = pending.los.length;
  const order = radixOrder(n, digits);
  const los: T[] = [];
  const his: T[] = [];
  const vis: number[] = [];
  for (let k = 0; k < n; k++) {
    const x = order[k];
    const lo = pending.los[x];
    const len = pending.lens[x];
    const value = pending.vals[x];
    const last = los.length - 1;
    if (last >= 0 && los[last] === lo && his[last] === span(lo, len)) {
      const vi = vis[last];
      values[vi] = onDuplicate ? onDuplicate(values[vi], value) : value;
      continue;
    }
    los.push(lo);
    his.push(span(lo, len));
    vis.push(values.length);
    values.push(value);
  }
  return flatten(los, his, vis, zero, max, succ);
}

/**
 * A longest-prefix-match table, built once, immutable afterwards.
 * INVARIANT: per family, the segment starts are strictly ascending and begin
 * at 0, so every address falls in exactly one segment; a segment's value
 * index is -1 (no prefix) or an index into the values.
 */
export class LpmTable<V> {
  private readonly s4: Uint32Array;
  private readonly i4: Int32Array;
  /** INVARIANT: `jump4 = buildJump(s4, 32 - shift4)`. */
  private readonly jump4: Uint32Array;
  private readonly shift4: number;
  private readonly s6: readonly bigint[];
  private readonly i6: Int32Array;
  private readonly values: readonly V[];

  private constructor(s4: Uint32Array, i4: Int32Array, s6: readonly bigint[], i6: Int32Array, values: readonly V[]) {
    this.s4 = s4;
    this.i4 = i4;
    // About one segment per slot, at most 2^16 slots (256 KiB).
    const bits = Math.min(16, Math.max(1, Math.ceil(Math.log2(s4.length))));
    this.shift4 = 32 - bits;
    this.jump4 = buildJump(s4, bits);
    this.s6 = s6;
    this.i6 = i6;
    this.values = values;
  }

  /**
   * Builds a table. Entries with the same exact prefix (after masking host
   * bits) are combined by `options.onDuplicate` in input order, or else the
   * later one wins. Throws RangeError for an invalid address or prefix length.
   */
  static build<V>(entries: Iterable<LpmEntry<V>>, options: LpmOptions<V> = {}): LpmTable<V> {
    const p4: Pending<number, V> = { los: [], lens: [], vals: [] };
    const p6: Pending<bigint, V> = { los: [], lens: [], vals: [] };
    for (const { prefix, value } of entries) {
      const { addr, len } = prefix;
      if (typeof addr === 'number') {
        if (!Number.isInteger(len) || len < 0 || len > 32) throw new RangeError(`prefix length ${len} is out of range for IPv4 (0-32)`);
        if (!Number.isInteger(addr) || addr < 0 || addr > MAX_V4) throw new RangeError(`${addr} is not an IPv4 address value`);
        const size = 2 ** (32 - len);
        p4.los.push(addr - (addr % size));
        p4.lens.push(len);
        p4.vals.push(value);
      } else {
        if (!Number.isInteger(len) || len < 0 || len > 128) throw new RangeError(`prefix length ${len} is out of range for IPv6 (0-128)`);
        if (addr < 0n || addr > MAX_V6) throw new RangeError(`${addr} is not an IPv6 address value`);
        p6.los.push(addr & ~((1n << BigInt(128 - len)) - 1n));
        p6.lens.push(len);
        p6.vals.push(value);
      }
    }
    const values: V[] = [];

    // IPv4 sort key, least significant digit first: len, then lo's low and high halves.
    const n4 = p4.los.length;
    const d4 = [Uint16Array.from(p4.lens), new Uint16Array(n4), new Uint16Array(n4)];
    for (let k = 0; k < n4; k++) {
      d4[1][k] = p4.los[k] & 0xffff;
      d4[2][k] = p4.los[k] >>> 16;
    }
    const seg4 = prepare(p4, d4, (lo, len) => lo + 2 ** (32 - len) - 1, 0, MAX_V4, (x) => x + 1, values, options.onDuplicate);

    // IPv6: len, then the eight 16-bit groups of lo from the last.
    const n6 = p6.los.length;
    const d6 = [Uint16Array.from(p6.lens)];
    for (let g = 0; g < 8; g++) d6.push(new Uint16Array(n6));
    for (let k = 0; k < n6; k++) {
      const lo = p6.los[k];
      for (let w = 0; w < 4; w++) {
        const word = Number(BigInt.asUintN(32, lo >> BigInt(32 * w)));
        d6[1 + 2 * w][k] = word & 0xffff;
        d6[2 + 2 * w][k] = word >>> 16;
      }
    }
    const seg6 = prepare(p6, d6, (lo, len) => lo | ((1n << BigInt(128 - len)) - 1n), 0n, MAX_V6, (x) => x + 1n, values, options.onDuplicate);

    return new LpmTable(Uint32Array.from(seg4.starts), Int32Array.from(seg4.vals), Object.freeze(seg6.starts), Int32Array.from(seg6.vals), Object.freeze(values));
  }

  /** The number of distinct prefixes in the table. */
  get size(): number {
    return this.values.length;
  }

  /** The number of flattened segments (IPv4 and IPv6), a measure of the table's memory. */
  get segmentCount(): number {
    return this.s4.length + this.s6.length;
  }

  /** The value of the most specific prefix containing `a`, or undefined when none does (no allocation). */
  lookup(a: Addr): V | undefined {
    return typeof a === 'number' ? this.lookupV4(a) : this.lookupV6(a);
  }

  /**
   * IPv4 fast path: the value of the most specific prefix containing `a`, or
   * undefined (no allocation). `a` must be an integer in 0..2^32−1.
   */
  lookupV4(a: number): V | undefined {
    const s = this.s4;
    const h = a >>> this.shift4;
    // The last start <= a lies in [jump[h], jump[h + 1]].
    let lo = this.jump4[h];
    let hi = this.jump4[h + 1];
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (s[mid] <= a) lo = mid;
      else hi = mid - 1;
    }
    const vi = this.i4[lo];
    return vi < 0 ? undefined : this.values[vi];
  }

  /** IPv6 path: the value of the most specific prefix containing `a`, or undefined (no allocation). */
  lookupV6(a: bigint): V | undefined {
    const vi = this.i6[floorIndex(this.s6, a)];
    return vi < 0 ? undefined : this.values[vi];
  }
}
