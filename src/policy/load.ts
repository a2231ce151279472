/**
 * The loader: source documents in, the checked policy model out, with every
 * problem reported at once. Pure: adapters read the files (src/adapters/).
 *
 * Passes, in order: sections → taxonomy → workloads (YAML, CSV, JSON) →
 * IP lists → services → modes → rulesets and overrides.
 */
import { posix } from 'node:path';
import { ConnSet } from '../netset/connset.js';
import { formatPrefix, IpSet, parsePrefix, type Prefix } from '../netset/ip.js';
import { closest, Diagnostics, q, qList, type Loc } from '../model/diagnostic.js';
import { parseSelector, Selector } from '../model/selector.js';
import type { Dimension, IpList, Mode, ModeRule, Peer, Policy, Rule, RuleService, Service, Taxonomy, Tier, Workload } from '../model/types.js';
import { reportIssues } from './issues.js';
import { parsePortEntry } from './ports.js';
import { RuleSchema, SECTIONS, WorkloadSchema, type RuleInput, type IpListInput, type ModeEntryInput, type OverrideInput, type PeerInput, type PortEntryInput, type RulesetInput, type SectionName, type ServiceInput, type WorkloadInput } from './schema.js';
import { within, type Path, type SourceDoc, type SourceFile } from './source.js';
import { parseInventory } from './inventory.js';

/** What the loader needs: parsed policy documents, and the inventory files they name, read by an adapter. */
export interface PolicySources {
  readonly docs: readonly SourceDoc[];
  /** Inventory files by resolved path: their text, or why they could not be read. */
  readonly files?: ReadonlyMap<string, SourceFile | { error: string }>;
}

export interface LoadOptions {
  /** The time against which override expiry is judged. */
  readonly now?: Date;
}

export interface LoadResult {
  readonly policy: Policy;
  readonly diagnostics: Diagnostics;
}

/** An item of a list section with where it came from. */
interface Item<T> {
  readonly value: T;
  readonly doc: SourceDoc;
  readonly path: Path;
}

interface Sections {
  /** Names of items that failed their shape check: references to them are not reported again. */
  broken: Set<string>;
  taxonomy: Item<Record<string, 'open' | string[]>>[];
  settings: Item<{ defaultMode?: Mode }>[];
  inventory: Item<string>[];
  workloads: Item<WorkloadInput>[];
  iplists: Item<IpListInput>[];
  services: Item<ServiceInput>[];
  modes: Item<ModeEntryInput>[];
  rulesets: Item<Omit<RulesetInput, 'rules'> & { rules: (RuleInput | undefined)[] }>[];
  overrides: Item<OverrideInput>[];
}

const ITEM_WORDS: Record<SectionName, string> = {
  taxonomy: 'the taxonomy',
  settings: 'settings',
  inventory: 'inventory',
  workloads: 'workload',
  iplists: 'IP list',
  services: 'service',
  modes: 'mode entry',
  rulesets: 'ruleset',
  overrides: 'override',
};

