/** `bulkhead blast-radius`: what an attacker on a workload reaches, directly and by lateral movement. */
import { Command, Option } from 'commander';
import type { Selector } from '../model/selector.js';
import { blastRadius, compareBlast, LATERAL_DEFAULT, SENSITIVE_DEFAULT, type Hop } from '../analysis/blast.js';
import { Connectivity } from '../analysis/connectivity.js';
import { buildUnits, GroupMatrix, labelGrouping } from '../analysis/matrix.js';
import { addrText, buildPlaces, type Place } from '../analysis/places.js';
import type { Ir } from '../policy/ir.js';
import { EXIT, UsageError, type Io } from './common.js';
import { collect, DEFAULT_BY, loadForAnalysis, parsePorts, parseSelectorOption } from './reach.js';
import { plural, shortList, table } from './render.js';
import { closest, q } from '../model/diagnostic.js';

/** Options of `bulkhead blast-radius`. */
export interface BlastCliOptions {
  sensitive?: string[];
  port?: string[];
  asDeployed?: boolean;
  maxHops?: string;
  compare?: string;
  limit: string;
  output: string;
  now?: string;
}

/** The workloads an attacker starts on: a workload name, or every workload a selector matches. */
export function startWorkloads(ir: Ir, target: string): number[] {
  const byName = ir.workloads.findIndex((w) => w.name === target);
  if (byName >= 0) return [byName];
  if (/^[A-Za-z0-9_.-]+$/.test(target)) {
    const guess = closest(target, ir.workloads.map((w) => w.name));
    throw new UsageError(`${q(target)} is neither a workload nor a selector${guess ? `; did you mean ${q(guess)}?` : ''}`);
  }
  const sel = parseSelectorOption(target, 'target');
  const classes = ir.selectClasses(sel);
  const out: number[] = [];
  ir.workloads.forEach((_, i) => classes.has(ir.classOf[i]) && out.push(i));
  if (out.length === 0) throw new UsageError(`selector ${q(target)} matches no workload`);
  return out;
}

function placeText(p: Place): string {
  return p.workload ? `${p.workload} (${addrText(p.addr)})` : `${addrText(p.addr)} (${p.ip})`;
}

function hopText(h: Hop): string {
  return `${placeText(h.from)} -> ${placeText(h.to)} on ${h.conns.toString()} [${h.rules.join(', ')}]`;
}

/** The labels that make a workload sensitive, for display: those the selectors name. */
function sensitiveLabels(ir: Ir, w: number, selectors: readonly Selector[]): string {
  const keys = new Set(selectors.flatMap((s) => s.references().map((r) => r.label)));
  const labels = ir.workloads[w].labels;
  const shown = [...keys].filter((k) => Object.hasOwn(labels, k)).map((k) => `${k}=${labels[k]}`);
  return shown.join(',') || '-';
}

