/**
 * Fixed-width bitsets over `0..n-1` in a Uint32Array: the immutable {@link Bits}
 * and the mutable {@link BitsBuilder} for hot construction loops.
 */

/** Number of 32-bit words for `n` bits. */
function wordsFor(n: number): number {
  return (n + 31) >>> 5;
}

/** The mask of the valid bits of the last word for width `n` (all ones when `n` is a multiple of 32). */
function lastMask(n: number): number {
  const r = n & 31;
  return r === 0 ? 0xffffffff : (1 << r) - 1;
}

/** Throws unless `n` is a valid width. */
function checkWidth(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new RangeError(`bitset width ${n} is not a non-negative integer`);
}

/** Throws unless `i` is an index in `0..n-1`. */
function checkIndex(i: number, n: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`bit index ${i} is out of range (0-${n - 1})`);
}

/** Throws unless two widths agree. */
function checkSame(a: number, b: number): void {
  if (a !== b) throw new RangeError(`bitset widths differ: ${a} and ${b}`);
}

/** Module-private: wraps words nobody else holds (set by the Bits static block; used by {@link BitsBuilder.freeze}). */
let adopt: (n: number, words: Uint32Array) => Bits;
/** Module-private: the words of a Bits, read-only (set by the Bits static block). */
let wordsOfBits: (b: Bits) => Uint32Array;

/** Population count of a 32-bit word. */
function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/**
 * An immutable set of indices in `0..size-1`.
 * INVARIANT: the bits of the last word at or beyond `size` are zero, so word
 * comparisons and counts need no masking. The words are never exposed.
 */
export class Bits {
  /** The width `n`: members are in `0..n-1`. */
  readonly size: number;
  private readonly w: Uint32Array;

  private constructor(size: number, words: Uint32Array) {
    this.size = size;
    this.w = words;
  }

  /** No members, width `n`. */
  static empty(n: number): Bits {
    checkWidth(n);
    return new Bits(n, new Uint32Array(wordsFor(n)));
  }

  /** Every index `0..n-1`. */
  static full(n: number): Bits {
    checkWidth(n);
    const w = new Uint32Array(wordsFor(n)).fill(0xffffffff);
    if (w.length > 0) w[w.length - 1] &= lastMask(n);
    return new Bits(n, w);
  }

  /** The given indices, width `n`. Throws RangeError for an index outside `0..n-1`. */
  static fromIndices(n: number, indices: Iterable<number>): Bits {
    checkWidth(n);
    const w = new Uint32Array(wordsFor(n));
    for (const i of indices) {
      checkIndex(i, n);
      w[i >>> 5] |= 1 << (i & 31);
    }
    return new Bits(n, w);
  }

  static {
    adopt = (n, words) => new Bits(n, words);
    wordsOfBits = (b) => b.w;
  }

  /** Whether `i` is a member. Any index outside `0..size-1` is not (no allocation, no throw). */
  has(i: number): boolean {
    return i < this.size && ((this.w[i >>> 5] >>> (i & 31)) & 1) === 1;
  }

  /** Members of either set. Throws RangeError when the widths differ. */
  union(other: Bits): Bits {
    checkSame(this.size, other.size);
    const a = this.w;
    const b = other.w;
    const out = new Uint32Array(a.length);
    for (let k = 0; k < a.length; k++) out[k] = a[k] | b[k];
    return new Bits(this.size, out);
  }

  /** Members of both sets. Throws RangeError when the widths differ. */
  intersect(other: Bits): Bits {
    checkSame(this.size, other.size);
    const a = this.w;
    const b = other.w;
    const out = new Uint32Array(a.length);
    for (let k = 0; k < a.length; k++) out[k] = a[k] & b[k];
    return new Bits(this.size, out);
  }

  /** Members of this set not in `other`. Throws RangeError when the widths differ. */
  subtract(other: Bits): Bits {
    checkSame(this.size, other.size);
    const a = this.w;
    const b = other.w;
    const out = new Uint32Array(a.length);
    for (let k = 0; k < a.length; k++) out[k] = a[k] & ~b[k];
    return new Bits(this.size, out);
  }

  /** The indices of `0..size-1` that are not members. */
  not(): Bits {
    const a = this.w;
    const out = new Uint32Array(a.length);
    for (let k = 0; k < a.length; k++) out[k] = ~a[k];
    if (out.length > 0) out[out.length - 1] &= lastMask(this.size);
    return new Bits(this.size, out);
  }

