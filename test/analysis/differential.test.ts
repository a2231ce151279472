/**
 * Differential tests: the analysis (rows, regions, group aggregation, search)
 * against two references on seeded generated estates:
 * - the naive pairwise computation (src/analysis/naive.ts), on every pair of
 *   workloads: connections, allowing rules, the not-enforced flag; grouped,
 *   against the group matrix; and its breadth-first search against the blast
 *   radius;
 * - the reference flow evaluator (src/engine/naive.ts), on sampled concrete
 *   flows (workloads and addresses outside the estate): a flow passes the
 *   analysis exactly when the evaluator lets it through, and the rule it names
 *   is among the rules the analysis gives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateEstate, generateFlows } from '../../src/generate/index.js';
import { NaiveEvaluator } from '../../src/engine/naive.js';
import type { Policy } from '../../src/model/types.js';
import { ConnSet } from '../../src/netset/connset.js';
import { parseSelector } from '../../src/model/selector.js';
import { Connectivity } from '../../src/analysis/connectivity.js';
import { buildPlaces } from '../../src/analysis/places.js';
import { buildUnits, GroupMatrix, labelGrouping, workloadGrouping } from '../../src/analysis/matrix.js';
import { blastRadius, LATERAL_DEFAULT } from '../../src/analysis/blast.js';
import { naiveBlast, naiveReach } from '../../src/analysis/naive.js';
import { flowFromGenerated, policyFromDoc } from '../helpers/policy.js';

/** The policy with every managed workload in enforce mode: "as enforced" is what the flow evaluator says of it. */
function allEnforced(p: Policy): Policy {
  return { ...p, defaultMode: 'enforce', modes: [], workloads: p.workloads.map((w) => ({ ...w, mode: undefined })) };
}

const cases = [
  { seed: 1, deployed: false },
  { seed: 2, deployed: true },
  { seed: 3, deployed: false, wideMin: 0 },
  { seed: 4, deployed: true, wideMin: 1e9 },
];

