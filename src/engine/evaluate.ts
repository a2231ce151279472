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
import { ConnSet } from '../netset/connset.js';
import { floorIndex } from '../netset/search.js';
import { formatAddr, type Addr } from '../netset/ip.js';
import type { Mode, Tier } from '../model/types.js';
import { applicability, type Ir } from '../policy/ir.js';
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

/** Tier lists longer than this get a peer-class index (hubs: a load balancer or monitor with a rule per app). */
const INDEX_MIN = 12;
/** A rule whose peer side has more classes than this stays in the scanned part of an index. */
const NARROW_MAX = 64;

/** The index of one long tier list: peer class to the first narrow rule naming it, and the rules it leaves out. */
interface Hub {
  readonly byClass: Map<number, number>;
  readonly wide: Int32Array;
}

const EGRESS = 0;
const INGRESS = 1;

/** Packs a side result: 0 for the default deny, else (rule index + 1) * 2 + (1 if allow). */
function sideCode(rule: number, allow: boolean): number {
  return (rule + 1) * 2 + (allow ? 1 : 0);
}

export interface EvaluatorOptions {
  /**
   * log2 of the number of slots in the decision cache, a direct-mapped memo
   * of (IPv4 source, IPv4 destination, connection) to the packed decision;
   * 0 turns it off. Flow telemetry repeats the same conversations,
   * so most decisions of a replay are cache hits. Default 18 (262,144 slots, 4 MB).
   */
  readonly cacheBits?: number;
}

/**
 * Decides flows against one IR. Build once, decide many times.
 *
 * Layout: everything the hot path reads sits in a few flat typed arrays, so a
 * decision touches few cache lines: per endpoint and direction a side table
 * (`tableOf`); per table a run of segments (`tableSeg`, `segStart`); per
 * segment three ascending rule lists (`segList` offsets into `lists`); per
 * rule and direction its peer side as class bits and atom bits
 * (`peerClass`, `peerAtom`, fixed stride).
 */
export class Evaluator {
  private readonly tableOf: Int32Array;
  /** Per endpoint: 0 none, 1 not evaluated, 2 test, 3 enforce. */
  private readonly modeOf: Uint8Array;
  private readonly classWords: number;
  private readonly atomWords: number;
  /** Per direction: the peer side of every rule (EGRESS: its `to`, INGRESS: its `from`). */
  private readonly peerClass: readonly [Uint32Array, Uint32Array];
  private readonly peerAtom: readonly [Uint32Array, Uint32Array];
  private readonly allow: Uint8Array;
  private readonly endpointClass: Int32Array;
  private readonly endpointAtom: Int32Array;
  private readonly tableSeg: Int32Array;
  private readonly segStart: Float64Array;
  /** Four offsets into `lists` per segment: overrides, denies, allows, end. */
  private readonly segList: Int32Array;
  private readonly lists: Int32Array;
  /** Per segment and tier: index into `hubs`, or -1. */
  private readonly segHub: Int32Array;
  private readonly hubs: Hub[] = [];
  private readonly cacheMask: number;
  private readonly cacheSrc: Int32Array;
  private readonly cacheDst: Int32Array;
  private readonly cacheKey: Int32Array;
  private readonly cacheVal: Int32Array;
  private readonly cache6Src: bigint[];
  private readonly cache6Dst: bigint[];
  private readonly cache6Key: Int32Array;
  private readonly cache6Mask: number;
  private readonly cache6Val: Int32Array;

