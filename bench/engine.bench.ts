/**
 * npm run bench:engine [-- --workloads N --rules M --seed S --seconds T]
 *
 * On a generated estate (default 100k workloads, 10k rules): the time to check
 * the policy and build the IR and the evaluator's tables, decisions per second
 * on one core, and peak memory; beside the naive linear-scan reference
 * evaluator of the same policy in the same run (the speed ratio), with both
 * required to agree on every sampled flow. Targets (issue 2): IR build ≤ 3 s,
 * ≥ 5M decisions/s, ≤ 1 GB.
 */
import { parseArgs } from 'node:util';
import { generateEstate, generateFlows } from '../src/generate/index.js';
import { Evaluator } from '../src/engine/evaluate.js';
import { NaiveEvaluator } from '../src/engine/naive.js';
import { loadPolicy } from '../src/policy/load.js';
import { buildIr } from '../src/policy/ir.js';
import { memoryDoc } from '../src/policy/source.js';
import { Diagnostics } from '../src/model/diagnostic.js';
import { flowFromGenerated } from '../test/helpers/policy.js';

const { values } = parseArgs({
  options: {
    workloads: { type: 'string', default: '100000' },
    rules: { type: 'string', default: '10000' },
    seed: { type: 'string', default: '42' },
    seconds: { type: 'string', default: '3' },
    flows: { type: 'string', default: '200000' },
    naive: { type: 'string', default: '1000' },
  },
});
const W = Number(values.workloads);
const R = Number(values.rules);
const seed = Number(values.seed);

const mb = (b: number) => `${(b / 1048576).toFixed(0)} MB`;
const ms = (t: number) => `${t.toFixed(0)} ms`;
const now = () => performance.now();

console.log(`bench:engine  ${W} workloads, ${R} rules, seed ${seed}, node ${process.version}`);
let t = now();
const doc = generateEstate({ seed, workloads: W, rules: R });
console.log(`  generate estate          ${ms(now() - t)}`);

t = now();
const { policy, diagnostics } = loadPolicy({ docs: [memoryDoc('generated', doc)] }, { now: new Date('2026-11-23T00:00:00Z') });
const loadMs = now() - t;
if (diagnostics.errorCount > 0) throw new Error(`generated estate has ${diagnostics.errorCount} errors: ${diagnostics.items[0].message}`);

t = now();
const ir = buildIr(policy, { diagnostics: new Diagnostics() });
const irMs = now() - t;
t = now();
const ev = new Evaluator(ir);
const tablesMs = now() - t;
console.log(`  check policy (load)      ${ms(loadMs)}`);
console.log(`  build IR                 ${ms(irMs)}  (${ir.timings.map((x) => `${x.pass} ${x.ms.toFixed(0)}`).join(', ')})`);
console.log(`  build evaluator tables   ${ms(tablesMs)}  (${ev.tableCount} shared side tables)`);
console.log(`  IR build total           ${ms(irMs + tablesMs)}   target <= 3000 ms   ${irMs + tablesMs <= 3000 ? 'met' : 'MISSED'}`);
console.log(`  IR size                  ${ir.classes.length} classes, ${ir.atoms.length} atoms, ${ir.endpoints.length} endpoints, ${ir.addressMap.rangeCount} address ranges`);

t = now();
const generated = generateFlows(doc, { seed: seed + 1, count: Number(values.flows) });
const flows = generated.map(flowFromGenerated);
console.log(`  generate flows           ${ms(now() - t)}  (${flows.length} flows, ${flows.filter((f) => typeof f.src === 'bigint').length} IPv6)`);

