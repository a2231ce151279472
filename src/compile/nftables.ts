/**
 * The nftables backend: one ruleset per managed workload, in one `inet`
 * table owned by bulkhead. Pure: text in, text out; `nft -c` checks it in
 * the adapters and tests.
 *
 * Shape of a host's table (a single `nft -f` transaction replaces only it):
 *
 *   table inet bulkhead {
 *     set peer4_0 { type ipv4_addr; flags interval; elements = { … } }   one per distinct peer address set
 *     chain input  { hook input;  established/related, loopback, failsafe, then jump ingress }
 *     chain output { hook output; established/related, loopback, failsafe, then jump egress }
 *     chain ingress { overrides in order, denies, allows, the default }
 *     chain egress  { … the same for the destination side }
 *   }
 *
 * Rules name peer groups through named sets, so the rule count grows with the
 * policy's rules, not with the number of workloads.
 */
import { formatAddr, formatPrefix, IpSet, type Prefix } from '../netset/ip.js';
import { BigIntervalSet, IntervalSet } from '../netset/interval.js';
import { PROTOCOLS } from '../netset/connset.js';
import type { Diagnostic } from '../model/diagnostic.js';
import type { HostPolicy, HostRule } from './host.js';
import { familiesOf, serviceMatches, type ServiceMatch } from './services.js';

/** Rules that no policy can override: management access and the control plane. */
export interface Failsafe {
  /** Sources always allowed in on `ports` (management networks). */
  readonly managementPrefixes?: readonly Prefix[];
  /** `port/proto` pairs for management access, e.g. 22/tcp. */
  readonly managementPorts?: readonly { proto: number; port: number }[];
  /** Control plane addresses: always reachable, both ways. */
  readonly controlPlane?: readonly Prefix[];
}

export interface NftOptions {
  readonly table?: string;
  readonly failsafe?: Failsafe;
  /** Log rate for drops and would-be drops, e.g. `10/second`. */
  readonly logRate?: string;
  /**
   * A side with at least this many TCP or UDP port rules dispatches on the
   * destination port through a verdict map into per-port chains (default
   * {@link DISPATCH_MIN}); fewer stay one linear chain.
   */
  readonly dispatchMin?: number;
}

/** Port rules on one side from which a verdict map dispatches to per-port chains. */
export const DISPATCH_MIN = 12;

/** A compiled host ruleset. */
export interface NftArtifact {
  readonly workload: string;
  readonly text: string;
  /**
   * The text in pieces, in order. The long pieces (a set's elements) are the
   * same string objects for every host using that peer group, so a server
   * can keep one encoded copy of each (a `Map` keyed by the string hashes it
   * once) and send a host's ruleset as a list of shared buffers.
   */
  readonly chunks: readonly string[];
  readonly rules: number;
  readonly setElements: number;
  readonly diagnostics: readonly Diagnostic[];
}

const PROTO_NAMES: Record<number, string> = { [PROTOCOLS.tcp]: 'tcp', [PROTOCOLS.udp]: 'udp', [PROTOCOLS.sctp]: 'sctp', [PROTOCOLS.icmp]: 'icmp', [PROTOCOLS.icmpv6]: 'ipv6-icmp' };

function family(set: IpSet, f: 4 | 6): IpSet {
  return f === 4 ? IpSet.fromParts(set.v4, BigIntervalSet.EMPTY) : IpSet.fromParts(IntervalSet.EMPTY, set.v6);
}

/** The elements of one family of a set, split as nft loads them fastest: single addresses, and prefixes. */
interface Split {
  /** Single addresses (small prefixes expanded): a hash set, several times faster to load than an interval set. */
  readonly singles: readonly string[];
  /** Prefixes wider than {@link EXPAND_MAX} addresses: an interval set. */
  readonly prefixes: readonly string[];
}

/** Hash sets with at least this many elements carry a `size` hint. */
const SIZE_HINT_MIN = 1024;

/** Prefixes of up to this many addresses are written as single addresses. */
const EXPAND_MAX = 16;