for (const { seed, deployed, wideMin } of cases) {
  const label = `seed ${seed}, ${deployed ? 'as deployed' : 'as enforced'}${wideMin !== undefined ? `, wideMin ${wideMin}` : ''}`;
  const doc = generateEstate({ seed, workloads: 260, rules: 90 });
  const c = policyFromDoc(doc);

  test(`workload matrix agrees with the naive pairwise computation (${label})`, () => {
    assert.equal(c.diagnostics.errorCount, 0);
    const places = buildPlaces(c.ir);
    const conn = new Connectivity(c.ir, { deployed, wideMin, places });
    const units = buildUnits(places, workloadGrouping);
    const m = new GroupMatrix(conn, units);
    const naive = naiveReach(c.policy, { deployed });
    const ws = c.policy.workloads;
    let nonEmpty = 0;
    for (let i = 0; i < ws.length; i++) {
      for (let j = 0; j < ws.length; j++) {
        const want = naive.pair(i, j);
        const got = i === j ? conn.results.get(0) : conn.results.get(m.cell(units.groupIndex.get(ws[i].name)!, units.groupIndex.get(ws[j].name)!));
        const rules = [...new Set(got.rules.map((k) => c.ir.rules[k].rule.id))].sort();
        const where = `${ws[i].name} -> ${ws[j].name}`;
        assert.ok(want.conns.equals(got.conns), `${where}: naive ${want.conns}, analysis ${got.conns}`);
        assert.deepEqual(rules, want.rules, `${where}: rules`);
        assert.equal(got.open, want.open, `${where}: not-enforced flag`);
        if (!want.conns.isEmpty()) nonEmpty++;
      }
    }
    // A good test needs both outcomes in quantity.
    assert.ok(nonEmpty > 1000 && nonEmpty < ws.length * ws.length - 1000, `non-empty pairs: ${nonEmpty}`);

    // Group level: the naive pairs united by label group.
    const by = labelGrouping(['role', 'app', 'env']);
    const gu = buildUnits(places, by);
    const gm = new GroupMatrix(conn, gu);
    const want = new Map<string, ConnSet>();
    for (let i = 0; i < ws.length; i++) {
      for (let j = 0; j < ws.length; j++) {
        const p = naive.pair(i, j);
        if (p.conns.isEmpty()) continue;
        const k = `${by.ofWorkload(ws[i])} -> ${by.ofWorkload(ws[j])}`;
        want.set(k, (want.get(k) ?? ConnSet.EMPTY).union(p.conns));
      }
    }
    let cells = 0;
    for (const cell of gm.cells()) {
      const k = `${gu.groups[cell.from]} -> ${gu.groups[cell.to]}`;
      if (k.includes('ip:')) continue;
      cells++;
      const got = conn.results.get(cell.result).conns;
      assert.ok(want.get(k)?.equals(got), `${k}: naive ${want.get(k)}, group matrix ${got}`);
    }
    assert.equal(cells, want.size, 'the same group pairs are reachable');
    assert.equal(gm.countCells(), [...gm.cells()].length, 'counting agrees with listing');
  });

  test(`sampled flows agree with the reference evaluator (${label})`, () => {
    const places = buildPlaces(c.ir);
    const conn = new Connectivity(c.ir, { deployed, wideMin, places });
    const oracle = new NaiveEvaluator(deployed ? c.policy : allEnforced(c.policy));
    const flows = generateFlows(doc, { seed: seed * 31, count: 2500 });
    const seen = new Map<string, number>();
    for (const g of flows) {
      const f = flowFromGenerated(g);
      const sw = oracle.workloadAt(f.src);
      const dw = oracle.workloadAt(f.dst);
      if (sw && sw === dw) continue; // a workload talking to itself is no flow
      const se = c.ir.addressMap.lookup(f.src);
      const de = c.ir.addressMap.lookup(f.dst);
      const key = f.proto * 65536 + f.port;
      const d = oracle.decide(f);
      const r = conn.results.get(conn.between(se, de));
      const passes = r.conns.hasKey(key);
      const governed = Boolean(sw?.managed || dw?.managed);
      const where = `${g.src} -> ${g.dst} ${g.port}/${g.proto}: ${d.verdict} by ${d.rule}`;
      if (!governed) {
        assert.equal(d.verdict, 'not-evaluated', where);
        assert.equal(passes, false, `${where}: outside the policy, never counted`);
        seen.set('ungoverned', (seen.get('ungoverned') ?? 0) + 1);
        continue;
      }
      const expected = deployed ? d.verdict !== 'blocked' : d.verdict === 'allowed';
      assert.equal(passes, expected, where);
      if (d.verdict === 'allowed' && d.rule !== null) {
        assert.ok(r.rules.some((k) => c.ir.rules[k].rule.id === d.rule), `${where}: rule among ${r.rules.map((k) => c.ir.rules[k].rule.id)}`);
        assert.ok(conn.allowingRules(se, de, key).some((k) => c.ir.rules[k].rule.id === d.rule), `${where}: allowingRules names it`);
      }
      seen.set(`${passes}`, (seen.get(`${passes}`) ?? 0) + 1);
    }
    assert.ok((seen.get('true') ?? 0) > 200 && (seen.get('false') ?? 0) > 200, `both outcomes: ${JSON.stringify([...seen])}`);
  });
}

test('blast radius agrees with a breadth-first search over naive pairs', () => {
  for (const seed of [5, 6]) {
    const c = policyFromDoc(generateEstate({ seed, workloads: 220, rules: 80 }));
    const conn = new Connectivity(c.ir, { ports: LATERAL_DEFAULT });
    const naive = naiveReach(c.policy, { ports: LATERAL_DEFAULT });
    const sel = parseSelector('has(compliance)');
    assert.ok(sel.ok);
    const ws = c.policy.workloads;
    const starts = [[0], [7], [ws.length - 1], [3, 50, 120], ...ws.flatMap((w, i) => (w.labels.role === 'monitor' || !w.managed ? [[i]] : [])).slice(0, 3)];
    for (const start of starts) {
      const got = blastRadius(conn, start, { sensitive: [sel.selector] });
      const want = naiveBlast(naive, start);
      assert.deepEqual([...got.hops], [...want], `seed ${seed}, start ${start.map((i) => ws[i].name)}`);
      // Every path has one hop per step, starts on a start workload, and each hop passes.
      for (const s of got.sensitive.slice(0, 10)) {
        const path = got.pathTo(s.workload);
        assert.equal(path.length, s.hops);
        assert.ok(start.some((i) => ws[i].name === path[0].from.workload));
        assert.equal(path[path.length - 1].to.workload, ws[s.workload].name);
        for (let k = 1; k < path.length; k++) assert.equal(path[k].from.workload, path[k - 1].to.workload);
        for (const h of path) assert.ok(!h.conns.isEmpty() && h.rules.length > 0);
      }
    }
  }
});
