/**
 * How a bulkhead estate maps to Kubernetes, for the compilers.
 *
 * - A **pod** is a workload of kind `pod` with a `namespace` label: it runs
 *   in that namespace with its other labels as pod labels. Every other
 *   workload (hosts, VMs, cloud instances, and pods without a namespace) is
 *   outside the cluster and is named by its addresses.
 * - A rule **side** (`from` or `to`) resolves, through the IR, to the pods it
 *   holds (by class, or by address when an IP peer covers a pod's addresses)
 *   and to an address set: its IP peers plus the addresses of the non-pod
 *   workloads it holds.
 * - A set of pods is written as **pod groups** (namespace selector and pod
 *   selector pairs): first by translating the rule's selectors, and when that
 *   does not select exactly the intended pods of the estate, by listing the
 *   pods' label sets, excluding look-alikes by the labels they add. Either
 *   way the result is checked against every pod of the estate.
 */
import { ConnSet, PROTOCOLS } from '../netset/connset.js';
import { formatPrefix, IpSet } from '../netset/ip.js';
import type { Labels, SelectorNode } from '../model/selector.js';
import type { Mode, Peer, Workload } from '../model/types.js';
import type { Ir, IrRule } from '../policy/ir.js';
import { NAMESPACE_NAME_LABEL, type K8sProtocol } from './cluster.js';
import { EVERYTHING, selectorMatches, type LabelSelector, type SelectorRequirement } from './labels.js';

/** The bulkhead label that places a `pod` workload in a namespace. */
export const NAMESPACE_LABEL = 'namespace';

/** A pod of the estate. */
export interface EstatePod {
  /** Index into `Ir.workloads`. */
  readonly index: number;
  readonly workload: Workload;
  readonly namespace: string;
  /** Its labels without `namespace`. */
  readonly labels: Labels;
  /** The labels of its namespace (just the name label). */
  readonly namespaceLabels: Labels;
  readonly managed: boolean;
  /** Its mode when managed. */
  readonly mode: Mode | undefined;
  readonly addresses: IpSet;
}

/** The estate as the Kubernetes compilers see it. */
export interface EstateView {
  readonly ir: Ir;
  readonly pods: readonly EstatePod[];
  /** Pod by workload index. */
  readonly podOf: ReadonlyMap<number, EstatePod>;
  /** Namespaces with pods, sorted. */
  readonly namespaces: readonly string[];
}

/** Builds the pod view of an IR. */
export function estateView(ir: Ir): EstateView {
  const pods: EstatePod[] = [];
  ir.workloads.forEach((w, index) => {
    const ns = w.labels[NAMESPACE_LABEL];
    if (w.kind !== 'pod' || ns === undefined || ns === '') return;
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(w.labels)) if (k !== NAMESPACE_LABEL) labels[k] = v;
    const cls = ir.classes[ir.classOf[index]];
    pods.push({ index, workload: w, namespace: ns, labels, namespaceLabels: { [NAMESPACE_NAME_LABEL]: ns }, managed: cls.managed, mode: cls.mode, addresses: IpSet.fromPrefixes(w.addresses) });
  });
  return { ir, pods, podOf: new Map(pods.map((p) => [p.index, p])), namespaces: [...new Set(pods.map((p) => p.namespace))].sort() };
}

/** What one side of a rule holds, in Kubernetes terms. */
export interface RuleSide {
  /** Pods wholly in the side. */
  readonly pods: readonly EstatePod[];
  /** Pods with some addresses in the side and some not: no pod selector can say that. */
  readonly partial: readonly EstatePod[];
  /** Addresses outside the cluster in the side: its IP peers and its non-pod workloads' addresses. */
  readonly ips: IpSet;
}

