/**
 * The evaluator: `decide(flow)` gives the verdict and what decided it.
 *
 * Per managed endpoint and direction it precomputes a side table: the
 * connection key space (proto × port) cut into segments where the set of
 * rules that apply changes, each segment holding its override, deny and
 * allow rules. A decision is then two address lookups, a binary search per
 * side, and a scan of the few rules of one segment testing the peer's class
 * and atom bits. Tables are shared between endpoints with the same rules.
 */
import type { Bits } from '../netset/bits.js';
import { ConnSet } from '../netset/connset.js';
import { formatAddr, type Addr } from '../netset/ip.js';
import type { Mode, Tier } from '../model/types.js';
import type { Ir } from '../policy/ir.js';
import { combine, Side, SIDE_EGRESS, SIDE_INGRESS, VERDICTS, type DecidingSide, type Verdict } from './combine.js';

/** A flow as the evaluator sees it. `port` is the port, or `type * 256 + code` for ICMP. */
export interface Flow {
  readonly src: Addr;
  readonly dst: Addr;
  readonly proto: number;
  readonly port: number;
}

/** What one end decided. */
export interface SideDecision {
  readonly workload: string;
  readonly mode: Mode;
  /** False in idle and visibility mode: shown for information, not applied. */
  readonly evaluated: boolean;
  readonly action: 'allow' | 'deny';
  /** The deciding rule id, or null for the default deny. */
  readonly rule: string | null;
  readonly tier: Tier | 'default';
}

/** What the policy knows of one end of a flow. */
export interface EndInfo {
  readonly address: string;
  readonly workload?: string;
  readonly managed?: boolean;
  readonly mode?: Mode;
}

/** A verdict with its explanation. */
export interface Decision {
  readonly verdict: Verdict;
  /** Which end's policy decided; null when no end evaluated the flow. */
  readonly decidedBy: DecidingSide;
  /** The deciding rule id; null for the default deny or when nothing decided. */
  readonly rule: string | null;
  readonly tier: Tier | 'default' | null;
  readonly src: EndInfo;
  readonly dst: EndInfo;
  readonly egress: SideDecision | null;
  readonly ingress: SideDecision | null;
}

/**
 * The rules of one tier in one segment. A short list is scanned. A long list
 * (a hub: a load balancer or a monitoring host with a rule per app) also gets
 * an index from peer class to its first rule, so only its wide rules (many
 * classes, or IP peers) are scanned.
 */
interface TierList {
  /** Every rule, ascending: scanned when there is no index. */
  readonly rules: Int32Array;
  /** Peer class to the first narrow rule naming it; undefined for short lists. */
  readonly byClass?: Map<number, number>;
  /** The rules the index leaves out, ascending. */
  readonly wide?: Int32Array;
}

interface Segment {
  readonly overrides: TierList;
  readonly denies: TierList;
  readonly allows: TierList;
}

/** Lists longer than this get a peer-class index. */
const INDEX_MIN = 12;
/** A rule whose peer side has more classes than this stays in the scanned part of an index. */
const NARROW_MAX = 64;

interface SideTable {
  readonly starts: Float64Array;
  readonly segments: readonly Segment[];
}

const EGRESS = 0;
const INGRESS = 1;

/** Packs a side result: 0 for the default deny, else (rule index + 1) * 2 + (1 if allow). */
function sideCode(rule: number, allow: boolean): number {
  return (rule + 1) * 2 + (allow ? 1 : 0);
}

/** Decides flows against one IR. Build once, decide many times. */
export class Evaluator {
  private readonly tables: SideTable[] = [];
  /** Side table index per endpoint and direction (endpoint * 2 + dir); -1 for unmanaged ends. */
  private readonly tableOf: Int32Array;
  /** Per endpoint: 0 none, 1 not evaluated, 2 test, 3 enforce. */
  private readonly modeOf: Uint8Array;
  private readonly fromClasses: Bits[];
  private readonly fromAtoms: Bits[];
  private readonly toClasses: Bits[];
  private readonly toAtoms: Bits[];
  private readonly allow: Uint8Array;
  private readonly endpointClass: Int32Array;
  private readonly endpointAtom: Int32Array;

