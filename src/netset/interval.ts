/**
 * Canonical sets of integers as sorted, disjoint, non-adjacent closed intervals.
 *
 * One generic, merge-based algebra (the `*Bounds` functions below, parameterized
 * by a tiny {@link IntervalOps} object) serves two thin classes:
 * {@link IntervalSet} over JS numbers (ports, protocol keys, IPv4) and
 * {@link BigIntervalSet} over bigints (IPv6). Comparisons use the JS relational
 * operators, which work on both numbers and bigints, so only successor,
 * predecessor and width arithmetic go through the ops object.
 *
 * Every value is immutable: operations return new sets and never mutate their
 * receiver or arguments. Because the representation is canonical, two sets are
 * equal exactly when their bounds arrays are element-wise identical.
 *
 * Performance: IntervalSet keeps its bounds in a Float64Array (unboxed) and
 * has its own monomorphic `has`. The shared merge functions see both numbers
 * and bigints once both classes are in use, so V8 compiles them with generic
 * comparisons; merges then run some 2-5x slower than number-only code (still
 * linear, tens of ns per interval). Lookups are unaffected.
 */

/** Read-only flat bounds storage `[lo0, hi0, lo1, hi1, ...]`: a Float64Array for numbers, an array for bigints. */
export type Bounds<T> = ArrayLike<T> & Iterable<T>;

/** A writable buffer the algebra fills before {@link IntervalOps.finish} seals it. */
export interface BoundsBuffer<T> extends Iterable<T> {
  /** The capacity, fixed at allocation. */
  readonly length: number;
  /** Element access; the algebra writes indices below the count it later passes to `finish`. */
  [i: number]: T;
}

/** The arithmetic and storage the shared interval algebra needs for an element type. */
export interface IntervalOps<T extends number | bigint> {
  /** `x + 1`. */
  readonly succ: (x: T) => T;
  /** `x - 1`. */
  readonly pred: (x: T) => T;
  /** The number of integers in `[lo, hi]`, i.e. `hi - lo + 1` (requires `lo <= hi`). */
  readonly width: (lo: T, hi: T) => T;
  /** `a + b`. */
  readonly add: (a: T, b: T) => T;
  /** The additive identity. */
  readonly zero: T;
  /** A writable buffer of `n` elements. */
  readonly alloc: (n: number) => BoundsBuffer<T>;
  /** Seals the first `n` elements of a buffer from {@link alloc} as final bounds storage (never written again). */
  readonly finish: (buf: BoundsBuffer<T>, n: number) => Bounds<T>;
}

/**
 * Arithmetic for {@link IntervalSet} (safe, non-negative integers held in
 * numbers), stored in Float64Arrays: unboxed doubles make merges and binary
 * searches several times faster than (frozen) plain arrays, whose doubles V8
 * boxes.
 */
const NUMBER_OPS: IntervalOps<number> = {
  succ: (x) => x + 1,
  pred: (x) => x - 1,
  width: (lo, hi) => hi - lo + 1,
  add: (a, b) => a + b,
  zero: 0,
  alloc: (n) => new Float64Array(n),
  finish: (buf, n) => (n === buf.length ? buf : (buf as Float64Array).slice(0, n)),
};

/** Arithmetic for {@link BigIntervalSet}. */
const BIGINT_OPS: IntervalOps<bigint> = {
  succ: (x) => x + 1n,
  pred: (x) => x - 1n,
  width: (lo, hi) => hi - lo + 1n,
  add: (a, b) => a + b,
  zero: 0n,
  alloc: (n) => new Array<bigint>(n),
  finish: (buf, n) => {
    const a = buf as bigint[];
    a.length = n;
    return Object.freeze(a);
  },
};

// ---------------------------------------------------------------------------
// The shared algebra over flat bounds [lo0, hi0, lo1, hi1, ...].
// INVARIANT (inputs and outputs alike): lo_k <= hi_k and succ(hi_k) < lo_{k+1},
// i.e. the intervals are sorted, disjoint and non-adjacent.
// ---------------------------------------------------------------------------

/** Sorts and merges arbitrary intervals (overlapping or adjacent) into canonical bounds; empty pairs (lo > hi) are dropped. */
function normalizeBounds<T extends number | bigint>(ops: IntervalOps<T>, pairs: [T, T][]): Bounds<T> {
  const live = pairs.filter((p) => p[0] <= p[1]);
  live.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out = ops.alloc(2 * live.length);
  let n = 0;
  if (live.length === 0) return ops.finish(out, 0);
  let curLo = live[0][0];
  let curHi = live[0][1];
  for (let k = 1; k < live.length; k++) {
    const [lo, hi] = live[k];
    if (lo <= ops.succ(curHi)) {
      if (hi > curHi) curHi = hi;
    } else {
      out[n++] = curLo;
      out[n++] = curHi;
      curLo = lo;
      curHi = hi;
    }
  }
  out[n++] = curLo;
  out[n++] = curHi;
  return ops.finish(out, n);
}

