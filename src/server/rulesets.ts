/**
 * Agents' compiled rulesets and their long polls.
 *
 * A **generation** is what agents enforce: the active version plus the live
 * break-glass overrides, compiled once (`Compiled`, `HostCompiler`). Within a
 * generation each workload gets an ETag without compiling its ruleset:
 *
 * - workloads whose addresses all fall on one endpoint (same class, same
 *   atom: most hosts) have the same host view (compile/host.ts), so the host
 *   view is computed once per endpoint;
 * - a host view's **signature** (a hash of its mode and its rules in order,
 *   each with its id, tier, action, peer and own address sets, connections
 *   and restrictions) determines the nftables text, so the ETag is a hash of
 *   the workload name and the signature: an agent whose ruleset did not
 *   change keeps its ETag across versions and is not woken.
 *
 * The nftables text is compiled only when an agent fetches it, once per
 * signature (the workload's name appears only in the first line, which is
 * written per workload), and kept in a cache bounded in bytes, shared across
 * generations: a new version recompiles only the rulesets it changed. The
 * long pieces of the texts (the sets' elements) are kept once each, whatever
 * the number of texts holding them (TextCache).
 *
 * Long polls wait per workload; a new generation re-checks the waiting
 * workloads in slices of a few milliseconds, so the server keeps answering,
 * the workloads that the rules it added or removed name first.
 */
import { createHash } from 'node:crypto';
import { crc32, gzipSync } from 'node:zlib';
import type { ServerResponse } from 'node:http';
import type { IpSet } from '../netset/ip.js';
import type { ConnSet } from '../netset/connset.js';
import { HostCompiler, type HostPolicy, type HostRule } from '../compile/host.js';
import { compileNftables, type Failsafe } from '../compile/nftables.js';
import { compileIptables, iptablesDocument } from '../compile/iptables.js';
import type { Compiled } from '../policy/index.js';
import type { IrRule } from '../policy/ir.js';
import type { Peer, Rule } from '../model/types.js';
import { IpSet as IpSetClass } from '../netset/ip.js';

/** Bumped when the compiled output for the same signature changes (a new compiler). */
const FORMAT = 'nft1';

/** What an agent enforces with: nftables, or iptables + ipset (hosts without nftables). */
export type Backend = 'nftables' | 'iptables';

/** Bumped when the iptables compiler's output for the same signature changes (FORMAT is the nftables one's). */
const IPTABLES_FORMAT = 'ipt1';

const iptablesEtags = new WeakMap<WorkloadEntry, string>();

/**
 * The rules' IR indices of a host view: iptables' shortened log prefixes
 * carry them, and the signature (which the nftables text depends on) leaves
 * them out.
 */
function ruleIndices(e: WorkloadEntry): string {
  return e.host ? [...e.host.ingress, ...e.host.egress].map((r) => r.index).join(',') : '';
}

/** A workload's ETag for an agent of `backend`: the same rules give different texts per backend. */
export function etagFor(e: WorkloadEntry, backend: Backend): string {
  if (backend === 'nftables') return e.etag;
  let t = iptablesEtags.get(e);
  if (t === undefined) {
    t = `${IPTABLES_FORMAT}-${createHash('sha256').update(`${e.etag}\0${ruleIndices(e)}`).digest('base64url').slice(0, 27)}`;
    iptablesEtags.set(e, t);
  }
  return t;
}

/** Whether an agent that applied `etag` enforces what the workload's entry says, with either backend. */
export function isCurrent(e: WorkloadEntry, etag: string | null | undefined): boolean {
  return etag === e.etag || etag === etagFor(e, 'iptables');
}

/** The signature of a workload that has nothing programmed (unknown, unmanaged, idle, or no version yet). */
const IDLE = 'idle';

const setKeys = new WeakMap<IpSet, string>();
const connKeys = new WeakMap<ConnSet, string>();

