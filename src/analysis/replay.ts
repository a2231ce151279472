/**
 * Policy modeling: the flows the store recorded, replayed against a (draft)
 * policy. Every stored edge (client, server, protocol, server port, summed
 * over a time window) is decided once by the evaluator; its flows are counted
 * by what the policy would do with them, per group of each end (app and env by
 * default), listed when they would be blocked or potentially blocked, and
 * credited to the rule that decided each end.
 *
 * Pure: the edges come in as values (the CLI reads them from the store) and
 * the ends are attributed by an {@link EndAttributor} handed in (the flow
 * layer's `Attributor`), so this layer imports neither the store nor `flows`.
 *
 * Definitions (docs/MODEL.md):
 *
 * - **Legitimate** flows are those the telemetry did not record as rejected
 *   (`flows - rejected` of an edge). Only they are counted by verdict and can
 *   fail the gate; rejected flows are counted and listed apart.
 * - A flow counts for the group of each end: a workload's group by the label
 *   keys (`app=shop,env=prod`), an address that is no workload under its IP
 *   lists (`ip:internet`), else `external` (outside the internal ranges) or
 *   `unknown`. A flow with both ends in one group counts once in its `total`,
 *   and in both its `out` (client) and `in` (server).
 * - A rule **hits** a flow when it is the first rule matching the flow at a
 *   managed end (the source's egress or the destination's ingress, in tier
 *   order, whatever the end's mode); it **decides** the flow when that end's
 *   decision is the verdict. Rejected flows count as hits too: a deny rule
 *   that only meets rejected traffic is doing its work.
 */
import { formatAddr, type Addr } from '../netset/ip.js';
import type { Loc } from '../model/diagnostic.js';
import type { Action, Tier } from '../model/types.js';
import type { Ir } from '../policy/ir.js';
import { Evaluator } from '../engine/evaluate.js';
import type { DecidingSide } from '../engine/combine.js';
import { ipGroup, labelGrouping } from './matrix.js';
import type { FlowEdge } from '../model/types.js';

/** One stored edge as the flow store returns it (`FlowStore.edges`): the client's port folded away, summed over buckets. */
export type ReplayInputEdge = FlowEdge;

/** What an address is, as the flow layer's `Attributor.end` tells it. */
export interface AttributedEnd {
  readonly kind: 'workload' | 'iplist' | 'unknown';
  /** Index into `ir.workloads` (kind `workload`). */
  readonly workload?: number;
  /** The IP lists holding the address, sorted. */
  readonly iplists: readonly string[];
  /** No workload, and outside the internal ranges. */
  readonly external: boolean;
}

/** Attributes addresses to workloads, IP lists or nothing (`flows/attribute.ts` `Attributor` is one). */
export interface EndAttributor {
  end(a: Addr): AttributedEnd;
}

/** What the policy does with a flow, as the report sorts it. */
export type Outcome = 'allowed' | 'potentially-blocked' | 'blocked-by-rule' | 'blocked-by-default' | 'not-evaluated' | 'unjudged';

/** Flow counts. `flows` is the legitimate flows: the sum of the six outcome counts; `rejected` is apart. */
export interface ReplayCounts {
  /** Legitimate flows: those the telemetry did not record as rejected. */
  readonly flows: number;
  readonly allowed: number;
  /** A managed end in test mode would deny them: logged, let through. */
  readonly potentiallyBlocked: number;
  /** `blockedByRule + blockedByDefault`. */
  readonly blocked: number;
  /** Dropped by a deny rule (deny or override tier). */
  readonly blockedByRule: number;
  /** Dropped by the default deny: no rule allows them. */
  readonly blockedByDefault: number;
  /** No end evaluates them (unmanaged, idle or visibility mode). */
  readonly notEvaluated: number;
  /** Not judged: ICMP from a source that logs no ICMP type. */
  readonly unjudged: number;
  /** Flows the telemetry recorded as rejected; in none of the counts above, never gated. */
  readonly rejected: number;
}

/** What a group holds. */
export type GroupKind = 'workloads' | 'iplist' | 'external' | 'unknown';

/** One group (app and env, by default) and what the policy does to its flows. */
export interface ReplayGroup {
  /** `app=shop,env=prod` (keys without a value left out; `(no labels)`), `ip:internet` (IP lists joined by `+`), `external` or `unknown`. */
  readonly name: string;
  readonly kind: GroupKind;
  /** Workloads of the group seen in the flows (0 for addresses that are no workload). */
  readonly workloads: number;
  /** Each flow with an end in the group, once. */
  readonly total: ReplayCounts;
  /** Flows whose client is in the group. */
  readonly out: ReplayCounts;
  /** Flows whose server is in the group. */
  readonly in: ReplayCounts;
}

