/**
 * A tiny interpreter of the iptables backend's own output, for semantic
 * checks without a kernel: loads an `ipset restore` file and an
 * `iptables-restore` file and walks a packet through bulkhead's chains as
 * netfilter would. It understands exactly the vocabulary the backend writes
 * and throws on anything else, and it checks the kernel's limits on the way
 * (multiport's 15 ports, the LOG prefix's 29 bytes, the comment's 255, a /0 in
 * hash:net), so it also lints the output.
 */
import { parsePrefix, IpSet, type Addr, type Prefix } from '../../src/netset/ip.js';

/** A packet as the interpreter sees it; `port` is the port, or `type * 256 + code` for ICMP. */
export interface Packet {
  readonly src: Addr;
  readonly dst: Addr;
  readonly proto: number;
  readonly port: number;
  /** Conntrack state; default `NEW`. */
  readonly state?: 'NEW' | 'ESTABLISHED' | 'RELATED';
  /** The interface (in or out); default `eth0`. */
  readonly iface?: string;
  /** The local sender's user, on output. */
  readonly user?: string;
}

/** Where a packet ended: the terminal target and its rule's comment, with the LOG prefixes it passed. */
export interface Outcome {
  readonly target: 'ACCEPT' | 'DROP' | 'RETURN';
  readonly comment?: string;
  readonly logs: readonly string[];
}

type Test = (p: Packet) => boolean;

interface Rule {
  readonly tests: Test[];
  readonly target: string;
  readonly comment?: string;
  readonly logPrefix?: string;
  readonly text: string;
}

const PROTOS: Record<string, number> = { tcp: 6, udp: 17, sctp: 132, icmp: 1, 'ipv6-icmp': 58, icmpv6: 58 };

/** Splits a restore-file line into arguments as iptables-restore does: double quotes group, `\` escapes inside them. */
export function tokenize(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '\\') cur += line[++i] ?? '';
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') {
      quoted = true;
      has = true;
    } else if (c === ' ' || c === '\t') {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else cur += c;
  }
  if (quoted) throw new Error(`unbalanced quote in ${line}`);
  if (has || cur) out.push(cur);
  return out;
}

function prefix(text: string, family: 4 | 6): Prefix {
  const r = parsePrefix(text);
  if ('error' in r || r.hostBitsSet) throw new Error(`bad prefix ${text}`);
  if ((typeof r.prefix.addr === 'number' ? 4 : 6) !== family) throw new Error(`prefix ${text} is not IPv${family}`);
  return r.prefix;
}

function inPrefix(a: Addr, p: Prefix): boolean {
  return IpSet.fromPrefixes([p]).has(a);
}

function portRange(text: string): [number, number] {
  const m = /^(\d+)(?::(\d+))?$/.exec(text);
  if (!m) throw new Error(`bad port ${text}`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (hi > 65535 || lo > hi) throw new Error(`bad port range ${text}`);
  return [lo, hi];
}

/** The sets of an `ipset restore` file (only `create` and `add`, as the backend writes them). */
export function loadIpsets(text: string, into = new Map<string, { family: 4 | 6; maxelem: number; prefixes: Prefix[]; set?: IpSet }>()) {
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const t = tokenize(line);
    if (t[0] === 'create') {
      const m = /^create (\S+) hash:net family (inet6?) hashsize (\d+) maxelem (\d+) -exist$/.exec(line);
      if (!m) throw new Error(`unexpected create: ${line}`);
      if (m[1].length > 31) throw new Error(`set name too long: ${m[1]}`);
      const family = m[2] === 'inet' ? 4 : 6;
      const old = into.get(m[1]);
      // As the kernel does: -exist tolerates the same set only.
      if (old && (old.family !== family || old.maxelem !== Number(m[4]))) throw new Error(`set ${m[1]} exists with other parameters`);
      if (!old) into.set(m[1], { family, maxelem: Number(m[4]), prefixes: [] });
    } else if (t[0] === 'add' && t.length === 4 && t[3] === '-exist') {
      const s = into.get(t[1]);
      if (!s) throw new Error(`add to missing set ${t[1]}`);
      const p = prefix(t[2], s.family);
      if (p.len === 0) throw new Error('hash:net cannot hold a /0');
      s.prefixes.push(p);
      s.set = undefined;
      if (s.prefixes.length > s.maxelem) throw new Error(`set ${t[1]} is full`);
    } else throw new Error(`unexpected ipset line: ${line}`);
  }
  return into;
}

