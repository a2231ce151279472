/**
 * IntervalSet and BigIntervalSet: edge-case examples, and the algebra checked
 * against a boolean-array model on a small universe (0..U).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BigIntervalSet, IntervalSet, type Bounds } from '../../src/netset/interval.js';

const U = 200;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** The bounds as a plain array, for deepEqual. */
const b = (s: { bounds: Bounds<number> | Bounds<bigint> }) => Array.from(s.bounds as ArrayLike<number | bigint>);

/** Asserts the canonical form: sorted, lo <= hi, disjoint and non-adjacent. */
function assertCanonical(bounds: ArrayLike<number | bigint>): void {
  assert.equal(bounds.length % 2, 0);
  for (let i = 0; i < bounds.length; i += 2) {
    assert.ok(bounds[i] <= bounds[i + 1], `lo > hi at ${i}`);
    if (i + 2 < bounds.length) {
      const gap = typeof bounds[i] === 'bigint' ? (bounds[i + 2] as bigint) - (bounds[i + 1] as bigint) : (bounds[i + 2] as number) - (bounds[i + 1] as number);
      assert.ok(gap > 1, `adjacent or overlapping at ${i}`);
    }
  }
}

test('fromIntervals merges overlapping and adjacent intervals and sorts', () => {
  assert.deepEqual(b(IntervalSet.fromIntervals([[4, 6], [1, 3]])), [1, 6]);
  assert.deepEqual(b(IntervalSet.fromIntervals([[1, 5], [3, 9], [11, 12]])), [1, 9, 11, 12]);
  assert.deepEqual(b(IntervalSet.fromIntervals([[10, 10], [12, 12], [11, 11]])), [10, 12]);
  assert.deepEqual(b(IntervalSet.fromIntervals([[1, 2], [4, 5]])), [1, 2, 4, 5]);
  assert.deepEqual(b(IntervalSet.fromIntervals([[1, 100], [5, 6]])), [1, 100]);
  assert.deepEqual(b(IntervalSet.fromIntervals([[5, 3]])), []); // lo > hi is empty
  assert.ok(IntervalSet.fromIntervals([]).isEmpty(), 'IntervalSet.fromIntervals([]).isEmpty()');
});

test('the empty set', () => {
  const e = IntervalSet.EMPTY;
  assert.ok(e.isEmpty(), 'e.isEmpty()');
  assert.equal(e.size(), 0);
  assert.equal(e.has(0), false);
  assert.equal(e.min(), undefined);
  assert.equal(e.max(), undefined);
  assert.equal(e.toString(), '');
  assert.deepEqual(e.intervals(), []);
  assert.ok(IntervalSet.of(3, 2).isEmpty(), 'IntervalSet.of(3, 2).isEmpty()');
  assert.ok(e.isSubset(IntervalSet.of(1, 1)), 'e.isSubset(IntervalSet.of(1, 1))');
  assert.ok(!IntervalSet.of(1, 1).isSubset(e), '!IntervalSet.of(1, 1).isSubset(e)');
  assert.ok(e.union(e).isEmpty(), 'e.union(e).isEmpty()');
  assert.ok(IntervalSet.of(1, 5).subtract(IntervalSet.of(0, 9)).isEmpty(), 'IntervalSet.of(1, 5).subtract(IntervalSet.of(0, 9)).isEmpty()');
  assert.ok(IntervalSet.of(1, 5).intersect(IntervalSet.of(6, 9)).isEmpty(), 'IntervalSet.of(1, 5).intersect(IntervalSet.of(6, 9)).isEmpty()');
});

test('has at interval edges', () => {
  const s = IntervalSet.fromIntervals([[1, 5], [7, 7], [9, 12]]);
  const members = [1, 2, 5, 7, 9, 10, 12];
  const others = [-1, 0, 6, 8, 13, 100, 0.5];
  for (const x of members) assert.ok(s.has(x), `${x}`);
  for (const x of others) assert.ok(!s.has(x), `${x}`);
  assert.equal(s.toString(), '1-5,7,9-12');
  assert.equal(s.size(), 10);
  assert.equal(s.min(), 1);
  assert.equal(s.max(), 12);
  assert.deepEqual(s.intervals(), [[1, 5], [7, 7], [9, 12]]);
  assert.equal(s.intervalCount(), 3);
});

