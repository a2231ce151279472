/**
 * The reachability matrix between groups: label groups (`--by role,app,env`),
 * single workloads (`--by workload`), or any grouping of workloads and IP
 * atoms.
 *
 * The matrix is aggregated from {@link Connectivity} rows without visiting
 * every pair. Endpoints are split into *units* (an endpoint's workloads of
 * one group; an IP endpoint is one unit). A cell (G1, G2) is the union of
 * what passes from every unit of G1 to every unit of G2, over pairs of two
 * distinct workloads. For a source, every destination of a region that the
 * source's row does not name explicitly gets the same result, so per source
 * group the matrix keeps one result per region; a destination group's cell
 * is the union over the regions it touches (groups touching the same regions
 * share it), except for the few groups a source names explicitly, which get
 * their own cell. A region a source's explicit destinations cover wholly
 * within a group (every DNS server, say) does not count for that source.
 */
import type { Bits } from '../netset/bits.js';
import type { Workload } from '../model/types.js';
import type { Connectivity } from './connectivity.js';
import { atomLabel, type Places } from './places.js';
import { NONE } from './results.js';

/** How workloads and IP atoms fall into groups. */
export interface Grouping {
  /** What the grouping is, for reports: `role,app,env`, `workload`, `labels`. */
  readonly name: string;
  /** The group of a workload. */
  ofWorkload(w: Workload): string;
  /** The group of addresses that are no workload, from their atom's label (see {@link atomLabel}). */
  ofAtom(label: string): string;
}

/** The group name of addresses that are no workload. */
export function ipGroup(label: string): string {
  return `ip:${label}`;
}

/** Groups by the values of some label keys, such as `role=web,app=shop,env=prod` (keys without a value are left out). */
export function labelGrouping(keys: readonly string[]): Grouping {
  return {
    name: keys.join(','),
    ofWorkload: (w) => {
      const parts: string[] = [];
      for (const k of keys) if (Object.hasOwn(w.labels, k)) parts.push(`${k}=${w.labels[k]}`);
      return parts.length === 0 ? '(no labels)' : parts.join(',');
    },
    ofAtom: ipGroup,
  };
}

/** One group per workload, named by the workload. */
export const workloadGrouping: Grouping = { name: 'workload', ofWorkload: (w) => w.name, ofAtom: ipGroup };

/** The canonical text of a label set: `app=shop,env=prod,role=web`, keys sorted. */
export function labelSetText(labels: Readonly<Record<string, string>>): string {
  const keys = Object.keys(labels).sort();
  return keys.length === 0 ? '(no labels)' : keys.map((k) => `${k}=${labels[k]}`).join(',');
}

/**
 * Groups by the whole label set, and a workload in `named` by its name too
 * (`app=shop,env=prod,role=web#shop-prod-web-1`): the keys `diff` compares
 * two policies by.
 */
export function labelSetGrouping(named: ReadonlySet<string> = new Set()): Grouping {
  return {
    name: 'labels',
    ofWorkload: (w) => labelSetText(w.labels) + (named.has(w.name) ? `#${w.name}` : ''),
    ofAtom: ipGroup,
  };
}

/** Endpoints split by group: the units of a matrix. */
export interface Units {
  readonly groups: readonly string[];
  readonly groupIndex: ReadonlyMap<string, number>;
  readonly unitEp: Int32Array;
  readonly unitGroup: Int32Array;
  /** The tag each unit was split by (see {@link buildUnits}); 0 without a tag function. */
  readonly unitTag: Int32Array;
  /** The unit's workloads (empty for addresses that are no workload). */
  readonly unitMembers: readonly (readonly number[])[];
  /** Per endpoint: its units. */
  readonly epUnits: readonly (readonly number[])[];
  /** Per group: its units. */
  readonly groupUnits: readonly (readonly number[])[];
  /** Per workload: its units. */
  readonly workloadUnits: readonly (readonly number[])[];
}

/**
 * Splits the live endpoints of `places` into units by `grouping`, and further
 * by `tag` when given (called with the endpoint and each workload there, or
 * with no workload for addresses that are no workload): assertions tag which
 * workloads are in their `from` and `to`.
 */
