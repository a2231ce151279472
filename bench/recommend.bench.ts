/**
 * npm run bench:recommend [-- --records 10000000 --apps 60 --seed 1 --dir /tmp/...]
 *
 * Recommendation quality and speed against a known ground truth
 * (src/generate/ground-truth.ts): an estate with a ground-truth policy,
 * conversations covering every group pair it allows plus noise (crossings of
 * environments, admin ports not through a jump host, unknown addresses,
 * scans), and N flow records over them.
 *
 * 1. The records go into a DuckDB flow store (stored raw and aggregated into
 *    edges, as `bulkhead ingest` does after parsing).
 * 2. `recommend` reads the edges and writes the policy.
 * 3. The recommended policy's connectivity is compared with the ground
 *    truth's: precision and recall over (client, server, connection)
 *    triples, the share of noise flagged, and the rule counts.
 *
 * The peer, measured in the same run: DuckDB's own GROUP BY of the stored
 * raw flows into (client, server, protocol, port), the least any tool must
 * do to turn the flows into edges.
 *
 * Targets (issue 4): precision ≥ 0.99, recall ≥ 0.99 with the noise
 * flagged; 10M flows to a policy in ≤ 30 s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse } from 'yaml';
import { DuckDBInstance } from '@duckdb/node-api';
import { generateGroundTruth } from '../src/generate/ground-truth.js';
import { compilePolicy } from '../src/policy/index.js';
import { memoryDoc } from '../src/policy/source.js';
import { recommend, recommendationYaml } from '../src/recommend/index.js';
import { agreement } from '../src/recommend/quality.js';
import { DuckDbFlowStore } from '../src/store/flows-duckdb.js';
import { seedGroundTruth } from '../src/store/ground-truth.js';
import { parseAddr } from '../src/netset/ip.js';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '10000000' },
    apps: { type: 'string', default: '60' },
    seed: { type: 'string', default: '1' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});

const records = Number(values.records);
const seed = Number(values.seed);
const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'bulkhead-bench-recommend-'));
const ms = (t: number) => Math.round(performance.now() - t);
const rate = (n: number, t: number) => `${(n / (t / 1000) / 1e6).toFixed(2)}M/s`;

const compile = (doc: unknown) => {
  const c = compilePolicy({ docs: [memoryDoc('doc', doc)] }, {});
  if (c.diagnostics.hasErrors()) throw new Error(c.diagnostics.sorted().map((d) => d.message).join('\n'));
  return c;
};

try {
  const gt = generateGroundTruth({ seed, apps: Number(values.apps) });
  const noise = gt.conversations.filter((c) => c.noise).length;
  console.log(`estate: ${gt.inventory.workloads.length} workloads, ground truth ${gt.estate.rulesets.reduce((n, r) => n + r.rules.length, 0)} rules, ${gt.conversations.length} conversations (${noise} noise)`);
  const inv = compile(gt.inventory);

  const path = join(dir, 'flows.duckdb');
  const store = await DuckDbFlowStore.open(path);
  let t = performance.now();
  let shown = 0;
  const summary = await seedGroundTruth(store, gt, {
    records,
    seed,
    progress: (n) => {
      if (n - shown >= 2_000_000) {
        shown = n;
        process.stderr.write(`\r  ${(n / 1e6).toFixed(0)}M records stored`);
      }
    },
  });
  const storeMs = ms(t);
  process.stderr.write('\n');
  t = performance.now();
  const edges = await store.edges();
  const readMs = ms(t);
  t = performance.now();
  const rec = recommend(edges, inv.ir);
  const recMs = ms(t);
  t = performance.now();
  const yaml = recommendationYaml(rec);
  const yamlMs = ms(t);
  await store.close();

  // The peer: DuckDB's GROUP BY of the raw flows.
  const db = await DuckDBInstance.create(path);
  const conn = await db.connect();
  t = performance.now();
  const peerRows = await conn.runAndReadAll('SELECT count(*) FROM (SELECT src_hi, src_lo, dst_hi, dst_lo, proto, dst_port, count(*) AS n, sum(bytes) AS b, min(start_ms) AS f, max(end_ms) AS l FROM flows GROUP BY ALL)');
  const peerMs = ms(t);
  const peerEdges = Number(peerRows.getRows()[0][0]);
  conn.closeSync();

  // Quality.
  const truth = compile(gt.estate);
  const cand = compile({ ...gt.inventory, rulesets: (parse(yaml) as { rulesets: unknown[] }).rulesets });
  t = performance.now();
  const a = agreement(truth.ir, cand.ir, [parseAddr('203.0.113.7')!, parseAddr('10.250.0.5')!]);
  const qMs = ms(t);
  const noiseKeys = new Set(gt.conversations.filter((c) => c.noise).map((c) => `${c.client}>${c.server}:${c.port}`));
  const flagged = new Set(rec.suspicious.map((s) => `${parseAddr(s.client)}>${parseAddr(s.server)}:${parseInt(s.connection, 10)}`));
  const caught = [...noiseKeys].filter((k) => flagged.has(k)).length;
  const wrong = [...flagged].filter((k) => !noiseKeys.has(k)).length;
  const gtRules = gt.estate.rulesets.reduce((n, r) => n + r.rules.length, 0);
  const total = storeMs + readMs + recMs + yamlMs;

  console.log(`\nflows to policy (${(records / 1e6).toFixed(1)}M records):`);
  console.log(`  store (append raw + aggregate to ${summary.edges} edges)  ${storeMs} ms  ${rate(records, storeMs)}`);
  console.log(`  read edges                                     ${readMs} ms  (${edges.length} edges)`);
  console.log(`  recommend                                      ${recMs} ms`);
  console.log(`  YAML with evidence                             ${yamlMs} ms`);
  console.log(`  total                                          ${total} ms   target ≤ 30000 ms: ${total <= 30000 ? 'met' : 'MISSED'}`);
  console.log(`  peer: DuckDB GROUP BY of the raw flows         ${peerMs} ms  (${peerEdges} groups); recommend alone is ${(recMs / peerMs).toFixed(2)}× the peer`);
  console.log(`\nquality against the ground truth (${a.decisions} decisions, ${qMs} ms):`);
  console.log(`  precision ${a.precision.toFixed(4)}  recall ${a.recall.toFixed(4)}   targets ≥ 0.99: ${a.precision >= 0.99 && a.recall >= 0.99 ? 'met' : 'MISSED'}`);
  console.log(`  triples: both ${a.both}, recommended only ${a.candidateOnly}, ground truth only ${a.truthOnly}`);
  console.log(`  noise flagged ${caught}/${noiseKeys.size} (${((100 * caught) / noiseKeys.size).toFixed(1)}%), legitimate edges flagged ${wrong}`);
  console.log(`  rules: recommended ${rec.stats.rules}, ground truth ${gtRules} (ratio ${(rec.stats.rules / gtRules).toFixed(2)})`);
  console.log(`  peak RSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MB`);
} finally {
  if (!values.keep && !values.dir) rmSync(dir, { recursive: true, force: true });
}
