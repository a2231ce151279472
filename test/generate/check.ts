/**
 * Test helpers for estate documents: a structural check (names, references,
 * taxonomy, selectors, modes) and a small reference evaluator written from
 * docs/POLICY.md alone, used as an oracle for the sample estate's expected
 * flows. Independent of src/policy and src/engine on purpose.
 */
import { addressValue, familyOf, parsePrefix, prefixContains, type Prefix } from '../../src/generate/addr.js';
import { rangeCovers, resolveServices } from '../../src/generate/ports.js';
import { matchAst, parseSelector, selectorLabels, type SelectorAst } from '../../src/generate/selector.js';
import type { EstateDocument, FlowProto, Mode, PeerDoc, RuleDoc, ServiceDoc, WorkloadDoc } from '../../src/generate/types.js';

/** Quotes, braces and parentheses balance, outside and inside quotes respectively. */
export function balanced(sel: string): boolean {
  let depth = 0;
  let brace = 0;
  let quote: string | null = null;
  for (const c of sel) {
    if (quote) {
      if (c === quote) quote = null;
      continue;
    }
    if (c === "'" || c === '"') quote = c;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '{') brace++;
    else if (c === '}') brace--;
    if (depth < 0 || brace < 0) return false;
  }
  return quote === null && depth === 0 && brace === 0;
}

/** Every selector string in the document: scopes, peers, modes, overrides. */
export function allSelectors(doc: Partial<EstateDocument>): string[] {
  const out: string[] = [];
  const peers = (ps: readonly PeerDoc[]) => {
    for (const p of ps) {
      if (typeof p === 'string') {
        if (p !== 'any') out.push(p);
      } else if ('selector' in p) out.push(p.selector);
    }
  };
  for (const rs of doc.rulesets ?? []) {
    if (rs.scope !== undefined) out.push(rs.scope);
    for (const r of rs.rules) {
      peers(r.from);
      peers(r.to);
    }
  }
  for (const m of doc.modes ?? []) out.push(m.scope);
  for (const o of doc.overrides ?? []) {
    peers(o.from);
    peers(o.to);
  }
  return out;
}

/** Problems with the document's internal consistency; empty when it is sound. */
export function checkDocument(doc: Partial<EstateDocument>): string[] {
  const problems: string[] = [];
  const tax = doc.taxonomy;
  const workloads = doc.workloads ?? [];
  const label = (k: string, v: string | undefined, where: string) => {
    if (!tax) return;
    const dim = tax[k];
    if (dim === undefined) problems.push(`${where}: label key ${k} is not in the taxonomy`);
    else if (v !== undefined && dim !== 'open' && !dim.includes(v)) problems.push(`${where}: ${k}=${v} is not an allowed value`);
  };
  const names = new Set<string>();
  const addrs = new Map<string, string>();
  const prefixes: Array<[Prefix, string]> = [];
  for (const w of workloads) {
    if (names.has(w.name)) problems.push(`duplicate workload name ${w.name}`);
    names.add(w.name);
    for (const [k, v] of Object.entries(w.labels ?? {})) label(k, v, `workload ${w.name}`);
    for (const a of w.addresses) {
      const canon = a.includes('/') ? a : `${a}/${familyOf(a) === 4 ? 32 : 128}`;
      const p = parsePrefix(canon);
      const key = `${p.family}:${p.base}/${p.len}`;
      if (addrs.has(key)) problems.push(`address ${a} of ${w.name} is also ${addrs.get(key)}'s`);
      addrs.set(key, w.name);
      if (a.includes('/')) prefixes.push([p, w.name]);
    }
  }
  for (const w of workloads) {
    for (const a of w.addresses) {
      if (a.includes('/')) continue;
      const v = addressValue(a);
      for (const [p, owner] of prefixes) if (owner !== w.name && prefixContains(p, familyOf(a), v)) problems.push(`address ${a} of ${w.name} is inside ${owner}'s prefix`);
    }
  }
  for (const sel of allSelectors(doc)) {
    if (!balanced(sel)) {
      problems.push(`unbalanced selector: ${sel}`);
      continue;
    }
    try {
      for (const [k, v] of selectorLabels(parseSelector(sel))) label(k, v, `selector ${sel}`);
    } catch (e) {
      problems.push(`selector does not parse: ${sel}: ${(e as Error).message}`);
    }
  }
  const services = new Map<string, ServiceDoc>();
  for (const s of doc.services ?? []) {
    if (services.has(s.name)) problems.push(`duplicate service ${s.name}`);
    services.set(s.name, s);
  }
  const iplists = new Set<string>();
  for (const l of doc.iplists ?? []) {
    if (iplists.has(l.name)) problems.push(`duplicate IP list ${l.name}`);
    iplists.add(l.name);
    for (const p of [...l.include, ...(l.exclude ?? [])]) {
      try {
        parsePrefix(p);
      } catch {
        problems.push(`IP list ${l.name}: bad prefix ${p}`);
      }
    }
  }
  const refs = (what: string, r: { from: PeerDoc[]; to: PeerDoc[]; services: RuleDoc['services'] }) => {
    for (const p of [...r.from, ...r.to]) {
      if (typeof p !== 'object') continue;
      if ('workload' in p && !names.has(p.workload)) problems.push(`${what}: unknown workload ${p.workload}`);
      if ('iplist' in p && !iplists.has(p.iplist)) problems.push(`${what}: unknown IP list ${p.iplist}`);
    }
    try {
      resolveServices(r.services, services);
    } catch (e) {
      problems.push(`${what}: ${(e as Error).message}`);
    }
  };
  const ids = new Set<string>();
  for (const rs of doc.rulesets ?? []) {
    rs.rules.forEach((r, n) => {
      const id = r.id ?? `${rs.name}/${n + 1}`;
      if (ids.has(id)) problems.push(`duplicate rule id ${id}`);
      ids.add(id);
      refs(`rule ${id}`, r);
    });
  }
  for (const o of doc.overrides ?? []) {
    if (ids.has(o.id)) problems.push(`duplicate id ${o.id}`);
    ids.add(o.id);
    refs(`override ${o.id}`, o);
  }
  // Two matching mode entries must agree.
  const modeEntries = (doc.modes ?? []).map((m) => ({ ast: parseSelector(m.scope), mode: m.mode }));
  for (const w of workloads) {
    const modes = new Set(modeEntries.filter((m) => matchAst(m.ast, w.labels ?? {})).map((m) => m.mode));
    if (modes.size > 1) problems.push(`workload ${w.name} gets modes ${[...modes].join(', ')}`);
  }
  return problems;
}

