/**
 * The reference reachability computation: every ordered pair of workloads,
 * read straight off the policy model, with no IR, no classes, no atoms, no
 * regions. For each pair of addresses (of one family) it collects the rules
 * matching by their peers, cuts the connection space at every boundary of
 * those rules' services, and decides each piece as docs/POLICY.md says
 * (first override, any deny, any allow, default deny). Slow on purpose:
 * quadratic in workloads, linear in rules. The fast analysis must agree with
 * it on every pair (test/analysis, bench/reach.bench.ts).
 */
import { ConnSet } from '../netset/connset.js';
import { IntervalSet } from '../netset/interval.js';
import { prefixRange, type Addr } from '../netset/ip.js';
import type { Mode, Peer, Policy, Rule, Workload } from '../model/types.js';
import { NaiveEvaluator } from '../engine/naive.js';

/** Options of the reference computation; the same meaning as in {@link ConnectivityOptions}. */
export interface NaiveReachOptions {
  readonly ports?: ConnSet;
  readonly deployed?: boolean;
}

/** What passes between two workloads, by the reference computation. */
export interface NaivePair {
  readonly conns: ConnSet;
  /** Ids of the rules that allow some of it, sorted. */
  readonly rules: readonly string[];
  /** Set when some of it passes only because no end enforces. */
  readonly open: boolean;
}

/** Every ordered pair of distinct workloads; `pair(i, j)` for workload indexes. */
export interface NaiveReach {
  readonly workloads: readonly Workload[];
  pair(i: number, j: number): NaivePair;
}

const NOTHING: NaivePair = { conns: ConnSet.EMPTY, rules: [], open: false };

/** The addresses of a workload that stand for all of its addresses: one per piece left after cutting at every IP set and workload prefix. */
function pointsOf(w: Workload, cuts4: number[], cuts6: bigint[], owner: (a: Addr) => Workload | undefined): Addr[] {
  const out: Addr[] = [];
  for (const p of w.addresses) {
    const [lo, hi] = prefixRange(p);
    const cand: Addr[] = [lo];
    if (typeof lo === 'number') for (const c of cuts4) if (c > lo && c <= (hi as number)) cand.push(c);
    if (typeof lo === 'bigint') for (const c of cuts6) if (c > lo && c <= (hi as bigint)) cand.push(c);
    for (const a of cand) if (owner(a) === w) out.push(a);
  }
  return out;
}

