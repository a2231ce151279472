/**
 * The reference evaluator: the semantics of docs/POLICY.md read straight off
 * the policy model, one rule at a time, with no IR, no classes, no atoms and no
 * tables. It is slow on purpose and simple enough to check by eye; the fast
 * evaluator must agree with it on every flow (differential tests, and the
 * engine benchmark's agreement check).
 */
import { formatPrefix, prefixRange, type Addr } from '../netset/ip.js';
import type { Mode, Peer, Policy, Rule, Workload } from '../model/types.js';
import { combine, Side, SIDE_EGRESS, SIDE_INGRESS, VERDICTS, type DecidingSide, type Verdict } from './combine.js';
import type { Flow } from './evaluate.js';

/** The reference evaluator's answer: the verdict, the deciding side and rule. */
export interface NaiveDecision {
  readonly verdict: Verdict;
  readonly decidedBy: DecidingSide;
  readonly rule: string | null;
}

/**
 * Whether a peer of `rule` holds address `a` (owned by workload `w`, if any),
 * read straight off the model: the reference definition of a peer.
 */
export function peerHolds(peer: Peer, rule: Rule, a: Addr, w: Workload | undefined): boolean {
  switch (peer.kind) {
    case 'any':
      return true;
    case 'ips':
      return peer.set.has(a);
    case 'workload':
      return w !== undefined && w.name === peer.name;
    case 'selector':
      return w !== undefined && peer.selector.matches(w.labels) && (peer.global || rule.scope.matches(w.labels));
  }
}

export class NaiveEvaluator {
  private readonly exact = new Map<string, Workload>();
  private readonly ranges: { lo: Addr; hi: Addr; len: number; w: Workload }[] = [];
  private readonly modes = new Map<Workload, Mode>();

  constructor(private readonly policy: Policy) {
    for (const w of policy.workloads) {
      for (const p of w.addresses) {
        const full = typeof p.addr === 'number' ? 32 : 128;
        if (p.len === full) this.exact.set(formatPrefix(p), w);
        else {
          const [lo, hi] = prefixRange(p);
          this.ranges.push({ lo, hi, len: p.len, w });
        }
      }
      if (w.managed) this.modes.set(w, w.mode ?? policy.modes.find((m) => m.scope.matches(w.labels))?.mode ?? policy.defaultMode);
    }
  }

  /** The workload owning an address: an exact address first, else the longest prefix. */
  workloadAt(a: Addr): Workload | undefined {
    const key = typeof a === 'number' ? formatPrefix({ addr: a, len: 32 }) : formatPrefix({ addr: a, len: 128 });
    const w = this.exact.get(key);
    if (w) return w;
    let best: (typeof this.ranges)[number] | undefined;
    for (const r of this.ranges) {
      if (typeof r.lo !== typeof a) continue;
      if (r.lo <= a && a <= r.hi && (!best || r.len > best.len)) best = r;
    }
    return best?.w;
  }

  /** One managed end's own decision: first override, else first deny, else first allow, else default deny. */
  private sideRule(flow: Flow, sw: Workload | undefined, dw: Workload | undefined): Rule | undefined {
    const matches = (r: Rule) =>
      r.conns.has(flow.proto, flow.port) && r.from.some((p) => peerHolds(p, r, flow.src, sw)) && r.to.some((p) => peerHolds(p, r, flow.dst, dw));
    const rules = this.policy.rules;
    return rules.find((r) => r.tier === 'override' && matches(r)) ?? rules.find((r) => r.tier === 'deny' && matches(r)) ?? rules.find((r) => r.tier === 'allow' && matches(r));
  }

  private outcome(w: Workload | undefined, rule: Rule | undefined): Side {
    if (!w || !w.managed) return Side.None;
    const mode = this.modes.get(w)!;
    if (mode === 'idle' || mode === 'visibility') return Side.NotEvaluated;
    if (rule && rule.action === 'allow') return Side.Allow;
    return mode === 'enforce' ? Side.DenyEnforce : Side.DenyTest;
  }

  decide(flow: Flow): NaiveDecision {
    const sw = this.workloadAt(flow.src);
    const dw = this.workloadAt(flow.dst);
    // The same rules speak for both ends; each managed end decides for itself.
    const egressRule = sw?.managed ? this.sideRule(flow, sw, dw) : undefined;
    const ingressRule = dw?.managed ? this.sideRule(flow, sw, dw) : undefined;
    const v = combine(this.outcome(sw, egressRule), this.outcome(dw, ingressRule));
    const side = v >> 2;
    const rule = side === SIDE_EGRESS ? egressRule : side === SIDE_INGRESS ? ingressRule : undefined;
    return { verdict: VERDICTS[v & 3], decidedBy: side === SIDE_EGRESS ? 'egress' : side === SIDE_INGRESS ? 'ingress' : null, rule: rule?.id ?? null };
  }
}
