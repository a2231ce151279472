/** `bulkhead assert`: check invariants written as code against a policy; an exit status for CI. */
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { Diagnostics, type Loc } from '../model/diagnostic.js';
import { parseYamlFile } from '../policy/source.js';
import { checkAssertions, loadAssertions, type AssertionOutcome, type Counterexample } from '../analysis/assert.js';
import { addrText, type Place } from '../analysis/places.js';
import { EXIT, printDiagnostics, UsageError, type Io } from './common.js';
import { DEFAULT_BY, loadForAnalysis } from './reach.js';
import { diagnosticJson, plural, shortList, summary } from './render.js';

/** The exit code when some assertion fails. */
export const EXIT_ASSERTION_FAILED = 5;

/** Options of `bulkhead assert`. */
export interface AssertCliOptions {
  asDeployed?: boolean;
  by?: string;
  examples: string;
  output: string;
  now?: string;
}

function placeText(p: Place): string {
  return p.workload ? `${p.workload} (${addrText(p.addr)})` : `${addrText(p.addr)} (${p.ip})`;
}

function locText(loc: Loc | undefined): string {
  return loc && loc.line > 0 ? ` (${loc.file}:${loc.line}:${loc.col})` : '';
}

/** Runs `bulkhead assert`; returns the exit code: 0 all hold, 5 some fail, 1 errors in the policy or the assertions, 2 usage. */
export function runAssert(dir: string, file: string, opts: AssertCliOptions, io: Io): number {
  const examples = Number(opts.examples);
  if (!Number.isInteger(examples) || examples < 0) throw new UsageError(`--examples must be a whole number, not \`${opts.examples}\``);
  const by = (opts.by ?? DEFAULT_BY.join(',')).split(',').map((k) => k.trim()).filter((k) => k !== '');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`cannot read assertions file \`${file}\``);
  }
  const c = loadForAnalysis(dir, opts.now, io, 'check assertions');
  if (!c) return EXIT.policyErrors;
  const diags = new Diagnostics();
  const docs = parseYamlFile({ path: file, text }, diags);
  const assertions = loadAssertions(docs, c.ir, diags);
  const texts = new Map([[file, text]]);
  if (diags.hasErrors()) {
    if (opts.output === 'json') io.out(JSON.stringify({ ok: false, diagnostics: diags.sorted().map(diagnosticJson) }, null, 2));
    else printDiagnostics(diags.sorted(), texts, io);
    io.err(`cannot check assertions: ${file} has problems (${summary(diags.errorCount, diags.warningCount)})`);
    return EXIT.policyErrors;
  }
  const outcomes = checkAssertions(c.ir, assertions, { deployed: opts.asDeployed === true, by, examples });
  const failed = outcomes.filter((o) => !o.holds).length;
  const ruleLoc = new Map(c.policy.rules.map((r) => [r.id, r.loc]));

  if (opts.output === 'json') {
    io.out(
      JSON.stringify(
        {
          ok: failed === 0,
          mode: opts.asDeployed ? 'deployed' : 'enforced',
          diagnostics: diags.sorted().map(diagnosticJson),
          assertions: outcomes.map((o) => ({
            name: o.assertion.name,
            kind: o.assertion.kind,
            summary: o.assertion.summary,
            holds: o.holds,
            location: o.assertion.loc && o.assertion.loc.line > 0 ? { file: o.assertion.loc.file, line: o.assertion.loc.line } : null,
            violations: o.violations.map((v) => ({ from: v.from, to: v.to, [o.assertion.kind === 'reaches' ? 'missing' : 'ports']: v.conns.toString(), rules: v.rules, ...(v.open ? { notEnforced: true } : {}) })),
            counterexamples: o.examples.map((e) => ({
              from: placeJson(e.from),
              to: placeJson(e.to),
              connection: e.connection,
              outcome: e.outcome,
              rules: e.rules.map((id) => ({ id, location: locJson(ruleLoc.get(id)) })),
              ...(e.open ? { notEnforced: true } : {}),
            })),
          })),
        },
        null,
        2,
      ),
    );
  } else {
    printDiagnostics(diags.sorted(), texts, io);
    const out: string[] = [];
    for (const o of outcomes) out.push(...outcomeText(o, examples, (id) => locText(ruleLoc.get(id))));
    out.push(`${plural(outcomes.length, 'assertion')}: ${outcomes.length - failed} ${outcomes.length - failed === 1 ? 'holds' : 'hold'}, ${failed} ${failed === 1 ? 'fails' : 'fail'}${opts.asDeployed ? ' (as deployed)' : ''}`);
    io.out(out.join('\n'));
  }
  return failed > 0 ? EXIT_ASSERTION_FAILED : EXIT.ok;
}

