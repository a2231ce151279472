/**
 * `bulkhead demo`: the whole loop, as far as it exists, on the bundled sample
 * estate: validate the policy, build the IR, decide the estate's example
 * flows and check them against what its authors expect. Writes its outputs
 * and says where they are.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { Evaluator, type Decision } from '../engine/evaluate.js';
import { HostCompiler } from '../compile/host.js';
import { compileNftables } from '../compile/nftables.js';
import { nftAvailable, nftCheck } from '../adapters/nft.js';
import { labDown, labProbe, labProblems, labUp } from '../lab/index.js';
import { compareWithEngine, labHostsFromIr, loadPolicy, probePlan } from '../lab/verify.js';
import { EXIT, loadDir, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { parseConnection, resolveEnd } from './eval.js';
import { diagnosticJson, summary, table } from './render.js';

/** The sample estate shipped with bulkhead: its policy, and the flows its authors expect. */
export const BUNDLED_ESTATE = fileURLToPath(new URL('../../examples/estate/policy', import.meta.url));
export const BUNDLED_FLOWS = fileURLToPath(new URL('../../examples/estate/expected-flows.yaml', import.meta.url));
export const BUNDLED_ASSERTIONS = fileURLToPath(new URL('../../examples/estate/assertions.yaml', import.meta.url));

/** One example flow with the verdict its authors expect (examples/estate/expected-flows.yaml). */
export interface ExpectedFlow {
  note: string;
  from: string;
  to: string;
  port: string;
  expect: string;
  decidedBy?: string;
}

/** Reads a flows file: a list, or `{now, flows}` where `now` is the reference time for override expiry. */
export function readExpectedFlows(path: string): { now?: Date; flows: ExpectedFlow[] } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new UsageError(`cannot read flows file \`${path}\``);
  }
  const data = parseYaml(text) as unknown;
  const list = Array.isArray(data) ? data : (data as { flows?: unknown })?.flows;
  if (!Array.isArray(list)) throw new UsageError(`${path}: expected a list of flows`);
  const now = Array.isArray(data) ? undefined : parseNow(String((data as { now?: unknown }).now ?? '') || undefined);
  return { now, flows: list as ExpectedFlow[] };
}

