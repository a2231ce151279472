/**
 * `bulkhead k8s`: analyze Kubernetes manifests (`connlist`, np-guard's
 * connectivity report) and compile a bulkhead policy for a cluster
 * (`compile --target k8s|calico|cilium`).
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { Command, Option } from 'commander';
import type { Diagnostic } from '../model/diagnostic.js';
import type { SourceFile } from '../policy/source.js';
import { connlist, formatConnlist } from '../k8s/connlist.js';
import { formatConns } from '../k8s/conns.js';
import { compile, manifestsYaml, TARGETS, type Target } from '../k8s/compile.js';
import type { K8sDiagnostic } from '../k8s/diagnostics.js';
import { analyzeManifests } from '../k8s/index.js';
import { validateManifests } from '../k8s/schema.js';
import { verifyK8s } from '../k8s/verify.js';
import { EXIT, loadDir, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { diagnosticJson, renderDiagnostic, summary } from './render.js';

/** A Kubernetes diagnostic as the renderers take it (its code may be one of the proposed BH9xx codes). */
function asDiagnostic(d: K8sDiagnostic): Diagnostic {
  return d as unknown as Diagnostic;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.') || name === 'node_modules') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (/\.(ya?ml|json)$/i.test(name)) out.push(p);
  }
  return out;
}

/**
 * Reads every `*.yaml`, `*.yml` and `*.json` under `path` (or the one file),
 * in sorted path order; paths are shown relative to the working directory
 * when under it.
 */
export function readManifestDir(path: string, cwd = process.cwd()): SourceFile[] {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new UsageError(`cannot read manifests \`${path}\`: no such file or directory`);
  }
  const files = st.isDirectory() ? walk(path) : [path];
  return files.map((f) => {
    const r = relative(cwd, f);
    return { path: r.startsWith('..') ? f : r, text: readFileSync(f, 'utf8') };
  });
}

function printK8sDiagnostics(items: readonly K8sDiagnostic[], texts: ReadonlyMap<string, string>, io: Io): void {
  for (const d of items) io.err(renderDiagnostic(asDiagnostic(d), texts, { color: io.color }) + '\n');
}

function k8sDiagnosticJson(d: K8sDiagnostic): Record<string, unknown> {
  return { ...diagnosticJson(asDiagnostic(d)), ...(d.rules ? { rules: d.rules } : {}) };
}

/** `bulkhead k8s connlist <dir>`: the connectivity report. */
export function runConnlist(dir: string, opts: { output: string }, io: Io): number {
  const files = readManifestDir(dir);
  const a = analyzeManifests(files);
  const texts = new Map(files.map((f) => [f.path, f.text]));
  const items = a.diagnostics.items;
  if (a.diagnostics.hasErrors()) {
    if (opts.output === 'json') io.out(JSON.stringify({ ok: false, connections: [], diagnostics: items.map(k8sDiagnosticJson) }, null, 2));
    else {
      printK8sDiagnostics(items, texts, io);
      io.err(`cannot analyze: the manifests have problems (${summary(a.diagnostics.errorCount, a.diagnostics.warningCount)})`);
    }
    return EXIT.policyErrors;
  }
  const lines = connlist(a.cluster, a.analyzer);
  if (opts.output === 'json') {
    io.out(JSON.stringify({ ok: true, connections: lines.map((l) => ({ src: l.src, dst: l.dst, conns: formatConns(l.conns) })), diagnostics: items.map(k8sDiagnosticJson) }, null, 2));
  } else {
    printK8sDiagnostics(items, texts, io);
    const text = formatConnlist(lines);
    if (text !== '') io.out(text.replace(/\n$/, ''));
  }
  return EXIT.ok;
}

interface CompileOpts {
  target: Target;
  output: string;
  out?: string;
  now?: string;
  dropUnsupportedAllows?: boolean;
  logDenied?: boolean;
  tier?: string;
  verify?: boolean;
}

