/**
 * Enforcement with iptables + ipset, for hosts without nftables: the same
 * duties as the nftables Enforcer (enforce.ts) with the iptables apply of
 * src/adapters/iptables.ts, which has no transaction across its three
 * restore programs and so loads again what was loaded before (or removes
 * bulkhead's chains and sets) when a step fails part way.
 *
 * What the server sends is one text (compile/iptables.ts,
 * `iptablesDocument`), checked before anything is loaded: only bulkhead's
 * four chains in the filter table and its own `bh-…` sets
 * (`parseIptablesDocument`). Its `-j LOG` rules become `-j NFLOG` with the
 * agent's group, so blocked packets reach nflog.ts; where the kernel refuses
 * NFLOG, the files are loaded as sent.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseIptablesDocument, type IptablesFiles } from '../compile/iptables.js';
import { iptablesApplyAndRead, iptablesForgetLastKnownGood, iptablesLastKnownGood, iptablesRemove, iptablesState } from '../adapters/iptables.js';
import { appliedBy, describeDrift, readApplied, recordApplied, writeAtomic, type Applied, type ApplyOutcome, type DriftCheck, type Enforcement, type EnforcerOptions, type RuleCounter } from './enforce.js';

/** Files as the sections of a document, for checking them again. */
function filesDocument(f: IptablesFiles): string {
  return `### ipset\n${f.ipset}### iptables\n${f.iptables}### ip6tables\n${f.ip6tables}`;
}

/** The longest prefix `--nflog-prefix` takes (64 bytes with the final NUL). */
const MAX_NFLOG_PREFIX = 63;

/**
 * Turns each `-j LOG --log-prefix "bh …"` rule into `-j NFLOG --nflog-group N`
 * with the same prefix, or, where it fits, one carrying the rule's whole id
 * from its comment (LOG's 29 bytes cut long ids short; NFLOG takes 63).
 */
export function routeIptablesLogsToNflog(files: IptablesFiles, group: number): IptablesFiles {
  const route = (text: string) =>
    text.replace(/(-m comment --comment "([^"\n]*)" )?-j LOG --log-prefix "(bh (?:drop|test-drop) )([^"\n]*)"/g, (_all, commentPart: string | undefined, id: string | undefined, head: string, tag: string) => {
      const whole = id !== undefined ? `${head}${id} ` : undefined;
      const prefix = whole !== undefined && whole.length <= MAX_NFLOG_PREFIX ? whole : `${head}${tag}`;
      return `${commentPart ?? ''}-j NFLOG --nflog-group ${group} --nflog-prefix "${prefix}"`;
    });
  return { ipset: files.ipset, iptables: route(files.iptables), ip6tables: route(files.ip6tables) };
}

/**
 * Per-rule packet counters from `iptables-save -c` output: bulkhead's drop
 * rules, and its test-mode accepts that follow a `bh test-drop` log rule, in
 * BH-INGRESS and BH-EGRESS.
 */
export function iptablesCounters(saved: string): RuleCounter[] {
  const out: RuleCounter[] = [];
  let lastLogTest = false;
  for (const line of saved.split('\n')) {
    const m = /^\[(\d+):(\d+)\] -A BH-(?:INGRESS|EGRESS) (.*)$/.exec(line);
    if (!m) continue;
    const rest = m[3];
    const id = /--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))/.exec(rest);
    const rule = id ? (id[1] ?? id[2]) : '';
    const verdict = / -j (\S+)/.exec(` ${rest}`)?.[1];
    const wasTest = lastLogTest;
    lastLogTest = (verdict === 'LOG' || verdict === 'NFLOG') && /prefix "bh test-drop /.test(rest);
    if (rule === '' || rule === 'visibility') continue;
    if (verdict === 'DROP') out.push({ rule, verdict: 'drop', test: false, packets: Number(m[1]), bytes: Number(m[2]) });
    else if (verdict === 'ACCEPT' && wasTest) out.push({ rule, verdict: 'accept', test: true, packets: Number(m[1]), bytes: Number(m[2]) });
  }
  return out;
}

/** Applies, restores and watches bulkhead's iptables chains and ipsets in one network namespace. */
export class IptablesEnforcer implements Enforcement {
  private readonly dir: string;
  private readonly appliedFile: string;
  private readonly referenceFile: string;
  /** bulkhead's chains and sets right after the last load; undefined before any. */
  private reference: string | undefined;
  /** The files last loaded (with the NFLOG rewrite). */
  private files: IptablesFiles | undefined;
  private nflogWorks: boolean;
  private current: Applied | undefined;
  /** What was loaded before the last apply, for {@link revert}. */
  private previous?: { readonly files: IptablesFiles | undefined; readonly applied: Applied | undefined };

  constructor(private readonly options: EnforcerOptions) {
    this.dir = join(options.stateDir, 'iptables');
    this.appliedFile = join(options.stateDir, 'applied.json');
    this.referenceFile = join(this.dir, 'reference.txt');
    this.nflogWorks = options.nflogGroup !== undefined;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // Only what this backend applied: during a switch, applied.json is the other's (its rules enforce until this one applies).
    this.current = appliedBy(readApplied(this.appliedFile), 'iptables');
  }

