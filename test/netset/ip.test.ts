/**
 * Addresses, prefixes and IpSet: parsing and RFC 5952 formatting examples,
 * and properties for round trips and the minimal CIDR decomposition.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  familyOf,
  formatAddr,
  formatPrefix,
  IpSet,
  makePrefix,
  MAX_V4,
  MAX_V6,
  parseAddr,
  parsePrefix,
  prefixRange,
  type Addr,
  type Prefix,
} from '../../src/netset/ip.js';
import { BigIntervalSet, IntervalSet } from '../../src/netset/interval.js';

/** Parses a prefix that must be valid. */
function pfx(s: string): Prefix {
  const r = parsePrefix(s);
  if ('error' in r) throw new Error(`${s}: ${r.error}`);
  return r.prefix;
}

test('parseAddr: IPv4', () => {
  assert.equal(parseAddr('0.0.0.0'), 0);
  assert.equal(parseAddr('255.255.255.255'), MAX_V4);
  assert.equal(parseAddr('1.2.3.4'), 0x01020304);
  assert.equal(parseAddr('10.0.0.1'), 0x0a000001);
  assert.equal(parseAddr('192.168.100.200'), 0xc0a864c8);
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.0.0.0', '1.2.3.256', '01.2.3.4', '1.2.3.00', '1..2.3', '.1.2.3', '1.2.3.', ' 1.2.3.4', '1.2.3.4 ', '-1.2.3.4', '+1.2.3.4', '1.2.3.a', '0x1.2.3.4', '1.2.3.4/32', '1234.1.1.1', '1.2.3.4\n']) {
    assert.equal(parseAddr(bad), null, JSON.stringify(bad));
  }
});