  constructor(readonly ir: Ir) {
    const rules = ir.rules;
    this.fromClasses = rules.map((r) => r.from.classes);
    this.fromAtoms = rules.map((r) => r.from.atoms);
    this.toClasses = rules.map((r) => r.to.classes);
    this.toAtoms = rules.map((r) => r.to.atoms);
    this.allow = Uint8Array.from(rules, (r) => (r.rule.action === 'allow' ? 1 : 0));
    this.endpointClass = ir.endpointClass;
    this.endpointAtom = ir.endpointAtom;

    // Which rules apply, per class and per atom, in each direction.
    const nc = ir.classes.length;
    const na = ir.atoms.length;
    const byClass = [new Array<number[] | undefined>(nc), new Array<number[] | undefined>(nc)];
    const byAtom = [new Array<number[] | undefined>(na), new Array<number[] | undefined>(na)];
    const add = (arr: (number[] | undefined)[], i: number, r: number) => (arr[i] ??= []).push(r);
    for (const r of rules) {
      for (const c of r.from.classes.indices()) if (ir.classes[c].managed) add(byClass[EGRESS], c, r.index);
      for (const c of r.to.classes.indices()) if (ir.classes[c].managed) add(byClass[INGRESS], c, r.index);
      for (const a of r.from.atoms.indices()) add(byAtom[EGRESS], a, r.index);
      for (const a of r.to.atoms.indices()) add(byAtom[INGRESS], a, r.index);
    }

    const ne = ir.endpoints.length;
    this.tableOf = new Int32Array(ne * 2).fill(-1);
    this.modeOf = new Uint8Array(ne);
    const tableByKey = new Map<string, number>();
    const sharedLists = new Map<string, TierList>();
    for (const e of ir.endpoints) {
      if (e.cls < 0) continue;
      const cls = ir.classes[e.cls];
      if (!cls.managed) continue;
      this.modeOf[e.id] = cls.mode === 'enforce' ? 3 : cls.mode === 'test' ? 2 : 1;
      for (const dir of [EGRESS, INGRESS]) {
        const list = mergeSorted(byClass[dir][e.cls], byAtom[dir][e.atom]);
        const key = list.join(',');
        let t = tableByKey.get(key);
        if (t === undefined) {
          t = this.tables.length;
          this.tables.push(buildTable(list, dir, ir, sharedLists));
          tableByKey.set(key, t);
        }
        this.tableOf[e.id * 2 + dir] = t;
      }
    }
  }

  /** How many distinct side tables were built (shared between endpoints). */
  get tableCount(): number {
    return this.tables.length;
  }

