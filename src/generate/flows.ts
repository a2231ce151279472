/**
 * Seeded flow sampling over an estate document, for benchmarks and
 * differential tests: a mix of flows that follow the estate's allow rules
 * (a source in `from`, a destination in `to`, a connection in `services`) and
 * random flows between workloads and the outside.
 *
 * A flow sampled from a rule is not promised to be allowed: a deny rule, an
 * override, the other side's rules or the modes may still decide otherwise.
 * It only makes sure a good share of the sample exercises the allow path.
 * Works on any document in the section shape (generated or parsed from
 * YAML); inventory files are not read, so only `workloads` are used.
 */
import { parseSelector, type Selector, type SelectorNode } from '../model/selector.js';
import { familyOf, formatAddr, IpSet, parsePrefix, type Prefix } from '../netset/ip.js';
import { prefixOf, randomInPrefix } from './addr.js';
import { resolveServices, type PortRange } from './ports.js';
import { Rng } from './prng.js';
import type { EstateDocument, FlowProto, GeneratedFlow, PeerDoc, RuleDoc, ServiceDoc, WorkloadDoc } from './types.js';

export interface GenerateFlowsOptions {
  seed: number;
  count: number;
  /** Share of flows sampled by following an allow rule (default 0.7); the rest are random. */
  ruleFraction?: number;
  /** Share of random flows with an end outside the estate (default 0.1). */
  externalFraction?: number;
  /** Share of flows over IPv6 where both ends can (default 0.3). */
  ipv6Fraction?: number;
  /** How many distinct rules to draw from: bounds the cost of resolving selectors (default 512). */
  maxRules?: number;
}

type Endpoint = { kind: 'workloads'; ids: number[] } | { kind: 'net'; include: Prefix[]; exclude: IpSet };

interface RuleSampler {
  id: string;
  from: Endpoint[];
  to: Endpoint[];
  ports: PortRange[];
}

const COMMON_PORTS: ReadonlyArray<[FlowProto, number]> = [
  ['tcp', 22], ['tcp', 80], ['tcp', 443], ['tcp', 443], ['tcp', 443], ['tcp', 3306], ['tcp', 5432], ['tcp', 8080],
  ['tcp', 8443], ['tcp', 9100], ['tcp', 3389], ['tcp', 6379], ['tcp', 9102], ['tcp', 445], ['tcp', 25], ['udp', 53],
  ['udp', 123], ['udp', 514], ['udp', 161],
];

/** The addresses of an IP list or CIDR peer: prefixes to draw from, less the excluded ones. */
function net(include: readonly string[], exclude: readonly string[] = []): Endpoint {
  return { kind: 'net', include: include.map(prefixOf), exclude: IpSet.fromPrefixes(exclude.map(prefixOf)) };
}

