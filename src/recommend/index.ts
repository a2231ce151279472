/**
 * Policy recommendation: observed flows (the store's edges) and the
 * inventory in, label-based allow rules out, each with its evidence, and the
 * flows no rule should carry listed for review.
 *
 * 1. Ends. Each edge's client and server become an end: a workload's
 *    **group** (its values of the `--by` label keys, such as role, app, env;
 *    a workload with none of them is a group of its own, named), or the most
 *    specific **IP list** holding the address. Keys that carry no identity
 *    (one value for every workload, or a different value for each) are
 *    dropped first.
 * 2. Review. An edge is **suspicious**, and no rule carries it, when it
 *    crosses environments (neither end in a shared environment), uses an
 *    admin port (SSH, RDP, WinRM, VNC, telnet) with neither end a jump host,
 *    has an end that is no workload and in no IP list, is part of a scan (a
 *    client sending TCP flows of one or two packets to many ports or many
 *    hosts), uses a protocol no service can name, or was rejected by the
 *    device that logged it.
 * 3. Observed connectivity. The rest is the set O of (client end, server
 *    end, connection) the rules must allow: in incremental mode only what
 *    the current policy does not already allow.
 * 4. Rules. Per connection, the servers with the same set of clients form
 *    one rule; rules with the same clients and servers share their
 *    connections. Each rule's clients × servers × connections is a subset of
 *    O, so no rule allows a group pair that was not seen; the only slack is
 *    a one-workload group's pair with itself, which is no network flow.
 * 5. Selectors. Each side's groups are written as the fewest label
 *    conjunctions (a greedy set cover over the sub-conjunctions of the
 *    members) that match exactly those groups, then conjunctions that differ
 *    in one key are merged into `key in {…}`. A rule whose ends all lie in
 *    one scope (the values of the `--scope` keys, app and env by default)
 *    goes into that scope's ruleset with selectors on the other keys only;
 *    the rest go into a global ruleset.
 *
 * Pure: no I/O. The YAML, with the evidence as comments, comes from
 * {@link recommendationYaml}.
 */
import { Document, isMap, isSeq, type YAMLMap } from 'yaml';
import { formatAddr, type Addr, type Prefix } from '../netset/ip.js';
import { parseSelector, type Selector } from '../model/selector.js';
import type { Ir } from '../policy/ir.js';
import { Evaluator } from '../engine/evaluate.js';
import { Attributor, ICMP_UNKNOWN } from '../flows/attribute.js';
import { portName, type Edge } from '../flows/map.js';

/** Options of {@link recommend}. */
export interface RecommendOptions {
  /** Label keys that tell groups apart, finest first (default role, app, env). */
  readonly by?: readonly string[];
  /** Keys whose values scope rulesets (default: the `by` keys other than the first). */
  readonly scope?: readonly string[];
  /** The label key of environments (default `env`). */
  readonly envKey?: string;
  /** Environments any other may talk to (default shared, global, common). */
  readonly sharedEnvs?: readonly string[];
  /**
   * Shared services, a selector: crossings of environments to or from them
   * are no finding. Besides these, a server port that clients of at least
   * two other environments and `sharedApps` apps use, and a client port
   * reaching servers like that (monitoring, backup), count as shared.
   */
  readonly sharedServices?: string;
  /** Apps a server port (or client) must be seen with to count as shared (default 4). */
  readonly sharedApps?: number;
  /** Jump hosts, a selector (default `role in {'jump', 'bastion', 'jumphost'}`). */
  readonly jumpHosts?: string;
  /** Admin ports, TCP (default 22, 23, 3389, 5900, 5985, 5986). */
  readonly adminPorts?: readonly number[];
  /** More prefixes that count as internal. */
  readonly internal?: readonly Prefix[];
  /** A client is a port scanner when its TCP flows of at most `scanPackets` packets reach this many distinct ports (default 16). */
  readonly scanPorts?: number;
  /** …or this many distinct hosts on one port (default 48). */
  readonly scanHosts?: number;
  /** Packets per flow at most, for a flow to count towards a scan (default 2). */
  readonly scanPackets?: number;
  /** Ignore edges with fewer flows (default 1). */
  readonly minFlows?: number;
  /** Only flows the policy in `ir` does not already allow; new rulesets get `prefix`. */
  readonly incremental?: boolean;
  /** Prefix of ruleset names and rule ids (default `rec-`). */
  readonly prefix?: string;
  /** Example pairs kept per rule (default 3). */
  readonly examples?: number;
}

