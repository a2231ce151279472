/**
 * `bulkhead lint`: pure analysis of a resolved policy for rules that are too
 * broad, rules that can never decide anything (shadowed, dead, over empty
 * groups) and workloads that are unlabeled or would be cut off when enforced.
 *
 * Every finding is sound: a rule is reported as shadowed or dead only when
 * another rule, or several together, provably match every (source,
 * destination, connection) it matches, by checks on the IR's class bitsets,
 * address atoms and connection sets (the IR sides already include the
 * ruleset scope). Rules reported as redundant can all be removed at once.
 */
import { hasPorts, protocolName } from '../netset/connset.js';
import { IpSet } from '../netset/ip.js';
import { BitsBuilder } from '../netset/bits.js';
import { q, type Loc, type Severity } from '../model/diagnostic.js';
import type { SelectorNode } from '../model/selector.js';
import type { Peer, Rule } from '../model/types.js';
import type { Ir, IrRule, PeerSet } from '../policy/ir.js';

/**
 * The stable lint codes. A code never changes meaning once released.
 * To be merged into `CODES` in src/model/diagnostic.ts.
 */
export const LINT_CODES = {
  BH1101: 'overly broad rule',
  BH1102: 'rule over an empty group',
  BH1103: 'shadowed allow rule',
  BH1104: 'allow rule made dead by a deny rule',
  BH1105: 'unlabeled workload',
  BH1106: 'enforced workload with no allow rules',
} as const;

/** A lint code (see {@link LINT_CODES}). */
export type LintCode = keyof typeof LINT_CODES;

/** One lint finding, shaped like a diagnostic. */
export interface Finding {
  readonly code: LintCode;
  readonly severity: Severity;
  readonly message: string;
  readonly loc?: Loc;
  readonly help: string;
  /** The id of the rule the finding is about, when it is about a rule. */
  readonly rule?: string;
  /** The name of the workload the finding is about, when it is about a workload. */
  readonly workload?: string;
}

/** Lint settings. */
export interface LintOptions {
  /** A port range wider than this many ports is overly broad (default 1000). */
  readonly maxPortRange?: number;
}

/** The standard label dimensions a managed workload should carry. */
export const STANDARD_DIMENSIONS = ['role', 'app', 'env', 'loc'] as const;

/** Lints a resolved policy; findings sorted by file, line, column and code. */
export function lint(ir: Ir, options: LintOptions = {}): Finding[] {
  const maxRange = options.maxPortRange ?? 1000;
  const out: Finding[] = [];
  for (const r of ir.rules) broad(r, maxRange, out);
  for (const r of ir.rules) empty(r, out);
  covered(ir, out);
  unlabeled(ir, out);
  cutOff(ir, out);
  return out
    .map((f, i) => ({ f, i }))
    .sort((a, b) => compareLoc(a.f.loc, b.f.loc) || (a.f.code < b.f.code ? -1 : a.f.code > b.f.code ? 1 : 0) || a.i - b.i)
    .map((x) => x.f);
}

function compareLoc(a: Loc | undefined, b: Loc | undefined): number {
  if (!a || !b) return a ? 1 : b ? -1 : 0;
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return a.line - b.line || a.col - b.col;
}

function ruleName(rule: Rule): string {
  return `rule ${q(rule.id)}`;
}

// ---------------------------------------------------------------- broad rules

/** The label names a selector tests. */
function labelsOf(node: SelectorNode, into: Set<string>): Set<string> {
  switch (node.kind) {
    case 'all':
    case 'global':
      break;
    case 'not':
      labelsOf(node.expr, into);
      break;
    case 'and':
    case 'or':
      for (const e of node.exprs) labelsOf(e, into);
      break;
    default:
      into.add(node.label);
  }
  return into;
}

/** Whether a side is everything: `any`, an address set holding every address, or an unscoped `all()`. */
function isEverything(peers: readonly Peer[], rule: Rule): boolean {
  return peers.some((p) => {
    if (p.kind === 'any') return true;
    if (p.kind === 'ips') return p.set.equals(IpSet.ALL);
    if (p.kind === 'selector') return labelsOf(p.selector.ast, new Set()).size === 0 && (p.global || labelsOf(rule.scope.ast, new Set()).size === 0);
    return false;
  });
}

/** Whether a side is made of selectors that, with the scope, test only `env` (and do test it). */
function isWholeEnv(peers: readonly Peer[], rule: Rule): boolean {
  if (peers.length === 0) return false;
  const labels = new Set<string>();
  for (const p of peers) {
    if (p.kind !== 'selector') return false;
    labelsOf(p.selector.ast, labels);
    if (!p.global) labelsOf(rule.scope.ast, labels);
  }
  return labels.size === 1 && labels.has('env');
}