/** Bulkhead's chains of one family, loaded from a restore file, with the sets they name. */
export class Chains {
  readonly chains = new Map<string, Rule[]>();
  private readonly sets: Map<string, IpSet>;

  constructor(
    rulesText: string,
    ipsetText: string,
    readonly family: 4 | 6,
  ) {
    const loaded = loadIpsets(ipsetText);
    this.sets = new Map([...loaded].filter(([, s]) => s.family === family).map(([n, s]) => [n, IpSet.fromPrefixes(s.prefixes)]));
    let table = false;
    let committed = false;
    for (const line of rulesText.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      if (committed) throw new Error(`text after COMMIT: ${line}`);
      if (line === '*filter') table = true;
      else if (!table) throw new Error(`rule outside a table: ${line}`);
      else if (line === 'COMMIT') committed = true;
      else if (line.startsWith(':')) {
        const m = /^:(BH-[A-Z]+) - \[0:0\]$/.exec(line);
        if (!m) throw new Error(`only bulkhead's own chains may be declared: ${line}`);
        this.chains.set(m[1], []);
      } else if (line.startsWith('-A ')) {
        const t = tokenize(line);
        const rules = this.chains.get(t[1]);
        if (!rules) throw new Error(`rule in an undeclared chain: ${line}`);
        rules.push(this.parseRule(t.slice(2), line));
      } else throw new Error(`unexpected line: ${line}`);
    }
    if (!committed) throw new Error('no COMMIT');
    for (const [, rules] of this.chains) for (const r of rules) if (!['ACCEPT', 'DROP', 'LOG', 'RETURN'].includes(r.target) && !this.chains.has(r.target)) throw new Error(`jump to unknown chain ${r.target}`);
  }