  /** Whether the sets share a member (no allocation). Throws RangeError when the widths differ. */
  intersects(other: Bits): boolean {
    checkSame(this.size, other.size);
    const a = this.w;
    const b = other.w;
    for (let k = 0; k < a.length; k++) if ((a[k] & b[k]) !== 0) return true;
    return false;
  }

  /** Whether there is no member. */
  isEmpty(): boolean {
    const a = this.w;
    for (let k = 0; k < a.length; k++) if (a[k] !== 0) return false;
    return true;
  }

  /** The number of members. */
  count(): number {
    const a = this.w;
    let n = 0;
    for (let k = 0; k < a.length; k++) n += popcount(a[k]);
    return n;
  }

  /** Whether both sets have the same width and members. */
  equals(other: Bits): boolean {
    if (this.size !== other.size) return false;
    const a = this.w;
    const b = other.w;
    for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
    return true;
  }

  /** Whether every member is in `other`. Throws RangeError when the widths differ. */
  isSubset(other: Bits): boolean {
    checkSame(this.size, other.size);
    const a = this.w;
    const b = other.w;
    for (let k = 0; k < a.length; k++) if ((a[k] & ~b[k]) !== 0) return false;
    return true;
  }

  /** The members in ascending order (a fresh array). */
  indices(): number[] {
    const out: number[] = [];
    const a = this.w;
    for (let k = 0; k < a.length; k++) {
      let x = a[k];
      while (x !== 0) {
        const low = x & -x;
        out.push((k << 5) + 31 - Math.clz32(low));
        x ^= low;
      }
    }
    return out;
  }

  /** The smallest member, or -1 when empty. */
  first(): number {
    const a = this.w;
    for (let k = 0; k < a.length; k++) {
      const x = a[k];
      if (x !== 0) return (k << 5) + 31 - Math.clz32(x & -x);
    }
    return -1;
  }

  /** Members as text, such as `{1,4,7}`. */
  toString(): string {
    return `{${this.indices().join(',')}}`;
  }
}

/**
 * A mutable bitset for hot construction loops: set bits in place, then
 * {@link freeze} into an immutable {@link Bits}. Index and width checks throw
 * RangeError, as in {@link Bits}.
 */
export class BitsBuilder {
  /** The width `n`. */
  readonly size: number;
  private readonly w: Uint32Array;

  /** An empty builder of width `n`, or a copy of `from`. */
  constructor(n: number, from?: Bits) {
    checkWidth(n);
    this.size = n;
    this.w = new Uint32Array(wordsFor(n));
    if (from !== undefined) this.or(from);
  }

  /** Adds `i`; returns this builder. */
  set(i: number): this {
    checkIndex(i, this.size);
    this.w[i >>> 5] |= 1 << (i & 31);
    return this;
  }

  /** Removes `i`; returns this builder. */
  clear(i: number): this {
    checkIndex(i, this.size);
    this.w[i >>> 5] &= ~(1 << (i & 31));
    return this;
  }

  /** Whether `i` is set. */
  has(i: number): boolean {
    return i < this.size && ((this.w[i >>> 5] >>> (i & 31)) & 1) === 1;
  }

  /** Adds every member of `other` (a Bits or a builder of the same width); returns this builder. */
  or(other: Bits | BitsBuilder): this {
    checkSame(this.size, other.size);
    const b = BitsBuilder.words(other);
    const a = this.w;
    for (let k = 0; k < a.length; k++) a[k] |= b[k];
    return this;
  }

  /** Keeps only members of `other`; returns this builder. */
  and(other: Bits | BitsBuilder): this {
    checkSame(this.size, other.size);
    const b = BitsBuilder.words(other);
    const a = this.w;
    for (let k = 0; k < a.length; k++) a[k] &= b[k];
    return this;
  }

  /** Removes every member of `other`; returns this builder. */
  andNot(other: Bits | BitsBuilder): this {
    checkSame(this.size, other.size);
    const b = BitsBuilder.words(other);
    const a = this.w;
    for (let k = 0; k < a.length; k++) a[k] &= ~b[k];
    return this;
  }

  /** Removes every member; returns this builder. */
  reset(): this {
    this.w.fill(0);
    return this;
  }

  /** A Bits with the current members. The builder stays usable and later changes do not affect the result. */
  freeze(): Bits {
    return adopt(this.size, this.w.slice());
  }

  /** The words of a Bits or builder, for the bulk operations (read-only use). */
  private static words(x: Bits | BitsBuilder): Uint32Array {
    return x instanceof BitsBuilder ? x.w : wordsOfBits(x);
  }
}
