/**
 * Connectivity between endpoints, computed from the rules rather than from
 * all pairs.
 *
 * Between a source endpoint s and a destination endpoint d, the rules that
 * match are M(s, d) = the rules with s in `from` and d in `to`; both ends read
 * the same rules (docs/POLICY.md), so one tier evaluation over connection
 * sets gives what each managed end allows: the first matching override per
 * connection, then any deny, then any allow, else the default deny
 * ({@link tierResult}). The pair passes those connections when every managed
 * end applies that decision ("as enforced"); with `deployed`, ends that do
 * not enforce (test, idle, visibility) let everything through. Pairs with no
 * managed end are outside the policy and never pass here.
 *
 * Scale: a source's rules R(s) (those with s in `from`) are few, and so are
 * the distinct R(s). The destinations of one source are split in two:
 * - *narrow* rules (a `to` side with few endpoints) are expanded: each
 *   destination they name gets M(s, d) explicitly;
 * - *wide* rules (`all()`, environment denies, ring-fences, `any`) are not:
 *   the endpoints are cut once, globally, into *regions* with the same
 *   membership in every wide `to` side (and the same family, managed and
 *   enforcing flags), and a source's verdict is computed once per region.
 * A row (per distinct R(s)) is then the explicit destinations and one result
 * per region; every destination outside the explicit ones takes its region's
 * result. Rows are built lazily and shared by every source with the same R(s).
 */
import { ConnSet } from '../netset/connset.js';
import type { Bits } from '../netset/bits.js';
import type { Ir } from '../policy/ir.js';
import { buildPlaces, type Places } from './places.js';
import { mergeAsc, NONE, ResultTable } from './results.js';

/** How connectivity is computed. */
export interface ConnectivityOptions {
  /** Only these connections count (a port filter; default every connection). Rules are cut down to it first. */
  readonly ports?: ConnSet;
  /** Count modes as deployed: an end that does not enforce (test, idle, visibility) lets everything through. Default: as enforced. */
  readonly deployed?: boolean;
  /** Share the places of an IR between several analyses. */
  readonly places?: Places;
  /** `to` sides with more endpoints than this are handled by regions (default 64). */
  readonly wideMin?: number;
}

/** One distinct rule side, by its class and atom bits. */
interface Side {
  readonly classes: Bits;
  readonly atoms: Bits;
  /** Its endpoints (live only), materialized for narrow sides. */
  eps?: Int32Array;
  /** Index among the wide sides, or -1. */
  wide: number;
}

/** One distinct source rule list R(s), with what is known of it so far. */
interface RuleList {
  readonly rules: Int32Array;
  readonly key: string;
  /** Its wide rules and their wide side indexes. */
  wide?: { rules: number[]; idx: number[] };
  /** Raw result per region; -1 until computed. */
  readonly regions: Int32Array;
  complete?: boolean;
}

/** The connectivity of all sources with one rule list R(s). */
export interface Row {
  /** R(s): the active rules with the source in `from`, ascending. */
  readonly rules: Int32Array;
  /** Per region: the raw result (before the ends' flags are applied). */
  readonly regions: Int32Array;
  /** Destinations with their own result, ascending endpoint ids. */
  readonly expEps: Int32Array;
  readonly expRes: Int32Array;
}

/** Connectivity of one IR under one port filter and mode. */
export class Connectivity {
  readonly ir: Ir;
  readonly places: Places;
  readonly results = new ResultTable();
  readonly ports: ConnSet;
  readonly deployed: boolean;
  /** Per rule: its connections cut to the port filter, or null when nothing is left (the rule is inactive). */
  readonly ruleConns: readonly (ConnSet | null)[];
  /** The result for a pair where no end enforces (`deployed` only): every connection of the filter, open. */
  readonly openResult: number;

  /** Per endpoint: its region, or -1 when not live. */
  readonly regionOf: Int32Array;
  /** Per region: its endpoints, ascending. */
  readonly regionEps: readonly Int32Array[];
  /** Per region: family, managed and enforcing flags of its endpoints. */
  readonly regionFamily: Uint8Array;
  readonly regionManaged: Uint8Array;
  readonly regionEnforcing: Uint8Array;

