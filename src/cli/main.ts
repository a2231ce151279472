/**
 * The bulkhead command line. Each command is a thin shell over the pure core:
 * read files through an adapter, call the core, render.
 */
import { Command, CommanderError, Option } from 'commander';
import { EXIT, loadDir, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { diagnosticJson, plural, summary } from './render.js';
import { runEval } from './eval.js';
import { runDemo } from './demo.js';
import { runGenerate } from './generate.js';
import { register as registerCompile } from './compile.js';
import { register as registerApply } from './apply.js';
import { register as registerLab } from './lab.js';
import { register as registerReach } from './reach.js';
import { register as registerBlast } from './blast.js';
import { register as registerAssert } from './assert.js';
import { register as registerDiff } from './diff.js';
import { register as registerK8s } from './k8s.js';
import { register as registerLint } from './lint.js';
import { register as registerInit } from './init.js';
import { register as registerIngest } from './ingest.js';
import { register as registerMap } from './map.js';
import { register as registerCollect } from './collect.js';
import { register as registerGenerateFlows } from './generate-flows.js';
import { register as registerRecommend } from './recommend.js';
import { register as registerTest } from './test.js';
import { register as registerServe } from './serve.js';
import { register as registerAgent } from './agent.js';

let pipeWatched = false;
/** `bulkhead … | head`: when the reader goes away, stop quietly, as a Unix tool does, instead of crashing on EPIPE. */
function quietOnBrokenPipe(): void {
  if (pipeWatched) return;
  pipeWatched = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
}

const defaultIo = (): Io => (quietOnBrokenPipe(), {
  out: (s) => process.stdout.write(s + '\n'),
  err: (s) => process.stderr.write(s + '\n'),
  color: Boolean(process.stderr.isTTY) && !process.env.NO_COLOR,
});

const outputOption = () => new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text');
const nowOption = () => new Option('--now <time>', 'judge override expiry at this time (ISO 8601) instead of now');

function runValidate(dir: string, opts: { output: string; now?: string; strict?: boolean }, io: Io): number {
  const c = loadDir(dir, parseNow(opts.now));
  const items = c.diagnostics.sorted();
  const errors = c.diagnostics.errorCount;
  const warnings = c.diagnostics.warningCount;
  const failed = errors > 0 || (opts.strict === true && warnings > 0);
  if (opts.output === 'json') {
    io.out(
      JSON.stringify(
        {
          ok: !failed,
          errors,
          warnings,
          diagnostics: items.map(diagnosticJson),
          stats: { workloads: c.policy.workloads.length, classes: c.ir.classes.length, rules: c.ir.rules.length, iplists: c.policy.iplists.size, services: c.policy.services.size, atoms: c.ir.atoms.length, endpoints: c.ir.endpoints.length },
        },
        null,
        2,
      ),
    );
  } else {
    printDiagnostics(items, c.texts, io);
    const s = `${plural(c.policy.workloads.length, 'workload')} in ${plural(c.ir.classes.length, 'group')}, ${plural(c.ir.rules.length, 'rule')}, ${plural(c.policy.iplists.size, 'IP list')}, ${plural(c.policy.services.size, 'service')}`;
    io.err(`${failed ? 'policy has problems' : 'policy is valid'}: ${summary(errors, warnings)}; ${s}`);
  }
  return failed ? EXIT.policyErrors : EXIT.ok;
}

/** Builds the command tree. Exported so tests can drive it. */
export function program(io: Io): Command {
  const prog = new Command('bulkhead')
    .description('microsegmentation control plane: label-based policy as code, tested against real flows, compiled to every enforcement point')
    .version('0.1.0')
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s.replace(/\n$/, '')) })
    .exitOverride()
    .addHelpText(
      'after',
      `
Exit codes:
  0  success (for eval: the flow is allowed or not evaluated)
  1  the policy has errors (or warnings, with --strict)
  2  usage error: a bad option, file or address
  3  eval: the flow is blocked; test: some legitimate flow would be blocked
  4  eval: the flow is potentially blocked (a test-mode end would block it); test: some would be
  5  assert: some assertion fails
  6  apply: loading the ruleset failed (nothing changed, or rolled back)

Start with:
  bulkhead demo                       run the whole loop on the bundled sample estate
  bulkhead validate examples/estate/policy  check a policy directory
  bulkhead eval examples/estate/policy --from shop-prod-app-1 --to shop-prod-db-1 --port 5432/tcp`,
    );

  prog
    .command('validate')
    .description('check a policy directory: YAML, labels against the taxonomy, names, addresses, ports, selectors, references, overrides')
    .argument('<dir>', 'policy directory (or one YAML file)')
    .addOption(outputOption())
    .addOption(nowOption())
    .option('--strict', 'fail on warnings too')
    .addHelpText('after', '\nExamples:\n  bulkhead validate examples/estate/policy\n  bulkhead validate policy/ --output json | jq .diagnostics\n  bulkhead validate policy/ --now 2027-01-01T00:00:00Z   # which overrides will have expired')
    .action((dir: string, opts) => {
      prog.setOptionValue('exit', runValidate(dir, opts, io));
    });

  prog
    .command('eval')
    .description('decide one flow against a policy and explain the verdict')
    .argument('<dir>', 'policy directory')
    .requiredOption('--from <ip|workload>', 'source address or workload name')
    .requiredOption('--to <ip|workload>', 'destination address or workload name')
    .requiredOption('--port <port/proto>', 'the connection: 5432/tcp, 53/udp, 8/icmp (ICMP type), 3:4/icmp (type:code)')
    .addOption(outputOption())
    .addOption(nowOption())
    .addHelpText('after', '\nExamples:\n  bulkhead eval examples/estate/policy --from shop-prod-web-1 --to shop-prod-app-1 --port 8080/tcp\n  bulkhead eval policy/ --from 203.0.113.9 --to 10.1.1.10 --port 443/tcp --output json')
    .action((dir: string, opts) => {
      prog.setOptionValue('exit', runEval(dir, opts, io));
    });

  prog
    .command('demo')
    .description('run the whole loop on the bundled sample estate (or --estate) and write the outputs')
    .option('--estate <dir>', 'policy directory to use instead of the bundled sample estate')
    .option('--flows <file>', 'example flows with expected verdicts (YAML list of {note, from, to, port, expect, decidedBy})')
    .option('--out <dir>', 'where to write the outputs', 'out/demo')
    .addOption(nowOption())
    .action(async (opts) => {
      prog.setOptionValue('exit', await runDemo(opts, io));
    });

  prog
    .command('generate')
    .description('write a seeded synthetic estate (for benchmarks and tests)')
    .requiredOption('--out <dir>', 'directory to write the estate to')
    .option('--workloads <n>', 'number of workloads', '1000')
    .option('--rules <n>', 'number of rules (default: workloads / 10)')
    .option('--seed <n>', 'random seed', '1')
    .addHelpText('after', '\nExamples:\n  bulkhead generate --out /tmp/estate-10k --workloads 10000 --rules 1000 --seed 7')
    .action((opts) => {
      prog.setOptionValue('exit', runGenerate(opts, io));
    });

  registerIngest(prog, io);
  registerMap(prog, io);
  registerTest(prog, io);
  registerServe(prog, io);
  registerAgent(prog, io);
  registerCollect(prog, io);
  registerGenerateFlows(prog, io);
  registerRecommend(prog, io);
  registerCompile(prog, io);
  registerApply(prog, io);
  registerLab(prog, io);
  registerReach(prog, io);
  registerBlast(prog, io);
  registerAssert(prog, io);
  registerDiff(prog, io);
  registerK8s(prog, io);
  registerLint(prog, io);
  registerInit(prog, io);
  return prog;
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: readonly string[], io: Io = defaultIo()): Promise<number> {
  const prog = program(io);
  try {
    await prog.parseAsync(argv as string[]);
    return (prog.getOptionValue('exit') as number | undefined) ?? EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.ok;
      return EXIT.usage;
    }
    if (e instanceof UsageError || (e instanceof Error && /^cannot read/.test(e.message))) {
      io.err(`error: ${e.message}`);
      return EXIT.usage;
    }
    throw e;
  }
}
