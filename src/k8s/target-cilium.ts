/**
 * The `cilium` target: CiliumNetworkPolicy (one namespace) and
 * CiliumClusterwideNetworkPolicy (cilium.io/v2).
 *
 * - Pods in `enforce` mode are the subjects; each is put in default-deny for
 *   both directions by a policy with an empty rule. Pods in other modes are
 *   left open (Cilium's audit mode is per endpoint, not per policy).
 * - Allow rules become `ingress`/`egress` rules and deny rules
 *   `ingressDeny`/`egressDeny`: in Cilium a deny always beats an allow, as a
 *   bulkhead deny rule does.
 * - Cilium has no order between rules, so an allow override is only
 *   expressible when no later deny (override or deny rule) overlaps it; an
 *   overlapping one is reported and fails the compilation.
 * - Pods are selected by `endpointSelector`/`toEndpoints` with the namespace
 *   label `k8s:io.kubernetes.pod.namespace`; addresses by `toCIDRSet` with
 *   `except`. Ports are TCP, UDP, SCTP ports and ICMP types (no ICMP codes,
 *   no other protocols).
 */
import { ConnSet, PROTOCOLS } from '../netset/connset.js';
import type { IpSet } from '../netset/ip.js';
import { q } from '../model/diagnostic.js';
import { NAMESPACE_NAME_LABEL } from './cluster.js';
import { cidrBlocks, groupNamespaces, portSpecs, type EstatePod, type PodGroup } from './estate.js';
import type { LabelSelector } from './labels.js';
import { NameSet, objectName, RULE_ANNOTATION, type Ctx, type Manifest, type RulePlan } from './plan.js';
import { selectorJson } from './target-k8s.js';

/** The label Cilium gives every endpoint: its pod's namespace. */
export const CILIUM_NAMESPACE_LABEL = 'k8s:io.kubernetes.pod.namespace';

/** Whether a namespace selector names the namespaces (so it only selects pods). */
function pinned(s: LabelSelector): boolean {
  return Object.keys(s.matchLabels).length > 0 || s.matchExpressions.some((r) => r.operator === 'In');
}

/** A pod group as one Cilium endpoint selector; `withNamespace` says the namespace even when any. */
function endpointSelector(g: PodGroup, withNamespace: boolean): Record<string, unknown> {
  const ns: LabelSelector = {
    matchLabels: Object.fromEntries(Object.entries(g.namespaceSelector.matchLabels).map(([k, v]) => [k === NAMESPACE_NAME_LABEL ? CILIUM_NAMESPACE_LABEL : k, v])),
    matchExpressions: [
      ...g.namespaceSelector.matchExpressions.map((r) => ({ ...r, key: r.key === NAMESPACE_NAME_LABEL ? CILIUM_NAMESPACE_LABEL : r.key })),
      ...(withNamespace && !pinned(g.namespaceSelector) ? [{ key: CILIUM_NAMESPACE_LABEL, operator: 'Exists' as const, values: [] }] : []),
    ],
  };
  return selectorJson({ matchLabels: { ...ns.matchLabels, ...g.podSelector.matchLabels }, matchExpressions: [...ns.matchExpressions, ...g.podSelector.matchExpressions] });
}

/** The L4 parts of Cilium rules for a connection set, or what cannot be said. */
export function ciliumL4(c: ConnSet): { parts: Record<string, unknown>[]; rest: ConnSet } {
  if (c.isAny()) return { parts: [{}], rest: ConnSet.EMPTY };
  const ps = portSpecs(c);
  const parts: Record<string, unknown>[] = [];
  if (ps.specs.length > 0) {
    parts.push({ toPorts: [{ ports: ps.specs.map((s) => (s.port === undefined ? { port: '0', protocol: s.protocol } : s.endPort === undefined ? { port: String(s.port), protocol: s.protocol } : { port: String(s.port), endPort: s.endPort, protocol: s.protocol })) }] });
  }
  // ICMP: whole types only.
  let rest = ConnSet.EMPTY;
  const fields: Record<string, unknown>[] = [];
  for (const { proto, ranges } of ps.rest.entries()) {
    const family = proto === PROTOCOLS.icmp ? 'IPv4' : proto === PROTOCOLS.icmpv6 ? 'IPv6' : undefined;
    if (!family) {
      rest = rest.union(ConnSet.protocol(proto));
      continue;
    }
    for (const [lo, hi] of ranges) {
      for (let t = lo >>> 8; t <= hi >>> 8; t++) {
        const all = (t > lo >>> 8 || (lo & 255) === 0) && (t < hi >>> 8 || (hi & 255) === 255);
        if (all) fields.push({ type: t, family });
        else rest = rest.union(ConnSet.icmp(proto, t).intersect(c));
      }
    }
  }
  for (let i = 0; i < fields.length; i += 40) parts.push({ icmps: [{ fields: fields.slice(i, i + 40) }] });
  return { parts, rest };
}