/** Union of two canonical bounds by a linear merge. */
function unionBounds<T extends number | bigint>(ops: IntervalOps<T>, a: Bounds<T>, b: Bounds<T>): Bounds<T> {
  const out = ops.alloc(a.length + b.length);
  let n = 0;
  let i = 0;
  let j = 0;
  let curLo = ops.zero;
  let curHi = ops.zero;
  let open = false;
  while (i < a.length || j < b.length) {
    let lo: T;
    let hi: T;
    if (j >= b.length || (i < a.length && a[i] <= b[j])) {
      lo = a[i];
      hi = a[i + 1];
      i += 2;
    } else {
      lo = b[j];
      hi = b[j + 1];
      j += 2;
    }
    if (!open) {
      curLo = lo;
      curHi = hi;
      open = true;
    } else if (lo <= ops.succ(curHi)) {
      if (hi > curHi) curHi = hi;
    } else {
      out[n++] = curLo;
      out[n++] = curHi;
      curLo = lo;
      curHi = hi;
    }
  }
  if (open) {
    out[n++] = curLo;
    out[n++] = curHi;
  }
  return ops.finish(out, n);
}

/** Intersection of two canonical bounds. The result is canonical without a merge step. */
function intersectBounds<T extends number | bigint>(ops: IntervalOps<T>, a: Bounds<T>, b: Bounds<T>): Bounds<T> {
  const out = ops.alloc(a.length + b.length);
  let n = 0;
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const lo = a[i] > b[j] ? a[i] : b[j];
    const hi = a[i + 1] < b[j + 1] ? a[i + 1] : b[j + 1];
    if (lo <= hi) {
      out[n++] = lo;
      out[n++] = hi;
    }
    if (a[i + 1] < b[j + 1]) i += 2;
    else j += 2;
  }
  return ops.finish(out, n);
}

/** Whether two canonical bounds share at least one member (no allocation). */
function overlapsBounds<T extends number | bigint>(a: Bounds<T>, b: Bounds<T>): boolean {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i + 1] < b[j]) i += 2;
    else if (b[j + 1] < a[i]) j += 2;
    else return true;
  }
  return false;
}

/** `a − b` for canonical bounds. */
function subtractBounds<T extends number | bigint>(ops: IntervalOps<T>, a: Bounds<T>, b: Bounds<T>): Bounds<T> {
  // Each interval of b splits at most one interval of a in two, so |out| <= |a| + |b|.
  const out = ops.alloc(a.length + b.length);
  let n = 0;
  let j = 0;
  for (let i = 0; i < a.length; i += 2) {
    let lo = a[i];
    const hi = a[i + 1];
    while (j < b.length && b[j + 1] < lo) j += 2;
    let k = j;
    let consumed = false;
    while (k < b.length && b[k] <= hi) {
      if (b[k] > lo) {
        out[n++] = lo;
        out[n++] = ops.pred(b[k]);
      }
      if (b[k + 1] >= hi) {
        consumed = true;
        break; // b[k] may reach into the next interval of a: keep it (j = k)
      }
      lo = ops.succ(b[k + 1]);
      k += 2;
    }
    if (!consumed) {
      out[n++] = lo;
      out[n++] = hi;
    }
    j = k;
  }
  return ops.finish(out, n);
}

/** Whether every member of `a` is in `b`. In canonical form each interval of `a` must sit inside one interval of `b`. */
function isSubsetBounds<T extends number | bigint>(a: Bounds<T>, b: Bounds<T>): boolean {
  let j = 0;
  for (let i = 0; i < a.length; i += 2) {
    const lo = a[i];
    while (j < b.length && b[j + 1] < lo) j += 2;
    if (j >= b.length || b[j] > lo || b[j + 1] < a[i + 1]) return false;
  }
  return true;
}