/** One end of a listed edge: a workload, or the addresses of one group that are no workload. */
export interface ReplayEnd {
  /** The workload's name, or the group (`ip:internet`, `external`, `unknown`). */
  readonly name: string;
  readonly kind: 'workload' | 'iplist' | 'external' | 'unknown';
  readonly group: string;
  /** Distinct addresses seen at this end. */
  readonly addressCount: number;
  /** The first few of them, in address order. */
  readonly addresses: readonly string[];
}

/** A connection of a listed edge. */
export interface ReplayPort {
  readonly proto: number;
  /** The server port (ICMP: `type * 256 + code`). */
  readonly port: number;
  readonly flows: number;
}

/**
 * A listed edge: the stored edges between two ends with one outcome and one
 * deciding rule, their ports merged.
 */
export interface ReplayFinding {
  readonly outcome: Outcome;
  readonly client: ReplayEnd;
  readonly server: ReplayEnd;
  /** By flows, most first. */
  readonly ports: readonly ReplayPort[];
  /** Legitimate flows; in the rejected list, the rejected flows. */
  readonly flows: number;
  /** Stored edges merged (address pairs × connections). */
  readonly edges: number;
  /** First and last seen of the stored edges (all their flows), epoch ms. */
  readonly first: number;
  readonly last: number;
  /** The deciding rule's id; null for the default deny or when nothing decided. */
  readonly rule: string | null;
  readonly decidedBy: DecidingSide;
  readonly tier: Tier | 'default' | null;
}

/** What one rule met. */
export interface RuleHits {
  readonly id: string;
  readonly tier: Tier;
  readonly action: Action;
  readonly ruleset?: string;
  readonly loc?: Loc;
  /** Flows it was the first match for at some managed end (each flow once; rejected flows included). */
  readonly hits: number;
  /** Of those, at the source's egress and at the destination's ingress. */
  readonly egress: number;
  readonly ingress: number;
  /** Flows whose verdict it decided. */
  readonly decided: number;
  /** Stored edges it hit. */
  readonly edges: number;
  /** First and last seen of the edges it hit, epoch ms (absent with no hits). */
  readonly first?: number;
  readonly last?: number;
}

/** The whole replay. */
export interface ReplayReport {
  /** The label keys groups are made of, `app,env`. */
  readonly by: string;
  /** Stored edges replayed. */
  readonly edges: number;
  readonly totals: ReplayCounts;
  /** The first and last times of the flows replayed, epoch ms (absent when none). */
  readonly first?: number;
  readonly last?: number;
  /** By kind (workload groups, IP lists, external, unknown), then name. */
  readonly groups: readonly ReplayGroup[];
  /** Listed edges, each by flows (most first). */
  readonly potentiallyBlocked: readonly ReplayFinding[];
  readonly blockedByRule: readonly ReplayFinding[];
  readonly blockedByDefault: readonly ReplayFinding[];
  /** Edges with flows the telemetry recorded as rejected, with what the policy would do to them. */
  readonly rejected: readonly ReplayFinding[];
  /** Every rule of the policy, in policy order. */
  readonly rules: readonly RuleHits[];
}

/** Options of {@link replay}. */
export interface ReplayOptions {
  /** What each address is (the flow layer's `Attributor`). */
  readonly ends: EndAttributor;
  /** Label keys to group workloads by (default `app`, `env`). */
  readonly by?: readonly string[];
  /** Called every `progressEvery` edges (default 16384) with the number replayed so far. */
  readonly onProgress?: (edges: number) => void;
  readonly progressEvery?: number;
  /** An evaluator of the same IR to reuse. */
  readonly evaluator?: Evaluator;
}

/** What a `--fail-on` gate can be set to. */
export const FAIL_ON = ['blocked', 'potentially-blocked', 'never'] as const;
export type FailOn = (typeof FAIL_ON)[number];

/**
 * The gate: `blocked` when some legitimate flow would be blocked,
 * `potentially-blocked` when none would but some would be potentially blocked
 * (only with `failOn` `potentially-blocked`), else `pass`. Rejected flows never fail it.
 */
export function gate(totals: ReplayCounts, failOn: FailOn): 'blocked' | 'potentially-blocked' | 'pass' {
  if (failOn === 'never') return 'pass';
  if (totals.blocked > 0) return 'blocked';
  if (failOn === 'potentially-blocked' && totals.potentiallyBlocked > 0) return 'potentially-blocked';
  return 'pass';
}

