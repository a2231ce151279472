/**
 * Evaluator cases as data (OPA style): each file in test/engine/cases holds a
 * policy and flows with the expected verdict, deciding side and rule. Every
 * case is also checked against the naive reference evaluator.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { Evaluator } from '../../src/engine/evaluate.js';
import { NaiveEvaluator } from '../../src/engine/naive.js';
import { flowOf, policyFromYaml } from '../helpers/policy.js';

interface CaseFile {
  note: string;
  now?: string;
  policy: string;
  cases: { note: string; from: string; to: string; port: string; expect: string; decidedBy?: string | null; rule?: string }[];
}

const dir = new URL('./cases/', import.meta.url);
for (const name of readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
  const file = parse(readFileSync(new URL(name, dir), 'utf8')) as CaseFile;
  test(`${name}: ${file.note}`, async (t) => {
    const c = policyFromYaml(file.policy, { file: name, now: file.now ? new Date(file.now) : undefined });
    assert.deepEqual(c.diagnostics.items.filter((d) => d.severity === 'error'), [], 'the case policy must load without errors');
    const ev = new Evaluator(c.ir);
    const naive = new NaiveEvaluator(c.policy);
    for (const k of file.cases) {
      await t.test(k.note, () => {
        const flow = flowOf(c, k.from, k.to, k.port);
        const d = ev.decide(flow);
        assert.equal(d.verdict, k.expect, 'verdict');
        if (k.decidedBy !== undefined) assert.equal(d.decidedBy, k.decidedBy, 'deciding side');
        if (k.rule !== undefined) assert.equal(d.rule ?? 'default', k.rule, 'deciding rule');
        const n = naive.decide(flow);
        assert.deepEqual({ verdict: d.verdict, decidedBy: d.decidedBy, rule: d.rule }, n, 'the reference evaluator agrees');
      });
    }
  });
}