  constructor(
    readonly ir: Ir,
    options: EvaluatorOptions = {},
  ) {
    const rules = ir.rules;
    const nc = ir.classes.length;
    const na = ir.atoms.length;
    this.classWords = Math.max(1, (nc + 31) >>> 5);
    this.atomWords = Math.max(1, (na + 31) >>> 5);
    const flat = (side: 'from' | 'to', what: 'classes' | 'atoms', stride: number) => {
      const out = new Uint32Array(rules.length * stride);
      rules.forEach((r, i) => {
        for (const b of r[side][what].indices()) out[i * stride + (b >>> 5)] |= 1 << (b & 31);
      });
      return out;
    };
    this.peerClass = [flat('to', 'classes', this.classWords), flat('from', 'classes', this.classWords)];
    this.peerAtom = [flat('to', 'atoms', this.atomWords), flat('from', 'atoms', this.atomWords)];
    this.allow = Uint8Array.from(rules, (r) => (r.rule.action === 'allow' ? 1 : 0));
    this.endpointClass = ir.endpointClass;
    this.endpointAtom = ir.endpointAtom;

    // Which rules apply, per class and per atom, in each direction.
    const app = applicability(ir);
    const byClass = [app.egress.byClass, app.ingress.byClass];
    const byAtom = [app.egress.byAtom, app.ingress.byAtom];

    const ne = ir.endpoints.length;
    this.tableOf = new Int32Array(ne * 2).fill(-1);
    this.modeOf = new Uint8Array(ne);
    const out = newTableOut();
    // Tables are shared by endpoints whose applicable rules are the same: found by a hash of the list, then compared.
    const tableByHash = new Map<number, { dir: number; list: Int32Array; table: number }[]>();
    for (const e of ir.endpoints) {
      if (e.cls < 0) continue;
      const cls = ir.classes[e.cls];
      if (!cls.managed) continue;
      this.modeOf[e.id] = cls.mode === 'enforce' ? 3 : cls.mode === 'test' ? 2 : 1;
      for (const dir of [EGRESS, INGRESS]) {
        const c = byClass[dir][e.cls];
        const a = byAtom[dir][e.atom];
        const list = mergeSorted(c, a);
        let hash = dir + 1;
        for (let i = 0; i < list.length; i++) hash = Math.imul(hash ^ list[i], 0x01000193);
        let bucket = tableByHash.get(hash);
        if (!bucket) tableByHash.set(hash, (bucket = []));
        let t = bucket.find((x) => x.dir === dir && sameList(x.list, list))?.table;
        if (t === undefined) {
          t = out.tableSeg.length - 1;
          appendTable(list, dir, ir, out, this.hubs);
          bucket.push({ dir, list, table: t });
        }
        this.tableOf[e.id * 2 + dir] = t;
      }
    }
    this.tableSeg = out.tableSeg.done();
    this.segStart = out.segStart.done();
    this.segList = out.segList.done();
    this.lists = out.lists.done();
    this.segHub = out.segHub.done();

    const bits = options.cacheBits ?? 18;
    const size = bits > 0 ? 1 << bits : 0;
    this.cacheMask = size - 1;
    this.cacheSrc = new Int32Array(size);
    this.cacheDst = new Int32Array(size);
    this.cacheKey = new Int32Array(size).fill(-1);
    this.cacheVal = new Int32Array(size);
    // IPv6 flows are fewer: a cache an eighth the size.
    const size6 = size >>> 3;
    this.cache6Mask = size6 - 1;
    this.cache6Src = new Array<bigint>(size6).fill(0n);
    this.cache6Dst = new Array<bigint>(size6).fill(0n);
    this.cache6Key = new Int32Array(size6).fill(-1);
    this.cache6Val = new Int32Array(size6);
  }

  /** How many distinct side tables were built (shared between endpoints). */
  get tableCount(): number {
    return this.tableSeg.length - 1;
  }