/** A short content key of an address set (hashes its interval bounds). */
function setKey(s: IpSet): string {
  let k = setKeys.get(s);
  if (k === undefined) {
    const h = createHash('sha1');
    const b = s.v4.bounds as Float64Array;
    h.update(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    h.update('|');
    h.update((s.v6.bounds as readonly bigint[]).join(','));
    k = h.digest('base64url');
    setKeys.set(s, k);
  }
  return k;
}

/** A content key of a connection set: its canonical interval bounds (toString, which names services, is far slower). */
function connKey(c: ConnSet): string {
  let k = connKeys.get(c);
  if (k === undefined) connKeys.set(c, (k = Array.prototype.join.call(c.keys.bounds, ',')));
  return k;
}

/** The signature of a host view: everything its nftables text depends on but the workload's name. */
export function hostSignature(h: HostPolicy): string {
  let text = FORMAT + '\0' + h.mode;
  for (const [dir, rules] of [['in', h.ingress], ['out', h.egress]] as const) {
    text += '\0' + dir;
    for (const r of rules) text += '\n' + ruleLine(r);
  }
  return createHash('sha256').update(text).digest('base64url');
}

/** Lines of host rules without own addresses or restrictions, by peer set and rule (the objects every host of a generation shares). */
const lines = new WeakMap<IpSet, WeakMap<Rule, { conns: ConnSet; line: string }>>();

/** What a host rule puts in the signature. */
function ruleLine(r: HostRule): string {
  const plain = r.own === undefined && r.user === undefined && r.process === undefined;
  let byRule = plain ? lines.get(r.peer) : undefined;
  const hit = byRule?.get(r.rule);
  if (hit && hit.conns === r.conns) return hit.line;
  const line = `${r.rule.id}\0${r.tier}\0${r.action}\0${setKey(r.peer)}\0${r.own ? setKey(r.own) : ''}\0${connKey(r.conns)}\0${r.user ?? ''}\0${r.process ?? ''}`;
  if (plain) {
    if (!byRule) lines.set(r.peer, (byRule = new WeakMap()));
    byRule.set(r.rule, { conns: r.conns, line });
  }
  return line;
}

const ruleKeys = new WeakMap<Rule, string>();

/** More rules added or removed than this: the wake-up goes in plain order. */
const MAX_CHANGED_RULES = 256;

function peerKey(p: Peer): string {
  switch (p.kind) {
    case 'selector':
      return `s${p.global ? 'g' : ''}:${p.selector.source}`;
    case 'workload':
      return `w:${p.name}`;
    case 'ips':
      return `i:${p.name}:${setKey(p.set)}`;
    case 'any':
      return 'any';
  }
}

/**
 * A rule as written (id, tier, action, scope, peers, services): equal keys
 * in two generations, the same rule. Not its place among the overrides: a
 * break-glass override first would change every other one's.
 */
function ruleKey(r: Rule): string {
  let k = ruleKeys.get(r);
  if (k === undefined) {
    k = [r.id, r.tier, r.action, r.scope.source, r.from.map(peerKey).join('|'), r.to.map(peerKey).join('|'), connKey(r.conns), r.services.map((s) => `${s.process ?? ''}/${s.user ?? ''}`).join(',')].join('\0');
    ruleKeys.set(r, k);
  }
  return k;
}

/** One workload's place in a generation. */
export interface WorkloadEntry {
  readonly workload: string;
  readonly etag: string;
  readonly mode: string;
  readonly signature: string;
  /** The host view to compile from (undefined: idle). */
  readonly host?: HostPolicy;
}

/** What agents enforce at one moment. Immutable once built. */
export class Generation {
  readonly hc?: HostCompiler;
  private readonly index = new Map<string, number>();
  private readonly groups = new Map<string, { host?: HostPolicy; signature: string }>();
  private readonly entries = new Map<string, WorkloadEntry>();

  constructor(
    /** Increases with every new generation. */
    readonly id: number,
    /** The active version (0: none yet). */
    readonly version: number,
    /** The ids of the break-glass overrides it holds. */
    readonly breakglass: readonly string[],
    readonly compiled: Compiled | undefined,
    private readonly failsafeKey: string,
  ) {
    if (compiled) {
      this.hc = new HostCompiler(compiled.ir);
      compiled.ir.workloads.forEach((w, i) => this.index.set(w.name, i));
    }
  }

  private rulesByKey?: Map<string, IrRule>;
  private workloadsByAtom?: Map<number, number[]>;

  /**
   * The workloads a side of a rule names, where this generation has the rule
   * and `prev` has not, or the other way round: the ones a change most
   * likely touches (a guess: the wake-up answers these first, then checks
   * every other waiting workload all the same).
   */
  touchedSince(prev: Generation): Set<string> {
    const out = new Set<string>();
    if (!this.compiled || !prev.compiled) return out;
    const mine = this.ruleMap();
    const theirs = prev.ruleMap();
    const added = [...mine].filter(([k]) => !theirs.has(k)).map(([, r]) => r);
    const removed = [...theirs].filter(([k]) => !mine.has(k)).map(([, r]) => r);
    // A wholesale change: no order would help.
    if (added.length + removed.length > MAX_CHANGED_RULES) return out;
    const all = this.compiled.ir.workloads.length;
    for (const r of added) if (out.size < all) this.sideWorkloads(r, out);
    for (const r of removed) if (out.size < all) prev.sideWorkloads(r, out);
    return out.size < all ? out : new Set();
  }

  private ruleMap(): Map<string, IrRule> {
    if (!this.rulesByKey) {
      this.rulesByKey = new Map();
      for (const r of this.compiled?.ir.rules ?? []) this.rulesByKey.set(ruleKey(r.rule), r);
    }
    return this.rulesByKey;
  }

  /** Adds the names of the workloads on either side of `r`: by class, and by address atom (IP peers). */
  private sideWorkloads(r: IrRule, out: Set<string>): void {
    const ir = this.compiled!.ir;
    for (const side of [r.from, r.to]) {
      for (const c of side.classes.indices()) for (const m of ir.classes[c].members) out.add(ir.workloads[m].name);
      if (side.atoms.isEmpty()) continue;
      if (!this.workloadsByAtom) {
        this.workloadsByAtom = new Map();
        ir.workloads.forEach((w, i) => {
          for (const p of w.addresses) {
            const atom = ir.endpointAtom[ir.addressMap.lookup(p.addr)];
            let list = this.workloadsByAtom!.get(atom);
            if (!list) this.workloadsByAtom!.set(atom, (list = []));
            list.push(i);
          }
        });
      }
      for (const a of side.atoms.indices()) for (const i of this.workloadsByAtom.get(a) ?? []) out.add(ir.workloads[i].name);
    }
  }

  /** The workload's index in the IR, if it is in the policy. */
  workloadIndex(name: string): number | undefined {
    return this.index.get(name);
  }

  /** A workload's ETag, mode and host view (computed once per endpoint). */
  entry(workload: string): WorkloadEntry {
    let e = this.entries.get(workload);
    if (e) return e;
    const g = this.group(workload);
    const etag = createHash('sha256').update(`${workload}\0${g.signature}\0${this.failsafeKey}`).digest('base64url').slice(0, 27);
    e = { workload, etag, mode: g.host?.mode ?? 'idle', signature: g.signature, host: g.host };
    this.entries.set(workload, e);
    return e;
  }

  private group(workload: string): { host?: HostPolicy; signature: string } {
    const i = this.index.get(workload);
    if (i === undefined || !this.hc) return { signature: IDLE };
    const ir = this.compiled!.ir;
    const key = endpointKey(ir, i);
    let g = this.groups.get(key);
    if (!g) {
      const host = this.hc.host(i);
      g = host && host.mode !== 'idle' ? { host, signature: hostSignature(host) } : { signature: IDLE };
      this.groups.set(key, g);
    }
    return g;
  }
}

/** Workloads with the same key have the same host view: the one endpoint all their addresses map to, or the workload itself. */
function endpointKey(ir: Compiled['ir'], i: number): string {
  const w = ir.workloads[i];
  let ep = -1;
  for (const p of w.addresses) {
    const full = typeof p.addr === 'number' ? 32 : 128;
    if (p.len !== full || ir.workloadLookup.lookup(p.addr) !== i) return 'w' + i;
    const e = ir.addressMap.lookup(p.addr);
    if (ep >= 0 && e !== ep) return 'w' + i;
    ep = e;
  }
  return ep >= 0 ? 'e' + ep : 'w' + i;
}

/**
 * A long piece of compiled text (a set's elements), JSON-escaped once and
 * shared by every cached text that holds it, whatever its signature.
 */
export interface Piece {
  /** The string it is found by: one of the current generation's, so lookups meet the same object (O(1)), and older ones can go. */
  key: string;
  /** The {@link TextCache.epoch} the key was set in. */
  epoch: number;
  readonly buf: Buffer;
  /** `buf` as one gzip member, made when a first agent asks for gzip. */
  gz?: Buffer;
  /** Cached texts holding it (a text holding it twice counts twice). */
  refs: number;
}

/** A compiled ruleset, JSON-escaped, in pieces; shared by every workload with its signature. */
export interface Text {
  /** The first line with the representative's name, to rewrite per workload. */
  readonly header: string;
  readonly representative: string;
  /** JSON-escaped text after the first line, in order: this text's own pieces and shared ones. */
  readonly rest: readonly Buffer[];
  /** Bytes of `rest`. */
  readonly length: number;
  /** Bytes of this text's own pieces (what evicting it frees, besides shared pieces no other text holds). */
  own: number;
  readonly pieces: readonly Piece[];
  /** `rest` as gzip members (shared pieces' members shared too), made when a first agent asks for gzip. */
  gz?: readonly Buffer[];
  gzLength?: number;
}

/** Pieces at least this long are shared between texts (by content); shorter ones are copied into the text's own buffers. */
const SHARE_MIN = 512;

/** The JSON string body (no quotes) of `s` as bytes. */
function escaped(s: string): Buffer {
  return Buffer.from(JSON.stringify(s).slice(1, -1));
}

/** `s` as bytes when it is plain ASCII that JSON needs not escape (set elements: digits, dots, colons, commas, spaces, slashes), else undefined. */
function verbatim(s: string): Buffer | undefined {
  if (JSON.stringify(s).length !== s.length + 2) return undefined;
  const b = Buffer.from(s);
  return b.length === s.length ? b : undefined;
}

/**
 * Caches compiled texts by signature, least recently used first out, bounded
 * in bytes. A text is kept as a list of buffers: small ones of its own and
 * long ones (set elements, megabytes on big hosts) shared with every other
 * text that has the same piece. compileNftables hands out the same string
 * object for a peer group to every host of a generation, so finding its
 * buffer is a hash lookup on a string whose hash V8 keeps; equal strings of
 * a newer generation find it by content. The bytes counted are the texts'
 * own pieces plus each shared piece once, so memory grows with the distinct
 * peer groups, not with hosts times set sizes.
 */
export class TextCache {
  private readonly map = new Map<string, Text>();
  private readonly shared = new Map<string, Piece>();
  private ownBytes = 0;
  private sharedBytes = 0;
  compiles = 0;
  hits = 0;
  /** Bumped with every new generation (its strings are new objects). */
  epoch = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly failsafe: Failsafe,
  ) {}

  get(e: WorkloadEntry, backend: Backend = 'nftables'): Text {
    // iptables: shortened log prefixes carry the rule's IR index, which the signature leaves out.
    const key = backend === 'nftables' ? e.signature : `${backend}:${e.signature}:${ruleIndices(e)}`;
    const hit = this.map.get(key);
    if (hit) {
      this.hits++;
      // Re-insert: Map order is the recency order.
      this.map.delete(key);
      this.map.set(key, hit);
      return hit;
    }
    this.compiles++;
    const host: HostPolicy = e.host ?? { workload: e.workload, index: -1, mode: 'idle', addresses: IpSetClass.EMPTY, ingress: [], egress: [] };
    // iptables: one text of its own (few hosts have no nftables); nftables: pieces shared across texts.
    const chunks = backend === 'iptables' ? [iptablesDocument(compileIptables(host, { failsafe: this.failsafe }), host.mode)] : compileNftables(host, { failsafe: this.failsafe }).chunks;
    const t = this.build(e.workload, chunks);
    this.map.set(key, t);
    this.ownBytes += t.own;
    this.evict();
    return t;
  }

  /** Splits off the first line, joins runs of short pieces into own buffers, and shares the long ones. */
  private build(workload: string, chunks: readonly string[]): Text {
    const first = chunks[0];
    const nl = first.indexOf('\n');
    const header = first.slice(0, nl + 1);
    const rest: Buffer[] = [];
    const pieces: Piece[] = [];
    let own = 0;
    let run = first.slice(nl + 1);
    const flush = () => {
      if (run === '') return;
      const b = escaped(run);
      rest.push(b);
      own += b.length;
      run = '';
    };
    for (let i = 1; i < chunks.length; i++) {
      const c = chunks[i];
      if (c.length < SHARE_MIN) {
        run += c;
        continue;
      }
      let p = this.shared.get(c);
      if (p && p.epoch !== this.epoch) {
        // Found by content from a newer generation: its string becomes the key, so the old one can go.
        this.shared.delete(p.key);
        p.key = c;
        p.epoch = this.epoch;
        this.shared.set(c, p);
      }
      if (!p) {
        // Chains hold newlines; set elements hold none.
        const buf = c.includes('\n') ? undefined : verbatim(c);
        if (!buf) {
          // Not a set's elements (chains: one signature's own text): kept with the text.
          run += c;
          continue;
        }
        p = { key: c, epoch: this.epoch, buf, refs: 0 };
        this.shared.set(c, p);
        this.sharedBytes += buf.length;
      }
      flush();
      p.refs++;
      pieces.push(p);
      rest.push(p.buf);
    }
    flush();
    return { header, representative: workload, rest, length: rest.reduce((n, b) => n + b.length, 0), own, pieces };
  }

  /**
   * The text as gzip members, one per piece: concatenated members are one
   * valid gzip stream (RFC 1952 section 2.2), so each shared piece is
   * compressed once for every text and answer that holds it, and an answer
   * costs only its own head's compression. `t` as {@link get} has just
   * returned it.
   */
  gzipped(t: Text): { parts: readonly Buffer[]; length: number } {
    if (!t.gz) {
      const shared = new Map<Buffer, Piece>(t.pieces.map((p) => [p.buf, p]));
      let own = 0;
      const gz = t.rest.map((b) => {
        const p = shared.get(b);
        if (!p) {
          // Own runs: compressed when long enough to pay for a zlib stream, else stored.
          const z = b.length >= GZIP_MIN ? gzipSync(b, GZIP) : storedGzip(b);
          own += z.length;
          return z;
        }
        if (!p.gz) {
          p.gz = gzipSync(p.buf, GZIP);
          if (this.shared.get(p.key) === p) this.sharedBytes += p.gz.length;
        }
        return p.gz;
      });
      t.gz = gz;
      t.gzLength = gz.reduce((n, b) => n + b.length, 0);
      // Counted as the text's own: evicting the text frees them. (`t` is cached: get() has just returned it.)
      this.ownBytes += own;
      t.own += own;
      this.evict();
    }
    return { parts: t.gz, length: t.gzLength! };
  }

  private evict(): void {
    for (const [k, v] of this.map) {
      if (this.ownBytes + this.sharedBytes <= this.maxBytes || this.map.size <= 1) break;
      this.map.delete(k);
      this.ownBytes -= v.own;
      for (const p of v.pieces) {
        if (--p.refs > 0) continue;
        this.shared.delete(p.key);
        this.sharedBytes -= p.buf.length + (p.gz?.length ?? 0);
      }
    }
  }

  /** The cached texts, least recently used first (for tests). */
  cached(): IterableIterator<Text> {
    return this.map.values();
  }

  /** Texts cached; bytes held (own pieces, and shared pieces once); shared pieces and their bytes. */
  get size(): { entries: number; bytes: number; shared: number; sharedBytes: number } {
    return { entries: this.map.size, bytes: this.ownBytes + this.sharedBytes, shared: this.shared.size, sharedBytes: this.sharedBytes };
  }
}

