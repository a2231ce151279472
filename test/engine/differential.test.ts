/**
 * Differential test: the fast evaluator (IR, classes, atoms, side tables) must
 * give the same verdict, deciding side and rule as the naive reference
 * evaluator on every flow, over seeded random estates and flows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateEstate, generateFlows } from '../../src/generate/index.js';
import { Evaluator } from '../../src/engine/evaluate.js';
import { NaiveEvaluator } from '../../src/engine/naive.js';
import { flowFromGenerated, policyFromDoc } from '../helpers/policy.js';

const SEEDS = [1, 2, 3, 4, 5, 6];

for (const seed of SEEDS) {
  test(`engine agrees with the reference evaluator (seed ${seed})`, () => {
    const doc = generateEstate({ seed, workloads: 400, rules: 120 });
    const c = policyFromDoc(doc);
    assert.equal(c.diagnostics.errorCount, 0, 'the generated estate loads cleanly');
    const ev = new Evaluator(c.ir);
    const naive = new NaiveEvaluator(c.policy);
    const flows = generateFlows(doc, { seed: seed * 7919, count: 1500 });
    const verdicts = new Map<string, number>();
    for (const g of flows) {
      const f = flowFromGenerated(g);
      const d = ev.decide(f);
      const n = naive.decide(f);
      assert.deepEqual({ verdict: d.verdict, decidedBy: d.decidedBy, rule: d.rule }, n, `flow ${g.src} -> ${g.dst} ${g.port}/${g.proto}`);
      // The packed fast path must say the same as the full decision.
      const code = ev.decideCode(f.src, f.dst, f.proto, f.port);
      assert.equal(code & 3, ['allowed', 'blocked', 'potentially-blocked', 'not-evaluated'].indexOf(d.verdict));
      verdicts.set(d.verdict, (verdicts.get(d.verdict) ?? 0) + 1);
    }
    // The sample is only a good test if it exercises more than one outcome.
    assert.ok((verdicts.get('allowed') ?? 0) > 50, `enough allowed flows: ${JSON.stringify([...verdicts])}`);
    assert.ok((verdicts.get('blocked') ?? 0) + (verdicts.get('potentially-blocked') ?? 0) > 50, `enough denied flows: ${JSON.stringify([...verdicts])}`);
  });
}