test('parseAddr: IPv6', () => {
  assert.equal(parseAddr('::'), 0n);
  assert.equal(parseAddr('::1'), 1n);
  assert.equal(parseAddr('1::'), 1n << 112n);
  assert.equal(parseAddr('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), MAX_V6);
  assert.equal(parseAddr('FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF'), MAX_V6);
  assert.equal(parseAddr('2001:db8::1'), 0x20010db8000000000000000000000001n);
  assert.equal(parseAddr('2001:0DB8:0000:0000:0000:0000:0000:0001'), 0x20010db8000000000000000000000001n);
  assert.equal(parseAddr('1:2:3:4:5:6:7:8'), 0x00010002000300040005000600070008n);
  assert.equal(parseAddr('1:2:3:4:5:6:7::'), 0x00010002000300040005000600070000n);
  assert.equal(parseAddr('::2:3:4:5:6:7:8'), 0x00000002000300040005000600070008n);
  assert.equal(parseAddr('1:2:3:4:5:6:1.2.3.4'), 0x00010002000300040005000601020304n);
  assert.equal(parseAddr('::1.2.3.4'), 0x01020304n); // IPv4-compatible (deprecated) stays IPv6
  assert.equal(parseAddr('64:ff9b::192.0.2.33'), 0x0064ff9b0000000000000000c0000221n);
  for (const bad of [
    ':',
    ':::',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8',
    '1::2::3',
    '12345::',
    'g::',
    ':1::',
    '1::2:',
    '1:2:3:4:5:6:7:',
    ':1:2:3:4:5:6:7',
    'fe80::1%eth0',
    'fe80::1%1',
    '[::1]',
    '::ffff:1.2.3',
    '::ffff:1.2.3.256',
    '::ffff:01.2.3.4',
    '1.2.3.4::',
    '::1.2.3.4:5',
    '1:2:3:4:5:6:7:1.2.3.4',
    ' ::1',
    '::1 ',
  ]) {
    assert.equal(parseAddr(bad), null, JSON.stringify(bad));
  }
});

test('parseAddr: IPv4-mapped addresses normalize to IPv4 in any spelling', () => {
  assert.equal(parseAddr('::ffff:1.2.3.4'), 0x01020304);
  assert.equal(parseAddr('::FFFF:102:304'), 0x01020304);
  assert.equal(parseAddr('0:0:0:0:0:ffff:0.0.0.0'), 0);
  assert.equal(parseAddr('::ffff:255.255.255.255'), MAX_V4);
  assert.equal(typeof parseAddr('::fffe:1.2.3.4'), 'bigint');
  assert.equal(familyOf(parseAddr('::ffff:1.2.3.4')!), 4);
  assert.equal(familyOf(parseAddr('::1')!), 6);
});

test('formatAddr: RFC 5952 canonical form', () => {
  const cases: [string, string][] = [
    ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'], // 4.2.1: shorten as much as possible
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // 4.2.2: a single 0 group is not compressed
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // 4.2.3: the longest run
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // 4.2.3: the first run on ties
    ['2001:DB8::ABCD', '2001:db8::abcd'], // 4.3: lowercase
    ['2001:0db8::0001', '2001:db8::1'], // 4.1: no leading zeros
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['1:0:0:0:0:0:0:1', '1::1'],
    ['0:1:0:1:0:1:0:1', '0:1:0:1:0:1:0:1'],
    ['0:0:1:0:0:1:0:0', '::1:0:0:1:0:0'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ['fe80::0:0:1', 'fe80::1'],
  ];
  for (const [input, want] of cases) assert.equal(formatAddr(parseAddr(input)!), want, input);
  assert.equal(formatAddr(0xffff01020304n), '::ffff:1.2.3.4'); // section 5: mapped in mixed notation
  assert.equal(formatAddr(0), '0.0.0.0');
  assert.equal(formatAddr(MAX_V4), '255.255.255.255');
  assert.equal(formatAddr(0x0a000001), '10.0.0.1');
  for (const bad of [-1, 2 ** 32, 1.5, Number.NaN, -1n, 1n << 128n]) assert.throws(() => formatAddr(bad as Addr), RangeError);
});

test('parsePrefix: valid forms, masking and mapped prefixes', () => {
  assert.deepEqual(parsePrefix('10.0.0.0/8'), { prefix: { addr: 0x0a000000, len: 8 }, hostBitsSet: false });
  assert.deepEqual(parsePrefix('10.1.2.3/8'), { prefix: { addr: 0x0a000000, len: 8 }, hostBitsSet: true });
  assert.deepEqual(parsePrefix('1.2.3.4'), { prefix: { addr: 0x01020304, len: 32 }, hostBitsSet: false });
  assert.deepEqual(parsePrefix('0.0.0.0/0'), { prefix: { addr: 0, len: 0 }, hostBitsSet: false });
  assert.deepEqual(parsePrefix('255.255.255.255/0'), { prefix: { addr: 0, len: 0 }, hostBitsSet: true });
  assert.deepEqual(parsePrefix('255.255.255.255/31'), { prefix: { addr: MAX_V4 - 1, len: 31 }, hostBitsSet: true });
  assert.deepEqual(parsePrefix('::/0'), { prefix: { addr: 0n, len: 0 }, hostBitsSet: false });
  assert.deepEqual(parsePrefix('::1'), { prefix: { addr: 1n, len: 128 }, hostBitsSet: false });
  assert.deepEqual(parsePrefix('2001:db8::/32'), { prefix: { addr: 0x20010db8n << 96n, len: 32 }, hostBitsSet: false });
  assert.deepEqual(parsePrefix('2001:db8::1/64'), { prefix: { addr: 0x20010db8n << 96n, len: 64 }, hostBitsSet: true });
  assert.deepEqual(parsePrefix('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/1'), { prefix: { addr: 1n << 127n, len: 1 }, hostBitsSet: true });
  assert.deepEqual(parsePrefix('::ffff:10.0.0.0/104'), { prefix: { addr: 0x0a000000, len: 8 }, hostBitsSet: false });
  assert.deepEqual(parsePrefix('::ffff:10.1.0.0/104'), { prefix: { addr: 0x0a000000, len: 8 }, hostBitsSet: true });
  assert.deepEqual(parsePrefix('::ffff:1.2.3.4'), { prefix: { addr: 0x01020304, len: 32 }, hostBitsSet: false });
  assert.deepEqual(parsePrefix('::ffff:0.0.0.0/96'), { prefix: { addr: 0, len: 0 }, hostBitsSet: false });
  assert.deepEqual(parsePrefix('::ffff:0:0/95'), { prefix: { addr: 0xfffe00000000n, len: 95 }, hostBitsSet: true });
});

test('parsePrefix: errors are short lowercase phrases', () => {
  const err = (s: string) => {
    const r = parsePrefix(s);
    assert.ok('error' in r, s);
    return r.error;
  };
  assert.equal(err('1.2.3.4/33'), 'prefix length 33 is out of range for IPv4 (0-32)');
  assert.equal(err('::/129'), 'prefix length 129 is out of range for IPv6 (0-128)');
  assert.equal(err('1.2.3.4/9999'), 'prefix length 9999 is out of range for IPv4 (0-32)');
  assert.equal(err('foo'), 'not an IPv4 or IPv6 address');
  assert.equal(err('1.2.3/8'), 'not an IPv4 or IPv6 address');
  assert.equal(err(''), 'not an IPv4 or IPv6 address');
  assert.equal(err('/8'), 'not an IPv4 or IPv6 address');
  assert.equal(err('1.2.3.4/'), 'prefix length is missing after `/`');
  assert.equal(err('1.2.3.4/08'), 'prefix length `08` is not a decimal number');
  assert.equal(err('1.2.3.4/-1'), 'prefix length `-1` is not a decimal number');
  assert.equal(err('1.2.3.4/8/8'), 'prefix length `8/8` is not a decimal number');
  assert.equal(err('1.2.3.4/ 8'), 'prefix length ` 8` is not a decimal number');
  assert.equal(err('fe80::1%eth0/64'), 'zone ids are not allowed in addresses');
  assert.equal(err('fe80::1%eth0'), 'zone ids are not allowed in addresses');
  for (const s of ['1.2.3.4/33', '::/129', 'foo', '1.2.3.4/', '1.2.3.4/08', 'fe80::1%eth0']) {
    const e = err(s);
    assert.equal(e, e.toLowerCase().replace('ipv4', 'IPv4').replace('ipv6', 'IPv6'));
    assert.ok(!e.endsWith('.'), '!e.endsWith(\'.\')');
  }
});

test('formatPrefix, makePrefix and prefixRange', () => {
  assert.equal(formatPrefix(pfx('10.0.0.0/8')), '10.0.0.0/8');
  assert.equal(formatPrefix(pfx('1.2.3.4')), '1.2.3.4/32');
  assert.equal(formatPrefix(pfx('2001:db8::/32')), '2001:db8::/32');
  assert.equal(formatPrefix(pfx('::')), '::/128');
  assert.deepEqual(prefixRange(pfx('0.0.0.0/0')), [0, MAX_V4]);
  assert.deepEqual(prefixRange(pfx('255.255.255.255')), [MAX_V4, MAX_V4]);
  assert.deepEqual(prefixRange(pfx('10.0.0.0/8')), [0x0a000000, 0x0affffff]);
  assert.deepEqual(prefixRange(pfx('::/0')), [0n, MAX_V6]);
  assert.deepEqual(prefixRange(pfx('2001:db8::/64')), [0x20010db8n << 96n, (0x20010db8n << 96n) | 0xffffffffffffffffn]);
  assert.deepEqual(prefixRange(pfx('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')), [MAX_V6, MAX_V6]);
  assert.deepEqual(makePrefix(0x0a010203, 8), { addr: 0x0a000000, len: 8 });
  assert.deepEqual(makePrefix(MAX_V6, 0), { addr: 0n, len: 0 });
  assert.throws(() => makePrefix(1, 33), RangeError);
  assert.throws(() => makePrefix(1n, 129), RangeError);
  assert.throws(() => makePrefix(-1, 8), RangeError);
});

test('IpSet constants and membership at the extremes', () => {
  assert.ok(IpSet.EMPTY.isEmpty(), 'IpSet.EMPTY.isEmpty()');
  assert.ok(IpSet.ALL.has(0) && IpSet.ALL.has(MAX_V4) && IpSet.ALL.has(0n) && IpSet.ALL.has(MAX_V6), 'IpSet.ALL.has(0) && IpSet.ALL.has(MAX_V4) && IpSet.ALL.has(0n) && IpSet.ALL.has(MAX_V6)');
  assert.ok(IpSet.ALL_V4.has(0) && IpSet.ALL_V4.has(MAX_V4) && !IpSet.ALL_V4.has(0n), 'IpSet.ALL_V4.has(0) && IpSet.ALL_V4.has(MAX_V4) && !IpSet.ALL_V4.has(0n)');
  assert.ok(IpSet.ALL_V6.has(0n) && IpSet.ALL_V6.has(MAX_V6) && !IpSet.ALL_V6.has(0), 'IpSet.ALL_V6.has(0n) && IpSet.ALL_V6.has(MAX_V6) && !IpSet.ALL_V6.has(0)');
  assert.ok(IpSet.ALL_V4.union(IpSet.ALL_V6).equals(IpSet.ALL), 'IpSet.ALL_V4.union(IpSet.ALL_V6).equals(IpSet.ALL)');
  assert.ok(IpSet.ALL.subtract(IpSet.ALL_V4).equals(IpSet.ALL_V6), 'IpSet.ALL.subtract(IpSet.ALL_V4).equals(IpSet.ALL_V6)');
  assert.ok(IpSet.ALL.complement().isEmpty(), 'IpSet.ALL.complement().isEmpty()');
  assert.equal(IpSet.EMPTY.toString(), 'none');
  assert.equal(IpSet.ALL.toString(), '0.0.0.0/0, ::/0');
  assert.deepEqual(IpSet.ALL.toPrefixes(), [
    { addr: 0, len: 0 },
    { addr: 0n, len: 0 },
  ]);
  assert.ok(IpSet.fromPrefixes([pfx('0.0.0.0/0'), pfx('::/0')]).equals(IpSet.ALL), 'IpSet.fromPrefixes([pfx(\'0.0.0.0/0\'), pfx(\'::/0\')]).equals(IpSet.ALL)');
});

test('IpSet from prefixes and addresses; text form', () => {
  const s = IpSet.fromPrefixes([pfx('10.0.0.0/8'), pfx('192.168.1.1'), pfx('2001:db8::/32'), pfx('::1'), pfx('10.1.0.0/16')]);
  assert.equal(s.toString(), '10.0.0.0/8, 192.168.1.1, ::1, 2001:db8::/32');
  assert.ok(s.has(parseAddr('10.255.255.255')!) && !s.has(parseAddr('11.0.0.0')!), 's.has(parseAddr(\'10.255.255.255\')!) && !s.has(parseAddr(\'11.0.0.0\')!)');
  assert.ok(s.has(parseAddr('::ffff:10.1.2.3')!), 's.has(parseAddr(\'::ffff:10.1.2.3\')!)'); // mapped text finds the IPv4 member
  const a = IpSet.fromAddrs([parseAddr('10.0.0.1')!, parseAddr('10.0.0.2')!, parseAddr('10.0.0.3')!, 5n]);
  assert.equal(a.toString(), '10.0.0.1, 10.0.0.2/31, ::5');
  assert.ok(a.isSubset(s.union(IpSet.fromAddrs([5n]))), 'a.isSubset(s.union(IpSet.fromAddrs([5n])))');
  assert.ok(!a.isSubset(s), '!a.isSubset(s)');
  assert.ok(a.overlaps(s), 'a.overlaps(s)');
  assert.ok(IpSet.fromRanges([[1, 6]], []).equals(IpSet.fromAddrs([1, 2, 3, 4, 5, 6])), 'IpSet.fromRanges([[1, 6]], []).equals(IpSet.fromAddrs([1, 2, 3, 4, 5, 6]))');
  assert.equal(IpSet.fromRanges([[1, 6]], []).toString(), '0.0.0.1, 0.0.0.2/31, 0.0.0.4/31, 0.0.0.6');
  assert.equal(IpSet.fromRanges([[0, MAX_V4 - 1]], []).toPrefixes().length, 32);
  assert.equal(IpSet.fromRanges([], [[1n, MAX_V6]]).toPrefixes().length, 128);
  assert.throws(() => IpSet.fromAddrs([2 ** 32]), RangeError);
  assert.throws(() => IpSet.fromRanges([[0, 2 ** 32]], []), RangeError);
  assert.throws(() => IpSet.fromParts(IntervalSet.EMPTY, BigIntervalSet.of(0n, 1n << 128n)), RangeError);
});

// ------------------------------------------------------------ properties

const v4Arb = fc.oneof(fc.integer({ min: 0, max: MAX_V4 }), fc.constantFrom(0, 1, MAX_V4, MAX_V4 - 1, 0x80000000));
const v6Arb = fc.oneof(fc.bigInt({ min: 0n, max: MAX_V6 }), fc.constantFrom(0n, 1n, MAX_V6, MAX_V6 - 1n, 1n << 127n));

test('property: formatAddr and parseAddr round-trip', () => {
  fc.assert(
    fc.property(v4Arb, (a) => assert.equal(parseAddr(formatAddr(a)), a)),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(v6Arb, (a) => {
      const text = formatAddr(a);
      const back = parseAddr(text);
      if (a >> 32n === 0xffffn) assert.equal(back, Number(a & 0xffffffffn));
      else assert.equal(back, a);
      assert.equal(text, text.toLowerCase());
      assert.ok(!/(^|:)0[0-9a-f]/.test(text), `leading zero in ${text}`);
    }),
    { numRuns: 500 },
  );
});

test('property: any spelling of an IPv6 address parses to the same value and formats canonically', () => {
  // Groups biased to zero so that `::` runs are common.
  const groups = fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 });
  fc.assert(
    fc.property(groups, fc.boolean(), fc.boolean(), fc.nat(8), (gs, upper, pad, cut) => {
      const value = gs.reduce((v, g) => (v << 16n) | BigInt(g), 0n);
      if (value >> 32n === 0xffffn) return; // mapped: becomes IPv4
      const hex = gs.map((g) => {
        const h = g.toString(16);
        const t = pad ? h.padStart(4, '0') : h;
        return upper ? t.toUpperCase() : t;
      });
      const spellings = [hex.join(':')];
      // compress the zero run starting at `cut`, if any
      let end = cut;
      while (end < 8 && gs[end] === 0) end++;
      if (end > cut) spellings.push(`${hex.slice(0, cut).join(':')}::${hex.slice(end).join(':')}`);
      for (const s of spellings) assert.equal(parseAddr(s), value, s);
      // the canonical form compresses the longest run (first on ties), and only runs of 2+
      const canon = formatAddr(value);
      let best = -1;
      let bestLen = 1;
      for (let i = 0; i < 8; ) {
        let j = i;
        while (j < 8 && gs[j] === 0) j++;
        if (j - i > bestLen) {
          best = i;
          bestLen = j - i;
        }
        i = j === i ? i + 1 : j;
      }
      const plain = gs.map((g) => g.toString(16));
      const want = best < 0 ? plain.join(':') : `${plain.slice(0, best).join(':')}::${plain.slice(best + bestLen).join(':')}`;
      assert.equal(canon, want);
    }),
    { numRuns: 500 },
  );
});

test('property: parsePrefix masks and formatPrefix round-trips', () => {
  fc.assert(
    fc.property(fc.oneof(v4Arb.chain((a) => fc.tuple(fc.constant<Addr>(a), fc.integer({ min: 0, max: 32 }))), v6Arb.chain((a) => fc.tuple(fc.constant<Addr>(a), fc.integer({ min: 0, max: 128 })))), ([a, len]) => {
      if (typeof a === 'bigint' && a >> 32n === 0xffffn) return;
      const r = parsePrefix(`${formatAddr(a)}/${len}`);
      assert.ok(!('error' in r), '!(\'error\' in r)');
      const p = r.prefix;
      assert.deepEqual(p, makePrefix(a, len));
      const [lo, hi] = prefixRange(p);
      assert.ok(lo <= a && a <= hi, 'lo <= a && a <= hi');
      assert.equal(r.hostBitsSet, p.addr !== a);
      const width = typeof lo === 'number' ? BigInt((hi as number) - lo + 1) : (hi as bigint) - lo + 1n;
      assert.equal(width, 1n << BigInt((typeof a === 'number' ? 32 : 128) - len));
      assert.deepEqual(parsePrefix(formatPrefix(p)), { prefix: p, hostBitsSet: false });
    }),
    { numRuns: 500 },
  );
});

/** Random IPv4 sets: intervals near the ends, around powers of two, and anywhere. */
const v4SetArb = fc
  .array(
    fc.oneof(
      fc.tuple(v4Arb, v4Arb),
      fc.tuple(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: 0, max: 4096 })),
      fc.tuple(fc.integer({ min: MAX_V4 - 4096, max: MAX_V4 }), fc.integer({ min: MAX_V4 - 4096, max: MAX_V4 })),
      fc.integer({ min: 1, max: 31 }).chain((k) => fc.tuple(fc.integer({ min: Math.max(0, 2 ** k - 40), max: 2 ** k }), fc.integer({ min: 2 ** k, max: 2 ** k + 40 }))),
    ),
    { maxLength: 6 },
  )
  .map((ps) => IntervalSet.fromIntervals(ps.map(([x, y]) => [Math.min(x, y), Math.max(x, y)])));