/** Splits documents into typed section items, reporting shape problems. */
function readSections(docs: readonly SourceDoc[], diags: Diagnostics): Sections {
  const out: Sections = { broken: new Set(), taxonomy: [], settings: [], inventory: [], workloads: [], iplists: [], services: [], modes: [], rulesets: [], overrides: [] };
  const names = Object.keys(SECTIONS) as SectionName[];
  for (const doc of docs) {
    const data = doc.data;
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      diags.error('BH003', 'expected a map of sections at the top of the document', doc.locate([]), `sections are ${qList(names, 12)}`);
      continue;
    }
    for (const [key, value] of Object.entries(data as Record<string, unknown>)) {
      if (!(key in SECTIONS)) {
        const guess = closest(key, names);
        diags.error('BH002', `unknown section ${q(key)}`, doc.locate([key], true), guess ? `did you mean ${q(guess)}?` : `sections are ${qList(names, 12)}`);
        continue;
      }
      const name = key as SectionName;
      const spec = SECTIONS[name];
      if (value === null || value === undefined) continue;
      if (spec.kind === 'whole') {
        const r = spec.schema.safeParse(value);
        if (!r.success) reportIssues(r.error.issues, { doc, base: [key], data: value, what: ITEM_WORDS[name], schema: spec.schema }, diags);
        else (out[name] as Item<unknown>[]).push({ value: r.data, doc, path: [key] });
        continue;
      }
      if (!Array.isArray(value)) {
        diags.error('BH003', `expected a list for ${q(key)}, found a ${typeof value === 'object' ? 'map' : typeof value}`, doc.locate([key]), `write each item under \`${key}:\` as \`- …\``);
        continue;
      }
      value.forEach((v, i) => {
        const r = spec.schema.safeParse(v);
        if (!r.success) {
          reportIssues(r.error.issues, { doc, base: [key, i], data: v, what: ITEM_WORDS[name], schema: spec.schema }, diags);
          const n = (v as { name?: unknown; id?: unknown } | null)?.name ?? (v as { id?: unknown } | null)?.id;
          if (typeof n === 'string') out.broken.add(n);
          return;
        }
        if (name === 'rulesets') {
          const rs = r.data as RulesetInput;
          const rules: (RuleInput | undefined)[] = [];
          rs.rules.forEach((rv, j) => {
            const rr = RuleSchema.safeParse(rv);
            if (rr.success) rules.push(rr.data);
            else {
              reportIssues(rr.error.issues, { doc, base: [key, i, 'rules', j], data: rv, what: 'rule', schema: RuleSchema }, diags);
              // A rule left out could be an allow or a deny: keep its index so default ids stay stable.
              rules.push(undefined);
              const id = (rv as { id?: unknown } | null)?.id;
              if (typeof id === 'string') out.broken.add(id);
            }
          });
          out.rulesets.push({ value: { ...rs, rules }, doc, path: [key, i] });
          return;
        }
        (out[name] as Item<unknown>[]).push({ value: r.data, doc, path: [key, i] });
      });
    }
  }
  return out;
}

/** Loads and checks a policy. Always returns a policy: items with errors are left out of it. */
export function loadPolicy(sources: PolicySources, options: LoadOptions = {}): LoadResult {
  const diags = new Diagnostics();
  const now = options.now ?? new Date();
  const s = readSections(sources.docs, diags);

  const taxonomy = buildTaxonomy(s.taxonomy, diags);
  const labels = new LabelChecker(taxonomy, diags);

  let defaultMode: Mode = 'enforce';
  for (const it of s.settings) if (it.value.defaultMode) defaultMode = it.value.defaultMode;

  const workloads = buildWorkloads(s, sources.files ?? new Map(), labels, diags);
  const iplists = buildIpLists(s.iplists, diags);
  const services = buildServices(s.services, diags);
  const names = { workloads: new Set(workloads.map((w) => w.name)), iplists, services };
  const modes = buildModes(s.modes, labels, diags);
  const rules = buildRules(s, { names, labels, now, broken: s.broken }, diags);

  return { policy: { taxonomy, defaultMode, workloads, iplists, services, rules, modes }, diagnostics: diags };
}

/**
 * Adds override documents to a policy already loaded, checked against its
 * names and taxonomy, without loading the rest again: the server adds a
 * break-glass override to a version of thousands of workloads this way.
 * `extra` may hold only `overrides` (a caller's mistake otherwise: thrown).
 * The new overrides come first in the override tier, before the base's own,
 * as if their documents came first in {@link loadPolicy}; base rules that
 * expired by `now` are left out, with the warning `loadPolicy` gives. One
 * difference: the base's overrides without an `id` keep theirs
 * (`override/k`), where a full load would number them after the new ones.
 */
export function extendPolicy(base: LoadResult, extra: readonly SourceDoc[], options: LoadOptions = {}): LoadResult {
  const diags = new Diagnostics();
  diags.items.push(...base.diagnostics.items);
  const now = options.now ?? new Date();
  const s = readSections(extra, diags);
  for (const name of Object.keys(ITEM_WORDS) as SectionName[]) {
    if (name !== 'overrides' && s[name].length > 0) throw new Error(`extendPolicy: only overrides can be added to a loaded policy, not ${name}`);
  }
  const p = base.policy;
  const names = { workloads: new Set(p.workloads.map((w) => w.name)), iplists: p.iplists, services: p.services };
  const added = buildRules(s, { names, labels: new LabelChecker(p.taxonomy, diags), now, broken: s.broken }, diags);
  const ids = new Set(p.rules.map((r) => r.id));
  const fresh = added.filter((r) => {
    if (!ids.has(r.id)) return true;
    diags.error('BH201', `rule id ${q(r.id)} is used twice`, r.loc, 'the policy already has a rule with this id; rule ids are unique across the policy');
    return false;
  });
  const shift = s.overrides.length;
  const kept: Rule[] = [];
  for (const r of p.rules) {
    if (r.expires && r.expires.getTime() <= now.getTime()) {
      diags.warning('BH701', `override ${q(r.id)} expired at ${r.expires.toISOString()}`, r.loc, 'it is ignored; remove it, or extend `expires` if it is still needed');
      continue;
    }
    kept.push(r.tier === 'override' && shift > 0 ? { ...r, order: r.order + shift } : r);
  }
  return { policy: { ...p, rules: [...fresh, ...kept] }, diagnostics: diags };
}

