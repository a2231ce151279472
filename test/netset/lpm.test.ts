/**
 * LpmTable: examples at the edges of the address spaces and of nested
 * prefixes, and a comparison against a naive scan for both families.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LpmTable, type LpmEntry } from '../../src/netset/lpm.js';
import { makePrefix, MAX_V4, MAX_V6, parsePrefix, prefixRange, type Addr, type Prefix } from '../../src/netset/ip.js';

function pfx(s: string): Prefix {
  const r = parsePrefix(s);
  if ('error' in r) throw new Error(`${s}: ${r.error}`);
  return r.prefix;
}
const e = <V>(s: string, value: V): LpmEntry<V> => ({ prefix: pfx(s), value });
const ip = (s: string): Addr => pfx(s).addr;

/** The naive answer: scan every entry, keep the longest containing prefix; equal prefixes combine in order. */
function naive<V>(entries: readonly LpmEntry<V>[], a: Addr, onDuplicate?: (x: V, y: V) => V): V | undefined {
  let best: V | undefined;
  let bestLen = -1;
  for (const { prefix, value } of entries) {
    if (typeof prefix.addr !== typeof a) continue;
    const [lo, hi] = prefixRange(prefix);
    if (a < lo || a > hi) continue;
    if (prefix.len > bestLen) {
      best = value;
      bestLen = prefix.len;
    } else if (prefix.len === bestLen) {
      best = onDuplicate ? onDuplicate(best as V, value) : value;
    }
  }
  return best;
}

test('an empty table finds nothing', () => {
  const t = LpmTable.build<string>([]);
  assert.equal(t.lookup(0), undefined);
  assert.equal(t.lookup(MAX_V4), undefined);
  assert.equal(t.lookup(0n), undefined);
  assert.equal(t.lookupV6(MAX_V6), undefined);
  assert.equal(t.size, 0);
});

test('nested IPv4 prefixes: the most specific wins, at every edge', () => {
  const t = LpmTable.build([e('0.0.0.0/0', 'default'), e('10.0.0.0/8', 'ten'), e('10.1.0.0/16', 'ten-one'), e('10.1.2.3', 'host'), e('10.255.0.0/16', 'ten-top')]);
  const cases: [string, string][] = [
    ['0.0.0.0', 'default'],
    ['9.255.255.255', 'default'],
    ['10.0.0.0', 'ten'],
    ['10.0.255.255', 'ten'],
    ['10.1.0.0', 'ten-one'],
    ['10.1.2.2', 'ten-one'],
    ['10.1.2.3', 'host'],
    ['10.1.2.4', 'ten-one'],
    ['10.1.255.255', 'ten-one'],
    ['10.2.0.0', 'ten'],
    ['10.254.255.255', 'ten'],
    ['10.255.0.0', 'ten-top'],
    ['10.255.255.255', 'ten-top'], // ends together with 10.0.0.0/8
    ['11.0.0.0', 'default'],
    ['255.255.255.255', 'default'],
  ];
  for (const [a, want] of cases) {
    assert.equal(t.lookup(ip(a)), want, a);
    assert.equal(t.lookupV4(ip(a) as number), want, a);
  }
  assert.equal(t.lookup(ip('::1')), undefined); // families do not mix
});