  get applied(): Applied | undefined {
    return this.current;
  }

  get nflog(): boolean {
    return this.nflogWorks;
  }

  restore(): { readonly action: 'none' | 'kept' | 'reloaded' | 'failed'; readonly detail?: string } {
    const good = iptablesLastKnownGood(this.dir);
    // What was applied last must have been applied with iptables: an old last known good is no ruleset to bring back.
    if (good === undefined || this.current === undefined || this.current.backend !== 'iptables') return { action: 'none' };
    this.files = good;
    try {
      const saved = existsSync(this.referenceFile) ? readFileSync(this.referenceFile, 'utf8') : undefined;
      if (saved !== undefined && this.state() === saved) {
        this.reference = saved;
        return { action: 'kept' };
      }
    } catch (e) {
      return { action: 'failed', detail: (e as Error).message };
    }
    const r = this.load(good);
    return r.ok ? { action: 'reloaded' } : { action: 'failed', detail: r.error };
  }

  apply(ruleset: string, meta: { etag: string; version: number; mode: string }): ApplyOutcome {
    const parsed = parseIptablesDocument(ruleset);
    if (!parsed.ok) return { ok: false, error: `refused: ${parsed.error}`, rolledBack: false };
    const t0 = Date.now();
    const before = { files: this.files, applied: this.current };
    let nflog = this.nflogWorks;
    let routed = parsed.files;
    if (nflog) {
      // The rewrite builds prefixes from the rules' comments: what it wrote is checked like what the server sent.
      const again = parseIptablesDocument(`# routed to NFLOG\n${filesDocument(routeIptablesLogsToNflog(parsed.files, this.options.nflogGroup!))}`, { nflog: true });
      if (!again.ok) return { ok: false, error: `refused after routing logs to NFLOG: ${again.error}`, rolledBack: false };
      routed = again.files;
    }
    let r = this.load(routed);
    if (!r.ok && routed !== parsed.files) {
      // The kernel may not have NFLOG (xt_NFLOG), and says so only as "rule failed": the files as sent may still load.
      // This apply goes without NFLOG; the next one tries it again (the failure may have been passing).
      const plain = this.load(parsed.files);
      if (plain.ok) {
        nflog = false;
        r = plain;
      }
    }
    if (!r.ok) return r;
    this.previous = before;
    this.current = { ...meta, at: Date.now(), nflog, backend: 'iptables' };
    recordApplied(this.appliedFile, this.current, 'iptables');
    return { ok: true, changed: r.changed, ms: Date.now() - t0, nflog };
  }

  revert(): { ok: true; applied: Applied | undefined } | { ok: false; error: string } {
    const prev = this.previous;
    if (!prev) return { ok: false, error: 'nothing to go back to' };
    if (prev.files) {
      const r = this.load(prev.files);
      if (!r.ok) return { ok: false, error: r.error };
    } else {
      const r = iptablesRemove({ netns: this.options.netns });
      if (!r.ok) return { ok: false, error: `${r.step}: ${r.error}` };
      // Nothing is loaded now, as before: no last known good to restore at the next start.
      iptablesForgetLastKnownGood(this.dir);
      rmSync(this.referenceFile, { force: true });
      this.files = undefined;
      this.reference = undefined;
    }
    this.previous = undefined;
    this.current = prev.applied;
    recordApplied(this.appliedFile, prev.applied, 'iptables');
    return { ok: true, applied: prev.applied };
  }

  checkDrift(): DriftCheck {
    if (this.reference === undefined || this.files === undefined) return { drifted: false };
    // A tool that fails here throws: the agent logs it as a failed check (drift-check) and tries again later.
    const now = this.state();
    if (now === this.reference) return { drifted: false };
    const detail = describeDrift(this.reference, now === '' ? undefined : now);
    const r = this.load(this.files);
    return r.ok ? { drifted: true, detail, repaired: true } : { drifted: true, detail, repaired: false, error: r.error };
  }

  counters(): RuleCounter[] {
    const out: RuleCounter[] = [];
    for (const bin of ['iptables-save', 'ip6tables-save']) {
      const argv = this.options.netns ? ['ip', 'netns', 'exec', this.options.netns, bin, '-c', '-t', 'filter'] : [bin, '-c', '-t', 'filter'];
      const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
      if (r.status === 0) out.push(...iptablesCounters(r.stdout));
    }
    return out;
  }

  private state(): string {
    return iptablesState({ netns: this.options.netns });
  }

  /** Loads files with a way back; never throws (a tool that cannot run is a failed load). */
  private load(files: IptablesFiles): { ok: true; changed: boolean } | { ok: false; error: string; rolledBack: boolean } {
    try {
      // A failed load goes back to what was applied (not to what is loaded: someone's additions since would stay).
      const { result: r, state } = iptablesApplyAndRead(files, { netns: this.options.netns, stateDir: this.dir, rollbackTo: this.files });
      if (!r.ok) {
        if (r.rolledBack) this.reference = state;
        return r;
      }
      this.files = files;
      this.reference = state;
      writeAtomic(this.referenceFile, this.reference);
      return r;
    } catch (e) {
      return { ok: false, error: (e as Error).message, rolledBack: false };
    }
  }
}
