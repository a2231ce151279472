/**
 * Semantic diff: how connectivity changes between two policies, pair of
 * groups by pair of groups, with the rules behind each change.
 *
 * Classes, atoms and rule indexes differ between two IRs, so the two sides
 * meet on names: workloads are keyed by their whole label set (and by name
 * when either policy names the workload in a rule, since such a workload has
 * connectivity of its own), addresses that are no workload by the names of
 * the IP peers that contain them; or by a coarser grouping (`--by`). Each
 * side's group matrix is computed as for `reach`, then compared block by
 * block: destination groups with the same signature in both matrices are
 * compared once per source group, the few a row names explicitly one by one.
 */
import type { ConnSet } from '../netset/connset.js';
import type { Ir } from '../policy/ir.js';
import { Connectivity, type ConnectivityOptions } from './connectivity.js';
import { buildUnits, GroupMatrix, labelSetGrouping, type Grouping } from './matrix.js';
import { buildPlaces } from './places.js';
import type { Result } from './results.js';

/** One changed pair of groups. */
export interface DiffEntry {
  readonly kind: 'added' | 'removed' | 'changed';
  readonly from: string;
  readonly to: string;
  /** What passed before and passes after. */
  readonly before: ConnSet;
  readonly after: ConnSet;
  /** after − before, and before − after. */
  readonly added: ConnSet;
  readonly removed: ConnSet;
  /** Ids of the rules that allow it, before and after. */
  readonly rulesBefore: readonly string[];
  readonly rulesAfter: readonly string[];
  /** Ids of the deny rules that cut an allow rule's offer, before and after (why something is not there). */
  readonly deniesBefore: readonly string[];
  readonly deniesAfter: readonly string[];
}

/** The whole diff. */
export interface PolicyDiff {
  readonly grouping: string;
  readonly entries: readonly DiffEntry[];
  readonly added: number;
  readonly removed: number;
  readonly changed: number;
  /** Non-empty pairs on each side. */
  readonly pairsBefore: number;
  readonly pairsAfter: number;
}

/** Options of {@link diffPolicies}. */
export interface DiffOptions extends Pick<ConnectivityOptions, 'ports' | 'deployed'> {
  /** How to group; default: label sets, plus names for workloads a rule names. */
  readonly grouping?: Grouping;
}

/** The names of workloads some rule names (they have classes of their own). */
function namedWorkloads(ir: Ir): string[] {
  return ir.classes.flatMap((c) => (c.named ? [c.named] : []));
}

/** Compares the connectivity of two policies. */
export function diffPolicies(a: Ir, b: Ir, options: DiffOptions = {}): PolicyDiff {
  const grouping = options.grouping ?? labelSetGrouping(new Set([...namedWorkloads(a), ...namedWorkloads(b)]));
  const side = (ir: Ir) => {
    const places = buildPlaces(ir);
    const conn = new Connectivity(ir, { ports: options.ports, deployed: options.deployed, places });
    const units = buildUnits(places, grouping);
    return { ir, conn, units, m: new GroupMatrix(conn, units) };
  };
  const A = side(a);
  const B = side(b);
  const names = [...new Set([...A.units.groups, ...B.units.groups])].sort();
  const idx = (s: typeof A, name: string) => s.units.groupIndex.get(name) ?? -1;
  const ia = names.map((n) => idx(A, n));
  const ib = names.map((n) => idx(B, n));

  // Destinations by the pair of their signatures on both sides.
  const combos = new Map<string, { sa: number; sb: number; dests: number[] }>();
  names.forEach((_, d) => {
    const sa = ia[d] >= 0 ? A.m.signature(ia[d]) : -1;
    const sb = ib[d] >= 0 ? B.m.signature(ib[d]) : -1;
    const key = `${sa}:${sb}`;
    let c = combos.get(key);
    if (!c) combos.set(key, (c = { sa, sb, dests: [] }));
    c.dests.push(d);
  });
  const nameIdx = new Map(names.map((n, i) => [n, i]));

  const entries: DiffEntry[] = [];
  const ruleIds = (ir: Ir, list: readonly number[]) => list.map((k) => ir.rules[k].rule.id);
  const compare = (s: number, d: number, ra: Result, rb: Result) => {
    if (ra.conns.equals(rb.conns)) return;
    const added = rb.conns.subtract(ra.conns);
    const removed = ra.conns.subtract(rb.conns);
    entries.push({
      kind: ra.conns.isEmpty() ? 'added' : rb.conns.isEmpty() ? 'removed' : 'changed',
      from: names[s],
      to: names[d],
      before: ra.conns,
      after: rb.conns,
      added,
      removed,
      rulesBefore: ruleIds(a, ra.rules),
      rulesAfter: ruleIds(b, rb.rules),
      deniesBefore: ruleIds(a, ra.denies),
      deniesAfter: ruleIds(b, rb.denies),
    });
  };
  const cellA = (s: number, d: number) => A.conn.results.get(ia[s] >= 0 && ia[d] >= 0 ? A.m.cell(ia[s], ia[d]) : 0);
  const cellB = (s: number, d: number) => B.conn.results.get(ib[s] >= 0 && ib[d] >= 0 ? B.m.cell(ib[s], ib[d]) : 0);
  let pairsBefore = 0;
  let pairsAfter = 0;
  for (let s = 0; s < names.length; s++) {
    const special = new Set<number>();
    if (ia[s] >= 0) for (const g of A.m.explicitTargets(ia[s])) special.add(nameIdx.get(A.units.groups[g])!);
    if (ib[s] >= 0) for (const g of B.m.explicitTargets(ib[s])) special.add(nameIdx.get(B.units.groups[g])!);
    const before = entries.length;
    for (const c of combos.values()) {
      const ra = A.conn.results.get(ia[s] >= 0 ? A.m.signatureCell(ia[s], c.sa) : 0);
      const rb = B.conn.results.get(ib[s] >= 0 ? B.m.signatureCell(ib[s], c.sb) : 0);
      const plain = c.dests.filter((d) => !special.has(d));
      if (!ra.conns.isEmpty()) pairsBefore += plain.length;
      if (!rb.conns.isEmpty()) pairsAfter += plain.length;
      if (ra.conns.equals(rb.conns)) continue;
      for (const d of plain) compare(s, d, ra, rb);
    }
    for (const d of special) {
      const ra = cellA(s, d);
      const rb = cellB(s, d);
      if (!ra.conns.isEmpty()) pairsBefore++;
      if (!rb.conns.isEmpty()) pairsAfter++;
      compare(s, d, ra, rb);
    }
    // Destinations in name order within the row.
    const row = entries.splice(before).sort((x, y) => (x.to < y.to ? -1 : x.to > y.to ? 1 : 0));
    for (const e of row) entries.push(e);
  }
  return {
    grouping: grouping.name,
    entries,
    added: entries.filter((e) => e.kind === 'added').length,
    removed: entries.filter((e) => e.kind === 'removed').length,
    changed: entries.filter((e) => e.kind === 'changed').length,
    pairsBefore,
    pairsAfter,
  };
}