/**
 * The `200` body of `GET /agent/policy` in pieces (the head per workload, the
 * text's buffers shared), or with `gzip` as gzip members (see {@link TextCache.gzipped}).
 */
export function policyBody(gen: Generation, e: WorkloadEntry, t: Text, gzip?: TextCache, backend: Backend = 'nftables'): Buffer[] {
  const header = t.header.split(t.representative).join(e.workload);
  const head = Buffer.from(`{"etag":${JSON.stringify(etagFor(e, backend))},"version":${gen.version},"workload":${JSON.stringify(e.workload)},"mode":${JSON.stringify(e.mode)},"format":"${backend}","ruleset":${JSON.stringify(header).slice(0, -1)}`);
  if (gzip) return [storedGzip(head), ...gzip.gzipped(t).parts, BODY_END_GZ];
  return [head, ...t.rest, BODY_END];
}

const BODY_END = Buffer.from('"}');
/** Fast compression: set elements (addresses) shrink several times over at any level. */
const GZIP = { level: 1 } as const;
const BODY_END_GZ = storedGzip(BODY_END);
/** Own runs shorter than this are stored, not compressed (a zlib stream's set-up costs more than they would save). */
const GZIP_MIN = 2048;

/**
 * `data` as a gzip member that stores it uncompressed (deflate's stored
 * blocks, RFC 1951 section 3.2.4): for the short parts of an answer (its head,
 * a text's own lines), where making a zlib stream costs more than the bytes
 * it would save. Written here because zlib makes no member without its
 * deflate state; this is 20 lines of framing and a CRC-32.
 */
