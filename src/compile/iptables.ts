/**
 * The iptables + ipset backend, for hosts without nftables: the same
 * semantics and structure as the nftables backend (`nftables.ts`), rule by
 * rule, written as three restore files. Pure: text in, text out.
 *
 * What bulkhead owns, and nothing else: four chains of the `filter` table,
 *
 *   BH-INPUT    established/related, loopback, ICMPv6 neighbour discovery, failsafe, then -j BH-INGRESS
 *   BH-OUTPUT   the same for the output path, then -j BH-EGRESS
 *   BH-INGRESS  overrides in order, denies, allows, the default
 *   BH-EGRESS   the same for the destination side
 *
 * and ipsets named `<prefix>-<16 hex digits>-<4|6>` (`bh-…` by default). The
 * restore files never touch another chain or set: `:BH-INGRESS - [0:0]` in an
 * `iptables-restore --noflush` file creates the chain or flushes it, and the
 * built-in chains are never declared (declaring `:INPUT ACCEPT` would reset
 * the host's policy). The one rule bulkhead needs in a built-in chain, the jump
 * from INPUT to BH-INPUT (and OUTPUT to BH-OUTPUT), cannot be made idempotent
 * in a restore file (`-D` fails when it is missing, `-I` adds one more on every
 * apply), so the apply step checks and inserts it: {@link iptablesJumpCommands}.
 *
 * Applying an artifact, in this order (the adapter's job):
 *   1. `ipset restore < ipset`                          the sets the new rules name
 *   2. `iptables-restore --noflush < iptables`          one atomic commit per file
 *      `ip6tables-restore --noflush < ip6tables`
 *   3. {@link iptablesJumpCommands}: `-C`, then `-I … 1` when missing
 *   4. {@link staleIpsetCommands}: destroy our sets no rule names any more
 * Stop at the first failure: until step 2 succeeds the old rules stay in force
 * with their old sets, untouched.
 *
 * Sets are content-addressed: the name carries a hash of the family and the
 * elements, so a name's content never changes. Step 1 only ever creates sets
 * (`create … -exist`) and adds the elements they already hold when they exist
 * (`add … -exist`): re-applying is a no-op, and no live set is ever flushed,
 * swapped or half-filled. With positional names (`bh-0-4`) and `swap`, each
 * set would be atomic, but between steps 1 and 2 the old rules would read the
 * new contents: a deny's peers could briefly sit in the set an old allow rule
 * names. Here the switch from old to new policy is the single commit of step 2.
 * Because a name fixes its content, hosts sharing a network namespace can
 * share sets safely; `setPrefix` keeps groups of hosts apart if wanted.
 * `hash:net` cannot hold a /0, so "every address" of a family is no set (no
 * match clause) and a /0 inside a set is written as its two /1 halves.
 */
import { formatAddr, formatPrefix, IpSet, parsePrefix, type Prefix } from '../netset/ip.js';
import { BigIntervalSet, IntervalSet } from '../netset/interval.js';
import { hasPorts, PROTOCOLS } from '../netset/connset.js';
import type { Diagnostic } from '../model/diagnostic.js';
import type { HostPolicy, HostRule } from './host.js';
import type { Failsafe } from './nftables.js';
import { familiesOf, serviceMatches, type ServiceMatch } from './services.js';

/** The chains bulkhead owns in the `filter` table of iptables and ip6tables. */
export const IPTABLES_CHAINS = Object.freeze({ input: 'BH-INPUT', output: 'BH-OUTPUT', ingress: 'BH-INGRESS', egress: 'BH-EGRESS' } as const);

/** Options of the iptables backend; `failsafe` and `logRate` mean what they mean for nftables. */
export interface IptablesOptions {
  /** Rules that no policy can override: management access and the control plane. */
  readonly failsafe?: Failsafe;
  /** Log rate for drops and would-be drops: `<n>/second`, `/minute`, `/hour` or `/day` (default `10/second`). */
  readonly logRate?: string;
  /** The first part of every ipset name (default `bh`): 1-12 letters, digits, `_`, `.` or `-`, starting with a letter or digit. */
  readonly setPrefix?: string;
}

/** A compiled host: three restore files and what they hold. */
export interface IptablesArtifact {
  readonly workload: string;
  /** For `ipset restore`; load it first. */
  readonly ipset: string;
  /** For `iptables-restore --noflush`. */
  readonly iptables: string;
  /** For `ip6tables-restore --noflush`. */
  readonly ip6tables: string;
  /** Rules in both families' chains (`-A` lines). */
  readonly rules: number;
  /** Elements added to ipsets (`add` lines). */
  readonly setElements: number;
  readonly diagnostics: Diagnostic[];
}

/** One command of the apply step, as an argument vector (no shell). */
export type Argv = readonly string[];

/**
 * A jump from a built-in chain to one of ours, as the apply step makes sure of
 * it: run `check`; exit status 0 means the jump is there, 1 that it is missing
 * (then run `insert`), anything else is an error (no such chain: load the
 * restore file first).
 */
