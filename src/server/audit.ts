/**
 * The audit log: one row per mutating call, hash-chained.
 *
 * Each entry holds `prev` (the previous entry's hash, 64 zeros for the first)
 * and `hash = sha256(prev ‖ canonical JSON of {seq, at, actor, role, action,
 * target, detail})`. Verifying recomputes every hash in order: an edited row
 * breaks its own hash, a deleted row breaks the next row's `prev` and the
 * sequence, and a removed tail is caught against the head the server keeps
 * (in memory and in `meta`).
 */
import { createHash } from 'node:crypto';
import { getMeta, setMeta, type Db } from './db.js';

export const GENESIS = '0'.repeat(64);

/** JSON with object keys sorted at every level: the same value always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return '[' + value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',') + ']';
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonicalJson(obj[k])).join(',') + '}';
}

/** One entry as stored and served. */
export interface AuditEntry {
  readonly seq: number;
  readonly at: string;
  readonly actor: string;
  readonly role: string;
  readonly action: string;
  readonly target: string | null;
  readonly detail: unknown;
  readonly prev: string;
  readonly hash: string;
}

interface Row {
  seq: number;
  at: number;
  actor: string;
  role: string;
  action: string;
  target: string | null;
  detail: string;
  prev: string;
  hash: string;
}

function entryHash(prev: string, e: { seq: number; at: number; actor: string; role: string; action: string; target: string | null; detail: unknown }): string {
  return createHash('sha256')
    .update(prev)
    .update(canonicalJson({ seq: e.seq, at: e.at, actor: e.actor, role: e.role, action: e.action, target: e.target, detail: e.detail }))
    .digest('hex');
}

/** What {@link AuditLog.verify} found. */
export interface AuditVerdict {
  readonly ok: boolean;
  readonly entries: number;
  /** The sequence number of the first entry that does not check. */
  readonly brokenAt?: number;
  readonly reason?: string;
  readonly head: string;
}

/** The audit log of one state file. */
export class AuditLog {
  private head: { seq: number; hash: string };
  private readonly insert;

  constructor(private readonly db: Db) {
    const last = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
    const meta = getMeta(db, 'audit_head');
    const stored = meta ? (JSON.parse(meta) as { seq: number; hash: string }) : undefined;
    // The head is what the server last wrote; a shorter table than that is caught by verify().
    this.head = stored ?? (last ? { seq: last.seq, hash: last.hash } : { seq: 0, hash: GENESIS });
    this.insert = db.prepare('INSERT INTO audit (seq, at, actor, role, action, target, detail, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  }

  /**
   * Appends an entry. Call inside the transaction of the change it records,
   * so both happen or neither.
   */
  append(e: { actor: string; role: string; action: string; target?: string | null; detail?: unknown; at?: number }): AuditEntry {
    const seq = this.head.seq + 1;
    const at = e.at ?? Date.now();
    const detail = e.detail ?? {};
    const target = e.target ?? null;
    const prev = this.head.hash;
    const hash = entryHash(prev, { seq, at, actor: e.actor, role: e.role, action: e.action, target, detail });
    this.insert.run(seq, at, e.actor, e.role, e.action, target, canonicalJson(detail), prev, hash);
    const before = this.head;
    this.head = { seq, hash };
    try {
      setMeta(this.db, 'audit_head', JSON.stringify(this.head));
    } catch (err) {
      this.head = before;
      throw err;
    }
    return { seq, at: new Date(at).toISOString(), actor: e.actor, role: e.role, action: e.action, target, detail, prev, hash };
  }

  /** Resets the in-memory head from the file (after a rolled-back transaction). */
  reload(): void {
    const meta = getMeta(this.db, 'audit_head');
    if (meta) this.head = JSON.parse(meta) as { seq: number; hash: string };
  }

  /** Entries, newest first, with filters. */
  list(o: { since?: number; until?: number; actor?: string; action?: string; limit?: number; before?: number } = {}): AuditEntry[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (o.since !== undefined) {
      where.push('at >= ?');
      args.push(o.since);
    }
    if (o.until !== undefined) {
      where.push('at < ?');
      args.push(o.until);
    }
    if (o.actor !== undefined) {
      where.push('actor = ?');
      args.push(o.actor);
    }
    if (o.action !== undefined) {
      where.push('action = ?');
      args.push(o.action);
    }
    if (o.before !== undefined) {
      where.push('seq < ?');
      args.push(o.before);
    }
    const rows = this.db.prepare(`SELECT * FROM audit ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq DESC LIMIT ?`).all(...args, o.limit ?? 100) as Row[];
    return rows.map(toEntry);
  }

  /** Recomputes the chain from the first entry. */
  verify(): AuditVerdict {
    let prev = GENESIS;
    let expectSeq = 1;
    let n = 0;
    const head = this.head;
    for (const r of this.db.prepare('SELECT * FROM audit ORDER BY seq').iterate() as IterableIterator<Row>) {
      n++;
      if (r.seq !== expectSeq) return { ok: false, entries: n, brokenAt: expectSeq, reason: `entry ${expectSeq} is missing`, head: head.hash };
      if (r.prev !== prev) return { ok: false, entries: n, brokenAt: r.seq, reason: `entry ${r.seq} does not follow the entry before it`, head: head.hash };
      let detail: unknown;
      try {
        detail = JSON.parse(r.detail);
      } catch {
        return { ok: false, entries: n, brokenAt: r.seq, reason: `entry ${r.seq} has an unreadable detail`, head: head.hash };
      }
      const h = entryHash(prev, { seq: r.seq, at: r.at, actor: r.actor, role: r.role, action: r.action, target: r.target, detail });
      if (h !== r.hash) return { ok: false, entries: n, brokenAt: r.seq, reason: `entry ${r.seq} was changed after it was written`, head: head.hash };
      prev = r.hash;
      expectSeq++;
    }
    if (n < head.seq) return { ok: false, entries: n, brokenAt: n + 1, reason: `entries ${n + 1} to ${head.seq} were removed`, head: head.hash };
    if (n > 0 && prev !== head.hash) return { ok: false, entries: n, brokenAt: n, reason: `entry ${n} is not the last entry written`, head: head.hash };
    return { ok: true, entries: n, head: head.hash };
  }
}

function toEntry(r: Row): AuditEntry {
  return { seq: r.seq, at: new Date(r.at).toISOString(), actor: r.actor, role: r.role, action: r.action, target: r.target, detail: JSON.parse(r.detail), prev: r.prev, hash: r.hash };
}
