/**
 * The connectivity of a Kubernetes cluster under its NetworkPolicies,
 * AdminNetworkPolicies and BaselineAdminNetworkPolicy, as np-guard computes it
 * (`pkg/netpol/eval/check.go`, `allAllowedXgressConnections`).
 *
 * A connection from A to B is allowed when A's egress and B's ingress both
 * allow it; an IP address end constrains nothing on its own side. Each side
 * is decided in three layers:
 *
 * 1. AdminNetworkPolicies selecting the pod for the direction, by ascending
 *    priority, rules in order: the first matching rule decides Allow, Deny or
 *    Pass per connection.
 * 2. If any NetworkPolicy isolates the pod for the direction: what the ANPs
 *    allowed, plus what the NetworkPolicies' rules allow (a union) less what
 *    the ANPs denied.
 * 3. Otherwise: what the ANPs allowed, plus everything neither the ANPs
 *    decided nor the BaselineAdminNetworkPolicy denies (its rules too are
 *    first-match).
 */
import { ConnSet } from '../netset/connset.js';
import type { IpSet } from '../netset/ip.js';
import type { Labels } from '../model/selector.js';
import { NAMESPACE_NAME_LABEL, type AdminPeer, type AdminPolicy, type AdminPort, type AdminRule, type Cluster, type K8sWorkload, type NetworkPolicy, type NpPeer, type NpPort } from './cluster.js';
import { K8S_ALL, portConns, protocolConns } from './conns.js';
import { selectorMatches } from './labels.js';

/** One end of a connection: a workload, or a block of addresses outside the cluster. */
export type AnalysisPeer = { readonly kind: 'workload'; readonly workload: K8sWorkload } | { readonly kind: 'ip'; readonly set: IpSet };

/** What the admin layer decided for one side: connections allowed, denied and passed. */
interface AdminDecision {
  allowed: ConnSet;
  denied: ConnSet;
  passed: ConnSet;
}

/** Adds a rule's connections to a first-match decision: what earlier rules decided stays. */
function decide(d: AdminDecision, conns: ConnSet, action: AdminRule['action']): void {
  const fresh = conns.subtract(d.allowed).subtract(d.denied).subtract(d.passed);
  if (fresh.isEmpty()) return;
  if (action === 'Allow') d.allowed = d.allowed.union(fresh);
  else if (action === 'Deny') d.denied = d.denied.union(fresh);
  else d.passed = d.passed.union(fresh);
}

/**
 * Answers connectivity questions about one cluster. Pure; build once per
 * cluster.
 */
export class Analyzer {
  constructor(readonly cluster: Cluster) {}

  /** The labels of a namespace (every namespace has at least its name label). */
  namespaceLabels(ns: string): Labels {
    return this.cluster.namespaces.get(ns) ?? { [NAMESPACE_NAME_LABEL]: ns };
  }

  /** The connections allowed from `src` to `dst`: src's egress intersected with dst's ingress. Both IP: everything. */
  allowed(src: AnalysisPeer, dst: AnalysisPeer): ConnSet {
    let res = K8S_ALL;
    if (src.kind === 'workload') res = this.xgress(src.workload, dst, false);
    if (res.isEmpty()) return res;
    if (dst.kind === 'workload') res = res.intersect(this.xgress(dst.workload, src, true));
    return res;
  }