export async function runDemo(opts: { estate?: string; flows?: string; out: string; now?: string }, io: Io): Promise<number> {
  const estate = opts.estate ?? BUNDLED_ESTATE;
  const flowsFile = opts.flows ?? (opts.estate ? undefined : BUNDLED_FLOWS);
  const expected = flowsFile ? readExpectedFlows(flowsFile) : { flows: [] };
  const now = parseNow(opts.now) ?? expected.now;
  mkdirSync(opts.out, { recursive: true });
  const step = (n: number, s: string) => io.out(`\n[${n}] ${s}`);

  io.out(`bulkhead demo on ${opts.estate ? estate : 'the bundled sample estate'} (${estate})${now ? `, as of ${now.toISOString()}` : ''}`);

  step(1, 'validate the policy: taxonomy, names, addresses, ports, selectors, references');
  const t0 = performance.now();
  const c = loadDir(estate, now);
  const ms = performance.now() - t0;
  printDiagnostics(c.diagnostics.sorted(), c.texts, io);
  const stats = {
    workloads: c.policy.workloads.length,
    managed: c.policy.workloads.filter((w) => w.managed).length,
    groups: c.ir.classes.length,
    rules: c.ir.rules.length,
    iplists: c.policy.iplists.size,
    services: c.policy.services.size,
    atoms: c.ir.atoms.length,
    endpoints: c.ir.endpoints.length,
  };
  io.out(`    ${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)}`);
  io.out(`    ${stats.workloads} workloads (${stats.managed} managed) in ${stats.groups} equivalence groups; ${stats.rules} rules; ${stats.iplists} IP lists; ${stats.services} services`);
  io.out(`    IR built in ${ms.toFixed(1)} ms: ${c.timings.map((t) => `${t.pass} ${t.ms.toFixed(1)}`).join(', ')}`);
  writeFileSync(join(opts.out, 'validate.json'), JSON.stringify({ stats, diagnostics: c.diagnostics.sorted().map(diagnosticJson) }, null, 2) + '\n');
  if (c.diagnostics.hasErrors()) {
    io.err('the policy has errors; stopping here');
    return EXIT.policyErrors;
  }

  step(2, 'discover: a week of flow logs for the estate (VPC, Zeek, NetFlow v9), ingested into the flow store, mapped, and a policy recommended from them');
  {
    const { main } = await import('./main.js');
    const quiet: Io = { out: () => {}, err: () => {}, color: false };
    const indented: Io = { out: (t) => io.out(t.replace(/^/gm, '    ')), err: (t) => io.out(t.replace(/^/gm, '    ')), color: false };
    const flowsDir = join(opts.out, 'flows');
    const store = join(opts.out, 'flows.duckdb');
    rmSync(store, { force: true });
    const g = await main(['node', 'bulkhead', 'generate-flows', '--policy', estate, '--out', flowsDir, '--conversations', '20000'], quiet);
    const logs = ['aws-vpc-flows.log.gz', 'zeek-conn.log', 'netflow-v9.pcap'].map((f) => join(flowsDir, f));
    const ing = g === 0 ? await main(['node', 'bulkhead', 'ingest', ...logs, '--store', store, '--policy', estate], indented) : g;
    if (ing === 0) {
      for (const [format, file] of [['html', 'map.html'], ['json', 'map.json'], ['dot', 'map.dot']]) {
        await main(['node', 'bulkhead', 'map', '--store', store, '--policy', estate, '--by', 'app,env', '--format', format, '--out', join(opts.out, file)], quiet);
      }
      io.out(`    the application dependency map (by app and env): ${join(opts.out, 'map.html')} (open it in a browser; also map.json, map.dot)`);
      const recErr: string[] = [];
      const rec = await main(['node', 'bulkhead', 'recommend', '--store', store, '--policy', estate, '--out', join(opts.out, 'recommended.yaml'), '--limit', '3'], { out: () => {}, err: (t) => recErr.push(t), color: false });
      const summaryLine = recErr.find((l) => l.startsWith('wrote '));
      io.out(rec === 0 && summaryLine ? `    recommended from the flows: ${summaryLine.replace(/^wrote /, '')}` : `    recommend failed (exit ${rec}): ${recErr.join(' ')}`);
    } else io.out(`    skipped: the flow logs could not be made or ingested (exit ${ing})`);
  }

  step(3, 'model: decide the example flows against the policy and explain each verdict');
  const ev = new Evaluator(c.ir);
  const flows = expected.flows;
  const rows: string[][] = [['', 'verdict', 'expected', 'decided by', 'flow']];
  const results: (ExpectedFlow & { decision: Decision; ok: boolean })[] = [];
  let failures = 0;
  for (const f of flows) {
    const d = ev.decide({ src: resolveEnd(f.from, c.policy, 'from'), dst: resolveEnd(f.to, c.policy, 'to'), ...parseConnection(f.port) });
    const by = d.rule ?? (d.decidedBy ? 'default' : '-');
    const ok = d.verdict === f.expect && (f.decidedBy === undefined || f.decidedBy === by);
    if (!ok) failures++;
    results.push({ ...f, decision: d, ok });
    rows.push([ok ? 'ok' : 'MISMATCH', d.verdict, f.expect + (f.decidedBy ? ` (${f.decidedBy})` : ''), d.decidedBy ? `${d.decidedBy} ${by}` : '-', `${f.from} -> ${f.to} ${f.port}`]);
  }
  io.out(
    table(rows)
      .split('\n')
      .map((l) => '    ' + l)
      .join('\n'),
  );
  const counts = new Map<string, number>();
  for (const r of results) counts.set(r.decision.verdict, (counts.get(r.decision.verdict) ?? 0) + 1);
  io.out(`    ${flows.length} flows: ${[...counts].map(([v, n]) => `${n} ${v}`).join(', ')}; ${flows.length - failures} as expected, ${failures} not`);
  writeFileSync(join(opts.out, 'decisions.json'), JSON.stringify(results, null, 2) + '\n');
  {
    // The week of flows from step 2, replayed against the policy: what enforcing it would break.
    const store = join(opts.out, 'flows.duckdb');
    if (existsSync(store)) {
      const { main } = await import('./main.js');
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(['node', 'bulkhead', 'test', estate, '--store', store, '--output', 'markdown', '--limit', '10'], { out: (t) => out.push(t), err: (t) => err.push(t), color: false });
      writeFileSync(join(opts.out, 'replay.md'), out.join('\n') + '\n');
      const line = err.find((l) => /legitimate flows|would be blocked|PASS|FAIL/i.test(l)) ?? err[0] ?? '';
      const said = line.trim().replace(/^(FAIL|PASS)[^:]*:\s*/, '');
      io.out(`    the week of flows replayed against the policy (bulkhead test, exit ${code}; the anomalies injected in step 2 are among what it would block): ${said}`);
      io.out(`    report: ${join(opts.out, 'replay.md')}`);
    }
  }

  const md = [
    '# bulkhead demo',
    '',
    `Estate: \`${estate}\``,
    '',
    `- ${stats.workloads} workloads (${stats.managed} managed) in ${stats.groups} groups, ${stats.rules} rules`,
    `- diagnostics: ${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)}`,
    '',
    '| ok | verdict | expected | decided by | flow | note |',
    '|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.ok ? 'yes' : '**no**'} | ${r.decision.verdict} | ${r.expect} | ${r.decision.decidedBy ?? '-'} ${r.decision.rule ?? ''} | ${r.from} → ${r.to} ${r.port} | ${r.note} |`),
    '',
  ].join('\n');
  writeFileSync(join(opts.out, 'report.md'), md);

  step(4, 'enforce: compile a host ruleset (nftables) for every managed workload');
  const nftDir = join(opts.out, 'nftables');
  mkdirSync(nftDir, { recursive: true });
  const hc = new HostCompiler(c.ir);
  const canCheck = process.getuid?.() === 0 && nftAvailable();
  let hosts = 0;
  let rules = 0;
  let elements = 0;
  const failed: string[] = [];
  const tc = performance.now();
  c.ir.workloads.forEach((w, i) => {
    const h = hc.host(i);
    if (!h) return;
    const a = compileNftables(h);
    writeFileSync(join(nftDir, `${w.name}.nft`), a.text);
    hosts++;
    rules += a.rules;
    elements += a.setElements;
    if (canCheck) {
      const r = nftCheck(a.text);
      if (!r.ok) failed.push(`${w.name}: ${r.error}`);
    }
  });
  io.out(`    ${hosts} rulesets, ${rules} rules, ${elements} set elements in ${(performance.now() - tc).toFixed(0)} ms; written to ${nftDir}/`);
  io.out(canCheck ? `    nft -c (in a scratch network namespace): ${failed.length === 0 ? `all ${hosts} check` : `${failed.length} FAIL\n      ${failed.join('\n      ')}`}` : '    nft -c skipped: needs root and nftables (bash scripts/install-system-deps.sh)');
  if (failed.length > 0) failures += failed.length;

  step(5, 'prove it in the kernel: a network-namespace lab of the estate, rulesets loaded, real connections compared with the engine');
  const problems = labProblems();
  if (problems.length > 0) io.out(`    skipped: ${problems.join('; ')}`);
  else {
    const hosts = labHostsFromIr(c.ir).slice(0, 40);
    const tl = performance.now();
    const lab = await labUp(hosts);
    try {
      const loaded = await loadPolicy(lab, c.ir, 'nftables');
      const cmp = compareWithEngine(c.ir, await labProbe(lab, probePlan(hosts, { sample: 3000 }), { timeoutMs: 300 }));
      io.out(`    ${hosts.length} hosts (${loaded} with a ruleset), ${cmp.probes} probes in ${((performance.now() - tl) / 1000).toFixed(1)} s: ${[...cmp.verdicts].map(([v, n]) => `${n} ${v}`).join(', ')}`);
      io.out(cmp.mismatches.length === 0 ? '    the kernel did what the engine says on every probe' : `    ${cmp.mismatches.length} probes DISAGREE:\n      ${cmp.mismatches.slice(0, 10).join('\n      ')}`);
      failures += cmp.mismatches.length;
      writeFileSync(join(opts.out, 'lab-probes.json'), JSON.stringify({ probes: cmp.probes, verdicts: Object.fromEntries(cmp.verdicts), mismatches: cmp.mismatches }, null, 2) + '\n');
    } finally {
      await labDown(lab.runId);
    }
  }

  step(6, 'validate: the promises the policy keeps (assertions), and what an attacker on a web server could reach');
  // The analysis commands print their own reports; the demo shows them indented. (Imported here: main imports the demo.)
  const { main } = await import('./main.js');
  const indented: Io = { out: (t) => io.out(t.replace(/^/gm, '    ')), err: (t) => io.out(t.replace(/^/gm, '    ')), color: false };
  const nowArg = now ? ['--now', now.toISOString()] : [];
  const assertions = opts.estate ? undefined : BUNDLED_ASSERTIONS;
  if (assertions) {
    const code = await main(['node', 'bulkhead', 'assert', estate, assertions, ...nowArg], indented);
    io.out(code === 0 ? '    every assertion holds' : code === 5 ? '    (a broken assertion is a finding for review, not a demo failure)' : `    assert exited ${code}`);
  }
  const target = c.policy.workloads.find((w) => w.managed && w.labels.role === 'web' && w.labels.env === 'prod')?.name;
  if (target) {
    const lines: string[] = [];
    await main(['node', 'bulkhead', 'blast-radius', estate, target, '--limit', '5', ...nowArg], { out: (t) => lines.push(t), err: (t) => lines.push(t), color: false });
    io.out(lines.join('\n').split('\n').slice(0, 4).map((l) => '    ' + l).join('\n'));
    writeFileSync(join(opts.out, 'blast-radius.txt'), lines.join('\n') + '\n');
  }

  io.out(`\noutputs in ${opts.out}/: validate.json (diagnostics and counts), decisions.json (every verdict with its explanation), report.md, flows/ and flows.duckdb (flow logs and the flow store), map.html, recommended.yaml (rules recommended from the flows), replay.md (the flows replayed against the policy), nftables/ (one ruleset per managed host), lab-probes.json, blast-radius.txt`);
  io.out('next: `bulkhead eval <dir> --from <ip|workload> --to <ip|workload> --port 5432/tcp` explains any one flow');
  return failures > 0 ? EXIT.policyErrors : EXIT.ok;
}