/** Runs `bulkhead blast-radius`; returns the exit code. */
export function runBlast(dir: string, target: string, opts: BlastCliOptions, io: Io): number {
  const ports = parsePorts(opts.port) ?? LATERAL_DEFAULT;
  const selectors = (opts.sensitive && opts.sensitive.length > 0 ? opts.sensitive : [SENSITIVE_DEFAULT]).map((s) => parseSelectorOption(s, '--sensitive'));
  const limit = Number(opts.limit);
  if (!Number.isInteger(limit) || limit < 0) throw new UsageError(`--limit must be a whole number, not \`${opts.limit}\``);
  const maxHops = opts.maxHops === undefined ? undefined : Number(opts.maxHops);
  if (maxHops !== undefined && (!Number.isInteger(maxHops) || maxHops < 1)) throw new UsageError(`--max-hops must be a whole number of at least 1, not \`${opts.maxHops}\``);
  const c = loadForAnalysis(dir, opts.now, io, 'compute the blast radius');
  if (!c) return EXIT.policyErrors;
  const start = startWorkloads(c.ir, target);
  const run = (ir: Ir, startW: number[]) => {
    const places = buildPlaces(ir);
    const conn = new Connectivity(ir, { ports, deployed: opts.asDeployed === true, places });
    return { conn, result: blastRadius(conn, startW, { sensitive: selectors, maxHops }) };
  };
  const { conn, result } = run(c.ir, start);
  const ir = c.ir;
  const names = ir.workloads.map((w) => w.name);

  // Direct reach per label group, with ports and rules: the row of the start workloads in a group matrix where they form a group of their own.
  const startNames = new Set(start.map((w) => names[w]));
  const grouping = labelGrouping(DEFAULT_BY);
  const startGroup = '(start)';
  const units = buildUnits(conn.places, { name: grouping.name, ofWorkload: (w) => (startNames.has(w.name) ? startGroup : grouping.ofWorkload(w)), ofAtom: grouping.ofAtom });
  const m = new GroupMatrix(conn, units, { fromUnit: (u) => units.unitGroup[u] === units.groupIndex.get(startGroup) });
  const reachedIn = new Map<string, number>();
  result.hops.forEach((h, w) => {
    if (h === 1) {
      const g = grouping.ofWorkload(ir.workloads[w]);
      reachedIn.set(g, (reachedIn.get(g) ?? 0) + 1);
    }
  });
  const direct = [...m.rowCells(units.groupIndex.get(startGroup)!)].map((cell) => {
    const r = conn.results.get(cell.result);
    const group = units.groups[cell.to];
    return { group, workloads: reachedIn.get(group) ?? 0, ports: r.conns.toString(), rules: r.rules.map((k) => ir.rules[k].rule.id), notEnforced: r.open };
  });

  let comparison: ReturnType<typeof compareBlast> | undefined;
  if (opts.compare !== undefined) {
    const b = loadForAnalysis(opts.compare, opts.now, io, 'compare');
    if (!b) return EXIT.policyErrors;
    const bStart: number[] = [];
    b.ir.workloads.forEach((w, i) => startNames.has(w.name) && bStart.push(i));
    if (bStart.length === 0) throw new UsageError(`none of the start workloads is in ${q(opts.compare)}`);
    comparison = compareBlast(result, names, run(b.ir, bStart).result, b.ir.workloads.map((w) => w.name));
  }

  const startText = start.length === 1 ? names[start[0]] : `${target} (${plural(start.length, 'workload')})`;
  const mode = opts.asDeployed ? 'as deployed' : 'as enforced';
  const portsText = opts.port ? ports.toString() : 'every protocol but ICMP';
  const total = ir.workloads.length - start.length;
  const shown = <T>(list: readonly T[]) => (limit === 0 ? list : list.slice(0, limit));

  if (opts.output === 'json') {
    const hopJson = (h: Hop) => ({ from: placeJson(h.from), to: placeJson(h.to), ports: h.conns.toString(), rules: h.rules });
    io.out(
      JSON.stringify(
        {
          start: start.map((w) => names[w]),
          mode: opts.asDeployed ? 'deployed' : 'enforced',
          ports: ports.toString(),
          sensitive: selectors.map((s) => s.source),
          reached: result.reached,
          workloads: total,
          perHop: result.perHop.slice(1),
          sensitiveReached: result.sensitive.length,
          sensitiveTotal: result.sensitiveTotal,
          direct,
          sensitiveWorkloads: shown(result.sensitive).map((s) => ({ workload: names[s.workload], rank: s.rank + 1, hops: s.hops, labels: sensitiveLabels(ir, s.workload, selectors), path: result.pathTo(s.workload).map(hopJson) })),
          external: result.external.map((e) => ({ ip: e.label, hops: e.hops, path: e.path.map(hopJson) })),
          ...(comparison ? { compare: { dir: opts.compare, ...comparison } } : {}),
        },
        null,
        2,
      ),
    );
    return EXIT.ok;
  }

  const out: string[] = [];
  out.push(`blast radius of ${startText}, ${mode}, over ${portsText}`);
  const hopsText = result.perHop
    .slice(1)
    .map((n, i) => (i === 0 ? `${n} directly` : `${n} in ${i + 1} hops`))
    .join(', ');
  out.push(`  reaches ${result.reached} of ${plural(total, 'other workload')}${result.reached > 0 ? `: ${hopsText}` : ''}`);
  out.push(`  sensitive: ${result.sensitive.length} of ${result.sensitiveTotal} reached (${selectors.map((s) => q(s.source)).join(', then ')})`);
  if (result.external.length > 0) out.push(`  addresses outside the estate reached: ${result.external.map((e) => `${e.label} (${plural(e.hops, 'hop')})`).join(', ')}`);
  if (direct.length > 0) {
    out.push('', 'direct (one hop):');
    out.push(indent(table([['group', 'reached', 'ports', 'rules'], ...shown(direct).map((d) => [d.group, d.group.startsWith('ip:') ? '-' : String(d.workloads), d.ports, shortList(d.rules) + (d.notEnforced ? ' (not enforced)' : '')])])));
    if (limit > 0 && direct.length > limit) out.push(`  … and ${direct.length - limit} more groups (--limit 0 shows all)`);
  }
  if (result.sensitive.length > 0) {
    out.push('', 'sensitive workloads reached (most sensitive, then nearest, first):');
    out.push(indent(table([['rank', 'workload', 'labels', 'hops'], ...shown(result.sensitive).map((s) => [String(s.rank + 1), names[s.workload], sensitiveLabels(ir, s.workload, selectors), String(s.hops)])])));
    if (limit > 0 && result.sensitive.length > limit) out.push(`  … and ${result.sensitive.length - limit} more (--limit 0 shows all)`);
    out.push('', 'shortest paths:');
    for (const s of shown(result.sensitive).slice(0, limit === 0 ? undefined : Math.min(limit, 5))) {
      out.push(`  ${names[s.workload]} (${plural(s.hops, 'hop')}):`);
      for (const h of result.pathTo(s.workload)) out.push(`    ${hopText(h)}`);
    }
  }
  if (comparison) {
    const line = (what: string, a: number, b: number) => {
      const d = b - a;
      const pct = a > 0 ? ` (${Math.abs(Math.round((d / a) * 100))}% ${d <= 0 ? 'smaller' : 'larger'})` : '';
      return `  ${what.padEnd(20)} ${a} -> ${b}${d === 0 ? ', unchanged' : `, ${d > 0 ? '+' : ''}${d}${pct}`}`;
    };
    out.push('', `compared with ${opts.compare}:`);
    out.push(line('reachable workloads', comparison.before.reached, comparison.after.reached));
    out.push(line('sensitive workloads', comparison.before.sensitive, comparison.after.sensitive));
    out.push(line('outside addresses', comparison.before.external, comparison.after.external));
    if (comparison.sensitiveGone.length > 0) out.push(`  no longer reachable: ${shortList(comparison.sensitiveGone, limit || Infinity)}`);
    if (comparison.sensitiveNew.length > 0) out.push(`  newly reachable: ${shortList(comparison.sensitiveNew, limit || Infinity)}`);
  }
  io.out(out.join('\n'));
  return EXIT.ok;
}