/** The inventory files named by `inventory:` sections, resolved against each document's folder. */
export function inventoryRefs(docs: readonly SourceDoc[]): { path: string; loc: Loc }[] {
  const out: { path: string; loc: Loc }[] = [];
  for (const doc of docs) {
    const inv = (doc.data as Record<string, unknown> | null)?.inventory;
    if (!Array.isArray(inv)) continue;
    inv.forEach((p, i) => {
      if (typeof p === 'string') out.push({ path: posix.join(posix.dirname(doc.file), p), loc: doc.locate(['inventory', i]) });
    });
  }
  return out;
}

// ---------------------------------------------------------------- taxonomy

function buildTaxonomy(items: Sections['taxonomy'], diags: Diagnostics): Taxonomy | undefined {
  if (items.length === 0) return undefined;
  const dims = new Map<string, Dimension>();
  for (const it of items) {
    for (const [name, spec] of Object.entries(it.value)) {
      const loc = it.doc.locate([...it.path, name], true);
      if (dims.has(name)) {
        diags.error('BH201', `label dimension ${q(name)} is defined twice`, loc, `the first definition is at ${fmtLoc(dims.get(name)!.loc)}`);
        continue;
      }
      const open = spec === 'open';
      dims.set(name, { name, open, values: new Set(open ? [] : spec), loc });
    }
  }
  return { dimensions: dims };
}

/** Checks label keys and values against the taxonomy. */
class LabelChecker {
  constructor(
    readonly taxonomy: Taxonomy | undefined,
    private readonly diags: Diagnostics,
  ) {}

  /** Reports an unknown key or value; returns whether the label is valid. */
  check(key: string, value: string | undefined, keyLoc: Loc | undefined, valueLoc: Loc | undefined, inSelector: boolean): boolean {
    const dims = this.taxonomy?.dimensions;
    if (!dims) return true;
    const dim = dims.get(key);
    if (!dim) {
      const guess = closest(key, dims.keys());
      this.diags.error('BH101', `unknown label key ${q(key)}`, keyLoc, guess ? `did you mean ${q(guess)}? label keys are ${qList([...dims.keys()], 12)}` : `label keys are ${qList([...dims.keys()], 12)}; add ${q(key)} to the taxonomy to use it`);
      return false;
    }
    if (value === undefined || dim.open || dim.values.has(value)) return true;
    const guess = closest(value, dim.values);
    const message = `unknown value ${q(value)} for label ${q(key)}`;
    const help = (guess ? `did you mean ${q(guess)}? ` : '') + `values of ${q(key)} are ${qList([...dim.values], 10)}`;
    // In a selector an unknown value cannot break anything: it just matches nothing.
    if (inSelector) this.diags.warning('BH102', message, valueLoc, help);
    else this.diags.error('BH102', message, valueLoc, help);
    return false;
  }

  /** Checks every label a selector refers to. */
  checkSelector(sel: Selector, loc: Loc | undefined, source: string): void {
    if (!this.taxonomy) return;
    for (const ref of sel.references()) {
      const keyLoc = loc && within(loc, source, ref.labelSpan[0], ref.labelSpan[1] - ref.labelSpan[0]);
      if (!this.check(ref.label, undefined, keyLoc, keyLoc, true)) continue;
      for (const v of ref.values) {
        const vLoc = loc && within(loc, source, v.span[0], v.span[1] - v.span[0]);
        this.check(ref.label, v.value, keyLoc, vLoc, true);
      }
    }
  }
}

function fmtLoc(loc: Loc | undefined): string {
  return loc ? `${loc.file}:${loc.line}:${loc.col}` : 'another place';
}

// ---------------------------------------------------------------- workloads

/** Parses one address or prefix, reporting problems at `loc`. */
export function parseAddress(text: string, loc: Loc | undefined, diags: Diagnostics): Prefix | undefined {
  const r = parsePrefix(text.trim());
  if ('error' in r) {
    diags.error('BH401', `invalid address ${q(text)}: ${r.error}`, loc, 'write an IPv4 or IPv6 address, or a prefix such as `10.1.0.0/16`');
    return undefined;
  }
  if (r.hostBitsSet) diags.warning('BH402', `prefix ${q(text)} has host bits set`, loc, `it is read as ${q(formatPrefix(r.prefix))}`);
  return r.prefix;
}