export function storedGzip(data: Buffer): Buffer {
  const blocks = Math.max(1, Math.ceil(data.length / 65535));
  const out = Buffer.allocUnsafe(10 + blocks * 5 + data.length + 8);
  // ID1 ID2, CM = deflate, no flags, no time, XFL 0, OS unknown.
  out.set([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff], 0);
  let at = 10;
  for (let b = 0; b < blocks; b++) {
    const from = b * 65535;
    const len = Math.min(65535, data.length - from);
    out[at] = b === blocks - 1 ? 1 : 0; // BFINAL, BTYPE 00 (stored); the block's data starts at the next byte
    out.writeUInt16LE(len, at + 1);
    out.writeUInt16LE(~len & 0xffff, at + 3);
    data.copy(out, at + 5, from, from + len);
    at += 5 + len;
  }
  out.writeUInt32LE(crc32(data), at);
  out.writeUInt32LE(data.length % 4294967296, at + 4);
  return out;
}

/** Whether an `Accept-Encoding` header takes gzip: named with a q-value above 0, or, when not named, `*` so. */
export function acceptsGzip(v: string | string[] | undefined): boolean {
  const s = Array.isArray(v) ? v.join(',') : (v ?? '');
  const q = new Map<string, number>();
  for (const part of s.split(',')) {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    const c = coding.trim();
    if (c === '') continue;
    const qv = params.map((x) => x.trim()).find((x) => x.startsWith('q='));
    q.set(c, qv === undefined ? 1 : Number(qv.slice(2)) || 0);
  }
  return (q.get('gzip') ?? q.get('x-gzip') ?? q.get('*') ?? 0) > 0;
}