test('full range 0..2^53-1 and the IPv4 extremes', () => {
  const full = IntervalSet.of(0, MAX_SAFE);
  assert.ok(full.has(0) && full.has(MAX_SAFE) && full.has(2 ** 32 - 1), 'full.has(0) && full.has(MAX_SAFE) && full.has(2 ** 32 - 1)');
  assert.ok(IntervalSet.EMPTY.complement(0, MAX_SAFE).equals(full), 'IntervalSet.EMPTY.complement(0, MAX_SAFE).equals(full)');
  assert.ok(full.complement(0, MAX_SAFE).isEmpty(), 'full.complement(0, MAX_SAFE).isEmpty()');
  const ends = IntervalSet.fromIntervals([[0, 0], [MAX_SAFE, MAX_SAFE]]);
  assert.deepEqual(b(ends.complement(0, MAX_SAFE)), [1, MAX_SAFE - 1]);
  const v4 = IntervalSet.of(0, 2 ** 32 - 1);
  assert.deepEqual(b(v4.subtract(IntervalSet.point(0))), [1, 2 ** 32 - 1]);
  assert.deepEqual(b(v4.subtract(IntervalSet.point(2 ** 32 - 1))), [0, 2 ** 32 - 2]);
  assert.equal(v4.size(), 2 ** 32);
  assert.deepEqual(b(IntervalSet.point(2 ** 32 - 1).union(IntervalSet.point(2 ** 32 - 2))), [2 ** 32 - 2, 2 ** 32 - 1]);
});

test('complement within a window and with min > max', () => {
  const s = IntervalSet.fromIntervals([[3, 4], [8, 20]]);
  assert.deepEqual(b(s.complement(0, 10)), [0, 2, 5, 7]);
  assert.deepEqual(b(s.complement(5, 7)), [5, 7]);
  assert.deepEqual(b(s.complement(3, 4)), []);
  assert.ok(s.complement(9, 1).isEmpty(), 's.complement(9, 1).isEmpty()');
});

test('subtract splits and trims', () => {
  const s = IntervalSet.of(0, 100);
  assert.deepEqual(b(s.subtract(IntervalSet.fromIntervals([[10, 20], [30, 30], [90, 200]]))), [0, 9, 21, 29, 31, 89]);
  assert.deepEqual(b(IntervalSet.fromIntervals([[0, 10], [20, 30]]).subtract(IntervalSet.of(5, 25))), [0, 4, 26, 30]);
  assert.deepEqual(b(IntervalSet.fromIntervals([[0, 10], [20, 30]]).subtract(IntervalSet.of(0, 10))), [20, 30]);
});

test('invalid bounds throw', () => {
  assert.throws(() => IntervalSet.of(-1, 3), RangeError);
  assert.throws(() => IntervalSet.of(0, 1.5), RangeError);
  assert.throws(() => IntervalSet.of(0, MAX_SAFE + 1), RangeError);
  assert.throws(() => IntervalSet.fromIntervals([[0, Number.NaN]]), RangeError);
  assert.throws(() => BigIntervalSet.of(1 as unknown as bigint, 2n), TypeError);
});

test('operations do not mutate their operands', () => {
  const a = IntervalSet.fromIntervals([[1, 5], [10, 15]]);
  const c = IntervalSet.fromIntervals([[4, 11]]);
  const before = [b(a), b(c)];
  a.union(c);
  a.intersect(c);
  a.subtract(c);
  a.complement(0, 20);
  assert.deepEqual([b(a), b(c)], before);
});

test('BigIntervalSet at the IPv6 extremes', () => {
  const max = (1n << 128n) - 1n;
  const all = BigIntervalSet.of(0n, max);
  assert.ok(all.has(0n) && all.has(max) && !all.has(max + 1n), 'all.has(0n) && all.has(max) && !all.has(max + 1n)');
  assert.equal(all.size(), 1n << 128n);
  assert.ok(BigIntervalSet.EMPTY.complement(0n, max).equals(all), 'BigIntervalSet.EMPTY.complement(0n, max).equals(all)');
  const ends = BigIntervalSet.fromIntervals([[max, max], [0n, 0n]]);
  assert.deepEqual(b(ends), [0n, 0n, max, max]);
  assert.deepEqual(b(ends.complement(0n, max)), [1n, max - 1n]);
  assert.deepEqual(b(BigIntervalSet.fromIntervals([[0n, 5n], [6n, 9n]])), [0n, 9n]);
  assert.equal(BigIntervalSet.fromIntervals([[1n, 5n], [7n, 7n]]).toString(), '1-5,7');
  assert.ok(Object.isFrozen(all.bounds), 'Object.isFrozen(all.bounds)');
});