  private parseRule(t: string[], text: string): Rule {
    const tests: Test[] = [];
    let proto: number | undefined;
    let target: string | undefined;
    let comment: string | undefined;
    let logPrefix: string | undefined;
    let i = 0;
    const next = () => {
      if (i >= t.length) throw new Error(`missing argument in ${text}`);
      return t[i++];
    };
    const needProto = (want: number, what: string) => {
      if (proto !== want) throw new Error(`${what} without -p in ${text}`);
    };
    while (i < t.length) {
      const opt = next();
      switch (opt) {
        case '-s':
        case '-d': {
          const p = prefix(next(), this.family);
          tests.push(opt === '-s' ? (k) => inPrefix(k.src, p) : (k) => inPrefix(k.dst, p));
          break;
        }
        case '-i':
        case '-o': {
          const name = next();
          tests.push((k) => (k.iface ?? 'eth0') === name);
          break;
        }
        case '-p': {
          const name = next();
          const n = PROTOS[name] ?? (/^\d+$/.test(name) ? Number(name) : undefined);
          if (n === undefined || n === 0) throw new Error(`bad protocol ${name}`);
          proto = n;
          tests.push((k) => k.proto === n);
          break;
        }
        case '-m': {
          const mod = next();
          if (mod === 'tcp' || mod === 'udp' || mod === 'sctp') {
            needProto(PROTOS[mod], mod);
            if (next() !== '--dport') throw new Error(`expected --dport in ${text}`);
            const [lo, hi] = portRange(next());
            tests.push((k) => k.port >= lo && k.port <= hi);
          } else if (mod === 'multiport') {
            if (proto === undefined || ![6, 17, 132].includes(proto)) throw new Error(`multiport needs tcp, udp or sctp in ${text}`);
            if (next() !== '--dports') throw new Error(`expected --dports in ${text}`);
            const ranges = next().split(',').map(portRange);
            const weight = ranges.reduce((w, [a, z]) => w + (a === z ? 1 : 2), 0);
            if (weight > 15) throw new Error(`too many ports (${weight}) in ${text}`);
            if (ranges.length < 2) throw new Error(`multiport with one item in ${text}`);
            tests.push((k) => ranges.some(([a, z]) => k.port >= a && k.port <= z));
          } else if (mod === 'icmp' || mod === 'icmp6') {
            needProto(mod === 'icmp' ? 1 : 58, mod);
            if (this.family !== (mod === 'icmp' ? 4 : 6)) throw new Error(`${mod} in the wrong family: ${text}`);
            if (next() !== (mod === 'icmp' ? '--icmp-type' : '--icmpv6-type')) throw new Error(`expected the type option in ${text}`);
            const m = /^(\d+)(?:\/(\d+))?$/.exec(next());
            if (!m) throw new Error(`bad ICMP type in ${text}`);
            const type = Number(m[1]);
            const code = m[2] === undefined ? undefined : Number(m[2]);
            if (type > 255 || (code !== undefined && code > 255)) throw new Error(`bad ICMP type in ${text}`);
            // The kernel's icmp match reads type 255 as any type: the backend must never write it.
            if (mod === 'icmp' && type === 255) throw new Error(`ICMP type 255 means any type: ${text}`);
            tests.push((k) => k.port >> 8 === type && (code === undefined || (k.port & 255) === code));
          } else if (mod === 'set') {
            if (next() !== '--match-set') throw new Error(`expected --match-set in ${text}`);
            const name = next();
            const dir = next();
            const set = this.sets.get(name);
            if (!set) throw new Error(`set ${name} of IPv${this.family} does not exist (${text})`);
            if (dir === 'src') tests.push((k) => set.has(k.src));
            else if (dir === 'dst') tests.push((k) => set.has(k.dst));
            else throw new Error(`bad set direction in ${text}`);
          } else if (mod === 'conntrack') {
            if (next() !== '--ctstate') throw new Error(`expected --ctstate in ${text}`);
            const states = next().split(',');
            tests.push((k) => states.includes(k.state ?? 'NEW'));
          } else if (mod === 'limit') {
            if (next() !== '--limit') throw new Error(`expected --limit in ${text}`);
            if (!/^\d+\/(second|minute|hour|day)$/.test(next())) throw new Error(`bad rate in ${text}`);
          } else if (mod === 'comment') {
            if (next() !== '--comment') throw new Error(`expected --comment in ${text}`);
            comment = next();
            if (Buffer.byteLength(comment) > 255) throw new Error(`comment too long in ${text}`);
          } else if (mod === 'owner') {
            if (next() !== '--uid-owner') throw new Error(`expected --uid-owner in ${text}`);
            const user = next();
            tests.push((k) => k.user === user);
          } else throw new Error(`unknown match ${mod} in ${text}`);
          break;
        }
        case '-j': {
          target = next();
          if (target === 'LOG') {
            if (next() !== '--log-prefix') throw new Error(`expected --log-prefix in ${text}`);
            logPrefix = next();
            if (Buffer.byteLength(logPrefix) > 29) throw new Error(`log prefix longer than 29 bytes in ${text}`);
          }
          if (i !== t.length) throw new Error(`arguments after the target in ${text}`);
          break;
        }
        default:
          throw new Error(`unknown option ${opt} in ${text}`);
      }
    }
    if (!target) throw new Error(`no target in ${text}`);
    return { tests, target, comment, logPrefix, text };
  }

  /** Walks a packet through `chain` (BH-INPUT or BH-OUTPUT); RETURN means bulkhead let it back to the built-in chain. */
  run(chain: string, p: Packet): Outcome {
    const logs: string[] = [];
    const walk = (name: string, depth: number): Omit<Outcome, 'logs'> | undefined => {
      if (depth > 8) throw new Error('jump loop');
      for (const r of this.chains.get(name)!) {
        if (!r.tests.every((t) => t(p))) continue;
        if (r.target === 'LOG') logs.push(r.logPrefix!);
        else if (r.target === 'ACCEPT' || r.target === 'DROP') return { target: r.target, comment: r.comment };
        else if (r.target === 'RETURN') return undefined;
        else {
          const res = walk(r.target, depth + 1);
          if (res) return res;
        }
      }
      return undefined;
    };
    const res = walk(chain, 0);
    return { ...(res ?? { target: 'RETURN' }), logs };
  }
}
