/**
 * The `k8s` target: Kubernetes NetworkPolicy (networking.k8s.io/v1) with
 * AdminNetworkPolicy (policy.networking.k8s.io/v1alpha1) where deny or order
 * is needed.
 *
 * - Pods in `enforce` mode are the subjects. Every one of them is isolated in
 *   both directions by a default-deny NetworkPolicy of its namespace; pods in
 *   other modes are left open (Kubernetes has no test mode, and bulkhead lets
 *   test-mode traffic through).
 * - Allow rules become NetworkPolicies (allow lists, a union), one per
 *   direction, subject group and namespace.
 * - Overrides, in order, then deny rules become AdminNetworkPolicies with
 *   increasing priority: an ANP `Allow` or `Deny` decides before any
 *   NetworkPolicy, and the lower priority number first.
 * - AdminNetworkPolicy ingress peers cannot be addresses. When an override or
 *   deny rule speaks of addresses toward pods on ingress, the address part of
 *   every rule's ingress is worked out instead, per group of pods that the
 *   rules treat alike, and written as NetworkPolicy `ipBlock`s with `except`.
 */
import { ConnSet } from '../netset/connset.js';
import { formatPrefix, IpSet } from '../netset/ip.js';
import { q } from '../model/diagnostic.js';
import { NAMESPACE_NAME_LABEL } from './cluster.js';
import { cidrBlocks, groupNamespaces, portSpecs, type EstatePod, type PodGroup, type PortSpec } from './estate.js';
import { isEverything, type LabelSelector } from './labels.js';
import { NameSet, objectName, RULE_ANNOTATION, type Ctx, type Manifest, type RulePlan } from './plan.js';

/** The label on every generated object. */
const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'bulkhead' };

/** A label selector as Kubernetes writes it (empty parts left out). */
export function selectorJson(s: LabelSelector): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (Object.keys(s.matchLabels).length > 0) out.matchLabels = { ...s.matchLabels };
  if (s.matchExpressions.length > 0) out.matchExpressions = s.matchExpressions.map((r) => (r.operator === 'In' || r.operator === 'NotIn' ? { key: r.key, operator: r.operator, values: [...r.values] } : { key: r.key, operator: r.operator }));
  return out;
}

function npPorts(specs: readonly PortSpec[]): Record<string, unknown>[] {
  return specs.map((s) => (s.port === undefined ? { protocol: s.protocol } : s.endPort === undefined ? { protocol: s.protocol, port: s.port } : { protocol: s.protocol, port: s.port, endPort: s.endPort }));
}

function anpPorts(specs: readonly PortSpec[]): Record<string, unknown>[] {
  return specs.map((s) =>
    s.port === undefined
      ? { portRange: { protocol: s.protocol, start: 1, end: 65535 } }
      : s.endPort === undefined
        ? { portNumber: { protocol: s.protocol, port: s.port } }
        : { portRange: { protocol: s.protocol, start: s.port, end: s.endPort } },
  );
}

function npPeer(g: PodGroup): Record<string, unknown> {
  return { namespaceSelector: selectorJson(g.namespaceSelector), podSelector: selectorJson(g.podSelector) };
}

function ipBlockPeers(ips: IpSet): Record<string, unknown>[] {
  return cidrBlocks(ips).map((b) => ({ ipBlock: b.except.length > 0 ? { cidr: b.cidr, except: [...b.except] } : { cidr: b.cidr } }));
}

function anpPeer(g: PodGroup): Record<string, unknown> {
  if (isEverything(g.podSelector)) return { namespaces: selectorJson(g.namespaceSelector) };
  return { pods: { namespaceSelector: selectorJson(g.namespaceSelector), podSelector: selectorJson(g.podSelector) } };
}

/** ANP `networks` peers: the set's prefixes, at most 25 per peer. */
function networkPeers(ips: IpSet): Record<string, unknown>[] {
  const cidrs = ips.toPrefixes().map(formatPrefix);
  const out: Record<string, unknown>[] = [];
  for (let i = 0; i < cidrs.length; i += 25) out.push({ networks: cidrs.slice(i, i + 25) });
  return out;
}

