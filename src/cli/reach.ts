/**
 * `bulkhead reach`: the reachability matrix between label groups or
 * workloads, and what the analysis commands share (loading a policy for
 * analysis, the `--port`, `--by` and selector options).
 */
import { Command, Option } from 'commander';
import { ConnSet } from '../netset/connset.js';
import { closest, q } from '../model/diagnostic.js';
import { parseSelector, type Selector } from '../model/selector.js';
import { parsePortText } from '../policy/ports.js';
import { Connectivity } from '../analysis/connectivity.js';
import { buildUnits, GroupMatrix, labelGrouping, workloadGrouping, type Grouping } from '../analysis/matrix.js';
import { EXIT, loadDir, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { csvField, dotId, markdownTable, shortList, summary, table } from './render.js';

/** The default label keys of `--by`. */
export const DEFAULT_BY = ['role', 'app', 'env'];

/** Collects a repeatable option. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Parses `--port` values (repeatable, each a comma-separated list of service entries) into one connection set; undefined when none. */
export function parsePorts(values: readonly string[] | undefined, flag = '--port'): ConnSet | undefined {
  if (!values || values.length === 0) return undefined;
  let conns = ConnSet.EMPTY;
  for (const v of values) {
    for (const part of v.split(',')) {
      if (part.trim() === '') continue;
      const r = parsePortText(part);
      if (!r.ok) throw new UsageError(`invalid ${flag} \`${part.trim()}\`: ${r.message}${r.help ? `; ${r.help}` : ''}`);
      conns = conns.union(r.conns);
    }
  }
  return conns;
}

/** Parses a selector option; a usage error when invalid. */
export function parseSelectorOption(text: string, flag: string): Selector {
  const r = parseSelector(text);
  if (!r.ok) throw new UsageError(`invalid ${flag} selector \`${text}\`: ${r.error.message}`);
  return r.selector;
}

/** Parses `--by`: `workload`, or a comma-separated list of label keys. */
export function parseBy(text: string | undefined): Grouping {
  if (text === undefined) return labelGrouping(DEFAULT_BY);
  if (text.trim() === 'workload') return workloadGrouping;
  const keys = text.split(',').map((k) => k.trim()).filter((k) => k !== '');
  if (keys.length === 0 || keys.some((k) => !/^[A-Za-z0-9_./-]+$/.test(k))) throw new UsageError(`invalid --by \`${text}\`: write \`workload\` or label keys such as \`role,app,env\``);
  return labelGrouping(keys);
}

/** Loads a policy for an analysis; prints its errors and returns undefined when it has any. */
export function loadForAnalysis(dir: string, now: string | undefined, io: Io, what: string) {
  const c = loadDir(dir, parseNow(now));
  if (c.diagnostics.hasErrors()) {
    printDiagnostics(c.diagnostics.sorted().filter((d) => d.severity === 'error'), c.texts, io);
    io.err(`cannot ${what}: the policy has problems (${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)}); run \`bulkhead validate ${dir}\``);
    return undefined;
  }
  return c;
}

/** Options of `bulkhead reach`. */
export interface ReachOptions {
  by?: string;
  from?: string;
  to?: string;
  port?: string[];
  asDeployed?: boolean;
  output: string;
  now?: string;
}

/** One row of the reach report. */
interface ReachPair {
  from: string;
  to: string;
  ports: string;
  rules: string[];
  open: boolean;
}

/** Runs `bulkhead reach`; returns the exit code. */
export function runReach(dir: string, opts: ReachOptions, io: Io): number {
  const grouping = parseBy(opts.by);
  const from = opts.from === undefined ? undefined : parseSelectorOption(opts.from, '--from');
  const to = opts.to === undefined ? undefined : parseSelectorOption(opts.to, '--to');
  const ports = parsePorts(opts.port);
  const c = loadForAnalysis(dir, opts.now, io, 'compute reachability');
  if (!c) return EXIT.policyErrors;
  const conn = new Connectivity(c.ir, { ports, deployed: opts.asDeployed === true });
  const units = buildUnits(conn.places, grouping);
  const m = new GroupMatrix(conn, units, { fromClasses: from && c.ir.selectClasses(from), toClasses: to && c.ir.selectClasses(to) });
  const res = conn.results;
  const pairs: ReachPair[] = [];
  for (const cell of m.cells()) {
    const r = res.get(cell.result);
    pairs.push({ from: units.groups[cell.from], to: units.groups[cell.to], ports: r.conns.toString(), rules: r.rules.map((k) => c.ir.rules[k].rule.id), open: r.open });
  }
  const mode = opts.asDeployed ? 'as deployed' : 'as enforced';
  const rulesText = (p: ReachPair) => shortList(p.rules) + (p.open ? `${p.rules.length > 0 ? ', ' : ''}(not enforced)` : '');
  const sizes = m.groupSizes();
  switch (opts.output) {
    case 'json':
      io.out(
        JSON.stringify(
          {
            by: grouping.name,
            mode: opts.asDeployed ? 'deployed' : 'enforced',
            ports: conn.ports.toString(),
            from: opts.from ?? null,
            to: opts.to ?? null,
            groups: m.order.filter((g) => m.isSource[g] || m.isTarget[g]).map((g) => ({ name: units.groups[g], workloads: sizes[g] })),
            pairs: pairs.map((p) => ({ from: p.from, to: p.to, ports: p.ports, rules: p.rules, ...(p.open ? { notEnforced: true } : {}) })),
          },
          null,
          2,
        ),
      );
      break;
    case 'csv':
      io.out(['from,to,ports,rules', ...pairs.map((p) => [p.from, p.to, p.ports, p.rules.join(' ') + (p.open ? `${p.rules.length > 0 ? ' ' : ''}(not-enforced)` : '')].map(csvField).join(','))].join('\n'));
      break;
    case 'markdown':
      io.out(`# Reachability by ${grouping.name}, ${mode}\n`);
      io.out(markdownTable([['from', 'to', 'ports', 'rules'], ...pairs.map((p) => [p.from, p.to, p.ports, rulesText(p)])]));
      break;
    case 'dot': {
      const nodes = new Set<string>();
      for (const p of pairs) nodes.add(p.from).add(p.to);
      io.out(
        [
          `digraph reach {`,
          `  label=${dotId(`reachability by ${grouping.name}, ${mode}`)};`,
          '  rankdir=LR;',
          '  node [shape=box, fontname="Helvetica"];',
          '  edge [fontname="Helvetica", fontsize=10];',
          ...[...nodes].sort().map((n) => `  ${dotId(n)}${n.startsWith('ip:') ? ' [shape=ellipse]' : ''};`),
          ...pairs.map((p) => `  ${dotId(p.from)} -> ${dotId(p.to)} [label=${dotId(p.ports)}${p.open ? ', style=dashed' : ''}];`),
          '}',
        ].join('\n'),
      );
      break;
    }
    default:
      if (pairs.length > 0) io.out(table([['from', 'to', 'ports', 'rules'], ...pairs.map((p) => [p.from, p.to, p.ports, rulesText(p)])]));
  }
  const groups = m.order.filter((g) => m.isSource[g] || m.isTarget[g]).length;
  io.err(`${pairs.length} reachable ${pairs.length === 1 ? 'pair' : 'pairs'} between ${groups} ${grouping.name === 'workload' ? 'workloads and address groups' : `groups (by ${grouping.name})`}, ${mode}${conn.ports.isAny() ? '' : `, on ${conn.ports.toString()}`}`);
  return EXIT.ok;
}

/** Finds a workload by name, with a did-you-mean. */
export function workloadIndex(names: readonly string[], name: string, flag: string): number {
  const i = names.indexOf(name);
  if (i >= 0) return i;
  const guess = closest(name, names);
  throw new UsageError(`${flag} ${q(name)} is not a workload${guess ? `; did you mean ${q(guess)}?` : ''}`);
}

/** Adds `bulkhead reach` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('reach')
    .description('the reachability matrix between label groups or workloads: who reaches whom, on which ports, by which rules')
    .argument('<dir>', 'policy directory')
    .option('--by <keys>', 'group by these label keys, or `workload`', DEFAULT_BY.join(','))
    .option('--from <selector>', 'only sources matching this selector')
    .option('--to <selector>', 'only destinations matching this selector')
    .option('--port <entries>', 'only these connections: 443/tcp, 8000-8100/tcp, udp, 8/icmp, any (repeatable, or comma-separated)', collect)
    .option('--as-deployed', 'count modes as deployed: ends in test, idle or visibility mode let everything through')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'csv', 'markdown', 'dot']).default('table'))
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601) instead of now'))
    .addHelpText(
      'after',
      `
Connectivity is "as enforced" by default: what the policy lets through if
every managed workload enforced it. Flows with no managed end are outside the
policy and not listed. A pair of groups is listed when some workload of the
first reaches some workload of the second.

Examples:
  bulkhead reach examples/estate/policy --by app,env
  bulkhead reach examples/estate/policy --from "app == 'shop'" --port tcp --output csv
  bulkhead reach examples/estate/policy --by workload --to "compliance == 'pci'" --port 5432/tcp
  bulkhead reach examples/estate/policy --by app --port tcp,udp --output dot | dot -Tsvg > reach.svg`,
    )
    .action((dir: string, opts: ReachOptions) => {
      prog.setOptionValue('exit', runReach(dir, opts, io));
    });
}