export function buildUnits(places: Places, grouping: Grouping, tag?: (ep: number, w: number | undefined) => number): Units {
  const ir = places.ir;
  const groups: string[] = [];
  const groupIndex = new Map<string, number>();
  const gid = (name: string) => {
    let g = groupIndex.get(name);
    if (g === undefined) {
      g = groups.length;
      groupIndex.set(name, g);
      groups.push(name);
    }
    return g;
  };
  const wGroup = ir.workloads.map((w) => grouping.ofWorkload(w));
  const unitEp: number[] = [];
  const unitGroup: number[] = [];
  const unitTag: number[] = [];
  const unitMembers: number[][] = [];
  const epUnits: number[][] = ir.endpoints.map(() => []);
  const workloadUnits: number[][] = ir.workloads.map(() => []);
  const add = (ep: number, g: number, t: number, members: number[]) => {
    const u = unitEp.length;
    unitEp.push(ep);
    unitGroup.push(g);
    unitTag.push(t);
    unitMembers.push(members);
    epUnits[ep].push(u);
    for (const w of members) workloadUnits[w].push(u);
  };
  for (const e of ir.endpoints) {
    if (!places.live[e.id]) continue;
    if (e.cls < 0) {
      add(e.id, gid(grouping.ofAtom(atomLabel(places, e.atom))), tag ? tag(e.id, undefined) : 0, []);
      continue;
    }
    const byGroup = new Map<string, { g: number; t: number; members: number[] }>();
    for (const w of places.members[e.id]) {
      const g = gid(wGroup[w]);
      const t = tag ? tag(e.id, w) : 0;
      const key = `${g}:${t}`;
      let l = byGroup.get(key);
      if (!l) byGroup.set(key, (l = { g, t, members: [] }));
      l.members.push(w);
    }
    for (const { g, t, members } of byGroup.values()) add(e.id, g, t, members);
  }
  const groupUnits: number[][] = groups.map(() => []);
  unitGroup.forEach((g, u) => groupUnits[g].push(u));
  return { groups, groupIndex, unitEp: Int32Array.from(unitEp), unitGroup: Int32Array.from(unitGroup), unitTag: Int32Array.from(unitTag), unitMembers, epUnits, groupUnits, workloadUnits };
}

/** Whether two units hold two distinct workloads (or an end that is no workload), so a flow between them is real. */
export function realPair(units: Units, a: number, b: number): boolean {
  const ma = units.unitMembers[a];
  const mb = units.unitMembers[b];
  if (ma.length !== 1 || mb.length !== 1) return true;
  return ma[0] !== mb[0];
}

/** Which units a matrix considers, as sources and as destinations. */
export interface MatrixScope {
  /** Only workloads of these classes as sources (addresses that are no workload are left out). Default: every unit. */
  readonly fromClasses?: Bits;
  /** Only workloads of these classes as destinations. */
  readonly toClasses?: Bits;
  /** Only these units as sources (with `fromClasses`, both must hold). */
  readonly fromUnit?: (unit: number) => boolean;
  /** Only these units as destinations. */
  readonly toUnit?: (unit: number) => boolean;
}

/** One row of the matrix: the cells of one source group, compactly. */
interface MatrixRow {
  /** Per destination signature: the cell of every non-exceptional group with it. */
  readonly sigVal: Int32Array;
  /** Cells of the groups this row names explicitly. */
  readonly exceptions: Map<number, number>;
}

/** One non-empty cell. */
export interface Cell {
  readonly from: number;
  readonly to: number;
  /** A result id in the connectivity's result table. */
  readonly result: number;
}

/** The group-level reachability matrix. */
export class GroupMatrix {
  readonly conn: Connectivity;
  readonly units: Units;
  /** Group indexes in name order. */
  readonly order: readonly number[];
  /** Per group: whether it has source and destination units in scope. */
  readonly isSource: Uint8Array;
  readonly isTarget: Uint8Array;
  /** Per unit: whether it is a source, and a destination, in scope. */
  readonly activeSrc: Uint8Array;
  readonly activeDst: Uint8Array;
  private readonly sigOf: Int32Array;
  private readonly sigRegions: Int32Array[] = [];
  private readonly sigGroups: number[][] = [];
  private readonly rows: (MatrixRow | undefined)[];

