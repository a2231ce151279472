/**
 * Tokens, roles and rate limits.
 *
 * A token is `bh_<id>_<secret>` (id: 12 hex digits, secret: 64). The state
 * keeps only `sha256(secret)`, compared in constant time. Known tokens are
 * cached in memory (a revocation drops them from the cache in the same call),
 * so 10,000 polling agents cost no SQLite read per request.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db } from './db.js';
import { ApiError } from './http.js';

export const ROLES = ['admin', 'editor', 'viewer', 'app-owner', 'agent'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling. */
export interface Principal {
  readonly tokenId: string;
  readonly name: string;
  readonly role: Role;
  /** app-owner: the app. */
  readonly app?: string;
  /** agent: the workload it is bound to. */
  readonly workload?: string;
}

/**
 * The permissions of docs/API.md, by role. `draft` for an app owner is
 * limited to its app's rulesets by the handlers.
 */
const PERMISSIONS: Record<Role, ReadonlySet<string>> = {
  admin: new Set(['read', 'draft', 'provision', 'rollback', 'breakglass', 'admin']),
  editor: new Set(['read', 'draft', 'provision', 'rollback', 'breakglass']),
  viewer: new Set(['read']),
  'app-owner': new Set(['read', 'draft:ruleset', 'provision']),
  agent: new Set(['agent']),
};

/** Whether the role holds the permission (`draft` implies `draft:ruleset`). */
export function allows(role: Role, permission: string): boolean {
  const p = PERMISSIONS[role];
  return p.has(permission) || (permission === 'draft:ruleset' && p.has('draft'));
}

/** A freshly made token: its id, the text shown once, and the hash kept. */
export interface NewToken {
  readonly id: string;
  readonly token: string;
  readonly hash: Buffer;
}

export function makeToken(): NewToken {
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('hex');
  return { id, token: `bh_${id}_${secret}`, hash: hashSecret(secret) };
}

export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

const TOKEN_RE = /^bh_([0-9a-f]{12})_([0-9a-f]{64})$/;

/** Splits a token into id and secret; undefined when malformed. */
export function parseToken(text: string): { id: string; secret: string } | undefined {
  const m = TOKEN_RE.exec(text);
  return m ? { id: m[1], secret: m[2] } : undefined;
}

interface TokenRow {
  id: string;
  name: string;
  role: Role;
  app: string | null;
  workload: string | null;
  hash: Buffer;
  revoked_at: number | null;
}

const unauthorized = (message: string) => new ApiError(401, 'unauthorized', message, undefined, { 'www-authenticate': 'Bearer realm="bulkhead"' });

/** The token table with an in-memory cache of live tokens. */
export class Tokens {
  private readonly cache = new Map<string, { principal: Principal; hash: Buffer } | null>();

  constructor(private readonly db: Db) {}

  /** Stores a new token; returns the text, shown once. */
  create(o: { name: string; role: Role; app?: string; workload?: string; by: string }): { id: string; token: string } {
    const t = makeToken();
    this.db
      .prepare('INSERT INTO tokens (id, name, role, app, workload, hash, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(t.id, o.name, o.role, o.app ?? null, o.workload ?? null, t.hash, Date.now(), o.by);
    this.cache.delete(t.id);
    return { id: t.id, token: t.token };
  }

  /** Revokes a token; false when there is no live token with that id. */
  revoke(id: string): boolean {
    const r = this.db.prepare('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(Date.now(), id);
    this.cache.delete(id);
    return r.changes > 0;
  }

  list(): { id: string; name: string; role: Role; app?: string; workload?: string; createdAt: string; createdBy: string | null; revokedAt?: string }[] {
    const rows = this.db.prepare("SELECT id, name, role, app, workload, created_at, created_by, revoked_at FROM tokens WHERE role != 'agent' ORDER BY created_at, id").all() as (TokenRow & { created_at: number; created_by: string | null })[];
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      role: r.role,
      ...(r.app ? { app: r.app } : {}),
      ...(r.workload ? { workload: r.workload } : {}),
      createdAt: new Date(r.created_at).toISOString(),
      createdBy: r.created_by,
      ...(r.revoked_at ? { revokedAt: new Date(r.revoked_at).toISOString() } : {}),
    }));
  }

  /** Whether any live admin token exists. */
  hasAdmin(): boolean {
    return this.db.prepare("SELECT 1 FROM tokens WHERE role = 'admin' AND revoked_at IS NULL LIMIT 1").get() !== undefined;
  }

  /** Whether the state has any token at all (first start). */
  isEmpty(): boolean {
    return this.db.prepare('SELECT 1 FROM tokens LIMIT 1').get() === undefined;
  }

  /** The caller of an `Authorization` header; 401 when missing, malformed, unknown or revoked. */
  authenticate(header: string | undefined): Principal {
    if (!header) throw unauthorized('this endpoint needs `Authorization: Bearer <token>`');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw unauthorized('the Authorization header must be `Bearer <token>`');
    const parsed = parseToken(m[1]);
    if (!parsed) throw unauthorized('the token is malformed');
    let entry = this.cache.get(parsed.id);
    if (entry === undefined) {
      const row = this.db.prepare('SELECT id, name, role, app, workload, hash, revoked_at FROM tokens WHERE id = ?').get(parsed.id) as TokenRow | undefined;
      entry =
        row && row.revoked_at === null
          ? { principal: { tokenId: row.id, name: row.name, role: row.role, ...(row.app ? { app: row.app } : {}), ...(row.workload ? { workload: row.workload } : {}) }, hash: row.hash }
          : null;
      // Unknown ids are not cached: the id space is large and a flood of guesses must not grow memory.
      if (entry) this.cache.set(parsed.id, entry);
    }
    const given = hashSecret(parsed.secret);
    // Compare even for an unknown id, so the time does not tell ids apart.
    const expected = entry ? entry.hash : DUMMY;
    const same = timingSafeEqual(given, expected);
    if (!entry || !same) throw unauthorized('the token is unknown or revoked');
    return entry.principal;
  }
}

const DUMMY = Buffer.alloc(32);

/**
 * Token buckets per key: `rate` requests a second, bursts up to `rate`.
 * Idle buckets are swept, so the map stays as big as the active callers.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private sweeps = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Takes one request; returns 0 when allowed, else the seconds to wait. */
  take(key: string, rate: number): number {
    if (!(rate > 0) || !Number.isFinite(rate)) return 0;
    const now = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: rate, at: now };
      this.buckets.set(key, b);
      if (++this.sweeps % 4096 === 0) this.sweep(now);
    } else {
      b.tokens = Math.min(rate, b.tokens + ((now - b.at) / 1000) * rate);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / rate));
  }

  private sweep(now: number): void {
    for (const [k, b] of this.buckets) if (now - b.at > 60000) this.buckets.delete(k);
  }
}