  private readonly fromByClass: (number[] | undefined)[];
  private readonly fromByAtom: (number[] | undefined)[];
  private readonly toSide: Int32Array;
  private readonly sides: Side[] = [];
  /** Live endpoints per class and per atom. */
  private readonly byClass: number[][];
  private readonly byAtom: number[][];
  private readonly wideCount: number;
  /** Per region and wide side: membership, flat (region * wideCount + side). */
  private readonly regionWide: Uint8Array;
  /** Tier results by a hash of the rule list; each bucket holds [list, result] pairs. */
  private readonly tierMemo = new Map<number, { list: Int32Array; id: number }[]>();
  /** Scratch for rule lists being looked up. */
  private scratch = new Int32Array(256);
  private readonly rowByKey = new Map<string, number>();
  private readonly rowList: Row[] = [];
  private readonly rowOfEp: Int32Array;
  private readonly keyOfEp: (RuleList | undefined)[];
  private readonly listByKey = new Map<string, RuleList>();
  /** Scratch for building rows: per endpoint, the stamp of the row being built and the head of its narrow rule list in the pool. */
  private readonly stamp: Int32Array;
  private readonly head: Int32Array;
  private poolRule = new Int32Array(1024);
  private poolNext = new Int32Array(1024);
  private stampNow = 0;

  constructor(ir: Ir, options: ConnectivityOptions = {}) {
    this.ir = ir;
    this.places = options.places ?? buildPlaces(ir);
    this.ports = options.ports ?? ConnSet.ANY;
    this.deployed = options.deployed === true;
    const wideMin = options.wideMin ?? 64;
    const p = this.places;
    const ne = ir.endpoints.length;
    this.openResult = this.results.intern(this.ports, [], [], true);

    this.ruleConns = ir.rules.map((r) => {
      const c = this.ports.isAny() ? r.conns : r.conns.intersect(this.ports);
      return c.isEmpty() ? null : c;
    });

    // Endpoints per class and per atom (live ones).
    const byClass: number[][] = ir.classes.map(() => []);
    const byAtom: number[][] = ir.atoms.map(() => []);
    for (const e of ir.endpoints) {
      if (!p.live[e.id]) continue;
      if (e.cls >= 0) byClass[e.cls].push(e.id);
      byAtom[e.atom].push(e.id);
    }

    // Which active rules each class and atom is a source of.
    this.fromByClass = new Array(ir.classes.length);
    this.fromByAtom = new Array(ir.atoms.length);
    this.toSide = new Int32Array(ir.rules.length).fill(-1);
    const sideByKey = new Map<Bits, Map<string, number>>();
    // Rules share side objects (the IR resolves each distinct side once): list each side's classes once.
    const indicesOf = new Map<Bits, number[]>();
    const indices = (b: Bits) => {
      let l = indicesOf.get(b);
      if (!l) indicesOf.set(b, (l = b.indices()));
      return l;
    };
    for (const r of ir.rules) {
      if (!this.ruleConns[r.index]) continue;
      for (const c of indices(r.from.classes)) (this.fromByClass[c] ??= []).push(r.index);
      if (!r.from.atoms.isEmpty()) for (const a of r.from.atoms.indices()) (this.fromByAtom[a] ??= []).push(r.index);
      let m = sideByKey.get(r.to.classes);
      if (!m) sideByKey.set(r.to.classes, (m = new Map()));
      const ak = r.to.atoms.toString();
      let s = m.get(ak);
      if (s === undefined) {
        s = this.sides.length;
        m.set(ak, s);
        this.sides.push({ classes: r.to.classes, atoms: r.to.atoms, wide: -1 });
      }
      this.toSide[r.index] = s;
    }

    // Wide sides: by endpoint count; their membership bits cut the endpoints into regions.
    const wideMembers: Uint8Array[] = [];
    for (const s of this.sides) {
      // Every class has an endpoint, so a side with more classes than wideMin is wide without counting.
      let n = s.classes.count();
      if (n <= wideMin) {
        n = 0;
        for (const c of indices(s.classes)) n += byClass[c].length;
        for (const a of s.atoms.indices()) n += byAtom[a].length;
      }
      if (n <= wideMin) continue;
      s.wide = wideMembers.length;
      const bits = new Uint8Array(ne);
      for (const c of indices(s.classes)) for (const e of byClass[c]) bits[e] = 1;
      for (const a of s.atoms.indices()) for (const e of byAtom[a]) bits[e] = 1;
      wideMembers.push(bits);
    }
    this.wideCount = wideMembers.length;
    const k = this.wideCount;
    this.regionOf = new Int32Array(ne).fill(-1);
    const regionByKey = new Map<string, number>();
    const regionEps: number[][] = [];
    const rFam: number[] = [];
    const rMan: number[] = [];
    const rEnf: number[] = [];
    const rWide: number[] = [];
    const sig = new Uint8Array(k + 3);
    const dec = new TextDecoder('latin1');
    for (let e = 0; e < ne; e++) {
      if (!p.live[e]) continue;
      for (let i = 0; i < k; i++) sig[i] = 48 + wideMembers[i][e];
      sig[k] = p.family[e];
      sig[k + 1] = 48 + p.managed[e];
      sig[k + 2] = 48 + (this.deployed ? p.enforcing[e] : 0);
      const key = dec.decode(sig);
      let r = regionByKey.get(key);
      if (r === undefined) {
        r = regionEps.length;
        regionByKey.set(key, r);
        regionEps.push([]);
        rFam.push(p.family[e]);
        rMan.push(p.managed[e]);
        rEnf.push(this.deployed ? p.enforcing[e] : 0);
        for (let i = 0; i < k; i++) rWide.push(wideMembers[i][e]);
      }
      regionEps[r].push(e);
      this.regionOf[e] = r;
    }
    this.regionEps = regionEps.map((l) => Int32Array.from(l));
    this.regionFamily = Uint8Array.from(rFam);
    this.regionManaged = Uint8Array.from(rMan);
    this.regionEnforcing = Uint8Array.from(rEnf);
    this.regionWide = Uint8Array.from(rWide);

    this.byClass = byClass;
    this.byAtom = byAtom;

    this.rowOfEp = new Int32Array(ne).fill(-1);
    this.keyOfEp = new Array(ne);
    this.stamp = new Int32Array(ne).fill(-1);
    this.head = new Int32Array(ne);
  }

