/**
 * Flows from agents into the flow store, and the violations among them.
 *
 * Records are checked, oriented (server side inferred, as `bulkhead ingest`
 * does) and held in columnar batches; a **group commit** every `commitMs`
 * (or sooner when many records wait) appends them to the store in one ingest
 * run, aggregates the edges, and writes the violations to the state file.
 * Only then are the requests that brought them answered: a `200` means the
 * records are stored. A failed commit answers them with an error, so the
 * agent keeps its records and sends them again.
 */
import { foldPorts, ServerInference } from '../flows/attribute.js';
import { ACTION, FlowBatch, formatId, INITIATOR, V6, wordsToV6 } from '../flows/record.js';
import { WIRE_VERDICTS, type WireBatch } from '../flows/wire.js';
import { formatAddr, type Addr, type IpSet } from '../netset/ip.js';
import type { FlowStore } from '../store/flows.js';
import type { Alert } from './alerts.js';
import type { Db } from './db.js';
import { ApiError, badRequest } from './http.js';

const CONNTRACK = formatId('conntrack');
const HOUR = 3600000;

/** Empty batches kept for reuse (about 200 KB each). */
const MAX_SPARE = 128;

/** Who sent a batch. */
export interface FlowSender {
  readonly workload: string;
  readonly app: string;
  /** The workload's addresses in the active policy: every record must have one as src or dst. */
  readonly addresses: IpSet;
}

interface Pending {
  readonly batch: FlowBatch;
  readonly server: Uint8Array;
  readonly port: Uint16Array;
}

interface ViolationKey {
  bucket: number;
  app: string;
  workload: string;
  rule: string;
  verdict: string;
  src: string;
  dst: string;
  proto: number;
  port: number;
  count: number;
  first: number;
  last: number;
}

export interface FlowIngestOptions {
  /** How often waiting records are stored (default 250 ms). */
  readonly commitMs?: number;
  /** Commit at once when this many records wait (default 200,000). */
  readonly commitRecords?: number;
  /** Told the violations of every commit, summed per app, rule and verdict. */
  readonly onViolations?: (v: { app: string; rule: string; verdict: string; count: number; workloads: string[] }[]) => void;
}

/** Group-committed ingest of agent flows. */
export class FlowIngest {
  private readonly inference = new ServerInference();
  private readonly spare: Pending[] = [];
  private current = this.fresh();
  private pending: Pending[] = [];
  private pendingRecords = 0;
  private violations = new Map<string, ViolationKey>();
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private timer?: ReturnType<typeof setTimeout>;
  private committing?: Promise<void>;
  private closed = false;
  /** Records acknowledged (stored) since start. */
  stored = 0;
  commits = 0;
  /** Milliseconds spent in commits that stored, in all. */
  commitTime = 0;
  private lastStart = 0;
  private readonly upsert;

  constructor(
    private readonly store: FlowStore,
    private readonly db: Db,
    private readonly o: FlowIngestOptions = {},
  ) {
    this.upsert = db.prepare(`INSERT INTO violations (bucket, app, workload, rule, verdict, src, dst, proto, port, count, first_ms, last_ms)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (bucket, workload, rule, verdict, src, dst, proto, port) DO UPDATE SET
        count = count + excluded.count, first_ms = MIN(first_ms, excluded.first_ms), last_ms = MAX(last_ms, excluded.last_ms), app = excluded.app`);
  }

  private fresh(): Pending {
    const p = this.spare.pop();
    if (!p) return { batch: new FlowBatch(2048), server: new Uint8Array(2048), port: new Uint16Array(2048) };
    p.batch.length = 0;
    return p;
  }

  /** Batches the store has copied (it copies rows in `append`), to fill again. */
  private recycle(batches: readonly Pending[]): void {
    for (const p of batches) if (this.spare.length < MAX_SPARE) this.spare.push(p);
  }