/** Why an edge got no rule. */
export type SuspicionReason = 'cross-env' | 'admin-port' | 'unknown-address' | 'scan' | 'protocol' | 'rejected';

/** An edge listed for review. */
export interface SuspiciousEdge {
  readonly client: string;
  readonly server: string;
  /** Workload names, where an end is one. */
  readonly clientWorkload?: string;
  readonly serverWorkload?: string;
  readonly connection: string;
  readonly reasons: readonly SuspicionReason[];
  /** One line on why. */
  readonly why: string;
  readonly flows: number;
  readonly bytes: number;
  readonly first: number;
  readonly last: number;
}

/** What a recommended rule rests on. */
export interface Evidence {
  readonly flows: number;
  readonly bytes: number;
  readonly first: number;
  readonly last: number;
  /** Distinct (client, server, connection) edges. */
  readonly edges: number;
  /** The busiest pairs: `web-1 → app-2 8443/tcp (1,234 flows)`. */
  readonly examples: readonly string[];
}

/** A recommended rule, in the policy document's shape plus its evidence. */
export interface RecommendedRule {
  readonly id: string;
  readonly from: PeerOut[];
  readonly to: PeerOut[];
  readonly services: string[];
  readonly evidence: Evidence;
}

export type PeerOut = string | { selector: string; global?: boolean } | { workload: string } | { iplist: string };

export interface RecommendedRuleset {
  readonly name: string;
  readonly scope?: string;
  readonly rules: RecommendedRule[];
}

export interface Recommendation {
  readonly rulesets: readonly RecommendedRuleset[];
  /** The edges the rules rest on. */
  readonly covered: readonly Edge[];
  readonly suspicious: readonly SuspiciousEdge[];
  /** `by` keys dropped, and why. */
  readonly ignoredKeys: readonly { key: string; why: string }[];
  readonly by: readonly string[];
  readonly scope: readonly string[];
  readonly stats: {
    readonly edges: number;
    readonly flows: number;
    /** Edges the current policy already allows (incremental mode). */
    readonly alreadyAllowed: number;
    readonly suspiciousEdges: number;
    readonly suspiciousFlows: number;
    readonly coveredEdges: number;
    readonly coveredFlows: number;
    readonly rules: number;
    readonly groups: number;
    readonly ms: number;
  };
}

const DEFAULT_ADMIN = [22, 23, 3389, 5900, 5985, 5986];
const TCP = 6;
const NAMED_PROTOS: Record<number, string> = { 6: 'tcp', 17: 'udp', 132: 'sctp', 1: 'icmp', 58: 'icmpv6' };

/** An end of an edge: a group index, or an IP list (encoded as -1 - list index). */
type EndId = number;

interface Group {
  readonly key: string;
  /** The group's values of the effective `by` keys (absent keys left out). */
  readonly labels: Readonly<Record<string, string>>;
  /** The workload, for a group of one unlabeled workload. */
  readonly workload?: string;
  readonly size: number;
  /** The values of the scope keys, `\u0000`-joined; undefined when the group lacks one. */
  readonly scopeKey?: string;
}

interface Observed {
  flows: number;
  bytes: number;
  first: number;
  last: number;
  edges: number;
  /** The busiest edges: flows and a description. */
  top: { flows: number; text: string }[];
}