function placeJson(p: Place): Record<string, string> {
  return p.workload ? { workload: p.workload, address: addrText(p.addr) } : { address: addrText(p.addr), ip: p.ip! };
}

function indent(s: string): string {
  return s
    .split('\n')
    .map((l) => '  ' + l)
    .join('\n');
}

/** Adds `bulkhead blast-radius` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('blast-radius')
    .description('what an attacker on a workload reaches, directly and by lateral movement, and the shortest path to each sensitive workload')
    .argument('<dir>', 'policy directory')
    .argument('<workload|selector>', 'the workload the attacker holds, or a selector for several')
    .option('--sensitive <selector>', `what counts as sensitive, most sensitive first (repeatable; default \`${SENSITIVE_DEFAULT}\`)`, collect)
    .option('--port <entries>', 'connections lateral movement may use (default: every protocol but ICMP; repeatable, or comma-separated)', collect)
    .option('--as-deployed', 'count modes as deployed: ends in test, idle or visibility mode let everything through')
    .option('--max-hops <n>', 'stop after this many hops')
    .option('--compare <dir>', 'a second version of the policy: how much the radius shrank')
    .option('--limit <n>', 'rows per list (0: all)', '20')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601) instead of now'))
    .addHelpText(
      'after',
      `
The attacker holds the workload and moves over every flow the policy lets
through (as enforced by default), one hop at a time: each workload reached is
held in turn. Addresses outside the estate (the internet, partners) are
reported but not moved through. ICMP is left out unless --port names it.

Examples:
  bulkhead blast-radius examples/estate/policy shop-prod-web-1
  bulkhead blast-radius examples/estate/policy "app == 'crm' && role == 'web'" --sensitive "compliance == 'pci'" --sensitive "has(compliance)"
  bulkhead blast-radius policy/ web-1 --compare policy-next/ --output json`,
    )
    .action((dir: string, target: string, opts: BlastCliOptions) => {
      prog.setOptionValue('exit', runBlast(dir, target, opts, io));
    });
}
