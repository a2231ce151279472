/** `bulkhead lint`: findings about a policy that loads, but is too broad, redundant or risky to enforce. */
import { Option, type Command } from 'commander';
import type { Diagnostic } from '../model/diagnostic.js';
import { lint, type Finding } from '../lint/index.js';
import { EXIT, loadDir, parseNow, printDiagnostics, type Io } from './common.js';
import { diagnosticJson, plural, renderDiagnostic, summary } from './render.js';

/** The options of `bulkhead lint`. */
export interface LintCliOptions {
  output: string;
  strict?: boolean;
  now?: string;
}

/** A finding as a diagnostic, for the shared renderers (lint codes are not yet in `CODES`). */
function asDiagnostic(f: Finding): Diagnostic {
  return { code: f.code, severity: f.severity, message: f.message, loc: f.loc, help: f.help };
}

/** Runs `bulkhead lint` on a policy directory; returns the exit code. */
export function runLint(dir: string, opts: LintCliOptions, io: Io): number {
  const c = loadDir(dir, parseNow(opts.now));
  if (c.diagnostics.hasErrors()) {
    printDiagnostics(c.diagnostics.sorted().filter((d) => d.severity === 'error'), c.texts, io);
    io.err(`cannot lint: the policy has problems (${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)})`);
    return EXIT.policyErrors;
  }
  const findings = lint(c.ir);
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.length - errors;
  if (opts.output === 'json') {
    io.out(JSON.stringify({ findings: findings.map((f) => ({ ...diagnosticJson(asDiagnostic(f)), rule: f.rule ?? null, workload: f.workload ?? null })), errors, warnings }, null, 2));
  } else {
    for (const f of findings) io.out(renderDiagnostic(asDiagnostic(f), c.texts, { color: io.color }) + '\n');
    io.err(findings.length === 0 ? 'no findings' : `${plural(findings.length, 'finding')}: ${summary(errors, warnings)}`);
  }
  return errors > 0 || (opts.strict === true && warnings > 0) ? EXIT.policyErrors : EXIT.ok;
}

/** Adds `lint` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('lint')
    .description('find overly broad, redundant and dead rules, rules over empty groups, unlabeled workloads and enforced workloads with no allow rules')
    .argument('<dir>', 'policy directory')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .option('--strict', 'exit 1 on warnings too')
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601)'))
    .addHelpText('after', '\nExit status: 1 when there are findings of severity error (with --strict: any finding).\n\nExamples:\n  bulkhead lint examples/estate/policy\n  bulkhead lint policy/ --strict --output json')
    .action((dir: string, opts: LintCliOptions) => {
      prog.setOptionValue('exit', runLint(dir, opts, io));
    });
}