  /**
   * Checks a batch (403 when a record does not touch the sender's workload,
   * 400 when it ends before it starts: nothing of the batch is kept) and
   * resolves once its records are stored.
   */
  ingest(c: WireBatch, from: FlowSender): Promise<number> {
    if (this.closed) return Promise.reject(new ApiError(503, 'shutting-down', 'the server is shutting down'));
    const n = c.length;
    if (n === 0) return Promise.resolve(0);
    // Check every record before keeping any. Agents repeat their own address in every record: one set lookup per
    // distinct IPv4 address in a row.
    const own = from.addresses;
    let lastSrc = -1;
    let lastDst = -1;
    let srcOwn = false;
    let dstOwn = false;
    for (let i = 0; i < n; i++) {
      const fam = c.family[i];
      if (fam === 0) {
        const s = c.src4[i];
        const d = c.dst4[i];
        if (s !== lastSrc) [lastSrc, srcOwn] = [s, own.has(s)];
        if (!srcOwn && d !== lastDst) [lastDst, dstOwn] = [d, own.has(d)];
        if (!srcOwn && !dstOwn) this.notYours(c, i, from);
      } else if (!own.has(addrOf(c, i, 'src')) && !own.has(addrOf(c, i, 'dst'))) this.notYours(c, i, from);
      if (c.end[i] < c.start[i]) throw badRequest(`record ${i}: \`end\` is before \`start\``);
    }
    for (let i = 0; i < n; i++) {
      let p = this.current;
      if (p.batch.length === p.batch.capacity) {
        this.seal();
        p = this.current;
      }
      const b = p.batch;
      const k = b.length++;
      const fam = c.family[i];
      const verdict = c.verdict[i];
      b.v6[k] = fam;
      b.start[k] = c.start[i];
      b.end[k] = c.end[i];
      b.src4[k] = c.src4[i];
      b.dst4[k] = c.dst4[i];
      if (fam !== 0) {
        b.src6.set(c.src6.subarray(i * 4, i * 4 + 4), k * 4);
        b.dst6.set(c.dst6.subarray(i * 4, i * 4 + 4), k * 4);
      }
      b.proto[k] = c.proto[i];
      b.srcPort[k] = c.sport[i];
      b.dstPort[k] = c.dport[i];
      b.packets[k] = c.packets[i];
      b.bytes[k] = c.bytes[i];
      b.action[k] = verdict === BLOCKED ? ACTION.reject : verdict !== 0 ? ACTION.accept : ACTION.none;
      b.tcpFlags[k] = -1;
      b.initiator[k] = c.initiator[i] === 1 ? INITIATOR.src : INITIATOR.unknown;
      b.format[k] = CONNTRACK;
      if (verdict === BLOCKED || verdict === POTENTIALLY_BLOCKED) this.violation(c, i, from);
    }
    this.pendingRecords += n;
    const done = new Promise<number>((resolve, reject) => this.waiters.push({ resolve: () => resolve(n), reject }));
    this.schedule();
    return done;
  }

  private notYours(c: WireBatch, i: number, from: FlowSender): never {
    const src = formatAddr(addrOf(c, i, 'src'));
    const dst = formatAddr(addrOf(c, i, 'dst'));
    throw new ApiError(403, 'not-your-flow', `record ${i} (${src} -> ${dst}) has none of workload \`${from.workload}\`'s addresses: the batch is refused`);
  }

  private violation(c: WireBatch, i: number, from: FlowSender): void {
    const start = c.start[i];
    const bucket = Math.floor(start / HOUR) * HOUR;
    const rule = c.rule[i] === 0 ? 'unknown' : c.rules[c.rule[i] - 1];
    const verdict = WIRE_VERDICTS[c.verdict[i]]!;
    const src = formatAddr(addrOf(c, i, 'src'));
    const dst = formatAddr(addrOf(c, i, 'dst'));
    const key = `${bucket}\0${from.workload}\0${rule}\0${verdict}\0${src}\0${dst}\0${c.proto[i]}\0${c.dport[i]}`;
    const v = this.violations.get(key);
    if (v) {
      v.count++;
      v.first = Math.min(v.first, start);
      v.last = Math.max(v.last, c.end[i]);
    } else {
      this.violations.set(key, { bucket, app: from.app, workload: from.workload, rule, verdict, src, dst, proto: c.proto[i], port: c.dport[i], count: 1, first: start, last: c.end[i] });
    }
  }

  private seal(): void {
    const p = this.current;
    if (p.batch.length === 0) return;
    this.inference.orient(p.batch, p.server);
    foldPorts(p.batch, p.server, p.port);
    this.pending.push(p);
    this.current = this.fresh();
  }

  /**
   * Arms the commit: `commitMs` after the first record that waits, or, when
   * records came in during a commit, `commitMs` after that commit began (at
   * once if it took longer), so under load commits follow each other with
   * no idle time between them.
   */
  private schedule(afterCommit = false): void {
    if (this.pendingRecords >= (this.o.commitRecords ?? 200000)) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      void this.commit();
      return;
    }
    const every = this.o.commitMs ?? 250;
    if (!this.timer && !this.committing) this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.commit();
    }, afterCommit ? Math.max(0, every - (performance.now() - this.lastStart)) : every);
  }

  /** Everything that waits, for one commit. */
  private take() {
    this.seal();
    const taken = { batches: this.pending, waiters: this.waiters, violations: this.violations, records: this.pendingRecords };
    this.pending = [];
    this.waiters = [];
    this.violations = new Map();
    this.pendingRecords = 0;
    return taken;
  }

  /** Stores what waits now; resolves when stored (or failed). */
  async commit(): Promise<void> {
    if (this.committing) {
      await this.committing;
      if (this.waiters.length > 0) return this.commit();
      return;
    }
    if (this.waiters.length === 0) return;
    this.lastStart = performance.now();
    this.committing = (async () => {
      let taken: ReturnType<FlowIngest['take']> | undefined;
      try {
        const run = await this.store.beginIngest('agents');
        // Taken only now: records that came in while the run was being opened go in it too.
        taken = this.take();
        for (const p of taken.batches) run.append(p.batch, p.server, p.port);
        this.recycle(taken.batches);
        await run.finish();
        const { violations } = taken;
        if (violations.size > 0) {
          this.db.transaction(() => {
            for (const v of violations.values()) this.upsert.run(v.bucket, v.app, v.workload, v.rule, v.verdict, v.src, v.dst, v.proto, v.port, v.count, v.first, v.last);
          })();
        }
        this.stored += taken.records;
        this.commits++;
        this.commitTime += performance.now() - this.lastStart;
        for (const w of taken.waiters) w.resolve();
        if (violations.size > 0 && this.o.onViolations) this.o.onViolations(summarize(violations));
      } catch (e) {
        const err = new ApiError(503, 'store-failed', `the flows could not be stored: ${(e as Error).message}`);
        for (const w of (taken ??= this.take()).waiters) w.reject(err);
      }
    })();
    await this.committing;
    this.committing = undefined;
    if (this.waiters.length > 0) this.schedule(true);
  }

  /** Stores what waits and refuses what comes after. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.commit();
    this.closed = true;
  }
}

/** One end of record `i` as an address. */
function addrOf(c: WireBatch, i: number, end: 'src' | 'dst'): Addr {
  const six = end === 'src' ? V6.src : V6.dst;
  if ((c.family[i] & six) === 0) return end === 'src' ? c.src4[i] : c.dst4[i];
  return wordsToV6(end === 'src' ? c.src6 : c.dst6, i * 4);
}