  /** One side's own decision for a flow, packed (see sideCode). */
  private side(table: number, dir: number, peer: number, key: number): number {
    const starts = this.segStart;
    let lo = this.tableSeg[table];
    let hi = this.tableSeg[table + 1] - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid] <= key) lo = mid;
      else hi = mid - 1;
    }
    const pc = this.endpointClass[peer];
    const pa = this.endpointAtom[peer];
    const l = lo * 4;
    const segList = this.segList;
    const o = this.first(segList[l], segList[l + 1], this.segHub[lo * 3], dir, pc, pa);
    if (o >= 0) return sideCode(o, this.allow[o] === 1);
    const d = this.first(segList[l + 1], segList[l + 2], this.segHub[lo * 3 + 1], dir, pc, pa);
    if (d >= 0) return sideCode(d, false);
    const a = this.first(segList[l + 2], segList[l + 3], this.segHub[lo * 3 + 2], dir, pc, pa);
    if (a >= 0) return sideCode(a, true);
    return 0;
  }

  /** Whether rule r's peer side (for direction dir) holds the peer of class pc (-1: no workload) and atom pa. */
  private holds(r: number, dir: number, pc: number, pa: number): boolean {
    if (pc >= 0 && (this.peerClass[dir][r * this.classWords + (pc >>> 5)] >>> (pc & 31)) & 1) return true;
    return ((this.peerAtom[dir][r * this.atomWords + (pa >>> 5)] >>> (pa & 31)) & 1) === 1;
  }

  /** The first rule in lists[from, to) whose peer side holds the peer; -1 if none. */
  private first(from: number, to: number, hub: number, dir: number, pc: number, pa: number): number {
    const lists = this.lists;
    if (hub < 0) {
      for (let i = from; i < to; i++) {
        const r = lists[i];
        if (this.holds(r, dir, pc, pa)) return r;
      }
      return -1;
    }
    const h = this.hubs[hub];
    const indexed = pc >= 0 ? h.byClass.get(pc) : undefined;
    const bound = indexed === undefined ? Infinity : indexed;
    const wide = h.wide;
    for (let i = 0; i < wide.length; i++) {
      const r = wide[i];
      if (r > bound) break;
      if (this.holds(r, dir, pc, pa)) return r;
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
    if (typeof src === 'number' && typeof dst === 'number') return this.decideV4(src, dst, proto, port);
    if (typeof src === 'bigint' && typeof dst === 'bigint') return this.decideV6(src, dst, proto, port);
    const map = this.ir.addressMap;
    return this.compute(map.lookup(src), map.lookup(dst), proto * 65536 + port);
  }

  /** decideCode for IPv4 addresses held as numbers; repeated conversations are answered from the decision cache. */
  decideV4(src: number, dst: number, proto: number, port: number): number {
    const key = proto * 65536 + port;
    const mask = this.cacheMask;
    const s32 = src | 0;
    const d32 = dst | 0;
    let slot = -1;
    if (mask >= 0) {
      slot = (Math.imul(s32, 0x9e3779b1) ^ Math.imul(d32, 0x85ebca77) ^ Math.imul(key, 0xc2b2ae3d)) >>> 0;
      slot = (slot ^ (slot >>> 15)) & mask;
      // INVARIANT: cacheKey holds -1 in empty slots, and no real key is negative.
      if (this.cacheKey[slot] === key && this.cacheSrc[slot] === s32 && this.cacheDst[slot] === d32) return this.cacheVal[slot];
    }
    const map = this.ir.addressMap;
    const v = this.compute(map.lookupV4(src), map.lookupV4(dst), key);
    if (slot >= 0) {
      this.cacheSrc[slot] = s32;
      this.cacheDst[slot] = d32;
      this.cacheKey[slot] = key;
      this.cacheVal[slot] = v;
    }
    return v;
  }

  /** decideCode for IPv6 addresses, with a decision cache of its own. */
  decideV6(src: bigint, dst: bigint, proto: number, port: number): number {
    const key = proto * 65536 + port;
    const mask = this.cache6Mask;
    let slot = -1;
    if (mask >= 0) {
      const s32 = Number(BigInt.asUintN(32, src)) | 0;
      const d32 = Number(BigInt.asUintN(32, dst)) | 0;
      slot = (Math.imul(s32, 0x9e3779b1) ^ Math.imul(d32, 0x85ebca77) ^ Math.imul(key, 0xc2b2ae3d)) >>> 0;
      slot = (slot ^ (slot >>> 15)) & mask;
      if (this.cache6Key[slot] === key && this.cache6Src[slot] === src && this.cache6Dst[slot] === dst) return this.cache6Val[slot];
    }
    const map = this.ir.addressMap;
    const v = this.compute(map.lookupV6(src), map.lookupV6(dst), key);
    if (slot >= 0) {
      this.cache6Src[slot] = src;
      this.cache6Dst[slot] = dst;
      this.cache6Key[slot] = key;
      this.cache6Val[slot] = v;
    }
    return v;
  }

  private compute(se: number, de: number, key: number): number {
    const te = this.tableOf[se * 2 + EGRESS];
    const ti = this.tableOf[de * 2 + INGRESS];
    const ce = te >= 0 ? this.side(te, EGRESS, de, key) : 0;
    const ci = ti >= 0 ? this.side(ti, INGRESS, se, key) : 0;
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
    const packed = this.compute(se, de, key);
    const verdict = VERDICTS[packed & 3];
    const sideBits = (packed >> 2) & 3;
    const ruleIdx = (packed >> 4) - 1;
    const te = this.tableOf[se * 2 + EGRESS];
    const ti = this.tableOf[de * 2 + INGRESS];
    const egress = te >= 0 ? this.sideDecision(flow.src, se, this.side(te, EGRESS, de, key)) : null;
    const ingress = ti >= 0 ? this.sideDecision(flow.dst, de, this.side(ti, INGRESS, se, key)) : null;
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

/** The union of two ascending lists, ascending, without duplicates. */
function mergeSorted(a: readonly number[] | undefined, b: readonly number[] | undefined): Int32Array {
  if (!a) return Int32Array.from(b ?? []);
  if (!b) return Int32Array.from(a);
  const out = new Int32Array(a.length + b.length);
  let n = 0;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i] <= b[j]) ? a[i++] : b[j++];
    if (n === 0 || out[n - 1] !== x) out[n++] = x;
  }
  return out.slice(0, n);
}