/** Peer fields: endpoints and CIDR sets (one entry each, Cilium ORs the rules). */
function peers(dir: 'ingress' | 'egress', groups: readonly PodGroup[], ips: IpSet): Record<string, unknown>[] {
  const pre = dir === 'ingress' ? 'from' : 'to';
  const out: Record<string, unknown>[] = [];
  if (groups.length > 0) out.push({ [`${pre}Endpoints`]: groups.map((g) => endpointSelector(g, true)) });
  const blocks = cidrBlocks(ips);
  if (blocks.length > 0) out.push({ [`${pre}CIDRSet`]: blocks.map((b) => (b.except.length > 0 ? { cidr: b.cidr, except: [...b.except] } : { cidr: b.cidr })) });
  return out;
}

/** Whether two rule plans can meet on one side: a subject pod in both, a peer in both, a connection in both. */
function overlap(a: RulePlan, b: RulePlan, isEnforced: (p: EstatePod) => boolean): boolean {
  if (!a.conns.overlaps(b.conns)) return false;
  const meets = (x: readonly EstatePod[], y: readonly EstatePod[]) => x.some((p) => y.includes(p));
  const egress = meets(a.from.pods.filter(isEnforced), b.from.pods) && (meets(a.to.pods, b.to.pods) || a.to.ips.overlaps(b.to.ips));
  const ingress = meets(a.to.pods.filter(isEnforced), b.to.pods) && (meets(a.from.pods, b.from.pods) || a.from.ips.overlaps(b.from.ips));
  return egress || ingress;
}

/** Emits the Cilium target. */
export function compileCilium(ctx: Ctx): Manifest[] {
  const isEnforced = (p: EstatePod) => p.managed && p.mode === 'enforce';
  const out: Manifest[] = [];
  const names = new NameSet();
  const open = ctx.view.pods.filter((p) => p.managed && p.mode === 'test').length;
  if (open > 0) ctx.diags.warning('BH901', `${open} ${open === 1 ? 'pod is' : 'pods are'} in test mode and left open`, undefined, 'Cilium policies have no test mode (audit mode is set per endpoint); bulkhead lets test-mode traffic through, so these pods get no policy');

  const plans = ctx.plans().filter((p) => p.from.pods.some(isEnforced) || p.to.pods.some(isEnforced));
  // An allow override is first-match in bulkhead; in Cilium any overlapping deny wins.
  const skip = new Set<RulePlan>();
  plans.forEach((p, i) => {
    if (p.rule.rule.tier !== 'override' || p.rule.rule.action !== 'allow') return;
    const later = plans.slice(i + 1).find((d) => d.rule.rule.action === 'deny' && overlap(p, d, isEnforced));
    if (!later) return;
    ctx.cannot(p, `an allow override cannot come before the deny rule ${q(later.id)} in Cilium`, 'Cilium has no rule order: a deny always wins; narrow the override or the deny rule so that they do not overlap');
    skip.add(p);
  });

  const object = (nsOf: readonly string[], name: string, rules: string, spec: Record<string, unknown>): Manifest => {
    const namespaced = nsOf.length === 1;
    return {
      apiVersion: 'cilium.io/v2',
      kind: namespaced ? 'CiliumNetworkPolicy' : 'CiliumClusterwideNetworkPolicy',
      metadata: { name: names.take(name, namespaced ? nsOf[0] : ''), ...(namespaced ? { namespace: nsOf[0] } : {}), labels: { 'app.kubernetes.io/managed-by': 'bulkhead' }, annotations: { [RULE_ANNOTATION]: rules } },
      spec,
    };
  };

  for (const plan of plans) {
    if (skip.has(plan)) continue;
    const l4 = ciliumL4(plan.conns);
    if (!l4.rest.isEmpty()) {
      if (!ctx.cannot(plan, `connections ${q(l4.rest.toString())} cannot be expressed`, 'Cilium speaks of TCP, UDP and SCTP ports and of whole ICMP types')) continue;
      if (l4.parts.length === 0) continue;
    }
    const deny = plan.rule.rule.action === 'deny';
    for (const dir of ['egress', 'ingress'] as const) {
      const own = dir === 'egress' ? plan.from : plan.to;
      const other = dir === 'egress' ? plan.to : plan.from;
      const subjects = own.pods.filter(isEnforced);
      if (subjects.length === 0) continue;
      const peerGroups = ctx.groups(plan, other.pods, dir === 'egress' ? 'to' : 'from');
      const subjectGroups = peerGroups && ctx.groups(plan, subjects, dir === 'egress' ? 'from' : 'to');
      if (!peerGroups || !subjectGroups) continue;
      const ps = peers(dir, peerGroups.groups, other.ips);
      if (ps.length === 0) continue;
      const rules = ps.flatMap((p) => l4.parts.map((l) => ({ ...p, ...l })));
      for (const g of subjectGroups.groups) {
        const nsOf = groupNamespaces(g, subjects);
        out.push(object(nsOf, objectName(`${plan.id}-${dir}`), plan.id, { endpointSelector: endpointSelector(g, nsOf.length !== 1), [deny ? `${dir}Deny` : dir]: rules }));
      }
    }
  }

  // Default deny: an empty rule per direction puts the pods in default-deny mode.
  const enforced = ctx.view.pods.filter(isEnforced);
  const dd = ctx.groups([], enforced);
  if (dd) {
    for (const g of dd.groups) {
      for (const ns of groupNamespaces(g, enforced)) {
        out.push(object([ns], 'bulkhead-default-deny', 'default deny', { endpointSelector: endpointSelector(g, false), ingress: [{}], egress: [{}] }));
      }
    }
  }
  return out;
}