// ------------------------------------------------------------ the model

/** A set in the model: a boolean per member of 0..U. */
type Model = boolean[];

/** A model as a 0/1 string: cheap to compare and to print when a property fails and shrinks. */
const str = (m: Model) => m.map((x) => (x ? '1' : '0')).join('');

const toModel = (s: IntervalSet): Model => Array.from({ length: U + 1 }, (_, x) => s.has(x));
const toModelBig = (s: BigIntervalSet, off: bigint): Model => Array.from({ length: U + 1 }, (_, x) => s.has(BigInt(x) + off));
const fromModel = (m: Model): number[] => m.flatMap((v, x) => (v ? [x] : []));
const mop = (a: Model, c: Model, f: (x: boolean, y: boolean) => boolean): Model => a.map((v, i) => f(v, c[i]));

/** Random intervals in 0..U, some empty (lo > hi), many adjacent or overlapping. */
const pairsArb = fc.array(
  fc.tuple(fc.nat(U), fc.nat(U), fc.nat(9)).map(([x, y, r]) => (r === 0 ? [Math.max(x, y), Math.min(x, y)] : [Math.min(x, y), Math.min(Math.max(x, y), Math.min(x, y) + 20)]) as [number, number]),
  { maxLength: 12 },
);
/** Sets whose intervals are often single points next to each other, to exercise adjacency. */
const pointsArb = fc.array(fc.nat(U), { maxLength: 40 }).map((xs) => xs.map((x) => [x, x] as [number, number]));
const setArb = fc.oneof(pairsArb, pointsArb).map((p) => IntervalSet.fromIntervals(p));

/** The model of intervals, computed directly from the pairs (not through the class). */
function pairsModel(pairs: [number, number][]): Model {
  const m: Model = new Array<boolean>(U + 1).fill(false);
  for (const [lo, hi] of pairs) for (let x = lo; x <= hi; x++) m[x] = true;
  return m;
}

test('property: fromIntervals is canonical and has the members of its intervals', () => {
  fc.assert(
    fc.property(fc.oneof(pairsArb, pointsArb), (pairs) => {
      const s = IntervalSet.fromIntervals(pairs);
      assertCanonical(s.bounds);
      assert.equal(str(toModel(s)), str(pairsModel(pairs)));
      assert.equal(s.size(), pairsModel(pairs).filter(Boolean).length);
    }),
    { numRuns: 300 },
  );
});

test('property: union, intersect, subtract, complement agree with the model and stay canonical', () => {
  fc.assert(
    fc.property(setArb, setArb, (a, c) => {
      const ma = toModel(a);
      const mc = toModel(c);
      const cases: [IntervalSet, Model][] = [
        [a.union(c), mop(ma, mc, (x, y) => x || y)],
        [a.intersect(c), mop(ma, mc, (x, y) => x && y)],
        [a.subtract(c), mop(ma, mc, (x, y) => x && !y)],
        [a.complement(0, U), ma.map((x) => !x)],
        [a.complement(50, 150), ma.map((x, i) => !x && i >= 50 && i <= 150)],
      ];
      for (const [s, m] of cases) {
        assertCanonical(s.bounds);
        assert.equal(str(toModel(s)), str(m));
        // nothing outside the window leaks in
        assert.ok(!s.has(U + 1) && !s.has(-1), '!s.has(U + 1) && !s.has(-1)');
      }
      assert.equal(a.isSubset(c), ma.every((x, i) => !x || mc[i]));
      assert.equal(a.overlaps(c), ma.some((x, i) => x && mc[i]));
    }),
    { numRuns: 400 },
  );
});