function sameList(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A growable typed array of numbers: the evaluator's tables are built into these without garbage. */
class Grow<T extends Int32Array | Float64Array> {
  private buf: T;
  length = 0;
  constructor(private readonly make: (n: number) => T) {
    this.buf = make(1024);
  }
  push(v: number): void {
    if (this.length === this.buf.length) {
      const next = this.make(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }
  done(): T {
    return this.buf.slice(0, this.length) as T;
  }
}

/** The flat arrays tables are appended to while the evaluator is built. */
interface TableOut {
  tableSeg: Grow<Int32Array>;
  segStart: Grow<Float64Array>;
  segList: Grow<Int32Array>;
  lists: Grow<Int32Array>;
  segHub: Grow<Int32Array>;
  /** Hubs already built, by direction and rule list. */
  hubKeys: Map<string, number>;
}

function newTableOut(): TableOut {
  const i32 = (n: number) => new Int32Array(n);
  const out: TableOut = { tableSeg: new Grow(i32), segStart: new Grow((n) => new Float64Array(n)), segList: new Grow(i32), lists: new Grow(i32), segHub: new Grow(i32), hubKeys: new Map() };
  out.tableSeg.push(0);
  return out;
}

/** Cuts the key space where the given rules' connection sets start or end, files each rule under its segments, and appends the table. */
function appendTable(ruleIdx: ArrayLike<number>, dir: number, ir: Ir, out: TableOut, hubs: Hub[]): void {
  let size = 1;
  for (let k = 0; k < ruleIdx.length; k++) size += ir.rules[ruleIdx[k]].conns.boundaries().length;
  const cutList = new Float64Array(size);
  let m = 1; // cutList[0] = 0: every table starts at key 0
  for (let k = 0; k < ruleIdx.length; k++) {
    const b = ir.rules[ruleIdx[k]].conns.boundaries();
    for (let i = 0; i < b.length; i += 2) {
      cutList[m++] = b[i];
      if (b[i + 1] < ConnSet.MAX_KEY) cutList[m++] = b[i + 1] + 1;
    }
  }
  const sorted = cutList.subarray(0, m).sort();
  let n = 0;
  for (let i = 0; i < m; i++) if (n === 0 || sorted[n - 1] !== sorted[i]) sorted[n++] = sorted[i];
  const starts = sorted; // the first n entries
  const segAt = (key: number) => floorIndex(starts, key, 0, n - 1);
  const tierOf = (r: number) => {
    const t = ir.rules[r].rule.tier;
    return t === 'override' ? 0 : t === 'deny' ? 1 : 2;
  };
  // Two passes over the rules: count each (segment, tier) list, then fill the lists in place.
  const counts = new Int32Array(n * 3);
  const each = (f: (slot: number, r: number) => void) => {
    for (let k = 0; k < ruleIdx.length; k++) {
      const r = ruleIdx[k];
      const t = tierOf(r);
      const b = ir.rules[r].conns.boundaries();
      for (let i = 0; i < b.length; i += 2) {
        const end = segAt(b[i + 1]);
        for (let s = segAt(b[i]); s <= end; s++) f(s * 3 + t, r);
      }
    }
  };
  each((slot) => counts[slot]++);
  const base = out.lists.length;
  const cursor = new Int32Array(n * 3);
  let total = 0;
  for (let slot = 0; slot < n * 3; slot++) {
    cursor[slot] = total;
    total += counts[slot];
  }
  const filled = new Int32Array(total);
  each((slot, r) => (filled[cursor[slot]++] = r));
  // INVARIANT: rules are visited in ascending index order, so every list ascends and overrides keep their written order.
  let at = 0;
  for (let s = 0; s < n; s++) {
    out.segStart.push(starts[s]);
    for (let t = 0; t < 3; t++) {
      const len = counts[s * 3 + t];
      out.segList.push(base + at);
      out.segHub.push(len >= INDEX_MIN ? hubFor(filled.subarray(at, at + len), dir, ir, out, hubs) : -1);
      at += len;
    }
    out.segList.push(base + at);
  }
  for (let i = 0; i < total; i++) out.lists.push(filled[i]);
  out.tableSeg.push(out.segStart.length);
}

/** Builds (or finds) the peer-class index of a long tier list. */
function hubFor(rules: Int32Array, dir: number, ir: Ir, out: TableOut, hubs: Hub[]): number {
  const key = `${dir}:${rules.join(',')}`;
  const known = out.hubKeys.get(key);
  if (known !== undefined) return known;
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
  hubs.push({ byClass, wide: Int32Array.from(wide) });
  out.hubKeys.set(key, hubs.length - 1);
  return hubs.length - 1;
}
