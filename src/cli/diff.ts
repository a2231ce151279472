/** `bulkhead diff`: what changes in connectivity between two versions of a policy, with the rules behind each change. */
import { Command, Option } from 'commander';
import { diffPolicies, type DiffEntry } from '../analysis/diff.js';
import { EXIT, type Io } from './common.js';
import { collect, loadForAnalysis, parseBy, parsePorts } from './reach.js';
import { markdownTable, shortList } from './render.js';

/** Options of `bulkhead diff`. */
export interface DiffCliOptions {
  by?: string;
  port?: string[];
  asDeployed?: boolean;
  output: string;
  now?: string;
}

const MARK = { added: '+', removed: '-', changed: '~' } as const;

function changeText(e: DiffEntry): string {
  if (e.kind === 'added') return e.after.toString();
  if (e.kind === 'removed') return e.before.toString();
  return [e.added.isEmpty() ? '' : `+${e.added.toString()}`, e.removed.isEmpty() ? '' : `-${e.removed.toString()}`].filter((s) => s !== '').join('  ');
}

function whyText(e: DiffEntry): string {
  const parts: string[] = [];
  if (e.kind !== 'added') parts.push(`before: ${shortList(e.rulesBefore, 4) || '-'}`);
  if (e.kind !== 'removed') parts.push(`after: ${shortList(e.rulesAfter, 4) || '-'}`);
  if (!e.removed.isEmpty() && e.deniesAfter.length > 0) parts.push(`denied after by: ${shortList(e.deniesAfter, 4)}`);
  if (!e.added.isEmpty() && e.deniesBefore.length > 0) parts.push(`denied before by: ${shortList(e.deniesBefore, 4)}`);
  return parts.join('; ');
}

/** Runs `bulkhead diff`; returns the exit code (0, or 1 when a policy has errors). */
export function runDiff(dirA: string, dirB: string, opts: DiffCliOptions, io: Io): number {
  const grouping = opts.by === undefined ? undefined : parseBy(opts.by);
  const ports = parsePorts(opts.port);
  const a = loadForAnalysis(dirA, opts.now, io, 'diff');
  if (!a) return EXIT.policyErrors;
  const b = loadForAnalysis(dirB, opts.now, io, 'diff');
  if (!b) return EXIT.policyErrors;
  const d = diffPolicies(a.ir, b.ir, { ports, deployed: opts.asDeployed === true, grouping });
  const mode = opts.asDeployed ? 'as deployed' : 'as enforced';
  const summaryLine = `${d.added} added, ${d.removed} removed, ${d.changed} changed ${d.added + d.removed + d.changed === 1 ? 'pair' : 'pairs'} of ${d.grouping === 'labels' ? 'label sets' : `groups (by ${d.grouping})`} (${d.pairsBefore} reachable pairs before, ${d.pairsAfter} after), ${mode}${ports ? `, on ${ports.toString()}` : ''}`;
  if (opts.output === 'json') {
    io.out(
      JSON.stringify(
        {
          before: dirA,
          after: dirB,
          by: d.grouping,
          mode: opts.asDeployed ? 'deployed' : 'enforced',
          ports: ports?.toString() ?? 'any',
          added: d.added,
          removed: d.removed,
          changed: d.changed,
          pairsBefore: d.pairsBefore,
          pairsAfter: d.pairsAfter,
          changes: d.entries.map((e) => ({
            kind: e.kind,
            from: e.from,
            to: e.to,
            before: e.before.toString(),
            after: e.after.toString(),
            added: e.added.toString(),
            removed: e.removed.toString(),
            rulesBefore: e.rulesBefore,
            rulesAfter: e.rulesAfter,
            deniesBefore: e.deniesBefore,
            deniesAfter: e.deniesAfter,
          })),
        },
        null,
        2,
      ),
    );
  } else if (opts.output === 'markdown') {
    io.out(`# Connectivity changes\n\n${summaryLine}\n`);
    if (d.entries.length > 0) io.out(markdownTable([['', 'from', 'to', 'change', 'rules'], ...d.entries.map((e) => [MARK[e.kind], e.from, e.to, changeText(e), whyText(e)])]));
  } else {
    const lines: string[] = [];
    for (const e of d.entries) {
      lines.push(`${MARK[e.kind]} ${e.from} -> ${e.to}  ${changeText(e)}`);
      lines.push(`    ${whyText(e)}`);
    }
    if (lines.length > 0) io.out(lines.join('\n'));
    io.err(summaryLine);
  }
  return EXIT.ok;
}

/** Adds `bulkhead diff` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('diff')
    .description('semantic diff of connectivity between two policies: pairs of groups added, removed and changed, with the rules behind each')
    .argument('<before>', 'policy directory, before')
    .argument('<after>', 'policy directory, after')
    .option('--by <keys>', 'compare by these label keys, or `workload` (default: whole label sets, and workloads a rule names by name)')
    .option('--port <entries>', 'only these connections (repeatable, or comma-separated)', collect)
    .option('--as-deployed', 'count modes as deployed: ends in test, idle or visibility mode let everything through')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json', 'markdown']).default('text'))
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601) instead of now'))
    .addHelpText(
      'after',
      `
Lines start with + (added pair), - (removed pair) or ~ (changed ports); under
each, the rules that allow the pair before and after, and deny rules that cut
what an allow rule offers.

Examples:
  bulkhead diff policy-main/ policy-branch/
  bulkhead diff old/ new/ --by app,env --port tcp --output markdown > changes.md`,
    )
    .action((dirA: string, dirB: string, opts: DiffCliOptions) => {
      prog.setOptionValue('exit', runDiff(dirA, dirB, opts, io));
    });
}
