/** `bulkhead lab`: a network-namespace lab of an estate, its rulesets loaded, probed against the engine. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { defaultStateDir, labDown, labOpen, labProbe, labProblems, labStatus, labUp } from '../lab/index.js';
import { compareWithEngine, labHostsFromIr, loadPolicy, probePlan, type Backend } from '../lab/verify.js';
import { EXIT, loadDir, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { plural, summary, table } from './render.js';

interface Meta {
  policy: string;
  now?: string;
  hosts: string[];
}

const metaFile = (runId: string) => join(defaultStateDir(), `${runId}.policy.json`);

function latestRun(): string {
  const runs = labStatus().filter((r) => r.status === 'up' && r.stateFile);
  if (runs.length === 0) throw new UsageError('no lab is up: start one with `bulkhead lab up <policy-dir>`');
  return runs[runs.length - 1].runId;
}

function needRoot(iptables = false): void {
  const problems = labProblems({ needIptables: iptables });
  if (problems.length > 0) throw new UsageError(`the lab cannot run here:\n  - ${problems.join('\n  - ')}`);
}

function loadMeta(runId: string): Meta {
  try {
    return JSON.parse(readFileSync(metaFile(runId), 'utf8')) as Meta;
  } catch {
    throw new UsageError(`lab \`${runId}\` was not made by \`bulkhead lab up\` (no policy recorded)`);
  }
}

function compiled(meta: Meta, io: Io) {
  const c = loadDir(meta.policy, parseNow(meta.now));
  if (c.diagnostics.hasErrors()) {
    printDiagnostics(c.diagnostics.sorted().filter((d) => d.severity === 'error'), c.texts, io);
    throw new UsageError(`the policy has problems (${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)})`);
  }
  return c;
}

/** Adds `lab up | apply | probe | down | status` to the program. */
export function register(prog: Command, io: Io): void {
  const lab = prog
    .command('lab')
    .description('prove enforcement in the kernel: one network namespace per workload, rulesets loaded, real connections compared with the engine (needs root; never touches this machine\'s own network)')
    .addHelpText('after', '\nExamples:\n  bulkhead lab up examples/estate/policy --max 30\n  bulkhead lab apply --target nftables\n  bulkhead lab probe --sample 2000\n  bulkhead lab down');

  lab
    .command('up')
    .description('build the lab: a namespace per workload (or a subset) with its addresses, joined by a bridge in a namespace of its own, listening on the ports it serves')
    .argument('<dir>', 'policy directory')
    .option('--hosts <name...>', 'only these workloads')
    .option('--max <n>', 'at most this many workloads (the first ones)', '40')
    .addOption(new Option('--now <time>', 'judge override expiry at this time'))
    .action(async (dir: string, opts: { hosts?: string[]; max: string; now?: string }) => {
      needRoot();
      const meta: Meta = { policy: resolve(dir), now: opts.now, hosts: [] };
      const c = compiled(meta, io);
      let hosts = labHostsFromIr(c.ir, { names: opts.hosts });
      hosts = hosts.slice(0, Number(opts.max));
      if (hosts.length === 0) throw new UsageError('no workload with a single address to put in the lab');
      const t0 = performance.now();
      const l = await labUp(hosts);
      meta.hosts = hosts.map((h) => h.name);
      writeFileSync(metaFile(l.runId), JSON.stringify(meta, null, 2));
      io.out(`lab ${l.runId} is up: ${plural(hosts.length, 'host')} in ${((performance.now() - t0) / 1000).toFixed(1)} s; next: bulkhead lab apply`);
      prog.setOptionValue('exit', EXIT.ok);
    });

  lab
    .command('apply')
    .description("compile each lab host's ruleset and load it inside its namespace")
    .option('--run <id>', 'the lab (default: the latest)')
    .addOption(new Option('-t, --target <target>', 'enforcement backend').choices(['nftables', 'iptables']).default('nftables'))
    .action(async (opts: { run?: string; target: Backend }) => {
      needRoot(opts.target === 'iptables');
      const runId = opts.run ?? latestRun();
      const meta = loadMeta(runId);
      const c = compiled(meta, io);
      const n = await loadPolicy(labOpen(runId), c.ir, opts.target);
      io.out(`loaded ${opts.target} rulesets into ${plural(n, 'managed host')} of lab ${runId}; next: bulkhead lab probe`);
      prog.setOptionValue('exit', EXIT.ok);
    });

  lab
    .command('probe')
    .description('make real connections between lab hosts and compare what the kernel did with what the engine says')
    .option('--run <id>', 'the lab (default: the latest)')
    .option('--sample <n>', 'probe this many of the planned connections (default all)')
    .option('--timeout <ms>', 'how long a probe waits before it counts as dropped', '300')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (opts: { run?: string; sample?: string; timeout: string; output: string }) => {
      needRoot();
      const runId = opts.run ?? latestRun();
      const meta = loadMeta(runId);
      const c = compiled(meta, io);
      const l = labOpen(runId);
      const plan = probePlan(l.hosts, { sample: opts.sample === undefined ? undefined : Number(opts.sample) });
      const t0 = performance.now();
      const cmp = compareWithEngine(c.ir, await labProbe(l, plan, { timeoutMs: Number(opts.timeout) }));
      const secs = (performance.now() - t0) / 1000;
      if (opts.output === 'json') io.out(JSON.stringify({ runId, probes: cmp.probes, verdicts: Object.fromEntries(cmp.verdicts), mismatches: cmp.mismatches }, null, 2));
      else {
        io.out(table([['verdict (engine)', 'probes'], ...[...cmp.verdicts].map(([v, n]) => [v, String(n)])]));
        io.out(`${cmp.probes} probes in ${secs.toFixed(1)} s: ${cmp.mismatches.length === 0 ? 'the kernel did what the engine says on every probe' : `${cmp.mismatches.length} disagree:\n  ${cmp.mismatches.slice(0, 20).join('\n  ')}`}`);
      }
      prog.setOptionValue('exit', cmp.mismatches.length === 0 ? EXIT.ok : EXIT.policyErrors);
    });

  lab
    .command('down')
    .description('remove the lab: its processes and namespaces (also after a crash)')
    .option('--run <id>', 'the lab (default: every lab made from this machine\'s state dir)')
    .action(async (opts: { run?: string }) => {
      needRoot();
      // Only labs recorded in this state dir: another process's namespaces are not ours to remove.
      const runs = opts.run ? [opts.run] : labStatus().filter((s) => s.stateFile).map((s) => s.runId);
      for (const r of runs) await labDown(r);
      io.out(runs.length === 0 ? 'no lab is up' : `removed ${plural(runs.length, 'lab')}: ${runs.join(', ')}`);
      prog.setOptionValue('exit', EXIT.ok);
    });

  lab
    .command('status')
    .description('list the labs that are up')
    .action(() => {
      const runs = labStatus();
      io.out(runs.length === 0 ? 'no lab is up' : table([['run', 'state', 'hosts', 'namespaces', 'agents alive'], ...runs.map((r) => [r.runId, r.status, String(r.hosts), String(r.namespaces), String(r.agentsAlive)])]));
      prog.setOptionValue('exit', EXIT.ok);
    });
}