test('property: equals iff same members, and equal sets have identical bounds', () => {
  fc.assert(
    fc.property(setArb, setArb, (a, c) => {
      const same = fromModel(toModel(a)).join() === fromModel(toModel(c)).join();
      assert.equal(a.equals(c), same);
      if (same) assert.deepEqual(b(a), b(c));
      // rebuilding from members gives identical bounds
      const rebuilt = IntervalSet.fromIntervals(fromModel(toModel(a)).map((x) => [x, x]));
      assert.deepEqual(b(rebuilt), b(a));
      assert.ok(rebuilt.equals(a), 'rebuilt.equals(a)');
    }),
    { numRuns: 300 },
  );
});

test('property: commutativity, associativity, De Morgan, absorption', () => {
  fc.assert(
    fc.property(setArb, setArb, setArb, (a, c, d) => {
      assert.ok(a.union(c).equals(c.union(a)), 'a.union(c).equals(c.union(a))');
      assert.ok(a.intersect(c).equals(c.intersect(a)), 'a.intersect(c).equals(c.intersect(a))');
      assert.ok(a.union(c).union(d).equals(a.union(c.union(d))), 'a.union(c).union(d).equals(a.union(c.union(d)))');
      assert.ok(a.intersect(c).intersect(d).equals(a.intersect(c.intersect(d))), 'a.intersect(c).intersect(d).equals(a.intersect(c.intersect(d)))');
      assert.ok(a.union(c).complement(0, U).equals(a.complement(0, U).intersect(c.complement(0, U))), 'a.union(c).complement(0, U).equals(a.complement(0, U).intersect(c.complement(0, U)))');
      assert.ok(a.intersect(c).complement(0, U).equals(a.complement(0, U).union(c.complement(0, U))), 'a.intersect(c).complement(0, U).equals(a.complement(0, U).union(c.complement(0, U)))');
      assert.ok(a.intersect(c.union(d)).equals(a.intersect(c).union(a.intersect(d))), 'a.intersect(c.union(d)).equals(a.intersect(c).union(a.intersect(d)))');
      assert.ok(a.isSubset(a.union(c)), 'a.isSubset(a.union(c))');
      assert.ok(a.intersect(c).isSubset(a), 'a.intersect(c).isSubset(a)');
      assert.ok(a.subtract(c).intersect(c).isEmpty(), 'a.subtract(c).intersect(c).isEmpty()');
      assert.ok(a.subtract(c).union(a.intersect(c)).equals(a), 'a.subtract(c).union(a.intersect(c)).equals(a)');
      assert.ok(a.complement(0, U).complement(0, U).equals(a), 'a.complement(0, U).complement(0, U).equals(a)');
    }),
    { numRuns: 300 },
  );
});

test('property: BigIntervalSet agrees with the model far from zero', () => {
  const off = 1n << 100n;
  const big = (pairs: [number, number][]) => BigIntervalSet.fromIntervals(pairs.map(([lo, hi]) => [BigInt(lo) + off, BigInt(hi) + off]));
  fc.assert(
    fc.property(fc.oneof(pairsArb, pointsArb), fc.oneof(pairsArb, pointsArb), (p, q) => {
      const a = big(p);
      const c = big(q);
      const ma = pairsModel(p);
      const mc = pairsModel(q);
      const cases: [BigIntervalSet, Model][] = [
        [a, ma],
        [a.union(c), mop(ma, mc, (x, y) => x || y)],
        [a.intersect(c), mop(ma, mc, (x, y) => x && y)],
        [a.subtract(c), mop(ma, mc, (x, y) => x && !y)],
        [a.complement(off, off + BigInt(U)), ma.map((x) => !x)],
      ];
      for (const [s, m] of cases) {
        assertCanonical(s.bounds);
        assert.equal(str(toModelBig(s, off)), str(m));
      }
      assert.equal(a.size(), BigInt(ma.filter(Boolean).length));
      assert.equal(a.isSubset(c), ma.every((x, i) => !x || mc[i]));
      assert.equal(a.equals(c), ma.join() === mc.join());
      // the bigint and number classes agree on the text form
      assert.equal(BigIntervalSet.fromIntervals(p.map(([lo, hi]) => [BigInt(lo), BigInt(hi)])).toString(), IntervalSet.fromIntervals(p).toString());
    }),
    { numRuns: 300 },
  );
});