/** Normalizes an `If-None-Match` value to a bare ETag. */
export function bareEtag(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  const s = (Array.isArray(v) ? v[0] : v).trim();
  const m = /^(?:W\/)?"?([^"]*)"?$/.exec(s);
  return m ? m[1] : s;
}

/** A held `GET /agent/policy`. */
interface Waiter {
  readonly workload: string;
  readonly agentId: string;
  readonly etag: string | undefined;
  readonly res: ServerResponse;
  /** The request took gzip. */
  readonly gzip: boolean;
  readonly backend: Backend;
  timer?: ReturnType<typeof setTimeout>;
  done: boolean;
}

/** Answers agents' policy requests and holds their long polls. */
export class AgentPolicies {
  private gen: Generation;
  private readonly waiting = new Map<string, Set<Waiter>>();
  private waiterCount = 0;
  /** The generation the wake-up loop is on, to restart it when a newer one arrives. */
  private waking = 0;
  /** Called with the workload when a waiting agent is answered (for the bench and tests). */
  onAnswer?: (workload: string, etag: string) => void;

  constructor(
    initial: Generation,
    readonly texts: TextCache,
    private readonly log: (line: string) => void = () => {},
  ) {
    this.gen = initial;
  }

  get current(): Generation {
    return this.gen;
  }