/** Rendered elements per address set and family, shared by every host compiled in this process (sets are immutable). */
const ELEMENTS = new WeakMap<IpSet, { 4?: Split; 6?: Split }>();

/** The elements of one family of `set`, split into single addresses and prefixes; cached. */
function familyElements(set: IpSet, f: 4 | 6): Split {
  let entry = ELEMENTS.get(set);
  if (!entry) ELEMENTS.set(set, (entry = {}));
  return (entry[f] ??= split(family(set, f)));
}

function split(set: IpSet): Split {
  const singles: string[] = [];
  const prefixes: string[] = [];
  for (const p of set.toPrefixes()) {
    const full = typeof p.addr === 'number' ? 32 : 128;
    if (p.len === full) singles.push(formatAddr(p.addr));
    else if (full - p.len <= Math.log2(EXPAND_MAX)) {
      const n = 2 ** (full - p.len);
      for (let i = 0; i < n; i++) singles.push(formatAddr(typeof p.addr === 'number' ? p.addr + i : p.addr + BigInt(i)));
    } else prefixes.push(formatPrefix(p));
  }
  return { singles, prefixes };
}

const KEYS = new WeakMap<readonly string[], string>();

/** A rendered element list joined for output, computed once per list. */
function contentKey(els: readonly string[]): string {
  let k = KEYS.get(els);
  if (k === undefined) KEYS.set(els, (k = els.join(', ')));
  return k;
}

function isAll(set: IpSet, f: 4 | 6): boolean {
  return f === 4 ? IpSet.ALL_V4.isSubset(set) : IpSet.ALL_V6.isSubset(set);
}

/** Elements of one family as nft writes them: bare addresses and prefixes. */
function elements(set: IpSet): string[] {
  return set.toPrefixes().map((p) => (p.len === (typeof p.addr === 'number' ? 32 : 128) ? formatAddr(p.addr) : formatPrefix(p)));
}

function ranges(rs: readonly (readonly [number, number])[]): string {
  const items = rs.map(([a, z]) => (a === z ? `${a}` : `${a}-${z}`));
  return items.length === 1 ? items[0] : `{ ${items.join(', ')} }`;
}

/** The nft match for one service clause, or null for "every connection". */
function matchText(m: ServiceMatch): string | null {
  switch (m.kind) {
    case 'any':
      return null;
    case 'proto':
      return `meta l4proto ${PROTO_NAMES[m.proto] ?? m.proto}`;
    case 'ports':
      return `${PROTO_NAMES[m.proto]} dport ${ranges(m.ranges)}`;
    case 'icmp': {
      const kw = m.proto === PROTOCOLS.icmp ? 'icmp' : 'icmpv6';
      return `${kw} type ${m.type}` + (m.codes ? ` ${kw} code ${ranges([m.codes])}` : '');
    }
  }
}

