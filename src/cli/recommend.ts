/**
 * `bulkhead recommend`: least-privilege rules from the flow store and the
 * inventory, with each rule's evidence, and the suspicious flows listed for
 * review (src/recommend).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Option, type Command } from 'commander';
import { parse } from 'yaml';
import { parsePrefix, type Prefix } from '../netset/ip.js';
import { parseSelector } from '../model/selector.js';
import { compilePolicy } from '../policy/index.js';
import { memoryDoc } from '../policy/source.js';
import { Evaluator } from '../engine/evaluate.js';
import { recommend, recommendationYaml, type Recommendation } from '../recommend/index.js';
import { readPolicyDir } from '../adapters/policy-dir.js';
import { DuckDbFlowStore } from '../store/flows-duckdb.js';
import { EXIT, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { parseWhen } from './map.js';
import { plural, summary } from './render.js';

export interface RecommendCliOptions {
  store: string;
  policy: string;
  by: string;
  scope?: string;
  since?: string;
  until?: string;
  incremental?: boolean;
  out?: string;
  output: string;
  jumpHosts?: string;
  sharedServices?: string;
  sharedEnvs?: string;
  adminPorts?: string;
  minFlows?: string;
  internal?: string[];
  prefix?: string;
  limit: string;
  now?: string;
}

function list(s: string | undefined): string[] | undefined {
  if (s === undefined) return undefined;
  return s.split(',').map((x) => x.trim()).filter((x) => x !== '');
}

function count(s: string | undefined, flag: string): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be a whole number, not \`${s}\``);
  return n;
}

const date = (t: number) => (Number.isFinite(t) ? new Date(t).toISOString().slice(0, 16).replace('T', ' ') : '-');

/** Runs `bulkhead recommend`. */
export async function runRecommend(opts: RecommendCliOptions, io: Io): Promise<number> {
  const by = list(opts.by) ?? [];
  if (by.length === 0) throw new UsageError('--by needs label keys, such as role,app,env');
  const limit = count(opts.limit, '--limit') ?? 20;
  const adminPorts = list(opts.adminPorts)?.map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`--admin-ports: \`${p}\` is no port`);
    return n;
  });
  const internal: Prefix[] = (opts.internal ?? []).flatMap((v) => v.split(',')).map((s) => {
    const r = parsePrefix(s.trim());
    if ('error' in r) throw new UsageError(`invalid --internal \`${s}\`: ${r.error}`);
    return r.prefix;
  });
  for (const [flag, text] of [['--jump-hosts', opts.jumpHosts], ['--shared-services', opts.sharedServices]] as const) {
    if (text === undefined) continue;
    const r = parseSelector(text);
    if (!r.ok) throw new UsageError(`invalid selector for ${flag} \`${text}\`: ${r.error.message}`);
  }
  const now = parseNow(opts.now);
  // Read once: compiled here, and again below with the recommendation added, for the self-check.
  const read = readPolicyDir(opts.policy);
  const c = { ...compilePolicy(read.sources, { now, diagnostics: read.diagnostics }), texts: read.texts };
  if (c.diagnostics.hasErrors()) {
    printDiagnostics(c.diagnostics.sorted().filter((d) => d.severity === 'error'), c.texts, io);
    io.err(`cannot recommend: the policy has problems (${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)})`);
    return EXIT.policyErrors;
  }
  const store = await DuckDbFlowStore.open(opts.store);
  let rec: Recommendation;
  let window: string;
  try {
    const st = await store.stats();
    if (st.flows === 0 && st.edges === 0) throw new UsageError(`the flow store ${opts.store} holds no flows: run \`bulkhead ingest\` first`);
    const latest = st.last ?? Date.now();
    const since = opts.since !== undefined ? parseWhen(opts.since, '--since', latest) : undefined;
    const until = opts.until !== undefined ? parseWhen(opts.until, '--until', latest) : undefined;
    window = `${date(since ?? st.first ?? 0)} to ${date(until ?? latest)}`;
    const t0 = performance.now();
    const edges = await store.edges({ since, until });
    io.err(`read ${plural(edges.length, 'edge')} from ${opts.store} (${window}) in ${Math.round(performance.now() - t0)} ms`);
    rec = recommend(edges, c.ir, {
      by,
      scope: list(opts.scope),
      jumpHosts: opts.jumpHosts,
      sharedServices: opts.sharedServices,
      sharedEnvs: list(opts.sharedEnvs),
      adminPorts,
      internal,
      minFlows: count(opts.minFlows, '--min-flows'),
      incremental: opts.incremental === true,
      prefix: opts.prefix,
    });
  } catch (e) {
    if (e instanceof SyntaxError) throw new UsageError(e.message);
    throw e;
  } finally {
    await store.close();
  }
  const s = rec.stats;
  const yaml = recommendationYaml(rec, [
    `Source: ${opts.store}, ${window}; grouped by ${rec.by.join(', ')}${rec.scope.length ? `, rulesets scoped by ${rec.scope.join(', ')}` : ''}.`,
    `${s.coveredFlows.toLocaleString('en-US')} flows on ${s.coveredEdges.toLocaleString('en-US')} edges covered by ${plural(s.rules, 'rule')}; ${plural(s.suspiciousEdges, 'suspicious edge')} left out for review${opts.incremental ? `; ${plural(s.alreadyAllowed, 'edge')} already allowed` : ''}.`,
  ]);

  // Self-check: the policy with the recommendation loads, and allows every edge the rules rest on.
  const doc = parse(yaml) as { rulesets: unknown[] };
  const check = compilePolicy({ ...read.sources, docs: [...read.sources.docs, memoryDoc('(recommended)', doc)] }, { now });
  if (check.diagnostics.hasErrors()) {
    printDiagnostics(check.diagnostics.sorted().filter((d) => d.severity === 'error'), read.texts, io);
    io.err('internal error: the recommended rules do not load with the policy; please report this');
    return EXIT.policyErrors;
  }
  const ev = new Evaluator(check.ir);
  const denied = new Map<string, number>();
  let allowed = 0;
  for (const e of rec.covered) {
    const d = ev.decide({ src: e.client, dst: e.server, proto: e.proto, port: e.port });
    const sides = [d.egress, d.ingress].filter((x) => x !== null);
    if (sides.every((x) => x.action === 'allow')) allowed++;
    else for (const x of sides) if (x.action === 'deny') denied.set(x.rule ?? '(default deny)', (denied.get(x.rule ?? '(default deny)') ?? 0) + 1);
  }

  if (opts.output === 'json') {
    io.out(JSON.stringify({ by: rec.by, scope: rec.scope, ignoredKeys: rec.ignoredKeys, stats: rec.stats, check: { coveredEdges: rec.covered.length, allowed, deniedBy: Object.fromEntries(denied) }, rulesets: rec.rulesets, suspicious: rec.suspicious, yaml }, null, 2));
  } else if (opts.out) {
    mkdirSync(dirname(opts.out), { recursive: true });
    writeFileSync(opts.out, yaml);
  } else io.out(yaml.replace(/\n$/, ''));

  if (opts.output !== 'json') {
    for (const k of rec.ignoredKeys) io.err(`ignored label key \`${k.key}\`: ${k.why}`);
    io.err(
      `${opts.out ? `wrote ${opts.out}: ` : ''}${plural(s.rules, 'rule')} in ${plural(rec.rulesets.length, 'ruleset')} for ${s.coveredFlows.toLocaleString('en-US')} flows on ${plural(s.coveredEdges, 'edge')} (${plural(s.groups, 'group')}); ${plural(s.suspiciousEdges, 'suspicious edge')} (${s.suspiciousFlows.toLocaleString('en-US')} flows) left for review${opts.incremental ? `; ${plural(s.alreadyAllowed, 'edge')} already allowed` : ''}; ${Math.round(s.ms)} ms`,
    );
    if (allowed < rec.covered.length) {
      const top = [...denied].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([r, n]) => `${r} (${n})`);
      io.err(`note: with the policy's own rules, ${allowed} of ${plural(rec.covered.length, 'covered edge')} would be allowed; the rest are denied by ${top.join(', ')}`);
    }
    if (rec.suspicious.length > 0) {
      io.err('\nsuspicious, no rule made (review them):');
      for (const x of rec.suspicious.slice(0, limit)) {
        io.err(`  ${x.clientWorkload ?? x.client} → ${x.serverWorkload ?? x.server} ${x.connection}  ${x.flows.toLocaleString('en-US')} flows, ${date(x.first)} to ${date(x.last)}: ${x.why}`);
      }
      if (rec.suspicious.length > limit) io.err(`  … and ${rec.suspicious.length - limit} more (--limit, or --output json for all)`);
    }
  }
  return EXIT.ok;
}