/** Recommends rules for the edges. */
export function recommend(edges: Iterable<Edge>, ir: Ir, options: RecommendOptions = {}): Recommendation {
  const t0 = performance.now();
  const requested = options.by ?? ['role', 'app', 'env'];
  const envKey = options.envKey ?? 'env';
  const shared = new Set(options.sharedEnvs ?? ['shared', 'global', 'common']);
  const admin = new Set(options.adminPorts ?? DEFAULT_ADMIN);
  const scanPorts = options.scanPorts ?? 16;
  const scanHosts = options.scanHosts ?? 48;
  const scanPackets = options.scanPackets ?? 2;
  const minFlows = options.minFlows ?? 1;
  const prefix = options.prefix ?? 'rec-';
  const keepExamples = options.examples ?? 3;
  const jump = mustParse(options.jumpHosts ?? "role in {'jump', 'bastion', 'jumphost'}");
  const sharedSel = options.sharedServices !== undefined ? mustParse(options.sharedServices) : undefined;

  // ---- 1. groups
  const { by, ignored } = effectiveKeys(ir, requested);
  const scopeKeys = (options.scope ?? requested.slice(1)).filter((k) => by.includes(k));
  const groups: Group[] = [];
  const groupOf = new Int32Array(ir.workloads.length);
  const groupIndex = new Map<string, number>();
  ir.workloads.forEach((w, i) => {
    const labels: Record<string, string> = {};
    for (const k of by) if (w.labels[k] !== undefined) labels[k] = w.labels[k];
    const named = Object.keys(labels).length === 0;
    const key = named ? `workload:${w.name}` : by.map((k) => labels[k] ?? '\u0001').join('\u0000');
    let g = groupIndex.get(key);
    if (g === undefined) {
      g = groups.length;
      groupIndex.set(key, g);
      const scopeKey = scopeKeys.length > 0 && scopeKeys.every((k) => labels[k] !== undefined) ? scopeKeys.map((k) => labels[k]).join('\u0000') : undefined;
      groups.push({ key, labels, ...(named ? { workload: w.name } : {}), size: 0, scopeKey });
    }
    (groups[g] as { size: number }).size++;
    groupOf[i] = g;
  });
  const iplistNames = [...ir.policy.iplists.keys()].sort();
  const iplistSets = iplistNames.map((n) => ir.policy.iplists.get(n)!.set);
  const att = new Attributor(ir, { internal: options.internal });
  const evaluator = options.incremental ? new Evaluator(ir) : undefined;
  const isJump = ir.workloads.map((w) => jump.matches(w.labels));

  // ---- 2. scans: per client, its low-packet TCP edges
  const all: Edge[] = [];
  for (const e of edges) if (e.flows >= minFlows) all.push(e);
  const scanners = findScanners(all, scanPackets, scanPorts, scanHosts);
  // What a workload is, whatever its environment: its values of the `by` keys but the environment.
  const kindKeys = by.filter((k) => k !== envKey);
  const kinds = ir.workloads.map((w) => (kindKeys.some((k) => w.labels[k] !== undefined) ? kindKeys.map((k) => w.labels[k] ?? '').join('\u0000') : `workload:${w.name}`));
  const kindOf = (w: number) => kinds[w];
  const sharedEnds = findSharedEnds(all, att, ir, envKey, options.sharedApps ?? 4, kindOf);
  const isShared = ir.workloads.map((w) => sharedSel?.matches(w.labels) === true);

  const suspicious: SuspiciousEdge[] = [];
  const covered: Edge[] = [];
  const observed = new Map<string, Observed>();
  let alreadyAllowed = 0;
  let flows = 0;
  let susFlows = 0;
  let coveredEdges = 0;
  let coveredFlows = 0;
  const name = (a: Addr, w: number | undefined) => (w !== undefined ? ir.workloads[w].name : formatAddr(a));

  for (const e of all) {
    flows += e.flows;
    const c = att.end(e.client);
    const s = att.end(e.server);
    if (evaluator && evaluator.decide({ src: e.client, dst: e.server, proto: e.proto, port: e.port }).verdict === 'allowed') {
      alreadyAllowed++;
      continue;
    }
    const reasons: SuspicionReason[] = [];
    const why: string[] = [];
    if (e.rejected >= e.flows) {
      reasons.push('rejected');
      why.push('every flow was rejected by the device that logged it');
    }
    if (c.kind === 'unknown' || s.kind === 'unknown') {
      reasons.push('unknown-address');
      const u = c.kind === 'unknown' ? e.client : e.server;
      why.push(`${formatAddr(u)} is no workload and in no IP list${(c.kind === 'unknown' ? c : s).external ? ' (external)' : ''}`);
    }
    if (c.workload !== undefined && s.workload !== undefined) {
      const ce = ir.workloads[c.workload].labels[envKey];
      const se = ir.workloads[s.workload].labels[envKey];
      const exempt = isShared[c.workload] || isShared[s.workload] || sharedEnds.has(`s${kindOf(s.workload)}/${e.proto}/${e.port}`) || sharedEnds.has(`c${kindOf(c.workload)}/${e.proto}/${e.port}`);
      if (ce !== undefined && se !== undefined && ce !== se && !shared.has(ce) && !shared.has(se) && !exempt) {
        reasons.push('cross-env');
        why.push(`crosses environments: ${ce} to ${se}`);
      }
    }
    if (e.proto === TCP && admin.has(e.port) && !(c.workload !== undefined && isJump[c.workload]) && !(s.workload !== undefined && isJump[s.workload])) {
      reasons.push('admin-port');
      why.push(`admin port ${e.port}/tcp and neither end is a jump host`);
    }
    const low = e.proto === TCP && e.packets <= e.flows * scanPackets;
    const scan = low ? scanners.get(key4(e.client)) : undefined;
    if (scan) {
      reasons.push('scan');
      why.push(scan);
    }
    if (NAMED_PROTOS[e.proto] === undefined) {
      reasons.push('protocol');
      why.push(`protocol ${e.proto} cannot be named in a service`);
    }
    if (reasons.length > 0) {
      susFlows += e.flows;
      suspicious.push({
        client: formatAddr(e.client),
        server: formatAddr(e.server),
        ...(c.workload !== undefined ? { clientWorkload: ir.workloads[c.workload].name } : {}),
        ...(s.workload !== undefined ? { serverWorkload: ir.workloads[s.workload].name } : {}),
        connection: portName(e.proto, e.port),
        reasons,
        why: why.join('; '),
        flows: e.flows,
        bytes: e.bytes,
        first: e.first,
        last: e.last,
      });
      continue;
    }
    const ce: EndId = c.workload !== undefined ? groupOf[c.workload] : -1 - mostSpecific(c.iplists, iplistNames, iplistSets);
    const se: EndId = s.workload !== undefined ? groupOf[s.workload] : -1 - mostSpecific(s.iplists, iplistNames, iplistSets);
    const conn = connKey(e.proto, e.port);
    const k = `${ce},${se},${conn}`;
    let o = observed.get(k);
    if (!o) observed.set(k, (o = { flows: 0, bytes: 0, first: Infinity, last: -Infinity, edges: 0, top: [] }));
    o.flows += e.flows;
    o.bytes += e.bytes;
    o.first = Math.min(o.first, e.first);
    o.last = Math.max(o.last, e.last);
    o.edges++;
    coveredEdges++;
    coveredFlows += e.flows;
    covered.push(e);
    const text = `${name(e.client, c.workload)} → ${name(e.server, s.workload)} ${portName(e.proto, e.port)}`;
    pushTop(o.top, { flows: e.flows, text }, keepExamples);
  }

  // ---- 4. biclusters: per connection, servers by their set of clients
  const clientsOf = new Map<string, Map<EndId, EndId[]>>(); // conn → server → clients
  for (const k of observed.keys()) {
    const [a, b, conn] = splitKey(k);
    let m = clientsOf.get(conn);
    if (!m) clientsOf.set(conn, (m = new Map()));
    let l = m.get(b);
    if (!l) m.set(b, (l = []));
    l.push(a);
  }
  const byEnds = new Map<string, { from: EndId[]; to: EndId[]; conns: string[] }>();
  for (const [conn, m] of clientsOf) {
    const byClients = new Map<string, { from: EndId[]; to: EndId[] }>();
    for (const [server, clients] of m) {
      clients.sort((x, y) => x - y);
      const ck = clients.join(',');
      let r = byClients.get(ck);
      if (!r) byClients.set(ck, (r = { from: clients, to: [] }));
      r.to.push(server);
    }
    for (const r of byClients.values()) {
      r.to.sort((x, y) => x - y);
      const ek = `${r.from.join(',')}|${r.to.join(',')}`;
      let x = byEnds.get(ek);
      if (!x) byEnds.set(ek, (x = { from: r.from, to: r.to, conns: [] }));
      x.conns.push(conn);
    }
  }

  // ---- 5. selectors and rulesets
  const scoped = new Map<string, RecommendedRule[]>();
  const global: RecommendedRule[] = [];
  const services = serviceNames(ir);
  // The groups a rule's selectors choose among (a scope's, or all), with a label index; built once per scope.
  const pools = new Map<string, Pool>();
  const poolOf = (scope: string | undefined): Pool => {
    const k = scope ?? '\u0002global';
    let p = pools.get(k);
    if (!p) pools.set(k, (p = new Pool(groups.map((_, i) => i).filter((i) => scope === undefined || groups[i].scopeKey === scope), groups)));
    return p;
  };
  const ordered = [...byEnds.values()].map((r) => ({ r, key: `${r.to.join(',')}|${r.from.join(',')}` })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const { r } of ordered) {
    const ends = [...r.from, ...r.to];
    const scopes = new Set(ends.map((e) => (e >= 0 ? groups[e].scopeKey : undefined)));
    const scope = scopes.size === 1 ? [...scopes][0] : undefined;
    const universe = poolOf(scope);
    const keys = scope !== undefined ? by.filter((k) => !scopeKeys.includes(k)) : by;
    const side = (mine: EndId[], other: EndId[]): PeerOut[] => {
      const gs = mine.filter((e) => e >= 0);
      const out: PeerOut[] = mine.filter((e) => e < 0).map((e) => ({ iplist: iplistNames[-1 - e] }));
      // A one-workload group paired only with itself: including it adds no real flow.
      const free = new Set<number>();
      const og = other.filter((e) => e >= 0);
      if (other.length === 1 && og.length === 1 && groups[og[0]].size === 1) free.add(og[0]);
      return [...selectorsFor(gs, universe, free, groups, keys), ...out];
    };
    const evidence = evidenceOf(r, observed, keepExamples);
    const rule: RecommendedRule = { id: '', from: side(r.from, r.to), to: side(r.to, r.from), services: servicesFor(r.conns, services), evidence };
    if (scope !== undefined) {
      let l = scoped.get(scope);
      if (!l) scoped.set(scope, (l = []));
      l.push(rule);
    } else global.push(rule);
  }
  const rulesets: RecommendedRuleset[] = [];
  for (const [scope, rules] of [...scoped].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    const values = scope.split('\u0000');
    const rsName = `${prefix}${values.map(slug).join('-')}`;
    const scopeSel = scopeKeys.map((k, i) => `${k} == ${quote(values[i])}`).join(' && ');
    rulesets.push({ name: rsName, scope: scopeSel, rules: rules.map((r, i) => ({ ...r, id: `${rsName}-${i + 1}` })) });
  }
  if (global.length > 0) {
    const rsName = `${prefix}cross-scope`;
    rulesets.push({ name: rsName, rules: global.map((r, i) => ({ ...r, id: `${rsName}-${i + 1}` })) });
  }
  suspicious.sort((a, b) => b.flows - a.flows || (a.client < b.client ? -1 : a.client > b.client ? 1 : 0));
  return {
    rulesets,
    covered,
    suspicious,
    ignoredKeys: ignored,
    by,
    scope: scopeKeys,
    stats: {
      edges: all.length,
      flows,
      alreadyAllowed,
      suspiciousEdges: suspicious.length,
      suspiciousFlows: susFlows,
      coveredEdges,
      coveredFlows,
      rules: rulesets.reduce((n, rs) => n + rs.rules.length, 0),
      groups: groups.length,
      ms: performance.now() - t0,
    },
  };
}

