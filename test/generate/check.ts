/**
 * Test helpers for generated estate documents: a structural check of what
 * the generator writes (names, addresses, references, taxonomy, selectors,
 * modes), using the project's own address, selector and port readers.
 */
import { parseSelector } from '../../src/model/selector.js';
import { formatPrefix, IpSet, parsePrefix, type Prefix } from '../../src/netset/ip.js';
import { resolveServices } from '../../src/generate/ports.js';
import type { EstateDocument, PeerDoc, RuleDoc, ServiceDoc } from '../../src/generate/types.js';

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
  const singles: Array<[Prefix, string, string]> = [];
  const prefixes: Array<[IpSet, string]> = [];
  for (const w of workloads) {
    if (names.has(w.name)) problems.push(`duplicate workload name ${w.name}`);
    names.add(w.name);
    for (const [k, v] of Object.entries(w.labels ?? {})) label(k, v, `workload ${w.name}`);
    for (const a of w.addresses) {
      const r = parsePrefix(a);
      if ('error' in r || r.hostBitsSet) {
        problems.push(`workload ${w.name}: bad address ${a}`);
        continue;
      }
      const key = formatPrefix(r.prefix);
      if (addrs.has(key)) problems.push(`address ${a} of ${w.name} is also ${addrs.get(key)}'s`);
      addrs.set(key, w.name);
      if (a.includes('/')) prefixes.push([IpSet.fromPrefixes([r.prefix]), w.name]);
      else singles.push([r.prefix, a, w.name]);
    }
  }
  for (const [p, a, name] of singles) {
    for (const [set, owner] of prefixes) if (owner !== name && set.has(p.addr)) problems.push(`address ${a} of ${name} is inside ${owner}'s prefix`);
  }
  for (const sel of allSelectors(doc)) {
    if (!balanced(sel)) {
      problems.push(`unbalanced selector: ${sel}`);
      continue;
    }
    const r = parseSelector(sel);
    if (!r.ok) {
      problems.push(`selector does not parse: ${sel}: ${r.error.message}`);
      continue;
    }
    for (const ref of r.selector.references()) {
      label(ref.label, undefined, `selector ${sel}`);
      for (const v of ref.values) label(ref.label, v.value, `selector ${sel}`);
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
      const r = parsePrefix(p);
      if ('error' in r || r.hostBitsSet) problems.push(`IP list ${l.name}: bad prefix ${p}`);
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
  const modeEntries = (doc.modes ?? []).flatMap((m) => {
    const r = parseSelector(m.scope);
    return r.ok ? [{ scope: r.selector, mode: m.mode }] : [];
  });
  for (const w of workloads) {
    const modes = new Set(modeEntries.filter((m) => m.scope.matches(w.labels ?? {})).map((m) => m.mode));
    if (modes.size > 1) problems.push(`workload ${w.name} gets modes ${[...modes].join(', ')}`);
  }
  return problems;
}