export interface JumpCommand {
  readonly family: 4 | 6;
  readonly chain: 'INPUT' | 'OUTPUT';
  readonly target: string;
  readonly check: Argv;
  readonly insert: Argv;
}

const DEFAULT_LOG_RATE = '10/second';
const DEFAULT_SET_PREFIX = 'bh';
/** The kernel's limits: chain comment 255 bytes, LOG prefix 29, ipset name 31. */
const MAX_COMMENT = 255;
const MAX_LOG_PREFIX = 29;
const MAX_SET_NAME = 31;
/** multiport takes at most 15 ports, a range counting as two. */
const MULTIPORT_MAX = 15;
/** ICMPv6 router solicitation and advertisement, neighbour solicitation and advertisement. */
const ND_TYPES = [133, 134, 135, 136] as const;

const PROTO_NAMES: Record<number, string> = { [PROTOCOLS.tcp]: 'tcp', [PROTOCOLS.udp]: 'udp', [PROTOCOLS.sctp]: 'sctp', [PROTOCOLS.icmp]: 'icmp', [PROTOCOLS.icmpv6]: 'ipv6-icmp' };
/** A user name or uid `--uid-owner` can take: the POSIX portable user name characters. */
const USER_RE = /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$/;
const SET_PREFIX_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,11}$/;
const LOG_RATE_RE = /^[1-9][0-9]{0,5}\/(second|minute|hour|day)$/;

/**
 * The commands that make INPUT jump to BH-INPUT and OUTPUT to BH-OUTPUT,
 * exactly once, in both families: first in the built-in chain, so no rule of
 * the host's own can accept a flow before the policy sees it. Run after the
 * restore files are loaded (the chains must exist).
 */
export function iptablesJumpCommands(): JumpCommand[] {
  const out: JumpCommand[] = [];
  for (const family of [4, 6] as const) {
    const bin = family === 4 ? 'iptables' : 'ip6tables';
    for (const [chain, target] of [['INPUT', IPTABLES_CHAINS.input], ['OUTPUT', IPTABLES_CHAINS.output]] as const) {
      out.push({
        family,
        chain,
        target,
        check: [bin, '-w', '-t', 'filter', '-C', chain, '-j', target],
        insert: [bin, '-w', '-t', 'filter', '-I', chain, '1', '-j', target],
      });
    }
  }
  return out;
}

