/**
 * Enforcement on the managed host: applying the server's ruleset with the
 * atomic apply of src/adapters/nft.ts (one `nft -f` transaction of
 * bulkhead's own table, last known good kept, roll back when the table is
 * not there afterwards), restoring the last known good ruleset at start,
 * finding and repairing drift, and reading the rules' counters.
 *
 * Two agent-side touches to the text before it is loaded:
 * - it must be about bulkhead's own table and nothing else (a ruleset that
 *   flushes the machine's ruleset or adds another table is refused), so not
 *   even a compromised server can make the agent touch other firewalls;
 * - its `log prefix "bh …"` statements get `group N`, so dropped and
 *   would-be-dropped packets go to NFLOG group N (read by nflog.ts), which
 *   works in every network namespace, unlike the kernel log (see
 *   docs/AGENT.md). Where the kernel refuses NFLOG, the text is loaded as sent.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { definesTable, lastKnownGood, listTable, nftApply, normalizeListing, type NftTarget } from '../adapters/nft.js';

export { definesTable };

/** The table the agent owns. */
export const TABLE = 'bulkhead';

/** Options of {@link Enforcer}. */
export interface EnforcerOptions {
  /** The network namespace to enforce in; undefined: the agent's own. */
  readonly netns?: string;
  /** The agent's state directory (the last known good ruleset goes in `<stateDir>/nft/`). */
  readonly stateDir: string;
  /** NFLOG group for the rulesets' log statements; undefined leaves them as sent. */
  readonly nflogGroup?: number;
}

/** What the agent applied last, kept in `<stateDir>/applied.json`. */
export interface Applied {
  readonly etag: string;
  readonly version: number;
  readonly mode: string;
  /** Epoch milliseconds. */
  readonly at: number;
  /** Whether log statements were routed to NFLOG. */
  readonly nflog: boolean;
  /** What it was loaded with (absent: nftables, as agents before the iptables backend wrote it). */
  readonly backend?: 'nftables' | 'iptables';
}

/** The outcome of an apply. */
export type ApplyOutcome =
  | { readonly ok: true; readonly changed: boolean; readonly ms: number; readonly nflog: boolean }
  | { readonly ok: false; readonly error: string; readonly rolledBack: boolean };

/** What a drift check found. */
export type DriftCheck =
  | { readonly drifted: false }
  | { readonly drifted: true; readonly detail: string; readonly repaired: boolean; readonly error?: string };

/** Per-rule packet counters of the loaded table. */
export interface RuleCounter {
  readonly rule: string;
  readonly verdict: 'drop' | 'accept';
  /** True when the rule is a would-be drop (test mode). */
  readonly test: boolean;
  readonly packets: number;
  readonly bytes: number;
}

/** What the agent enforces with: {@link Enforcer} (nftables) or IptablesEnforcer (enforce-iptables.ts). */
export interface Enforcement {
  /** What was applied last (also across restarts), or undefined. */
  readonly applied: Applied | undefined;
  /** True while blocked packets are logged to NFLOG. */
  readonly nflog: boolean;
  /** At start: loads the last known good ruleset again if what is loaded is not it. Never removes anything. */
  restore(): { readonly action: 'none' | 'kept' | 'reloaded' | 'failed'; readonly detail?: string };
  /** Applies a ruleset from the server, after checking it touches nothing but bulkhead's own. */
  apply(ruleset: string, meta: { etag: string; version: number; mode: string }): ApplyOutcome;
  /** Loads again what was loaded before the last apply (nothing, if nothing was). */
  revert(): { ok: true; applied: Applied | undefined } | { ok: false; error: string };
  /** Compares what is loaded with what was applied; on a difference, loads it again. */
  checkDrift(): DriftCheck;
  /** Per-rule counters of what is loaded. */
  counters(): RuleCounter[];
}

/**
 * Checks that a ruleset is only about `table inet <table>`: at the top level
 * only `table inet <table> {…}`, `delete table inet <table>`, `flush table
 * inet <table>` and comments. Returns the problem, or undefined.
 */
export function foreignStatement(text: string, table = TABLE): string | undefined {
  let depth = 0;
  let stmt = '';
  let line = 1;
  let stmtLine = 1;
  const allowed = new RegExp(`^(?:table inet ${table}(?:\\s*\\{.*)?|(?:delete|flush) table inet ${table})$`, 's');
  const check = (): string | undefined => {
    const s = stmt.trim().replace(/\s+/g, ' ');
    stmt = '';
    if (s === '' || allowed.test(s)) return undefined;
    return `line ${stmtLine}: \`${s.slice(0, 60)}\` is not about table inet ${table}`;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '#') {
      while (i < text.length && text[i] !== '\n') i++;
      i--;
      continue;
    }
    if (ch === '"') {
      const end = text.indexOf('"', i + 1);
      if (end < 0) return `line ${line}: an unterminated string`;
      if (depth === 0) stmt += text.slice(i, end + 1);
      for (let k = i; k < end; k++) if (text[k] === '\n') line++;
      i = end;
      continue;
    }
    if (ch === '\n') line++;
    if (depth === 0) {
      if (ch === ';' || ch === '\n') {
        const bad = check();
        if (bad) return bad;
        stmtLine = line;
        continue;
      }
      if (stmt.trim() === '') stmtLine = line;
      if (ch === '{') {
        const s = stmt.trim().replace(/\s+/g, ' ');
        if (s !== `table inet ${table}`) return `line ${stmtLine}: \`${s.slice(0, 60)} {\` is not table inet ${table}`;
        depth = 1;
        stmt = '';
        continue;
      }
      stmt += ch;
    } else if (ch === '{') depth++;
    else if (ch === '}') depth--;
  }
  if (depth !== 0) return 'unbalanced braces';
  return check();
}

