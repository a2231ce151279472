/**
 * The host view of the IR, shared by every host backend (nftables,
 * iptables+ipset): for one managed workload, the rules that apply to its
 * ingress and egress, in the order its firewall must try them, each with the
 * peer addresses it names, the connections it covers and any host
 * restriction. Pure.
 */
import { ConnSet } from '../netset/connset.js';
import { IpSet, prefixRange, type Addr } from '../netset/ip.js';
import type { Bits } from '../netset/bits.js';
import type { Mode, Rule, Tier } from '../model/types.js';
import { applicability, type Ir, type PeerSet } from '../policy/ir.js';

/** One rule as a host firewall applies it on one side. */
export interface HostRule {
  /** Index into `ir.rules`. */
  readonly index: number;
  readonly rule: Rule;
  readonly tier: Tier;
  readonly action: 'allow' | 'deny';
  /** The addresses of the other end (the source on ingress, the destination on egress). */
  readonly peer: IpSet;
  /** The workload's own addresses the rule applies to, when not all of them. */
  readonly own?: IpSet;
  readonly conns: ConnSet;
  /** Restrict to a local user (egress only), or a program. */
  readonly user?: string;
  readonly process?: string;
}

/** What one managed workload's firewall must do. */
export interface HostPolicy {
  readonly workload: string;
  readonly index: number;
  readonly mode: Mode;
  readonly addresses: IpSet;
  /** Tier order: overrides in written order, then denies, then allows. */
  readonly ingress: readonly HostRule[];
  readonly egress: readonly HostRule[];
}

const TIER_RANK: Record<Tier, number> = { override: 0, deny: 1, allow: 2 };

/**
 * Caches the address sets of classes and peer sides for one IR, so compiling
 * many hosts resolves each distinct peer once.
 */
export class HostCompiler {
  private readonly classRanges: { v4: [number, number][]; v6: [bigint, bigint][] }[];
  /** Per workload: its owned ranges with their endpoint. */
  private readonly owned: Map<number, { lo: Addr; hi: Addr; ep: number }[]>;
  private readonly peerCache = new Map<Bits, Map<string, IpSet>>();

  constructor(readonly ir: Ir) {
    this.classRanges = ir.classes.map(() => ({ v4: [], v6: [] }));
    const segments: { lo: Addr; hi: Addr; ep: number }[] = [];
    for (const [lo, hi, ep] of ir.addressMap.segments()) {
      const cls = ir.endpointClass[ep];
      if (cls < 0) continue;
      if (typeof lo === 'number') this.classRanges[cls].v4.push([lo, hi as number]);
      else this.classRanges[cls].v6.push([lo, hi as bigint]);
      segments.push({ lo, hi, ep });
    }
    this.owned = ownedRanges(ir, segments);
  }

  /** The addresses of every endpoint a peer side holds. */
  peerAddresses(side: PeerSet): IpSet {
    let byIps = this.peerCache.get(side.classes);
    if (!byIps) this.peerCache.set(side.classes, (byIps = new Map()));
    const key = side.ips.toString();
    let set = byIps.get(key);
    if (!set) {
      const v4: [number, number][] = [];
      const v6: [bigint, bigint][] = [];
      for (const c of side.classes.indices()) {
        v4.push(...this.classRanges[c].v4);
        v6.push(...this.classRanges[c].v6);
      }
      set = IpSet.fromRanges(v4, v6).union(side.ips);
      byIps.set(key, set);
    }
    return set;
  }

