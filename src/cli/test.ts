/**
 * `bulkhead test`: policy modeling. The flows of the store (a time window)
 * replayed against a draft policy directory: per group (app and env by
 * default) what would be allowed, potentially blocked and blocked (by deny
 * rules, by the default deny), the edges that would be, hits per rule and
 * rules with no hits; as a table, JSON or Markdown for a pull request. The
 * exit status gates a policy change in CI (docs/MODEL.md).
 */
import { existsSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { parsePrefix, type Prefix } from '../netset/ip.js';
import { protocolName } from '../netset/connset.js';
import { Attributor } from '../flows/attribute.js';
import { portName } from '../flows/map.js';
import { shortTime } from '../flows/map-render.js';
import { FAIL_ON, gate, replay, type FailOn, type ReplayCounts, type ReplayEnd, type ReplayFinding, type ReplayGroup, type ReplayPort, type ReplayReport, type RuleHits } from '../analysis/replay.js';
import { DuckDbFlowStore } from '../store/flows-duckdb.js';
import { EXIT, loadDir, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { parseWhen } from './map.js';
import { markdownTable, summary } from './render.js';

/** Output formats of `bulkhead test`. */
export const TEST_FORMATS = ['table', 'json', 'markdown'] as const;
export type TestFormat = (typeof TEST_FORMATS)[number];

/** Options of the command. */
export interface TestCliOptions {
  store: string;
  since?: string;
  until?: string;
  by: string;
  failOn: string;
  output: string;
  limit: string;
  internal?: string[];
  quiet?: boolean;
  now?: string;
}

/** What the renderers say about the run besides the report. */
export interface ReplayContext {
  /** The policy directory, as given. */
  readonly policy: string;
  readonly store: string;
  /** The window asked for, epoch ms. */
  readonly since?: number;
  readonly until?: number;
  readonly failOn: FailOn;
  /** Items per list; 0 for no limit. */
  readonly limit: number;
}

/** The exit code of a gate result. */
export function gateExit(r: ReturnType<typeof gate>): number {
  return r === 'blocked' ? EXIT.blocked : r === 'potentially-blocked' ? EXIT.potentiallyBlocked : EXIT.ok;
}

// ---------------------------------------------------------------- text pieces

const n = (x: number) => x.toLocaleString('en-US');
/** `1 flow`, `1,234 flows`. */
const count = (x: number, word: string) => `${n(x)} ${word}${x === 1 ? '' : 's'}`;

/** The first `limit` items (all with 0), and how many are left out. */
function cut<T>(items: readonly T[], limit: number): { shown: readonly T[]; more: number } {
  if (limit <= 0 || items.length <= limit) return { shown: items, more: 0 };
  return { shown: items.slice(0, limit), more: items.length - limit };
}

/**
 * The ports of a listed edge: up to `max` by flows (`5432/tcp, 22/tcp`), or,
 * when there are more, runs of consecutive ports (`1-1024/tcp`), the first
 * `max` of them and `+N`.
 */
export function portsText(ports: readonly ReplayPort[], max = 4): string {
  if (ports.length <= max) return ports.map((p) => portName(p.proto, p.port)).join(', ');
  const sorted = [...ports].sort((a, b) => a.proto - b.proto || a.port - b.port);
  const runs: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    const p = sorted[i];
    let j = i;
    const ranged = p.proto === 6 || p.proto === 17 || p.proto === 132;
    while (ranged && j + 1 < sorted.length && sorted[j + 1].proto === p.proto && sorted[j + 1].port === sorted[j].port + 1) j++;
    runs.push(j > i ? `${p.port}-${sorted[j].port}/${protocolName(p.proto)}` : portName(p.proto, p.port));
    i = j + 1;
  }
  return runs.length <= max ? runs.join(', ') : `${runs.slice(0, max).join(', ')} +${runs.length - max}`;
}

/** An end of a listed edge: the workload, or the group with its one address or its address count. */
export function endText(e: ReplayEnd): string {
  if (e.kind === 'workload') return e.name;
  return e.addressCount === 1 ? `${e.name} ${e.addresses[0]}` : `${e.name} (${n(e.addressCount)} addresses)`;
}

/** What decided a listed edge: `env-nonprod-to-prod (egress)`, `default deny (ingress)`. */
export function decidedText(f: ReplayFinding, code = false): string {
  const side = f.decidedBy ? ` (${f.decidedBy})` : '';
  if (f.rule !== null) return `${code ? `\`${f.rule}\`` : f.rule}${side}`;
  if (f.outcome === 'blocked-by-default' || f.outcome === 'potentially-blocked' || f.outcome === 'blocked-by-rule') return `default deny${side}`;
  return '-';
}

function whereText(r: RuleHits): string {
  return r.loc ? `${r.loc.file}${r.loc.line > 0 ? `:${r.loc.line}:${r.loc.col}` : ''}` : '';
}

function windowText(rep: ReplayReport): string {
  return rep.first !== undefined ? `${shortTime(rep.first)} to ${shortTime(rep.last!)} UTC` : 'no flows';
}

/** The one-line result: what fails the gate, then the rest. */
export function resultLine(rep: ReplayReport, ctx: ReplayContext): string {
  const t = rep.totals;
  const g = gate(t, ctx.failOn);
  const parts: string[] = [];
  if (t.blocked > 0) parts.push(`${n(t.blocked)} legitimate ${t.blocked === 1 ? 'flow' : 'flows'} would be blocked (${n(t.blockedByRule)} by deny rules, ${n(t.blockedByDefault)} by the default deny)`);
  else parts.push('no legitimate flow would be blocked');
  parts.push(`${n(t.potentiallyBlocked)} potentially blocked`);
  parts.push(`${n(t.allowed)} allowed`);
  parts.push(`${n(t.notEvaluated)} not evaluated`);
  if (t.unjudged > 0) parts.push(`${n(t.unjudged)} not judged (ICMP without type)`);
  if (t.rejected > 0) parts.push(`${n(t.rejected)} rejected by the network (not gated)`);
  return `${g === 'pass' ? 'PASS' : 'FAIL'} (--fail-on ${ctx.failOn}): ${parts.join(', ')}`;
}

/** Groups for the table and Markdown: those with blocked, then potentially blocked flows first, then in report order. */
function groupsByTrouble(rep: ReplayReport): ReplayGroup[] {
  const order = new Map(rep.groups.map((g, i) => [g, i]));
  return [...rep.groups].sort((a, b) => b.total.blocked - a.total.blocked || b.total.potentiallyBlocked - a.total.potentiallyBlocked || order.get(a)! - order.get(b)!);
}

function groupColumns(rep: ReplayReport): { head: string[]; cells: (c: ReplayCounts) => string[] } {
  const unjudged = rep.totals.unjudged > 0;
  const head = ['flows', 'allowed', 'potentially blocked', 'blocked by rule', 'blocked by default', 'not evaluated', ...(unjudged ? ['not judged'] : []), 'rejected'];
  const cells = (c: ReplayCounts) => [c.flows, c.allowed, c.potentiallyBlocked, c.blockedByRule, c.blockedByDefault, c.notEvaluated, ...(unjudged ? [c.unjudged] : []), c.rejected].map(n);
  return { head, cells };
}

function flowsIn(list: readonly ReplayFinding[]): number {
  return list.reduce((s, f) => s + f.flows, 0);
}

interface Section {
  readonly title: string;
  readonly list: readonly ReplayFinding[];
  /** Whether the list shows the outcome (the rejected list). */
  readonly outcome?: boolean;
}

function sections(rep: ReplayReport): Section[] {
  return [
    { title: 'blocked by deny rules', list: rep.blockedByRule },
    { title: 'blocked by the default deny', list: rep.blockedByDefault },
    { title: 'potentially blocked', list: rep.potentiallyBlocked },
    { title: 'rejected by the network (not gated)', list: rep.rejected, outcome: true },
  ];
}

const OUTCOME_TEXT: Record<ReplayFinding['outcome'], string> = {
  allowed: 'allowed',
  'potentially-blocked': 'potentially blocked',
  'blocked-by-rule': 'blocked',
  'blocked-by-default': 'blocked',
  'not-evaluated': 'not evaluated',
  unjudged: 'not judged',
};

function rulesHit(rep: ReplayReport): RuleHits[] {
  const order = new Map(rep.rules.map((r, i) => [r, i]));
  return rep.rules.filter((r) => r.hits > 0).sort((a, b) => b.hits - a.hits || order.get(a)! - order.get(b)!);
}

// ---------------------------------------------------------------- table

/** Aligned columns; columns in `numeric` are right-aligned. */
function aligned(head: readonly string[], rows: readonly (readonly string[])[], numeric: ReadonlySet<number>): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: readonly string[]) => r.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)];
}

const more = (k: number) => `… and ${n(k)} more`;

/** The report as aligned text. */
export function replayTable(rep: ReplayReport, ctx: ReplayContext): string {
  const out: string[] = [];
  out.push(`bulkhead test ${ctx.policy}: ${count(rep.totals.flows + rep.totals.rejected, 'flow')} in ${count(rep.edges, 'stored edge')}, ${windowText(rep)}`);
  out.push(resultLine(rep, ctx));
  out.push('');
  const gc = groupColumns(rep);
  const groups = cut(groupsByTrouble(rep), ctx.limit);
  out.push(`by ${rep.by}: ${count(rep.groups.length, 'group')}`);
  out.push(...aligned(['GROUP', ...gc.head.map((h) => h.toUpperCase())], groups.shown.map((g) => [g.name, ...gc.cells(g.total)]), new Set(gc.head.map((_, i) => i + 1))));
  if (groups.more) out.push(more(groups.more));
  for (const s of sections(rep)) {
    out.push('');
    if (s.list.length === 0) {
      out.push(`${s.title}: none`);
      continue;
    }
    out.push(`${s.title}: ${count(flowsIn(s.list), 'flow')} in ${count(s.list.length, 'edge')}`);
    const c = cut(s.list, ctx.limit);
    const head = ['CLIENT', 'SERVER', 'PORTS', 'FLOWS', 'FIRST SEEN', 'LAST SEEN', ...(s.outcome ? ['POLICY'] : []), 'DECIDED BY'];
    const rows = c.shown.map((f) => [endText(f.client), endText(f.server), portsText(f.ports), n(f.flows), shortTime(f.first), shortTime(f.last), ...(s.outcome ? [OUTCOME_TEXT[f.outcome]] : []), decidedText(f)]);
    out.push(...aligned(head, rows, new Set([3])));
    if (c.more) out.push(more(c.more));
  }
  const hit = rulesHit(rep);
  out.push('');
  out.push(`rule hits: ${hit.length} of ${count(rep.rules.length, 'rule')} hit`);
  if (hit.length > 0) {
    const c = cut(hit, ctx.limit);
    out.push(...aligned(['RULE', 'TIER', 'ACTION', 'HITS', 'DECIDED', 'LAST SEEN'], c.shown.map((r) => [r.id, r.tier, r.action, n(r.hits), n(r.decided), shortTime(r.last!)]), new Set([3, 4])));
    if (c.more) out.push(more(c.more));
  }
  const unused = rep.rules.filter((r) => r.hits === 0);
  out.push('');
  if (unused.length === 0) out.push('rules with no hits: none');
  else {
    out.push(`rules with no hits: ${unused.length}`);
    const c = cut(unused, ctx.limit);
    out.push(...aligned(['RULE', 'TIER', 'ACTION', 'WHERE'], c.shown.map((r) => [r.id, r.tier, r.action, whereText(r)]), new Set()));
    if (c.more) out.push(more(c.more));
  }
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------- Markdown

/** The report as Markdown, to paste into a pull request. */
export function replayMarkdown(rep: ReplayReport, ctx: ReplayContext): string {
  const t = rep.totals;
  const g = gate(t, ctx.failOn);
  const out: string[] = [];
  out.push(`### bulkhead test: \`${ctx.policy}\``);
  out.push('');
  const verdict = g === 'pass' ? '**PASS**' : '**FAIL**';
  const blocked = t.blocked > 0 ? `**${n(t.blocked)} legitimate ${t.blocked === 1 ? 'flow' : 'flows'} would be blocked** (${n(t.blockedByRule)} by deny rules, ${n(t.blockedByDefault)} by the default deny)` : 'no legitimate flow would be blocked';
  const pb = t.potentiallyBlocked > 0 ? `**${n(t.potentiallyBlocked)} potentially blocked**` : '0 potentially blocked';
  const rest = [`${n(t.allowed)} allowed`, `${n(t.notEvaluated)} not evaluated`, ...(t.unjudged > 0 ? [`${n(t.unjudged)} not judged`] : []), ...(t.rejected > 0 ? [`${n(t.rejected)} rejected by the network (not gated)`] : [])];
  out.push(`${verdict} (\`--fail-on ${ctx.failOn}\`): ${blocked}, ${pb}, ${rest.join(', ')}. Replayed ${count(t.flows + t.rejected, 'flow')} in ${count(rep.edges, 'stored edge')}, ${windowText(rep)}.`);
  out.push('');
  const gc = groupColumns(rep);
  const groups = cut(groupsByTrouble(rep), ctx.limit);
  out.push(markdownTable([[rep.by, ...gc.head], ...groups.shown.map((x) => [x.name, ...gc.cells(x.total)])]));
  if (groups.more) out.push('', `${more(groups.more)} groups.`);
  for (const s of sections(rep)) {
    out.push('');
    const title = s.title[0].toUpperCase() + s.title.slice(1);
    if (s.list.length === 0) {
      out.push(`#### ${title}: none`);
      continue;
    }
    out.push(`#### ${title}: ${count(flowsIn(s.list), 'flow')} in ${count(s.list.length, 'edge')}`);
    out.push('');
    const c = cut(s.list, ctx.limit);
    const head = ['client', 'server', 'ports', 'flows', 'first seen', 'last seen', ...(s.outcome ? ['policy'] : []), 'decided by'];
    out.push(markdownTable([head, ...c.shown.map((f) => [endText(f.client), endText(f.server), portsText(f.ports), n(f.flows), shortTime(f.first), shortTime(f.last), ...(s.outcome ? [OUTCOME_TEXT[f.outcome]] : []), decidedText(f, true)])]));
    if (c.more) out.push('', `${more(c.more)} edges.`);
  }
  const unused = rep.rules.filter((r) => r.hits === 0);
  out.push('');
  if (unused.length === 0) out.push('#### Rules with no hits: none');
  else {
    out.push(`#### Rules with no hits: ${unused.length} of ${count(rep.rules.length, 'rule')}`);
    out.push('');
    const c = cut(unused, ctx.limit);
    out.push(markdownTable([['rule', 'tier', 'action', 'where'], ...c.shown.map((r) => [`\`${r.id}\``, r.tier, r.action, whereText(r)])]));
    if (c.more) out.push('', `${more(c.more)} rules.`);
  }
  const hit = rulesHit(rep);
  if (hit.length > 0) {
    out.push('');
    out.push(`<details><summary>Hits per rule: ${hit.length} of ${count(rep.rules.length, 'rule')} hit</summary>`);
    out.push('');
    const c = cut(hit, ctx.limit);
    out.push(markdownTable([['rule', 'tier', 'action', 'hits', 'decided', 'last seen'], ...c.shown.map((r) => [`\`${r.id}\``, r.tier, r.action, n(r.hits), n(r.decided), shortTime(r.last!)])]));
    if (c.more) out.push('', `${more(c.more)} rules.`);
    out.push('');
    out.push('</details>');
  }
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------- JSON

const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());

