/**
 * The `calico` target: Calico v3 (projectcalico.org/v3) policies in a tier of
 * their own.
 *
 * - One Tier (`bulkhead` by default). Calico evaluates a tier's policies by
 *   `order`, rules in order, first match; overrides get orders 100, 101, …
 *   in their order, deny rules 1000, allow rules 2000, and a default-deny
 *   policy 10000, so a pod selected by the tier and matched by no rule is
 *   denied at the end of the tier.
 * - Pods in `enforce` mode get NetworkPolicy (one namespace) or
 *   GlobalNetworkPolicy; pods in `test` mode get the Staged variants, which
 *   Calico evaluates and reports but does not enforce.
 * - Selectors are Calico's own language, so a rule's selectors are used as
 *   written when they select exactly the intended pods (`namespace` becomes
 *   `projectcalico.org/namespace`); addresses become `nets` and `notNets`,
 *   which match pods by address too, as bulkhead does.
 * - With `logDenied`, a `Log` rule comes before each `Deny` and before the
 *   default deny.
 */
import { isIcmp, protocolName, type ConnSet } from '../netset/connset.js';
import type { IpSet } from '../netset/ip.js';
import { formatSelector, parseSelector, type Labels, type Selector, type SelectorNode } from '../model/selector.js';
import type { Mode, Peer } from '../model/types.js';
import { NAMESPACE_NAME_LABEL } from './cluster.js';
import { cidrBlocks, groupNamespaces, NAMESPACE_LABEL, type EstatePod, type PodGroup } from './estate.js';
import type { LabelSelector, SelectorRequirement } from './labels.js';
import { NameSet, objectName, RULE_ANNOTATION, type Ctx, type Manifest, type RulePlan } from './plan.js';

/** The label Calico gives every workload endpoint: its namespace. */
export const CALICO_NAMESPACE_LABEL = 'projectcalico.org/namespace';

const SPAN = [0, 0] as const;

function and(exprs: SelectorNode[]): SelectorNode {
  const flat = exprs.filter((e) => e.kind !== 'all');
  return flat.length === 0 ? { kind: 'all', span: SPAN } : flat.length === 1 ? flat[0] : { kind: 'and', exprs: flat, span: SPAN };
}

function or(exprs: SelectorNode[]): SelectorNode {
  return exprs.length === 1 ? exprs[0] : { kind: 'or', exprs, span: SPAN };
}

function requirementNode(label: string, r: SelectorRequirement): SelectorNode {
  const base = { label, labelSpan: SPAN, span: SPAN };
  switch (r.operator) {
    case 'In':
      return r.values.length === 1 ? { kind: 'eq', ...base, value: r.values[0], valueSpan: SPAN } : { kind: 'in', ...base, values: [...r.values].sort(), members: [] };
    case 'NotIn':
      return r.values.length === 1 ? { kind: 'ne', ...base, value: r.values[0], valueSpan: SPAN } : { kind: 'notIn', ...base, values: [...r.values].sort(), members: [] };
    case 'Exists':
      return { kind: 'has', ...base };
    case 'DoesNotExist':
      return { kind: 'not', expr: { kind: 'has', ...base }, span: SPAN };
  }
}

function selectorNodes(s: LabelSelector, rename: (k: string) => string): SelectorNode[] {
  return [
    ...Object.entries(s.matchLabels).map(([k, v]) => requirementNode(rename(k), { key: k, operator: 'In', values: [v] })),
    ...s.matchExpressions.map((r) => requirementNode(rename(r.key), r)),
  ];
}

const HAS_NAMESPACE: SelectorNode = { kind: 'has', label: CALICO_NAMESPACE_LABEL, labelSpan: SPAN, span: SPAN };

/** Pod groups as one Calico selector over workload endpoint labels. */
export function groupsSelector(groups: readonly PodGroup[]): string {
  if (groups.length === 0) return '!all()';
  const rename = (k: string) => (k === NAMESPACE_NAME_LABEL ? CALICO_NAMESPACE_LABEL : k);
  const terms = groups.map((g) => and([...selectorNodes(g.namespaceSelector, rename), ...selectorNodes(g.podSelector, rename)]));
  const body = or(terms);
  // Only pods: a term that says no namespace would also select host endpoints.
  const pinned = groups.every((g) => g.namespaceSelector.matchExpressions.some((r) => r.operator === 'In') || Object.keys(g.namespaceSelector.matchLabels).length > 0);
  return formatSelector(pinned ? body : and([HAS_NAMESPACE, body]));
}