function exampleText(e: Counterexample, ruleLoc: (id: string) => string): string {
  const flow = `${placeText(e.from)} -> ${placeText(e.to)} on ${e.connection}`;
  if (e.outcome === 'denied') return `${flow} is denied by ${e.rules.length > 0 ? e.rules.map((id) => `\`${id}\`${ruleLoc(id)}`).join(', ') : 'default (no rule allows it)'}`;
  if (e.open) return `${flow} passes: no end of it enforces policy`;
  return `${flow} is allowed by ${e.rules.map((id) => `\`${id}\`${ruleLoc(id)}`).join(', ')}`;
}

function outcomeText(o: AssertionOutcome, examples: number, ruleLoc: (id: string) => string): string[] {
  const a = o.assertion;
  if (o.holds) return [`ok    ${a.name}`];
  const what = a.kind === 'reaches' ? 'pair of workloads' : 'pair of groups';
  const n = o.violations.length;
  const lines = [`FAIL  ${a.name}: ${n} ${n === 1 ? `${what} breaks` : `${what.replace('pair', 'pairs')} break`} it${locText(a.loc)}`, `      ${a.summary}`];
  for (const e of o.examples) lines.push(`      e.g. ${exampleText(e, ruleLoc)}`);
  const shown = o.violations.slice(0, Math.max(examples, 5));
  for (const v of shown) lines.push(`      ${v.from} -> ${v.to}: ${a.kind === 'reaches' ? 'missing ' : ''}${v.conns.toString()}${v.rules.length > 0 ? ` [${shortList(v.rules)}]` : ''}${v.open ? ' (not enforced)' : ''}`);
  if (o.violations.length > shown.length) lines.push(`      … and ${o.violations.length - shown.length} more (--output json lists all)`);
  return lines;
}

function placeJson(p: Place): Record<string, string> {
  return p.workload ? { workload: p.workload, address: addrText(p.addr) } : { address: addrText(p.addr), ip: p.ip! };
}

function locJson(l: Loc | undefined): { file: string; line: number; column: number } | null {
  return l && l.line > 0 ? { file: l.file, line: l.line, column: l.col } : null;
}

/** Adds `bulkhead assert` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('assert')
    .description('check invariants written as code (never, only, ringfence, reaches) against a policy; exits 5 when one fails')
    .argument('<dir>', 'policy directory')
    .argument('<assertions>', 'assertions file (YAML)')
    .option('--as-deployed', 'count modes as deployed: ends in test, idle or visibility mode let everything through')
    .option('--by <keys>', 'label keys to report violations by', DEFAULT_BY.join(','))
    .option('--examples <n>', 'concrete counterexamples per failing assertion', '3')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601) instead of now'))
    .addHelpText(
      'after',
      `
Assertions file:
  assertions:
    - name: prod never reaches dev
      never: { from: "env == 'prod'", to: "env == 'dev'" }
    - name: only jump hosts administer
      only: { from: ["role == 'jump'", { workload: ansible-1 }], ports: [22/tcp, 3389/tcp] }
    - name: payments is ring-fenced
      ringfence: { group: "app == 'payments'", except: ["app == 'shop' && role == 'app'"] }
    - name: nothing reaches the internet but the proxies
      only: { from: "role == 'proxy'", to: { iplist: internet } }
    - name: the web tier reaches the app tier
      reaches: { from: "role == 'web'", to: "role == 'app'", ports: [8080/tcp] }

Exit codes:
  0  every assertion holds
  5  some assertion fails (each failure shows concrete flows and the rules that allow them)
  1  the policy or the assertions file has errors
  2  usage error

Examples:
  bulkhead assert examples/estate/policy invariants.yaml
  bulkhead assert policy/ invariants.yaml --output json | jq '.assertions[] | select(.holds | not)'`,
    )
    .action((dir: string, file: string, opts: AssertCliOptions) => {
      prog.setOptionValue('exit', runAssert(dir, file, opts, io));
    });
}
