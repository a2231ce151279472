/**
 * Reference readings of the Calico and Cilium objects the compilers emit:
 * what one endpoint's policy decides for one connection in one direction.
 * They cover exactly the fields the compilers write (schema.ts), read as the
 * projects document them, so compiled output can be checked against the
 * engine without a cluster.
 *
 * - Calico: the tier's policies that select the endpoint, by `order` then
 *   name; rules in order, first `Allow` or `Deny` wins, `Log` goes on; no
 *   policy selects it: allowed; policies select it and no rule matches:
 *   denied at the end of the tier. Staged policies are read instead of the
 *   others when asked for the staged view.
 * - Cilium: a matching deny rule of any policy selecting the endpoint
 *   denies; else, when no policy with allow rules for the direction (an
 *   empty one too) selects it, allowed; else a matching allow rule allows,
 *   else denied.
 */
import { PROTOCOLS } from '../netset/connset.js';
import { IpSet, parsePrefix, type Addr } from '../netset/ip.js';
import { parseSelector, type Labels, type Selector } from '../model/selector.js';
import { selectorMatches, type LabelSelector, type SelectorOperator } from './labels.js';
import type { Manifest } from './plan.js';
import { CALICO_NAMESPACE_LABEL } from './target-calico.js';
import { CILIUM_NAMESPACE_LABEL } from './target-cilium.js';

/** One end as the oracles see it: a pod (namespace, labels, address) or an address outside the cluster. */
export type OracleEnd = { readonly kind: 'pod'; readonly namespace: string; readonly labels: Labels; readonly addr: Addr } | { readonly kind: 'ip'; readonly addr: Addr };

/** One connection: protocol number and port (ICMP: type × 256 + code). */
export interface OracleConn {
  readonly proto: number;
  readonly port: number;
}

/** What the endpoint's own policy decides for a connection with a peer. */
export type SideOracle = (subject: OracleEnd & { kind: 'pod' }, peer: OracleEnd, ingress: boolean, conn: OracleConn, staged: boolean) => boolean;

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj => (typeof v === 'object' && v !== null ? (v as Obj) : {});
const asList = (v: unknown): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);

const cidrSets = new Map<string, IpSet>();

/** Whether an address is in a CIDR (parsed once per text). */
function inCidr(addr: Addr, cidr: string): boolean {
  let set = cidrSets.get(cidr);
  if (!set) {
    const r = parsePrefix(cidr);
    cidrSets.set(cidr, (set = 'error' in r ? IpSet.EMPTY : IpSet.fromPrefixes([r.prefix])));
  }
  return set.has(addr);
}

/** Memoizes a predicate of an object and an end (both by identity). */
function memo2<A extends object, B extends object>(f: (a: A, b: B) => boolean): (a: A, b: B) => boolean {
  const cache = new WeakMap<A, WeakMap<B, boolean>>();
  return (a, b) => {
    let m = cache.get(a);
    if (!m) cache.set(a, (m = new WeakMap()));
    let v = m.get(b);
    if (v === undefined) m.set(b, (v = f(a, b)));
    return v;
  };
}

const PROTO_BY_NAME: Record<string, number> = { TCP: PROTOCOLS.tcp, UDP: PROTOCOLS.udp, SCTP: PROTOCOLS.sctp, ICMP: PROTOCOLS.icmp, ICMPv6: PROTOCOLS.icmpv6 };

// ---------------------------------------------------------------- Calico

