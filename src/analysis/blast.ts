/**
 * Blast radius: what an attacker holding some workloads reaches, directly and
 * by lateral movement over allowed flows, and the shortest path to every
 * sensitive workload, with the connections each hop uses.
 *
 * A breadth-first search over endpoints, on {@link Connectivity} rows: a
 * source's explicit destinations one by one, and each region it reaches as a
 * whole (a region's still unvisited endpoints are kept per region, so each
 * endpoint is visited once however many sources reach its region). An
 * endpoint reached is held (every workload there is compromised) and
 * searched from in turn; addresses that are no workload (the internet, a
 * partner network) are reported as reached but not searched from. Workloads
 * are then read off the endpoints: a workload's distance is its nearest
 * endpoint's.
 */
import { ConnSet, PROTOCOLS } from '../netset/connset.js';
import type { Selector } from '../model/selector.js';
import type { Connectivity } from './connectivity.js';
import { atomLabel, placeOf, type Place } from './places.js';

/** The connections lateral movement uses by default: everything but ICMP, which gives no foothold. */
export const LATERAL_DEFAULT: ConnSet = ConnSet.ANY.subtract(ConnSet.protocol(PROTOCOLS.icmp)).subtract(ConnSet.protocol(PROTOCOLS.icmpv6));

/** The default sensitivity selector source. */
export const SENSITIVE_DEFAULT = 'has(compliance) || has(crown-jewel)';

/** One hop of a path. */
export interface Hop {
  readonly from: Place;
  readonly to: Place;
  /** What passes on this hop (within the analysis's port filter). */
  readonly conns: ConnSet;
  /** Ids of the rules that allow it. */
  readonly rules: readonly string[];
}

/** A sensitive workload the attacker reaches. */
export interface SensitiveHit {
  readonly workload: number;
  /** Index of the first `--sensitive` selector it matches (0 is the most sensitive). */
  readonly rank: number;
  readonly hops: number;
}

/** Addresses that are no workload, reached. */
export interface ExternalHit {
  readonly label: string;
  readonly hops: number;
  readonly path: readonly Hop[];
}

/** What a blast-radius search found. */
export interface BlastResult {
  /** The workloads the attacker starts on. */
  readonly start: readonly number[];
  /** Per workload: hops to reach it, or -1 (the start workloads are -1). */
  readonly hops: Int32Array;
  /** Number of workloads reached (start workloads excluded). */
  readonly reached: number;
  /** Reached workloads per hop count: index 1 is direct. */
  readonly perHop: readonly number[];
  /** Sensitive workloads reached, most sensitive first, then nearest, then by name. */
  readonly sensitive: readonly SensitiveHit[];
  /** Sensitive workloads in the estate (excluding the start). */
  readonly sensitiveTotal: number;
  /** IP destinations reached, nearest first. */
  readonly external: readonly ExternalHit[];
  /** The shortest path to a reached workload (built on demand: paths to thousands of workloads are long to list). */
  pathTo(workload: number): Hop[];
}

/** Options of a blast-radius search. */
export interface BlastOptions {
  /** Sensitivity selectors, most sensitive first. */
  readonly sensitive: readonly Selector[];
  /** Stop after this many hops (default: no limit). */
  readonly maxHops?: number;
}