// ---------------------------------------------------------------- accumulators

const OUTCOMES: readonly Outcome[] = ['allowed', 'potentially-blocked', 'blocked-by-rule', 'blocked-by-default', 'not-evaluated', 'unjudged'];
const OUTCOME_INDEX = new Map(OUTCOMES.map((o, i) => [o, i]));
/** Slots of a count row: the outcomes in {@link OUTCOMES} order, then rejected. */
const REJECTED = OUTCOMES.length;

function counts(row: Float64Array): ReplayCounts {
  const flows = row[0] + row[1] + row[2] + row[3] + row[4] + row[5];
  return {
    flows,
    allowed: row[0],
    potentiallyBlocked: row[1],
    blocked: row[2] + row[3],
    blockedByRule: row[2],
    blockedByDefault: row[3],
    notEvaluated: row[4],
    unjudged: row[5],
    rejected: row[REJECTED],
  };
}

interface GroupAcc {
  name: string;
  kind: GroupKind;
  workloads: Set<number>;
  total: Float64Array;
  out: Float64Array;
  in: Float64Array;
}

/** Where an address counts: a workload, or the addresses of one group that are no workload. */
interface Place {
  /** Sequential, for the keys of listed edges. */
  readonly id: number;
  readonly group: GroupAcc;
  /** The listed end's name: the workload's, or the group's. */
  readonly end: string;
  readonly endKind: ReplayEnd['kind'];
}

interface EndAcc {
  name: string;
  kind: ReplayEnd['kind'];
  group: string;
  addresses: Set<Addr>;
}

interface FindingAcc {
  outcome: Outcome;
  client: EndAcc;
  server: EndAcc;
  ports: Map<number, { proto: number; port: number; flows: number }>;
  flows: number;
  edges: number;
  first: number;
  last: number;
  rule: string | null;
  decidedBy: DecidingSide;
  tier: Tier | 'default' | null;
}

interface RuleAcc {
  hits: number;
  egress: number;
  ingress: number;
  decided: number;
  edges: number;
  first: number;
  last: number;
}

/** What the policy does with one edge. */
interface EdgeDecision {
  readonly outcome: Outcome;
  readonly why: { readonly rule: string | null; readonly decidedBy: DecidingSide; readonly tier: Tier | 'default' | null };
  /** Indexes into `ir.rules` of the rule that decided each end, and the verdict; -1 for none. */
  readonly egressRule: number;
  readonly ingressRule: number;
  readonly decidingRule: number;
}

/** Endpoint pairs whose decisions are kept at once. */
const MEMO_PAIRS = 1 << 20;

const UNJUDGED: EdgeDecision = { outcome: 'unjudged', why: { rule: null, decidedBy: null, tier: null }, egressRule: -1, ingressRule: -1, decidingRule: -1 };

/** Addresses kept per listed end, for the count (beyond it the count stops growing). */
const MAX_ADDRESSES = 100_000;
/** Addresses shown per listed end. */
const SHOWN_ADDRESSES = 5;
const KIND_ORDER: Record<GroupKind, number> = { workloads: 0, iplist: 1, external: 2, unknown: 3 };