/** Reads Calico policies: the oracle for their endpoints. */
export function calicoOracle(manifests: readonly Manifest[]): SideOracle {
  const selectors = new Map<string, Selector>();
  const sel = (text: string): Selector => {
    let s = selectors.get(text);
    if (!s) {
      const r = parseSelector(text);
      if (!r.ok) throw new Error(`bad selector ${text}`);
      selectors.set(text, (s = r.selector));
    }
    return s;
  };
  const policies = manifests
    .filter((m) => String(m.apiVersion) === 'projectcalico.org/v3' && String(m.kind).endsWith('NetworkPolicy'))
    .map((m) => ({ kind: String(m.kind), name: String(asObj(m.metadata).name), namespace: asObj(m.metadata).namespace as string | undefined, spec: asObj(m.spec) }))
    .sort((a, b) => Number(a.spec.order) - Number(b.spec.order) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const labelsOf = (e: OracleEnd & { kind: 'pod' }): Labels => ({ ...e.labels, [CALICO_NAMESPACE_LABEL]: e.namespace });
  const entityMatchesRaw = (ent: Obj, peer: OracleEnd, policyNs: string | undefined): boolean => {
    if (typeof ent.selector === 'string') {
      if (peer.kind !== 'pod') return false;
      if (policyNs !== undefined && ent.namespaceSelector === undefined && peer.namespace !== policyNs) return false;
      if (!sel(ent.selector).matches(labelsOf(peer))) return false;
    }
    if (Array.isArray(ent.nets) && !(ent.nets as string[]).some((c) => inCidr(peer.addr, c))) return false;
    if (Array.isArray(ent.notNets) && (ent.notNets as string[]).some((c) => inCidr(peer.addr, c))) return false;
    return true;
  };
  const nsOf = new WeakMap<Obj, string | undefined>();
  const entityMatches = memo2((ent: Obj, peer: OracleEnd) => entityMatchesRaw(ent, peer, nsOf.get(ent)));
  const selecting = new WeakMap<OracleEnd, Map<string, { rules: Obj[] }[]>>();
  const l4Matches = (rule: Obj, dst: Obj, conn: OracleConn): boolean => {
    if (rule.protocol !== undefined) {
      const p = typeof rule.protocol === 'number' ? rule.protocol : PROTO_BY_NAME[String(rule.protocol)];
      if (p !== conn.proto) return false;
    }
    if (rule.icmp !== undefined) {
      const icmp = asObj(rule.icmp);
      if (conn.port >>> 8 !== icmp.type) return false;
      if (icmp.code !== undefined && (conn.port & 255) !== icmp.code) return false;
    }
    if (Array.isArray(dst.ports)) {
      const ok = (dst.ports as (number | string)[]).some((p) => {
        if (typeof p === 'number') return conn.port === p;
        const [lo, hi] = p.split(':').map(Number);
        return conn.port >= lo && conn.port <= hi;
      });
      if (!ok) return false;
    }
    return true;
  };
  const applicable = (subject: OracleEnd & { kind: 'pod' }, ingress: boolean, staged: boolean) => {
    let bySubject = selecting.get(subject);
    if (!bySubject) selecting.set(subject, (bySubject = new Map()));
    const key = `${ingress}/${staged}`;
    let list = bySubject.get(key);
    if (!list) {
      list = [];
      for (const p of policies) {
        if (p.kind.startsWith('Staged') !== staged) continue;
        if (p.namespace !== undefined && p.namespace !== subject.namespace) continue;
        const types = asList(p.spec.types) as unknown as string[];
        if (!types.includes(ingress ? 'Ingress' : 'Egress')) continue;
        if (!sel(String(p.spec.selector)).matches(labelsOf(subject))) continue;
        const rules = asList(ingress ? p.spec.ingress : p.spec.egress);
        for (const rule of rules) nsOf.set(ingress ? asObj(rule.source) : asObj(rule.destination), p.namespace);
        list.push({ rules });
      }
      bySubject.set(key, list);
    }
    return list;
  };
  return (subject, peer, ingress, conn, staged) => {
    const list = applicable(subject, ingress, staged);
    for (const p of list) {
      for (const rule of p.rules) {
        const dst = asObj(rule.destination);
        const peerEnt = ingress ? asObj(rule.source) : dst;
        if (!l4Matches(rule, dst, conn) || !entityMatches(peerEnt, peer)) continue;
        if (rule.action === 'Allow') return true;
        if (rule.action === 'Deny') return false;
      }
    }
    return list.length === 0;
  };
}

// ---------------------------------------------------------------- Cilium

function ciliumSelector(v: unknown): LabelSelector {
  const o = asObj(v);
  return {
    matchLabels: asObj(o.matchLabels) as Record<string, string>,
    matchExpressions: asList(o.matchExpressions).map((e) => ({ key: String(e.key), operator: e.operator as SelectorOperator, values: (e.values as string[] | undefined) ?? [] })),
  };
}

/** Reads Cilium policies: the oracle for their endpoints. */
export function ciliumOracle(manifests: readonly Manifest[]): SideOracle {
  const policies = manifests
    .filter((m) => String(m.apiVersion) === 'cilium.io/v2')
    .map((m) => ({ namespace: asObj(m.metadata).namespace as string | undefined, spec: asObj(m.spec) }));
  const labelsOf = (e: OracleEnd & { kind: 'pod' }): Labels => ({ ...e.labels, [CILIUM_NAMESPACE_LABEL]: e.namespace });
  const peerMatches = (rule: Obj, peer: OracleEnd, pre: 'from' | 'to', policyNs: string | undefined): boolean => {
    for (const s of asList(rule[`${pre}Endpoints`])) {
      if (peer.kind !== 'pod') continue;
      const ls = ciliumSelector(s);
      const names = Object.hasOwn(ls.matchLabels, CILIUM_NAMESPACE_LABEL) || ls.matchExpressions.some((r) => r.key === CILIUM_NAMESPACE_LABEL);
      if (policyNs !== undefined && !names && peer.namespace !== policyNs) continue;
      if (selectorMatches(ls, labelsOf(peer))) return true;
    }
    for (const c of asList(rule[`${pre}CIDRSet`])) {
      if (peer.kind !== 'ip') continue;
      if (inCidr(peer.addr, String(c.cidr)) && !((c.except as string[] | undefined) ?? []).some((x) => inCidr(peer.addr, x))) return true;
    }
    return false;
  };
  const l4Matches = (rule: Obj, conn: OracleConn): boolean => {
    if (rule.toPorts === undefined && rule.icmps === undefined) return true;
    for (const tp of asList(rule.toPorts)) {
      for (const p of asList(tp.ports)) {
        if (PROTO_BY_NAME[String(p.protocol)] !== conn.proto) continue;
        const lo = Number(p.port);
        const hi = p.endPort === undefined ? lo : Number(p.endPort);
        if (lo === 0 || (conn.port >= lo && conn.port <= hi)) return true;
      }
    }
    for (const ic of asList(rule.icmps)) {
      for (const f of asList(ic.fields)) {
        const proto = f.family === 'IPv6' ? PROTOCOLS.icmpv6 : PROTOCOLS.icmp;
        if (proto === conn.proto && conn.port >>> 8 === f.type) return true;
      }
    }
    return false;
  };
  const ruleNs = new WeakMap<Obj, string | undefined>();
  const matchesPeer = memo2((rule: Obj, peer: OracleEnd) => peerMatches(rule, peer, rule.__pre as 'from' | 'to', ruleNs.get(rule)));
  const applicable = new WeakMap<OracleEnd, Map<boolean, { deny: Obj[]; allow: Obj[]; selected: boolean }>>();
  const rulesFor = (subject: OracleEnd & { kind: 'pod' }, ingress: boolean) => {
    let m = applicable.get(subject);
    if (!m) applicable.set(subject, (m = new Map()));
    let r = m.get(ingress);
    if (!r) {
      const dir = ingress ? 'ingress' : 'egress';
      r = { deny: [], allow: [], selected: false };
      for (const p of policies) {
        if (p.namespace !== undefined && p.namespace !== subject.namespace) continue;
        if (!selectorMatches(ciliumSelector(p.spec.endpointSelector), labelsOf(subject))) continue;
        // Only allow rules (an empty one too) put the endpoint in default deny; deny rules apply anyway.
        if (p.spec[dir] !== undefined) r.selected = true;
        for (const [list, key] of [[r.deny, `${dir}Deny`], [r.allow, dir]] as const) {
          for (const rule of asList(p.spec[key])) {
            const tagged = { ...rule, __pre: ingress ? 'from' : 'to' };
            ruleNs.set(tagged, p.namespace);
            list.push(tagged);
          }
        }
      }
      m.set(ingress, r);
    }
    return r;
  };
  return (subject, peer, ingress, conn) => {
    const r = rulesFor(subject, ingress);
    for (const rule of r.deny) if (matchesPeer(rule, peer) && l4Matches(rule, conn)) return false;
    if (!r.selected) return true;
    for (const rule of r.allow) if (matchesPeer(rule, peer) && l4Matches(rule, conn)) return true;
    return false;
  };
}