function broad(r: IrRule, maxRange: number, out: Finding[]): void {
  const rule = r.rule;
  if (rule.action !== 'allow') return;
  const base = { loc: rule.loc, rule: rule.id } as const;
  if (isEverything(rule.from, rule) && isEverything(rule.to, rule)) {
    // On every service, any to any is an error; on a few (path-MTU discovery, ping) a warning to review.
    out.push({ ...base, code: 'BH1101', severity: rule.conns.isAny() ? 'error' : 'warning', message: `${ruleName(rule)} allows any source to any destination`, help: 'name the groups that need to talk: selectors on `role` and `app`, or IP lists' });
  } else if (isWholeEnv(rule.from, rule) && isWholeEnv(rule.to, rule)) {
    out.push({ ...base, code: 'BH1101', severity: 'warning', message: `${ruleName(rule)} allows a whole environment to a whole environment`, help: 'narrow both sides with `role` or `app`, so one compromised workload does not reach the whole environment' });
  }
  if (rule.conns.isAny()) {
    out.push({ ...base, code: 'BH1101', severity: 'warning', message: `${ruleName(rule)} allows every service`, help: 'list the services the destination offers, such as `443/tcp`' });
    return;
  }
  let widest: { proto: number; lo: number; hi: number } | undefined;
  for (const e of rule.conns.entries()) {
    if (!hasPorts(e.proto)) continue;
    for (const [lo, hi] of e.ranges) if (hi - lo + 1 > maxRange && (!widest || hi - lo > widest.hi - widest.lo)) widest = { proto: e.proto, lo, hi };
  }
  if (widest) {
    const name = protocolName(widest.proto) ?? String(widest.proto);
    const text = widest.lo === 0 && widest.hi === 65535 ? `every ${name} port` : `${name} ports ${widest.lo}-${widest.hi}`;
    out.push({ ...base, code: 'BH1101', severity: 'warning', message: `${ruleName(rule)} allows ${text} (${widest.hi - widest.lo + 1} ports)`, help: `list the ports the destination listens on; a range should span at most ${maxRange} ports` });
  }
}

// ---------------------------------------------------------------- empty groups

function isEmptySide(s: PeerSet): boolean {
  return s.classes.isEmpty() && s.ips.isEmpty();
}

function empty(r: IrRule, out: Finding[]): void {
  const sides = [isEmptySide(r.from) ? '`from`' : undefined, isEmptySide(r.to) ? '`to`' : undefined].filter((s) => s !== undefined);
  if (sides.length === 0) return;
  out.push({
    code: 'BH1102',
    severity: 'warning',
    message: `${ruleName(r.rule)} can match nothing: its ${sides.join(' and ')} ${sides.length === 1 ? 'side holds' : 'sides hold'} no workload and no address`,
    loc: r.rule.loc,
    rule: r.rule.id,
    help: 'check the selectors against the workloads’ labels and the ruleset scope, or remove the rule',
  });
}

// ---------------------------------------------------------------- shadowed and dead rules

function sideCovers(outer: PeerSet, inner: PeerSet): boolean {
  return inner.classes.isSubset(outer.classes) && inner.ips.isSubset(outer.ips);
}

const FIRSTS = new WeakMap<IrRule, readonly [number, number]>();

/** The lowest class of a rule's `to` and `from` (-1 when none), memoized: a one-bit test before a subset test. */
function firstClasses(r: IrRule): readonly [number, number] {
  let f = FIRSTS.get(r);
  if (!f) FIRSTS.set(r, (f = [r.to.classes.isEmpty() ? -1 : r.to.classes.first(), r.from.classes.isEmpty() ? -1 : r.from.classes.first()]));
  return f;
}

/** Whether `o` matches every (source, destination, connection) that `r` matches, on every host. */
function covers(o: IrRule, r: IrRule): boolean {
  // A service limited to a program or user matches less than its connections on hosts.
  if (limited(o)) return false;
  // Connections first: a few intervals against thousands of class bits; then one class bit each side.
  const [rt, rf] = firstClasses(r);
  if ((rt >= 0 && !o.to.classes.has(rt)) || (rf >= 0 && !o.from.classes.has(rf))) return false;
  return r.conns.isSubset(o.conns) && sideCovers(o.to, r.to) && sideCovers(o.from, r.from);
}

/** A rule with a service limited to a program or user matches less than its connections on hosts: it covers nothing. */
function limited(o: IrRule): boolean {
  return o.rule.services.some((s) => s.process !== undefined || s.user !== undefined);
}

/** The most (source × destination × connection segment) cells a union check looks at for one rule. */
const UNION_CELLS = 200_000;