function buildWorkloads(s: Sections, files: ReadonlyMap<string, SourceFile | { error: string }>, labels: LabelChecker, diags: Diagnostics): Workload[] {
  const raw: { value: WorkloadInput; locate: (path: Path, key?: boolean) => Loc | undefined }[] = [];
  for (const it of s.workloads) raw.push({ value: it.value, locate: (p, k) => it.doc.locate([...it.path, ...p], k) });
  for (const it of s.inventory) {
    const path = posix.join(posix.dirname(it.doc.file), it.value);
    const loc = it.doc.locate(it.path);
    const file = files.get(path);
    if (!file) {
      diags.error('BH301', `inventory file ${q(it.value)} was not found`, loc, `looked for ${q(path)}`);
      continue;
    }
    if ('error' in file) {
      diags.error('BH302', `cannot read inventory file ${q(it.value)}: ${file.error}`, loc);
      continue;
    }
    for (const row of parseInventory(file, WorkloadSchema, diags)) raw.push(row);
  }

  const byName = new Map<string, Loc | undefined>();
  const byAddr = new Map<string, { name: string; loc: Loc | undefined }>();
  const out: Workload[] = [];
  for (const { value: w, locate } of raw) {
    const loc = locate(['name']);
    if (byName.has(w.name)) {
      diags.error('BH201', `workload ${q(w.name)} is defined twice`, loc, `the first definition is at ${fmtLoc(byName.get(w.name))}`);
      continue;
    }
    byName.set(w.name, loc);
    let ok = true;
    const addresses: Prefix[] = [];
    w.addresses.forEach((a, i) => {
      const aLoc = locate(['addresses', i]);
      const p = parseAddress(a, aLoc, diags);
      if (!p) {
        ok = false;
        return;
      }
      const key = formatPrefix(p);
      const prev = byAddr.get(key);
      if (prev) diags.error('BH403', `address ${q(key)} of workload ${q(w.name)} is already claimed by ${q(prev.name)}`, aLoc, `${q(prev.name)} is defined at ${fmtLoc(prev.loc)}; an address belongs to one workload`);
      else byAddr.set(key, { name: w.name, loc: aLoc });
      addresses.push(p);
    });
    if (addresses.length === 0 && ok) diags.error('BH003', `workload ${q(w.name)} has no address`, locate(['addresses']), 'give at least one address');
    for (const [k, v] of Object.entries(w.labels)) {
      if (!labels.check(k, v, locate(['labels', k], true), locate(['labels', k]), false)) ok = false;
    }
    // A workload whose labels are wrong is still loaded: it keeps its addresses so flows attribute to it.
    out.push({ name: w.name, kind: w.kind, addresses, labels: Object.freeze({ ...w.labels }), managed: w.managed, mode: w.mode, loc });
  }
  return out;
}

// ---------------------------------------------------------------- IP lists and services

function buildIpLists(items: Sections['iplists'], diags: Diagnostics): Map<string, IpList> {
  const out = new Map<string, IpList>();
  for (const it of items) {
    const l = it.value;
    const loc = it.doc.locate([...it.path, 'name']);
    if (out.has(l.name)) {
      diags.error('BH201', `IP list ${q(l.name)} is defined twice`, loc, `the first definition is at ${fmtLoc(out.get(l.name)!.loc)}`);
      continue;
    }
    const collect = (field: 'include' | 'exclude') => IpSet.fromPrefixes(l[field].map((p, i) => parseAddress(p, it.doc.locate([...it.path, field, i]), diags)).filter((p): p is Prefix => p !== undefined));
    out.set(l.name, { name: l.name, set: collect('include').subtract(collect('exclude')), description: l.description, loc });
  }
  return out;
}

function buildServices(items: Sections['services'], diags: Diagnostics): Map<string, Service> {
  const out = new Map<string, Service>();
  for (const it of items) {
    const sv = it.value;
    const loc = it.doc.locate([...it.path, 'name']);
    if (out.has(sv.name)) {
      diags.error('BH201', `service ${q(sv.name)} is defined twice`, loc, `the first definition is at ${fmtLoc(out.get(sv.name)!.loc)}`);
      continue;
    }
    let conns = ConnSet.EMPTY;
    sv.ports.forEach((p, i) => {
      const r = parsePortEntry(p);
      if (r.ok) conns = conns.union(r.conns);
      else diags.error('BH501', r.message, it.doc.locate([...it.path, 'ports', i]), r.help);
    });
    out.set(sv.name, { name: sv.name, conns, process: sv.process, user: sv.user, loc });
  }
  return out;
}

