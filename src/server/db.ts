/**
 * The control plane's state: one SQLite file (better-sqlite3), WAL mode,
 * schema migrations numbered here and recorded in the `migrations` table.
 * A migration runs once, in a transaction; a state file from a newer
 * bulkhead (a migration number this code does not know) is refused.
 */
import Database from 'better-sqlite3';

export type Db = Database.Database;

/** The migrations, in order. Never edit a released one: add the next. */
export const MIGRATIONS: readonly { readonly id: number; readonly name: string; readonly sql: string }[] = [
  {
    id: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE tokens (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, app TEXT, workload TEXT,
        hash BLOB NOT NULL, created_at INTEGER NOT NULL, created_by TEXT, revoked_at INTEGER);
      CREATE TABLE draft (
        id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL, doc TEXT NOT NULL,
        updated_at INTEGER NOT NULL, updated_by TEXT);
      CREATE TABLE versions (
        version INTEGER PRIMARY KEY, digest TEXT NOT NULL, doc TEXT NOT NULL, message TEXT NOT NULL,
        created_at INTEGER NOT NULL, created_by TEXT NOT NULL, rollback_of INTEGER, draft_revision INTEGER);
      CREATE TABLE agents (
        id TEXT PRIMARY KEY, workload TEXT NOT NULL, token_id TEXT NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL,
        revoked_at INTEGER, hostname TEXT, addresses TEXT, labels TEXT, agent_version TEXT, registered_at INTEGER,
        last_seen INTEGER, applied_version INTEGER, applied_etag TEXT, state TEXT NOT NULL DEFAULT 'new', stats TEXT);
      CREATE INDEX agents_workload ON agents (workload);
      CREATE TABLE agent_events (
        id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, at INTEGER NOT NULL, kind TEXT NOT NULL, version INTEGER, detail TEXT);
      CREATE INDEX agent_events_at ON agent_events (at);
      CREATE TABLE breakglass (
        id TEXT PRIMARY KEY, rule TEXT NOT NULL, reason TEXT NOT NULL, created_by TEXT NOT NULL, created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL, ended_at INTEGER, ended_by TEXT, end_reason TEXT);
      CREATE TABLE audit (
        seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL,
        target TEXT, detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
      CREATE TABLE violations (
        bucket INTEGER NOT NULL, app TEXT NOT NULL, workload TEXT NOT NULL, rule TEXT NOT NULL, verdict TEXT NOT NULL,
        src TEXT NOT NULL, dst TEXT NOT NULL, proto INTEGER NOT NULL, port INTEGER NOT NULL,
        count INTEGER NOT NULL, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,
        PRIMARY KEY (bucket, workload, rule, verdict, src, dst, proto, port));
      CREATE INDEX violations_app ON violations (bucket, app, rule);
      CREATE TABLE sinks (id TEXT PRIMARY KEY, kind TEXT NOT NULL, config TEXT NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL);
    `,
  },
];

/** Opens (creating and migrating when needed) the state file. */
export function openState(path: string): Db {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    migrate(db);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** Runs the migrations the file has not had yet. */
export function migrate(db: Db): number[] {
  db.exec('CREATE TABLE IF NOT EXISTS migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
  const done = new Set((db.prepare('SELECT id FROM migrations').all() as { id: number }[]).map((r) => r.id));
  const known = new Set(MIGRATIONS.map((m) => m.id));
  const unknown = [...done].filter((id) => !known.has(id));
  if (unknown.length > 0) throw new Error(`the state file has migration ${Math.max(...unknown)}, newer than this bulkhead knows (${Math.max(...known)}); use a newer bulkhead`);
  const ran: number[] = [];
  for (const m of MIGRATIONS) {
    if (done.has(m.id)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO migrations (id, name, applied_at) VALUES (?, ?, ?)').run(m.id, m.name, Date.now());
    })();
    ran.push(m.id);
  }
  return ran;
}

/** A value of the `meta` table. */
export function getMeta(db: Db, key: string): string | undefined {
  const r = db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
  return r?.value;
}

export function setMeta(db: Db, key: string, value: string): void {
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
}
