/** Bits and BitsBuilder: word-edge examples and the algebra against a boolean-array model. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Bits, BitsBuilder } from '../../src/netset/bits.js';

const WIDTHS = [0, 1, 31, 32, 33, 63, 64, 65, 100];

test('empty and full at word edges', () => {
  for (const n of WIDTHS) {
    const e = Bits.empty(n);
    const f = Bits.full(n);
    assert.equal(e.size, n);
    assert.equal(e.count(), 0);
    assert.equal(f.count(), n, `full(${n})`);
    assert.ok(e.isEmpty(), 'e.isEmpty()');
    assert.equal(f.isEmpty(), n === 0);
    assert.ok(e.not().equals(f), `not empty(${n})`);
    assert.ok(f.not().equals(e), `not full(${n})`);
    assert.deepEqual(f.indices(), Array.from({ length: n }, (_, i) => i));
    assert.ok(!f.has(n) && !f.has(-1) && !f.has(n + 32), '!f.has(n) && !f.has(-1) && !f.has(n + 32)');
    if (n > 0) assert.ok(f.has(0) && f.has(n - 1), 'f.has(0) && f.has(n - 1)');
    assert.equal(f.first(), n === 0 ? -1 : 0);
  }
});

test('has ignores indices outside 0..n-1, even those that alias a word', () => {
  const b = Bits.fromIndices(40, [0, 3, 39]);
  assert.ok(b.has(0) && b.has(3) && b.has(39), 'b.has(0) && b.has(3) && b.has(39)');
  assert.ok(!b.has(1) && !b.has(40) && !b.has(-1) && !b.has(2 ** 32) && !b.has(2 ** 32 + 3) && !b.has(Number.NaN), '!b.has(1) && !b.has(40) && !b.has(-1) && !b.has(2 ** 32) && !b.has(2 ** 32 + 3) && !b.has(Number....');
  assert.deepEqual(b.indices(), [0, 3, 39]);
  assert.equal(b.toString(), '{0,3,39}');
  assert.equal(b.first(), 0);
  assert.equal(Bits.fromIndices(70, [69, 64]).first(), 64);
});

test('invalid widths, indices and mismatched widths throw', () => {
  assert.throws(() => Bits.empty(-1), RangeError);
  assert.throws(() => Bits.fromIndices(10, [10]), RangeError);
  assert.throws(() => Bits.fromIndices(10, [-1]), RangeError);
  assert.throws(() => Bits.fromIndices(10, [1.5]), RangeError);
  assert.throws(() => Bits.empty(10).union(Bits.empty(11)), RangeError);
  assert.throws(() => Bits.empty(10).isSubset(Bits.empty(11)), RangeError);
  assert.throws(() => new BitsBuilder(10).set(10), RangeError);
  assert.throws(() => new BitsBuilder(10).or(Bits.empty(9)), RangeError);
  assert.ok(!Bits.empty(10).equals(Bits.empty(11)), '!Bits.empty(10).equals(Bits.empty(11))');
});

test('BitsBuilder: in-place operations, and freeze snapshots', () => {
  const bb = new BitsBuilder(70);
  bb.set(0).set(33).set(69);
  const first = bb.freeze();
  bb.clear(33).set(5);
  assert.deepEqual(first.indices(), [0, 33, 69]);
  assert.deepEqual(bb.freeze().indices(), [0, 5, 69]);
  assert.ok(bb.has(5) && !bb.has(33) && !bb.has(70), 'bb.has(5) && !bb.has(33) && !bb.has(70)');
  bb.or(Bits.fromIndices(70, [1, 2])).and(Bits.fromIndices(70, [0, 1, 5, 6])).andNot(Bits.fromIndices(70, [5]));
  assert.deepEqual(bb.freeze().indices(), [0, 1]);
  const copy = new BitsBuilder(70, first);
  assert.ok(copy.freeze().equals(first), 'copy.freeze().equals(first)');
  copy.reset();
  assert.ok(copy.freeze().isEmpty(), 'copy.freeze().isEmpty()');
  assert.ok(!first.isEmpty(), '!first.isEmpty()');
  const other = new BitsBuilder(70).set(7);
  assert.deepEqual(new BitsBuilder(70).or(other).freeze().indices(), [7]);
});

test('operations do not mutate their operands', () => {
  const a = Bits.fromIndices(40, [1, 2, 35]);
  const c = Bits.fromIndices(40, [2, 3]);
  a.union(c);
  a.intersect(c);
  a.subtract(c);
  a.not();
  assert.deepEqual(a.indices(), [1, 2, 35]);
  assert.deepEqual(c.indices(), [2, 3]);
});

// ------------------------------------------------------------ the model

const caseArb = fc.integer({ min: 0, max: 130 }).chain((n) =>
  fc.tuple(
    fc.constant(n),
    fc.array(fc.boolean(), { minLength: n, maxLength: n }),
    fc.array(fc.boolean(), { minLength: n, maxLength: n }),
  ),
);
const bitsOf = (n: number, m: boolean[]) => Bits.fromIndices(n, m.flatMap((v, i) => (v ? [i] : [])));
/** The membership of each index as a 0/1 string: cheap to compare and to print while shrinking. */
const modelOf = (b: Bits) => Array.from({ length: b.size }, (_, i) => (b.has(i) ? '1' : '0')).join('');
const str = (m: boolean[]) => m.map((x) => (x ? '1' : '0')).join('');

test('property: Bits agrees with a boolean array', () => {
  fc.assert(
    fc.property(caseArb, ([n, ma, mc]) => {
      const a = bitsOf(n, ma);
      const c = bitsOf(n, mc);
      assert.equal(modelOf(a), str(ma));
      assert.equal(modelOf(a.union(c)), str(ma.map((x, i) => x || mc[i])));
      assert.equal(modelOf(a.intersect(c)), str(ma.map((x, i) => x && mc[i])));
      assert.equal(modelOf(a.subtract(c)), str(ma.map((x, i) => x && !mc[i])));
      assert.equal(modelOf(a.not()), str(ma.map((x) => !x)));
      assert.equal(a.not().count(), n - a.count());
      assert.equal(a.count(), ma.filter(Boolean).length);
      assert.deepEqual(a.indices(), ma.flatMap((v, i) => (v ? [i] : [])));
      assert.equal(a.first(), ma.indexOf(true));
      assert.equal(a.isEmpty(), !ma.includes(true));
      assert.equal(a.equals(c), ma.join() === mc.join());
      assert.equal(a.isSubset(c), ma.every((x, i) => !x || mc[i]));
      assert.equal(a.intersects(c), ma.some((x, i) => x && mc[i]));
      assert.ok(a.not().not().equals(a), 'a.not().not().equals(a)');
      assert.ok(a.union(c).not().equals(a.not().intersect(c.not())), 'a.union(c).not().equals(a.not().intersect(c.not()))');
      // the builder reaches the same values
      const bb = new BitsBuilder(n);
      ma.forEach((v, i) => v && bb.set(i));
      assert.ok(bb.freeze().equals(a), 'bb.freeze().equals(a)');
      assert.ok(bb.or(c).freeze().equals(a.union(c)), 'bb.or(c).freeze().equals(a.union(c))');
      assert.ok(new BitsBuilder(n, a).and(c).freeze().equals(a.intersect(c)), 'new BitsBuilder(n, a).and(c).freeze().equals(a.intersect(c))');
      assert.ok(new BitsBuilder(n, a).andNot(c).freeze().equals(a.subtract(c)), 'new BitsBuilder(n, a).andNot(c).freeze().equals(a.subtract(c))');
    }),
    { numRuns: 400 },
  );
});
