/**
 * `bulkhead apply`: compile one workload's ruleset and load it on this host,
 * without a control plane (the agent does the same on its own, from the
 * server). nftables: one `nft -f` transaction that replaces only the table
 * `inet bulkhead`. iptables: bulkhead's own chains and sets, rolled back to
 * the last known good rules when a step fails. `--dry-run` prints what would
 * change and changes nothing.
 */
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { HostCompiler } from '../compile/host.js';
import { compileNftables } from '../compile/nftables.js';
import { compileIptables } from '../compile/iptables.js';
import { definesTable, listTable, nftApply, nftAvailable, nftDiff } from '../adapters/nft.js';
import { iptablesApplySafely, iptablesDiff, iptablesForgetLastKnownGood, iptablesRemove, iptablesState } from '../adapters/iptables.js';
import { createTwoFilesPatch } from 'diff';
import { EXIT, loadDir, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { failsafeOf, withFailsafeOptions, type CompileOptions } from './compile.js';
import { plural, summary } from './render.js';
import { findTool, hostAddresses, targetProblem } from '../agent/host.js';
import { formatPrefix, IpSet, parseAddr, type Prefix } from '../netset/ip.js';

/** Where `apply` keeps the last known good rulesets unless told otherwise (apart from the agent's). */
export const DEFAULT_APPLY_STATE_DIR = '/var/lib/bulkhead/apply';

export interface ApplyCliOptions extends Pick<CompileOptions, 'mgmt' | 'mgmtPort' | 'controlPlane' | 'now'> {
  target: string;
  workload?: string;
  remove?: boolean;
  dryRun?: boolean;
  force?: boolean;
  netns?: string;
  state?: string;
  output: string;
}

function haveTools(iptables: boolean): string | undefined {
  if (process.getuid?.() !== 0) return `loading ${iptables ? 'iptables rules' : 'an nftables ruleset'} needs root (run it with sudo)`;
  if (!iptables) return nftAvailable() ? undefined : '`nft` is not usable here: apt-get install nftables';
  for (const tool of ['ipset', 'iptables-restore', 'ip6tables-restore', 'iptables-save', 'ip6tables-save']) {
    if (!findTool(tool)) return `\`${tool}\` is not installed: apt-get install iptables ipset`;
  }
  return undefined;
}

/** Whether one of `local` lies in one of the workload's prefixes. */
function ownsOne(prefixes: readonly Prefix[], local: readonly string[]): boolean {
  const own = IpSet.fromPrefixes(prefixes);
  return local.some((s) => {
    const a = parseAddr(s);
    return a !== null && own.has(a);
  });
}

/** `apply --remove`: takes bulkhead's table (or chains, jumps and sets) off this host; with --dry-run, shows what would go. */
function runRemove(opts: ApplyCliOptions, io: Io): number {
  const iptables = opts.target === 'iptables';
  const missing = haveTools(iptables);
  if (missing) throw new UsageError(missing);
  const nsProblem = targetProblem({ netns: opts.netns });
  if (nsProblem) throw new UsageError(nsProblem);
  const where = opts.netns ? `network namespace ${opts.netns}` : 'this host';
  const target = { netns: opts.netns };
  const what = iptables ? "bulkhead's chains, jumps and sets" : 'the table inet bulkhead';
  const none = `table inet bulkhead {}\ndelete table inet bulkhead\n`;
  let r: { ok: true; changed: boolean; diff?: string } | { ok: false; error: string };
  try {
    if (opts.dryRun) {
      const diff = iptables ? ((cur) => (cur === '' ? '' : createTwoFilesPatch('loaded', 'new', cur, '', undefined, undefined, { context: 3 })))(iptablesState(target)) : nftDiff(none, target);
      r = { ok: true, changed: diff !== '', diff };
    } else if (iptables) {
      const before = iptablesState(target);
      const removed = iptablesRemove(target);
      if (removed.ok) iptablesForgetLastKnownGood(join(opts.state ?? DEFAULT_APPLY_STATE_DIR, 'iptables'));
      r = removed.ok ? { ok: true, changed: before !== '' } : { ok: false, error: `${removed.step}: ${removed.error}` };
    } else {
      r = nftApply(none, { ...target, stateDir: join(opts.state ?? DEFAULT_APPLY_STATE_DIR, 'nft'), verify: () => listTable(target) === undefined });
    }
  } catch (e) {
    r = { ok: false, error: (e as Error).message };
  }
  if (opts.output === 'json') io.out(JSON.stringify({ target: opts.target, where, remove: true, dryRun: opts.dryRun === true, ...r }, null, 2));
  if (!r.ok) {
    if (opts.output !== 'json') io.err(`removing ${what} from ${where} failed: ${r.error}`);
    return EXIT.applyFailed;
  }
  if (opts.output !== 'json') {
    if (opts.dryRun && r.diff) io.out(r.diff.replace(/\n$/, ''));
    io.err(!r.changed ? `nothing of bulkhead's (${opts.target}) is loaded on ${where}` : opts.dryRun ? `dry run: the diff above is what removing ${what} from ${where} would take out; nothing was changed` : `removed ${what} from ${where}: it is no longer enforced by bulkhead`);
  }
  return EXIT.ok;
}

/** Runs `bulkhead apply`; returns the exit code. */
export async function runApply(dir: string | undefined, opts: ApplyCliOptions, io: Io): Promise<number> {
  if (opts.remove) {
    if (dir !== undefined || opts.workload !== undefined) throw new UsageError('--remove takes no policy directory and no --workload: it removes whatever of bulkhead\'s is loaded');
    return runRemove(opts, io);
  }
  if (dir === undefined) throw new UsageError('give the policy directory (or --remove)');
  if (opts.workload === undefined) throw new UsageError('give the workload this host is: -w, --workload <name>');
  const iptables = opts.target === 'iptables';
  const c = loadDir(dir, parseNow(opts.now));
  if (c.diagnostics.hasErrors()) {
    printDiagnostics(c.diagnostics.sorted().filter((d) => d.severity === 'error'), c.texts, io);
    io.err(`nothing applied: the policy has problems (${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)})`);
    return EXIT.policyErrors;
  }
  const index = c.ir.workloads.findIndex((w) => w.name === opts.workload);
  if (index < 0) throw new UsageError(`unknown workload \`${opts.workload}\`: name one of the policy's workloads (bulkhead compile ${dir} --output json lists the managed ones)`);
  const host = new HostCompiler(c.ir).host(index);
  if (!host) throw new UsageError(`workload \`${opts.workload}\` is unmanaged: bulkhead programs no ruleset for it (see docs/ENFORCEMENT.md)`);
  const failsafe = failsafeOf(opts);
  const artifact = iptables ? compileIptables(host, { failsafe }) : compileNftables(host, { failsafe });
  printDiagnostics(artifact.diagnostics, c.texts, io);
  // Fail closed: a ruleset that cannot say what the policy says is never loaded.
  if (artifact.diagnostics.some((d) => d.severity === 'error')) {
    io.err(`nothing applied: the ${opts.target} ruleset of ${opts.workload} cannot express the policy (see the errors above)`);
    return EXIT.policyErrors;
  }
  const missing = haveTools(iptables);
  if (missing) throw new UsageError(missing);
  // Without this, a mistyped name would read as an empty namespace and the dry run would show everything as new.
  const nsProblem = targetProblem({ netns: opts.netns });
  if (nsProblem) throw new UsageError(nsProblem);
  const where = opts.netns ? `network namespace ${opts.netns}` : 'this host';
  // The wrong workload's ruleset would enforce someone else's policy here, and can cut the host off.
  const prefixes = c.ir.workloads[index].addresses;
  let says: string | undefined;
  try {
    const local = await hostAddresses({ netns: opts.netns });
    if (!ownsOne(prefixes, local)) says = `${where} has none of ${opts.workload}'s addresses (${prefixes.map(formatPrefix).join(', ')})`;
  } catch (e) {
    says = `cannot tell whether ${where} has ${opts.workload}'s addresses (${(e as Error).message})`;
  }
  if (says !== undefined) {
    if (!opts.dryRun && !opts.force) throw new UsageError(`${says}: its ruleset would enforce another workload's policy here. Name this host's workload with -w, or pass --force`);
    io.err(`warning: ${says}`);
  }
  const target = { netns: opts.netns };
  const what = `${plural(artifact.rules, 'rule')}, ${plural(artifact.setElements, 'set element')}`;

  if (opts.dryRun) {
    let diff: string;
    try {
      diff = 'text' in artifact ? nftDiff(artifact.text, target) : iptablesDiff(artifact, target);
    } catch (e) {
      io.err(`dry run failed: ${(e as Error).message}`);
      return EXIT.applyFailed;
    }
    if (opts.output === 'json') io.out(JSON.stringify({ workload: opts.workload, target: opts.target, where, dryRun: true, changed: diff !== '', rules: artifact.rules, setElements: artifact.setElements, diff }, null, 2));
    else {
      if (diff !== '') io.out(diff.replace(/\n$/, ''));
      io.err(diff === '' ? `dry run: ${where} already has this ruleset (${what}); nothing would change` : `dry run: the diff above is what applying ${opts.workload}'s ${opts.target} ruleset (${what}) would change on ${where}; nothing was changed`);
    }
    return EXIT.ok;
  }

  const stateDir = join(opts.state ?? DEFAULT_APPLY_STATE_DIR, iptables ? 'iptables' : 'nft');
  const t0 = performance.now();
  let r: ReturnType<typeof nftApply> | ReturnType<typeof iptablesApplySafely>;
  try {
    r = 'text' in artifact
      ? nftApply(artifact.text, { ...target, stateDir, verify: () => (listTable(target) !== undefined) === definesTable(artifact.text) })
      : iptablesApplySafely(artifact, { ...target, stateDir });
  } catch (e) {
    // A tool that cannot run, a state directory that cannot be written: said, not a stack trace.
    r = { ok: false, error: (e as Error).message, rolledBack: false };
  }
  const ms = performance.now() - t0;
  if (opts.output === 'json') io.out(JSON.stringify({ workload: opts.workload, target: opts.target, where, dryRun: false, mode: host.mode, rules: artifact.rules, setElements: artifact.setElements, ms: Math.round(ms), ...r }, null, 2));
  if (!r.ok) {
    if (opts.output !== 'json') io.err(`apply failed on ${where}: ${r.error}`);
    return EXIT.applyFailed;
  }
  if (opts.output !== 'json') io.err(`applied ${opts.workload}'s ${opts.target} ruleset (mode ${host.mode}; ${what}) on ${where} in ${ms.toFixed(0)} ms${r.changed ? '' : ': it was already loaded'}; last known good kept in ${stateDir}`);
  return EXIT.ok;
}

/** Adds `apply` to the program. */
export function register(prog: Command, io: Io): void {
  withFailsafeOptions(
    prog
      .command('apply')
      .description('compile one workload\'s ruleset and load it on this host (or in a network namespace): nftables in one transaction, iptables rolled back on failure; last known good kept; --dry-run shows the difference')
      .argument('[dir]', 'policy directory')
      .option('-w, --workload <name>', 'the workload this host is (required, but with --remove)')
      .option('--remove', 'take bulkhead\'s table (iptables: its chains, jumps and sets) off this host instead; no policy needed')
      .addOption(new Option('-t, --target <target>', 'enforcement backend').choices(['nftables', 'iptables']).default('nftables'))
      .option('--dry-run', 'print the difference from what is loaded (a unified diff) and change nothing')
      .option('--force', 'apply even when this host has none of the workload\'s addresses')
      .option('--netns <name>', 'load into this network namespace instead of the host\'s own')
      .option('--state <dir>', `where the last known good ruleset is kept (default ${DEFAULT_APPLY_STATE_DIR})`),
  )
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601)'))
    .addHelpText(
      'after',
      `
What it touches: nftables: only the table \`inet bulkhead\` (one \`nft -f\` transaction: all or nothing).
iptables: only the chains BH-INPUT, BH-OUTPUT, BH-INGRESS, BH-EGRESS, the jumps to them and
bulkhead's own ipsets; if a step fails, the last known good rules are loaded again (or, with none,
bulkhead's chains and sets are removed). Other tables, chains and sets are never touched.

Safety: the host must have one of the workload's addresses (else --force), and the failsafe
options (--mgmt, --control-plane) keep your own way in open whatever the policy says: pass them.

Exit codes: 0 applied (or dry run done), 1 the policy has errors or the ruleset cannot express it
(nothing loaded), 2 usage (unknown workload, not this host's, no nft, not root), 6 the load or the
dry run failed: nothing changed, or rolled back; when the roll back fails too, the message says so.

Examples:
  bulkhead apply policy/ -w shop-prod-web-1 --mgmt 10.99.0.0/16 --control-plane 10.99.0.5 --dry-run
  bulkhead apply policy/ -w shop-prod-web-1 --mgmt 10.99.0.0/16 --control-plane 10.99.0.5
  bulkhead apply policy/ -w legacy-db-1 --target iptables --output json
  bulkhead apply --remove --dry-run                  what taking bulkhead off this host would remove

A host an agent manages gets its ruleset from the control plane: do not also apply by hand there.`,
    )
    .action(async (dir: string | undefined, opts: ApplyCliOptions) => {
      prog.setOptionValue('exit', await runApply(dir, opts, io));
    });
}
