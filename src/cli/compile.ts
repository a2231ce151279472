/** `bulkhead compile`: a policy to per-host rulesets for an enforcement target. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { parsePrefix, type Prefix } from '../netset/ip.js';
import type { Diagnostic } from '../model/diagnostic.js';
import { HostCompiler } from '../compile/host.js';
import { compileNftables, type Failsafe } from '../compile/nftables.js';
import { nftAvailable, nftCheck } from '../adapters/nft.js';
import { iptablesCheck } from '../adapters/iptables.js';
import { compileIptables } from '../compile/iptables.js';
import { EXIT, loadDir, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { parseConnection } from './eval.js';
import { plural, summary } from './render.js';

export interface CompileOptions {
  target: string;
  out?: string;
  workload?: string[];
  check?: boolean;
  mgmt?: string[];
  mgmtPort?: string[];
  controlPlane?: string[];
  output: string;
  now?: string;
}

function prefixes(list: readonly string[] | undefined, flag: string): Prefix[] {
  return (list ?? []).map((s) => {
    const r = parsePrefix(s);
    if ('error' in r) throw new UsageError(`invalid ${flag} \`${s}\`: ${r.error}`);
    return r.prefix;
  });
}

/** The failsafe rules from the command line. */
export function failsafeOf(opts: Pick<CompileOptions, 'mgmt' | 'mgmtPort' | 'controlPlane'>): Failsafe {
  return {
    managementPrefixes: prefixes(opts.mgmt, '--mgmt'),
    managementPorts: (opts.mgmtPort ?? ['22/tcp']).map((p) => parseConnection(p)).map((c) => ({ proto: c.proto, port: c.port })),
    controlPlane: prefixes(opts.controlPlane, '--control-plane'),
  };
}

export function runCompile(dir: string, opts: CompileOptions, io: Io): number {
  const c = loadDir(dir, parseNow(opts.now));
  if (c.diagnostics.hasErrors()) {
    printDiagnostics(c.diagnostics.sorted().filter((d) => d.severity === 'error'), c.texts, io);
    io.err(`cannot compile: the policy has problems (${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)})`);
    return EXIT.policyErrors;
  }
  const failsafe = failsafeOf(opts);
  const hc = new HostCompiler(c.ir);
  const wanted = opts.workload && opts.workload.length > 0 ? new Set(opts.workload) : undefined;
  if (wanted) for (const w of wanted) if (!c.policy.workloads.some((x) => x.name === w)) throw new UsageError(`unknown workload \`${w}\``);
  const diags: Diagnostic[] = [];
  const results: { workload: string; rules: number; setElements: number; file?: string; check?: string; ms: number }[] = [];
  const check = opts.check === true;
  const iptables = opts.target === 'iptables';
  if (check && !iptables && !nftAvailable()) throw new UsageError('--check needs `nft` (Debian package nftables) and root');
  if (opts.out) mkdirSync(opts.out, { recursive: true });
  let skipped = 0;
  c.ir.workloads.forEach((w, i) => {
    if (wanted && !wanted.has(w.name)) return;
    const t0 = performance.now();
    const host = hc.host(i);
    if (!host) {
      skipped++;
      return;
    }
    const a = iptables ? compileIptables(host, { failsafe }) : compileNftables(host, { failsafe });
    const ms = performance.now() - t0;
    diags.push(...a.diagnostics);
    const row: (typeof results)[number] = { workload: w.name, rules: a.rules, setElements: a.setElements, ms };
    const files: [string, string][] = 'text' in a ? [['nft', a.text]] : [['ipset', a.ipset], ['iptables', a.iptables], ['ip6tables', a.ip6tables]];
    if (opts.out) {
      for (const [ext, text] of files) writeFileSync(join(opts.out, `${w.name}.${ext}`), text);
      row.file = join(opts.out, `${w.name}.${files[0][0]}`);
    } else if (opts.output === 'text' && wanted) for (const [ext, text] of files) io.out(`# ---- ${w.name}.${ext}\n${text}`);
    if (check) {
      const r = 'text' in a ? nftCheck(a.text) : iptablesCheck(a);
      row.check = r.ok ? 'ok' : r.error;
    }
    results.push(row);
  });
  printDiagnostics(diags, c.texts, io);
  const failedChecks = results.filter((r) => r.check !== undefined && r.check !== 'ok');
  const times = results.map((r) => r.ms).sort((a, b) => a - b);
  const p99 = times.length ? times[Math.min(times.length - 1, Math.floor(times.length * 0.99))] : 0;
  if (opts.output === 'json') {
    io.out(JSON.stringify({ target: opts.target, hosts: results, unmanaged: skipped, diagnostics: diags.length, p99Ms: p99 }, null, 2));
  } else {
    const rules = results.reduce((n, r) => n + r.rules, 0);
    io.err(`compiled ${plural(results.length, 'managed workload')} to ${opts.target} (${plural(skipped, 'unmanaged workload')} skipped): ${rules} rules, p99 ${p99.toFixed(2)} ms per host${opts.out ? `; written to ${opts.out}/` : ''}`);
    if (check) io.err(failedChecks.length === 0 ? `${iptables ? 'restore --test' : 'nft -c'}: all ${results.length} rulesets check` : `${iptables ? 'restore --test' : 'nft -c'}: ${failedChecks.length} rulesets fail:\n${failedChecks.map((f) => `  ${f.workload}: ${f.check}`).join('\n')}`);
  }
  if (failedChecks.length > 0 || diags.some((d) => d.severity === 'error')) return EXIT.policyErrors;
  return EXIT.ok;
}

/** Adds the failsafe options ({@link failsafeOf} reads them) to a command that compiles host rulesets. */
export function withFailsafeOptions(cmd: Command): Command {
  return cmd
    .option('--mgmt <prefix...>', 'failsafe: management networks always allowed in on the management ports')
    .option('--mgmt-port <port/proto...>', 'failsafe: management ports (default 22/tcp)')
    .option('--control-plane <prefix...>', 'failsafe: control plane addresses, always reachable both ways');
}

/** Adds `compile` to the program. */
export function register(prog: Command, io: Io): void {
  withFailsafeOptions(
    prog
      .command('compile')
      .description('compile a policy to per-host rulesets (nftables, or iptables + ipset) for every managed workload')
      .argument('<dir>', 'policy directory')
      .addOption(new Option('-t, --target <target>', 'enforcement target').choices(['nftables', 'iptables']).default('nftables'))
      .option('--out <dir>', 'write the files of each host here (<workload>.nft; iptables: .ipset, .iptables, .ip6tables)')
      .option('-w, --workload <name...>', 'only these workloads (prints the ruleset when --out is not given)')
      .option('--check', 'check every ruleset in a scratch network namespace: `nft -c`, or ipset restore + iptables-restore --test (needs root)'),
  )
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601)'))
    .addHelpText(
      'after',
      '\nExamples:\n  bulkhead compile examples/estate/policy --out out/nft --check\n  bulkhead compile examples/estate/policy --target iptables --out out/ipt\n  bulkhead compile examples/estate/policy -w shop-prod-web-1 --mgmt 10.99.0.0/16 --control-plane 10.99.0.5\n\nEach file replaces only the table `inet bulkhead` in one transaction: load it with `nft -f <file>`.',
    )
    .action((dir: string, opts: CompileOptions) => {
      prog.setOptionValue('exit', runCompile(dir, opts, io));
    });
}