const BLOCKED = WIRE_VERDICTS.indexOf('blocked');
const POTENTIALLY_BLOCKED = WIRE_VERDICTS.indexOf('potentially-blocked');

function summarize(vs: Map<string, ViolationKey>): { app: string; rule: string; verdict: string; count: number; workloads: string[] }[] {
  const out = new Map<string, { app: string; rule: string; verdict: string; count: number; workloads: Set<string> }>();
  for (const v of vs.values()) {
    const k = `${v.app}\0${v.rule}\0${v.verdict}`;
    let s = out.get(k);
    if (!s) out.set(k, (s = { app: v.app, rule: v.rule, verdict: v.verdict, count: 0, workloads: new Set() }));
    s.count += v.count;
    s.workloads.add(v.workload);
  }
  return [...out.values()].map((s) => ({ ...s, workloads: [...s.workloads].sort() }));
}

/** Violations per app, rule and verdict in a time range, the biggest first. */
export function violationsReport(db: Db, o: { since?: number; until?: number; app?: string; limit?: number }) {
  const where: string[] = [];
  const args: unknown[] = [];
  if (o.since !== undefined) {
      where.push('bucket >= ?');
      args.push(Math.floor(o.since / HOUR) * HOUR);
    }
  if (o.until !== undefined) {
      where.push('bucket < ?');
      args.push(o.until);
    }
  if (o.app !== undefined) {
      where.push('app = ?');
      args.push(o.app);
    }
  const w = where.length ? 'WHERE ' + where.join(' AND ') : '';
  const rows = db
    .prepare(
      `SELECT app, rule, verdict, SUM(count) AS count, COUNT(DISTINCT workload) AS workloads, COUNT(DISTINCT src || '>' || dst) AS pairs, MIN(first_ms) AS first, MAX(last_ms) AS last
       FROM violations ${w} GROUP BY app, rule, verdict ORDER BY count DESC, app, rule LIMIT ?`,
    )
    .all(...args, o.limit ?? 500) as { app: string; rule: string; verdict: string; count: number; workloads: number; pairs: number; first: number; last: number }[];
  const top = db.prepare(`SELECT src, dst, proto, port, workload, SUM(count) AS count FROM violations ${w ? w + ' AND' : 'WHERE'} app = ? AND rule = ? AND verdict = ? GROUP BY src, dst, proto, port, workload ORDER BY count DESC LIMIT 5`);
  return rows.map((r) => ({
    app: r.app,
    rule: r.rule,
    verdict: r.verdict,
    count: r.count,
    workloads: r.workloads,
    pairs: r.pairs,
    first: new Date(r.first).toISOString(),
    last: new Date(r.last).toISOString(),
    top: (top.all(...args, r.app, r.rule, r.verdict) as { src: string; dst: string; proto: number; port: number; workload: string; count: number }[]).map((t) => ({ ...t })),
  }));
}

/** The alert for a violation summary. */
export function violationAlert(v: { app: string; rule: string; verdict: string; count: number; workloads: string[] }, at: number): Alert {
  return {
    kind: 'violation',
    severity: v.verdict === 'blocked' ? 4 : 5,
    at,
    message: `${v.count} ${v.verdict} flow${v.count === 1 ? '' : 's'} in app ${v.app} by rule ${v.rule} on ${v.workloads.slice(0, 5).join(', ')}${v.workloads.length > 5 ? ` and ${v.workloads.length - 5} more` : ''}`,
    fields: { app: v.app, rule: v.rule, verdict: v.verdict, count: v.count, workloads: v.workloads.length },
  };
}