// Decisions per second, on the packed fast path (no allocation), two ways:
// cold: every flow distinct and no decision cache, the worst case;
// stream: a telemetry-like stream where conversations repeat with a Zipf
// (s = 1) popularity over the distinct flows, with the decision cache on.
const n = flows.length;
const src = flows.map((f) => f.src);
const dst = flows.map((f) => f.dst);
const proto = Int32Array.from(flows, (f) => f.proto);
const port = Int32Array.from(flows, (f) => f.port);
const budget = Number(values.seconds) * 1000;
let sink = 0;
function rate(e: Evaluator, order: Int32Array): number {
  for (let k = 0; k < Math.min(order.length, 100000); k++) {
    const i = order[k];
    sink ^= e.decideCode(src[i], dst[i], proto[i], port[i]); // warm-up
  }
  let count = 0;
  const t0 = now();
  while (now() - t0 < budget) {
    for (let k = 0; k < order.length; k++) {
      const i = order[k];
      sink ^= e.decideCode(src[i], dst[i], proto[i], port[i]);
    }
    count += order.length;
  }
  return count / ((now() - t0) / 1000);
}
const cold = new Evaluator(ir, { cacheBits: 0 });
const coldRate = rate(cold, Int32Array.from({ length: n }, (_, i) => i));
// Zipf stream: index k is drawn with probability proportional to 1/(k+1), by inverting the harmonic CDF.
const streamLen = 2_000_000;
const harmonic = new Float64Array(n);
let h = 0;
for (let k = 0; k < n; k++) harmonic[k] = h += 1 / (k + 1);
let x = seed >>> 0 || 1;
const stream = new Int32Array(streamLen);
for (let j = 0; j < streamLen; j++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  const u = ((x >>> 0) / 4294967296) * h;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (harmonic[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  stream[j] = lo;
}
const streamRate = rate(ev, stream);
console.log(`  decisions/s cold         ${(coldRate / 1e6).toFixed(2)}M  (${n} distinct flows, no cache, one core)`);
console.log(`  decisions/s stream       ${(streamRate / 1e6).toFixed(2)}M  (Zipf stream over the same flows, decision cache on)   target >= 5M   ${streamRate >= 5e6 ? 'met' : 'MISSED'}`);

// With the full explanation object (allocates; what `eval` and reports use).
t = now();
let explained = 0;
const m = Math.min(n, 50000);
while (now() - t < 1000) {
  for (let i = 0; i < m; i++) sink ^= ev.decide(flows[i]).verdict.length;
  explained += m;
}
console.log(`  explained decisions/s    ${(explained / ((now() - t) / 1000) / 1e6).toFixed(2)}M  (full explanation objects)`);

// The naive evaluator on a sample, and agreement on every sampled flow.
const naive = new NaiveEvaluator(policy);
const sample = flows.slice(0, Number(values.naive));
t = now();
const naiveOut = sample.map((f) => naive.decide(f));
const naiveSec = (now() - t) / 1000;
const naiveRate = sample.length / naiveSec;
let disagree = 0;
sample.forEach((f, i) => {
  const d = ev.decide(f);
  const m = naiveOut[i];
  if (d.verdict !== m.verdict || d.decidedBy !== m.decidedBy || d.rule !== m.rule) disagree++;
});
console.log(`  naive decisions/s        ${naiveRate.toFixed(0)}  (linear scan over ${policy.rules.length} rules, ${sample.length} flows)`);
console.log(`  speed ratio (cold/naive) ${(coldRate / naiveRate).toFixed(0)}x`);
console.log(`  agreement                ${sample.length - disagree}/${sample.length} sampled flows ${disagree === 0 ? 'agree' : 'DISAGREE'}`);

const verdicts = new Map<string, number>();
for (const f of flows.slice(0, 20000)) {
  const v = ev.decide(f).verdict;
  verdicts.set(v, (verdicts.get(v) ?? 0) + 1);
}
console.log(`  verdict mix (20k flows)  ${[...verdicts].map(([k, v]) => `${k} ${v}`).join(', ')}`);
const peak = process.resourceUsage().maxRSS * 1024;
console.log(`  peak memory (max RSS)    ${mb(peak)}   target <= 1024 MB   ${peak <= 1024 * 1048576 ? 'met' : 'MISSED'}`);
if (sink === 0.5) console.log(sink);
if (disagree > 0) process.exitCode = 1;