const v6SetArb = fc
  .array(
    fc.oneof(
      fc.tuple(v6Arb, v6Arb),
      fc.tuple(fc.bigInt({ min: 0n, max: 5000n }), fc.bigInt({ min: 0n, max: 5000n })),
      fc.tuple(fc.bigInt({ min: MAX_V6 - 5000n, max: MAX_V6 }), fc.bigInt({ min: MAX_V6 - 5000n, max: MAX_V6 })),
    ),
    { maxLength: 6 },
  )
  .map((ps) => BigIntervalSet.fromIntervals(ps.map(([x, y]) => (x < y ? [x, y] : [y, x]))));
const ipSetArb = fc.tuple(v4SetArb, v6SetArb).map(([a, c]) => IpSet.fromParts(a, c));

test('property: toPrefixes round-trips and is minimal', () => {
  fc.assert(
    fc.property(ipSetArb, (s) => {
      const ps = s.toPrefixes();
      assert.ok(IpSet.fromPrefixes(ps).equals(s), 'IpSet.fromPrefixes(ps).equals(s)');
      let prevHi: Addr | undefined;
      for (const p of ps) {
        assert.deepEqual(p, makePrefix(p.addr, p.len)); // masked
        const [lo, hi] = prefixRange(p);
        // sorted, disjoint, IPv4 first
        if (prevHi !== undefined && typeof prevHi === typeof lo) assert.ok(prevHi < lo, 'prevHi < lo');
        if (typeof prevHi === 'bigint') assert.equal(typeof lo, 'bigint');
        prevHi = hi;
        // maximal: the parent prefix is not inside the set, so no cover uses fewer prefixes
        if (p.len > 0) assert.ok(!IpSet.fromPrefixes([makePrefix(p.addr, p.len - 1)]).isSubset(s), formatPrefix(p));
      }
      const text = s.toString();
      assert.equal(text, s.isEmpty() ? 'none' : ps.map((p) => (p.len === (typeof p.addr === 'number' ? 32 : 128) ? formatAddr(p.addr) : formatPrefix(p))).join(', '));
    }),
    { numRuns: 300 },
  );
});

test('property: IpSet algebra per family', () => {
  fc.assert(
    fc.property(ipSetArb, ipSetArb, v4Arb, v6Arb, (a, c, x4, x6) => {
      const probes: Addr[] = [x4, x6, ...a.v4.bounds, ...c.v4.bounds, ...a.v6.bounds, ...c.v6.bounds];
      const u = a.union(c);
      const i = a.intersect(c);
      const d = a.subtract(c);
      const n = a.complement();
      for (const p of probes) {
        assert.equal(u.has(p), a.has(p) || c.has(p));
        assert.equal(i.has(p), a.has(p) && c.has(p));
        assert.equal(d.has(p), a.has(p) && !c.has(p));
        assert.equal(n.has(p), !a.has(p));
      }
      assert.ok(a.isSubset(u) && i.isSubset(a) && d.intersect(c).isEmpty(), 'a.isSubset(u) && i.isSubset(a) && d.intersect(c).isEmpty()');
      assert.equal(a.equals(c), a.toString() === c.toString());
      assert.equal(a.overlaps(c), !i.isEmpty());
    }),
    { numRuns: 300 },
  );
});