/** Renames the `namespace` label of a selector tree to Calico's namespace label. */
function renameNamespace(node: SelectorNode): SelectorNode {
  switch (node.kind) {
    case 'not':
      return { ...node, expr: renameNamespace(node.expr) };
    case 'and':
    case 'or':
      return { ...node, exprs: node.exprs.map(renameNamespace) };
    case 'all':
    case 'global':
      return node;
    default:
      return node.label === NAMESPACE_LABEL ? { ...node, label: CALICO_NAMESPACE_LABEL } : node;
  }
}

const endpointLabelCache = new WeakMap<EstatePod, Labels>();

/** The labels Calico sees on a pod's workload endpoint. */
function endpointLabels(p: EstatePod): Labels {
  let l = endpointLabelCache.get(p);
  if (!l) endpointLabelCache.set(p, (l = { ...p.labels, [CALICO_NAMESPACE_LABEL]: p.namespace }));
  return l;
}

/** A rule side's own selectors as one Calico selector over pods, when it has only selector and `any` peers. */
function intentSelector(peers: readonly Peer[], scope: SelectorNode): Selector | undefined {
  const terms: SelectorNode[] = [];
  for (const p of peers) {
    if (p.kind === 'any') terms.push({ kind: 'all', span: SPAN });
    else if (p.kind === 'selector') terms.push(renameNamespace(p.global ? p.selector.ast : and([p.selector.ast, scope])));
    else if (p.kind === 'workload') return undefined;
  }
  if (terms.length === 0) return undefined;
  const everyPod = terms.some((t) => t.kind === 'all' || (t.kind === 'has' && t.label === CALICO_NAMESPACE_LABEL));
  const r = parseSelector(formatSelector(everyPod ? HAS_NAMESPACE : and([HAS_NAMESPACE, or(terms)])));
  return r.ok ? r.selector : undefined;
}

/** A Calico selector for exactly these pods among the estate's, or undefined (reported) when there is none. */
function podSelector(ctx: Ctx, plan: RulePlan | readonly RulePlan[], pods: readonly EstatePod[], which?: 'from' | 'to'): string | undefined {
  const set = new Set(pods.map((p) => p.index));
  const single = Array.isArray(plan) ? undefined : (plan as RulePlan);
  if (single && which && set.size > 0) {
    const intent = intentSelector(single.rule.rule[which], single.rule.rule.scope.ast);
    if (intent && ctx.view.pods.every((p) => intent.matches(endpointLabels(p)) === set.has(p.index))) return intent.toString();
  }
  const g = ctx.groups(plan, pods, which);
  return g ? groupsSelector(g.groups) : undefined;
}

/** Calico port text: `80` or `8000:8100`. */
function portText(lo: number, hi: number): number | string {
  return lo === hi ? lo : `${lo}:${hi}`;
}

/** The protocol fields of Calico rules for a connection set: one entry per protocol (per ICMP type or type and code). */
export function calicoProtocols(c: ConnSet): Record<string, unknown>[] {
  if (c.isAny()) return [{}];
  const out: Record<string, unknown>[] = [];
  for (const { proto, ranges } of c.entries()) {
    const name = protocolName(proto);
    const whole = ranges.length === 1 && ranges[0][0] === 0 && ranges[0][1] === 65535;
    const protocol = name === 'tcp' || name === 'udp' || name === 'sctp' ? name.toUpperCase() : name === 'icmp' ? 'ICMP' : name === 'icmpv6' ? 'ICMPv6' : proto;
    if (whole) {
      out.push({ protocol });
      continue;
    }
    if (isIcmp(proto)) {
      for (const [lo, hi] of ranges) {
        for (let t = lo >>> 8; t <= hi >>> 8; t++) {
          const c0 = t === lo >>> 8 ? lo & 255 : 0;
          const c1 = t === hi >>> 8 ? hi & 255 : 255;
          if (c0 === 0 && c1 === 255) out.push({ protocol, icmp: { type: t } });
          else for (let code = c0; code <= c1; code++) out.push({ protocol, icmp: { type: t, code } });
        }
      }
      continue;
    }
    const ports = ranges.filter(([, hi]) => hi >= 1).map(([lo, hi]) => portText(Math.max(1, lo), hi));
    if (ports.length > 0) out.push({ protocol, ports });
  }
  return out;
}