/** `bulkhead k8s compile <policy-dir> --target …`: manifests for a cluster. */
export function runCompile(dir: string, opts: CompileOpts, io: Io): number {
  const c = loadDir(dir, parseNow(opts.now));
  if (c.diagnostics.hasErrors()) {
    printDiagnostics(c.diagnostics.sorted().filter((d) => d.severity === 'error'), c.texts, io);
    io.err(`cannot compile: the policy has problems (${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)}); run \`bulkhead validate ${dir}\``);
    return EXIT.policyErrors;
  }
  if (opts.verify && opts.target !== 'k8s') throw new UsageError('--verify needs --target k8s: the analyzer reads Kubernetes NetworkPolicy and AdminNetworkPolicy');
  const r = compile(c.ir, { target: opts.target, dropUnsupportedAllows: opts.dropUnsupportedAllows, logDenied: opts.logDenied, tier: opts.tier });
  const errors = r.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = r.diagnostics.length - errors;
  const schema = validateManifests(r.artifacts);
  for (const p of schema) io.err(`error: generated ${p.kind} \`${p.name}\` does not fit its schema: ${p.problems.join('; ')}`);
  const verify = opts.verify && errors === 0 ? verifyK8s(c.ir, r.artifacts) : undefined;
  const failed = errors > 0 || schema.length > 0 || (verify !== undefined && verify.mismatches.length > 0);
  const text = opts.output === 'json' ? JSON.stringify({ ok: !failed, target: opts.target, artifacts: r.artifacts, diagnostics: r.diagnostics.map(k8sDiagnosticJson), ...(verify ? { verify } : {}) }, null, 2) : manifestsYaml(r.artifacts).replace(/\n$/, '');
  if (opts.output !== 'json') printK8sDiagnostics(r.diagnostics, c.texts, io);
  if (verify) {
    for (const m of verify.mismatches) io.err(`mismatch: ${m.src} -> ${m.dst} ${m.connection}: bulkhead ${m.engine ? 'allows' : 'blocks'}, the compiled policy ${m.cluster ? 'allows' : 'blocks'}`);
    io.err(`verify: ${verify.checks} checks, ${verify.mismatches.length === 0 ? 'the compiled policy agrees with bulkhead on every pod end' : `${verify.mismatches.length} mismatches`}`);
  }
  if (failed && opts.output !== 'json') {
    io.err(`cannot compile for ${opts.target}: ${summary(errors, warnings)}${schema.length > 0 ? `, ${schema.length} schema problems` : ''}`);
    return EXIT.policyErrors;
  }
  if (opts.out !== undefined && !failed) {
    mkdirSync(dirname(opts.out), { recursive: true });
    writeFileSync(opts.out, text + '\n');
    io.err(`wrote ${r.artifacts.length} objects to ${opts.out} (${summary(errors, warnings)})`);
  } else io.out(text);
  return failed ? EXIT.policyErrors : EXIT.ok;
}

/** Adds `bulkhead k8s connlist` and `bulkhead k8s compile` to the program. */
export function register(prog: Command, io: Io): void {
  const output = (choices: string[], dflt: string) => new Option('-o, --output <format>', 'output format').choices(choices).default(dflt);
  const k8s = prog.command('k8s').description('Kubernetes: analyze the network policies of manifests, and compile a policy for a cluster (Kubernetes, Calico, Cilium)');

  k8s
    .command('connlist')
    .description('list the connectivity that the manifests allow, in np-guard\'s format (NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)')
    .argument('<dir>', 'directory of manifests (*.yaml, *.yml, *.json), or one file')
    .addOption(output(['text', 'json'], 'text'))
    .addHelpText(
      'after',
      `
Each line is \`src => dst : connections\`; workloads are \`namespace/name[Kind]\` (pods by
their owner), addresses \`first-last[External]\`. Pairs with nothing allowed are left out.

Examples:
  bulkhead k8s connlist cluster/manifests
  bulkhead k8s connlist cluster/manifests --output json | jq '.connections[] | select(.dst | test("db"))'`,
    )
    .action((dir: string, opts) => {
      prog.setOptionValue('exit', runConnlist(dir, opts, io));
    });

  k8s
    .command('compile')
    .description('compile a bulkhead policy to cluster manifests for the pods of the estate (workloads of kind pod with a namespace label)')
    .argument('<policy-dir>', 'policy directory')
    .addOption(new Option('-t, --target <target>', 'what to emit').choices([...TARGETS]).makeOptionMandatory())
    .addOption(output(['yaml', 'json'], 'yaml'))
    .option('--out <file>', 'write the manifests to this file instead of stdout (not written on errors)')
    .option('--drop-unsupported-allows', 'leave out, with a warning, what allow rules ask for and the target cannot say (access only narrows)')
    .option('--log-denied', 'calico: log denied connections (a Log rule before each Deny and the default deny)')
    .option('--tier <name>', 'calico: the tier of the policies', 'bulkhead')
    .option('--verify', 'k8s: analyze the output and check that it allows exactly what bulkhead allows on every pod end')
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601) instead of now'))
    .addHelpText(
      'after',
      `
Targets:
  k8s     NetworkPolicy for allow rules and default deny; AdminNetworkPolicy for overrides and deny rules
  calico  projectcalico.org/v3 policies in one tier; Staged policies for pods in test mode
  cilium  CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy with deny rules

What a target cannot express is an error naming the rule, and nothing is written.

Examples:
  bulkhead k8s compile examples/estate/policy --target calico --out out/calico.yaml
  bulkhead k8s compile policy/ --target k8s --drop-unsupported-allows --verify
  bulkhead k8s compile policy/ --target cilium --output json | jq '.diagnostics'`,
    )
    .action((dir: string, opts) => {
      prog.setOptionValue('exit', runCompile(dir, opts, io));
    });
}
