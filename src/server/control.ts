/**
 * The control plane's state and the operations that change it: the one
 * object route handlers work on. Every change runs in one SQLite transaction
 * together with its audit entry; what agents enforce (the generation) is
 * rebuilt after a change to the active version or the break-glass set.
 */
import { randomBytes } from 'node:crypto';
import { formatPrefix, IpSet, type Prefix } from '../netset/ip.js';
import { Evaluator } from '../engine/evaluate.js';
import type { Failsafe } from '../compile/nftables.js';
import type { Compiled, LoadResult } from '../policy/index.js';
import type { FlowStore } from '../store/flows.js';
import { SyslogSink, WebhookSink, type Alert, type Sink } from './alerts.js';
import { AuditLog } from './audit.js';
import { Tokens, type Principal } from './auth.js';
import type { Db } from './db.js';
import { ApiError } from './http.js';
import { apiDiagnostic, compileDoc, loadDoc, PolicyStore, type ApiDiagnostic, type PolicyDoc } from './policy.js';
import { AgentPolicies, Generation, TextCache } from './rulesets.js';
import { FlowIngest, violationAlert } from './telemetry.js';

/** The settings the control plane runs with (see startServer). */
export interface ControlOptions {
  readonly failsafe: Failsafe;
  readonly pollSeconds: number;
  readonly commitMs: number;
  readonly alertIntervalMs: number;
  readonly textCacheBytes: number;
  /** Days of violations kept (older hours are removed by {@link ControlPlane.maintain}); undefined: all. */
  readonly violationRetentionDays?: number;
  readonly log: (line: string) => void;
}

/** A break-glass row. */
export interface BreakGlassRow {
  id: string;
  rule: string;
  reason: string;
  created_by: string;
  created_at: number;
  expires_at: number;
  ended_at: number | null;
  ended_by: string | null;
  end_reason: string | null;
}

/** The system's own principal, for entries nobody asked for (expiry). */
export const SYSTEM: Principal = { tokenId: '-', name: 'system', role: 'admin' };

export class ControlPlane {
  readonly tokens: Tokens;
  readonly audit: AuditLog;
  readonly policy: PolicyStore;
  readonly agents: AgentPolicies;
  readonly ingest: FlowIngest;
  readonly sinks = new Map<string, Sink>();
  private genCounter = 0;
  /** The active version as loaded (no overrides of break-glass), kept for {@link compileActive}. */
  private activeLoad?: { version: number; loaded: LoadResult };
  private nextExpiry = Infinity;
  private expiryTimer?: ReturnType<typeof setTimeout>;
  private alertTimer?: ReturnType<typeof setInterval>;
  private maintenanceTimer?: ReturnType<typeof setInterval>;
  private maintenanceStart?: ReturnType<typeof setTimeout>;
  private pendingAlerts = new Map<string, { app: string; rule: string; verdict: string; count: number; workloads: Set<string> }>();
  private readonly evaluators = new WeakMap<Generation, Evaluator>();
  private readonly addressCache = new WeakMap<Generation, Map<string, IpSet>>();
  private readonly failsafeKey: string;

  constructor(
    readonly db: Db,
    readonly store: FlowStore,
    readonly o: ControlOptions,
  ) {
    this.tokens = new Tokens(db);
    this.audit = new AuditLog(db);
    this.policy = new PolicyStore(db);
    this.failsafeKey = JSON.stringify({
      cp: (o.failsafe.controlPlane ?? []).map(formatPrefix),
      mgmt: (o.failsafe.managementPrefixes ?? []).map(formatPrefix),
      ports: o.failsafe.managementPorts ?? [],
    });
    this.agents = new AgentPolicies(new Generation(0, 0, [], undefined, this.failsafeKey), new TextCache(o.textCacheBytes, o.failsafe), o.log);
    this.ingest = new FlowIngest(store, db, { commitMs: o.commitMs, onViolations: (vs) => this.queueViolations(vs) });
    for (const r of db.prepare('SELECT id, kind, config FROM sinks').all() as { id: string; kind: string; config: string }[]) this.openSink(r.id, r.kind, JSON.parse(r.config));
    this.alertTimer = setInterval(() => this.flushAlerts(), o.alertIntervalMs);
    this.alertTimer.unref();
    this.rebuild();
    // Retention, hourly (and soon after start).
    const maintain = () => void this.maintain().catch((e: Error) => this.o.log(`retention failed: ${e.message}`));
    this.maintenanceTimer = setInterval(maintain, MAINTENANCE_MS);
    this.maintenanceTimer.unref();
    this.maintenanceStart = setTimeout(maintain, 5000);
    this.maintenanceStart.unref();
  }