/** Adds `group N` to every `log prefix "bh …"` statement that has no group yet. */
export function routeLogsToNflog(text: string, group: number): string {
  return text.replace(/log prefix "(bh [^"]*)"(?! group)/g, `log prefix "$1" group ${group}`);
}


/** Per-rule counters from a table listing (`counter packets N bytes M drop|accept comment "id"`). */
export function ruleCounters(listing: string): RuleCounter[] {
  const out: RuleCounter[] = [];
  const lines = listing.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /counter packets (\d+) bytes (\d+) (drop|accept) comment "([^"]*)"/.exec(lines[i]);
    if (!m) continue;
    const rule = m[4];
    if (rule.startsWith('failsafe') || rule === 'visibility') continue;
    const test = m[3] === 'accept' && i > 0 && /log prefix "bh test-drop /.test(lines[i - 1]);
    if (m[3] === 'accept' && !test) continue;
    out.push({ rule, verdict: m[3] as 'drop' | 'accept', test, packets: Number(m[1]), bytes: Number(m[2]) });
  }
  return out;
}

/** A short description of how `now` differs from `was` (normalized listings). */
export function describeDrift(was: string, now: string | undefined): string {
  if (now === undefined) return 'the table was deleted';
  if (was === '') return 'a table appeared where none should be';
  const a = was.split('\n').map((l) => l.trim()).filter(Boolean);
  const b = now.split('\n').map((l) => l.trim()).filter(Boolean);
  const count = (xs: string[]) => xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<string, number>());
  const ca = count(a);
  const cb = count(b);
  const removed = [...ca].flatMap(([l, n]) => Array<string>(Math.max(0, n - (cb.get(l) ?? 0))).fill(l));
  const added = [...cb].flatMap(([l, n]) => Array<string>(Math.max(0, n - (ca.get(l) ?? 0))).fill(l));
  if (added.length === 0 && removed.length === 0) return 'rules were reordered';
  const show = [...added.slice(0, 2).map((l) => `+ ${l}`), ...removed.slice(0, 2).map((l) => `- ${l}`)].join('; ');
  return `${added.length} line${added.length === 1 ? '' : 's'} added, ${removed.length} removed: ${show}`;
}

/** Applies, restores and watches bulkhead's table in one network namespace. */
export class Enforcer implements Enforcement {
  private readonly target: NftTarget;
  private readonly nftDir: string;
  private readonly appliedFile: string;
  /** The normalized listing right after the last apply ('' when the table should be absent); undefined before any. */
  private reference: string | undefined;
  /** The exact text last applied (with the NFLOG rewrite). */
  private text: string | undefined;
  private nflogWorks: boolean;
  private current: Applied | undefined;
  /** What was loaded before the last apply, for {@link revert}. */
  private previous?: { readonly text: string | undefined; readonly applied: Applied | undefined };

  constructor(private readonly options: EnforcerOptions) {
    this.target = { netns: options.netns, table: TABLE };
    this.nftDir = join(options.stateDir, 'nft');
    this.appliedFile = join(options.stateDir, 'applied.json');
    this.nflogWorks = options.nflogGroup !== undefined;
    mkdirSync(this.nftDir, { recursive: true, mode: 0o700 });
    // Only what this backend applied: during a switch, applied.json is the other's (its rules enforce until this one applies).
    this.current = appliedBy(readApplied(this.appliedFile), 'nftables');
  }

  /** What was applied last (also across restarts), or undefined. */
  get applied(): Applied | undefined {
    return this.current;
  }

  /** True while log statements are routed to NFLOG. */
  get nflog(): boolean {
    return this.nflogWorks;
  }

  /**
   * At start: if a last known good ruleset is kept and the table does not
   * hold it (a reboot, someone deleted it), loads it again. Never removes
   * anything. Returns what it did.
   */
  restore(): { readonly action: 'none' | 'kept' | 'reloaded' | 'failed'; readonly detail?: string } {
    const good = lastKnownGood(this.nftDir);
    // What was applied last must have been applied with nftables: an old last known good is no ruleset to bring back.
    if (good === undefined || this.current === undefined || (this.current.backend ?? 'nftables') !== 'nftables') return { action: 'none' };
    this.text = good;
    const savedRef = existsSync(join(this.nftDir, 'reference.txt')) ? readFileSync(join(this.nftDir, 'reference.txt'), 'utf8') : undefined;
    const live = this.listing();
    const liveNorm = live === undefined ? '' : live;
    if (savedRef !== undefined && liveNorm === savedRef) {
      this.reference = savedRef;
      return { action: 'kept' };
    }
    const r = this.load(good);
    if (!r.ok) return { action: 'failed', detail: r.error };
    return { action: 'reloaded' };
  }