  constructor(conn: Connectivity, units: Units, scope: MatrixScope = {}) {
    this.conn = conn;
    this.units = units;
    const ir = conn.ir;
    const nG = units.groups.length;
    const nR = conn.regionCount;
    const res = conn.results;
    const inScope = (u: number, classes: Bits | undefined) => {
      if (!classes) return true;
      const c = ir.endpointClass[units.unitEp[u]];
      return c >= 0 && classes.has(c);
    };
    const activeSrc = Uint8Array.from(units.unitEp, (_, u) => (inScope(u, scope.fromClasses) && (!scope.fromUnit || scope.fromUnit(u)) ? 1 : 0));
    const activeDst = Uint8Array.from(units.unitEp, (_, u) => (inScope(u, scope.toClasses) && (!scope.toUnit || scope.toUnit(u)) ? 1 : 0));
    this.activeSrc = activeSrc;
    this.activeDst = activeDst;
    this.isSource = new Uint8Array(nG);
    this.isTarget = new Uint8Array(nG);

    // Destination units per (region, group), and each group's signature: the regions it touches.
    const cntWG = new Map<number, number>();
    const regionsOfGroup: Set<number>[] = Array.from({ length: nG }, () => new Set());
    for (let u = 0; u < units.unitEp.length; u++) {
      if (activeSrc[u]) this.isSource[units.unitGroup[u]] = 1;
      if (!activeDst[u]) continue;
      const g = units.unitGroup[u];
      const w = conn.regionOf[units.unitEp[u]];
      this.isTarget[g] = 1;
      cntWG.set(w * nG + g, (cntWG.get(w * nG + g) ?? 0) + 1);
      regionsOfGroup[g].add(w);
    }
    this.sigOf = new Int32Array(nG).fill(-1);
    const sigByKey = new Map<string, number>();
    for (let g = 0; g < nG; g++) {
      if (regionsOfGroup[g].size === 0) continue;
      const regs = [...regionsOfGroup[g]].sort((a, b) => a - b);
      const key = regs.join(',');
      let s = sigByKey.get(key);
      if (s === undefined) {
        s = this.sigRegions.length;
        sigByKey.set(key, s);
        this.sigRegions.push(Int32Array.from(regs));
        this.sigGroups.push([]);
      }
      this.sigOf[g] = s;
      this.sigGroups[s].push(g);
    }

    this.rows = new Array(nG);
    for (let g1 = 0; g1 < nG; g1++) {
      const srcs = units.groupUnits[g1].filter((u) => activeSrc[u]);
      if (srcs.length === 0) continue;
      const regU = new Int32Array(nR);
      const explicit = new Map<number, number>();
      const shadowBy = new Map<number, Set<number>>();
      const doneRegions = new Map<object, Set<string>>();
      for (const s of srcs) {
        const ep = units.unitEp[s];
        const row = conn.row(ep);
        const p = conn.places;
        const flags = `${p.family[ep]}${p.managed[ep]}${p.enforcing[ep]}`;
        let seen = doneRegions.get(row);
        if (!seen) doneRegions.set(row, (seen = new Set()));
        if (!seen.has(flags)) {
          seen.add(flags);
          for (let w = 0; w < nR; w++) {
            const r = conn.regionResult(ep, w);
            if (r !== NONE) regU[w] = res.union(regU[w], r);
          }
        }
        // Explicit destinations, and this source's own workload elsewhere (not a flow).
        const counts = new Map<number, number>();
        const exp = row.expEps;
        for (let i = 0; i < exp.length; i++) {
          const d = exp[i];
          const w = conn.regionOf[d];
          if (w < 0) continue;
          const raw = row.expRes[i];
          for (const u of units.epUnits[d]) {
            if (!activeDst[u]) continue;
            const g2 = units.unitGroup[u];
            const r = realPair(units, s, u) ? conn.effective(ep, p.family[d], p.managed[d], p.enforcing[d], raw) : NONE;
            explicit.set(g2, res.union(explicit.get(g2) ?? NONE, r));
            counts.set(w * nG + g2, (counts.get(w * nG + g2) ?? 0) + 1);
          }
        }
        const own = units.unitMembers[s];
        if (own.length === 1) {
          for (const u of units.workloadUnits[own[0]]) {
            if (!activeDst[u] || units.unitMembers[u].length !== 1) continue;
            const d = units.unitEp[u];
            if (binaryHas(exp, d)) continue;
            const g2 = units.unitGroup[u];
            const key = conn.regionOf[d] * nG + g2;
            if (!explicit.has(g2)) explicit.set(g2, NONE);
            counts.set(key, (counts.get(key) ?? 0) + 1);
          }
        }
        for (const [key, n] of counts) {
          if (n !== cntWG.get(key)) continue;
          let set = shadowBy.get(key);
          if (!set) shadowBy.set(key, (set = new Set()));
          set.add(s);
        }
      }
      // A (region, group) some source covers explicitly: the union of the region results of the others.
      const exact = new Map<number, number>();
      for (const [key, by] of shadowBy) {
        const w = Math.floor(key / nG);
        let v = NONE;
        for (const s of srcs) if (!by.has(s)) v = res.union(v, conn.regionResult(units.unitEp[s], w));
        exact.set(key, v);
        const g2 = key % nG;
        if (!explicit.has(g2)) explicit.set(g2, NONE);
      }
      const exceptions = new Map<number, number>();
      for (const [g2, base] of explicit) {
        let v = base;
        const sig = this.sigOf[g2];
        if (sig >= 0) for (const w of this.sigRegions[sig]) v = res.union(v, exact.get(w * nG + g2) ?? regU[w]);
        exceptions.set(g2, v);
      }
      const sigVal = new Int32Array(this.sigRegions.length);
      for (let sg = 0; sg < sigVal.length; sg++) {
        let v = NONE;
        for (const w of this.sigRegions[sg]) v = res.union(v, regU[w]);
        sigVal[sg] = v;
      }
      this.rows[g1] = { sigVal, exceptions };
    }
    this.order = units.groups.map((_, i) => i).sort((a, b) => (units.groups[a] < units.groups[b] ? -1 : units.groups[a] > units.groups[b] ? 1 : 0));
  }