/** Element-wise equality of bounds (set equality, by canonicity). */
function equalBounds<T extends number | bigint>(a: Bounds<T>, b: Bounds<T>): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Membership by binary search for the first bound `>= x` (no allocation). */
function hasBounds<T extends number | bigint>(b: Bounds<T>, x: T): boolean {
  let lo = 0;
  let hi = b.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (b[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  // lo is the first index with b[lo] >= x: x is a member if it hits a bound
  // exactly, or falls strictly inside an interval (b[lo] is then a `hi`, odd index).
  return lo < b.length && (b[lo] === x || (lo & 1) === 1);
}

/**
 * The part shared by {@link IntervalSet} and {@link BigIntervalSet}: every
 * set-algebra method, written once over the generic bounds functions.
 *
 * @typeParam T the element type (number or bigint)
 * @typeParam S the concrete set class, returned by every operation
 */
export abstract class IntervalSetBase<T extends number | bigint, S extends IntervalSetBase<T, S>> {
  /**
   * The flat canonical bounds `[lo0, hi0, lo1, hi1, ...]` of closed intervals
   * (a Float64Array for {@link IntervalSet}, a frozen array for
   * {@link BigIntervalSet}). INVARIANT: sorted, `lo_k <= hi_k`, and
   * `hi_k + 1 < lo_{k+1}` (disjoint and non-adjacent), so equal sets have
   * identical bounds; never written after construction (typed arrays cannot be
   * frozen, so this is by contract: the type is read-only).
   */
  readonly bounds: Bounds<T>;

  /** Wraps bounds that are already canonical and owned by the new set. Subclasses keep their constructors private. */
  protected constructor(bounds: Bounds<T>) {
    this.bounds = bounds;
  }

  /** The element arithmetic and storage of the concrete class. */
  protected abstract get ops(): IntervalOps<T>;

  /** Wraps canonical bounds in the concrete class. */
  protected abstract wrap(bounds: Bounds<T>): S;

  /** This set, typed as the concrete class. */
  private self(): S {
    return this as unknown as S;
  }

  /** The members of either set. */
  union(other: S): S {
    if (other.bounds.length === 0) return this.self();
    if (this.bounds.length === 0) return other;
    return this.wrap(unionBounds(this.ops, this.bounds, other.bounds));
  }

  /** The members of both sets. */
  intersect(other: S): S {
    if (this.bounds.length === 0) return this.self();
    if (other.bounds.length === 0) return other;
    return this.wrap(intersectBounds(this.ops, this.bounds, other.bounds));
  }

  /** The members of this set that are not in `other`. */
  subtract(other: S): S {
    if (this.bounds.length === 0 || other.bounds.length === 0) return this.self();
    return this.wrap(subtractBounds(this.ops, this.bounds, other.bounds));
  }

  /** The members of `[min, max]` that are not in this set (empty when `min > max`). */
  complement(min: T, max: T): S {
    const range = this.ops.alloc(2);
    if (min > max) return this.wrap(this.ops.finish(range, 0));
    range[0] = min;
    range[1] = max;
    return this.wrap(subtractBounds(this.ops, range, this.bounds));
  }

  /** Whether the two sets share at least one member (no allocation). */
  overlaps(other: S): boolean {
    return overlapsBounds(this.bounds, other.bounds);
  }

  /** Whether every member of this set is in `other`. */
  isSubset(other: S): boolean {
    return isSubsetBounds(this.bounds, other.bounds);
  }

  /** Whether the two sets have the same members. */
  equals(other: S): boolean {
    return equalBounds(this.bounds, other.bounds);
  }

  /** Whether the set has no members. */
  isEmpty(): boolean {
    return this.bounds.length === 0;
  }

  /** Whether `x` is a member (binary search, no allocation). */
  has(x: T): boolean {
    return hasBounds(this.bounds, x);
  }

  /** The number of integers in the set. */
  size(): T {
    const ops = this.ops;
    let n = ops.zero;
    for (let i = 0; i < this.bounds.length; i += 2) n = ops.add(n, ops.width(this.bounds[i], this.bounds[i + 1]));
    return n;
  }

  /** The number of maximal intervals (half the length of {@link bounds}). */
  intervalCount(): number {
    return this.bounds.length >>> 1;
  }

  /** The maximal intervals as `[lo, hi]` pairs, ascending (a fresh array). */
  intervals(): [T, T][] {
    const out: [T, T][] = [];
    for (let i = 0; i < this.bounds.length; i += 2) out.push([this.bounds[i], this.bounds[i + 1]]);
    return out;
  }

  /** The smallest member, or `undefined` when empty. */
  min(): T | undefined {
    return this.bounds.length === 0 ? undefined : this.bounds[0];
  }

  /** The largest member, or `undefined` when empty. */
  max(): T | undefined {
    return this.bounds.length === 0 ? undefined : this.bounds[this.bounds.length - 1];
  }

  /** Compact text such as `1-5,7,9-12` (a single member is shown alone); the empty set is the empty string. */
  toString(): string {
    const parts: string[] = [];
    for (let i = 0; i < this.bounds.length; i += 2) {
      const lo = this.bounds[i];
      const hi = this.bounds[i + 1];
      parts.push(lo === hi ? `${lo}` : `${lo}-${hi}`);
    }
    return parts.join(',');
  }
}

/** Throws unless `x` is a safe, non-negative integer. */
function checkNumber(x: number): void {
  if (!Number.isSafeInteger(x) || x < 0) throw new RangeError(`interval bound ${x} is not a safe non-negative integer`);
}

/** Throws unless `x` is a bigint. */
function checkBigint(x: bigint): void {
  if (typeof x !== 'bigint') throw new TypeError(`interval bound ${String(x)} is not a bigint`);
}

/**
 * An immutable set of non-negative safe integers (0 to 2^53 − 1) as canonical
 * closed intervals, stored in a Float64Array. Used for ports, connection keys
 * and IPv4 addresses.
 */
export class IntervalSet extends IntervalSetBase<number, IntervalSet> {
  /** The empty set. */
  static readonly EMPTY: IntervalSet = new IntervalSet(new Float64Array(0));

  private constructor(bounds: Bounds<number>) {
    super(bounds);
  }

  /** The integers `lo..hi` inclusive (empty when `lo > hi`). Throws RangeError on a bound that is not a safe non-negative integer. */
  static of(lo: number, hi: number): IntervalSet {
    checkNumber(lo);
    checkNumber(hi);
    return lo > hi ? IntervalSet.EMPTY : new IntervalSet(Float64Array.of(lo, hi));
  }

  /** The single integer `x`. */
  static point(x: number): IntervalSet {
    return IntervalSet.of(x, x);
  }

  /** Normalizes any intervals (unsorted, overlapping, adjacent; `lo > hi` pairs are ignored) into a canonical set. */
  static fromIntervals(intervals: Iterable<readonly [number, number]>): IntervalSet {
    const pairs: [number, number][] = [];
    for (const [lo, hi] of intervals) {
      checkNumber(lo);
      checkNumber(hi);
      pairs.push([lo, hi]);
    }
    return IntervalSet.EMPTY.wrap(normalizeBounds(NUMBER_OPS, pairs));
  }

  protected override get ops(): IntervalOps<number> {
    return NUMBER_OPS;
  }

  protected override wrap(bounds: Bounds<number>): IntervalSet {
    return bounds.length === 0 ? IntervalSet.EMPTY : new IntervalSet(bounds);
  }

  /**
   * Whether `x` is a member (binary search, no allocation). The same search as
   * the shared one, restated over numbers so this hot call site stays
   * monomorphic instead of sharing type feedback with the bigint class.
   */
  override has(x: number): boolean {
    const b = this.bounds;
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (b[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo < b.length && (b[lo] === x || (lo & 1) === 1);
  }
}

/** An immutable set of bigints as canonical closed intervals, stored in a frozen array. Used for IPv6 addresses (0 to 2^128 − 1). */
export class BigIntervalSet extends IntervalSetBase<bigint, BigIntervalSet> {
  /** The empty set. */
  static readonly EMPTY: BigIntervalSet = new BigIntervalSet(Object.freeze([]));

  private constructor(bounds: Bounds<bigint>) {
    super(bounds);
  }

  /** The integers `lo..hi` inclusive (empty when `lo > hi`). */
  static of(lo: bigint, hi: bigint): BigIntervalSet {
    checkBigint(lo);
    checkBigint(hi);
    return lo > hi ? BigIntervalSet.EMPTY : new BigIntervalSet(Object.freeze([lo, hi]));
  }

  /** The single integer `x`. */
  static point(x: bigint): BigIntervalSet {
    return BigIntervalSet.of(x, x);
  }

  /** Normalizes any intervals (unsorted, overlapping, adjacent; `lo > hi` pairs are ignored) into a canonical set. */
  static fromIntervals(intervals: Iterable<readonly [bigint, bigint]>): BigIntervalSet {
    const pairs: [bigint, bigint][] = [];
    for (const [lo, hi] of intervals) {
      checkBigint(lo);
      checkBigint(hi);
      pairs.push([lo, hi]);
    }
    return BigIntervalSet.EMPTY.wrap(normalizeBounds(BIGINT_OPS, pairs));
  }

  protected override get ops(): IntervalOps<bigint> {
    return BIGINT_OPS;
  }

  protected override wrap(bounds: Bounds<bigint>): BigIntervalSet {
    return bounds.length === 0 ? BigIntervalSet.EMPTY : new BigIntervalSet(bounds);
  }
}
