/**
 * ConnSet: constructors, membership, the text form, and the algebra checked
 * at every boundary (membership is constant between boundaries, so probing
 * each boundary and its neighbours is exhaustive).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConnSet, PROTOCOLS, protocolName, protocolNumber, type ProtocolName } from '../../src/netset/connset.js';
import { IntervalSet } from '../../src/netset/interval.js';

const { icmp, tcp, udp, icmpv6, sctp } = PROTOCOLS;
const MAX_KEY = 256 * 65536 - 1;

test('ports, protocol and key', () => {
  const ssh = ConnSet.ports('tcp', 22, 22);
  assert.ok(ssh.has(tcp, 22), 'ssh.has(tcp, 22)');
  assert.ok(!ssh.has(tcp, 21) && !ssh.has(tcp, 23) && !ssh.has(udp, 22), '!ssh.has(tcp, 21) && !ssh.has(tcp, 23) && !ssh.has(udp, 22)');
  assert.equal(ConnSet.key(tcp, 22), 6 * 65536 + 22);
  assert.ok(ssh.hasKey(ConnSet.key(tcp, 22)) && !ssh.hasKey(ConnSet.key(tcp, 23)), 'ssh.hasKey(ConnSet.key(tcp, 22)) && !ssh.hasKey(ConnSet.key(tcp, 23))');
  const all = ConnSet.ports(udp, 0, 65535);
  assert.ok(all.equals(ConnSet.protocol('udp')), 'all.equals(ConnSet.protocol(\'udp\'))');
  assert.ok(all.has(udp, 0) && all.has(udp, 65535) && !all.has(tcp, 0), 'all.has(udp, 0) && all.has(udp, 65535) && !all.has(tcp, 0)');
  assert.ok(ConnSet.ports(sctp, 5, 4).isEmpty(), 'ConnSet.ports(sctp, 5, 4).isEmpty()');
  const gre = ConnSet.protocol(47);
  assert.ok(gre.has(47, 0) && gre.has(47, 65535) && !gre.has(46, 65535) && !gre.has(48, 0), 'gre.has(47, 0) && gre.has(47, 65535) && !gre.has(46, 65535) && !gre.has(48, 0)');
  assert.ok(ConnSet.protocol(0).has(0, 0) && ConnSet.protocol(255).has(255, 65535), 'ConnSet.protocol(0).has(0, 0) && ConnSet.protocol(255).has(255, 65535)');
  assert.equal(ConnSet.MAX_KEY, MAX_KEY);
});

test('ANY and EMPTY', () => {
  assert.ok(ConnSet.ANY.has(0, 0) && ConnSet.ANY.has(255, 65535) && ConnSet.ANY.has(47, 0), 'ConnSet.ANY.has(0, 0) && ConnSet.ANY.has(255, 65535) && ConnSet.ANY.has(47, 0)');
  assert.ok(!ConnSet.EMPTY.has(tcp, 80), '!ConnSet.EMPTY.has(tcp, 80)');
  assert.ok(ConnSet.ANY.complement().isEmpty(), 'ConnSet.ANY.complement().isEmpty()');
  assert.ok(ConnSet.EMPTY.complement().equals(ConnSet.ANY), 'ConnSet.EMPTY.complement().equals(ConnSet.ANY)');
  assert.ok(ConnSet.ANY.isAny() && !ConnSet.EMPTY.isAny(), 'ConnSet.ANY.isAny() && !ConnSet.EMPTY.isAny()');
  assert.deepEqual([...ConnSet.ANY.boundaries()], [0, MAX_KEY]);
  assert.deepEqual([...ConnSet.EMPTY.boundaries()], []);
  // out of range arguments are never members
  for (const [p, s] of [[-1, 0], [256, 0], [6, -1], [6, 65536], [6, 2 ** 32 + 22]]) assert.ok(!ConnSet.ANY.has(p, s), `${p}/${s}`);
});

test('icmp types and codes', () => {
  const echo = ConnSet.icmp('icmp', 8);
  assert.ok(echo.has(icmp, 8 * 256) && echo.has(icmp, 8 * 256 + 255), 'echo.has(icmp, 8 * 256) && echo.has(icmp, 8 * 256 + 255)');
  assert.ok(!echo.has(icmp, 7 * 256 + 255) && !echo.has(icmp, 9 * 256) && !echo.has(icmpv6, 8 * 256), '!echo.has(icmp, 7 * 256 + 255) && !echo.has(icmp, 9 * 256) && !echo.has(icmpv6, 8 * 256)');
  const unreachPort = ConnSet.icmp(icmp, 3, 3);
  assert.ok(unreachPort.has(icmp, 3 * 256 + 3) && !unreachPort.has(icmp, 3 * 256 + 4), 'unreachPort.has(icmp, 3 * 256 + 3) && !unreachPort.has(icmp, 3 * 256 + 4)');
  assert.ok(ConnSet.icmp(icmpv6).equals(ConnSet.protocol('icmpv6')), 'ConnSet.icmp(icmpv6).equals(ConnSet.protocol(\'icmpv6\'))');
  assert.ok(ConnSet.icmp(icmp, 255, 255).has(icmp, 65535), 'ConnSet.icmp(icmp, 255, 255).has(icmp, 65535)');
  assert.ok(ConnSet.icmp(icmp, 0, 0).has(icmp, 0), 'ConnSet.icmp(icmp, 0, 0).has(icmp, 0)');
});

test('invalid arguments throw', () => {
  assert.throws(() => ConnSet.ports('icmp', 1, 2), RangeError);
  assert.throws(() => ConnSet.ports(47, 1, 2), RangeError);
  assert.throws(() => ConnSet.ports(tcp, 0, 65536), RangeError);
  assert.throws(() => ConnSet.ports(tcp, -1, 5), RangeError);
  assert.throws(() => ConnSet.ports(tcp, 1.5, 5), RangeError);
  assert.throws(() => ConnSet.icmp('tcp'), RangeError);
  assert.throws(() => ConnSet.icmp(icmp, 256), RangeError);
  assert.throws(() => ConnSet.icmp(icmp, 3, 256), RangeError);
  assert.throws(() => ConnSet.icmp(icmp, undefined, 3), RangeError);
  assert.throws(() => ConnSet.protocol(256), RangeError);
  assert.throws(() => ConnSet.protocol('gre' as ProtocolName), RangeError);
  assert.equal(protocolNumber('sctp'), 132);
  assert.equal(protocolName(58), 'icmpv6');
  assert.equal(protocolName(47), undefined);
});

test('entries per protocol', () => {
  const s = ConnSet.ports(tcp, 22, 22)
    .union(ConnSet.ports(tcp, 8000, 8080))
    .union(ConnSet.protocol(udp))
    .union(ConnSet.icmp(icmp, 8))
    .union(ConnSet.protocol(47));
  assert.deepEqual(s.entries(), [
    { proto: icmp, ranges: [[8 * 256, 8 * 256 + 255]] },
    { proto: tcp, ranges: [[22, 22], [8000, 8080]] },
    { proto: udp, ranges: [[0, 65535]] },
    { proto: 47, ranges: [[0, 65535]] },
  ]);
  // a single key interval spanning several protocols splits per protocol
  const run = ConnSet.protocol(tcp).union(ConnSet.protocol(7)).union(ConnSet.protocol(8));
  assert.equal(run.keys.intervalCount(), 1);
  assert.deepEqual(run.entries(), [6, 7, 8].map((proto) => ({ proto, ranges: [[0, 65535]] })));
});

test('text form', () => {
  assert.equal(ConnSet.EMPTY.toString(), 'none');
  assert.equal(ConnSet.ANY.toString(), 'any');
  const s = ConnSet.ports(tcp, 22, 22).union(ConnSet.ports(tcp, 8000, 8080)).union(ConnSet.ports(udp, 53, 53)).union(ConnSet.icmp(icmp, 8));
  assert.equal(s.toString(), 'icmp type 8, tcp/22, tcp/8000-8080, udp/53');
  assert.equal(ConnSet.protocol(tcp).toString(), 'tcp');
  assert.equal(ConnSet.ports(tcp, 0, 0).union(ConnSet.ports(tcp, 65535, 65535)).toString(), 'tcp/0, tcp/65535');
  assert.equal(ConnSet.protocol(47).union(ConnSet.protocol(48)).union(ConnSet.protocol(50)).toString(), 'proto 47-48, proto 50');
  assert.equal(ConnSet.icmp(icmp, 3, 4).toString(), 'icmp type 3 code 4');
  assert.equal(ConnSet.icmp(icmpv6, 128).union(ConnSet.icmp(icmpv6, 129)).toString(), 'icmpv6 type 128-129');
  const span = ConnSet.ANY.intersect(ConnSet.icmp(icmp)).subtract(ConnSet.icmp(icmp, 0)).subtract(ConnSet.icmp(icmp, 3, 0)).subtract(ConnSet.icmp(icmp, 9)).subtract(ConnSet.icmp(icmp, 10)).subtract(ConnSet.icmp(icmp, 6, 255));
  // type 3 codes 1-255, types 1-2 and 4-5, type 6 codes 0-254, types 7-8, 11-255
  assert.equal(span.toString(), 'icmp type 1-2, icmp type 3 code 1-255, icmp type 4-5, icmp type 6 code 0-254, icmp type 7-8, icmp type 11-255');
  assert.equal(ConnSet.ANY.subtract(ConnSet.ports(tcp, 22, 22)).toString(), 'any except tcp/22');
  assert.equal(ConnSet.ANY.subtract(ConnSet.protocol(udp)).subtract(ConnSet.protocol(47)).toString(), 'any except udp, proto 47');
  assert.equal(ConnSet.protocol(sctp).union(ConnSet.protocol(133)).toString(), 'sctp, proto 133');
  // six items either way: the direct form wins ties
  const six = [...Array.from({ length: 17 }, (_, p) => p), 18].reduce((s, p) => s.union(ConnSet.protocol(p)), ConnSet.EMPTY);
  assert.equal(six.toString(), 'proto 0, icmp, proto 2-5, tcp, proto 7-16, proto 18');
  assert.equal(six.complement().toString(), 'udp, proto 19-57, icmpv6, proto 59-131, sctp, proto 133-255');
});

test('boundaries are the flat key bounds and frozen', () => {
  const s = ConnSet.ports(tcp, 80, 80).union(ConnSet.ports(tcp, 443, 443));
  const bnd = s.boundaries();
  assert.deepEqual([...bnd], [tcp * 65536 + 80, tcp * 65536 + 80, tcp * 65536 + 443, tcp * 65536 + 443]);
  assert.ok(Object.isFrozen(bnd), 'Object.isFrozen(bnd)');
  assert.equal(s.boundaries(), bnd);
  assert.deepEqual([...s.keys.bounds], [...bnd]);
});

// ------------------------------------------------------------ properties

/** Random primitive connection sets, over the named and a few unnamed protocols. */
const primArb: fc.Arbitrary<ConnSet> = fc.oneof(
  fc.tuple(fc.constantFrom(tcp, udp, sctp), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 300 })).map(([p, lo, w]) => ConnSet.ports(p, lo, Math.min(65535, lo + w))),
  fc.tuple(fc.constantFrom(tcp, udp), fc.constantFrom(0, 1, 65534, 65535)).map(([p, x]) => ConnSet.ports(p, x, x)),
  fc.constantFrom(0, 1, 2, 6, 17, 47, 58, 132, 254, 255).map((p) => ConnSet.protocol(p)),
  fc.tuple(fc.constantFrom(icmp, icmpv6), fc.option(fc.integer({ min: 0, max: 255 })), fc.option(fc.integer({ min: 0, max: 255 }))).map(([p, t, c]) =>
    t === null ? ConnSet.icmp(p) : ConnSet.icmp(p, t, c ?? undefined),
  ),
  fc.constant(ConnSet.ANY),
);
const connArb = fc.array(primArb, { maxLength: 5 }).map((xs) => xs.reduce((a, x) => a.union(x), ConnSet.EMPTY));
/** Either a union of primitives or a set with holes, such as ANY minus some primitives. */
const setArb = fc.oneof(connArb, fc.tuple(connArb, connArb).map(([a, c]) => ConnSet.ANY.subtract(a).union(c)));