/**
 * The rules among `cands` that together match every (source, destination,
 * connection) `r` matches, or undefined when they do not (or the check would
 * look at more than {@link UNION_CELLS} cells). Sides are compared element by
 * element, as {@link covers} does: workload classes against classes, address
 * atoms against atoms; connections are cut into segments on which no
 * candidate changes.
 */
function unionCover(r: IrRule, cands: readonly IrRule[]): IrRule[] | undefined {
  // Cheapest tests first: most rules name other ports, and connection sets are a few intervals.
  const useful = cands.filter((o) => o !== r && o.conns.overlaps(r.conns) && !limited(o) && (o.to.classes.intersects(r.to.classes) || o.to.atoms.intersects(r.to.atoms)) && (o.from.classes.intersects(r.from.classes) || o.from.atoms.intersects(r.from.atoms)));
  if (useful.length < 2) return undefined; // one rule is the single-cover check's business
  // Connection segments of r on which no useful rule changes.
  const rb = r.conns.boundaries();
  const cuts = new Set<number>();
  for (let i = 0; i < rb.length; i += 2) cuts.add(rb[i]).add(rb[i + 1] + 1);
  for (const o of useful) {
    const ob = o.conns.boundaries();
    for (let i = 0; i < ob.length; i += 2) cuts.add(ob[i]).add(ob[i + 1] + 1);
  }
  const points = [...cuts].sort((a, b) => a - b);
  const segments: number[] = [];
  for (let i = 0; i + 1 < points.length; i++) if (r.conns.hasKey(points[i])) segments.push(points[i]);
  const from = [...r.from.classes.indices().map((c) => ({ c })), ...r.from.atoms.indices().map((a) => ({ a }))];
  const to = [...r.to.classes.indices().map((c) => ({ c })), ...r.to.atoms.indices().map((a) => ({ a }))];
  if (from.length * to.length * segments.length > UNION_CELLS) return undefined;
  const holds = (side: PeerSet, e: { c?: number; a?: number }) => (e.c !== undefined ? side.classes.has(e.c) : side.atoms.has(e.a!));
  const used = new Set<IrRule>();
  for (const k of segments) {
    const here = useful.filter((o) => o.conns.hasKey(k));
    for (const f of from) {
      const withF = here.filter((o) => holds(o.from, f));
      for (const t of to) {
        const o = withF.find((x) => holds(x.to, t));
        if (!o) return undefined;
        used.add(o);
      }
    }
  }
  return [...used].sort((a, b) => a.index - b.index);
}

/** Rules whose `to` names at most this many classes are indexed by class; wider ones are always candidates. */
const NARROW_TO = 64;

/**
 * A prefilter for {@link unionCover}: the rules whose destinations may meet
 * a rule's (by class, through an index of the narrow ones, plus every wide
 * rule and every rule with addresses), so the exact test runs on few pairs.
 */
function destinationIndex(rules: readonly IrRule[]): (r: IrRule) => IrRule[] {
  const byClass = new Map<number, IrRule[]>();
  const always: IrRule[] = [];
  for (const o of rules) {
    if (!o.to.atoms.isEmpty() || o.to.classes.count() > NARROW_TO) {
      always.push(o);
      continue;
    }
    for (const c of o.to.classes.indices()) {
      let l = byClass.get(c);
      if (!l) byClass.set(c, (l = []));
      l.push(o);
    }
  }
  return (r) => {
    const out = new Set<IrRule>(always);
    if (r.to.classes.count() > NARROW_TO * 16) return rules.slice();
    for (const c of r.to.classes.indices()) for (const o of byClass.get(c) ?? []) out.add(o);
    return [...out].sort((a, b) => a.index - b.index);
  };
}

const ids = (rules: readonly IrRule[]) => {
  const shown = rules.slice(0, 5).map((o) => q(o.rule.id));
  return rules.length > 5 ? `${shown.join(', ')} and ${rules.length - 5} more` : shown.join(', ');
};

/**
 * The rules of `rules` whose connections include `r`'s, in rule order: rules
 * are bucketed by connection set (a policy has far fewer distinct ones than
 * rules), so a cover check tests a few buckets instead of every rule.
 */
const wider = (() => {
  const memo = new WeakMap<readonly IrRule[], { buckets: { conns: IrRule['conns']; rules: IrRule[] }[]; hit: Map<string, IrRule[]> }>();
  return (rules: readonly IrRule[], r: IrRule): IrRule[] => {
    let m = memo.get(rules);
    if (!m) {
      const byKey = new Map<string, { conns: IrRule['conns']; rules: IrRule[] }>();
      for (const o of rules) {
        const k = o.conns.toString();
        let b = byKey.get(k);
        if (!b) byKey.set(k, (b = { conns: o.conns, rules: [] }));
        b.rules.push(o);
      }
      memo.set(rules, (m = { buckets: [...byKey.values()], hit: new Map() }));
    }
    const k = r.conns.toString();
    let out = m.hit.get(k);
    if (!out) {
      out = m.buckets.filter((b) => r.conns.isSubset(b.conns)).flatMap((b) => b.rules).sort((a, b) => a.index - b.index);
      m.hit.set(k, out);
    }
    return out;
  };
})();