/** Resolves the `from` or `to` side of an IR rule. */
export function ruleSide(view: EstateView, rule: IrRule, which: 'from' | 'to'): RuleSide {
  const ps = rule[which];
  const pods: EstatePod[] = [];
  const partial: EstatePod[] = [];
  const byAddress = !ps.ips.isEmpty();
  for (const p of view.pods) {
    if (ps.classes.has(view.ir.classOf[p.index]) || (byAddress && p.addresses.isSubset(ps.ips))) pods.push(p);
    else if (byAddress && p.addresses.overlaps(ps.ips)) partial.push(p);
  }
  const prefixes = [];
  for (const c of ps.classes.indices()) {
    for (const m of view.ir.classes[c].members) if (!view.podOf.has(m)) prefixes.push(...view.ir.workloads[m].addresses);
  }
  return { pods, partial, ips: prefixes.length > 0 ? ps.ips.union(IpSet.fromPrefixes(prefixes)) : ps.ips };
}

// ---------------------------------------------------------------- pod groups

/** Pods by a namespace selector (over namespace labels) and a pod selector. */
export interface PodGroup {
  readonly namespaceSelector: LabelSelector;
  readonly podSelector: LabelSelector;
}

/** Whether a pod group selects a pod. */
export function groupMatches(g: PodGroup, p: EstatePod): boolean {
  return selectorMatches(g.namespaceSelector, p.namespaceLabels) && selectorMatches(g.podSelector, p.labels);
}

type Lit = SelectorRequirement;

/** The most conjunctions a translated selector may have before listing label sets instead. */
const MAX_TERMS = 16;

function and(a: Lit[][] | null, b: Lit[][] | null): Lit[][] | null {
  if (a === null || b === null) return null;
  const out: Lit[][] = [];
  for (const x of a) for (const y of b) out.push([...x, ...y]);
  return out.length > MAX_TERMS ? null : out;
}

function or(a: Lit[][] | null, b: Lit[][] | null): Lit[][] | null {
  if (a === null || b === null) return null;
  const out = [...a, ...b];
  return out.length > MAX_TERMS ? null : out;
}

/** A Calico selector as a disjunction of conjunctions of Kubernetes requirements; null when it has no such form (`contains`, …). */
function dnf(node: SelectorNode, neg: boolean): Lit[][] | null {
  const lit = (key: string, operator: Lit['operator'], values: readonly string[] = []): Lit[][] => [[{ key, operator, values }]];
  switch (node.kind) {
    case 'all':
    case 'global':
      return neg ? [] : [[]];
    case 'has':
      return lit(node.label, neg ? 'DoesNotExist' : 'Exists');
    case 'eq':
      return lit(node.label, neg ? 'NotIn' : 'In', [node.value]);
    case 'ne':
      return lit(node.label, neg ? 'In' : 'NotIn', [node.value]);
    case 'in':
      return lit(node.label, neg ? 'NotIn' : 'In', node.values);
    case 'notIn':
      return lit(node.label, neg ? 'In' : 'NotIn', node.values);
    case 'not':
      return dnf(node.expr, !neg);
    case 'and':
    case 'or': {
      const conj = (node.kind === 'and') !== neg;
      let acc: Lit[][] | null = conj ? [[]] : [];
      for (const e of node.exprs) acc = conj ? and(acc, dnf(e, neg)) : or(acc, dnf(e, neg));
      return acc;
    }
    default:
      return null;
  }
}

/** A conjunction of requirements as a pod group, `namespace` going to the namespace selector; null when it selects no pod. */
function conjToGroup(lits: readonly Lit[]): PodGroup | null {
  const nsExpr: SelectorRequirement[] = [];
  const podLabels: Record<string, string> = {};
  const podExpr: SelectorRequirement[] = [];
  for (const l of lits) {
    if (l.key === NAMESPACE_LABEL) {
      if (l.operator === 'Exists') continue; // every pod has a namespace
      if (l.operator === 'DoesNotExist') return null;
      nsExpr.push({ key: NAMESPACE_NAME_LABEL, operator: l.operator, values: [...l.values] });
    } else if (l.operator === 'In' && l.values.length === 1 && (!Object.hasOwn(podLabels, l.key) || podLabels[l.key] === l.values[0])) {
      podLabels[l.key] = l.values[0];
    } else {
      podExpr.push({ key: l.key, operator: l.operator, values: [...l.values] });
    }
  }
  const nsSel: LabelSelector =
    nsExpr.length === 1 && nsExpr[0].operator === 'In' && nsExpr[0].values.length === 1
      ? { matchLabels: { [NAMESPACE_NAME_LABEL]: nsExpr[0].values[0] }, matchExpressions: [] }
      : { matchLabels: {}, matchExpressions: nsExpr };
  return { namespaceSelector: nsSel, podSelector: { matchLabels: podLabels, matchExpressions: podExpr } };
}