/** Keys at and around every boundary of the sets: membership is constant in between. */
function probes(...sets: ConnSet[]): number[] {
  const out = new Set<number>([0, MAX_KEY]);
  for (const s of sets) {
    const b = s.boundaries();
    for (const x of b) for (const d of [-1, 0, 1]) if (x + d >= 0 && x + d <= MAX_KEY) out.add(x + d);
  }
  return [...out];
}

/** The protocol invariant: unnamed protocols are whole or absent. */
function assertInvariant(s: ConnSet): void {
  for (const e of s.entries()) {
    if (protocolName(e.proto) === undefined) assert.deepEqual(e.ranges, [[0, 65535]], `proto ${e.proto}`);
    else if (e.proto !== tcp && e.proto !== udp && e.proto !== sctp && e.proto !== icmp && e.proto !== icmpv6) assert.fail(`unexpected protocol ${e.proto}`);
  }
}

test('property: algebra agrees with membership at every boundary and keeps the invariant', () => {
  fc.assert(
    fc.property(setArb, setArb, (a, c) => {
      const u = a.union(c);
      const i = a.intersect(c);
      const d = a.subtract(c);
      const n = a.complement();
      for (const s of [a, c, u, i, d, n]) assertInvariant(s);
      for (const k of probes(a, c)) {
        const p = Math.floor(k / 65536);
        const sub = k % 65536;
        const x = a.has(p, sub);
        const y = c.has(p, sub);
        assert.equal(a.hasKey(k), x);
        assert.equal(u.has(p, sub), x || y);
        assert.equal(i.has(p, sub), x && y);
        assert.equal(d.has(p, sub), x && !y);
        assert.equal(n.has(p, sub), !x);
      }
      assert.equal(a.isSubset(c), a.subtract(c).isEmpty());
      assert.ok(a.isSubset(u) && i.isSubset(c) && d.intersect(c).isEmpty(), 'a.isSubset(u) && i.isSubset(c) && d.intersect(c).isEmpty()');
      assert.ok(u.equals(c.union(a)) && i.equals(c.intersect(a)), 'u.equals(c.union(a)) && i.equals(c.intersect(a))');
      assert.equal(a.overlaps(c), !i.isEmpty());
    }),
    { numRuns: 300 },
  );
});