/** Adds `recommend` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('recommend')
    .description('write least-privilege allow rules from observed flows, with their evidence; list suspicious flows for review')
    .requiredOption('--store <file>', 'the flow store (bulkhead ingest writes it)')
    .requiredOption('--policy <dir>', 'the policy directory: the inventory (workloads, labels, IP lists, services), and in --incremental mode the current rules')
    .option('--by <keys>', 'label keys that tell groups apart, finest first', 'role,app,env')
    .option('--scope <keys>', 'label keys whose values scope rulesets (default: the --by keys but the first)')
    .option('--since <time>', 'only flows from this time (ISO 8601, or 24h / 7d before the latest flow)')
    .option('--until <time>', 'only flows before this time')
    .option('--incremental', 'only flows the current policy does not allow yet: rules to add to it')
    .option('--out <file>', 'write the rules (YAML) to this file instead of stdout')
    .addOption(new Option('-o, --output <format>', '`text` (YAML on stdout or --out, a summary and the review list on stderr) or `json`').choices(['text', 'json']).default('text'))
    .option('--jump-hosts <selector>', "the jump hosts (default: role in {'jump', 'bastion', 'jumphost'})")
    .option('--shared-services <selector>', "workloads any environment may use (beside what the flows show: a port used from two other environments by four or more apps), e.g. app == 'infra'")
    .option('--shared-envs <values>', 'environments every other may talk to (default shared,global,common)')
    .option('--admin-ports <ports>', 'TCP admin ports only jump hosts may use (default 22,23,3389,5900,5985,5986)')
    .option('--min-flows <n>', 'leave out edges with fewer flows')
    .option('--internal <prefix...>', 'more prefixes that are ours (not external), beside the private ranges')
    .option('--prefix <text>', 'prefix of ruleset names and rule ids', 'rec-')
    .option('--limit <n>', 'suspicious edges to list on stderr', '20')
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601)'))
    .addHelpText(
      'after',
      `
Every rule allows only group pairs (and IP lists) seen in the flows, never
wider; each carries its evidence as a comment: flows, bytes, first and last
seen, the busiest pairs. Flows that cross environments, use admin ports not
through a jump host, touch addresses that are no workload and in no IP list,
belong to a scan, or were rejected get no rule: they are listed for review.

Examples:
  bulkhead recommend --store flows.duckdb --policy examples/estate/policy --out policy/recommended.yaml
  bulkhead recommend --store flows.duckdb --policy policy/ --incremental --since 7d --out policy/more.yaml
  bulkhead recommend --store flows.duckdb --policy policy/ --by role,app --scope app --output json | jq .suspicious`,
    )
    .action(async (opts: RecommendCliOptions) => {
      prog.setOptionValue('exit', await runRecommend(opts, io));
    });
}