  /** The host view of workload `index`, or undefined when it is unmanaged. */
  host(index: number): HostPolicy | undefined {
    const ir = this.ir;
    const w = ir.workloads[index];
    const cls = ir.classes[ir.classOf[index]];
    if (!cls.managed || cls.mode === undefined) return undefined;
    const owned = this.owned.get(index) ?? [];
    const addresses = IpSet.fromRanges(
      owned.filter((o) => typeof o.lo === 'number').map((o) => [o.lo as number, o.hi as number] as [number, number]),
      owned.filter((o) => typeof o.lo === 'bigint').map((o) => [o.lo as bigint, o.hi as bigint] as [bigint, bigint]),
    );
    const app = applicability(ir);
    const side = (dir: 'ingress' | 'egress'): HostRule[] => {
      const out: HostRule[] = [];
      // Only the rules whose side holds one of the workload's endpoints can apply.
      const candidates = new Set<number>();
      for (const o of owned) {
        for (const r of app[dir].byClass[ir.endpointClass[o.ep]] ?? []) candidates.add(r);
        for (const r of app[dir].byAtom[ir.endpointAtom[o.ep]] ?? []) candidates.add(r);
      }
      for (const ri of [...candidates].sort((a, b) => a - b)) {
        const r = ir.rules[ri];
        const mine = dir === 'ingress' ? r.to : r.from;
        const other = dir === 'ingress' ? r.from : r.to;
        // The rule applies to those of the workload's addresses whose endpoint its side holds.
        const hits = owned.filter((o) => mine.classes.has(ir.endpointClass[o.ep]) || mine.atoms.has(ir.endpointAtom[o.ep]));
        if (hits.length === 0) continue;
        const own =
          hits.length === owned.length
            ? undefined
            : IpSet.fromRanges(
                hits.filter((o) => typeof o.lo === 'number').map((o) => [o.lo as number, o.hi as number] as [number, number]),
                hits.filter((o) => typeof o.lo === 'bigint').map((o) => [o.lo as bigint, o.hi as bigint] as [bigint, bigint]),
              );
        const peer = this.peerAddresses(other);
        if (peer.isEmpty()) continue;
        // Services with a host restriction become rules of their own; the rest share one.
        const base = { index: r.index, rule: r.rule, tier: r.rule.tier, action: r.rule.action, peer, own };
        if (r.rule.services.every((s) => s.user === undefined && s.process === undefined)) {
          out.push({ ...base, conns: r.conns });
          continue;
        }
        let plain = ConnSet.EMPTY;
        for (const s of r.rule.services) {
          if (s.user === undefined && s.process === undefined) plain = plain.union(s.conns);
          else out.push({ ...base, conns: s.conns, user: s.user, process: s.process });
        }
        if (!plain.isEmpty()) out.push({ ...base, conns: plain });
      }
      // Stable: within a tier, the IR's (written) order.
      return out.sort((a, b) => TIER_RANK[a.tier] - TIER_RANK[b.tier] || a.index - b.index);
    };
    return { workload: w.name, index, mode: cls.mode, addresses, ingress: side('ingress'), egress: side('egress') };
  }
}

/**
 * The address ranges each workload owns, with their endpoints: its prefixes
 * less the more specific prefixes of other workloads inside them (longest
 * prefix match), cut where the endpoint changes. Address-map segments cannot
 * be used alone: they merge neighbouring workloads of one class.
 */
function ownedRanges(ir: Ir, segments: readonly { lo: Addr; hi: Addr; ep: number }[]): Map<number, { lo: Addr; hi: Addr; ep: number }[]> {
  const out = new Map<number, { lo: Addr; hi: Addr; ep: number }[]>();
  const nested = ir.workloads.some((w) => w.addresses.some((p) => p.len < (typeof p.addr === 'number' ? 32 : 128)));
  ir.workloads.forEach((w, i) => {
    const list: { lo: Addr; hi: Addr; ep: number }[] = [];
    for (const p of w.addresses) {
      const [lo, hi] = prefixRange(p);
      if (lo === hi) {
        // A single address: owned unless another workload claims it (the loader reports that), one endpoint.
        if (ir.workloadLookup.lookup(lo) === i) list.push({ lo, hi, ep: ir.addressMap.lookup(lo) });
        continue;
      }
      // A prefix: walk the segments inside it, keeping the addresses this workload owns.
      for (const s of segments) {
        if (typeof s.lo !== typeof lo || s.hi < lo || s.lo > hi) continue;
        const a = s.lo > lo ? s.lo : lo;
        const z = s.hi < hi ? s.hi : hi;
        if (!nested || ir.workloadLookup.lookup(a) === i) list.push({ lo: a, hi: z, ep: s.ep });
      }
    }
    if (list.length > 0) out.set(i, list);
  });
  return out;
}