function findingJson(f: ReplayFinding) {
  return {
    outcome: f.outcome,
    client: f.client,
    server: f.server,
    ports: f.ports.map((p) => ({ proto: p.proto, port: p.port, name: portName(p.proto, p.port), flows: p.flows })),
    flows: f.flows,
    edges: f.edges,
    first: iso(f.first),
    last: iso(f.last),
    rule: f.rule,
    decidedBy: f.decidedBy,
    tier: f.tier,
  };
}

function listJson(list: readonly ReplayFinding[], limit: number) {
  const c = cut(list, limit);
  return { count: list.length, flows: flowsIn(list), items: c.shown.map(findingJson), more: c.more };
}

/** The report as JSON (field names in docs/MODEL.md). */
export function replayJson(rep: ReplayReport, ctx: ReplayContext): string {
  const g = gate(rep.totals, ctx.failOn);
  return JSON.stringify(
    {
      policy: ctx.policy,
      store: ctx.store,
      window: { since: iso(ctx.since), until: iso(ctx.until), first: iso(rep.first), last: iso(rep.last) },
      by: rep.by,
      edges: rep.edges,
      totals: rep.totals,
      gate: { failOn: ctx.failOn, result: g, exitCode: gateExit(g) },
      groups: rep.groups,
      potentiallyBlocked: listJson(rep.potentiallyBlocked, ctx.limit),
      blockedByRule: listJson(rep.blockedByRule, ctx.limit),
      blockedByDefault: listJson(rep.blockedByDefault, ctx.limit),
      rejected: listJson(rep.rejected, ctx.limit),
      rules: rep.rules.map((r) => ({
        id: r.id,
        tier: r.tier,
        action: r.action,
        ruleset: r.ruleset ?? null,
        file: r.loc?.file ?? null,
        line: r.loc && r.loc.line > 0 ? r.loc.line : null,
        column: r.loc && r.loc.line > 0 ? r.loc.col : null,
        hits: r.hits,
        egress: r.egress,
        ingress: r.ingress,
        decided: r.decided,
        edges: r.edges,
        first: iso(r.first),
        last: iso(r.last),
      })),
      rulesWithNoHits: rep.rules.filter((r) => r.hits === 0).map((r) => r.id),
    },
    null,
    2,
  );
}