  get waiters(): number {
    return this.waiterCount;
  }

  /**
   * Makes a generation current and wakes the polls whose ETag it changes:
   * first those of the workloads that the rules added or removed name, then
   * the others (an ETag can change for other reasons: labels, addresses, IP
   * lists), all in slices.
   */
  activate(gen: Generation): void {
    const prev = this.gen;
    this.gen = gen;
    this.waking = gen.id;
    this.texts.epoch++;
    const start = performance.now();
    const first = prev !== gen ? gen.touchedSince(prev) : new Set<string>();
    const all = [...this.waiting.keys()];
    const named = first.size === 0 ? [] : all.filter((w) => first.has(w));
    const workloads = named.length === 0 ? all : [...named, ...all.filter((w) => !first.has(w))];
    let k = 0;
    let woken = 0;
    let namedMs = named.length === 0 ? 0 : -1;
    const compiles = this.texts.compiles;
    const slice = () => {
      if (this.waking !== gen.id) return; // a newer generation took over
      const t0 = performance.now();
      while (k < workloads.length && performance.now() - t0 < 8) {
        const w = workloads[k++];
        const set = this.waiting.get(w);
        if (!set || set.size === 0) continue;
        const e = gen.entry(w);
        for (const waiter of [...set]) {
          if (waiter.etag === etagFor(e, waiter.backend)) continue;
          this.answer(waiter, gen, e);
          woken++;
        }
      }
      if (namedMs < 0 && k >= named.length) namedMs = performance.now() - start;
      if (k < workloads.length) setImmediate(slice);
      else if (workloads.length > 0) {
        const order = named.length > 0 ? ` (first the ${named.length} that changed rules name, in ${Math.round(namedMs)} ms)` : '';
        this.log(`generation ${gen.id}: ${workloads.length} waiting workloads checked${order}, ${woken} polls answered, ${this.texts.compiles - compiles} rulesets compiled, in ${Math.round(performance.now() - start)} ms`);
      }
    };
    slice();
  }