  /** The group names. */
  get groups(): readonly string[] {
    return this.units.groups;
  }

  /** The result id of one cell (NONE when nothing passes or the groups are out of scope). */
  cell(g1: number, g2: number): number {
    const row = this.rows[g1];
    if (!row) return NONE;
    const e = row.exceptions.get(g2);
    if (e !== undefined) return e;
    const s = this.sigOf[g2];
    return s < 0 ? NONE : row.sigVal[s];
  }

  /**
   * The destination signature of a group: groups with the same signature get
   * the same cell in every row, except where a row names them explicitly.
   * -1 when the group has no destination in scope.
   */
  signature(g2: number): number {
    return this.sigOf[g2];
  }

  /** The cell a row gives every group with signature `sig` that it does not name explicitly. */
  signatureCell(g1: number, sig: number): number {
    const row = this.rows[g1];
    return !row || sig < 0 ? NONE : row.sigVal[sig];
  }

  /** The groups a row names explicitly (their cells may differ from their signature's). */
  explicitTargets(g1: number): Iterable<number> {
    return this.rows[g1]?.exceptions.keys() ?? [];
  }

  /** The non-empty cells of one source group, destinations in name order. */
  *rowCells(g1: number): Generator<Cell> {
    const row = this.rows[g1];
    if (!row) return;
    const res = this.conn.results;
    for (const g2 of this.order) {
      const r = this.cell(g1, g2);
      if (res.passes(r)) yield { from: g1, to: g2, result: r };
    }
  }

  /** Every non-empty cell, sources then destinations in name order. */
  *cells(): Generator<Cell> {
    for (const g1 of this.order) yield* this.rowCells(g1);
  }

  /** The number of non-empty cells, counted without listing them. */
  countCells(): number {
    const res = this.conn.results;
    let n = 0;
    for (const row of this.rows) {
      if (!row) continue;
      for (let s = 0; s < row.sigVal.length; s++) if (res.passes(row.sigVal[s])) n += this.sigGroups[s].length;
      for (const [g2, v] of row.exceptions) {
        const s = this.sigOf[g2];
        if (s >= 0 && res.passes(row.sigVal[s])) n--;
        if (res.passes(v)) n++;
      }
    }
    return n;
  }

  /** Per group: how many workloads it has (0 for IP groups). */
  groupSizes(): number[] {
    const out = this.units.groups.map(() => new Set<number>());
    this.units.unitGroup.forEach((g, u) => {
      for (const w of this.units.unitMembers[u]) out[g].add(w);
    });
    return out.map((s) => s.size);
  }
}

/** Whether an ascending array holds x. */
export function binaryHas(a: Int32Array, x: number): boolean {
  let lo = 0;
  let hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] === x) return true;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}