/** Runs the search from the given workloads (indexes into `ir.workloads`). */
export function blastRadius(conn: Connectivity, start: readonly number[], options: BlastOptions): BlastResult {
  const ir = conn.ir;
  const p = conn.places;
  const ne = ir.endpoints.length;
  const res = conn.results;
  const maxHops = options.maxHops ?? Infinity;
  const isStartW = new Uint8Array(ir.workloads.length);
  for (const w of start) isStartW[w] = 1;
  const isStart = new Uint8Array(ne);
  const queue: number[] = [];
  for (const w of start) {
    for (const s of p.seats[w]) {
      if (!isStart[s.endpoint]) queue.push(s.endpoint);
      isStart[s.endpoint] = 1;
    }
  }
  const dist = new Int32Array(ne).fill(-1);
  const parent = new Int32Array(ne).fill(-1);
  const hopRes = new Int32Array(ne);
  const expanded = new Uint8Array(ne);
  const rem: (Int32Array | undefined)[] = new Array(conn.regionCount);
  const stamp = new Int32Array(ne).fill(-1);
  // Start endpoints are searched from at depth 0 (they are first in the queue), whether or not a flow also reaches them.
  const depthOf = (e: number) => (isStart[e] ? 0 : dist[e]);

  const visit = (from: number, d: number, r: number) => {
    if (dist[d] >= 0) return;
    dist[d] = depthOf(from) + 1;
    parent[d] = from;
    hopRes[d] = r;
    if (ir.endpointClass[d] >= 0 && !expanded[d] && dist[d] < maxHops) queue.push(d);
  };
  // Expanding a source asks only for what is still unvisited: its explicit destinations not yet visited, and the regions with endpoints left.
  const unvisited = (d: number) => dist[d] < 0 && p.live[d] === 1;
  for (let qi = 0; qi < queue.length; qi++) {
    const s = queue[qi];
    if (expanded[s]) continue;
    expanded[s] = 1;
    conn.explicitOf(s, unvisited, (d, raw) => {
      stamp[d] = s;
      const r = conn.effective(s, p.family[d], p.managed[d], conn.deployed ? p.enforcing[d] : 0, raw);
      if (res.passes(r)) visit(s, d, r);
    });
    for (let w = 0; w < conn.regionCount; w++) {
      const list = rem[w] ?? conn.regionEps[w];
      if (list.length === 0) continue;
      const r = conn.effective(s, conn.regionFamily[w], conn.regionManaged[w], conn.regionEnforcing[w], conn.regionRaw(s, w));
      if (!res.passes(r)) continue;
      const kept: number[] = [];
      for (let i = 0; i < list.length; i++) {
        const d = list[i];
        if (dist[d] >= 0) continue;
        if (stamp[d] === s) kept.push(d);
        else visit(s, d, r);
      }
      rem[w] = Int32Array.from(kept);
    }
  }

  // Workloads, from endpoints.
  const hops = new Int32Array(ir.workloads.length).fill(-1);
  const via = new Int32Array(ir.workloads.length).fill(-1);
  for (let e = 0; e < ne; e++) {
    if (dist[e] < 0) continue;
    for (const w of p.members[e]) {
      if (isStartW[w]) continue;
      if (hops[w] < 0 || dist[e] < hops[w]) {
        hops[w] = dist[e];
        via[w] = e;
      }
    }
  }
  const perHop: number[] = [0];
  let reached = 0;
  for (let w = 0; w < hops.length; w++) {
    if (hops[w] < 0) continue;
    reached++;
    while (perHop.length <= hops[w]) perHop.push(0);
    perHop[hops[w]]++;
  }

  const rep = (e: number): number | undefined => {
    const m = p.members[e];
    return m.find((w) => !isStartW[w]) ?? m[0];
  };
  const place = (e: number, w: number | undefined): Place => placeOf(p, e, w);
  const chain = (target: number, targetW: number | undefined): Hop[] => {
    const nodes: { e: number; w: number | undefined }[] = [{ e: target, w: targetW }];
    let cur = parent[target];
    for (let guard = 0; guard <= ne; guard++) {
      if (isStart[cur]) {
        nodes.push({ e: cur, w: p.members[cur].find((w) => isStartW[w]) });
        break;
      }
      nodes.push({ e: cur, w: rep(cur) });
      cur = parent[cur];
    }
    nodes.reverse();
    const out: Hop[] = [];
    for (let i = 1; i < nodes.length; i++) {
      const r = res.get(hopRes[nodes[i].e]);
      out.push({ from: place(nodes[i - 1].e, nodes[i - 1].w), to: place(nodes[i].e, nodes[i].w), conns: r.conns, rules: r.rules.map((k) => ir.rules[k].rule.id) });
    }
    return out;
  };
  const pathTo = (w: number): Hop[] => (via[w] < 0 ? [] : chain(via[w], w));

  // Sensitive workloads: the first selector each matches.
  const rankOfClass = new Int32Array(ir.classes.length).fill(-1);
  options.sensitive.forEach((sel, i) => {
    for (const c of ir.selectClasses(sel).indices()) if (rankOfClass[c] < 0) rankOfClass[c] = i;
  });
  const sensitive: SensitiveHit[] = [];
  let sensitiveTotal = 0;
  for (let w = 0; w < hops.length; w++) {
    const rank = rankOfClass[ir.classOf[w]];
    if (rank < 0 || isStartW[w]) continue;
    sensitiveTotal++;
    if (hops[w] >= 0) sensitive.push({ workload: w, rank, hops: hops[w] });
  }
  const name = (w: number) => ir.workloads[w].name;
  sensitive.sort((a, b) => a.rank - b.rank || a.hops - b.hops || (name(a.workload) < name(b.workload) ? -1 : 1));

  const external = new Map<string, ExternalHit>();
  for (let e = 0; e < ne; e++) {
    if (dist[e] < 0 || ir.endpointClass[e] >= 0) continue;
    const label = atomLabel(p, ir.endpointAtom[e]);
    const known = external.get(label);
    if (!known || dist[e] < known.hops) external.set(label, { label, hops: dist[e], path: chain(e, undefined) });
  }
  return {
    start,
    hops,
    reached,
    perHop,
    sensitive,
    sensitiveTotal,
    external: [...external.values()].sort((a, b) => a.hops - b.hops || (a.label < b.label ? -1 : 1)),
    pathTo,
  };
}

/** How the radius changed between two policies, by counts. */
export interface BlastComparison {
  readonly before: { readonly reached: number; readonly sensitive: number; readonly external: number };
  readonly after: { readonly reached: number; readonly sensitive: number; readonly external: number };
  /** Sensitive workloads reachable before and not after, and the other way, by name. */
  readonly sensitiveGone: readonly string[];
  readonly sensitiveNew: readonly string[];
}

/** Compares two blast radii (of the same start, under two policies). */
export function compareBlast(a: BlastResult, aNames: readonly string[], b: BlastResult, bNames: readonly string[]): BlastComparison {
  const sa = new Set(a.sensitive.map((h) => aNames[h.workload]));
  const sb = new Set(b.sensitive.map((h) => bNames[h.workload]));
  return {
    before: { reached: a.reached, sensitive: a.sensitive.length, external: a.external.length },
    after: { reached: b.reached, sensitive: b.sensitive.length, external: b.external.length },
    sensitiveGone: [...sa].filter((n) => !sb.has(n)).sort(),
    sensitiveNew: [...sb].filter((n) => !sa.has(n)).sort(),
  };
}
