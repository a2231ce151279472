/**
 * Policy assertions: invariants as code, checked against what the policy
 * lets through (docs/ANALYSIS.md#assertions).
 *
 * ```yaml
 * assertions:
 *   - name: prod never reaches dev
 *     never: { from: "env == 'prod'", to: "env == 'dev'" }
 *   - name: only jump hosts administer
 *     only: { from: ["role == 'jump'", { workload: ansible-1 }], ports: [22/tcp, 3389/tcp] }
 *   - name: payments is ring-fenced
 *     ringfence: { group: "app == 'payments'", except: ["app == 'shop' && role == 'app'"] }
 *   - name: the shop's web tier reaches its app tier
 *     reaches: { from: "app == 'shop' && role == 'web'", to: "app == 'shop' && role == 'app'", ports: [8080/tcp] }
 * ```
 *
 * - `never`: no source in `from` reaches any destination in `to` on `ports` (default any);
 * - `only`: nothing outside `from` reaches `to` (default: anything) on `ports`;
 * - `ringfence`: nothing outside `group` and `except` reaches `group` (an `only` with `from: group + except`);
 * - `reaches`: every workload in `from` reaches every workload in `to` on every one of `ports`.
 *
 * Peers are written as in rules (a selector, `any`, `{workload}`, `{iplist}`,
 * `{cidr}`), one or a list; selectors match workloads anywhere (no scope).
 * Flows with no managed end are outside the policy and never counted.
 */
import { ConnSet, isIcmp, protocolName } from '../netset/connset.js';
import { IpSet, type Addr } from '../netset/ip.js';
import { closest, q, qList, type Diagnostics, type Loc } from '../model/diagnostic.js';
import { parseSelector, type Selector } from '../model/selector.js';
import type { Ir } from '../policy/ir.js';
import { parseAddress } from '../policy/load.js';
import { parsePortEntry } from '../policy/ports.js';
import { PortEntrySchema } from '../policy/schema.js';
import { within, type Path, type SourceDoc } from '../policy/source.js';
import { Connectivity } from './connectivity.js';
import { buildUnits, GroupMatrix, labelGrouping, realPair, workloadGrouping } from './matrix.js';
import { buildPlaces, freeAddressIn, placeOf, seatAddr, type Place, type Places } from './places.js';

/** The kinds of assertion. */
export const ASSERTION_KINDS = ['never', 'only', 'ringfence', 'reaches'] as const;
/** One kind of assertion. */
export type AssertionKind = (typeof ASSERTION_KINDS)[number];

/** One peer of an assertion. */
export type AssertPeer =
  | { readonly kind: 'selector'; readonly selector: Selector }
  | { readonly kind: 'workload'; readonly name: string }
  | { readonly kind: 'ips'; readonly name: string; readonly set: IpSet }
  | { readonly kind: 'any' };

/** A checked assertion. A `ringfence` is held as `from: group + except`, `to: group`. */
export interface Assertion {
  readonly name: string;
  readonly kind: AssertionKind;
  readonly description?: string;
  readonly from: readonly AssertPeer[];
  readonly to: readonly AssertPeer[];
  readonly ports: ConnSet;
  /** The assertion as one line of text, for reports. */
  readonly summary: string;
  readonly loc?: Loc;
}

/** The text of a peer list, for reports. */
export function peersText(peers: readonly AssertPeer[]): string {
  return peers
    .map((p) => (p.kind === 'selector' ? q(p.selector.source) : p.kind === 'workload' ? `workload ${q(p.name)}` : p.kind === 'ips' ? `${p.name.includes('/') ? 'cidr' : 'iplist'} ${q(p.name)}` : 'anything'))
    .join(' or ');
}

const FIELDS: Record<AssertionKind, { required: string[]; optional: string[] }> = {
  never: { required: ['from', 'to'], optional: ['ports'] },
  only: { required: ['from'], optional: ['to', 'ports'] },
  ringfence: { required: ['group'], optional: ['except', 'ports'] },
  reaches: { required: ['from', 'to', 'ports'], optional: [] },
};
const TOP = ['name', 'description', ...ASSERTION_KINDS];
const SHAPE_HELP = 'write `- name: …` with one of `never`, `only`, `ringfence`, `reaches`';