  /** The live endpoints of a narrow side, ascending; materialized on first use. */
  private sideEps(side: Side): Int32Array {
    if (side.eps) return side.eps;
    const out: number[] = [];
    for (const c of side.classes.indices()) for (const e of this.byClass[c]) out.push(e);
    if (!side.atoms.isEmpty()) for (const a of side.atoms.indices()) for (const e of this.byAtom[a]) out.push(e);
    const eps = Int32Array.from(out).sort();
    // An endpoint may be in the side by its class and by its atom: keep it once.
    let n = 0;
    for (let i = 0; i < eps.length; i++) if (n === 0 || eps[n - 1] !== eps[i]) eps[n++] = eps[i];
    return (side.eps = eps.slice(0, n));
  }

  /** The number of regions. */
  get regionCount(): number {
    return this.regionEps.length;
  }

  /** The number of rows built so far (distinct source rule lists). */
  get rowCount(): number {
    return this.rowList.length;
  }

  /** The number of wide `to` sides. */
  get wideSideCount(): number {
    return this.wideCount;
  }

  /** Whether rule r's `to` side holds endpoint ep. */
  private toHolds(r: number, ep: number): boolean {
    const rule = this.ir.rules[r];
    const c = this.ir.endpointClass[ep];
    return (c >= 0 && rule.to.classes.has(c)) || rule.to.atoms.has(this.ir.endpointAtom[ep]);
  }

  /** The active rules matching a flow from `src` to `dst`: R(src) restricted to rules whose `to` holds `dst`. */
  matching(src: number, dst: number): number[] {
    const out: number[] = [];
    for (const r of this.rulesFrom(src)) if (this.toHolds(r, dst)) out.push(r);
    return out;
  }