// ---------------------------------------------------------------- helpers

function mustParse(text: string): Selector {
  const r = parseSelector(text);
  if (!r.ok) throw new SyntaxError(`invalid selector \`${text}\`: ${r.error.message}`);
  return r.selector;
}

/** The `by` keys that carry identity: not one value everywhere, not a value per workload. */
export function effectiveKeys(ir: Ir, requested: readonly string[]): { by: string[]; ignored: { key: string; why: string }[] } {
  const by: string[] = [];
  const ignored: { key: string; why: string }[] = [];
  const n = ir.workloads.length;
  for (const k of requested) {
    const counts = new Map<string, number>();
    let labelled = 0;
    for (const w of ir.workloads) {
      const v = w.labels[k];
      if (v === undefined) continue;
      labelled++;
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    if (labelled === 0) ignored.push({ key: k, why: 'no workload has it' });
    else if (counts.size === 1 && n > 1) ignored.push({ key: k, why: `every workload that has it has the same value (${[...counts.keys()][0]})` });
    else if (counts.size === labelled && labelled > 8) ignored.push({ key: k, why: 'every workload has a value of its own' });
    else by.push(k);
  }
  return { by, ignored };
}

/** The IP list among `names` (all holding the address) that no other of them is inside. */
function mostSpecific(names: readonly string[], all: readonly string[], sets: readonly import('../netset/ip.js').IpSet[]): number {
  const idx = names.map((n) => all.indexOf(n));
  for (const i of idx) if (idx.every((j) => j === i || !sets[j].isSubset(sets[i]) || sets[i].isSubset(sets[j]))) return i;
  return idx[0];
}

const key4 = (a: Addr) => (typeof a === 'number' ? `4:${a}` : `6:${a}`);

/** Clients whose small TCP flows reach many ports or many hosts, with a line saying so. */
function findScanners(edges: readonly Edge[], packets: number, ports: number, hosts: number): Map<string, string> {
  const perClient = new Map<string, { ports: Set<number>; hostsByPort: Map<number, Set<string>> }>();
  for (const e of edges) {
    if (e.proto !== TCP || e.packets > e.flows * packets) continue;
    const k = key4(e.client);
    let c = perClient.get(k);
    if (!c) perClient.set(k, (c = { ports: new Set(), hostsByPort: new Map() }));
    c.ports.add(e.port);
    let h = c.hostsByPort.get(e.port);
    if (!h) c.hostsByPort.set(e.port, (h = new Set()));
    h.add(key4(e.server));
  }
  const out = new Map<string, string>();
  for (const [k, c] of perClient) {
    const widest = Math.max(...[...c.hostsByPort.values()].map((s) => s.size));
    if (c.ports.size >= ports) out.set(k, `scan: this client sent tiny TCP flows to ${c.ports.size} ports`);
    else if (widest >= hosts) out.set(k, `scan: this client sent tiny TCP flows to ${widest} hosts on one port`);
  }
  return out;
}

/**
 * Shared ends, found in the data: a kind of server (its labels but the
 * environment: DNS servers, syslog) whose port clients of at least two
 * environments other than the server's use, from at least `apps` apps; and
 * a kind of client reaching servers like that on one port (monitoring,
 * backup). Keys `s<kind>/<proto>/<port>` and `c…`.
 */
function findSharedEnds(edges: readonly Edge[], att: Attributor, ir: Ir, envKey: string, apps: number, kindOf: (w: number) => string): Set<string> {
  const acc = new Map<string, { envs: Set<string>; apps: Set<string> }>();
  const note = (k: string, own: string, env: string, app: string) => {
    if (env === own) return;
    let a = acc.get(k);
    if (!a) acc.set(k, (a = { envs: new Set(), apps: new Set() }));
    a.envs.add(env);
    a.apps.add(app);
  };
  for (const e of edges) {
    const c = att.end(e.client).workload;
    const s = att.end(e.server).workload;
    if (c === undefined || s === undefined) continue;
    const cl = ir.workloads[c].labels;
    const sl = ir.workloads[s].labels;
    const ce = cl[envKey];
    const se = sl[envKey];
    if (ce === undefined || se === undefined) continue;
    note(`s${kindOf(s)}/${e.proto}/${e.port}`, se, ce, cl.app ?? ir.workloads[c].name);
    note(`c${kindOf(c)}/${e.proto}/${e.port}`, ce, se, sl.app ?? ir.workloads[s].name);
  }
  const out = new Set<string>();
  for (const [k, a] of acc) if (a.envs.size >= 2 && a.apps.size >= apps) out.add(k);
  return out;
}

function connKey(proto: number, port: number): string {
  return `${proto}/${port}`;
}

function splitKey(k: string): [number, number, string] {
  const a = k.indexOf(',');
  const b = k.indexOf(',', a + 1);
  return [Number(k.slice(0, a)), Number(k.slice(a + 1, b)), k.slice(b + 1)];
}

function pushTop(top: { flows: number; text: string }[], x: { flows: number; text: string }, keep: number): void {
  if (top.length < keep) top.push(x);
  else if (x.flows > top[top.length - 1].flows) top[top.length - 1] = x;
  else return;
  top.sort((a, b) => b.flows - a.flows);
}

function evidenceOf(r: { from: EndId[]; to: EndId[]; conns: string[] }, observed: Map<string, Observed>, keep: number): Evidence {
  let flows = 0;
  let bytes = 0;
  let first = Infinity;
  let last = -Infinity;
  let edges = 0;
  const top: { flows: number; text: string }[] = [];
  for (const a of r.from)
    for (const b of r.to)
      for (const c of r.conns) {
        const o = observed.get(`${a},${b},${c}`);
        if (!o) continue;
        flows += o.flows;
        bytes += o.bytes;
        first = Math.min(first, o.first);
        last = Math.max(last, o.last);
        edges += o.edges;
        for (const t of o.top) pushTop(top, t, keep);
      }
  return { flows, bytes, first, last, edges, examples: top.map((t) => `${t.text} (${t.flows.toLocaleString('en-US')} flow${t.flows === 1 ? '' : 's'})`) };
}

/**
 * The fewest label conjunctions (greedy) matching exactly `members` within
 * `universe` (plus, optionally, groups in `free`), merged into `key in {…}`
 * where they differ in one key. Groups of one unlabeled workload are named.
 */
/** The labelled groups a selector chooses among, indexed by label value. */
class Pool {
  readonly ids: readonly number[];
  private readonly index = new Map<string, Map<string, number[]>>();

  constructor(universe: readonly number[], groups: readonly Group[]) {
    this.ids = universe.filter((u) => groups[u].workload === undefined);
    for (const u of this.ids) {
      for (const [k, v] of Object.entries(groups[u].labels)) {
        let byValue = this.index.get(k);
        if (!byValue) this.index.set(k, (byValue = new Map()));
        let l = byValue.get(v);
        if (!l) byValue.set(v, (l = []));
        l.push(u);
      }
    }
  }

  /** The groups with every label of the conjunction (all of them for the empty one). */
  matches(conj: Readonly<Record<string, string>>): readonly number[] {
    const lists = Object.entries(conj).map(([k, v]) => this.index.get(k)?.get(v) ?? []);
    if (lists.length === 0) return this.ids;
    lists.sort((a, b) => a.length - b.length);
    if (lists.length === 1) return lists[0];
    const rest = lists.slice(1).map((l) => new Set(l));
    return lists[0].filter((u) => rest.every((r) => r.has(u)));
  }
}

function selectorsFor(members: readonly number[], pool: Pool, free: ReadonlySet<number>, groups: readonly Group[], keys: readonly string[]): PeerOut[] {
  if (members.length === 0) return [];
  const inSet = new Set(members);
  const out: PeerOut[] = [];
  const labelled = members.filter((m) => groups[m].workload === undefined);
  for (const m of members) if (groups[m].workload !== undefined) out.push({ workload: groups[m].workload! });
  // Candidates: every sub-conjunction of every member's labels on `keys`.
  const candidates = new Map<string, { conj: Record<string, string>; matches: readonly number[]; free: number }>();
  for (const m of labelled) {
    const own = keys.filter((k) => groups[m].labels[k] !== undefined);
    for (let mask = 0; mask < 1 << own.length; mask++) {
      const conj: Record<string, string> = {};
      own.forEach((k, i) => {
        if (mask & (1 << i)) conj[k] = groups[m].labels[k];
      });
      const ck = JSON.stringify(conj);
      if (candidates.has(ck)) continue;
      const matches = pool.matches(conj);
      // Valid: matches nothing outside the members (but free groups); a pool-wide match is fine only when it covers all of it.
      if (matches.every((u) => inSet.has(u) || free.has(u))) candidates.set(ck, { conj, matches, free: matches.filter((u) => !inSet.has(u)).length });
    }
  }
  const uncovered = new Set(labelled);
  const chosen: Record<string, string>[] = [];
  const cands = [...candidates.values()];
  while (uncovered.size > 0) {
    let best: (typeof cands)[number] | undefined;
    let bestGain = 0;
    for (const c of cands) {
      let gain = 0;
      for (const u of c.matches) if (uncovered.has(u)) gain++;
      // Ties: rather no free group (a wider-looking selector), then fewer keys.
      const better = () => c.free < best!.free || (c.free === best!.free && Object.keys(c.conj).length < Object.keys(best!.conj).length);
      if (gain > bestGain || (gain === bestGain && best && better())) {
        best = c;
        bestGain = gain;
      }
    }
    if (!best || bestGain === 0) break; // cannot happen: a member's full conjunction always covers it
    chosen.push(best.conj);
    for (const u of best.matches) uncovered.delete(u);
  }
  return [...mergeIn(chosen, keys), ...out];
}

/** Conjunctions that differ only in one key's value become one `key in {…}` selector. */
function mergeIn(conjs: Record<string, string>[], keys: readonly string[]): string[] {
  type C = { eq: Record<string, string>; inKey?: string; values?: string[] };
  let items: C[] = conjs.map((c) => ({ eq: c }));
  for (const k of keys) {
    const buckets = new Map<string, C[]>();
    const rest: C[] = [];
    for (const it of items) {
      if (it.inKey !== undefined || it.eq[k] === undefined) {
        rest.push(it);
        continue;
      }
      const others = Object.entries(it.eq).filter(([x]) => x !== k).sort();
      const bk = JSON.stringify(others);
      let b = buckets.get(bk);
      if (!b) buckets.set(bk, (b = []));
      b.push(it);
    }
    items = rest;
    for (const b of buckets.values()) {
      if (b.length === 1) items.push(b[0]);
      else {
        const eq = { ...b[0].eq };
        delete eq[k];
        items.push({ eq, inKey: k, values: b.map((x) => x.eq[k]).sort() });
      }
    }
  }
  const text = (it: C): string => {
    const parts = keys.filter((k) => it.eq[k] !== undefined).map((k) => `${k} == ${quote(it.eq[k])}`);
    if (it.inKey !== undefined) parts.push(`${it.inKey} in {${it.values!.map(quote).join(', ')}}`);
    return parts.length === 0 ? 'all()' : parts.join(' && ');
  };
  return items.map(text).sort();
}

function quote(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'x';
}

/** Services of the policy made only of single connections, by the sorted list of their connection keys. */
function serviceNames(ir: Ir): { name: string; conns: string[] }[] {
  const out: { name: string; conns: string[] }[] = [];
  for (const s of ir.policy.services.values()) {
    const conns: string[] = [];
    let simple = true;
    for (const e of s.conns.entries()) {
      for (const [lo, hi] of e.ranges) {
        if (lo !== hi || (e.proto !== 6 && e.proto !== 17 && e.proto !== 132)) simple = false;
        else conns.push(connKey(e.proto, lo));
      }
    }
    if (simple && conns.length > 0 && s.process === undefined && s.user === undefined) out.push({ name: s.name, conns: conns.sort() });
  }
  // Bigger services first, so `web` (80 and 443) wins over `https` alone.
  return out.sort((a, b) => b.conns.length - a.conns.length || (a.name < b.name ? -1 : 1));
}

/** The rule's connections as service names where a service is exactly some of them, the rest inline. */
function servicesFor(conns: readonly string[], services: readonly { name: string; conns: string[] }[]): string[] {
  const left = new Set(conns);
  const names: string[] = [];
  for (const s of services) {
    if (s.conns.every((c) => left.has(c))) {
      names.push(s.name);
      for (const c of s.conns) left.delete(c);
    }
  }
  const inline = [...left].map((c) => {
    const [proto, port] = c.split('/').map(Number);
    if (proto === 1 || proto === 58) return port === ICMP_UNKNOWN ? NAMED_PROTOS[proto] : portName(proto, port);
    return `${port}/${NAMED_PROTOS[proto]}`;
  });
  return [...names.sort(), ...inline.sort(byPort)];
}

function byPort(a: string, b: string): number {
  return parseInt(a, 10) - parseInt(b, 10) || (a < b ? -1 : a > b ? 1 : 0);
}

// ---------------------------------------------------------------- output

/** The recommended rulesets as a policy file, with each rule's evidence as a comment. */
export function recommendationYaml(rec: Recommendation, header: readonly string[] = []): string {
  const date = (t: number) => (Number.isFinite(t) ? `${new Date(t).toISOString().slice(0, 19)}Z` : '-');
  const data = {
    rulesets: rec.rulesets.map((rs) => ({
      name: rs.name,
      ...(rs.scope !== undefined ? { scope: rs.scope } : {}),
      rules: rs.rules.map((r) => ({ id: r.id, from: r.from, to: r.to, services: r.services })),
    })),
  };
  const doc = new Document(data);
  doc.commentBefore = [
    ' Recommended by bulkhead from observed flows. Review before use:',
    ' every rule lists the traffic it rests on; suspicious flows got no rule.',
    ...header.map((h) => ` ${h}`),
  ].join('\n');
  const seq = doc.get('rulesets');
  if (isSeq(seq)) {
    seq.items.forEach((rsNode, i) => {
      if (!isMap(rsNode)) return;
      const rules = (rsNode as YAMLMap).get('rules');
      if (!isSeq(rules)) return;
      rules.items.forEach((ruleNode, j) => {
        const ev = rec.rulesets[i].rules[j].evidence;
        const lines = [
          ` ${ev.flows.toLocaleString('en-US')} flow${ev.flows === 1 ? '' : 's'}, ${formatBytes(ev.bytes)}, ${ev.edges.toLocaleString('en-US')} edge${ev.edges === 1 ? '' : 's'}, ${date(ev.first)} to ${date(ev.last)}`,
          ...ev.examples.map((x) => `   e.g. ${x}`),
        ];
        (ruleNode as YAMLMap).commentBefore = lines.join('\n');
        for (const k of ['from', 'to', 'services']) {
          const list = (ruleNode as YAMLMap).get(k);
          if (isSeq(list)) list.flow = true;
        }
      });
    });
  }
  return doc.toString({ lineWidth: 0 });
}

function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}
