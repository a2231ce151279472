/**
 * The policy as the server keeps it: one draft document (the section shape of
 * docs/POLICY.md, as JSON), immutable versions made by provisioning it, and
 * the checks that the CLI's loader runs on both.
 *
 * Diagnostics of a JSON document point into it with a JSON pointer
 * (`/rulesets/2/rules/0/from/1`), carried in the diagnostic's `file`.
 */
import { createHash } from 'node:crypto';
import { Diagnostics, type Diagnostic } from '../model/diagnostic.js';
import { parseSelector, type SelectorNode } from '../model/selector.js';
import { compileLoaded, compilePolicy, extendPolicy, loadPolicy, type Compiled, type LoadResult } from '../policy/index.js';
import { SECTIONS, type SectionName } from '../policy/schema.js';
import type { Path, SourceDoc } from '../policy/source.js';
import { canonicalJson } from './audit.js';
import type { Db } from './db.js';
import { badRequest, conflict, forbidden, notFound, zodDetails } from './http.js';

export const SECTION_NAMES = Object.keys(SECTIONS) as SectionName[];

/** A policy document: sections by name. */
export type PolicyDoc = Partial<Record<SectionName, unknown>>;

/** A JSON pointer for a path in a document (`~` and `/` escaped). */
export function pointer(base: string, path: Path): string {
  let out = base;
  for (const p of path) {
    const s = String(p);
    // Most segments are indexes and plain names: escaped only when they hold `~` or `/`.
    out += '/' + (s.includes('~') || s.includes('/') ? s.replace(/~/g, '~0').replace(/\//g, '~1') : s);
  }
  return out;
}

/** A document made from JSON: diagnostics locate by JSON pointer, under `base` (`` for the draft). */
export function jsonDoc(base: string, data: unknown): SourceDoc {
  return { file: base || '/', data, locate: (path) => ({ file: pointer(base, path) || '/', line: 0, col: 0 }) };
}

/** A diagnostic as the API shows it: code, severity, message, the JSON pointer into the document, help. */
export interface ApiDiagnostic {
  readonly code: string;
  readonly severity: string;
  readonly message: string;
  readonly path?: string;
  readonly help?: string;
}

export function apiDiagnostic(d: Diagnostic): ApiDiagnostic {
  return { code: d.code, severity: d.severity, message: d.message, ...(d.loc ? { path: d.loc.file } : {}), ...(d.help ? { help: d.help } : {}) };
}

/**
 * Compiles a document with the CLI's loader, after the given override items
 * (break-glass: they come first in the override tier). `now` judges expiry.
 * With `base` (the document as loaded before: {@link Compiled.loaded}), only
 * the override items are loaded, on top of it.
 */
export function compileDoc(doc: PolicyDoc, o: { now: number; overrides?: readonly unknown[]; base?: LoadResult } = { now: Date.now() }): Compiled {
  const extra = o.overrides && o.overrides.length > 0 ? [jsonDoc('/breakglass', { overrides: o.overrides })] : [];
  if (o.base) {
    const t0 = performance.now();
    const loaded = extendPolicy(o.base, extra, { now: new Date(o.now) });
    return compileLoaded(loaded, performance.now() - t0);
  }
  return compilePolicy({ docs: [...extra, jsonDoc('', doc)] }, { now: new Date(o.now), diagnostics: new Diagnostics() });
}

/** Loads a document (no IR): a base for {@link compileDoc}. */
export function loadDoc(doc: PolicyDoc, now: number): LoadResult {
  return loadPolicy({ docs: [jsonDoc('', doc)] }, { now: new Date(now) });
}

/** `sha256:` and the hex digest of the document's canonical JSON. */
export function digestOf(doc: PolicyDoc): string {
  return 'sha256:' + createHash('sha256').update(canonicalJson(doc)).digest('hex');
}

/**
 * Checks the shape of a whole document or one section with the policy's own
 * schemas (400 with every problem). Semantic checks wait for provisioning.
 */
export function checkShape(doc: unknown): PolicyDoc {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw badRequest('a policy document is an object of sections');
  const problems: { path: string; message: string }[] = [];
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (!(SECTION_NAMES as string[]).includes(key)) {
      problems.push({ path: '/' + key, message: `unknown section \`${key}\`; sections are ${SECTION_NAMES.join(', ')}` });
      continue;
    }
    problems.push(...sectionProblems(key as SectionName, value));
  }
  if (problems.length > 0) throw badRequest('the policy document is not valid', problems.slice(0, 100));
  return doc as PolicyDoc;
}

function sectionProblems(name: SectionName, value: unknown): { path: string; message: string }[] {
  if (value === null || value === undefined) return [];
  const spec = SECTIONS[name];
  if (name === 'inventory') return [{ path: '/inventory', message: 'inventory files cannot be read by the server: put the workloads in the `workloads` section' }];
  if (spec.kind === 'whole') {
    const r = spec.schema.safeParse(value);
    return r.success ? [] : zodDetails(r.error.issues).map((d) => ({ ...d, path: '/' + name + (d.path === '/' ? '' : d.path) }));
  }
  if (!Array.isArray(value)) return [{ path: '/' + name, message: `\`${name}\` is a list` }];
  const out: { path: string; message: string }[] = [];
  value.forEach((v, i) => {
    const r = spec.schema.safeParse(v);
    if (!r.success) out.push(...zodDetails(r.error.issues).map((d) => ({ ...d, path: `/${name}/${i}` + (d.path === '/' ? '' : d.path) })));
  });
  return out;
}

/** Checks one section's value. */
export function checkSection(name: SectionName, value: unknown): void {
  const problems = sectionProblems(name, value);
  if (problems.length > 0) throw badRequest(`the section \`${name}\` is not valid`, problems.slice(0, 100));
}

// ---------------------------------------------------------------- app owners

/** Whether a selector pins `app == '<app>'`: every label set it matches has that app. */
export function pinsApp(source: string, app: string): boolean {
  const r = parseSelector(source);
  if (!r.ok) return false;
  return pinned(r.selector.ast, app);
}

function pinned(n: SelectorNode, app: string): boolean {
  switch (n.kind) {
    case 'eq':
      return n.label === 'app' && n.value === app;
    case 'in':
      return n.label === 'app' && n.values.length === 1 && n.values[0] === app;
    case 'and':
      return n.exprs.some((e) => pinned(e, app));
    case 'or':
      return n.exprs.every((e) => pinned(e, app));
    default:
      return false;
  }
}

/**
 * What an app owner may write: a ruleset whose scope pins its app, whose
 * allow rules only let traffic into its app (every `to` peer is a selector
 * within the scope, or a workload of its app). Deny rules may name anything:
 * they only take access away. Otherwise a rule in one app's ruleset could
 * open another app's ingress (a rule speaks for both ends).
 */
export function checkAppOwnerRuleset(ruleset: unknown, app: string, workloads: readonly unknown[]): void {
  const rs = ruleset as { name?: unknown; scope?: unknown; rules?: unknown };
  const scope = typeof rs.scope === 'string' ? rs.scope : 'all()';
  if (!pinsApp(scope, app)) throw forbidden(`an app owner of \`${app}\` may only write rulesets whose scope pins \`app == '${app}'\`, not \`${scope}\``);
  const appOf = new Map<string, unknown>();
  for (const w of workloads) {
    const x = w as { name?: unknown; labels?: Record<string, unknown> };
    if (typeof x?.name === 'string') appOf.set(x.name, x.labels?.app);
  }
  const rules = Array.isArray(rs.rules) ? rs.rules : [];
  rules.forEach((r, i) => {
    const rule = r as { action?: unknown; to?: unknown };
    if (rule?.action === 'deny') return;
    const to = Array.isArray(rule?.to) ? rule.to : [rule?.to];
    to.forEach((p, j) => {
      const ok =
        (typeof p === 'string' && p.trim() !== 'any') ||
        (typeof p === 'object' && p !== null && 'selector' in p && (p as { global?: unknown }).global !== true) ||
        (typeof p === 'object' && p !== null && 'workload' in p && String(appOf.get(String((p as { workload: unknown }).workload))) === app);
      if (!ok) throw forbidden(`rule ${i + 1} of the ruleset lets traffic in beyond app \`${app}\` (\`/rules/${i}/to/${j}\`): an app owner's allow rules may only name its own workloads as destinations`);
    });
  });
}

// ---------------------------------------------------------------- the store

interface DraftRow {
  revision: number;
  doc: string;
  updated_at: number;
  updated_by: string | null;
}

interface VersionRow {
  version: number;
  digest: string;
  doc: string;
  message: string;
  created_at: number;
  created_by: string;
  rollback_of: number | null;
  draft_revision: number | null;
}

/** A version's summary. */
export interface VersionInfo {
  readonly version: number;
  readonly digest: string;
  readonly message: string;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly rollbackOf?: number;
  readonly draftRevision?: number;
}

function versionInfo(r: Omit<VersionRow, 'doc'>): VersionInfo {
  return {
    version: r.version,
    digest: r.digest,
    message: r.message,
    createdAt: new Date(r.created_at).toISOString(),
    createdBy: r.created_by,
    ...(r.rollback_of !== null ? { rollbackOf: r.rollback_of } : {}),
    ...(r.draft_revision !== null ? { draftRevision: r.draft_revision } : {}),
  };
}

/** The draft and the versions in the state file. */
export class PolicyStore {
  /** The active version's document, parsed (see {@link active}). */
  private activeDoc?: { version: number; digest: string; doc: PolicyDoc };

  constructor(private readonly db: Db) {
    if (!db.prepare('SELECT 1 FROM draft').get()) db.prepare('INSERT INTO draft (id, revision, doc, updated_at) VALUES (1, 0, ?, ?)').run('{}', Date.now());
  }

  draft(): { doc: PolicyDoc; revision: number; updatedAt: string; updatedBy: string | null } {
    const r = this.db.prepare('SELECT revision, doc, updated_at, updated_by FROM draft WHERE id = 1').get() as DraftRow;
    return { doc: JSON.parse(r.doc) as PolicyDoc, revision: r.revision, updatedAt: new Date(r.updated_at).toISOString(), updatedBy: r.updated_by };
  }

  /** Replaces the draft when `ifMatch` (if given) is its revision; returns the new revision. */
  setDraft(doc: PolicyDoc, by: string, ifMatch?: number): number {
    const cur = this.db.prepare('SELECT revision FROM draft WHERE id = 1').get() as { revision: number };
    if (ifMatch !== undefined && ifMatch !== cur.revision) throw new PreconditionFailed(cur.revision);
    const revision = cur.revision + 1;
    this.db.prepare('UPDATE draft SET revision = ?, doc = ?, updated_at = ?, updated_by = ? WHERE id = 1').run(revision, JSON.stringify(doc), Date.now(), by);
    return revision;
  }

  list(): VersionInfo[] {
    const rows = this.db.prepare('SELECT version, digest, message, created_at, created_by, rollback_of, draft_revision FROM versions ORDER BY version DESC').all() as VersionRow[];
    return rows.map(versionInfo);
  }

  get(version: number): (VersionInfo & { doc: PolicyDoc }) | undefined {
    const r = this.db.prepare('SELECT * FROM versions WHERE version = ?').get(version) as VersionRow | undefined;
    return r && { ...versionInfo(r), doc: JSON.parse(r.doc) as PolicyDoc };
  }

  /**
   * The active version (the newest: a rollback makes a new one) with its
   * document. Versions are immutable, so the parsed document is kept (the
   * server reads it on every break-glass and expiry): callers must not
   * change it.
   */
  active(): (VersionInfo & { doc: PolicyDoc }) | undefined {
    const r = this.db.prepare('SELECT version, digest, message, created_at, created_by, rollback_of, draft_revision FROM versions ORDER BY version DESC LIMIT 1').get() as Omit<VersionRow, 'doc'> | undefined;
    if (!r) return undefined;
    if (this.activeDoc?.version !== r.version || this.activeDoc.digest !== r.digest) {
      const { doc } = this.db.prepare('SELECT doc FROM versions WHERE version = ?').get(r.version) as { doc: string };
      this.activeDoc = { version: r.version, digest: r.digest, doc: JSON.parse(doc) as PolicyDoc };
    }
    return { ...versionInfo(r), doc: this.activeDoc.doc };
  }

  activeVersion(): number {
    const r = this.db.prepare('SELECT MAX(version) AS v FROM versions').get() as { v: number | null };
    return r.v ?? 0;
  }

  /** Stores a new version; the caller has checked it. */
  add(o: { doc: PolicyDoc; message: string; by: string; rollbackOf?: number; draftRevision?: number; at: number }): VersionInfo {
    const version = this.activeVersion() + 1;
    const digest = digestOf(o.doc);
    this.db
      .prepare('INSERT INTO versions (version, digest, doc, message, created_at, created_by, rollback_of, draft_revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(version, digest, JSON.stringify(o.doc), o.message, o.at, o.by, o.rollbackOf ?? null, o.draftRevision ?? null);
    return versionInfo({ version, digest, message: o.message, created_at: o.at, created_by: o.by, rollback_of: o.rollbackOf ?? null, draft_revision: o.draftRevision ?? null });
  }
}

/** The draft changed since the revision the caller read. */
export class PreconditionFailed extends Error {
  constructor(readonly current: number) {
    super(`the draft is at revision ${current}`);
  }
}

/** Reads an `If-Match` revision (`3`, `"3"` or `W/"3"`); undefined when absent or `*`. */
export function ifMatchRevision(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const v = (Array.isArray(header) ? header[0] : header).trim();
  if (v === '*') return undefined;
  const m = /^(?:W\/)?"?(\d+)"?$/.exec(v);
  if (!m) throw badRequest('If-Match must be the draft revision, such as `"3"`');
  return Number(m[1]);
}

export { conflict, notFound };