/** Quotes a rule id for a comment or log prefix (nft strings cannot hold a double quote). */
function quoted(s: string, max: number): string {
  const clean = s.replace(/["\\]/g, '_');
  return clean.length > max ? clean.slice(0, max - 1) + '~' : clean;
}

const DISPATCHED: readonly [number, string][] = [
  [PROTOCOLS.tcp, 'tcp'],
  [PROTOCOLS.udp, 'udp'],
];

/**
 * The chains of one side. Few port rules: one chain, the rules in order,
 * then the fallback. Many: per protocol (TCP, UDP), the ports are cut into
 * segments on which the set of port rules that may match does not change;
 * a verdict map on the destination port jumps to the segment's chain,
 * which holds, in the original order, the rules that may match there (those
 * of its ports and those for every port of the protocol or any protocol)
 * and ends with the fallback, so a jump never returns. The main chain keeps
 * every rule that is not a port rule, in order, then the fallback: the path
 * of other protocols and of ports no rule names. First-match order within
 * any one packet's path is the original order, so the verdicts are the
 * same; a new connection reads a handful of rules instead of all of them.
 */
function dispatch(dir: string, entries: readonly Entry[], fallback: readonly string[], min: number): Array<[string, string[]]> {
  const ported = (e: Entry, proto: number) => e.m.kind === 'ports' && e.m.proto === proto;
  const counts = DISPATCHED.map(([p]) => entries.filter((e) => ported(e, p)).length);
  if (counts.every((n) => n < min)) return [[dir, [...entries.flatMap((e) => e.lines), ...fallback]]];
  const main: string[] = [];
  const extra: Array<[string, string[]]> = [];
  DISPATCHED.forEach(([proto, name], k) => {
    if (counts[k] < min) return;
    const cuts = new Set<number>();
    for (const e of entries) if (e.m.kind === 'ports' && e.m.proto === proto) for (const [lo, hi] of e.m.ranges) cuts.add(lo).add(hi + 1);
    const points = [...cuts].sort((a, b) => a - b);
    const arms: string[] = [];
    for (let i = 0; i + 1 < points.length; i++) {
      const lo = points[i];
      const hi = points[i + 1] - 1;
      const here = entries.filter((e) => (e.m.kind === 'ports' && e.m.proto === proto && e.m.ranges.some(([a, z]) => a <= lo && hi <= z)) || e.m.kind === 'any' || (e.m.kind === 'proto' && e.m.proto === proto));
      if (!here.some((e) => ported(e, proto))) continue; // a gap between port rules: the main chain decides
      const chainName = `${dir}_${name}_${lo}${hi !== lo ? `_${hi}` : ''}`;
      extra.push([chainName, [...here.flatMap((e) => e.lines), ...fallback]]);
      arms.push(`${lo === hi ? lo : `${lo}-${hi}`} : jump ${chainName}`);
    }
    main.push(`${name} dport vmap { ${arms.join(', ')} }`);
  });
  for (const e of entries) if (!DISPATCHED.some(([p], k) => counts[k] >= min && ported(e, p))) main.push(...e.lines);
  main.push(...fallback);
  return [[dir, main], ...extra];
}

/** One emitted rule (one or two lines: a log line and its verdict) with the service clause it matches. */
type Entry = { lines: string[]; m: ServiceMatch };

/** Compiles one host. */
export function compileNftables(host: HostPolicy, options: NftOptions = {}): NftArtifact {
  const table = options.table ?? 'bulkhead';
  const logRate = options.logRate ?? '10/second';
  const diagnostics: Diagnostic[] = [];
  const lines: string[] = [];
  // Replace only our table, in one transaction: make sure it exists, delete it, define it anew.
  lines.push(`# bulkhead ruleset for ${host.workload} (mode ${host.mode})`, `table inet ${table} {}`, `delete table inet ${table}`);
  if (host.mode === 'idle') {
    lines.push('# idle: nothing is programmed');
    const text = lines.join('\n') + '\n';
    return { workload: host.workload, text, chunks: [text], rules: 0, setElements: 0, diagnostics };
  }

  // One named set per distinct content and family: a hash set of single addresses and an interval set of prefixes.
  // Keyed by the (cached, shared) element list itself; lists of equal length are compared by content, so equal
  // contents from different address sets still share one set, without hashing megabytes of text per rule.
  type SetEntry = { name: string; f: 4 | 6; interval: boolean; elements: readonly string[] };
  const sets: SetEntry[] = [];
  const byList = new Map<readonly string[], SetEntry>();
  const byLength = new Map<string, SetEntry[]>();
  let elementCount = 0;
  const setRef = (els: readonly string[], f: 4 | 6, interval: boolean): string => {
    let entry = byList.get(els);
    if (entry && (entry.f !== f || entry.interval !== interval)) entry = undefined;
    if (!entry) {
      const lk = `${f}${interval ? 'i' : 'h'}${els.length}`;
      const same = byLength.get(lk) ?? [];
      entry = same.find((e) => e.elements === els || contentKey(e.elements) === contentKey(els));
      if (!entry) {
        entry = { name: `peer${f}_${sets.length}`, f, interval, elements: els };
        sets.push(entry);
        same.push(entry);
        byLength.set(lk, same);
        elementCount += els.length;
      }
      byList.set(els, entry);
    }
    return '@' + entry.name;
  };
  /** The set references matching `s` in family `f`: one or two (a rule is then written once for each). */
  const setsFor = (s: IpSet, f: 4 | 6): string[] => {
    const e = familyElements(s, f);
    const refs: string[] = [];
    if (e.singles.length > 0) refs.push(setRef(e.singles, f, false));
    if (e.prefixes.length > 0) refs.push(setRef(e.prefixes, f, true));
    return refs;
  };

  let ruleCount = 0;
  const chain = (name: string, body: string[]) => {
    ruleCount += body.filter((l) => !l.startsWith('#') && !l.startsWith('type ')).length;
    return [`  chain ${name} {`, ...body.map((l) => `    ${l}`), '  }'];
  };

  const enforce = host.mode === 'enforce';
  const test = host.mode === 'test';
  const sideRules = (rules: readonly HostRule[], dir: 'ingress' | 'egress'): Array<[string, string[]]> => {
    const entries: Entry[] = [];
    const peerKw = dir === 'ingress' ? 'saddr' : 'daddr';
    const ownKw = dir === 'ingress' ? 'daddr' : 'saddr';
    for (const r of rules) {
      const id = quoted(r.rule.id, 64);
      if (r.process !== undefined || (r.user !== undefined && dir === 'ingress')) {
        const what = r.process !== undefined ? `program \`${r.process}\`` : `user \`${r.user}\` on ingress`;
        if (r.action === 'allow') {
          diagnostics.push({ code: 'BH901', severity: 'error', message: `rule \`${r.rule.id}\` limits a service to ${what}, which nftables cannot match here; the allow is left out for ${host.workload}`, loc: r.rule.loc, help: 'fail closed: the connection stays blocked on this host; drop the restriction or enforce it another way' });
          continue;
        }
        diagnostics.push({ code: 'BH902', severity: 'warning', message: `deny rule \`${r.rule.id}\` limits a service to ${what}, which nftables cannot match; it denies for every program on ${host.workload}`, loc: r.rule.loc });
      }
      const denies = r.action === 'deny';
      for (const m of serviceMatches(r.conns)) {
        for (const f of familiesOf(m)) {
          if (f === 4 ? r.peer.v4.isEmpty() : r.peer.v6.isEmpty()) continue;
          const ownSplit = r.own ? familyElements(r.own, f) : undefined;
          const own = ownSplit ? [...ownSplit.singles, ...ownSplit.prefixes] : undefined;
          if (own && own.length === 0) continue;
          const ip = f === 4 ? 'ip' : 'ip6';
          const all = isAll(r.peer, f);
          // A peer held in two sets (single addresses, prefixes) takes the rule twice, with the same verdict.
          for (const ref of all ? [undefined] : setsFor(r.peer, f)) {
            const parts: string[] = [];
            if (own) parts.push(`${ip} ${ownKw} { ${own.join(', ')} }`);
            if (ref) parts.push(`${ip} ${peerKw} ${ref}`);
            else if (m.kind === 'any' || m.kind === 'ports' || (m.kind === 'proto' && familiesOf(m).length === 2)) parts.push(`meta nfproto ipv${f}`);
            const mt = matchText(m);
            if (mt) parts.push(mt);
            // A user restriction can only be matched for the local sender (egress); on ingress it was reported above.
            if (r.user !== undefined && dir === 'egress') parts.push(`meta skuid "${quoted(r.user, 32)}"`);
            const match = parts.join(' ');
            const comment = `comment "${id}"`;
            if (!denies) entries.push({ m, lines: [`${match} counter accept ${comment}`] });
            else if (enforce) entries.push({ m, lines: [`${match} limit rate ${logRate} log prefix "bh drop ${quoted(r.rule.id, 40)} "`, `${match} counter drop ${comment}`] });
            else entries.push({ m, lines: [`${match} limit rate ${logRate} log prefix "bh test-drop ${quoted(r.rule.id, 34)} "`, `${match} counter accept ${comment}`] });
          }
        }
      }
    }
    const fallback = enforce
      ? [`limit rate ${logRate} log prefix "bh drop default "`, `counter drop comment "default"`]
      : test
        ? [`limit rate ${logRate} log prefix "bh test-drop default "`, `counter accept comment "default"`]
        : [`counter accept comment "visibility"`];
    return dispatch(dir, entries, fallback, options.dispatchMin ?? DISPATCH_MIN);
  };

  const failsafe = (dir: 'input' | 'output'): string[] => {
    const fs = options.failsafe;
    if (!fs) return [];
    const out: string[] = [];
    const kw = dir === 'input' ? 'saddr' : 'daddr';
    const cp = IpSet.fromPrefixes(fs.controlPlane ?? []);
    for (const f of [4, 6] as const) {
      const part = family(cp, f);
      if (!part.isEmpty()) out.push(`${f === 4 ? 'ip' : 'ip6'} ${kw} { ${elements(part).join(', ')} } counter accept comment "failsafe: control plane"`);
    }
    if (dir === 'input') {
      const mgmt = IpSet.fromPrefixes(fs.managementPrefixes ?? []);
      for (const f of [4, 6] as const) {
        const part = family(mgmt, f);
        if (part.isEmpty()) continue;
        for (const p of fs.managementPorts ?? []) {
          out.push(`${f === 4 ? 'ip' : 'ip6'} saddr { ${elements(part).join(', ')} } ${PROTO_NAMES[p.proto]} dport ${p.port} counter accept comment "failsafe: management"`);
        }
      }
    }
    return out;
  };

  const visibility = host.mode === 'visibility';
  const ingress: Array<[string, string[]]> = visibility ? [['ingress', ['counter accept comment "visibility"']]] : sideRules(host.ingress, 'ingress');
  const egress: Array<[string, string[]]> = visibility ? [['egress', ['counter accept comment "visibility"']]] : sideRules(host.egress, 'egress');
  const body: string[] = [];
  // IPv6 neighbour discovery is the IPv6 counterpart of ARP (which an inet table never sees): always allowed, or IPv6 stops working.
  const nd = 'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept';
  body.push(...chain('input', ['type filter hook input priority filter; policy accept;', 'ct state established,related accept', 'iif "lo" accept', nd, ...failsafe('input'), 'jump ingress']));
  body.push(...chain('output', ['type filter hook output priority filter; policy accept;', 'ct state established,related accept', 'oif "lo" accept', nd, ...failsafe('output'), 'jump egress']));
  for (const [name, lines] of [...ingress, ...egress]) body.push(...chain(name, lines));
  lines.push(`table inet ${table} {`);
  // Pieces, concatenated, not joined: the element lists (megabytes on a big host) are cached flat strings
  // shared by every host with the same peer group, and `+` makes a rope that points at them, so compiling a
  // host copies none of them; the bytes are laid out once, when the text is written to nft or a file.
  const chunks: string[] = [lines.join('\n') + '\n'];
  for (const s of sets) {
    // A big hash set says its size, so the kernel sizes its table once instead of growing it while loading
    // (a 355k-element ruleset loads in about two thirds of the time).
    const size = !s.interval && s.elements.length >= SIZE_HINT_MIN ? `    size ${s.elements.length}\n` : '';
    chunks.push(`  set ${s.name} {\n    type ${s.f === 4 ? 'ipv4_addr' : 'ipv6_addr'}\n${s.interval ? '    flags interval\n' : ''}${size}    elements = { `, contentKey(s.elements), ' }\n  }\n');
  }
  chunks.push(body.join('\n') + '\n}\n');
  let text = '';
  for (const c of chunks) text += c;
  return { workload: host.workload, text, chunks, rules: ruleCount, setElements: elementCount, diagnostics };
}