function isMap(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * Reads assertions from parsed documents: a list of assertions, or a map
 * with an `assertions` list. Problems become diagnostics (shape, unknown
 * fields, selectors, workload and IP list names, addresses, ports); an
 * assertion with an error is left out. Selectors are checked against the
 * policy's taxonomy, and one that matches no workload is a warning, since
 * the assertion would then hold without saying anything.
 */
export function loadAssertions(docs: readonly SourceDoc[], ir: Ir, diags: Diagnostics): Assertion[] {
  const policy = ir.policy;
  const out: Assertion[] = [];
  const names = new Map<string, Loc | undefined>();
  const workloadNames = new Set(policy.workloads.map((w) => w.name));
  const dims = policy.taxonomy?.dimensions;

  for (const doc of docs) {
    let items: unknown[];
    let base: Path;
    if (Array.isArray(doc.data)) {
      items = doc.data;
      base = [];
    } else if (isMap(doc.data)) {
      for (const k of Object.keys(doc.data)) if (k !== 'assertions') diags.error('BH005', `unknown field ${q(k)}`, doc.locate([k], true), 'an assertions file is a list of assertions, or a map with an `assertions` list');
      const a = doc.data.assertions;
      if (!Array.isArray(a)) {
        if (a === undefined) diags.error('BH004', 'missing field `assertions`', doc.locate([]), 'an assertions file is a list of assertions, or a map with an `assertions` list');
        else diags.error('BH003', '`assertions` must be a list', doc.locate(['assertions']), SHAPE_HELP);
        continue;
      }
      items = a;
      base = ['assertions'];
    } else {
      diags.error('BH003', 'an assertions file must be a list of assertions', doc.locate([]), SHAPE_HELP);
      continue;
    }

    items.forEach((item, i) => {
      const path = [...base, i];
      const loc = doc.locate(path);
      if (!isMap(item)) {
        diags.error('BH003', 'an assertion must be a map', loc, SHAPE_HELP);
        return;
      }
      let ok = true;
      const bad = (code: 'BH003' | 'BH004' | 'BH005', message: string, at: Loc, help?: string) => {
        diags.error(code, message, at, help);
        ok = false;
      };
      for (const k of Object.keys(item)) {
        if (TOP.includes(k)) continue;
        const guess = closest(k, TOP);
        bad('BH005', `unknown field ${q(k)} in an assertion`, doc.locate([...path, k], true), guess ? `did you mean ${q(guess)}?` : `fields are ${qList(TOP)}`);
      }
      const kinds = ASSERTION_KINDS.filter((k) => k in item);
      if (kinds.length === 0) {
        bad('BH004', 'an assertion needs one of `never`, `only`, `ringfence`, `reaches`', loc, SHAPE_HELP);
        return;
      }
      if (kinds.length > 1) {
        bad('BH003', `an assertion has one check, this one has ${qList(kinds)}`, doc.locate([...path, kinds[1]], true), 'write each check as an assertion of its own');
        return;
      }
      const kind = kinds[0];
      const name = item.name === undefined ? `${kind} #${i + 1}` : typeof item.name === 'string' ? item.name : undefined;
      if (name === undefined) bad('BH003', '`name` must be text', doc.locate([...path, 'name']));
      const description = typeof item.description === 'string' ? item.description : undefined;
      if (item.description !== undefined && description === undefined) bad('BH003', '`description` must be text', doc.locate([...path, 'description']));
      const body = item[kind];
      const bodyPath = [...path, kind];
      if (!isMap(body)) {
        bad('BH003', `\`${kind}\` must be a map`, doc.locate(bodyPath), `write \`${kind}: { ${FIELDS[kind].required.map((f) => `${f}: …`).join(', ')} }\``);
        return;
      }
      const spec = FIELDS[kind];
      const allowed = [...spec.required, ...spec.optional];
      for (const k of Object.keys(body)) {
        if (allowed.includes(k)) continue;
        const guess = closest(k, allowed);
        bad('BH005', `unknown field ${q(k)} in \`${kind}\``, doc.locate([...bodyPath, k], true), guess ? `did you mean ${q(guess)}?` : `\`${kind}\` takes ${qList(allowed)}`);
      }
      for (const f of spec.required) if (!(f in body)) bad('BH004', `missing field ${q(f)} in \`${kind}\``, doc.locate(bodyPath, true), `\`${kind}\` needs ${qList(spec.required)}`);
      if (!ok) return;

      // Peers.
      const selectorAt = (source: string, at: Loc): Selector | undefined => {
        const r = parseSelector(source);
        if (!r.ok) {
          diags.error('BH601', `invalid selector ${q(source)}: ${r.error.message}`, within(at, source, r.error.start, r.error.end - r.error.start), "selectors use Calico's syntax, for example `role == 'web' && env in {'prod', 'staging'}`");
          return undefined;
        }
        if (dims) {
          for (const ref of r.selector.references()) {
            const keyAt = within(at, source, ref.labelSpan[0], ref.labelSpan[1] - ref.labelSpan[0]);
            const dim = dims.get(ref.label);
            if (!dim) {
              const guess = closest(ref.label, dims.keys());
              diags.warning('BH101', `unknown label key ${q(ref.label)}`, keyAt, guess ? `did you mean ${q(guess)}?` : `label keys are ${qList([...dims.keys()], 12)}`);
              continue;
            }
            for (const v of ref.values) {
              if (dim.open || dim.values.has(v.value)) continue;
              const guess = closest(v.value, dim.values);
              diags.warning('BH102', `unknown value ${q(v.value)} for label ${q(ref.label)}`, within(at, source, v.span[0], v.span[1] - v.span[0]), (guess ? `did you mean ${q(guess)}? ` : '') + `values of ${q(ref.label)} are ${qList([...dim.values], 10)}`);
            }
          }
        }
        if (ir.selectClasses(r.selector).isEmpty()) diags.warning('BH602', `selector ${q(source)} matches no workload`, at, 'the assertion says nothing about it; check the label values');
        return r.selector;
      };
      const peerAt = (p: unknown, pPath: Path): AssertPeer | undefined => {
        const at = doc.locate(pPath);
        if (typeof p === 'string') {
          if (p.trim() === 'any') return { kind: 'any' };
          const sel = selectorAt(p, at);
          return sel && { kind: 'selector', selector: sel };
        }
        if (!isMap(p)) {
          diags.error('BH003', 'a peer must be a selector or a map', at, 'write a selector, `any`, `{workload: …}`, `{iplist: …}` or `{cidr: …}`');
          return undefined;
        }
        const forms = ['selector', 'workload', 'iplist', 'cidr'].filter((k) => k in p);
        const extra = Object.keys(p).filter((k) => !['selector', 'workload', 'iplist', 'cidr', 'global'].includes(k));
        if (forms.length !== 1 || extra.length > 0) {
          diags.error('BH003', forms.length === 0 ? 'a peer map needs one of `selector`, `workload`, `iplist`, `cidr`' : extra.length > 0 ? `unknown field ${q(extra[0])} in a peer` : `a peer has one of ${qList(forms)}, not several`, at, 'write a selector, `any`, `{workload: …}`, `{iplist: …}` or `{cidr: …}`');
          return undefined;
        }
        const form = forms[0];
        const v = p[form];
        const vAt = doc.locate([...pPath, form]);
        if (typeof v !== 'string') {
          diags.error('BH003', `\`${form}\` must be text`, vAt);
          return undefined;
        }
        if (form === 'selector') {
          const sel = selectorAt(v, vAt);
          return sel && { kind: 'selector', selector: sel };
        }
        if (form === 'workload') {
          if (workloadNames.has(v)) return { kind: 'workload', name: v };
          const guess = closest(v, workloadNames);
          diags.error('BH301', `unknown workload ${q(v)}`, vAt, guess ? `did you mean ${q(guess)}?` : 'name a workload of the policy');
          return undefined;
        }
        if (form === 'iplist') {
          const l = policy.iplists.get(v);
          if (l) return { kind: 'ips', name: l.name, set: l.set };
          const guess = closest(v, policy.iplists.keys());
          diags.error('BH301', `unknown IP list ${q(v)}`, vAt, guess ? `did you mean ${q(guess)}?` : `IP lists are ${qList([...policy.iplists.keys()])}`);
          return undefined;
        }
        const prefix = parseAddress(v, vAt, diags);
        return prefix && { kind: 'ips', name: v, set: IpSet.fromPrefixes([prefix]) };
      };
      const peers = (field: string): AssertPeer[] | undefined => {
        const v = body[field];
        const fPath = [...bodyPath, field];
        const list = Array.isArray(v) ? v : [v];
        if (list.length === 0) {
          diags.error('BH003', `\`${field}\` is empty`, doc.locate(fPath), 'name at least one peer');
          return undefined;
        }
        const got = list.map((p, j) => peerAt(p, Array.isArray(v) ? [...fPath, j] : fPath));
        return got.every((x) => x !== undefined) ? (got as AssertPeer[]) : undefined;
      };
      let ports = ConnSet.ANY;
      let portsOk = true;
      if (body.ports !== undefined) {
        ports = ConnSet.EMPTY;
        const list = Array.isArray(body.ports) ? body.ports : [body.ports];
        list.forEach((entry, j) => {
          const at = doc.locate(Array.isArray(body.ports) ? [...bodyPath, 'ports', j] : [...bodyPath, 'ports']);
          const shaped = PortEntrySchema.safeParse(typeof entry === 'number' ? String(entry) : entry);
          const r = shaped.success ? parsePortEntry(shaped.data) : { ok: false as const, message: `${q(JSON.stringify(entry))} is not a port entry`, help: 'write `443/tcp`, `8000-8100/tcp`, `53/udp`, `8/icmp`, `tcp` or `any`' };
          if (r.ok) ports = ports.union(r.conns);
          else {
            diags.error('BH501', r.message, at, r.help);
            portsOk = false;
          }
        });
      }

      let from: AssertPeer[] | undefined;
      let to: AssertPeer[] | undefined;
      let summary: string;
      if (kind === 'ringfence') {
        const group = peers('group');
        const except = body.except === undefined ? [] : peers('except');
        from = group && except && [...group, ...except];
        to = group;
        summary = group && except ? `nothing but ${peersText(group)}${except.length > 0 ? ` and ${peersText(except)}` : ''} reaches ${peersText(group)}` : '';
      } else {
        from = peers('from');
        to = kind === 'only' && body.to === undefined ? [{ kind: 'any' }] : peers('to');
        summary = from && to ? (kind === 'never' ? `${peersText(from)} never reaches ${peersText(to)}` : kind === 'only' ? `only ${peersText(from)} reaches ${peersText(to)}` : `every ${peersText(from)} reaches every ${peersText(to)}`) : '';
      }
      if (!from || !to || !portsOk || name === undefined) return;
      if (!ports.isAny()) summary += ` on ${ports.toString()}`;
      if (names.has(name)) {
        const first = names.get(name);
        diags.error('BH201', `duplicate assertion name ${q(name)}`, doc.locate([...path, 'name']), first && first.line > 0 ? `first defined at ${first.file}:${first.line}:${first.col}` : 'give each assertion its own name');
        return;
      }
      names.set(name, doc.locate([...path, 'name']));
      out.push({ name, kind, description, from, to, ports, summary, loc });
    });
  }
  return out;
}

// ---------------------------------------------------------------- checking

/** One pair of groups (or, for `reaches`, of workloads) that breaks an assertion. */
export interface Violation {
  readonly from: string;
  readonly to: string;
  /** What passes (for `reaches`: what is missing). */
  readonly conns: ConnSet;
  /** Ids of the rules that allow it (for `reaches`: that deny the missing part). */
  readonly rules: readonly string[];
  /** Some of it passes only because no end enforces (`--as-deployed`). */
  readonly open: boolean;
}

/** A concrete flow that breaks an assertion, with the rules that decide it. */
export interface Counterexample {
  readonly from: Place;
  readonly to: Place;
  /** The connection, as `eval --port` takes it: `22/tcp`, `8/icmp`, `3:4/icmp`. */
  readonly connection: string;
  /** `allowed` for never/only/ringfence; `denied` for reaches (the flow is missing). */
  readonly outcome: 'allowed' | 'denied';
  /** Ids of the rules that allow it (allowed) or deny it (denied; empty: the default deny). */
  readonly rules: readonly string[];
  /** It passes only because no end enforces. */
  readonly open: boolean;
}

/** The result of checking one assertion. */
export interface AssertionOutcome {
  readonly assertion: Assertion;
  readonly holds: boolean;
  /** Every violating pair (groups for never/only/ringfence, workloads for reaches), in name order. */
  readonly violations: readonly Violation[];
  /** Concrete counterexamples for the first violations. */
  readonly examples: readonly Counterexample[];
}

/** Options for {@link checkAssertions}. */
export interface CheckOptions {
  /** Count modes as deployed (see ConnectivityOptions.deployed). */
  readonly deployed?: boolean;
  /** Label keys to report violations by (default role, app, env). */
  readonly by?: readonly string[];
  /** Counterexamples per failing assertion (default 3). */
  readonly examples?: number;
  readonly places?: Places;
}

/** A connection key as `eval --port` writes it. */
export function connectionText(key: number): string {
  const proto = Math.floor(key / 65536);
  const sub = key % 65536;
  const name = protocolName(proto);
  if (name === undefined) return `proto ${proto}`;
  if (isIcmp(proto)) return `${sub >>> 8}${(sub & 255) !== 0 ? `:${sub & 255}` : ''}/${name}`;
  if (proto === 6 || proto === 17 || proto === 132) return `${sub}/${name}`;
  return name;
}

/** Checks assertions against an IR. */
export function checkAssertions(ir: Ir, assertions: readonly Assertion[], options: CheckOptions = {}): AssertionOutcome[] {
  const places = options.places ?? buildPlaces(ir);
  const conns = new Map<string, Connectivity>();
  const connFor = (ports: ConnSet) => {
    const key = ports.toString();
    let c = conns.get(key);
    if (!c) conns.set(key, (c = new Connectivity(ir, { ports, deployed: options.deployed, places })));
    return c;
  };
  const grouping = labelGrouping(options.by ?? ['role', 'app', 'env']);
  const maxExamples = options.examples ?? 3;
  return assertions.map((a) => {
    const conn = connFor(a.ports);
    const side = (peers: readonly AssertPeer[]) => sideOf(ir, places, peers);
    const f = side(a.from);
    const t = side(a.to);
    const tag = (ep: number, w: number | undefined) => (f.has(ep, w) ? 1 : 0) | (t.has(ep, w) ? 2 : 0);
    if (a.kind === 'reaches') return checkReaches(a, conn, places, tag, maxExamples);
    const units = buildUnits(places, grouping, tag);
    const outside = a.kind !== 'never';
    const m = new GroupMatrix(conn, units, {
      fromUnit: (u) => ((units.unitTag[u] & 1) === 1) !== outside,
      toUnit: (u) => (units.unitTag[u] & 2) === 2,
    });
    const res = conn.results;
    const violations: Violation[] = [];
    const examples: Counterexample[] = [];
    for (const cell of m.cells()) {
      const r = res.get(cell.result);
      violations.push({ from: units.groups[cell.from], to: units.groups[cell.to], conns: r.conns, rules: r.rules.map((k) => ir.rules[k].rule.id), open: r.open });
      if (examples.length >= maxExamples) continue;
      // A concrete flow: the first pair of units of the two groups that passes.
      search: for (const s of units.groupUnits[cell.from]) {
        if (!m.activeSrc[s]) continue;
        for (const d of units.groupUnits[cell.to]) {
          if (!m.activeDst[d] || !realPair(units, s, d)) continue;
          const se = units.unitEp[s];
          const de = units.unitEp[d];
          const pr = res.get(conn.between(se, de));
          if (pr.conns.isEmpty()) continue;
          const w1 = units.unitMembers[s][0] as number | undefined;
          const w2 = units.unitMembers[d].find((w) => w !== w1) ?? (units.unitMembers[d][0] as number | undefined);
          const key = pr.conns.keys.bounds[0];
          const rules = conn.allowingRules(se, de, key);
          examples.push({
            from: placeOf(places, se, w1, w1 === undefined ? f.ipAddr(se) : undefined),
            to: placeOf(places, de, w2, w2 === undefined ? t.ipAddr(de) : undefined),
            connection: connectionText(key),
            outcome: 'allowed',
            rules: rules.map((k) => ir.rules[k].rule.id),
            open: rules.length === 0,
          });
          break search;
        }
      }
    }
    return { assertion: a, holds: violations.length === 0, violations, examples };
  });
}

/** A side of an assertion, resolved: which workloads (at which endpoint) and which addresses that are no workload it holds. */
interface AssertSide {
  has(ep: number, w: number | undefined): boolean;
  /** For an endpoint of addresses that are no workload in this side: an address of it in the side. */
  ipAddr(ep: number): Addr | undefined;
}

function sideOf(ir: Ir, places: Places, peers: readonly AssertPeer[]): AssertSide {
  const classes = peers.filter((p) => p.kind === 'selector').map((p) => ir.selectClasses((p as { selector: Selector }).selector));
  const names = new Set(peers.flatMap((p) => (p.kind === 'workload' ? [p.name] : [])));
  const sets = peers.flatMap((p) => (p.kind === 'ips' ? [p.set] : []));
  const any = peers.some((p) => p.kind === 'any');
  const ipAddrs = new Map<number, Addr | undefined>();
  const ipAddr = (ep: number): Addr | undefined => {
    if (ipAddrs.has(ep)) return ipAddrs.get(ep);
    let a: Addr | undefined;
    const atom = ir.atoms[ir.endpointAtom[ep]];
    const sample = places.sample[ep];
    if (sample !== undefined && (any || sets.some((s) => atom.isSubset(s)))) a = sample;
    else {
      for (const s of sets) {
        const x = freeAddressIn(ir, atom.intersect(s));
        if (x !== undefined && ir.addressMap.lookup(x) === ep) {
          a = x;
          break;
        }
      }
    }
    ipAddrs.set(ep, a);
    return a;
  };
  return {
    has(ep, w) {
      if (any) return true;
      if (w === undefined) return sets.length > 0 && ipAddr(ep) !== undefined;
      const c = ir.classOf[w];
      if (classes.some((b) => b.has(c))) return true;
      if (names.has(ir.workloads[w].name)) return true;
      if (sets.length > 0) {
        const a = seatAddr(places, w, ep);
        if (a !== undefined && sets.some((s) => (typeof a === 'number' ? s.v4.has(a) : s.v6.has(a)))) return true;
      }
      return false;
    },
    ipAddr,
  };
}

function checkReaches(
  a: Assertion,
  conn: Connectivity,
  places: Places,
  tag: (ep: number, w: number | undefined) => number,
  maxExamples: number,
): AssertionOutcome {
  const ir = conn.ir;
  const units = buildUnits(places, workloadGrouping, tag);
  const m = new GroupMatrix(conn, units, { fromUnit: (u) => (units.unitTag[u] & 1) === 1, toUnit: (u) => (units.unitTag[u] & 2) === 2 });
  const res = conn.results;
  const srcW = new Set<number>();
  const dstW = new Set<number>();
  units.unitEp.forEach((_, u) => {
    for (const w of units.unitMembers[u]) {
      if (m.activeSrc[u]) srcW.add(w);
      if (m.activeDst[u]) dstW.add(w);
    }
  });
  const byName = (x: number, y: number) => (ir.workloads[x].name < ir.workloads[y].name ? -1 : 1);
  const sources = [...srcW].sort(byName);
  const targets = [...dstW].sort(byName);
  const violations: Violation[] = [];
  const examples: Counterexample[] = [];
  for (const w1 of sources) {
    for (const w2 of targets) {
      if (w1 === w2) continue;
      if (!ir.workloads[w1].managed && !ir.workloads[w2].managed) continue; // outside the policy
      const pairs = places.seats[w1].flatMap((s1) => places.seats[w2].filter((s2) => places.family[s1.endpoint] === places.family[s2.endpoint]).map((s2) => [s1, s2] as const));
      if (pairs.length === 0) continue; // no address of one family: no flow at all
      const g1 = units.groupIndex.get(ir.workloads[w1].name)!;
      const g2 = units.groupIndex.get(ir.workloads[w2].name)!;
      const have = res.get(m.cell(g1, g2)).conns;
      const missing = a.ports.subtract(have);
      if (missing.isEmpty()) continue;
      const key = missing.keys.bounds[0];
      const [s1, s2] = pairs[0];
      const denies = conn.denyingRules(s1.endpoint, s2.endpoint, key).map((k) => ir.rules[k].rule.id);
      violations.push({ from: ir.workloads[w1].name, to: ir.workloads[w2].name, conns: missing, rules: denies, open: false });
      if (examples.length < maxExamples) {
        examples.push({ from: placeOf(places, s1.endpoint, w1), to: placeOf(places, s2.endpoint, w2), connection: connectionText(key), outcome: 'denied', rules: denies, open: false });
      }
    }
  }
  return { assertion: a, holds: violations.length === 0, violations, examples };
}