/** Emits the Kubernetes target. */
export function compileK8s(ctx: Ctx): Manifest[] {
  const view = ctx.view;
  const isEnforced = (p: EstatePod) => p.managed && p.mode === 'enforce';
  const out: Manifest[] = [];
  const npNames = new NameSet();
  const npName = (ns: string, base: string) => npNames.take(base, ns);
  const anpNames = new NameSet();
  let priority = ctx.options.priorityBase ?? 10;

  const open = view.pods.filter((p) => p.managed && p.mode === 'test').length;
  if (open > 0) ctx.diags.warning('BH901', `${open} ${open === 1 ? 'pod is' : 'pods are'} in test mode and left open`, undefined, 'Kubernetes NetworkPolicy has no test mode; bulkhead lets test-mode traffic through, so these pods get no policy');

  // Rules that concern an enforced pod, with connections the target can say.
  const plans: RulePlan[] = [];
  for (const plan of ctx.plans()) {
    if (!plan.from.pods.some(isEnforced) && !plan.to.pods.some(isEnforced)) continue;
    const ps = portSpecs(plan.conns);
    if (!ps.rest.isEmpty()) {
      if (!ctx.cannot(plan, `connections ${q(ps.rest.toString())} cannot be expressed`, 'Kubernetes policies speak of TCP, UDP and SCTP ports only')) continue;
      plan.conns = plan.conns.subtract(ps.rest);
      if (plan.conns.isEmpty()) continue;
    }
    plans.push(plan);
  }
  const addressIngress = (p: RulePlan) => !p.from.ips.isEmpty() && p.to.pods.some(isEnforced);
  const cells = plans.some((p) => p.rule.rule.action === 'deny' || p.rule.rule.tier === 'override' ? addressIngress(p) : false);

  const meta = (name: string, ns: string | undefined, rules: string) => ({ name, ...(ns ? { namespace: ns } : {}), labels: { ...MANAGED_BY }, annotations: { [RULE_ANNOTATION]: rules } });
  const ports = (c: ConnSet) => (c.isAny() ? {} : { ports: npPorts(portSpecs(c).specs) });

  for (const plan of plans) {
    const admin = plan.rule.rule.tier !== 'allow';
    for (const dir of ['egress', 'ingress'] as const) {
      const own = dir === 'egress' ? plan.from : plan.to;
      const other = dir === 'egress' ? plan.to : plan.from;
      const subjects = own.pods.filter(isEnforced);
      if (subjects.length === 0) continue;
      const peerGroups = ctx.groups(plan, other.pods, dir === 'egress' ? 'to' : 'from');
      const subjectGroups = peerGroups && ctx.groups(plan, subjects, dir === 'egress' ? 'from' : 'to');
      if (!peerGroups || !subjectGroups) continue;
      // Addresses on ingress: in the rule itself, unless they are worked out per group of pods below.
      const ips = dir === 'ingress' && cells ? IpSet.EMPTY : other.ips;
      if (peerGroups.groups.length === 0 && ips.isEmpty()) continue;
      const base = objectName(`${plan.id}-${dir}`);
      if (!admin) {
        const peers = [...peerGroups.groups.map(npPeer), ...ipBlockPeers(ips)];
        for (const g of subjectGroups.groups) {
          for (const ns of groupNamespaces(g, subjects)) {
            out.push({
              apiVersion: 'networking.k8s.io/v1',
              kind: 'NetworkPolicy',
              metadata: meta(npName(ns, base), ns, plan.id),
              spec: {
                podSelector: selectorJson(g.podSelector),
                policyTypes: [dir === 'egress' ? 'Egress' : 'Ingress'],
                [dir]: [{ [dir === 'egress' ? 'to' : 'from']: peers, ...ports(plan.conns) }],
              },
            });
          }
        }
        continue;
      }
      // ANP: ingress peers are pods only (addresses were handled above); egress peers may be networks.
      const peers = [...peerGroups.groups.map(anpPeer), ...(dir === 'egress' ? networkPeers(ips) : [])];
      if (peers.length === 0) continue;
      const action = plan.rule.rule.action === 'allow' ? 'Allow' : 'Deny';
      for (const g of subjectGroups.groups) {
        if (priority > 1000) {
          ctx.cannot(plan, 'needs an AdminNetworkPolicy priority above 1000', 'there are too many overrides and deny rules for pods, or their subjects need too many selectors');
          break;
        }
        out.push({
          apiVersion: 'policy.networking.k8s.io/v1alpha1',
          kind: 'AdminNetworkPolicy',
          metadata: meta(anpNames.take(base), undefined, plan.id),
          spec: {
            priority: priority++,
            subject: isEverything(g.podSelector) ? { namespaces: selectorJson(g.namespaceSelector) } : { pods: { namespaceSelector: selectorJson(g.namespaceSelector), podSelector: selectorJson(g.podSelector) } },
            [dir]: [{ name: plan.id.slice(0, 100), action, [dir === 'egress' ? 'to' : 'from']: peers, ...(plan.conns.isAny() ? {} : { ports: anpPorts(portSpecs(plan.conns).specs) }) }],
          },
        });
      }
    }
  }

  if (cells) out.push(...addressCells(ctx, plans.filter(addressIngress), isEnforced, npName, meta));

  // Default deny: every enforced pod is isolated in both directions.
  const enforced = view.pods.filter(isEnforced);
  const dd = ctx.groups([], enforced);
  if (dd) {
    for (const g of dd.groups) {
      for (const ns of groupNamespaces(g, enforced)) {
        out.push({
          apiVersion: 'networking.k8s.io/v1',
          kind: 'NetworkPolicy',
          metadata: meta(npName(ns, 'bulkhead-default-deny'), ns, 'default deny'),
          spec: { podSelector: selectorJson(g.podSelector), policyTypes: ['Ingress', 'Egress'] },
        });
      }
    }
  }
  return out;
}

/**
 * The address part of ingress, when overrides or deny rules speak of
 * addresses: pods are grouped by which of these rules hold them on ingress;
 * per group, the connection space is cut by the rules' connections, each piece
 * is decided over addresses by the tiers (overrides first-match, then deny,
 * then allow), and pieces allowed from the same addresses are merged.
 */