test('property: entries reconstruct the set', () => {
  fc.assert(
    fc.property(setArb, (s) => {
      const pairs: [number, number][] = [];
      let prev = -1;
      for (const e of s.entries()) {
        assert.ok(e.proto > prev, 'ascending protocols');
        prev = e.proto;
        for (const [lo, hi] of e.ranges) {
          assert.ok(lo >= 0 && lo <= hi && hi <= 65535, 'lo >= 0 && lo <= hi && hi <= 65535');
          pairs.push([e.proto * 65536 + lo, e.proto * 65536 + hi]);
        }
      }
      assert.ok(IntervalSet.fromIntervals(pairs).equals(s.keys), 'IntervalSet.fromIntervals(pairs).equals(s.keys)');
    }),
    { numRuns: 300 },
  );
});

test('property: the text form is stable and tells sets apart', () => {
  fc.assert(
    fc.property(setArb, setArb, (a, c) => {
      const ta = a.toString();
      assert.equal(ta, a.union(ConnSet.EMPTY).toString());
      assert.equal(a.equals(c), ta === c.toString(), `${ta} vs ${c.toString()}`);
      assert.ok(!ta.includes('undefined') && !ta.includes('NaN'), '!ta.includes(\'undefined\') && !ta.includes(\'NaN\')');
    }),
    { numRuns: 300 },
  );
});