/** The names of the ipsets an artifact creates (its rules name no others). */
export function ipsetNames(artifact: Pick<IptablesArtifact, 'ipset'>): string[] {
  const out: string[] = [];
  for (const line of artifact.ipset.split('\n')) {
    const m = /^create (\S+) /.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}

/**
 * The `ipset destroy` commands for the sets bulkhead made earlier that the
 * artifact no longer uses, given the names loaded now (`ipset list -n`).
 * Only names of bulkhead's own shape with the same prefix are considered. Run
 * after the new rules are in force; the kernel refuses to destroy a set a
 * rule still names, so a failure here is harmless.
 */
export function staleIpsetCommands(artifact: Pick<IptablesArtifact, 'ipset'>, loaded: readonly string[], options: Pick<IptablesOptions, 'setPrefix'> = {}): Argv[] {
  const prefix = checkSetPrefix(options.setPrefix);
  const keep = new Set(ipsetNames(artifact));
  const ours = new RegExp(`^${prefix.replace(/[.]/g, '\\.')}-[0-9a-f]{16}-[46]$`);
  return loaded.filter((n) => ours.test(n) && !keep.has(n)).map((n) => ['ipset', 'destroy', n]);
}

function checkSetPrefix(prefix: string | undefined): string {
  const p = prefix ?? DEFAULT_SET_PREFIX;
  if (!SET_PREFIX_RE.test(p)) throw new RangeError(`ipset name prefix \`${p}\` must be 1-12 letters, digits, \`_\`, \`.\` or \`-\`, starting with a letter or digit`);
  return p;
}

function family(set: IpSet, f: 4 | 6): IpSet {
  return f === 4 ? IpSet.fromParts(set.v4, BigIntervalSet.EMPTY) : IpSet.fromParts(IntervalSet.EMPTY, set.v6);
}

function isAll(set: IpSet, f: 4 | 6): boolean {
  return f === 4 ? IpSet.ALL_V4.isSubset(set) : IpSet.ALL_V6.isSubset(set);
}

/** Set elements as `ipset save` writes them: bare addresses and prefixes, a /0 as its two halves (hash:net takes /1 to /32 or /128). */
function setElements(set: IpSet): string[] {
  const out: string[] = [];
  for (const p of set.toPrefixes()) {
    const bits = typeof p.addr === 'number' ? 32 : 128;
    if (p.len === 0) {
      const half: Prefix = typeof p.addr === 'number' ? { addr: 0x80000000, len: 1 } : { addr: 1n << 127n, len: 1 };
      out.push(formatPrefix({ addr: p.addr, len: 1 }), formatPrefix(half));
    } else out.push(p.len === bits ? formatAddr(p.addr) : formatPrefix(p));
  }
  return out;
}

/**
 * A 64-bit hash of a string as 16 hex digits (two 32-bit lanes, cyrb53's
 * mixing): names a set by its content. Not cryptographic; a collision needs
 * two different sets of one host's estate to agree on 64 bits.
 */
function hash64(s: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (h2 >>> 0).toString(16).padStart(8, '0') + (h1 >>> 0).toString(16).padStart(8, '0');
}

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Printable ASCII without `"` and `\`, at most `max` bytes: safe inside a
 * double-quoted restore-file argument (iptables-restore reads `\` as an
 * escape and `"` as the end of the argument) and in the kernel's fixed-size
 * fields. A shortened text ends in `~`.
 */
function clean(s: string, max: number): string {
  const t = s.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return t.length > max ? t.slice(0, max - 1) + '~' : t;
}

/**
 * A log prefix that fits the LOG target's 29 bytes: `<head><tag> `, where the
 * tag is the rule id, or when that is too long its start, `~` and the IR rule
 * index, so shortened tags of different rules stay apart.
 */
function logPrefix(head: string, id: string, index: number | undefined): string {
  const budget = MAX_LOG_PREFIX - head.length - 1;
  const full = clean(id, Number.MAX_SAFE_INTEGER);
  let tag = full;
  if (full.length > budget) {
    const suffix = index === undefined ? '~' : `~${index}`;
    tag = full.slice(0, Math.max(0, budget - suffix.length)) + suffix;
  }
  return `"${head}${tag} "`;
}

function comment(text: string): string {
  return `-m comment --comment "${clean(text, MAX_COMMENT)}"`;
}

function protoName(p: number): string {
  return PROTO_NAMES[p] ?? String(p);
}

/** One rule's service part: `-p` and the matches after it; neither means every connection. */
interface Fragment {
  readonly proto?: string;
  readonly match?: string;
}

/** A service clause as fragments, or, when iptables cannot say it exactly, why, and the nearest wider fragments. */
type Rendered = { readonly exact: true; readonly frags: Fragment[] } | { readonly exact: false; readonly why: string; readonly wider: Fragment[] };

/** Port ranges split for multiport: a single port or range uses `--dport`, more use `--dports`, at most 15 ports a rule (a range counts two). */
function portFragments(proto: number, ranges: readonly (readonly [number, number])[]): Fragment[] {
  const p = protoName(proto);
  const chunks: string[][] = [];
  let cur: string[] = [];
  let weight = 0;
  for (const [a, z] of ranges) {
    const w = a === z ? 1 : 2;
    if (weight + w > MULTIPORT_MAX) {
      chunks.push(cur);
      cur = [];
      weight = 0;
    }
    cur.push(a === z ? `${a}` : `${a}:${z}`);
    weight += w;
  }
  if (cur.length > 0) chunks.push(cur);
  return chunks.map((c) => ({ proto: p, match: c.length === 1 ? `-m ${p} --dport ${c[0]}` : `-m multiport --dports ${c.join(',')}` }));
}

function renderService(m: ServiceMatch): Rendered {
  switch (m.kind) {
    case 'any':
      return { exact: true, frags: [{}] };
    case 'proto':
      // iptables reads protocol 0 as "every protocol".
      if (m.proto === 0) return { exact: false, why: 'protocol `0`, which iptables reads as every protocol', wider: [{}] };
      return { exact: true, frags: [{ proto: protoName(m.proto) }] };
    case 'ports':
      return { exact: true, frags: portFragments(m.proto, m.ranges) };
    case 'icmp': {
      const v4 = m.proto === PROTOCOLS.icmp;
      const proto = protoName(m.proto);
      const opt = v4 ? '-m icmp --icmp-type' : '-m icmp6 --icmpv6-type';
      // The kernel's icmp match reads type 255 as "any type".
      if (v4 && m.type === 255) return { exact: false, why: 'ICMP type `255`, which iptables reads as every ICMP type', wider: [{ proto }] };
      if (!m.codes) return { exact: true, frags: [{ proto, match: `${opt} ${m.type}` }] };
      // The match takes one code or all of them: one rule per code.
      const frags: Fragment[] = [];
      for (let c = m.codes[0]; c <= m.codes[1]; c++) frags.push({ proto, match: `${opt} ${m.type}/${c}` });
      return { exact: true, frags };
    }
  }
}

/**
 * Compiles one host into ipset and iptables/ip6tables restore files (see the
 * module comment for how to apply them). Throws RangeError for an invalid
 * `logRate` or `setPrefix`; what the policy asks and iptables cannot do is
 * reported in `diagnostics` and fails closed: an allow is left out (BH901), a
 * deny is kept, wider (BH902).
 */
export function compileIptables(host: HostPolicy, options: IptablesOptions = {}): IptablesArtifact {
  const logRate = options.logRate ?? DEFAULT_LOG_RATE;
  if (!LOG_RATE_RE.test(logRate)) throw new RangeError(`log rate \`${logRate}\` must be \`<n>/second\`, \`/minute\`, \`/hour\` or \`/day\``);
  const setPrefix = checkSetPrefix(options.setPrefix);
  const diagnostics: Diagnostic[] = [];
  const C = IPTABLES_CHAINS;
  const header = (what: string) => `# bulkhead ${what} for ${clean(host.workload, 200)} (mode ${host.mode})`;

  // Per family, per chain: the rule bodies (what follows `-A <chain> `).
  const body = { 4: new Map<string, string[]>(), 6: new Map<string, string[]>() };
  for (const f of [4, 6] as const) for (const c of Object.values(C)) body[f].set(c, []);
  const add = (f: 4 | 6, chain: string, rule: string) => body[f].get(chain)!.push(rule);

  const sets = new Map<string, { name: string; f: 4 | 6; elements: string[] }>();
  const setFor = (s: IpSet, f: 4 | 6): string => {
    const els = setElements(s);
    const key = `${f}|${els.join(',')}`;
    let entry = sets.get(key);
    if (!entry) {
      entry = { name: `${setPrefix}-${hash64(key)}-${f}`, f, elements: els };
      // INVARIANT: the prefix is at most 12 characters, so names stay within 31.
      if (entry.name.length > MAX_SET_NAME) throw new Error(`internal: ipset name ${entry.name} is too long`);
      sets.set(key, entry);
    }
    return entry.name;
  };

  const enforce = host.mode === 'enforce';
  const reported = new Set<string>();
  /** Reports once per rule and reason: BH901 for an allow left out, BH902 for a deny kept wider. */
  const failClosed = (r: HostRule, what: string, allow: boolean, wider: string) => {
    const key = `${r.index}|${what}`;
    if (reported.has(key)) return;
    reported.add(key);
    if (allow) diagnostics.push({ code: 'BH901', severity: 'error', message: `rule \`${r.rule.id}\` limits a service to ${what}, which iptables cannot match here; the allow is left out for ${host.workload}`, loc: r.rule.loc, help: 'fail closed: the connection stays blocked on this host; drop the restriction or enforce it another way' });
    else diagnostics.push({ code: 'BH902', severity: 'warning', message: `deny rule \`${r.rule.id}\` limits a service to ${what}, which iptables cannot match; it denies ${wider} on ${host.workload}`, loc: r.rule.loc });
  };

  const sideRules = (rules: readonly HostRule[], dir: 'ingress' | 'egress') => {
    const chain = dir === 'ingress' ? C.ingress : C.egress;
    const peerDir = dir === 'ingress' ? 'src' : 'dst';
    const ownFlag = dir === 'ingress' ? '-d' : '-s';
    const ownDir = dir === 'ingress' ? 'dst' : 'src';
    for (const r of rules) {
      const allow = r.action === 'allow';
      // A program cannot be matched at all, a user only for the local sender (egress).
      let user = r.user;
      if (r.process !== undefined || (r.user !== undefined && dir === 'ingress')) {
        const what = r.process !== undefined ? `program \`${r.process}\`` : `user \`${r.user}\` on ingress`;
        failClosed(r, what, allow, 'for every program');
        if (allow) continue;
        if (dir === 'ingress') user = undefined;
      }
      if (user !== undefined && !USER_RE.test(user)) {
        failClosed(r, `user \`${user}\`, which is not a user name or uid`, allow, 'for every user');
        if (allow) continue;
        user = undefined;
      }
      const id = r.rule.id;
      for (const m of serviceMatches(r.conns)) {
        const rendered = renderService(m);
        let frags: Fragment[];
        if (rendered.exact) frags = rendered.frags;
        else {
          failClosed(r, rendered.why, allow, 'more widely');
          if (allow) continue;
          frags = rendered.wider;
        }
        for (const f of familiesOf(m)) {
          const peer = family(r.peer, f);
          if (peer.isEmpty()) continue;
          const own = r.own ? family(r.own, f) : undefined;
          if (own && own.isEmpty()) continue;
          // Own addresses: one prefix inline, more through a set; the peer through a set unless it is every address.
          const ownPrefixes = own ? own.toPrefixes() : [];
          const addrParts: string[] = [];
          if (ownPrefixes.length === 1) addrParts.push(`${ownFlag} ${formatPrefix(ownPrefixes[0])}`);
          const setParts: string[] = [];
          if (!isAll(peer, f)) setParts.push(`-m set --match-set ${setFor(peer, f)} ${peerDir}`);
          if (own && ownPrefixes.length > 1) setParts.push(`-m set --match-set ${setFor(own, f)} ${ownDir}`);
          for (const fr of frags) {
            const parts = [...addrParts];
            if (fr.proto) parts.push(`-p ${fr.proto}`);
            parts.push(...setParts);
            if (fr.match) parts.push(fr.match);
            if (user !== undefined) parts.push(`-m owner --uid-owner ${user}`);
            const match = parts.length > 0 ? parts.join(' ') + ' ' : '';
            if (allow) add(f, chain, `${match}${comment(id)} -j ACCEPT`);
            else if (enforce) {
              add(f, chain, `${match}-m limit --limit ${logRate} ${comment(id)} -j LOG --log-prefix ${logPrefix('bh drop ', id, r.index)}`);
              add(f, chain, `${match}${comment(id)} -j DROP`);
            } else {
              add(f, chain, `${match}-m limit --limit ${logRate} ${comment(id)} -j LOG --log-prefix ${logPrefix('bh test-drop ', id, r.index)}`);
              add(f, chain, `${match}${comment(id)} -j ACCEPT`);
            }
          }
        }
      }
    }
    for (const f of [4, 6] as const) {
      if (enforce) add(f, chain, `-m limit --limit ${logRate} ${comment('default')} -j LOG --log-prefix ${logPrefix('bh drop ', 'default', undefined)}`);
      else add(f, chain, `-m limit --limit ${logRate} ${comment('default')} -j LOG --log-prefix ${logPrefix('bh test-drop ', 'default', undefined)}`);
      add(f, chain, `${comment('default')} -j ${enforce ? 'DROP' : 'ACCEPT'}`);
    }
  };

  // Failsafe rules name their addresses inline, never through a set: they must hold even if the sets failed to load.
  const failsafe = (f: 4 | 6, dir: 'input' | 'output') => {
    const fs = options.failsafe;
    if (!fs) return;
    const chain = dir === 'input' ? C.input : C.output;
    const flag = dir === 'input' ? '-s' : '-d';
    for (const p of family(IpSet.fromPrefixes(fs.controlPlane ?? []), f).toPrefixes()) add(f, chain, `${flag} ${formatPrefix(p)} ${comment('failsafe: control plane')} -j ACCEPT`);
    if (dir === 'input') {
      const mgmt = family(IpSet.fromPrefixes(fs.managementPrefixes ?? []), f).toPrefixes();
      for (const port of fs.managementPorts ?? []) {
        const name = protoName(port.proto);
        const svc = hasPorts(port.proto) ? `-p ${name} -m ${name} --dport ${port.port}` : `-p ${name}`;
        for (const p of mgmt) add(f, chain, `-s ${formatPrefix(p)} ${svc} ${comment('failsafe: management')} -j ACCEPT`);
      }
    }
  };

  if (host.mode !== 'idle') {
    for (const f of [4, 6] as const) {
      for (const [chain, lo, dir] of [[C.input, '-i lo', 'input'], [C.output, '-o lo', 'output']] as const) {
        add(f, chain, `-m conntrack --ctstate RELATED,ESTABLISHED ${comment('established')} -j ACCEPT`);
        add(f, chain, `${lo} ${comment('loopback')} -j ACCEPT`);
        // IPv6 neighbour discovery is the IPv6 counterpart of ARP (which iptables never sees): always allowed, or IPv6 stops working.
        if (f === 6) for (const t of ND_TYPES) add(f, chain, `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} ${comment('neighbour discovery')} -j ACCEPT`);
        failsafe(f, dir);
        add(f, chain, `${comment('policy')} -j ${dir === 'input' ? C.ingress : C.egress}`);
      }
    }
    if (host.mode === 'visibility') {
      for (const f of [4, 6] as const) for (const chain of [C.ingress, C.egress]) add(f, chain, `${comment('visibility')} -j ACCEPT`);
    } else {
      sideRules(host.ingress, 'ingress');
      sideRules(host.egress, 'egress');
    }
  }

  let rules = 0;
  const restore = (f: 4 | 6): string => {
    const lines = [header(f === 4 ? 'iptables rules' : 'ip6tables rules'), `# load after the ipsets, with ${f === 4 ? 'iptables' : 'ip6tables'}-restore --noflush`];
    if (host.mode === 'idle') lines.push('# idle: nothing is programmed; the chains are emptied');
    lines.push('*filter');
    // Declaring a chain creates it, or with --noflush empties it; the built-in chains are never declared.
    for (const c of Object.values(C)) lines.push(`:${c} - [0:0]`);
    for (const c of Object.values(C)) {
      for (const r of body[f].get(c)!) {
        lines.push(`-A ${c} ${r}`);
        rules++;
      }
    }
    lines.push('COMMIT');
    return lines.join('\n') + '\n';
  };
  const iptables = restore(4);
  const ip6tables = restore(6);

  let setElementCount = 0;
  const ipsetLines = [header('ipsets'), '# load first, with ipset restore; sets are named by their content: re-applying adds nothing'];
  if (host.mode === 'idle') ipsetLines.push('# idle: no sets');
  for (const s of sets.values()) {
    const n = s.elements.length;
    // maxelem is part of a set's identity for `create -exist`: it follows from the content, like the name.
    ipsetLines.push(`create ${s.name} hash:net family ${s.f === 4 ? 'inet' : 'inet6'} hashsize ${Math.max(1024, pow2AtLeast(n))} maxelem ${Math.max(65536, pow2AtLeast(n))} -exist`);
    for (const e of s.elements) ipsetLines.push(`add ${s.name} ${e} -exist`);
    setElementCount += n;
  }
  return { workload: host.workload, ipset: ipsetLines.join('\n') + '\n', iptables, ip6tables, rules, setElements: setElementCount, diagnostics };
}

/** The three restore files of an artifact: all that loading it needs. */
export type IptablesFiles = Pick<IptablesArtifact, 'ipset' | 'iptables' | 'ip6tables'>;

const PARTS = ['ipset', 'iptables', 'ip6tables'] as const;
const SECTION = (p: string) => `### ${p}`;

/**
 * An artifact as one text, the way the control plane sends it to an agent:
 * a first line naming the workload, then each restore file under a `### ipset`,
 * `### iptables`, `### ip6tables` line, without its own first line (the one
 * comment that names the workload), so the rest is the same for every host
 * with the same rules. {@link parseIptablesDocument} reads it back.
 */
export function iptablesDocument(a: IptablesArtifact, mode: string): string {
  const out = [`# bulkhead iptables rules for ${clean(a.workload, 200)} (mode ${mode})\n`];
  for (const p of PARTS) {
    const text = a[p];
    out.push(`${SECTION(p)}\n`, text.startsWith('# bulkhead ') ? text.slice(text.indexOf('\n') + 1) : text);
  }
  return out.join('');
}

const TARGETS = new Set(['ACCEPT', 'DROP', 'REJECT', 'LOG', 'NFLOG', 'RETURN', ...Object.values(IPTABLES_CHAINS)]);
const OWN_CHAIN = `(?:${Object.values(IPTABLES_CHAINS).join('|')})`;
const CHAIN_DECL = new RegExp(`^:${OWN_CHAIN} - \\[0:0\\]$`);
const OWN_CHAIN_RE = new RegExp(`^${OWN_CHAIN}$`);
const OWN_SET_RE = /^bh-[0-9a-f]{16}-[46]$/;
/** An address or prefix as bulkhead writes them: what parsePrefix reads, without host bits (no name to look up, no `10.1` shorthand). */
function isAddress(s: string): boolean {
  if (!/^[0-9a-fA-F.:]+(?:\/\d{1,3})?$/.test(s)) return false;
  const r = parsePrefix(s);
  if ('error' in r || r.hostBitsSet) return false;
  // IPv4 needs all four parts: inet_aton would read `10.1` as 10.0.0.1.
  return s.includes(':') || /^\d{1,3}(\.\d{1,3}){3}(\/\d{1,2})?$/.test(s);
}

/**
 * The longest line the agent takes. ipset restore reads 1,023 bytes a line and
 * iptables-restore 10,239, and each runs what is past that as a line of its
 * own, unchecked: bulkhead's lines are far shorter (a comment is at most 255).
 */
const MAX_LINE = 1000;
const QUOTED = /^"[^"\\]*"$/;
const PORT_RANGE = /^(0|[1-9]\d{0,4})(:(0|[1-9]\d{0,4}))?$/;
const PORT_LIST = /^(0|[1-9]\d{0,4})(:(0|[1-9]\d{0,4}))?(,(0|[1-9]\d{0,4})(:(0|[1-9]\d{0,4}))?)*$/;
const MODULES = new Set(['comment', 'conntrack', 'set', 'tcp', 'udp', 'icmp', 'icmp6', 'multiport', 'limit', 'owner']);