  /**
   * Answers `GET /agent/policy` for a workload: at once when its ETag differs
   * from `etag`, else after the change or `waitMs` (304).
   */
  handle(o: { workload: string; agentId: string; etag: string | undefined; waitMs: number; res: ServerResponse; gzip?: boolean; backend?: Backend }): void {
    const e = this.gen.entry(o.workload);
    const backend = o.backend ?? 'nftables';
    const waiter: Waiter = { workload: o.workload, agentId: o.agentId, etag: o.etag, res: o.res, gzip: o.gzip ?? false, backend, done: false };
    const etag = etagFor(e, backend);
    if (o.etag !== etag) {
      this.answer(waiter, this.gen, e);
      return;
    }
    if (o.waitMs <= 0) {
      this.notModified(waiter, etag);
      return;
    }
    let set = this.waiting.get(o.workload);
    if (!set) this.waiting.set(o.workload, (set = new Set()));
    set.add(waiter);
    this.waiterCount++;
    waiter.timer = setTimeout(() => this.notModified(waiter, etag), o.waitMs);
    o.res.on('close', () => this.drop(waiter));
  }

  /** Ends the waiting polls of one agent (revoked). */
  closeAgent(agentId: string): void {
    for (const set of this.waiting.values()) for (const w of [...set]) if (w.agentId === agentId) {
      this.drop(w);
      w.res.destroy();
    }
  }

  /** Answers every waiting poll with 304 (shutdown). */
  closeAll(): void {
    for (const set of this.waiting.values()) for (const w of [...set]) this.notModified(w, w.etag ?? '');
  }

  private drop(w: Waiter): void {
    if (w.done) return;
    w.done = true;
    if (w.timer) clearTimeout(w.timer);
    const set = this.waiting.get(w.workload);
    if (set?.delete(w)) {
      this.waiterCount--;
      if (set.size === 0) this.waiting.delete(w.workload);
    }
  }

  private notModified(w: Waiter, etag: string): void {
    if (w.done) return;
    this.drop(w);
    if (w.res.destroyed || w.res.headersSent) return;
    w.res.writeHead(304, { etag: `"${etag}"`, 'cache-control': 'no-store' });
    w.res.end();
  }

  private answer(w: Waiter, gen: Generation, e: WorkloadEntry): void {
    if (w.done) return;
    this.drop(w);
    if (w.res.destroyed || w.res.headersSent) return;
    const parts = policyBody(gen, e, this.texts.get(e, w.backend), w.gzip ? this.texts : undefined, w.backend);
    const length = parts.reduce((n, p) => n + p.length, 0);
    const res = w.res;
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(length), etag: `"${etagFor(e, w.backend)}"`, 'cache-control': 'no-store', vary: 'accept-encoding', ...(w.gzip ? { 'content-encoding': 'gzip' } : {}) });
    res.cork();
    for (let i = 0; i < parts.length - 1; i++) res.write(parts[i]);
    res.end(parts[parts.length - 1]);
    this.onAnswer?.(e.workload, etagFor(e, w.backend));
  }
}