test('prefixes at the ends of the IPv4 and IPv6 spaces', () => {
  const t = LpmTable.build([e('0.0.0.0', 'zero'), e('255.255.255.255', 'top'), e('255.255.255.254/31', 'top31'), e('::', 'z6'), e('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'top6'), e('8000::/1', 'high6')]);
  assert.equal(t.lookup(0), 'zero');
  assert.equal(t.lookup(1), undefined);
  assert.equal(t.lookup(MAX_V4), 'top');
  assert.equal(t.lookup(MAX_V4 - 1), 'top31');
  assert.equal(t.lookup(MAX_V4 - 2), undefined);
  assert.equal(t.lookup(0n), 'z6');
  assert.equal(t.lookup(1n), undefined);
  assert.equal(t.lookup(MAX_V6), 'top6');
  assert.equal(t.lookup(MAX_V6 - 1n), 'high6');
  assert.equal(t.lookup(1n << 127n), 'high6');
  assert.equal(t.lookup((1n << 127n) - 1n), undefined);
});

test('duplicate prefixes: later wins, or onDuplicate combines in input order', () => {
  const entries = [e('10.0.0.0/8', 'a'), e('10.0.0.0/8', 'b'), e('10.9.9.9/8', 'c'), e('2001:db8::/32', 'x'), e('2001:db8::/32', 'y')];
  const later = LpmTable.build(entries);
  assert.equal(later.lookup(ip('10.1.1.1')), 'c');
  assert.equal(later.lookup(ip('2001:db8::5')), 'y');
  assert.equal(later.size, 2);
  const joined = LpmTable.build(entries, { onDuplicate: (x, y) => `${x}+${y}` });
  assert.equal(joined.lookup(ip('10.1.1.1')), 'a+b+c');
  assert.equal(joined.lookup(ip('2001:db8::5')), 'x+y');
});

test('host bits in entries are ignored', () => {
  const t = LpmTable.build([{ prefix: { addr: 0x0a010203, len: 8 }, value: 1 }]);
  assert.equal(t.lookup(0x0a000000), 1);
  assert.equal(t.lookup(0x0b000000), undefined);
  assert.throws(() => LpmTable.build([{ prefix: { addr: 1, len: 33 }, value: 1 }]), RangeError);
  assert.throws(() => LpmTable.build([{ prefix: { addr: 2 ** 32, len: 8 }, value: 1 }]), RangeError);
  assert.throws(() => LpmTable.build([{ prefix: { addr: 1n, len: 129 }, value: 1 }]), RangeError);
});

test('200,000 entries build quickly and match the naive answer on samples', () => {
  let seed = 7;
  const rnd = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const entries: LpmEntry<number>[] = [];
  for (let i = 0; i < 150_000; i++) entries.push({ prefix: makePrefix(Math.floor(rnd() * 2 ** 32), 8 + Math.floor(rnd() * 25)), value: i });
  for (let i = 0; i < 50_000; i++) entries.push({ prefix: makePrefix((0x20010db8n << 96n) | (BigInt(Math.floor(rnd() * 2 ** 32)) << 64n), 32 + Math.floor(rnd() * 97)), value: i });
  const t0 = performance.now();
  const t = LpmTable.build(entries);
  const ms = performance.now() - t0;
  assert.ok(ms < 2000, `build took ${ms.toFixed(0)} ms`);
  // check samples: the prefixes' own edges and random addresses
  const sample = entries.filter((_, i) => i % 2000 === 0);
  const probes: Addr[] = [];
  for (const x of sample) {
    const [lo, hi] = prefixRange(x.prefix);
    probes.push(lo, hi);
  }
  for (let i = 0; i < 50; i++) probes.push(Math.floor(rnd() * 2 ** 32));
  for (const a of probes) assert.equal(t.lookup(a), naive(entries, a), String(a));
});

// ------------------------------------------------------------ properties

/** Entries with much nesting: a few bases, each with random lengths, plus random ones. */
function entriesArb(bits: 32 | 128): fc.Arbitrary<LpmEntry<number>[]> {
  const addr: fc.Arbitrary<Addr> =
    bits === 32
      ? fc.oneof(fc.integer({ min: 0, max: MAX_V4 }), fc.constantFrom(0, MAX_V4, 0x0a000000, 0x0a0a0a0a))
      : fc.oneof(fc.bigInt({ min: 0n, max: MAX_V6 }), fc.constantFrom(0n, MAX_V6, 0x20010db8n << 96n, (0x20010db8n << 96n) | 0xabcdn));
  const len = fc.integer({ min: 0, max: bits });
  return fc.tuple(fc.array(addr, { minLength: 1, maxLength: 4 }), fc.array(fc.tuple(fc.nat(3), len, fc.boolean()), { maxLength: 30 })).map(([bases, picks]) =>
    picks.map(([b, l], i) => {
      const base = bases[b % bases.length];
      return { prefix: makePrefix(base, l), value: i };
    }),
  );
}

/** Probe addresses: each prefix's first and last address and their neighbours, plus a random one. */
function probesOf(entries: readonly LpmEntry<number>[], extra: Addr): Addr[] {
  const out: Addr[] = [extra];
  for (const { prefix } of entries) {
    const [lo, hi] = prefixRange(prefix);
    if (typeof lo === 'number') {
      const h = hi as number;
      out.push(lo, h, ...(lo > 0 ? [lo - 1] : []), ...(h < MAX_V4 ? [h + 1] : []));
    } else {
      const h = hi as bigint;
      out.push(lo, h, ...(lo > 0n ? [lo - 1n] : []), ...(h < MAX_V6 ? [h + 1n] : []));
    }
  }
  return out;
}

test('property: IPv4 lookups agree with a naive scan', () => {
  fc.assert(
    fc.property(entriesArb(32), fc.integer({ min: 0, max: MAX_V4 }), (entries, x) => {
      const t = LpmTable.build(entries);
      for (const a of probesOf(entries, x)) {
        assert.equal(t.lookup(a), naive(entries, a), String(a));
        assert.equal(t.lookupV4(a as number), naive(entries, a));
      }
    }),
    { numRuns: 400 },
  );
});

test('property: IPv6 lookups agree with a naive scan', () => {
  fc.assert(
    fc.property(entriesArb(128), fc.bigInt({ min: 0n, max: MAX_V6 }), (entries, x) => {
      const t = LpmTable.build(entries);
      for (const a of probesOf(entries, x)) assert.equal(t.lookup(a), naive(entries, a), String(a));
    }),
    { numRuns: 300 },
  );
});

test('property: mixed families with onDuplicate agree with a naive scan', () => {
  fc.assert(
    fc.property(entriesArb(32), entriesArb(128), fc.integer({ min: 0, max: MAX_V4 }), (e4, e6, x) => {
      // interleave families and force duplicates by repeating some entries
      const entries = [...e4, ...e6, ...e4.slice(0, 3).map((y) => ({ ...y, value: y.value + 1000 }))];
      const sum = (p: number, q: number) => p * 31 + q;
      const t = LpmTable.build(entries, { onDuplicate: sum });
      for (const a of probesOf(entries, x)) assert.equal(t.lookup(a), naive(entries, a, sum), String(a));
    }),
    { numRuns: 200 },
  );
});

test('property: large tables (radix-sorted) agree with a naive scan', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 12, max: 32 })), { minLength: 2100, maxLength: 2500 }), fc.array(fc.tuple(fc.bigInt({ min: 0n, max: 0xffffn }), fc.integer({ min: 100, max: 128 })), { minLength: 2100, maxLength: 2300 }), (p4, p6) => {
      // addresses confined to a small region so that the prefixes nest deeply
      const entries: LpmEntry<number>[] = [
        ...p4.map(([a, l], i) => ({ prefix: makePrefix(0x0a000000 + a * 13, l), value: i })),
        ...p6.map(([a, l], i) => ({ prefix: makePrefix((1n << 100n) + a * 977n, l), value: -i })),
      ];
      const t = LpmTable.build(entries);
      const probes = probesOf(entries.filter((_, i) => i % 17 === 0), 0x0a000000);
      for (const a of probes) assert.equal(t.lookup(a), naive(entries, a), String(a));
    }),
    // each run is large: report the first failure instead of shrinking thousands of entries
    { numRuns: 5, endOnFailure: true },
  );
});