  /** One side's own decision for a flow, packed (see sideCode). */
  private side(table: SideTable, dir: number, peer: number, key: number): number {
    const starts = table.starts;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid] <= key) lo = mid;
      else hi = mid - 1;
    }
    const seg = table.segments[lo];
    const pc = this.endpointClass[peer];
    const pa = this.endpointAtom[peer];
    const o = this.first(seg.overrides, dir, pc, pa);
    if (o >= 0) return sideCode(o, this.allow[o] === 1);
    const d = this.first(seg.denies, dir, pc, pa);
    if (d >= 0) return sideCode(d, false);
    const a = this.first(seg.allows, dir, pc, pa);
    if (a >= 0) return sideCode(a, true);
    return 0;
  }

  /** The first rule of a tier list whose peer side holds the peer (class pc, atom pa); -1 if none. */
  private first(list: TierList, dir: number, pc: number, pa: number): number {
    const classes = dir === EGRESS ? this.toClasses : this.fromClasses;
    const atoms = dir === EGRESS ? this.toAtoms : this.fromAtoms;
    if (list.byClass === undefined) {
      const rules = list.rules;
      for (let i = 0; i < rules.length; i++) {
        const r = rules[i];
        if ((pc >= 0 && classes[r].has(pc)) || atoms[r].has(pa)) return r;
      }
      return -1;
    }
    const indexed = pc >= 0 ? list.byClass.get(pc) : undefined;
    const bound = indexed === undefined ? Infinity : indexed;
    const wide = list.wide!;
    for (let i = 0; i < wide.length; i++) {
      const r = wide[i];
      if (r > bound) break;
      if ((pc >= 0 && classes[r].has(pc)) || atoms[r].has(pa)) return r;
    }
    return indexed === undefined ? -1 : indexed;
  }

  private outcome(ep: number, code: number): Side {
    const m = this.modeOf[ep];
    if (m === 0) return Side.None;
    if (m === 1) return Side.NotEvaluated;
    if (code & 1) return Side.Allow;
    return m === 3 ? Side.DenyEnforce : Side.DenyTest;
  }

  /**
   * The decision for a flow, packed in one number with no allocation:
   * bits 0-1 the verdict (VERDICTS order), bits 2-3 the deciding side
   * (0 none, 1 egress, 2 ingress), the rest the deciding rule index + 1
   * (0 for the default deny or nothing).
   */
  decideCode(src: Addr, dst: Addr, proto: number, port: number): number {
    const se = this.ir.addressMap.lookup(src);
    const de = this.ir.addressMap.lookup(dst);
    return this.decideEndpoints(se, de, proto * 65536 + port);
  }

  /** decideCode for IPv4 addresses held as numbers. */
  decideV4(src: number, dst: number, proto: number, port: number): number {
    const map = this.ir.addressMap;
    return this.decideEndpoints(map.lookupV4(src), map.lookupV4(dst), proto * 65536 + port);
  }

  private decideEndpoints(se: number, de: number, key: number): number {
    const te = this.tableOf[se * 2 + EGRESS];
    const ti = this.tableOf[de * 2 + INGRESS];
    const ce = te >= 0 ? this.side(this.tables[te], EGRESS, de, key) : 0;
    const ci = ti >= 0 ? this.side(this.tables[ti], INGRESS, se, key) : 0;
    const v = combine(this.outcome(se, ce), this.outcome(de, ci));
    const sideBits = v >> 2;
    const code = sideBits === SIDE_EGRESS ? ce : sideBits === SIDE_INGRESS ? ci : 0;
    return v | ((code >> 1) << 4);
  }

  /** The full decision with its explanation. */
  decide(flow: Flow): Decision {
    const map = this.ir.addressMap;
    const se = map.lookup(flow.src);
    const de = map.lookup(flow.dst);
    const key = flow.proto * 65536 + flow.port;
    const packed = this.decideEndpoints(se, de, key);
    const verdict = VERDICTS[packed & 3];
    const sideBits = (packed >> 2) & 3;
    const ruleIdx = (packed >> 4) - 1;
    const te = this.tableOf[se * 2 + EGRESS];
    const ti = this.tableOf[de * 2 + INGRESS];
    const egress = te >= 0 ? this.sideDecision(flow.src, se, this.side(this.tables[te], EGRESS, de, key)) : null;
    const ingress = ti >= 0 ? this.sideDecision(flow.dst, de, this.side(this.tables[ti], INGRESS, se, key)) : null;
    const decider = sideBits === SIDE_EGRESS ? egress : sideBits === SIDE_INGRESS ? ingress : null;
    return {
      verdict,
      decidedBy: sideBits === SIDE_EGRESS ? 'egress' : sideBits === SIDE_INGRESS ? 'ingress' : null,
      rule: ruleIdx >= 0 ? this.ir.rules[ruleIdx].rule.id : null,
      tier: decider ? decider.tier : null,
      src: this.endInfo(flow.src),
      dst: this.endInfo(flow.dst),
      egress,
      ingress,
    };
  }

  private endInfo(a: Addr): EndInfo {
    const w = this.ir.workloadLookup.lookup(a);
    if (w === undefined) return { address: formatAddr(a) };
    const cls = this.ir.classes[this.ir.classOf[w]];
    return { address: formatAddr(a), workload: this.ir.workloads[w].name, managed: cls.managed, mode: cls.mode };
  }

  private sideDecision(addr: Addr, ep: number, code: number): SideDecision {
    const w = this.ir.workloadLookup.lookup(addr)!;
    const cls = this.ir.classes[this.endpointClass[ep]];
    const rule = (code >> 1) - 1;
    const r = rule >= 0 ? this.ir.rules[rule].rule : undefined;
    return {
      workload: this.ir.workloads[w].name,
      mode: cls.mode!,
      evaluated: cls.mode === 'test' || cls.mode === 'enforce',
      action: code & 1 ? 'allow' : 'deny',
      rule: r ? r.id : null,
      tier: r ? r.tier : 'default',
    };
  }
}

