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
 * generations: a new version recompiles only the rulesets it changed.
 *
 * Long polls wait per workload; a new generation re-checks the waiting
 * workloads in slices of a few milliseconds, so the server keeps answering.
 */
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { IpSet } from '../netset/ip.js';
import type { ConnSet } from '../netset/connset.js';
import { HostCompiler, type HostPolicy } from '../compile/host.js';
import { compileNftables, type Failsafe } from '../compile/nftables.js';
import type { Compiled } from '../policy/index.js';
import { IpSet as IpSetClass } from '../netset/ip.js';

/** Bumped when the compiled output for the same signature changes (a new compiler). */
const FORMAT = 'nft1';

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

function connKey(c: ConnSet): string {
  let k = connKeys.get(c);
  if (k === undefined) connKeys.set(c, (k = c.toString()));
  return k;
}

/** The signature of a host view: everything its nftables text depends on but the workload's name. */
export function hostSignature(h: HostPolicy): string {
  const hash = createHash('sha256');
  hash.update(FORMAT + '\0' + h.mode);
  for (const [dir, rules] of [['in', h.ingress], ['out', h.egress]] as const) {
    hash.update('\0' + dir);
    for (const r of rules) {
      hash.update(`\n${r.rule.id}\0${r.tier}\0${r.action}\0${setKey(r.peer)}\0${r.own ? setKey(r.own) : ''}\0${connKey(r.conns)}\0${r.user ?? ''}\0${r.process ?? ''}`);
    }
  }
  return hash.digest('base64url');
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

/** A compiled ruleset body, JSON-escaped, shared by every workload with its signature. */
interface Text {
  /** The first line with the representative's name, to rewrite per workload. */
  readonly header: string;
  readonly representative: string;
  /** JSON-escaped text after the first line. */
  readonly rest: Buffer;
}

/** Caches compiled texts by signature, least recently used first out, bounded in bytes. */
export class TextCache {
  private readonly map = new Map<string, Text>();
  private bytes = 0;
  compiles = 0;
  hits = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly failsafe: Failsafe,
  ) {}

  get(e: WorkloadEntry): Text {
    const hit = this.map.get(e.signature);
    if (hit) {
      this.hits++;
      // Re-insert: Map order is the recency order.
      this.map.delete(e.signature);
      this.map.set(e.signature, hit);
      return hit;
    }
    this.compiles++;
    const host: HostPolicy = e.host ?? { workload: e.workload, index: -1, mode: 'idle', addresses: IpSetClass.EMPTY, ingress: [], egress: [] };
    const text = compileNftables(host, { failsafe: this.failsafe }).text;
    const nl = text.indexOf('\n');
    const t: Text = { header: text.slice(0, nl + 1), representative: e.workload, rest: Buffer.from(JSON.stringify(text.slice(nl + 1)).slice(1, -1)) };
    this.map.set(e.signature, t);
    this.bytes += t.rest.length;
    for (const [k, v] of this.map) {
      if (this.bytes <= this.maxBytes || this.map.size <= 1) break;
      this.map.delete(k);
      this.bytes -= v.rest.length;
    }
    return t;
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.map.size, bytes: this.bytes };
  }
}

/** The `200` body of `GET /agent/policy` in pieces (the big middle one shared). */
export function policyBody(gen: Generation, e: WorkloadEntry, t: Text): Buffer[] {
  const header = t.header.split(t.representative).join(e.workload);
  const head = `{"etag":${JSON.stringify(e.etag)},"version":${gen.version},"workload":${JSON.stringify(e.workload)},"mode":${JSON.stringify(e.mode)},"format":"nftables","ruleset":${JSON.stringify(header).slice(0, -1)}`;
  return [Buffer.from(head), t.rest, Buffer.from('"}')];
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
  ) {
    this.gen = initial;
  }

  get current(): Generation {
    return this.gen;
  }

  get waiters(): number {
    return this.waiterCount;
  }

  /** Makes a generation current and wakes the polls whose ETag it changes. */
  activate(gen: Generation): void {
    this.gen = gen;
    this.waking = gen.id;
    const workloads = [...this.waiting.keys()];
    let k = 0;
    const slice = () => {
      if (this.waking !== gen.id) return; // a newer generation took over
      const t0 = performance.now();
      while (k < workloads.length && performance.now() - t0 < 8) {
        const w = workloads[k++];
        const set = this.waiting.get(w);
        if (!set || set.size === 0) continue;
        const e = gen.entry(w);
        for (const waiter of [...set]) if (waiter.etag !== e.etag) this.answer(waiter, gen, e);
      }
      if (k < workloads.length) setImmediate(slice);
    };
    slice();
  }

  /**
   * Answers `GET /agent/policy` for a workload: at once when its ETag differs
   * from `etag`, else after the change or `waitMs` (304).
   */
  handle(o: { workload: string; agentId: string; etag: string | undefined; waitMs: number; res: ServerResponse }): void {
    const e = this.gen.entry(o.workload);
    const waiter: Waiter = { workload: o.workload, agentId: o.agentId, etag: o.etag, res: o.res, done: false };
    if (o.etag !== e.etag) {
      this.answer(waiter, this.gen, e);
      return;
    }
    if (o.waitMs <= 0) {
      this.notModified(waiter, e.etag);
      return;
    }
    let set = this.waiting.get(o.workload);
    if (!set) this.waiting.set(o.workload, (set = new Set()));
    set.add(waiter);
    this.waiterCount++;
    waiter.timer = setTimeout(() => this.notModified(waiter, e.etag), o.waitMs);
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
    const parts = policyBody(gen, e, this.texts.get(e));
    const length = parts.reduce((n, p) => n + p.length, 0);
    const res = w.res;
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(length), etag: `"${e.etag}"`, 'cache-control': 'no-store' });
    res.cork();
    for (let i = 0; i < parts.length - 1; i++) res.write(parts[i]);
    res.end(parts[parts.length - 1]);
    this.onAnswer?.(e.workload, e.etag);
  }
}