/** Renders the report in a format. */
export function renderReplay(rep: ReplayReport, ctx: ReplayContext, format: TestFormat): string {
  switch (format) {
    case 'table':
      return replayTable(rep, ctx);
    case 'markdown':
      return replayMarkdown(rep, ctx);
    case 'json':
      return replayJson(rep, ctx) + '\n';
  }
}

// ---------------------------------------------------------------- the command

function list(values: string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
}

/** Runs `bulkhead test`; returns the exit code. */
export async function runTest(dir: string, opts: TestCliOptions, io: Io, tty = Boolean(process.stderr.isTTY)): Promise<number> {
  const format = opts.output as TestFormat;
  if (!(TEST_FORMATS as readonly string[]).includes(format)) throw new UsageError(`unknown --output \`${opts.output}\`; formats: ${TEST_FORMATS.join(', ')}`);
  const failOn = opts.failOn as FailOn;
  if (!(FAIL_ON as readonly string[]).includes(failOn)) throw new UsageError(`unknown --fail-on \`${opts.failOn}\`; write ${FAIL_ON.join(', ')}`);
  const limit = Number(opts.limit);
  if (!Number.isInteger(limit) || limit < 0) throw new UsageError(`--limit must be a whole number (0 for no limit), not \`${opts.limit}\``);
  const by = list([opts.by]);
  if (by.length === 0 || by.includes('workload')) throw new UsageError('--by needs label keys, such as app,env');
  const internal: Prefix[] = list(opts.internal).map((s) => {
    const r = parsePrefix(s);
    if ('error' in r) throw new UsageError(`invalid --internal \`${s}\`: ${r.error}`);
    return r.prefix;
  });
  if (opts.store !== ':memory:' && !existsSync(opts.store)) throw new UsageError(`no flow store at \`${opts.store}\`: write one with \`bulkhead ingest <files> --store ${opts.store}\``);

  const c = loadDir(dir, parseNow(opts.now));
  if (c.diagnostics.hasErrors()) {
    printDiagnostics(c.diagnostics.sorted().filter((d) => d.severity === 'error'), c.texts, io);
    io.err(`cannot test: the policy has problems (${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)})`);
    return EXIT.policyErrors;
  }

  const quiet = opts.quiet === true;
  const t0 = performance.now();
  const store = await DuckDbFlowStore.open(opts.store);
  let since: number | undefined;
  let until: number | undefined;
  let edges: Awaited<ReturnType<DuckDbFlowStore['edges']>>;
  try {
    const st = await store.stats();
    if (st.last === undefined) throw new UsageError(`the flow store \`${opts.store}\` holds no flows: fill it with \`bulkhead ingest <files> --store ${opts.store}\``);
    since = opts.since !== undefined ? parseWhen(opts.since, '--since', st.last) : undefined;
    until = opts.until !== undefined ? parseWhen(opts.until, '--until', st.last) : undefined;
    if (since !== undefined && until !== undefined && since >= until) throw new UsageError(`--since (${new Date(since).toISOString()}) must be before --until (${new Date(until).toISOString()})`);
    edges = await store.edges({ since, until });
    if (edges.length === 0) {
      const asked = `${since !== undefined ? `from ${new Date(since).toISOString()}` : ''}${since !== undefined && until !== undefined ? ' ' : ''}${until !== undefined ? `until ${new Date(until).toISOString()}` : ''}`;
      throw new UsageError(`no flows in the window (${asked}); the store holds flows from ${new Date(st.first!).toISOString()} to ${new Date(st.last).toISOString()}`);
    }
  } finally {
    await store.close();
  }
  const t1 = performance.now();

  const total = edges.length;
  let lastDraw = 0;
  let drawn = false;
  const onProgress =
    tty && !quiet
      ? (done: number) => {
          const now = performance.now();
          if (now - lastDraw < 100) return;
          lastDraw = now;
          drawn = true;
          process.stderr.write(`\r\x1b[2Kreplaying ${Math.round((done / total) * 100)}% (${n(done)} of ${count(total, 'edge')})`);
        }
      : undefined;
  const report = replay(c.ir, edges, { ends: new Attributor(c.ir, { internal }), by, onProgress });
  if (drawn) process.stderr.write('\r\x1b[2K');
  const t2 = performance.now();

  const ctx: ReplayContext = { policy: dir, store: opts.store, since, until, failOn, limit };
  io.out(renderReplay(report, ctx, format).replace(/\n$/, ''));
  const g = gate(report.totals, failOn);
  if (!quiet) {
    io.err(`read ${count(total, 'edge')} from ${opts.store} in ${((t1 - t0) / 1000).toFixed(1)} s; replayed against ${dir} in ${((t2 - t1) / 1000).toFixed(1)} s`);
    if (format !== 'table') io.err(resultLine(report, ctx));
  }
  return gateExit(g);
}

