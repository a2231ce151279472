/**
 * npm run bench:reach [-- --workloads N --rules M --seed S --naive-workloads K --naive-rules R]
 *
 * On a generated estate (default 100k workloads, 10k rules): the full
 * group-level reachability matrix (by role, app, env, as enforced, every
 * connection), the blast radius of single workloads, and peak memory. In the
 * same run, on a small estate (default 2k workloads), the naive pairwise
 * reference (src/analysis/naive.ts: every pair of workloads, every rule, no
 * IR) against the fast analysis at workload level and at group level: they
 * must agree on every pair, and the speed ratio is printed. Targets (issue
 * 7): matrix <= 10 s, one blast radius <= 1 s, <= 2 GB.
 */
import { parseArgs } from 'node:util';
import { generateEstate } from '../src/generate/index.js';
import { loadPolicy } from '../src/policy/load.js';
import { buildIr, type Ir } from '../src/policy/ir.js';
import { memoryDoc } from '../src/policy/source.js';
import { Diagnostics } from '../src/model/diagnostic.js';
import { parseSelector } from '../src/model/selector.js';
import type { Policy } from '../src/model/types.js';
import { buildPlaces } from '../src/analysis/places.js';
import { Connectivity } from '../src/analysis/connectivity.js';
import { buildUnits, GroupMatrix, labelGrouping, workloadGrouping } from '../src/analysis/matrix.js';
import { blastRadius, LATERAL_DEFAULT, SENSITIVE_DEFAULT } from '../src/analysis/blast.js';
import { naiveReach } from '../src/analysis/naive.js';

const { values } = parseArgs({
  options: {
    workloads: { type: 'string', default: '100000' },
    rules: { type: 'string', default: '10000' },
    seed: { type: 'string', default: '42' },
    'naive-workloads': { type: 'string', default: '2000' },
    'naive-rules': { type: 'string', default: '200' },
  },
});
const W = Number(values.workloads);
const R = Number(values.rules);
const seed = Number(values.seed);
const NW = Number(values['naive-workloads']);
const NR = Number(values['naive-rules']);

const mb = (b: number) => `${(b / 1048576).toFixed(0)} MB`;
const ms = (t: number) => `${t.toFixed(0)} ms`;
const now = () => performance.now();
const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
let failed = false;

function compile(workloads: number, rules: number): { policy: Policy; ir: Ir; loadMs: number; irMs: number } {
  const doc = generateEstate({ seed, workloads, rules });
  let t = now();
  const { policy, diagnostics } = loadPolicy({ docs: [memoryDoc('generated', doc)] }, { now: new Date('2026-11-23T00:00:00Z') });
  const loadMs = now() - t;
  if (diagnostics.errorCount > 0) throw new Error(`generated estate has ${diagnostics.errorCount} errors: ${diagnostics.items[0].message}`);
  t = now();
  const ir = buildIr(policy, { diagnostics: new Diagnostics() });
  return { policy, ir, loadMs, irMs: now() - t };
}

console.log(`bench:reach  ${W} workloads, ${R} rules, seed ${seed}, node ${process.version}`);
let t = now();
const big = compile(W, R);
console.log(`  generate, check, build IR   ${ms(now() - t)}  (load ${ms(big.loadMs)}, IR ${ms(big.irMs)}; not part of the targets)`);
console.log(`  IR size                     ${big.ir.classes.length} classes, ${big.ir.atoms.length} atoms, ${big.ir.endpoints.length} endpoints, ${big.ir.rules.length} rules`);

// ---- the full group-level matrix
const t0 = now();
const places = buildPlaces(big.ir);
const placesMs = now() - t0;
t = now();
const conn = new Connectivity(big.ir, { places });
const connMs = now() - t;
t = now();
for (let e = 0; e < big.ir.endpoints.length; e++) if (places.live[e]) conn.row(e);
const rowsMs = now() - t;
t = now();
const units = buildUnits(places, labelGrouping(['role', 'app', 'env']));
const matrix = new GroupMatrix(conn, units);
const matrixMs = now() - t;
const totalMs = now() - t0;
t = now();
const cells = matrix.countCells();
const countMs = now() - t;
console.log(`  places                      ${ms(placesMs)}  (workloads at endpoints, live endpoints, atom names)`);
console.log(`  connectivity                ${ms(connMs)}  (${conn.wideSideCount} wide rule sides, ${conn.regionCount} regions)`);
console.log(`  rows                        ${ms(rowsMs)}  (${conn.rowCount} distinct source rule lists, ${conn.results.size} distinct results)`);
console.log(`  group matrix                ${ms(matrixMs)}  (${units.groups.length} groups by role,app,env; ${units.unitEp.length} units)`);
console.log(`  full matrix total           ${ms(totalMs)}   target <= 10000 ms   ${verdict(totalMs <= 10000)}`);
console.log(`  non-empty group pairs       ${cells}  (of ${units.groups.length ** 2}; counted in ${ms(countMs)}, held as per-row blocks)`);
if (totalMs > 10000) failed = true;

