/**
 * The weekly review: what changed (versions, break-glass), what was blocked
 * or would have been (violations per app and rule), how the agents are, and
 * whether the audit chain holds. JSON, or Markdown for a ticket or an email.
 */
import type { ControlPlane } from './control.js';
import { violationsReport } from './telemetry.js';
import { isCurrent } from './rulesets.js';

const WEEK = 7 * 86400000;

export interface WeeklyReport {
  readonly period: { since: string; until: string };
  readonly activeVersion: number;
  readonly versions: { version: number; createdAt: string; createdBy: string; message: string; rollbackOf?: number }[];
  readonly breakglass: { id: string; createdBy: string; reason: string; createdAt: string; expiresAt: string; ended?: string; endReason?: string }[];
  readonly violations: ReturnType<typeof violationsReport>;
  readonly agents: { total: number; revoked: number; stale: number; applyFailures: number; driftRepairs: number; notCurrent: number };
  readonly flows: { stored: number; first?: string; last?: string };
  readonly audit: { ok: boolean; entries: number; head: string; brokenAt?: number; reason?: string };
}

/** Builds the report for the week ending at `until`. */
export async function weeklyReport(cp: ControlPlane, until = Date.now()): Promise<WeeklyReport> {
  const since = until - WEEK;
  const versions = cp.policy
    .list()
    .filter((v) => Date.parse(v.createdAt) >= since && Date.parse(v.createdAt) < until)
    .map((v) => ({ version: v.version, createdAt: v.createdAt, createdBy: v.createdBy, message: v.message, ...(v.rollbackOf !== undefined ? { rollbackOf: v.rollbackOf } : {}) }));
  const bg = cp.db.prepare('SELECT * FROM breakglass WHERE created_at < ? AND (ended_at IS NULL OR ended_at >= ?) ORDER BY created_at').all(until, since) as {
    id: string;
    created_by: string;
    reason: string;
    created_at: number;
    expires_at: number;
    ended_at: number | null;
    end_reason: string | null;
  }[];
  const gen = cp.generation();
  const pollMs = cp.o.pollSeconds * 1000;
  const agents = cp.db.prepare('SELECT id, workload, revoked_at, last_seen, applied_etag FROM agents').all() as { id: string; workload: string; revoked_at: number | null; last_seen: number | null; applied_etag: string | null }[];
  const live = agents.filter((a) => a.revoked_at === null);
  const events = cp.db.prepare('SELECT kind, COUNT(*) AS n FROM agent_events WHERE at >= ? AND at < ? GROUP BY kind').all(since, until) as { kind: string; n: number }[];
  const count = (k: string) => events.find((e) => e.kind === k)?.n ?? 0;
  const stats = await cp.store.stats();
  const audit = cp.audit.verify();
  return {
    period: { since: new Date(since).toISOString(), until: new Date(until).toISOString() },
    activeVersion: gen.version,
    versions,
    breakglass: bg.map((b) => ({
      id: b.id,
      createdBy: b.created_by,
      reason: b.reason,
      createdAt: new Date(b.created_at).toISOString(),
      expiresAt: new Date(b.expires_at).toISOString(),
      ...(b.ended_at !== null ? { ended: new Date(b.ended_at).toISOString(), endReason: b.end_reason ?? undefined } : {}),
    })),
    violations: violationsReport(cp.db, { since, until, limit: 50 }),
    agents: {
      total: live.length,
      revoked: agents.length - live.length,
      stale: live.filter((a) => a.last_seen === null || until - a.last_seen > 3 * pollMs).length,
      applyFailures: count('apply-failed'),
      driftRepairs: count('drift-repaired'),
      notCurrent: live.filter((a) => !isCurrent(gen.entry(a.workload), a.applied_etag)).length,
    },
    flows: { stored: stats.flows, ...(stats.first !== undefined ? { first: new Date(stats.first).toISOString(), last: new Date(stats.last!).toISOString() } : {}) },
    audit: { ok: audit.ok, entries: audit.entries, head: audit.head, ...(audit.brokenAt !== undefined ? { brokenAt: audit.brokenAt, reason: audit.reason } : {}) },
  };
}

const cell = (s: string | number) => String(s).replace(/\|/g, '\\|').replace(/\n/g, ' ');

function table(rows: (string | number)[][]): string {
  const [head, ...body] = rows;
  return [`| ${head.map(cell).join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...body.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

/** The report as Markdown. */
export function weeklyMarkdown(r: WeeklyReport): string {
  const out: string[] = [];
  out.push(`# bulkhead weekly review`, '', `${r.period.since} to ${r.period.until}; active version ${r.activeVersion}.`, '');
  out.push('## Policy changes', '');
  out.push(r.versions.length === 0 ? 'No version was provisioned.' : table([['version', 'when', 'who', 'message'], ...r.versions.map((v) => [v.version, v.createdAt, v.createdBy, v.message + (v.rollbackOf !== undefined ? ` (rollback to ${v.rollbackOf})` : '')])]));
  out.push('', '## Break-glass', '');
  out.push(r.breakglass.length === 0 ? 'No break-glass override was used.' : table([['id', 'who', 'why', 'from', 'until', 'ended'], ...r.breakglass.map((b) => [b.id, b.createdBy, b.reason, b.createdAt, b.expiresAt, b.ended ? `${b.ended} (${b.endReason})` : 'live'])]));
  out.push('', '## Violations', '');
  out.push(
    r.violations.length === 0
      ? 'No blocked or potentially blocked flow was reported.'
      : table([['app', 'rule', 'verdict', 'flows', 'workloads', 'top pair'], ...r.violations.map((v) => [v.app, v.rule, v.verdict, v.count, v.workloads, v.top[0] ? `${v.top[0].src} -> ${v.top[0].dst} ${v.top[0].port}/${v.top[0].proto}` : ''])]),
  );
  out.push('', '## Agents', '');
  out.push(`${r.agents.total} agents (${r.agents.revoked} revoked): ${r.agents.stale} not seen lately, ${r.agents.notCurrent} not on their current ruleset; ${r.agents.applyFailures} failed applies and ${r.agents.driftRepairs} drift repairs this week.`);
  out.push('', '## Flows', '', `${r.flows.stored} flow records in the store${r.flows.first ? `, ${r.flows.first} to ${r.flows.last}` : ''}.`);
  out.push('', '## Audit', '', r.audit.ok ? `The audit chain holds: ${r.audit.entries} entries, head \`${r.audit.head}\`.` : `**The audit chain is broken at entry ${r.audit.brokenAt}**: ${r.audit.reason}.`, '');
  return out.join('\n');
}