  /** What `subject` allows on one side toward (egress) or from (ingress) `peer`. */
  xgress(subject: K8sWorkload, peer: AnalysisPeer, ingress: boolean): ConnSet {
    // Named ports are resolved on the destination pod: the subject on ingress, the peer on egress.
    const dst = ingress ? subject : peer.kind === 'workload' ? peer.workload : undefined;
    const anp: AdminDecision = { allowed: ConnSet.EMPTY, denied: ConnSet.EMPTY, passed: ConnSet.EMPTY };
    for (const p of this.cluster.adminPolicies) {
      if (!this.subjectSelects(p, subject)) continue;
      // One policy's rules are first-match among themselves, and the policy as a whole comes after higher-priority ones.
      const own: AdminDecision = { allowed: ConnSet.EMPTY, denied: ConnSet.EMPTY, passed: ConnSet.EMPTY };
      for (const rule of ingress ? p.ingress : p.egress) {
        if (rule.peers.some((x) => this.adminPeerMatches(x, peer))) decide(own, this.adminConns(rule.ports, dst), rule.action);
      }
      decide(anp, own.allowed, 'Allow');
      decide(anp, own.denied, 'Deny');
      decide(anp, own.passed, 'Pass');
    }
    // Everything decided by the admin policies: the lower layers cannot change it.
    if (K8S_ALL.isSubset(anp.allowed.union(anp.denied))) return anp.allowed.intersect(K8S_ALL);

    const policies = this.cluster.networkPolicies.filter((np) => this.npSelects(np, subject, ingress));
    if (policies.length > 0) {
      let np = ConnSet.EMPTY;
      for (const p of policies) {
        for (const rule of ingress ? p.ingress : p.egress) {
          if (rule.peers.length === 0 || rule.peers.some((x) => this.npPeerMatches(p, x, peer))) np = np.union(this.npConns(rule.ports, dst));
        }
      }
      return anp.allowed.union(np.subtract(anp.denied)).intersect(K8S_ALL);
    }

    let banpDenied = ConnSet.EMPTY;
    const b = this.cluster.baselinePolicy;
    if (b && this.subjectSelects(b, subject)) {
      const own: AdminDecision = { allowed: ConnSet.EMPTY, denied: ConnSet.EMPTY, passed: ConnSet.EMPTY };
      for (const rule of ingress ? b.ingress : b.egress) {
        if (rule.peers.some((x) => this.adminPeerMatches(x, peer))) decide(own, this.adminConns(rule.ports, dst), rule.action);
      }
      banpDenied = own.denied;
    }
    return anp.allowed.union(K8S_ALL.subtract(anp.allowed).subtract(anp.denied).subtract(banpDenied)).intersect(K8S_ALL);
  }

  /** Whether a NetworkPolicy isolates the workload's pods for the direction. */
  npSelects(np: NetworkPolicy, w: K8sWorkload, ingress: boolean): boolean {
    if (np.namespace !== w.namespace) return false;
    if (!(ingress ? np.ingressIsolation : np.egressIsolation)) return false;
    return selectorMatches(np.podSelector, w.labels);
  }

  /** Whether an (B)ANP's subject selects the workload's pods. */
  subjectSelects(p: AdminPolicy, w: K8sWorkload): boolean {
    return selectorMatches(p.subject.namespaceSelector, this.namespaceLabels(w.namespace)) && selectorMatches(p.subject.podSelector, w.labels);
  }

  private npPeerMatches(np: NetworkPolicy, x: NpPeer, peer: AnalysisPeer): boolean {
    if (x.kind === 'ipBlock') return peer.kind === 'ip' && peer.set.isSubset(x.set);
    if (peer.kind !== 'workload') return false;
    const w = peer.workload;
    const nsOk = x.namespaceSelector === undefined ? w.namespace === np.namespace : selectorMatches(x.namespaceSelector, this.namespaceLabels(w.namespace));
    return nsOk && (x.podSelector === undefined || selectorMatches(x.podSelector, w.labels));
  }

  private adminPeerMatches(x: AdminPeer, peer: AnalysisPeer): boolean {
    if (x.kind === 'networks') return peer.kind === 'ip' && !peer.set.isEmpty() && peer.set.isSubset(x.set);
    if (peer.kind !== 'workload') return false;
    return selectorMatches(x.namespaceSelector, this.namespaceLabels(peer.workload.namespace)) && selectorMatches(x.podSelector, peer.workload.labels);
  }

  /** A NetworkPolicy rule's connections; named ports resolve on `dst` (none for an IP destination). */
  private npConns(ports: readonly NpPort[], dst: K8sWorkload | undefined): ConnSet {
    if (ports.length === 0) return K8S_ALL;
    let res = ConnSet.EMPTY;
    for (const p of ports) {
      if (p.port === undefined) res = res.union(protocolConns(p.protocol));
      else if (typeof p.port === 'number') res = res.union(portConns(p.protocol, p.port, p.endPort ?? p.port));
      else {
        const cp = dst?.ports.find((c) => c.name === p.port);
        if (cp && cp.protocol === p.protocol) res = res.union(portConns(p.protocol, cp.port, cp.port));
      }
    }
    return res;
  }

  /** An admin rule's connections; named ports resolve on `dst` with the container port's protocol. */
  private adminConns(ports: readonly AdminPort[] | undefined, dst: K8sWorkload | undefined): ConnSet {
    if (ports === undefined) return K8S_ALL;
    let res = ConnSet.EMPTY;
    for (const p of ports) {
      if (p.kind === 'number') res = res.union(portConns(p.protocol, p.port, p.port));
      else if (p.kind === 'range') res = res.union(portConns(p.protocol, p.start, p.end));
      else {
        const cp = dst?.ports.find((c) => c.name === p.name);
        if (cp) res = res.union(portConns(cp.protocol, cp.port, cp.port));
      }
    }
    return res;
  }
}