  /** R(ep): the active rules with ep in `from`, ascending. */
  rulesFrom(ep: number): Int32Array {
    const known = this.keyOfEp?.[ep];
    if (known) return known.rules;
    const c = this.ir.endpointClass[ep];
    return Int32Array.from(mergeAsc(c >= 0 ? (this.fromByClass[c] ?? []) : [], this.fromByAtom[this.ir.endpointAtom[ep]] ?? []));
  }

  /**
   * The tier evaluation over connection sets of a list of matching rules
   * (ascending, so overrides come first in their written order): what one end
   * allows, which rules allow it, which deny rules cut an offer. Memoized.
   */
  tierResult(rules: ArrayLike<number>): number {
    return this.tierOf(rules, rules.length);
  }

  /** {@link tierResult} of the first `n` entries of `rules`, looked up without allocating. */
  private tierOf(rules: ArrayLike<number>, n: number): number {
    if (n === 0) return NONE;
    let h = 0x811c9dc5;
    for (let i = 0; i < n; i++) h = Math.imul(h ^ rules[i], 0x01000193);
    let bucket = this.tierMemo.get(h);
    if (bucket) {
      for (const b of bucket) {
        if (b.list.length !== n) continue;
        let same = true;
        for (let i = 0; i < n && same; i++) same = b.list[i] === rules[i];
        if (same) return b.id;
      }
    } else this.tierMemo.set(h, (bucket = []));
    const list = new Int32Array(n);
    for (let i = 0; i < n; i++) list[i] = rules[i];
    const id = this.computeTier(list);
    bucket.push({ list, id });
    return id;
  }

  private computeTier(rules: Int32Array): number {
    const all = this.ir.rules;
    let offer = ConnSet.EMPTY;
    let allowTier = ConnSet.EMPTY;
    let denyTier = ConnSet.EMPTY;
    for (let i = 0; i < rules.length; i++) {
      const r = all[rules[i]].rule;
      const c = this.ruleConns[rules[i]]!;
      if (r.action === 'allow') offer = offer.union(c);
      if (r.tier === 'allow') allowTier = allowTier.union(c);
      else if (r.tier === 'deny') denyTier = denyTier.union(c);
    }
    let rem = ConnSet.ANY;
    let allowed = ConnSet.EMPTY;
    const allowRules: number[] = [];
    const denyRules: number[] = [];
    for (let i = 0; i < rules.length; i++) {
      const ri = rules[i];
      const r = all[ri].rule;
      if (r.tier !== 'override') continue;
      const c = this.ruleConns[ri]!;
      const live = c.intersect(rem);
      if (r.action === 'allow') {
        if (!live.isEmpty()) {
          allowed = allowed.union(live);
          allowRules.push(ri);
        }
      } else if (live.overlaps(offer)) denyRules.push(ri);
      rem = rem.subtract(c);
    }
    for (let i = 0; i < rules.length; i++) {
      const ri = rules[i];
      if (all[ri].rule.tier === 'deny' && this.ruleConns[ri]!.intersect(rem).overlaps(allowTier)) denyRules.push(ri);
    }
    const open = rem.subtract(denyTier);
    for (let i = 0; i < rules.length; i++) {
      const ri = rules[i];
      if (all[ri].rule.tier !== 'allow') continue;
      const g = this.ruleConns[ri]!.intersect(open);
      if (!g.isEmpty()) {
        allowed = allowed.union(g);
        allowRules.push(ri);
      }
    }
    return this.results.intern(allowed, allowRules.sort((a, b) => a - b), denyRules.sort((a, b) => a - b), false);
  }

  /** The record of R(ep), shared by every endpoint with the same rule list. */
  private ruleKey(ep: number): RuleList {
    let k = this.keyOfEp[ep];
    if (k === undefined) {
      const rules = this.rulesFrom(ep);
      const key = rules.join(',');
      k = this.listByKey.get(key);
      if (!k) this.listByKey.set(key, (k = { rules, key, regions: new Int32Array(this.regionEps.length).fill(-1) }));
      this.keyOfEp[ep] = k;
    }
    return k;
  }