function addressCells(
  ctx: Ctx,
  rules: readonly RulePlan[],
  isEnforced: (p: EstatePod) => boolean,
  npName: (ns: string, base: string) => string,
  meta: (name: string, ns: string | undefined, rules: string) => Record<string, unknown>,
): Manifest[] {
  const out: Manifest[] = [];
  const bySig = new Map<string, { pods: EstatePod[]; rules: RulePlan[] }>();
  const holds = rules.map((r) => new Set(r.to.pods.map((p) => p.index)));
  for (const p of ctx.view.pods) {
    if (!isEnforced(p)) continue;
    const sig = rules.map((_, i) => (holds[i].has(p.index) ? '1' : '0')).join('');
    if (!sig.includes('1')) continue;
    let cell = bySig.get(sig);
    if (!cell) bySig.set(sig, (cell = { pods: [], rules: rules.filter((_, i) => holds[i].has(p.index)) }));
    cell.pods.push(p);
  }
  let n = 0;
  for (const cell of bySig.values()) {
    n++;
    const groups = ctx.groups(cell.rules, cell.pods);
    if (!groups) continue;
    // Cut the connection space where any rule's connections start or end; each piece is one membership pattern.
    const cuts = new Set<number>([0]);
    for (const r of cell.rules) {
      const b = r.conns.boundaries();
      for (let i = 0; i < b.length; i += 2) {
        cuts.add(b[i]);
        if (b[i + 1] < ConnSet.MAX_KEY) cuts.add(b[i + 1] + 1);
      }
    }
    const byAddresses = new Map<string, { ips: IpSet; conns: ConnSet }>();
    const seen = new Set<string>();
    for (const k of cuts) {
      const inside = cell.rules.map((r) => r.conns.hasKey(k));
      const pattern = inside.map((x) => (x ? '1' : '0')).join('');
      if (seen.has(pattern)) continue;
      seen.add(pattern);
      let piece = ConnSet.ANY;
      cell.rules.forEach((r, i) => (piece = inside[i] ? piece.intersect(r.conns) : piece.subtract(r.conns)));
      let remaining = IpSet.ALL;
      let allowed = IpSet.EMPTY;
      const active = cell.rules.filter((_, i) => inside[i]);
      for (const r of active.filter((x) => x.rule.rule.tier === 'override')) {
        if (r.rule.rule.action === 'allow') allowed = allowed.union(remaining.intersect(r.from.ips));
        remaining = remaining.subtract(r.from.ips);
      }
      for (const r of active.filter((x) => x.rule.rule.tier === 'deny')) remaining = remaining.subtract(r.from.ips);
      for (const r of active.filter((x) => x.rule.rule.tier === 'allow')) allowed = allowed.union(remaining.intersect(r.from.ips));
      if (allowed.isEmpty() || piece.isEmpty()) continue;
      const key = allowed.toString();
      const e = byAddresses.get(key);
      if (e) e.conns = e.conns.union(piece);
      else byAddresses.set(key, { ips: allowed, conns: piece });
    }
    const ingress: Record<string, unknown>[] = [];
    for (const { ips, conns } of byAddresses.values()) {
      const ps = portSpecs(conns);
      if (!ps.any && !ps.rest.isEmpty()) {
        const involved = cell.rules.filter((r) => r.conns.overlaps(ps.rest));
        if (!ctx.cannot(involved, `from addresses, connections ${q(ps.rest.toString())} cannot be expressed next to the deny rules`, 'a NetworkPolicy lists TCP, UDP and SCTP ports, or allows every protocol')) continue;
      }
      if (!ps.any && ps.specs.length === 0) continue;
      ingress.push({ from: ipBlockPeers(ips), ...(ps.any ? {} : { ports: npPorts(ps.specs) }) });
    }
    if (ingress.length === 0) continue;
    const ids = cell.rules.map((r) => r.id).join(', ');
    for (const g of groups.groups) {
      for (const ns of groupNamespaces(g, cell.pods)) {
        out.push({
          apiVersion: 'networking.k8s.io/v1',
          kind: 'NetworkPolicy',
          metadata: meta(npName(ns, `bulkhead-ingress-addresses-${n}`), ns, ids),
          spec: { podSelector: selectorJson(g.podSelector), policyTypes: ['Ingress'], ingress },
        });
      }
    }
  }
  return out;
}

/** Pods and Namespaces of the estate as manifests (for analysis of the compiled policy). */
export function estateManifests(ctx: Pick<Ctx, 'view'>): Manifest[] {
  const out: Manifest[] = ctx.view.namespaces.map((ns) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { [NAMESPACE_NAME_LABEL]: ns } } }));
  for (const p of ctx.view.pods) {
    out.push({ apiVersion: 'v1', kind: 'Pod', metadata: { name: objectName(p.workload.name), namespace: p.namespace, labels: { ...p.labels } }, spec: { containers: [{ name: 'main', image: 'scratch' }] } });
  }
  return out;
}