  /**
   * Removes what retention says is old: flows and edges by the flow store's
   * retention (`setRetentionDays`), violations older than
   * `violationRetentionDays`. Logs what it removed.
   */
  async maintain(now = Date.now()): Promise<{ flowsDeleted: number; edgesDeleted: number; violationsDeleted: number }> {
    // Violations first: they live in the state file and go even when the flow store cannot answer.
    let violationsDeleted = 0;
    const days = this.o.violationRetentionDays;
    if (days !== undefined) violationsDeleted = this.db.prepare('DELETE FROM violations WHERE bucket < ?').run(now - days * 86400000).changes;
    const r = await this.store.applyRetention(now).catch((e: Error) => {
      this.o.log(`retention of flows failed: ${e.message}`);
      return undefined;
    });
    const out = { flowsDeleted: r?.flowsDeleted ?? 0, edgesDeleted: r?.edgesDeleted ?? 0, violationsDeleted };
    if (out.flowsDeleted + out.edgesDeleted + out.violationsDeleted > 0) {
      this.o.log(`retention: removed ${out.flowsDeleted} flows, ${out.edgesDeleted} edges, ${out.violationsDeleted} violation rows`);
    }
    return out;
  }

  /** Runs `fn` in one transaction (with its audit entries); the audit head is restored if it fails. */
  tx<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn)();
    } catch (e) {
      this.audit.reload();
      throw e;
    }
  }

  /** Appends an audit entry (inside {@link tx}). */
  record(who: Principal, action: string, target: string | null, detail: unknown = {}): void {
    this.audit.append({ actor: who.name === 'system' ? 'system' : `${who.name} (${who.tokenId})`, role: who.role, action, target, detail });
  }

  /** The generation agents enforce now, after expiring what is due (the check at read time). */
  generation(now = Date.now()): Generation {
    if (now >= this.nextExpiry) this.expire(now);
    return this.agents.current;
  }

  // ---------------------------------------------------------------- generations

  /** The live break-glass overrides as override items of the policy language. */
  liveBreakglass(now = Date.now()): { row: BreakGlassRow; item: Record<string, unknown> }[] {
    const rows = this.db.prepare('SELECT * FROM breakglass WHERE ended_at IS NULL AND expires_at > ? ORDER BY created_at, id').all(now) as BreakGlassRow[];
    return rows.map((row) => ({ row, item: breakglassItem(row) }));
  }

  /**
   * Compiles the active version with the live break-glass overrides (and
   * `extra`, first). The version's load is kept: only the overrides are
   * loaded again, so a break-glass costs the IR, not a reload.
   */
  compileActive(now: number, extra: Record<string, unknown>[] = []): { version: number; compiled?: Compiled; breakglass: string[] } {
    const active = this.policy.active();
    const live = this.liveBreakglass(now);
    if (!active) return { version: 0, breakglass: [] };
    const items = [...live.map((l) => l.item), ...extra];
    if (this.activeLoad?.version !== active.version) this.activeLoad = { version: active.version, loaded: loadDoc(active.doc, now) };
    return { version: active.version, compiled: compileDoc(active.doc, { now, overrides: items, base: this.activeLoad.loaded }), breakglass: live.map((l) => l.row.id) };
  }

  /** Makes a new generation (from `prepared`, or compiled now) and wakes the agents it changes. */
  rebuild(prepared?: { version: number; compiled?: Compiled; breakglass: string[] }, now = Date.now()): Generation {
    const t0 = performance.now();
    const p = prepared ?? this.compileActive(now);
    const gen = new Generation(++this.genCounter, p.version, p.breakglass, p.compiled, this.failsafeKey);
    this.agents.activate(gen);
    this.scheduleExpiry(now);
    if (p.compiled) this.o.log(`generation ${gen.id}: version ${p.version}${p.breakglass.length ? ` + ${p.breakglass.length} break-glass` : ''}, ${p.compiled.ir.workloads.length} workloads (${Math.round(performance.now() - t0)} ms)`);
    return gen;
  }

  /** Arms the timer for the next break-glass or override expiry. */
  private scheduleExpiry(now: number): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    let next = Infinity;
    const bg = this.db.prepare('SELECT MIN(expires_at) AS t FROM breakglass WHERE ended_at IS NULL').get() as { t: number | null };
    if (bg.t !== null) next = bg.t;
    const active = this.policy.active();
    const overrides = active?.doc.overrides;
    if (Array.isArray(overrides)) {
      for (const o of overrides) {
        const e = (o as { expires?: unknown })?.expires;
        const t = typeof e === 'string' ? Date.parse(e) : NaN;
        if (t > now && t < next) next = t;
      }
    }
    this.nextExpiry = next;
    if (next === Infinity) return;
    this.expiryTimer = setTimeout(() => this.expire(Date.now()), Math.min(2 ** 31 - 1, Math.max(0, next - now + 5)));
    this.expiryTimer.unref();
  }

  /** Ends the break-glass overrides that are due and rebuilds. */
  expire(now: number): void {
    const due = this.db.prepare('SELECT * FROM breakglass WHERE ended_at IS NULL AND expires_at <= ?').all(now) as BreakGlassRow[];
    this.tx(() => {
      for (const r of due) {
        this.db.prepare("UPDATE breakglass SET ended_at = expires_at, ended_by = 'system', end_reason = 'expired' WHERE id = ?").run(r.id);
        this.record(SYSTEM, 'breakglass.expire', r.id, { expiresAt: new Date(r.expires_at).toISOString(), reason: r.reason, createdBy: r.created_by });
      }
    });
    for (const r of due) this.alert({ kind: 'breakglass.expired', severity: 5, at: now, message: `break-glass ${r.id} expired (${r.reason})`, fields: { id: r.id, by: r.created_by } });
    this.rebuild(undefined, now);
  }

  // ---------------------------------------------------------------- provisioning

  /** Provisions a document as a new active version, or 422 with the diagnostics. */
  provision(who: Principal, doc: PolicyDoc, o: { message: string; rollbackOf?: number; draftRevision?: number; action: string }): { version: number; digest: string; warnings: ApiDiagnostic[] } {
    const now = Date.now();
    const checked = compileDoc(doc, { now });
    if (checked.diagnostics.hasErrors()) {
      const items = checked.diagnostics.items.filter((d) => d.severity === 'error').map(apiDiagnostic);
      throw new ApiError(422, 'policy-errors', `the policy has ${items.length} error${items.length === 1 ? '' : 's'}; nothing was provisioned`, items.slice(0, 500));
    }
    const info = this.tx(() => {
      const v = this.policy.add({ doc, message: o.message, by: who.name, rollbackOf: o.rollbackOf, draftRevision: o.draftRevision, at: now });
      this.record(who, o.action, `version/${v.version}`, { version: v.version, digest: v.digest, message: o.message, ...(o.rollbackOf !== undefined ? { rollbackOf: o.rollbackOf } : {}), ...(o.draftRevision !== undefined ? { draftRevision: o.draftRevision } : {}) });
      return v;
    });
    this.activeLoad = { version: info.version, loaded: checked.loaded };
    const live = this.liveBreakglass(now);
    this.rebuild(live.length === 0 ? { version: info.version, compiled: checked, breakglass: [] } : undefined, now);
    return { version: info.version, digest: info.digest, warnings: checked.diagnostics.items.filter((d) => d.severity === 'warning').map(apiDiagnostic).slice(0, 100) };
  }

  // ---------------------------------------------------------------- break-glass

  createBreakglass(who: Principal, b: { from: unknown; to: unknown; services: unknown; action: string; reason: string; ttlSeconds: number }): BreakGlassRow {
    const now = Date.now();
    if (this.policy.activeVersion() === 0) throw new ApiError(409, 'no-active-version', 'there is no active version to break glass on: provision one first');
    const id = 'bg-' + randomBytes(4).toString('hex');
    const row: BreakGlassRow = { id, rule: JSON.stringify({ from: b.from, to: b.to, services: b.services, action: b.action }), reason: b.reason, created_by: who.name, created_at: now, expires_at: now + b.ttlSeconds * 1000, ended_at: null, ended_by: null, end_reason: null };
    const prepared = this.compileActive(now, [breakglassItem(row)]);
    const errors = prepared.compiled!.diagnostics.items.filter((d) => d.severity === 'error' && d.loc?.file.startsWith('/breakglass')).map(apiDiagnostic);
    if (errors.length > 0) throw new ApiError(422, 'policy-errors', 'the break-glass rule has errors', errors);
    this.tx(() => {
      this.db
        .prepare('INSERT INTO breakglass (id, rule, reason, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(row.id, row.rule, row.reason, row.created_by, row.created_at, row.expires_at);
      this.record(who, 'breakglass.create', id, { rule: JSON.parse(row.rule), reason: b.reason, expiresAt: new Date(row.expires_at).toISOString() });
    });
    this.rebuild({ ...prepared, breakglass: [...prepared.breakglass, id] }, now);
    this.alert({ kind: 'breakglass.created', severity: 4, at: now, message: `break-glass ${id} by ${who.name} until ${new Date(row.expires_at).toISOString()}: ${b.reason}`, fields: { id, by: who.name, expires: new Date(row.expires_at).toISOString() } });
    return row;
  }

  endBreakglass(who: Principal, id: string): BreakGlassRow {
    const now = Date.now();
    const row = this.db.prepare('SELECT * FROM breakglass WHERE id = ?').get(id) as BreakGlassRow | undefined;
    if (!row) throw new ApiError(404, 'not-found', `no break-glass \`${id}\``);
    if (row.ended_at !== null || row.expires_at <= now) throw new ApiError(409, 'conflict', `break-glass \`${id}\` has already ended`);
    this.tx(() => {
      this.db.prepare("UPDATE breakglass SET ended_at = ?, ended_by = ?, end_reason = 'ended' WHERE id = ?").run(now, who.name, id);
      this.record(who, 'breakglass.end', id, { reason: row.reason });
    });
    this.rebuild(undefined, now);
    this.alert({ kind: 'breakglass.ended', severity: 5, at: now, message: `break-glass ${id} ended by ${who.name}`, fields: { id, by: who.name } });
    return { ...row, ended_at: now, ended_by: who.name, end_reason: 'ended' };
  }

  // ---------------------------------------------------------------- reading the generation

  /** The evaluator of the current generation (built once per generation). */
  evaluator(gen: Generation): Evaluator {
    let e = this.evaluators.get(gen);
    if (!e) {
      if (!gen.compiled) throw new ApiError(409, 'no-active-version', 'there is no active version yet');
      e = new Evaluator(gen.compiled.ir);
      this.evaluators.set(gen, e);
    }
    return e;
  }

  /** A workload's addresses in a generation (empty when it is not in the policy). */
  addresses(gen: Generation, workload: string): IpSet {
    let m = this.addressCache.get(gen);
    if (!m) this.addressCache.set(gen, (m = new Map()));
    let s = m.get(workload);
    if (!s) {
      const i = gen.workloadIndex(workload);
      s = i === undefined ? IpSet.EMPTY : IpSet.fromPrefixes(gen.compiled!.ir.workloads[i].addresses as Prefix[]);
      m.set(workload, s);
    }
    return s;
  }

  // ---------------------------------------------------------------- alerts

  openSink(id: string, kind: string, config: Record<string, unknown>): Sink {
    const sink =
      kind === 'webhook'
        ? new WebhookSink(id, { url: String(config.url), secret: config.secret as string | undefined })
        : new SyslogSink(id, { host: String(config.host), port: Number(config.port), facility: Number(config.facility ?? 16) });
    this.sinks.get(id)?.close();
    this.sinks.set(id, sink);
    return sink;
  }

  closeSink(id: string): void {
    this.sinks.get(id)?.close();
    this.sinks.delete(id);
  }

  alert(a: Alert): void {
    for (const s of this.sinks.values()) s.send(a);
  }

  private queueViolations(vs: { app: string; rule: string; verdict: string; count: number; workloads: string[] }[]): void {
    for (const v of vs) {
      const k = `${v.app}\0${v.rule}\0${v.verdict}`;
      let p = this.pendingAlerts.get(k);
      if (!p) this.pendingAlerts.set(k, (p = { app: v.app, rule: v.rule, verdict: v.verdict, count: 0, workloads: new Set() }));
      p.count += v.count;
      for (const w of v.workloads) p.workloads.add(w);
    }
  }

  /** Sends the violations gathered since the last flush, one alert per app, rule and verdict. */
  flushAlerts(now = Date.now()): void {
    if (this.pendingAlerts.size === 0) return;
    const all = [...this.pendingAlerts.values()];
    this.pendingAlerts = new Map();
    if (this.sinks.size === 0) return;
    for (const p of all) this.alert(violationAlert({ ...p, workloads: [...p.workloads].sort() }, now));
  }

  async close(): Promise<void> {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    if (this.alertTimer) clearInterval(this.alertTimer);
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    if (this.maintenanceStart) clearTimeout(this.maintenanceStart);
    this.agents.closeAll();
    await this.ingest.close();
    this.flushAlerts();
    await Promise.all([...this.sinks.values()].map((s) => s.drain(2000)));
    for (const s of this.sinks.values()) s.close();
  }
}

const MAINTENANCE_MS = 3600_000;

/** A break-glass row as an override item of the policy language (first in the override tier). */
export function breakglassItem(row: BreakGlassRow): Record<string, unknown> {
  const rule = JSON.parse(row.rule) as Record<string, unknown>;
  return { id: row.id, ...rule, expires: new Date(row.expires_at).toISOString(), reason: row.reason, owner: row.created_by };
}