  /** The row of a live source endpoint, built on first use. */
  row(ep: number): Row {
    const known = this.rowOfEp[ep];
    if (known >= 0) return this.rowList[known];
    const list = this.ruleKey(ep);
    let id = this.rowByKey.get(list.key);
    if (id === undefined) {
      id = this.rowList.length;
      const touched: number[] = [];
      const res: number[] = [];
      this.explicitFor(list, () => true, (d, r) => {
        touched.push(d);
        res.push(r);
      });
      this.rowList.push({ rules: list.rules, regions: this.regionsOf(ep), expEps: Int32Array.from(touched), expRes: Int32Array.from(res) });
      this.rowByKey.set(list.key, id);
    }
    this.rowOfEp[ep] = id;
    return this.rowList[id];
  }

  /** The raw result per region of a source (what it gives every region destination it does not name explicitly), without building its whole row. */
  regionsOf(ep: number): Int32Array {
    const list = this.ruleKey(ep);
    if (!list.complete) {
      for (let w = 0; w < list.regions.length; w++) if (list.regions[w] < 0) list.regions[w] = this.inRegion(this.wideOfList(list), w);
      list.complete = true;
    }
    return list.regions;
  }

  /** The raw result of a source for one region, computed alone when the others are not needed (a search near its end). */
  regionRaw(ep: number, region: number): number {
    const list = this.ruleKey(ep);
    const known = list.regions[region];
    if (known >= 0) return known;
    return (list.regions[region] = this.inRegion(this.wideOfList(list), region));
  }

  /**
   * Calls `f(d, raw)` for each destination a source names explicitly (its
   * narrow rules' `to` endpoints) for which `want(d)` holds, with the raw
   * result, without building the source's row: a search that has already
   * visited most destinations asks only for the rest.
   */
  explicitOf(ep: number, want: (d: number) => boolean, f: (d: number, raw: number) => void): void {
    const known = this.rowOfEp[ep];
    if (known >= 0) {
      const row = this.rowList[known];
      for (let i = 0; i < row.expEps.length; i++) if (want(row.expEps[i])) f(row.expEps[i], row.expRes[i]);
      return;
    }
    this.explicitFor(this.ruleKey(ep), want, f);
  }

  private wideOfList(list: RuleList): { rules: number[]; idx: number[] } {
    return (list.wide ??= this.wideOf(list.rules));
  }

  /** The wide rules of a rule list, with their wide side indexes. */
  private wideOf(rules: Int32Array): { rules: number[]; idx: number[] } {
    const out: number[] = [];
    const idx: number[] = [];
    for (const r of rules) {
      const w = this.sides[this.toSide[r]].wide;
      if (w >= 0) {
        out.push(r);
        idx.push(w);
      }
    }
    return { rules: out, idx };
  }

  /** The tier result of the wide rules that hold a region, merged with `extra` (ascending). */
  private inRegion(wide: { rules: number[]; idx: number[] }, region: number, extra?: readonly number[]): number {
    const need = wide.rules.length + (extra ? extra.length : 0);
    if (this.scratch.length < need) this.scratch = new Int32Array(need * 2);
    const scratch = this.scratch;
    const base = region * this.wideCount;
    let n = 0;
    let j = 0;
    for (let i = 0; i < wide.rules.length; i++) {
      if (!this.regionWide[base + wide.idx[i]]) continue;
      if (extra) while (j < extra.length && extra[j] < wide.rules[i]) scratch[n++] = extra[j++];
      scratch[n++] = wide.rules[i];
    }
    if (extra) while (j < extra.length) scratch[n++] = extra[j++];
    return this.tierOf(scratch, n);
  }