// ---------------------------------------------------------------- selectors, modes

function selectorAt(source: string, loc: Loc | undefined, labels: LabelChecker, diags: Diagnostics): Selector | undefined {
  const r = parseSelector(source);
  if (!r.ok) {
    const at = loc && within(loc, source, r.error.start, r.error.end - r.error.start);
    diags.error('BH601', `invalid selector ${q(source)}: ${r.error.message}`, at, "selectors use Calico's syntax, for example `role == 'web' && env in {'prod', 'staging'}`");
    return undefined;
  }
  labels.checkSelector(r.selector, loc, source);
  return r.selector;
}

function buildModes(items: Sections['modes'], labels: LabelChecker, diags: Diagnostics): ModeRule[] {
  const out: ModeRule[] = [];
  for (const it of items) {
    const loc = it.doc.locate([...it.path, 'scope']);
    const scope = selectorAt(it.value.scope, loc, labels, diags);
    if (scope) out.push({ scope, mode: it.value.mode, loc });
  }
  return out;
}

// ---------------------------------------------------------------- rules

interface RuleContext {
  readonly broken: ReadonlySet<string>;
  readonly names: { workloads: ReadonlySet<string>; iplists: ReadonlyMap<string, IpList>; services: ReadonlyMap<string, Service> };
  readonly labels: LabelChecker;
  readonly now: Date;
}

function peerOf(p: PeerInput, loc: Loc | undefined, ctx: RuleContext, diags: Diagnostics): Peer | undefined {
  if (typeof p === 'string') {
    if (p.trim() === 'any') return { kind: 'any', loc };
    const sel = selectorAt(p, loc, ctx.labels, diags);
    return sel && { kind: 'selector', selector: sel, global: false, loc };
  }
  if ('selector' in p) {
    const sel = selectorAt(p.selector, loc, ctx.labels, diags);
    return sel && { kind: 'selector', selector: sel, global: p.global, loc };
  }
  if ('workload' in p) {
    if (ctx.names.workloads.has(p.workload)) return { kind: 'workload', name: p.workload, loc };
    if (ctx.broken.has(p.workload)) return undefined; // already reported where it is defined
    const guess = closest(p.workload, ctx.names.workloads);
    diags.error('BH301', `unknown workload ${q(p.workload)}`, loc, guess ? `did you mean ${q(guess)}?` : 'name a workload defined in the inventory');
    return undefined;
  }
  if ('iplist' in p) {
    const l = ctx.names.iplists.get(p.iplist);
    if (l) return { kind: 'ips', set: l.set, name: l.name, loc };
    if (ctx.broken.has(p.iplist)) return undefined;
    const guess = closest(p.iplist, ctx.names.iplists.keys());
    diags.error('BH301', `unknown IP list ${q(p.iplist)}`, loc, guess ? `did you mean ${q(guess)}?` : `IP lists are ${qList([...ctx.names.iplists.keys()])}`);
    return undefined;
  }
  const d = new Diagnostics();
  const prefix = parseAddress(p.cidr, loc, d);
  diags.items.push(...d.items);
  return prefix && { kind: 'ips', set: IpSet.fromPrefixes([prefix]), name: formatPrefix(prefix), loc };
}

function serviceOf(entry: PortEntryInput, loc: Loc | undefined, ctx: RuleContext, diags: Diagnostics): RuleService | undefined {
  if (typeof entry === 'string') {
    const named = ctx.names.services.get(entry);
    if (named) return { name: named.name, conns: named.conns, process: named.process, user: named.user };
    if (ctx.broken.has(entry)) return undefined;
  }
  const r = parsePortEntry(entry);
  if (r.ok) return { name: typeof entry === 'string' ? entry : JSON.stringify(entry), conns: r.conns };
  if (typeof entry === 'string' && /^[a-z][\w.-]*$/i.test(entry) && !/^(tcp|udp|sctp|icmp|icmpv6)$/i.test(entry)) {
    const guess = closest(entry, ctx.names.services.keys());
    diags.error('BH301', `unknown service ${q(entry)}`, loc, guess ? `did you mean ${q(guess)}?` : 'name a service from `services:` or write an entry such as `443/tcp`');
  } else {
    diags.error('BH501', r.message, loc, r.help);
  }
  return undefined;
}