function mergeSorted(a: readonly number[] | undefined, b: readonly number[] | undefined): number[] {
  if (!a) return b ? [...b] : [];
  if (!b) return [...a];
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i] <= b[j]) ? a[i++] : b[j++];
    if (out.length === 0 || out[out.length - 1] !== x) out.push(x);
  }
  return out;
}

/** Cuts the key space where the given rules' connection sets start or end, and files each rule under its segments. */
function buildTable(ruleIdx: readonly number[], dir: number, ir: Ir, shared: Map<string, TierList>): SideTable {
  const cuts = new Set<number>([0]);
  for (const r of ruleIdx) {
    const b = ir.rules[r].conns.boundaries();
    for (let i = 0; i < b.length; i += 2) {
      cuts.add(b[i]);
      cuts.add(b[i + 1] + 1);
    }
  }
  const starts = Float64Array.from([...cuts].filter((c) => c <= ConnSet.MAX_KEY).sort((a, b) => a - b));
  const lists = Array.from({ length: starts.length }, () => ({ overrides: [] as number[], denies: [] as number[], allows: [] as number[] }));
  const segAt = (key: number) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid] <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  for (const r of ruleIdx) {
    const rule = ir.rules[r].rule;
    const b = ir.rules[r].conns.boundaries();
    for (let i = 0; i < b.length; i += 2) {
      const end = segAt(b[i + 1]);
      for (let s = segAt(b[i]); s <= end; s++) {
        const l = lists[s];
        (rule.tier === 'override' ? l.overrides : rule.tier === 'deny' ? l.denies : l.allows).push(r);
      }
    }
  }
  // INVARIANT: rule indexes ascend within each list, so overrides stay in their written order.
  return {
    starts,
    segments: lists.map((l) => ({ overrides: tierList(l.overrides, dir, ir, shared), denies: tierList(l.denies, dir, ir, shared), allows: tierList(l.allows, dir, ir, shared) })),
  };
}

const EMPTY_LIST: TierList = { rules: new Int32Array(0), byClass: undefined, wide: undefined };

/** Makes a tier list, indexing long ones; identical long lists are built once. */
function tierList(rules: readonly number[], dir: number, ir: Ir, shared: Map<string, TierList>): TierList {
  if (rules.length === 0) return EMPTY_LIST;
  if (rules.length < INDEX_MIN) return { rules: Int32Array.from(rules), byClass: undefined, wide: undefined };
  const key = `${dir}:${rules.join(',')}`;
  const known = shared.get(key);
  if (known) return known;
  const byClass = new Map<number, number>();
  const wide: number[] = [];
  for (const r of rules) {
    const peer = dir === EGRESS ? ir.rules[r].to : ir.rules[r].from;
    if (!peer.atoms.isEmpty() || peer.classes.count() > NARROW_MAX) {
      wide.push(r);
      continue;
    }
    for (const c of peer.classes.indices()) if (!byClass.has(c)) byClass.set(c, r);
  }
  const list: TierList = { rules: Int32Array.from(rules), byClass, wide: Int32Array.from(wide) };
  shared.set(key, list);
  return list;
}