/**
 * The options a rule of bulkhead's may have, each with what its argument
 * must look like: exactly the compiler's vocabulary (and NFLOG's, which the
 * agent writes), nothing else. A long option name iptables would also take
 * (`--jump`, `--goto`, `--source`) is not in it, so it is refused.
 */
const OPTIONS: Record<string, (arg: string, next: string | undefined) => boolean | 'two'> = {
  '-p': (a) => /^[a-z0-9-]{1,16}$/.test(a),
  '-s': isAddress,
  '-d': isAddress,
  '-i': (a) => /^[A-Za-z0-9_.-]{1,15}$/.test(a),
  '-o': (a) => /^[A-Za-z0-9_.-]{1,15}$/.test(a),
  '-m': (a) => MODULES.has(a),
  '--comment': (a) => QUOTED.test(a) || /^[\x21-\x7e]+$/.test(a),
  '--ctstate': (a) => /^[A-Z]+(,[A-Z]+)*$/.test(a),
  '--match-set': (a, next) => OWN_SET_RE.test(a) && (next === 'src' || next === 'dst') && 'two',
  // No leading zeros: iptables reads `010` as octal 8.
  '--dport': (a) => PORT_RANGE.test(a),
  '--sport': (a) => PORT_RANGE.test(a),
  '--dports': (a) => PORT_LIST.test(a),
  '--sports': (a) => PORT_LIST.test(a),
  '--icmp-type': (a) => /^(\d{1,3}(\/\d{1,3})?|[a-z-]{1,40})$/.test(a),
  '--icmpv6-type': (a) => /^(\d{1,3}(\/\d{1,3})?|[a-z-]{1,40})$/.test(a),
  '--limit': (a) => LOG_RATE_RE.test(a),
  '--uid-owner': (a) => USER_RE.test(a),
  '--log-prefix': (a) => QUOTED.test(a),
  '--nflog-group': (a) => /^(0|[1-9]\d{0,4})$/.test(a) && Number(a) <= 65535,
  '--nflog-prefix': (a) => QUOTED.test(a),
};