const EVERYWHERE: Endpoint = net(['0.0.0.0/0', '::/0'], ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7', '2001:db8::/32']);

class WorkloadIndex {
  readonly byLabel = new Map<string, Map<string, number[]>>();
  private readonly cache = new Map<string, number[]>();
  private readonly parsed = new Map<string, Selector>();

  constructor(readonly workloads: readonly WorkloadDoc[]) {
    workloads.forEach((w, i) => {
      for (const [k, v] of Object.entries(w.labels ?? {})) {
        let byValue = this.byLabel.get(k);
        if (!byValue) this.byLabel.set(k, (byValue = new Map()));
        let ids = byValue.get(v);
        if (!ids) byValue.set(v, (ids = []));
        ids.push(i);
      }
    });
  }

  /** The parsed selector; throws when it does not parse. */
  selector(text: string): Selector {
    let s = this.parsed.get(text);
    if (!s) {
      const r = parseSelector(text);
      if (!r.ok) throw new SyntaxError(`bad selector ${text}: ${r.error.message}`);
      this.parsed.set(text, (s = r.selector));
    }
    return s;
  }

  /** A superset of the matches, from the label index; undefined when the index cannot narrow it. */
  private candidates(node: SelectorNode): number[] | undefined {
    switch (node.kind) {
      case 'eq':
        return this.byLabel.get(node.label)?.get(node.value) ?? [];
      case 'in': {
        const lists = node.values.map((v) => this.byLabel.get(node.label)?.get(v) ?? []);
        return union(lists);
      }
      case 'and': {
        let best: number[] | undefined;
        for (const a of node.exprs) {
          const c = this.candidates(a);
          if (c && (!best || c.length < best.length)) best = c;
        }
        return best;
      }
      case 'or': {
        const lists: number[][] = [];
        for (const a of node.exprs) {
          const c = this.candidates(a);
          if (!c) return undefined;
          lists.push(c);
        }
        return union(lists);
      }
      default:
        return undefined;
    }
  }

  /** The workloads that match the selector and, when given, the scope. */
  resolve(selector: string, scope: string | undefined): number[] {
    const key = `${scope ?? ''}\u0000${selector}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const sel = this.selector(selector);
    const sc = scope !== undefined ? this.selector(scope) : undefined;
    const c1 = this.candidates(sel.ast);
    const c2 = sc ? this.candidates(sc.ast) : undefined;
    const base = c1 && c2 ? (c1.length <= c2.length ? c1 : c2) : (c1 ?? c2);
    const ids: number[] = [];
    const test = (i: number): void => {
      const labels = this.workloads[i].labels ?? {};
      if (sel.matches(labels) && (!sc || sc.matches(labels))) ids.push(i);
    };
    if (base) for (const i of base) test(i);
    else for (let i = 0; i < this.workloads.length; i++) test(i);
    this.cache.set(key, ids);
    return ids;
  }
}

function union(lists: number[][]): number[] {
  if (lists.length === 1) return lists[0];
  const set = new Set<number>();
  for (const l of lists) for (const i of l) set.add(i);
  return [...set].sort((a, b) => a - b);
}

/** Sample flows over the estate. Deterministic in (estate, options). */
export function generateFlows(estate: Partial<EstateDocument>, options: GenerateFlowsOptions): GeneratedFlow[] {
  const rng = new Rng(options.seed);
  const count = Math.max(0, Math.floor(options.count));
  const ruleFraction = options.ruleFraction ?? 0.7;
  const externalFraction = options.externalFraction ?? 0.1;
  const v6Share = options.ipv6Fraction ?? 0.3;
  const workloads = estate.workloads ?? [];
  const index = new WorkloadIndex(workloads);
  const services = new Map<string, ServiceDoc>((estate.services ?? []).map((s) => [s.name, s]));
  const iplists = new Map<string, Endpoint>();
  for (const l of estate.iplists ?? []) iplists.set(l.name, net(l.include, l.exclude));
  const byName = new Map<string, number>(workloads.map((w, i) => [w.name, i]));
  const parsedAddresses = new Map<number, WorkloadAddress[]>();
  const addressesOf = (i: number): WorkloadAddress[] => {
    let a = parsedAddresses.get(i);
    if (!a) parsedAddresses.set(i, (a = workloadAddresses(workloads[i])));
    return a;
  };

  const endpoint = (peer: PeerDoc, scope: string | undefined): Endpoint | undefined => {
    if (typeof peer === 'string') return peer === 'any' ? EVERYWHERE : { kind: 'workloads', ids: index.resolve(peer, scope) };
    if ('selector' in peer) return { kind: 'workloads', ids: index.resolve(peer.selector, peer.global ? undefined : scope) };
    if ('workload' in peer) {
      const i = byName.get(peer.workload);
      return i === undefined ? undefined : { kind: 'workloads', ids: [i] };
    }
    if ('iplist' in peer) return iplists.get(peer.iplist);
    if ('cidr' in peer) return net([peer.cidr]);
    return undefined;
  };

  // The rules to follow: a bounded random subset of the allow rules, resolved lazily.
  const allowRules: Array<{ rule: RuleDoc; scope: string | undefined; id: string }> = [];
  for (const rs of estate.rulesets ?? []) {
    rs.rules.forEach((rule, n) => {
      if ((rule.action ?? 'allow') === 'allow') allowRules.push({ rule, scope: rs.scope, id: rule.id ?? `${rs.name}/${n + 1}` });
    });
  }
  const chosen = rng.sample(allowRules, options.maxRules ?? 512);
  const samplers = new Map<number, RuleSampler | null>();
  const sampler = (k: number): RuleSampler | null => {
    let s = samplers.get(k);
    if (s !== undefined) return s;
    const { rule, scope, id } = chosen[k];
    const keep = (e: Endpoint | undefined): e is Endpoint => e !== undefined && (e.kind === 'net' || e.ids.length > 0);
    const from = rule.from.map((p) => endpoint(p, scope)).filter(keep);
    const to = rule.to.map((p) => endpoint(p, scope)).filter(keep);
    let ports: PortRange[] = [];
    try {
      ports = resolveServices(rule.services, services);
    } catch {
      ports = [];
    }
    s = from.length > 0 && to.length > 0 && ports.length > 0 ? { id, from, to, ports } : null;
    samplers.set(k, s);
    return s;
  };

  const addressOf = (e: Endpoint, family: 4 | 6, avoid: number): { addr: string; wl: number } | undefined => {
    if (e.kind === 'net') {
      const inc = e.include.filter((p) => familyOf(p.addr) === family);
      for (let attempt = 0; attempt < 16 && inc.length > 0; attempt++) {
        const a = randomInPrefix(rng.pick(inc), rng);
        if (!e.exclude.has(a)) return { addr: formatAddr(a), wl: -1 };
      }
      return undefined;
    }
    for (let attempt = 0; attempt < 8 && e.ids.length > 0; attempt++) {
      const i = rng.pick(e.ids);
      if (i === avoid) continue;
      const a = pickAddress(addressesOf(i), family, rng);
      if (a) return { addr: a, wl: i };
    }
    return undefined;
  };

  const fromRule = (): GeneratedFlow | undefined => {
    if (chosen.length === 0) return undefined;
    for (let attempt = 0; attempt < 8; attempt++) {
      const s = sampler(rng.int(chosen.length));
      if (!s) continue;
      const range = rng.pick(s.ports);
      const proto = range.proto;
      const port = range.lo + rng.int(range.hi - range.lo + 1);
      const family: 4 | 6 = proto === 'icmp' ? 4 : proto === 'icmpv6' ? 6 : rng.chance(v6Share) ? 6 : 4;
      const src = addressOf(rng.pick(s.from), family, -1);
      if (!src) continue;
      const dst = addressOf(rng.pick(s.to), family, src.wl);
      if (!dst) continue;
      return { src: src.addr, dst: dst.addr, proto, port, ...(range.code !== undefined ? { code: range.code } : {}), origin: 'rule', rule: s.id };
    }
    return undefined;
  };

  const all: Endpoint = { kind: 'workloads', ids: workloads.map((_, i) => i) };
  const random = (): GeneratedFlow => {
    const r = rng.next();
    let proto: FlowProto;
    let port: number;
    if (r < 0.05) {
      proto = 'icmp';
      port = rng.pick([0, 3, 8, 11]);
    } else if (r < 0.75) {
      [proto, port] = rng.pick(COMMON_PORTS);
    } else {
      proto = rng.chance(0.8) ? 'tcp' : 'udp';
      port = rng.range(1, 65535);
    }
    for (let attempt = 0; attempt < 8; attempt++) {
      const family: 4 | 6 = proto === 'icmp' ? 4 : rng.chance(v6Share) ? 6 : 4;
      const external = rng.chance(externalFraction);
      const outsideIsSource = rng.chance(0.6);
      const none = workloads.length === 0;
      const srcEnd = none || (external && outsideIsSource) ? EVERYWHERE : all;
      const dstEnd = none || (external && !outsideIsSource) ? EVERYWHERE : all;
      const src = addressOf(srcEnd, family, -1);
      if (!src) continue;
      const dst = addressOf(dstEnd, family, src.wl);
      if (!dst) continue;
      return { src: src.addr, dst: dst.addr, proto, port, origin: 'random' };
    }
    // Nothing in the estate speaks this family: fall back to two outside IPv4 addresses.
    const src = addressOf(EVERYWHERE, 4, -1)!;
    const dst = addressOf(EVERYWHERE, 4, -1)!;
    return { src: src.addr, dst: dst.addr, proto: proto === 'icmpv6' ? 'icmp' : proto, port, origin: 'random' };
  };

  const out: GeneratedFlow[] = [];
  for (let n = 0; n < count; n++) {
    const f = rng.chance(ruleFraction) ? fromRule() : undefined;
    out.push(f ?? random());
  }
  return out;
}

/** One address of a workload as written, and what it parses to. */
interface WorkloadAddress {
  text: string;
  prefix: Prefix;
}

/** The workload's addresses that parse (the policy loader reports the others). */
function workloadAddresses(w: WorkloadDoc): WorkloadAddress[] {
  const out: WorkloadAddress[] = [];
  for (const text of w.addresses) {
    const r = parsePrefix(text.trim());
    if (!('error' in r)) out.push({ text, prefix: r.prefix });
  }
  return out;
}

/** One of the workload's addresses of that family, as written; a prefix gives an address inside it. */
function pickAddress(addresses: readonly WorkloadAddress[], family: 4 | 6, rng: Rng): string | undefined {
  const mine = addresses.filter((a) => familyOf(a.prefix.addr) === family);
  if (mine.length === 0) return undefined;
  const a = rng.pick(mine);
  if (!a.text.includes('/')) return a.text;
  return formatAddr(randomInPrefix(a.prefix, rng));
}