interface RuleSpec {
  readonly input: OverrideInput;
  readonly tier: Tier;
  readonly id: string;
  readonly scope: Selector;
  readonly ruleset?: string;
  readonly order: number;
  readonly doc: SourceDoc;
  readonly path: Path;
}

function buildRule(spec: RuleSpec, ctx: RuleContext, diags: Diagnostics): Rule | undefined {
  const { input, doc, path } = spec;
  const before = diags.errorCount;
  const peers = (side: 'from' | 'to') => input[side].map((p, i) => peerOf(p, doc.locate([...path, side, i]), ctx, diags)).filter((p): p is Peer => p !== undefined);
  const from = peers('from');
  const to = peers('to');
  const services = input.services.map((e, i) => serviceOf(e, doc.locate([...path, 'services', i]), ctx, diags)).filter((x): x is RuleService => x !== undefined);
  let expires: Date | undefined;
  if (input.expires !== undefined) {
    const t = input.expires instanceof Date ? input.expires : new Date(input.expires);
    const loc = doc.locate([...path, 'expires']);
    if (Number.isNaN(t.getTime())) diags.error('BH703', `invalid expiry ${q(String(input.expires))}`, loc, 'write an ISO 8601 time such as `2026-12-31T23:59:00Z`');
    else expires = t;
  }
  // INVARIANT: a rule with any problem is left out entirely; a partial rule could allow more, or less, than written.
  const complete = from.length === input.from.length && to.length === input.to.length && services.length === input.services.length;
  if (diags.errorCount > before || !complete) return undefined;
  const loc = doc.locate(input.id ? [...path, 'id'] : path);
  if (expires && expires.getTime() <= ctx.now.getTime()) {
    diags.warning('BH701', `override ${q(spec.id)} expired at ${expires.toISOString()}`, doc.locate([...path, 'expires']), 'it is ignored; remove it, or extend `expires` if it is still needed');
    return undefined;
  }
  const conns = services.reduce((acc, s) => acc.union(s.conns), ConnSet.EMPTY);
  return { id: spec.id, tier: spec.tier, action: input.action, scope: spec.scope, ruleset: spec.ruleset, from, to, services, conns, order: spec.order, expires, reason: input.reason, owner: input.owner, description: input.description, loc };
}

function buildRules(s: Sections, ctx: RuleContext, diags: Diagnostics): Rule[] {
  const specs: RuleSpec[] = [];
  s.overrides.forEach((it, i) => specs.push({ input: it.value, tier: 'override', id: it.value.id ?? `override/${i + 1}`, scope: Selector.ALL, order: i, doc: it.doc, path: it.path }));
  const rulesetNames = new Map<string, Loc | undefined>();
  for (const it of s.rulesets) {
    const rs = it.value;
    const loc = it.doc.locate([...it.path, 'name']);
    if (rulesetNames.has(rs.name)) {
      diags.error('BH201', `ruleset ${q(rs.name)} is defined twice`, loc, `the first definition is at ${fmtLoc(rulesetNames.get(rs.name))}`);
      continue;
    }
    rulesetNames.set(rs.name, loc);
    const scope = selectorAt(rs.scope, it.doc.locate([...it.path, 'scope']), ctx.labels, diags);
    if (!scope) continue;
    rs.rules.forEach((r, i) => {
      if (r === undefined) return;
      const input: OverrideInput = r;
      specs.push({ input, tier: r.action === 'deny' ? 'deny' : 'allow', id: r.id ?? `${rs.name}/${i + 1}`, scope, ruleset: rs.name, order: -1, doc: it.doc, path: [...it.path, 'rules', i] });
    });
  }
  const ids = new Map<string, Loc | undefined>();
  const out: Rule[] = [];
  for (const spec of specs) {
    const loc = spec.doc.locate(spec.input.id ? [...spec.path, 'id'] : spec.path);
    const duplicate = ids.has(spec.id);
    if (duplicate) diags.error('BH201', `rule id ${q(spec.id)} is used twice`, loc, `the first use is at ${fmtLoc(ids.get(spec.id))}; rule ids are unique across the policy`);
    else ids.set(spec.id, loc);
    // A rule with a duplicate id is still checked, so all its problems show at once.
    const rule = buildRule(spec, ctx, diags);
    if (rule && !duplicate) out.push(rule);
  }
  return out;
}