function covered(ir: Ir, out: Finding[]): void {
  const allows = ir.rules.filter((r) => r.rule.tier === 'allow' && !isEmptySide(r.from) && !isEmptySide(r.to) && !r.conns.isEmpty());
  const denies = ir.rules.filter((r) => r.rule.tier === 'deny');
  const reported = new Set<IrRule>();
  const rest: IrRule[] = [];
  for (const r of allows) {
    const deny = wider(denies, r).find((d) => covers(d, r));
    const together = deny ? undefined : unionCover(r, denies);
    if (deny || together) {
      out.push({
        code: 'BH1104',
        severity: 'warning',
        message: deny
          ? `${ruleName(r.rule)} can never allow anything: deny rule ${q(deny.rule.id)} matches everything it matches`
          : `${ruleName(r.rule)} can never allow anything: deny rules ${ids(together!)} together match everything it matches`,
        loc: r.rule.loc,
        rule: r.rule.id,
        help: 'deny rules win over allow rules: remove the allow rule, or narrow the deny rules',
      });
      reported.add(r);
      continue;
    }
    // Of two rules that cover each other (equal), only the later one is reported.
    const other = wider(allows, r).find((o) => o !== r && covers(o, r) && (o.index < r.index || !covers(r, o)));
    if (other) {
      out.push({
        code: 'BH1103',
        severity: 'warning',
        message: `${ruleName(r.rule)} is redundant: allow rule ${q(other.rule.id)} already allows everything it allows`,
        loc: r.rule.loc,
        rule: r.rule.id,
        help: 'remove the rule, or narrow the wider rule if it allows too much',
      });
      reported.add(r);
    } else rest.push(r);
  }
  // Covered by several allow rules together. Later rules first, and never by a rule already reported, so
  // every reported rule stays covered by the rules not reported: removing all of them changes nothing.
  const near = destinationIndex(allows);
  for (const r of rest.reverse()) {
    const together = unionCover(r, near(r).filter((o) => !reported.has(o)));
    if (!together) continue;
    out.push({
      code: 'BH1103',
      severity: 'warning',
      message: `${ruleName(r.rule)} is redundant: allow rules ${ids(together)} together already allow everything it allows`,
      loc: r.rule.loc,
      rule: r.rule.id,
      help: 'remove the rule, or narrow the wider rules if they allow too much',
    });
    reported.add(r);
  }
}

// ---------------------------------------------------------------- workloads

function unlabeled(ir: Ir, out: Finding[]): void {
  const dims = ir.policy.taxonomy?.dimensions;
  if (!dims) return;
  const wanted = STANDARD_DIMENSIONS.filter((d) => dims.has(d));
  for (const w of ir.workloads) {
    if (!w.managed) continue;
    const missing = wanted.filter((d) => w.labels[d] === undefined);
    if (missing.length === 0) continue;
    out.push({
      code: 'BH1105',
      severity: 'warning',
      message: `workload ${q(w.name)} has no ${missing.map((m) => q(m)).join(', ')} label${missing.length === 1 ? '' : 's'}`,
      loc: w.loc,
      workload: w.name,
      help: 'rules select workloads by label: an unlabeled workload falls outside every label-based rule',
    });
  }
}

function cutOff(ir: Ir, out: Finding[]): void {
  const allows = ir.rules.filter((r) => r.rule.action === 'allow' && !r.conns.isEmpty());
  // Every class and address any allow rule names, on either side, computed once.
  const named = new BitsBuilder(ir.classes.length);
  let ips = IpSet.EMPTY;
  for (const r of allows) {
    named.or(r.from.classes).or(r.to.classes);
    ips = ips.union(r.from.ips).union(r.to.ips);
  }
  for (const c of ir.classes) {
    if (!c.managed || c.mode !== 'enforce') continue;
    if (named.has(c.id)) continue;
    const addrs = IpSet.fromPrefixes(c.members.flatMap((m) => ir.workloads[m].addresses));
    if (ips.overlaps(addrs)) continue;
    for (const m of c.members) {
      const w = ir.workloads[m];
      const app = w.labels.app;
      out.push({
        code: 'BH1106',
        severity: 'error',
        message: `workload ${q(w.name)} is set to enforce but no allow rule applies to it${app !== undefined ? ` (app ${q(app)})` : ''}: all its traffic would be dropped`,
        loc: w.loc,
        workload: w.name,
        help: 'add allow rules for its app, or set it to `test` mode until they exist',
      });
    }
  }
}