// ---------------------------------------------------------------- reference evaluator

export type Verdict = 'allowed' | 'blocked' | 'potentially-blocked' | 'not-evaluated';

export interface OracleResult {
  verdict: Verdict;
  /** Ids that decided: the deciding deny or override, the allowing rules, or `default`. */
  decidedBy: string[];
}

interface SideResult {
  action: 'allow' | 'deny';
  by: string[];
}

export class Oracle {
  private readonly services: Map<string, ServiceDoc>;
  private readonly iplists: Map<string, { inc: Prefix[]; exc: Prefix[] }>;
  private readonly asts = new Map<string, SelectorAst>();
  private readonly exact = new Map<string, WorkloadDoc>();
  private readonly prefixed: Array<[Prefix, WorkloadDoc]> = [];

  constructor(
    private readonly doc: Partial<EstateDocument>,
    private readonly now: Date,
  ) {
    this.services = new Map((doc.services ?? []).map((s) => [s.name, s]));
    this.iplists = new Map((doc.iplists ?? []).map((l) => [l.name, { inc: l.include.map(parsePrefix), exc: (l.exclude ?? []).map(parsePrefix) }]));
    for (const w of doc.workloads ?? []) {
      for (const a of w.addresses) {
        if (a.includes('/')) this.prefixed.push([parsePrefix(a), w]);
        else this.exact.set(`${familyOf(a)}:${addressValue(a)}`, w);
      }
    }
  }

  private sel(s: string, w: WorkloadDoc | undefined): boolean {
    if (!w) return false;
    let a = this.asts.get(s);
    if (!a) this.asts.set(s, (a = parseSelector(s)));
    return matchAst(a, w.labels ?? {});
  }

  workloadAt(addr: string): WorkloadDoc | undefined {
    const f = familyOf(addr);
    const v = addressValue(addr);
    return this.exact.get(`${f}:${v}`) ?? this.prefixed.find(([p]) => prefixContains(p, f, v))?.[1];
  }

  /** Whether the rule (in a ruleset of that scope) covers the flow. */
  covers(r: { from: PeerDoc[]; to: PeerDoc[]; services: RuleDoc['services'] }, scope: string | undefined, src: string, dst: string, proto: FlowProto, port: number): boolean {
    return this.matches(r, scope, { src, dst, sw: this.workloadAt(src), dw: this.workloadAt(dst), proto, port });
  }