/** The pod groups a rule side's peers say, translated from its selectors; null when some peer has no translation. */
function translateSide(peers: readonly Peer[], scope: SelectorNode): PodGroup[] | null {
  let terms: Lit[][] | null = [];
  for (const p of peers) {
    if (p.kind === 'any') terms = or(terms, [[]]);
    else if (p.kind === 'selector') terms = or(terms, p.global ? dnf(p.selector.ast, false) : and(dnf(p.selector.ast, false), dnf(scope, false)));
    else if (p.kind === 'workload') return null;
    // IP peers select pods only by address; the check below finds out whether that adds pods.
    if (terms === null) return null;
  }
  const out: PodGroup[] = [];
  for (const t of terms ?? []) {
    const g = conjToGroup(t);
    if (g) out.push(g);
  }
  return out;
}

function sameSet(groups: readonly PodGroup[], intended: ReadonlySet<number>, universe: readonly EstatePod[]): boolean {
  return universe.every((p) => groups.some((g) => groupMatches(g, p)) === intended.has(p.index));
}

/** Lists label sets: one group per (namespace, labels) of the intended pods, excluding look-alikes by the labels they add. */
function enumerate(intended: ReadonlySet<number>, universe: readonly EstatePod[]): PodGroup[] {
  const seen = new Set<string>();
  const out: PodGroup[] = [];
  for (const p of universe) {
    if (!intended.has(p.index)) continue;
    const keys = Object.keys(p.labels).sort();
    const key = `${p.namespace}\u0000${keys.map((k) => `${k}=${p.labels[k]}`).join('\u0000')}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const absent = new Set<string>();
    for (const o of universe) {
      if (intended.has(o.index) || o.namespace !== p.namespace) continue;
      if (!keys.every((k) => Object.hasOwn(o.labels, k) && o.labels[k] === p.labels[k])) continue;
      for (const k of Object.keys(o.labels)) if (!Object.hasOwn(p.labels, k)) absent.add(k);
    }
    out.push({
      namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: p.namespace }, matchExpressions: [] },
      podSelector: { matchLabels: Object.fromEntries(keys.map((k) => [k, p.labels[k]])), matchExpressions: [...absent].sort().map((k) => ({ key: k, operator: 'DoesNotExist' as const, values: [] })) },
    });
  }
  return out;
}

/** Pod groups that select exactly some pods among the estate's (see {@link podGroups}). */
export interface GroupsResult {
  readonly groups: PodGroup[];
  /** Whether the groups come from the rule's own selectors (else from listing label sets). */
  readonly translated: boolean;
}

/**
 * Narrows translated groups that also select pods they should not: by the
 * namespaces of such pods where no intended pod of the group lives, then by a
 * label value of theirs that no intended pod of the group has. Returns the
 * narrowed groups; they may still select too much (the caller checks).
 */
function refine(groups: readonly PodGroup[], intended: ReadonlySet<number>, universe: readonly EstatePod[]): PodGroup[] {
  return groups.map((g) => {
    const mine = universe.filter((p) => intended.has(p.index) && groupMatches(g, p));
    let extras = universe.filter((p) => !intended.has(p.index) && groupMatches(g, p));
    if (extras.length === 0) return g;
    const nsIn = new Set(mine.map((p) => p.namespace));
    const nsOut = [...new Set(extras.map((p) => p.namespace).filter((ns) => !nsIn.has(ns)))].sort();
    let nsSel = g.namespaceSelector;
    if (nsOut.length > 0) {
      nsSel = { matchLabels: nsSel.matchLabels, matchExpressions: [...nsSel.matchExpressions, { key: NAMESPACE_NAME_LABEL, operator: 'NotIn', values: nsOut }] };
      extras = extras.filter((p) => nsIn.has(p.namespace));
    }
    const notIn = new Map<string, Set<string>>();
    for (const e of extras) {
      const key = Object.keys(e.labels)
        .sort()
        .find((k) => !mine.some((p) => p.labels[k] === e.labels[k]));
      if (key === undefined) continue;
      let vs = notIn.get(key);
      if (!vs) notIn.set(key, (vs = new Set()));
      vs.add(e.labels[key]);
    }
    const podExpr = [...g.podSelector.matchExpressions, ...[...notIn].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, vs]) => ({ key, operator: 'NotIn' as const, values: [...vs].sort() }))];
    return { namespaceSelector: nsSel, podSelector: { matchLabels: g.podSelector.matchLabels, matchExpressions: podExpr } };
  });
}

/**
 * Writes the intended pods as pod groups: the translation of the side's
 * peers, narrowed where it selects pods it should not and completed with
 * listed label sets for pods it misses, when that selects exactly them among
 * the estate's pods; else the listing of their label sets when that does;
 * undefined when neither does (two pods with the same namespace and labels,
 * one intended and one not).
 */
export function podGroups(view: EstateView, intended: readonly EstatePod[], peers?: { readonly peers: readonly Peer[]; readonly scope: SelectorNode }): GroupsResult | undefined {
  const set = new Set(intended.map((p) => p.index));
  if (set.size === 0) return { groups: [], translated: true };
  if (set.size === view.pods.length) return { groups: [{ namespaceSelector: EVERYTHING, podSelector: EVERYTHING }], translated: true };
  if (peers) {
    const t = translateSide(peers.peers, peers.scope);
    if (t) {
      const narrowed = refine(t, set, view.pods);
      const missed = view.pods.filter((p) => set.has(p.index) && !narrowed.some((g) => groupMatches(g, p)));
      const rest = new Set(missed.map((p) => p.index));
      const extra = missed.length > 0 ? enumerate(rest, view.pods.filter((p) => rest.has(p.index) || !set.has(p.index))) : [];
      const groups = [...narrowed, ...extra];
      if (sameSet(groups, set, view.pods)) return { groups, translated: true };
    }
  }
  const e = enumerate(set, view.pods);
  return sameSet(e, set, view.pods) ? { groups: e, translated: false } : undefined;
}

/** The namespaces in which a group selects intended pods, sorted. */
export function groupNamespaces(g: PodGroup, intended: readonly EstatePod[]): string[] {
  return [...new Set(intended.filter((p) => groupMatches(g, p)).map((p) => p.namespace))].sort();
}

// ---------------------------------------------------------------- addresses and ports

/** An address block: a CIDR less some CIDRs inside it. */
export interface CidrBlock {
  readonly cidr: string;
  readonly except: readonly string[];
}

/**
 * Writes an address set as blocks with as few CIDR strings (block and except
 * entries together) as a search over the prefix tree finds: at every prefix,
 * either split it in two, or (outside any block) open a block there and
 * write what it must leave out, or (inside a block) leave it out whole and
 * write what it must still hold as blocks of their own.
 */
export function cidrBlocks(s: IpSet): CidrBlock[] {
  const key = `${Array.from(s.v4.bounds).join(',')}|${Array.from(s.v6.bounds).join(',')}`;
  const known = blockCache.get(key);
  if (known) return known;
  const out: CidrBlock[] = [];
  for (const [ivs, bits] of [[[...s.v4.intervals()].map(([lo, hi]) => [BigInt(lo), BigInt(hi)] as const), 32], [[...s.v6.intervals()], 128]] as const) {
    if (ivs.length === 0) continue;
    const text = (lo: bigint, len: number) => formatPrefix({ addr: bits === 32 ? Number(lo) : lo, len });
    interface Plan {
      cost: number;
      /** Blocks opened here or below, each with its excepts. */
      blocks: { cidr: string; except: string[] }[];
      /** Except entries for the enclosing block. */
      except: string[];
    }
    const EMPTY: Plan = { cost: 0, blocks: [], except: [] };
    const memo = new Map<string, Plan>();
    // `parts`: the set's intervals clipped to the prefix [lo, lo + size - 1].
    const solve = (lo: bigint, len: number, parts: readonly (readonly [bigint, bigint])[], inside: boolean, mayToggle: boolean): Plan => {
      const key = `${lo}/${len}/${inside ? 1 : 0}${mayToggle ? 1 : 0}`;
      const known = memo.get(key);
      if (known) return known;
      const best = solveAt(lo, len, parts, inside, mayToggle);
      memo.set(key, best);
      return best;
    };
    const solveAt = (lo: bigint, len: number, parts: readonly (readonly [bigint, bigint])[], inside: boolean, mayToggle: boolean): Plan => {
      const hi = lo + (1n << BigInt(bits - len)) - 1n;
      const empty = parts.length === 0;
      const full = parts.length === 1 && parts[0][0] === lo && parts[0][1] === hi;
      if (inside ? full : empty) return EMPTY;
      if (inside && empty) return { cost: 1, blocks: [], except: [text(lo, len)] };
      if (!inside && full) return { cost: 1, blocks: [{ cidr: text(lo, len), except: [] }], except: [] };
      const mid = lo + (1n << BigInt(bits - len - 1));
      const left: (readonly [bigint, bigint])[] = [];
      const right: (readonly [bigint, bigint])[] = [];
      for (const [a, b] of parts) {
        if (a < mid) left.push([a, b < mid ? b : mid - 1n]);
        if (b >= mid) right.push([a >= mid ? a : mid, b]);
      }
      const l = solve(lo, len + 1, left, inside, true);
      const r = solve(mid, len + 1, right, inside, true);
      let best: Plan = { cost: l.cost + r.cost, blocks: [...l.blocks, ...r.blocks], except: [...l.except, ...r.except] };
      if (mayToggle) {
        const t = solve(lo, len, parts, !inside, false);
        if (1 + t.cost < best.cost) {
          best = inside ? { cost: 1 + t.cost, blocks: t.blocks, except: [text(lo, len)] } : { cost: 1 + t.cost, blocks: [{ cidr: text(lo, len), except: t.except }, ...t.blocks], except: [] };
        }
      }
      return best;
    };
    out.push(...solve(0n, 0, ivs, false, true).blocks);
  }
  if (blockCache.size > 10000) blockCache.clear();
  blockCache.set(key, out);
  return out;
}

const blockCache = new Map<string, CidrBlock[]>();

/** A port entry of a Kubernetes-style policy: a protocol, and a port or range (none: every port). */
export interface PortSpec {
  readonly protocol: K8sProtocol;
  readonly port?: number;
  readonly endPort?: number;
}

const K8S_PROTOS: readonly [K8sProtocol, number][] = [
  ['TCP', PROTOCOLS.tcp],
  ['UDP', PROTOCOLS.udp],
  ['SCTP', PROTOCOLS.sctp],
];

/** The connections of TCP, UDP and SCTP, every port. */
export const PORT_PROTOCOLS: ConnSet = ConnSet.protocol('tcp').union(ConnSet.protocol('udp')).union(ConnSet.protocol('sctp'));

/**
 * A connection set as port entries: `any` for every connection (a policy
 * without ports), else one entry per port range of TCP, UDP and SCTP (port 0
 * is left out: it is no real port). `rest` holds what ports cannot say (ICMP,
 * other protocols).
 */
export function portSpecs(c: ConnSet): { any: boolean; specs: PortSpec[]; rest: ConnSet } {
  if (c.isAny()) return { any: true, specs: [], rest: ConnSet.EMPTY };
  const specs: PortSpec[] = [];
  for (const [name, num] of K8S_PROTOS) {
    const part = c.intersect(ConnSet.protocol(num));
    if (part.isEmpty()) continue;
    for (const [lo0, hi] of part.entries()[0].ranges) {
      if (lo0 === 0 && hi === 65535) {
        specs.push({ protocol: name });
        continue;
      }
      const lo = Math.max(1, lo0);
      if (lo > hi) continue;
      specs.push(lo === hi ? { protocol: name, port: lo } : { protocol: name, port: lo, endPort: hi });
    }
  }
  return { any: false, specs, rest: c.subtract(PORT_PROTOCOLS) };
}