/** Splits a restore line into words as iptables-restore does for what bulkhead writes: spaces, and double-quoted words without escapes. */
function words(line: string): string[] | undefined {
  const out: string[] = [];
  let i = 0;
  while (i < line.length) {
    if (line[i] === ' ') {
      i++;
      continue;
    }
    if (line[i] === '"') {
      const end = line.indexOf('"', i + 1);
      if (end < 0 || (end + 1 < line.length && line[end + 1] !== ' ')) return undefined;
      out.push(line.slice(i, end + 1));
      i = end + 1;
      continue;
    }
    let end = line.indexOf(' ', i);
    if (end < 0) end = line.length;
    const w = line.slice(i, end);
    if (w.includes('"')) return undefined;
    out.push(w);
    i = end;
  }
  return out;
}

/**
 * Why a rule line of a restore file is not one bulkhead writes, or undefined:
 * `-A` one of bulkhead's chains, then only the options above, then exactly
 * one `-j` to a built-in target or one of bulkhead's chains, with its own
 * options. Tabs, backslashes, single quotes and anything unknown are refused.
 */
export function foreignRule(line: string, context: { sets?: { has(name: string): boolean }; family?: 4 | 6; nflog?: boolean } = {}): string | undefined {
  if (/[\t\\'\r]/.test(line)) return 'holds a tab, a backslash or a quote that bulkhead never writes';
  const w = words(line);
  if (!w) return 'has a quoted word that does not end where a word ends';
  if (w[0] !== '-A' || !OWN_CHAIN_RE.test(w[1] ?? '')) return 'is not a rule appended to one of bulkhead\'s chains';
  let target: string | undefined;
  for (let i = 2; i < w.length; i++) {
    const opt = w[i];
    if (opt === '-j') {
      if (target !== undefined) return 'has more than one target';
      target = w[++i];
      if (target === undefined || !TARGETS.has(target)) return `jumps to \`${target ?? ''}\`, not a built-in target or one of bulkhead's chains`;
      // The compiler writes LOG; NFLOG is the agent's own rewrite, with its own group.
      if (target === 'NFLOG' && context.nflog === false) return 'jumps to NFLOG, which only the agent writes';
      continue;
    }
    if (opt === '--match-set' && context.sets) {
      const name = w[i + 1] ?? '';
      if (!context.sets.has(name)) return `matches set \`${name.slice(0, 40)}\`, which the text does not create`;
      if (context.family !== undefined && !name.endsWith(`-${context.family}`)) return `matches set \`${name}\` of the other family`;
    }
    const check = OPTIONS[opt];
    if (!check) return `has \`${opt.slice(0, 30)}\`, which bulkhead never writes`;
    const arg = w[i + 1];
    const ok = arg === undefined ? false : check(arg, w[i + 2]);
    if (!ok) return `has \`${opt} ${(arg ?? '').slice(0, 40)}\`, which bulkhead never writes`;
    i += ok === 'two' ? 2 : 1;
  }
  if (target === undefined) return 'has no target';
  return undefined;
}

/**
 * Reads a text of {@link iptablesDocument} back into its restore files, and
 * checks that it touches nothing but bulkhead's own: in the restore files only
 * the `filter` table, declarations of bulkhead's four chains, and rules
 * appended to them in the compiler's own vocabulary ({@link foreignRule});
 * in the ipset file only `create` and `add` of sets named like bulkhead's
 * (`bh-<16 hex>-<4|6>`, the default prefix), each holding the members its
 * name is the hash of; each restore file shaped as the compiler writes it
 * (`*filter`, the four chains declared, rules naming only sets of this text
 * and of their family, `COMMIT` last); NFLOG only with `nflog` (the agent's
 * own rewrite). An agent runs this on what the server sends, so
 * not even a compromised server can make it touch another chain, table or
 * set. Returns the files, or the first problem with its line.
 */
export function parseIptablesDocument(text: string, options: { nflog?: boolean } = {}): { ok: true; files: IptablesFiles } | { ok: false; error: string } {
  const files: Record<(typeof PARTS)[number], string[]> = { ipset: [], iptables: [], ip6tables: [] };
  let part: (typeof PARTS)[number] | undefined;
  const seen = new Set<string>();
  // Each restore file in the one shape bulkhead writes: `*filter`, the four chains declared (which empties them), the
  // rules, `COMMIT` last. Rules without the declarations would be added to the old ones, behind them.
  const stage = { iptables: 0, ip6tables: 0 };
  const declared = { iptables: new Set<string>(), ip6tables: new Set<string>() };
  const chains = Object.values(IPTABLES_CHAINS);
  const sets = new Map<string, { line: number; members: string[]; hashsize: number; maxelem: number }>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const at = `line ${i + 1}`;
    // Before anything else, comments too: the tools split long lines, and stop at a NUL.
    if (line.length > MAX_LINE) return { ok: false, error: `${at}: longer than ${MAX_LINE} bytes (${line.length}); bulkhead writes no such line` };
    if (/[^\x20-\x7e]/.test(line)) return { ok: false, error: `${at}: holds a control or non-ASCII character; bulkhead writes none` };
    const section = /^### (\S+)$/.exec(line);
    if (section) {
      const p = PARTS.find((x) => x === section[1]);
      if (!p || seen.has(p) || PARTS.indexOf(p) !== seen.size) return { ok: false, error: `${at}: unexpected section \`${line}\` (they come once each: ipset, iptables, ip6tables)` };
      seen.add(p);
      part = p;
      continue;
    }
    // Comments and blank lines are dropped: what is loaded is only what was checked.
    if (line.trim() === '' || line.startsWith('#')) continue;
    if (!part) return { ok: false, error: `${at}: \`${line.slice(0, 60)}\` comes before any section` };
    let bad: string | undefined;
    if (part === 'ipset') {
      const f = line.split(' ');
      if (f[0] === 'create') {
        const m = /^create (\S+) hash:net family (inet6?) hashsize (\d{1,9}) maxelem (\d{1,9}) -exist$/.exec(line);
        if (!(m && OWN_SET_RE.test(m[1]) && m[1].endsWith(m[2] === 'inet' ? '-4' : '-6'))) bad = 'creates a set that is not bulkhead\'s, or not as bulkhead makes them';
        else if (sets.has(m[1])) bad = 'creates the set a second time';
        else sets.set(m[1], { line: i + 1, members: [], hashsize: Number(m[3]), maxelem: Number(m[4]) });
      } else if (f[0] === 'add') {
        if (!(f.length === 4 && sets.has(f[1]) && isAddress(f[2]) && f[3] === '-exist')) bad = 'adds to a set that is not bulkhead\'s (or not created above), or something that is not an address';
        else sets.get(f[1])!.members.push(f[2]);
      } else bad = 'is not `create` or `add`';
    } else if (stage[part] === 3) {
      bad = 'comes after COMMIT';
    } else if (line === '*filter') {
      if (stage[part] !== 0) bad = 'opens the filter table a second time';
      else stage[part] = 1;
    } else if (CHAIN_DECL.test(line)) {
      const chain = line.slice(1, line.indexOf(' '));
      if (stage[part] !== 1 || declared[part].has(chain)) bad = 'declares a chain out of place, or twice';
      else declared[part].add(chain);
    } else if (line.startsWith('-A ')) {
      if (stage[part] === 0 || declared[part].size !== chains.length) bad = 'comes before all four of bulkhead\'s chains are declared (its rules would go behind the old ones)';
      else {
        stage[part] = 2;
        bad = foreignRule(line, { sets, family: part === 'iptables' ? 4 : 6, nflog: options.nflog ?? false });
      }
    } else if (line === 'COMMIT') {
      if (stage[part] === 0 || declared[part].size !== chains.length) bad = 'commits before all four of bulkhead\'s chains are declared';
      else stage[part] = 3;
    } else bad = line.startsWith('*') ? 'names a table other than filter' : 'is not about bulkhead\'s chains';
    if (bad) return { ok: false, error: `${at} (${part}): \`${line.slice(0, 80)}\` ${bad}` };
    files[part].push(line);
  }
  for (const p of PARTS) if (!seen.has(p)) return { ok: false, error: `no \`${SECTION(p)}\` section` };
  for (const p of ['iptables', 'ip6tables'] as const) if (stage[p] !== 3) return { ok: false, error: `the ${p} part does not end with COMMIT after \`*filter\` and bulkhead's four chains` };
  // Names are the hash of the content: a set whose members are not what its name says could be one a rule already uses.
  // (A check against mistakes, not a proof against a forger: the hash is not cryptographic. The apply step makes each
  // set hold exactly the members the text gives it, whatever its name.)
  for (const [name, s] of sets) {
    const f = name.endsWith('-4') ? 4 : 6;
    if (`bh-${hash64(`${f}|${s.members.join(',')}`)}-${f}` !== name) return { ok: false, error: `line ${s.line} (ipset): set \`${name}\` does not hold the members its name is the hash of` };
    // The sizes follow from the member count, as the compiler sets them: no set that asks the kernel for more.
    const n = s.members.length;
    if (s.hashsize !== Math.max(1024, pow2AtLeast(n)) || s.maxelem !== Math.max(65536, pow2AtLeast(n))) return { ok: false, error: `line ${s.line} (ipset): set \`${name}\` has a hashsize or maxelem bulkhead would not give ${n} members` };
  }
  const join = (xs: string[]) => (xs.length === 0 ? '' : xs.join('\n').replace(/\n*$/, '\n'));
  return { ok: true, files: { ipset: join(files.ipset), iptables: join(files.iptables), ip6tables: join(files.ip6tables) } };
}