// ---- blast radius of single workloads, each from the IR (fresh connectivity under the lateral-movement filter)
const sensitive = [parseSelector(SENSITIVE_DEFAULT)].map((r) => (r.ok ? r.selector : undefined)!);
const pick = (pred: (name: string, role: string | undefined) => boolean) => big.ir.workloads.findIndex((w) => pred(w.name, w.labels.role));
const targets = [pick((_, r) => r === 'web'), pick((_, r) => r === 'db'), pick((_, r) => r === 'monitor'), pick((_, r) => r === 'jump')].filter((i) => i >= 0);
let worst = 0;
for (const w of targets) {
  const t1 = now();
  const c = new Connectivity(big.ir, { ports: LATERAL_DEFAULT, places });
  const r = blastRadius(c, [w], { sensitive });
  const first = r.sensitive[0];
  if (first) r.pathTo(first.workload);
  const took = now() - t1;
  worst = Math.max(worst, took);
  console.log(`  blast radius ${big.ir.workloads[w].name.padEnd(15)} ${ms(took).padStart(7)}  (reaches ${r.reached} workloads in ${r.perHop.length - 1} ${r.perHop.length === 2 ? 'hop' : 'hops'}, ${r.sensitive.length}/${r.sensitiveTotal} sensitive)`);
}
console.log(`  blast radius, worst         ${ms(worst)}   target <= 1000 ms   ${verdict(worst <= 1000)}  (places, shared per IR, took ${ms(placesMs)} once)`);
if (worst > 1000) failed = true;
const peak = process.resourceUsage().maxRSS * 1024;
console.log(`  peak memory (max RSS)       ${mb(peak)}   target <= 2048 MB   ${verdict(peak <= 2048 * 1048576)}`);
if (peak > 2048 * 1048576) failed = true;

// ---- naive pairwise reference on a small estate, same run
console.log(`\n  reference check: ${NW} workloads, ${NR} rules, seed ${seed}`);
const small = compile(NW, NR);
for (const deployed of [false, true]) {
  // The fast side, best of three (the first run also pays for collecting the big estate's garbage).
  let fastMs = Infinity;
  let fast: { sp: ReturnType<typeof buildPlaces>; sc: Connectivity; su: ReturnType<typeof buildUnits>; sm: GroupMatrix } | undefined;
  for (let k = 0; k < 3; k++) {
    t = now();
    const sp = buildPlaces(small.ir);
    const sc = new Connectivity(small.ir, { places: sp, deployed });
    const su = buildUnits(sp, workloadGrouping);
    const sm = new GroupMatrix(sc, su);
    fastMs = Math.min(fastMs, now() - t);
    fast = { sp, sc, su, sm };
  }
  const { sp, sc, su, sm } = fast!;
  t = now();
  const naive = naiveReach(small.policy, { deployed });
  const ws = small.policy.workloads;
  const n = ws.length;
  const pairs: ReturnType<typeof naive.pair>[] = new Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) pairs[i * n + j] = naive.pair(i, j);
  const naiveMs = now() - t;
  // Agreement, pair by pair: connections, allowing rules, and the not-enforced flag.
  const gi = ws.map((w) => su.groupIndex.get(w.name) ?? -1);
  let agree = 0;
  let nonEmpty = 0;
  let firstBad = '';
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const a = pairs[i * n + j];
      const r = sc.results.get(i === j || gi[i] < 0 || gi[j] < 0 ? 0 : sm.cell(gi[i], gi[j]));
      const rules = [...new Set(r.rules.map((k) => small.ir.rules[k].rule.id))].sort();
      if (a.conns.equals(r.conns) && a.open === r.open && a.rules.join() === rules.join()) agree++;
      else if (!firstBad) firstBad = `${ws[i].name} -> ${ws[j].name}: naive ${a.conns} [${a.rules}], fast ${r.conns} [${rules}]`;
      if (!a.conns.isEmpty()) nonEmpty++;
    }
  }
  // Group level: the naive pairs united by role,app,env against the group matrix.
  const byGroup = labelGrouping(['role', 'app', 'env']);
  const gu = buildUnits(sp, byGroup);
  const gm = new GroupMatrix(sc, gu);
  const naiveGroups = new Map<string, ReturnType<typeof naive.pair>['conns']>();
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const a = pairs[i * n + j];
      if (a.conns.isEmpty()) continue;
      const k = `${byGroup.ofWorkload(ws[i])}\t${byGroup.ofWorkload(ws[j])}`;
      const prev = naiveGroups.get(k);
      naiveGroups.set(k, prev ? prev.union(a.conns) : a.conns);
    }
  }
  let groupAgree = 0;
  let groupTotal = 0;
  for (const cell of gm.cells()) {
    const from = gu.groups[cell.from];
    const to = gu.groups[cell.to];
    if (from.startsWith('ip:') || to.startsWith('ip:')) continue;
    groupTotal++;
    if (naiveGroups.get(`${from}\t${to}`)?.equals(sc.results.get(cell.result).conns)) groupAgree++;
  }
  const groupOk = groupAgree === groupTotal && groupTotal === naiveGroups.size;
  const ok = agree === n * n && groupOk;
  if (!ok) failed = true;
  const label = deployed ? 'as deployed' : 'as enforced';
  console.log(`  ${label.padEnd(12)} fast ${ms(fastMs)} (workload-level matrix, best of 3), naive pairwise ${ms(naiveMs)}   ratio ${(naiveMs / fastMs).toFixed(0)}x`);
  console.log(`  ${''.padEnd(12)} agreement: ${agree}/${n * n} workload pairs (${nonEmpty} non-empty), ${groupAgree}/${naiveGroups.size} group pairs   ${ok ? 'agree' : 'DISAGREE'}${firstBad ? `  first: ${firstBad}` : ''}`);
}
if (failed) process.exitCode = 1;