  /** Applies a ruleset from the server (after checking it is only about bulkhead's table). */
  apply(ruleset: string, meta: { etag: string; version: number; mode: string }): ApplyOutcome {
    const foreign = foreignStatement(ruleset);
    if (foreign !== undefined) return { ok: false, error: `refused: the ruleset touches more than bulkhead's own table (${foreign})`, rolledBack: false };
    const t0 = Date.now();
    const before = { text: this.text, applied: this.current };
    let nflog = this.nflogWorks;
    let text = nflog ? routeLogsToNflog(ruleset, this.options.nflogGroup!) : ruleset;
    let r = this.load(text);
    if (!r.ok && nflog && text !== ruleset && !r.rolledBack) {
      // The kernel may refuse NFLOG (no nfnetlink_log); the ruleset as sent may still load.
      const plain = this.load(ruleset);
      if (plain.ok) {
        this.nflogWorks = nflog = false;
        text = ruleset;
        r = plain;
      }
    }
    if (!r.ok) return r;
    this.previous = before;
    this.current = { ...meta, at: Date.now(), nflog, backend: 'nftables' };
    recordApplied(this.appliedFile, this.current, 'nftables');
    return { ok: true, changed: r.changed, ms: Date.now() - t0, nflog };
  }

  /**
   * Loads again what was loaded before the last apply (no table, if there
   * was none): after a ruleset cut the host off from its control plane.
   * Returns what is applied now.
   */
  revert(): { ok: true; applied: Applied | undefined } | { ok: false; error: string } {
    const prev = this.previous;
    if (!prev) return { ok: false, error: 'nothing to go back to' };
    const r = this.load(prev.text ?? `table inet ${TABLE} {}\ndelete table inet ${TABLE}\n`);
    if (!r.ok) return { ok: false, error: r.error };
    this.previous = undefined;
    this.current = prev.applied;
    recordApplied(this.appliedFile, prev.applied, 'nftables');
    return { ok: true, applied: prev.applied };
  }

  /**
   * Lists the table and compares it with what was applied; on a difference,
   * loads the applied ruleset again.
   */
  checkDrift(): DriftCheck {
    if (this.reference === undefined || this.text === undefined) return { drifted: false };
    const live = this.listing();
    const now = live ?? '';
    if (now === this.reference) return { drifted: false };
    const detail = describeDrift(this.reference, live === undefined && this.reference !== '' ? undefined : now);
    const r = this.load(this.text);
    return r.ok ? { drifted: true, detail, repaired: true } : { drifted: true, detail, repaired: false, error: r.error };
  }

  /** Per-rule counters of the loaded table (empty when it is not loaded). */
  counters(): RuleCounter[] {
    const live = listTable(this.target);
    return live === undefined ? [] : ruleCounters(live);
  }

  /** The normalized listing of the live table, or undefined when it is not loaded. */
  private listing(): string | undefined {
    const live = listTable(this.target);
    return live === undefined ? undefined : normalizeListing(live);
  }

  private load(text: string): { ok: true; changed: boolean } | { ok: false; error: string; rolledBack: boolean } {
    const wantTable = definesTable(text);
    const r = nftApply(text, {
      ...this.target,
      stateDir: this.nftDir,
      // The table must be there afterwards (or gone, for an idle host's ruleset).
      verify: () => (listTable(this.target) !== undefined) === wantTable,
    });
    if (!r.ok) {
      if (r.rolledBack) this.reference = this.listing() ?? '';
      return r;
    }
    this.text = text;
    this.reference = this.listing() ?? '';
    writeAtomic(join(this.nftDir, 'reference.txt'), this.reference);
    return r;
  }
}

/** `a` when `backend` applied it (a record without a backend is nftables': agents wrote none before iptables). */
export function appliedBy(a: Applied | undefined, backend: 'nftables' | 'iptables'): Applied | undefined {
  return a !== undefined && (a.backend ?? 'nftables') === backend ? a : undefined;
}

/**
 * Records what `backend` has applied in `applied.json`, or, with undefined,
 * that it has applied nothing: the file goes only if it is this backend's
 * (during a switch it is the other's, whose rules still enforce).
 */
export function recordApplied(file: string, a: Applied | undefined, backend: 'nftables' | 'iptables'): void {
  if (a) writeAtomic(file, JSON.stringify(a, null, 2) + '\n');
  else if (appliedBy(readApplied(file), backend) !== undefined) rmSync(file, { force: true });
}

/** What `applied.json` holds, or undefined when it is missing or not an Applied. */
export function readApplied(file: string): Applied | undefined {
  try {
    const a = JSON.parse(readFileSync(file, 'utf8')) as Applied;
    return typeof a.etag === 'string' && typeof a.version === 'number' ? a : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a file by renaming a temporary one over it, so a crash never leaves half a file. */
export function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
}