/** Entity rules for a peer side: the pods' selector, and the addresses as nets (with notNets). */
function entities(podSel: string | undefined, ips: IpSet, namespaced: boolean): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  if (podSel !== undefined) out.push(namespaced ? { selector: podSel, namespaceSelector: 'all()' } : { selector: podSel });
  const blocks = cidrBlocks(ips);
  const plain = blocks.filter((b) => b.except.length === 0).map((b) => b.cidr);
  if (plain.length > 0) out.push({ nets: plain });
  for (const b of blocks) if (b.except.length > 0) out.push({ nets: [b.cidr], notNets: [...b.except] });
  return out;
}

/** Emits the Calico target. */
export function compileCalico(ctx: Ctx): Manifest[] {
  const tier = ctx.options.tier ?? 'bulkhead';
  const out: Manifest[] = [{ apiVersion: 'projectcalico.org/v3', kind: 'Tier', metadata: { name: tier, labels: { 'app.kubernetes.io/managed-by': 'bulkhead' } }, spec: { order: ctx.options.tierOrder ?? 100 } }];
  const names = new NameSet();
  const log = ctx.options.logDenied === true;
  const modes: readonly [Mode, boolean][] = [
    ['enforce', false],
    ['test', true],
  ];

  const policy = (staged: boolean, nsOf: readonly string[], name: string, rules: string, spec: Record<string, unknown>): Manifest => {
    const namespaced = nsOf.length === 1;
    const kind = `${staged ? 'Staged' : ''}${namespaced ? '' : 'Global'}NetworkPolicy`;
    return {
      apiVersion: 'projectcalico.org/v3',
      kind,
      metadata: { name: names.take(`${tier}.${name}`, namespaced ? nsOf[0] : ''), ...(namespaced ? { namespace: nsOf[0] } : {}), labels: { 'app.kubernetes.io/managed-by': 'bulkhead' }, annotations: { [RULE_ANNOTATION]: rules } },
      spec: { ...(staged ? { stagedAction: 'Set' } : {}), tier, ...spec },
    };
  };

  for (const plan of ctx.plans()) {
    const r = plan.rule.rule;
    const order = r.tier === 'override' ? 100 + r.order : r.tier === 'deny' ? 1000 : 2000;
    const action = r.action === 'allow' ? 'Allow' : 'Deny';
    for (const dir of ['egress', 'ingress'] as const) {
      const own = dir === 'egress' ? plan.from : plan.to;
      const other = dir === 'egress' ? plan.to : plan.from;
      for (const [mode, staged] of modes) {
        const subjects = ctx.subjects(own, [mode]);
        if (subjects.length === 0) continue;
        const peerSel = other.pods.length > 0 ? podSelector(ctx, plan, other.pods, dir === 'egress' ? 'to' : 'from') : undefined;
        if (other.pods.length > 0 && peerSel === undefined) continue;
        const subjectSel = podSelector(ctx, plan, subjects, dir === 'egress' ? 'from' : 'to');
        if (subjectSel === undefined) continue;
        const nsOf = [...new Set(subjects.map((p) => p.namespace))];
        const ents = entities(peerSel, other.ips, nsOf.length === 1);
        if (ents.length === 0) continue;
        const rules: Record<string, unknown>[] = [];
        for (const proto of calicoProtocols(plan.conns)) {
          const { ports, ...l4 } = proto;
          for (const e of ents) {
            const match = dir === 'egress' ? { ...l4, destination: { ...e, ...(ports ? { ports } : {}) } } : { ...l4, source: e, ...(ports ? { destination: { ports } } : {}) };
            if (action === 'Deny' && log) rules.push({ action: 'Log', ...match });
            rules.push({ action, ...match });
          }
        }
        out.push(policy(staged, nsOf, objectName(`${plan.id}-${dir}`), plan.id, { order, selector: subjectSel, types: [dir === 'egress' ? 'Egress' : 'Ingress'], [dir]: rules }));
      }
    }
  }

  // Default deny at the end of the tier, for every pod the tier enforces (or stages).
  for (const [mode, staged] of modes) {
    const pods = ctx.view.pods.filter((p) => p.managed && p.mode === mode);
    if (pods.length === 0) continue;
    const g = ctx.groups([], pods);
    if (!g) continue;
    const nsOf = g.groups.length === 1 ? groupNamespaces(g.groups[0], pods) : [];
    const rules = log ? [{ action: 'Log' }] : [];
    out.push(policy(staged, nsOf, 'default-deny', 'default deny', { order: 10000, selector: groupsSelector(g.groups), types: ['Ingress', 'Egress'], ingress: rules, egress: rules }));
  }
  return out;
}