function compareAddr(a: Addr, b: Addr): number {
  if (typeof a !== typeof b) return typeof a === 'number' ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Replays stored edges against the policy's IR. */
export function replay(ir: Ir, input: Iterable<ReplayInputEdge>, options: ReplayOptions): ReplayReport {
  const keys = options.by ?? ['app', 'env'];
  const grouping = labelGrouping(keys);
  const evaluator = options.evaluator ?? new Evaluator(ir);
  const ends = options.ends;
  const every = Math.max(1, options.progressEvery ?? 16384);
  const ruleIndex = new Map(ir.rules.map((r, i) => [r.rule.id, i]));
  const rules: RuleAcc[] = ir.rules.map(() => ({ hits: 0, egress: 0, ingress: 0, decided: 0, edges: 0, first: Infinity, last: -Infinity }));
  const totals = new Float64Array(REJECTED + 1);
  const groups = new Map<string, GroupAcc>();
  const findings = [0, 1, 2, 3].map(() => new Map<number, Map<number, FindingAcc[]>>());
  const listOf: Partial<Record<Outcome, number>> = { 'potentially-blocked': 0, 'blocked-by-rule': 1, 'blocked-by-default': 2 };
  const REJECTED_LIST = 3;
  let first = Infinity;
  let last = -Infinity;
  let n = 0;

  // A decision depends only on the two ends' endpoints and the connection: memoized on them, since
  // telemetry has many more address pairs than the policy can tell apart.
  const memo = new Map<number, Map<number, EdgeDecision>>();
  const endpoints = ir.endpoints.length;
  const decision = (r: ReplayInputEdge): EdgeDecision => {
    const pair = ir.addressMap.lookup(r.client) * endpoints + ir.addressMap.lookup(r.server);
    const conn = r.proto * 65536 + r.port;
    let byConn = memo.get(pair);
    if (!byConn) {
      // Bounded: a store of mostly distinct endpoint pairs would otherwise hold one entry per edge.
      if (memo.size >= MEMO_PAIRS) memo.clear();
      memo.set(pair, (byConn = new Map()));
    }
    let d = byConn.get(conn);
    if (!d) {
      const x = evaluator.decide({ src: r.client, dst: r.server, proto: r.proto, port: r.port });
      const index = (id: string | null | undefined) => (id == null ? -1 : (ruleIndex.get(id) ?? -1));
      d = {
        outcome: x.verdict === 'allowed' ? 'allowed' : x.verdict === 'potentially-blocked' ? 'potentially-blocked' : x.verdict === 'not-evaluated' ? 'not-evaluated' : x.rule !== null ? 'blocked-by-rule' : 'blocked-by-default',
        why: { rule: x.rule, decidedBy: x.decidedBy, tier: x.tier },
        egressRule: index(x.egress?.rule),
        ingressRule: index(x.ingress?.rule),
        decidingRule: x.decidedBy !== null ? index(x.rule) : -1,
      };
      byConn.set(conn, d);
    }
    return d;
  };

  const hit = (i: number, r: ReplayInputEdge) => {
    const a = rules[i];
    a.hits += r.flows;
    a.edges++;
    if (r.first < a.first) a.first = r.first;
    if (r.last > a.last) a.last = r.last;
  };

  const groupAcc = (name: string, kind: GroupKind): GroupAcc => {
    let g = groups.get(name);
    if (!g) groups.set(name, (g = { name, kind, workloads: new Set(), total: new Float64Array(REJECTED + 1), out: new Float64Array(REJECTED + 1), in: new Float64Array(REJECTED + 1) }));
    return g;
  };

  // Places: a workload, or the addresses of one group that are no workload; made once each.
  let places = 0;
  const workloadPlaces: (Place | undefined)[] = [];
  const otherPlaces = new Map<string, Place>();
  const byEnd = new WeakMap<AttributedEnd, Place>();
  const place = (a: Addr): Place => {
    const e = ends.end(a);
    if (e.kind === 'workload') {
      const w = e.workload!;
      let p = workloadPlaces[w];
      if (!p) {
        const g = groupAcc(grouping.ofWorkload(ir.workloads[w]), 'workloads');
        g.workloads.add(w);
        workloadPlaces[w] = p = { id: places++, group: g, end: ir.workloads[w].name, endKind: 'workload' };
      }
      return p;
    }
    let p = byEnd.get(e);
    if (!p) {
      const name = e.kind === 'iplist' ? ipGroup(e.iplists.join('+')) : e.external ? 'external' : 'unknown';
      p = otherPlaces.get(name);
      if (!p) {
        const kind = e.kind === 'iplist' ? 'iplist' : e.external ? 'external' : 'unknown';
        otherPlaces.set(name, (p = { id: places++, group: groupAcc(name, kind), end: name, endKind: kind }));
      }
      byEnd.set(e, p);
    }
    return p;
  };

  const note = (list: number, c: Place, s: Place, r: ReplayInputEdge, flows: number, d: EdgeDecision) => {
    // Keyed by place ids (small integers, cheap map keys), then the few decisions between two places.
    let byServer = findings[list].get(c.id);
    if (!byServer) findings[list].set(c.id, (byServer = new Map()));
    let variants = byServer.get(s.id);
    if (!variants) byServer.set(s.id, (variants = []));
    let f: FindingAcc | undefined;
    for (const x of variants) if (x.outcome === d.outcome && x.rule === d.why.rule && x.decidedBy === d.why.decidedBy) f = x;
    if (!f) {
      const end = (p: Place): EndAcc => ({ name: p.end, kind: p.endKind, group: p.group.name, addresses: new Set() });
      variants.push((f = { outcome: d.outcome, client: end(c), server: end(s), ports: new Map(), flows: 0, edges: 0, first: Infinity, last: -Infinity, ...d.why }));
    }
    if (f.client.addresses.size < MAX_ADDRESSES) f.client.addresses.add(r.client);
    if (f.server.addresses.size < MAX_ADDRESSES) f.server.addresses.add(r.server);
    const pk = r.proto * 65536 + r.port;
    let p = f.ports.get(pk);
    if (!p) f.ports.set(pk, (p = { proto: r.proto, port: r.port, flows: 0 }));
    p.flows += flows;
    f.flows += flows;
    f.edges++;
    if (r.first < f.first) f.first = r.first;
    if (r.last > f.last) f.last = r.last;
  };

  for (const r of input) {
    n++;
    if (options.onProgress && n % every === 0) options.onProgress(n);
    const rejected = Math.min(r.rejected, r.flows);
    const legit = r.flows - rejected;
    if (r.first < first) first = r.first;
    if (r.last > last) last = r.last;

    // A source that logs no ICMP type (port 65535) cannot be judged.
    const judged = !((r.proto === 1 || r.proto === 58) && r.port === 65535);
    const dec = judged ? decision(r) : UNJUDGED;
    const outcome = dec.outcome;
    if (judged) {
      if (dec.egressRule >= 0) {
        hit(dec.egressRule, r);
        rules[dec.egressRule].egress += r.flows;
      }
      if (dec.ingressRule >= 0) {
        if (dec.ingressRule !== dec.egressRule) hit(dec.ingressRule, r);
        rules[dec.ingressRule].ingress += r.flows;
      }
      if (dec.decidingRule >= 0) rules[dec.decidingRule].decided += r.flows;
    }

    const slot = OUTCOME_INDEX.get(outcome)!;
    totals[slot] += legit;
    totals[REJECTED] += rejected;
    const c = place(r.client);
    const s = place(r.server);
    const gc = c.group;
    const gs = s.group;
    gc.out[slot] += legit;
    gc.out[REJECTED] += rejected;
    gs.in[slot] += legit;
    gs.in[REJECTED] += rejected;
    gc.total[slot] += legit;
    gc.total[REJECTED] += rejected;
    if (gs !== gc) {
      gs.total[slot] += legit;
      gs.total[REJECTED] += rejected;
    }

    const list = listOf[outcome];
    if (list !== undefined && legit > 0) note(list, c, s, r, legit, dec);
    if (rejected > 0) note(REJECTED_LIST, c, s, r, rejected, dec);
  }

  const endOut = (e: EndAcc): ReplayEnd => {
    const addrs = [...e.addresses].sort(compareAddr);
    return { name: e.name, kind: e.kind, group: e.group, addressCount: addrs.length, addresses: addrs.slice(0, SHOWN_ADDRESSES).map(formatAddr) };
  };
  const listed = (m: Map<number, Map<number, FindingAcc[]>>): ReplayFinding[] =>
    [...m.values()]
      .flatMap((byServer) => [...byServer.values()].flat())
      .sort((a, b) => b.flows - a.flows || byName(a.client.name, b.client.name) || byName(a.server.name, b.server.name) || byName(a.rule ?? '', b.rule ?? '') || byName(a.outcome, b.outcome) || byName(a.decidedBy ?? '', b.decidedBy ?? ''))
      .map((f) => ({
        outcome: f.outcome,
        client: endOut(f.client),
        server: endOut(f.server),
        ports: [...f.ports.values()].sort((a, b) => b.flows - a.flows || a.proto - b.proto || a.port - b.port),
        flows: f.flows,
        edges: f.edges,
        first: f.first,
        last: f.last,
        rule: f.rule,
        decidedBy: f.decidedBy,
        tier: f.tier,
      }));

  return {
    by: keys.join(','),
    edges: n,
    totals: counts(totals),
    ...(n > 0 ? { first, last } : {}),
    groups: [...groups.values()]
      .sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || byName(a.name, b.name))
      .map((g) => ({ name: g.name, kind: g.kind, workloads: g.workloads.size, total: counts(g.total), out: counts(g.out), in: counts(g.in) })),
    potentiallyBlocked: listed(findings[0]),
    blockedByRule: listed(findings[1]),
    blockedByDefault: listed(findings[2]),
    rejected: listed(findings[REJECTED_LIST]),
    rules: ir.rules.map((r, i) => {
      const a = rules[i];
      const m = r.rule;
      return {
        id: m.id,
        tier: m.tier,
        action: m.action,
        ...(m.ruleset !== undefined ? { ruleset: m.ruleset } : {}),
        ...(m.loc ? { loc: m.loc } : {}),
        hits: a.hits,
        egress: a.egress,
        ingress: a.ingress,
        decided: a.decided,
        edges: a.edges,
        ...(a.edges > 0 ? { first: a.first, last: a.last } : {}),
      };
    }),
  };
}