  modeOf(w: WorkloadDoc): Mode {
    if (w.mode) return w.mode;
    const m = (this.doc.modes ?? []).find((e) => this.sel(e.scope, w));
    return m?.mode ?? this.doc.settings?.defaultMode ?? 'enforce';
  }

  private peer(p: PeerDoc, addr: string, w: WorkloadDoc | undefined, scope: string | undefined): boolean {
    const inScope = (x: WorkloadDoc | undefined) => scope === undefined || this.sel(scope, x);
    if (p === 'any') return true;
    if (typeof p === 'string') return this.sel(p, w) && inScope(w);
    if ('selector' in p) return this.sel(p.selector, w) && (p.global === true || inScope(w));
    if ('workload' in p) return w?.name === p.workload;
    const f = familyOf(addr);
    const v = addressValue(addr);
    if ('iplist' in p) {
      const l = this.iplists.get(p.iplist);
      return !!l && l.inc.some((x) => prefixContains(x, f, v)) && !l.exc.some((x) => prefixContains(x, f, v));
    }
    return prefixContains(parsePrefix(p.cidr), f, v);
  }

  private matches(
    r: { from: PeerDoc[]; to: PeerDoc[]; services: RuleDoc['services'] },
    scope: string | undefined,
    f: { src: string; dst: string; sw?: WorkloadDoc; dw?: WorkloadDoc; proto: FlowProto; port: number },
  ): boolean {
    return (
      r.from.some((p) => this.peer(p, f.src, f.sw, scope)) &&
      r.to.some((p) => this.peer(p, f.dst, f.dw, scope)) &&
      rangeCovers(resolveServices(r.services, this.services), f.proto, f.port)
    );
  }

  /** One side's decision: override first match, then any deny, then any allow, else the default deny. */
  private side(f: { src: string; dst: string; sw?: WorkloadDoc; dw?: WorkloadDoc; proto: FlowProto; port: number }): SideResult {
    for (const o of this.doc.overrides ?? []) {
      if (o.expires && new Date(o.expires).getTime() <= this.now.getTime()) continue;
      if (this.matches(o, undefined, f)) return { action: o.action, by: [o.id] };
    }
    const denies: string[] = [];
    const allows: string[] = [];
    for (const rs of this.doc.rulesets ?? []) {
      rs.rules.forEach((r, n) => {
        if (!this.matches(r, rs.scope, f)) return;
        ((r.action ?? 'allow') === 'deny' ? denies : allows).push(r.id ?? `${rs.name}/${n + 1}`);
      });
    }
    if (denies.length > 0) return { action: 'deny', by: denies };
    if (allows.length > 0) return { action: 'allow', by: allows };
    return { action: 'deny', by: ['default'] };
  }

  decide(src: string, dst: string, proto: FlowProto, port: number): OracleResult {
    const sw = this.workloadAt(src);
    const dw = this.workloadAt(dst);
    const flow = { src, dst, sw, dw, proto, port };
    // The same rules speak for both sides; only the modes differ.
    const sides = [sw, dw]
      .filter((w): w is WorkloadDoc => w !== undefined && w.managed !== false)
      .map((w) => ({ mode: this.modeOf(w), result: this.side(flow) }))
      .filter((s) => s.mode === 'test' || s.mode === 'enforce');
    const enforceDeny = sides.find((s) => s.mode === 'enforce' && s.result.action === 'deny');
    if (enforceDeny) return { verdict: 'blocked', decidedBy: enforceDeny.result.by };
    const testDeny = sides.find((s) => s.result.action === 'deny');
    if (testDeny) return { verdict: 'potentially-blocked', decidedBy: testDeny.result.by };
    if (sides.length > 0) return { verdict: 'allowed', decidedBy: sides.flatMap((s) => s.result.by) };
    return { verdict: 'not-evaluated', decidedBy: [] };
  }
}

/** `5432/tcp`, `8/icmp` → protocol and port (the ICMP type). */
export function parseFlowPort(s: string): { proto: FlowProto; port: number } {
  const m = /^(\d+)\/(tcp|udp|sctp|icmp|icmpv6)$/.exec(s.trim());
  if (!m) throw new Error(`bad flow port ${s}`);
  return { proto: m[2] as FlowProto, port: Number(m[1]) };
}