  private explicitFor(list: RuleList, want: (d: number) => boolean, f: (d: number, raw: number) => void): void {
    const stampId = ++this.stampNow;
    const touched: number[] = [];
    // Each wanted destination's narrow rules, as a linked list in a typed-array pool (newest first).
    let used = 0;
    for (const r of list.rules) {
      const side = this.sides[this.toSide[r]];
      if (side.wide >= 0) continue;
      for (const d of this.sideEps(side)) {
        if (this.stamp[d] !== stampId) {
          this.stamp[d] = stampId;
          this.head[d] = want(d) ? -1 : -2;
          if (this.head[d] === -1) touched.push(d);
        }
        if (this.head[d] === -2) continue;
        if (used === this.poolRule.length) {
          const grow = (a: Int32Array) => {
            const b = new Int32Array(a.length * 2);
            b.set(a);
            return b;
          };
          this.poolRule = grow(this.poolRule);
          this.poolNext = grow(this.poolNext);
        }
        this.poolRule[used] = r;
        this.poolNext[used] = this.head[d];
        this.head[d] = used++;
      }
    }
    if (touched.length === 0) return;
    touched.sort((a, b) => a - b);
    const wide = this.wideOfList(list);
    const extra: number[] = [];
    for (const d of touched) {
      extra.length = 0;
      for (let k = this.head[d]; k >= 0; k = this.poolNext[k]) extra.push(this.poolRule[k]);
      extra.reverse();
      f(d, this.inRegion(wide, this.regionOf[d], extra));
    }
  }

  /**
   * The result that applies between a source endpoint and a destination
   * with the given flags, from the raw tier result: none across families or
   * with no managed end; where no end enforces (`deployed` only), every
   * connection, open, with the rules that would allow some of it.
   */
  effective(src: number, dFamily: number, dManaged: number, dEnforcing: number, raw: number): number {
    const p = this.places;
    if (p.family[src] !== dFamily) return NONE;
    if (!p.managed[src] && !dManaged) return NONE;
    // No end enforces: everything passes; the rules that would allow it are kept for the report.
    if (this.deployed && !p.enforcing[src] && !dEnforcing) return this.results.union(this.openResult, raw);
    return raw;
  }

  /** The result of a source endpoint for every destination of a region that it does not name explicitly. */
  regionResult(src: number, region: number): number {
    return this.effective(src, this.regionFamily[region], this.regionManaged[region], this.regionEnforcing[region], this.regionsOf(src)[region]);
  }

  /** The raw tier result between two live endpoints (before flags). */
  raw(src: number, dst: number): number {
    const row = this.row(src);
    const e = row.expEps;
    let lo = 0;
    let hi = e.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (e[mid] === dst) return row.expRes[mid];
      if (e[mid] < dst) lo = mid + 1;
      else hi = mid - 1;
    }
    return row.regions[this.regionOf[dst]];
  }

  /** What passes from one live endpoint to another (a result id). Whether the pair is two distinct workloads is the caller's concern. */
  between(src: number, dst: number): number {
    const p = this.places;
    if (!p.live[src] || !p.live[dst]) return NONE;
    return this.effective(src, p.family[dst], p.managed[dst], this.deployed ? p.enforcing[dst] : 0, this.raw(src, dst));
  }

  /**
   * The rules that decide one connection between two endpoints, for
   * counterexamples: the first matching override if it allows, else every
   * matching allow rule (when no deny matches). Rule indexes.
   */
  allowingRules(src: number, dst: number, key: number): number[] {
    const m = this.matching(src, dst);
    const all = this.ir.rules;
    const has = (r: number) => this.ruleConns[r]!.hasKey(key);
    const ov = m.find((r) => all[r].rule.tier === 'override' && has(r));
    if (ov !== undefined) return all[ov].rule.action === 'allow' ? [ov] : [];
    if (m.some((r) => all[r].rule.tier === 'deny' && has(r))) return [];
    return m.filter((r) => all[r].rule.tier === 'allow' && has(r));
  }

  /** The deny rules (or the deny override) that block one connection between two endpoints. */
  denyingRules(src: number, dst: number, key: number): number[] {
    const m = this.matching(src, dst);
    const all = this.ir.rules;
    const has = (r: number) => this.ruleConns[r]!.hasKey(key);
    const ov = m.find((r) => all[r].rule.tier === 'override' && has(r));
    if (ov !== undefined) return all[ov].rule.action === 'deny' ? [ov] : [];
    return m.filter((r) => all[r].rule.tier === 'deny' && has(r));
  }
}
