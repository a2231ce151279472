/**
 * How close a candidate policy's connectivity is to a ground truth's:
 * precision and recall over (client, server, connection) triples, where a
 * client or server is a workload or a representative address outside the
 * inventory (one per IP list, say).
 *
 * Workloads that neither policy tells apart (the same class in both IRs and
 * one address each) behave alike, so one representative pair per pair of
 * such bundles is decided and weighted by the bundle sizes; connections are
 * cut into segments on which no rule of either policy changes. The result
 * is exact for policies whose rules name workloads by selectors, IP lists
 * and CIDRs (the test checks it against a count over every pair).
 */
import type { Addr } from '../netset/ip.js';
import type { Ir } from '../policy/ir.js';
import { Evaluator } from '../engine/evaluate.js';

export interface Agreement {
  /** Triples both allow, only the candidate allows, only the truth allows. */
  readonly both: number;
  readonly candidateOnly: number;
  readonly truthOnly: number;
  readonly precision: number;
  readonly recall: number;
  /** Decisions made (representative pairs × segments × 2). */
  readonly decisions: number;
}

/** One connection segment: a protocol, a sub-range and its length. */
interface Segment {
  readonly proto: number;
  readonly port: number;
  readonly weight: number;
}

/** The connection segments on which no rule of either IR changes, among connections some rule names. */
function segments(irs: readonly Ir[]): Segment[] {
  const cuts = new Map<number, Set<number>>();
  const covered = new Map<number, [number, number][]>();
  for (const ir of irs)
    for (const r of ir.rules)
      for (const e of r.conns.entries()) {
        let c = cuts.get(e.proto);
        if (!c) cuts.set(e.proto, (c = new Set()));
        let cov = covered.get(e.proto);
        if (!cov) covered.set(e.proto, (cov = []));
        for (const [lo, hi] of e.ranges) {
          c.add(lo);
          c.add(hi + 1);
          cov.push([lo, hi]);
        }
      }
  const out: Segment[] = [];
  for (const [proto, c] of cuts) {
    const points = [...c].sort((a, b) => a - b);
    const cov = covered.get(proto)!;
    for (let i = 0; i + 1 < points.length; i++) {
      const lo = points[i];
      const hi = points[i + 1] - 1;
      if (cov.some(([a, b]) => a <= lo && hi <= b)) out.push({ proto, port: lo, weight: hi - lo + 1 });
    }
  }
  return out;
}

/**
 * Compares the connectivity of `candidate` with `truth` (two IRs over the
 * same inventory) among the workloads and the `outside` addresses.
 */
export function agreement(truth: Ir, candidate: Ir, outside: readonly Addr[] = []): Agreement {
  if (truth.workloads.length !== candidate.workloads.length) throw new Error('the two policies must share one inventory');
  // Bundles of workloads alike in both policies, with a representative address.
  const bundles = new Map<string, { addr: Addr; size: number }>();
  truth.workloads.forEach((w, i) => {
    if (w.addresses.length !== 1) throw new Error(`workload ${w.name} has ${w.addresses.length} addresses; the comparison needs one each`);
    const k = `${truth.classOf[i]},${candidate.classOf[i]}`;
    const b = bundles.get(k);
    if (b) b.size++;
    else bundles.set(k, { addr: w.addresses[0].addr, size: 1 });
  });
  const ends = [...bundles.values(), ...outside.map((addr) => ({ addr, size: 1, outside: true }))];
  const segs = segments([truth, candidate]);
  const t = new Evaluator(truth, { cacheBits: 0 });
  const c = new Evaluator(candidate, { cacheBits: 0 });
  let both = 0;
  let candidateOnly = 0;
  let truthOnly = 0;
  let decisions = 0;
  for (let i = 0; i < ends.length; i++) {
    for (let j = 0; j < ends.length; j++) {
      const a = ends[i];
      const b = ends[j];
      if ('outside' in a && 'outside' in b) continue;
      // Pairs of distinct workloads: a bundle with itself has size × (size − 1).
      const pairs = i === j ? a.size * (a.size - 1) : a.size * b.size;
      if (pairs === 0) continue;
      for (const s of segs) {
        const flow = { src: a.addr, dst: b.addr, proto: s.proto, port: s.port };
        const inT = t.decide(flow).verdict === 'allowed';
        const inC = c.decide(flow).verdict === 'allowed';
        decisions += 2;
        const w = pairs * s.weight;
        if (inT && inC) both += w;
        else if (inC) candidateOnly += w;
        else if (inT) truthOnly += w;
      }
    }
  }
  return {
    both,
    candidateOnly,
    truthOnly,
    precision: both + candidateOnly === 0 ? 1 : both / (both + candidateOnly),
    recall: both + truthOnly === 0 ? 1 : both / (both + truthOnly),
    decisions,
  };
}