/** Computes every pair. Quadratic; for estates of a few thousand workloads. */
export function naiveReach(policy: Policy, options: NaiveReachOptions = {}): NaiveReach {
  const ports = options.ports ?? ConnSet.ANY;
  const rules = policy.rules;
  const ws = policy.workloads;
  const oracle = new NaiveEvaluator(policy);

  const cuts4: number[] = [];
  const cuts6: bigint[] = [];
  const cutAt = (lo: Addr, hi: Addr) => {
    if (typeof lo === 'number') cuts4.push(lo, (hi as number) + 1);
    else cuts6.push(lo, (hi as bigint) + 1n);
  };
  for (const r of rules) for (const p of [...r.from, ...r.to]) if (p.kind === 'ips') for (const [lo, hi] of [...p.set.v4.intervals(), ...p.set.v6.intervals()]) cutAt(lo, hi);
  for (const w of ws) {
    for (const p of w.addresses) {
      const [lo, hi] = prefixRange(p);
      cutAt(lo, hi);
    }
  }

  const points: { addr: Addr; w: number }[] = [];
  const pointsOfW: number[][] = ws.map((w, i) =>
    pointsOf(w, cuts4, cuts6, (a) => oracle.workloadAt(a)).map((addr) => {
      points.push({ addr, w: i });
      return points.length - 1;
    }),
  );

  const inPeer = (peer: Peer, rule: Rule, a: Addr, w: Workload): boolean => {
    switch (peer.kind) {
      case 'any':
        return true;
      case 'ips':
        return peer.set.has(a);
      case 'workload':
        return w.name === peer.name;
      case 'selector':
        return peer.selector.matches(w.labels) && (peer.global || rule.scope.matches(w.labels));
    }
  };
  const conns = rules.map((r) => r.conns.intersect(ports));
  const fromBits = rules.map((r) => Uint8Array.from(points, (pt) => (r.from.some((p) => inPeer(p, r, pt.addr, ws[pt.w])) ? 1 : 0)));
  const toBits = rules.map((r) => Uint8Array.from(points, (pt) => (r.to.some((p) => inPeer(p, r, pt.addr, ws[pt.w])) ? 1 : 0)));

  const modeOf = ws.map((w): Mode | undefined => (w.managed ? (w.mode ?? policy.modes.find((m) => m.scope.matches(w.labels))?.mode ?? policy.defaultMode) : undefined));

  // One end's decision over the whole connection space, piece by piece.
  const memo = new Map<string, NaivePair>();
  const decide = (matched: number[]): NaivePair => {
    const key = matched.join(',');
    const known = memo.get(key);
    if (known) return known;
    const cuts = new Set<number>([0]);
    for (const r of matched) {
      for (const [lo, hi] of conns[r].keys.intervals()) {
        cuts.add(lo);
        cuts.add(hi + 1);
      }
    }
    const starts = [...cuts].filter((c) => c <= ConnSet.MAX_KEY).sort((a, b) => a - b);
    const allowed: [number, number][] = [];
    const why = new Set<string>();
    starts.forEach((lo, i) => {
      const hi = i + 1 < starts.length ? starts[i + 1] - 1 : ConnSet.MAX_KEY;
      const has = (r: number) => conns[r].hasKey(lo);
      const ov = matched.find((r) => rules[r].tier === 'override' && has(r));
      let by: number[] = [];
      if (ov !== undefined) by = rules[ov].action === 'allow' ? [ov] : [];
      else if (!matched.some((r) => rules[r].tier === 'deny' && has(r))) by = matched.filter((r) => rules[r].tier === 'allow' && has(r));
      if (by.length > 0) {
        allowed.push([lo, hi]);
        for (const r of by) why.add(rules[r].id);
      }
    });
    const keys = IntervalSet.fromIntervals(allowed);
    let c = ConnSet.EMPTY;
    for (const [lo, hi] of keys.intervals()) c = c.union(rangeConns(lo, hi));
    const out = { conns: c, rules: [...why].sort(), open: false };
    memo.set(key, out);
    return out;
  };

  const openPair: NaivePair = { conns: ports, rules: [], open: true };
  const union = (a: NaivePair, b: NaivePair): NaivePair => {
    if (b === NOTHING) return a;
    if (a === NOTHING) return b;
    return { conns: a.conns.union(b.conns), rules: [...new Set([...a.rules, ...b.rules])].sort(), open: a.open || b.open };
  };
  const constrains = (w: number) => (options.deployed ? modeOf[w] === 'enforce' : ws[w].managed);

  const cache = new Map<number, NaivePair>();
  const matched: number[] = [];
  return {
    workloads: ws,
    pair(i: number, j: number): NaivePair {
      if (i === j) return NOTHING;
      const ck = i * ws.length + j;
      const known = cache.get(ck);
      if (known) return known;
      let out = NOTHING;
      if (ws[i].managed || ws[j].managed) {
        for (const pi of pointsOfW[i]) {
          for (const pj of pointsOfW[j]) {
            if (typeof points[pi].addr !== typeof points[pj].addr) continue;
            matched.length = 0;
            for (let r = 0; r < rules.length; r++) if (fromBits[r][pi] && toBits[r][pj]) matched.push(r);
            out = union(out, decide(matched));
            // No end enforces: everything passes (the rules still say what they would allow).
            if (!constrains(i) && !constrains(j)) out = union(out, openPair);
          }
        }
      }
      if (ws.length <= 1024) cache.set(ck, out);
      return out;
    },
  };
}

/** The connections of keys lo..hi, as a connection set. */
function rangeConns(lo: number, hi: number): ConnSet {
  // Build from whole protocols and port ranges so the set is canonical.
  let c = ConnSet.EMPTY;
  let a = lo;
  while (a <= hi) {
    const proto = Math.floor(a / 65536);
    const end = Math.min(hi, proto * 65536 + 65535);
    const sub0 = a - proto * 65536;
    const sub1 = end - proto * 65536;
    c = c.union(sub0 === 0 && sub1 === 65535 ? ConnSet.protocol(proto) : proto === 1 || proto === 58 ? icmpRange(proto, sub0, sub1) : ConnSet.ports(proto, sub0, sub1));
    a = end + 1;
  }
  return c;
}

/** ICMP keys of one protocol, sub0..sub1 (type * 256 + code), as a connection set. */
function icmpRange(proto: number, sub0: number, sub1: number): ConnSet {
  let c = ConnSet.EMPTY;
  for (let t = sub0 >>> 8; t <= sub1 >>> 8; t++) {
    const c0 = t === sub0 >>> 8 ? sub0 & 255 : 0;
    const c1 = t === sub1 >>> 8 ? sub1 & 255 : 255;
    if (c0 === 0 && c1 === 255) c = c.union(ConnSet.icmp(proto, t));
    else for (let k = c0; k <= c1; k++) c = c.union(ConnSet.icmp(proto, t, k));
  }
  return c;
}

/** The reference blast radius: a breadth-first search over workloads, one pair at a time. Per workload: hops, or -1 (start workloads: -1). */
export function naiveBlast(reach: NaiveReach, start: readonly number[]): Int32Array {
  const n = reach.workloads.length;
  const hops = new Int32Array(n).fill(-1);
  const held = new Uint8Array(n);
  let frontier = [...start];
  for (const w of start) held[w] = 1;
  for (let depth = 1; frontier.length > 0; depth++) {
    const next: number[] = [];
    for (const a of frontier) {
      for (let b = 0; b < n; b++) {
        if (held[b] || reach.pair(a, b).conns.isEmpty()) continue;
        held[b] = 1;
        hops[b] = depth;
        next.push(b);
      }
    }
    frontier = next;
  }
  return hops;
}