/** Adds `test` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('test')
    .description('replay the flows of the store against a draft policy: what would be allowed, potentially blocked and blocked, per app and env; rule hits; a CI gate')
    .argument('<dir>', 'the (draft) policy directory')
    .requiredOption('--store <file>', 'the flow store (bulkhead ingest writes it)')
    .option('--since <time>', 'only flows from this time (ISO 8601, or 24h / 7d before the latest flow)')
    .option('--until <time>', 'only flows before this time (ISO 8601, or a duration before the latest flow)')
    .option('--by <keys>', 'label keys to group workloads by', 'app,env')
    .addOption(new Option('--fail-on <what>', 'what fails the gate: exit 3 when legitimate flows would be blocked, 4 when potentially blocked').choices([...FAIL_ON]).default('potentially-blocked'))
    .addOption(new Option('-o, --output <format>', 'output format').choices([...TEST_FORMATS]).default('table'))
    .option('--limit <n>', 'items per list (edges, groups, rules); 0 for all', '50')
    .option('--internal <prefix...>', 'more prefixes that are ours (not external), beside the private ranges')
    .option('--quiet', 'no progress or timing on stderr')
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601)'))
    .addHelpText(
      'after',
      '\nExit status: 0 the gate passes; 3 some legitimate flow would be blocked; 4 none would be blocked but some potentially\n' +
        'blocked (with --fail-on potentially-blocked, the default); 1 the policy has errors; 2 usage (no store, an empty window).\n' +
        'Flows the telemetry recorded as rejected are reported apart and never fail the gate.\n\n' +
        'Examples:\n  bulkhead test policy/ --store flows.duckdb --since 7d\n  bulkhead test policy/ --store flows.duckdb --output markdown > report.md\n  bulkhead test policy/ --store flows.duckdb --fail-on blocked --output json | jq .totals',
    )
    .action(async (dir: string, opts: TestCliOptions) => {
      prog.setOptionValue('exit', await runTest(dir, opts, io));
    });
}
