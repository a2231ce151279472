/**
 * The sample estate in examples/estate, loaded the way the CLI loads it: it
 * compiles without errors or warnings, it has the shape its README promises,
 * and every flow in expected-flows.yaml gets the expected verdict and deciding
 * rule from both the evaluator and the naive reference evaluator.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readPolicyDir } from '../../src/adapters/policy-dir.js';
import { readExpectedFlows } from '../../src/cli/demo.js';
import { Evaluator } from '../../src/engine/evaluate.js';
import { NaiveEvaluator } from '../../src/engine/naive.js';
import { IpSet, parsePrefix, prefixRange, type Prefix } from '../../src/netset/ip.js';
import { compilePolicy } from '../../src/policy/index.js';
import { flowOf } from '../helpers/policy.js';

const POLICY = fileURLToPath(new URL('../../examples/estate/policy', import.meta.url));
const FLOWS = fileURLToPath(new URL('../../examples/estate/expected-flows.yaml', import.meta.url));
/** The estate's reference time (the `now` of expected-flows.yaml): before the break-glass override expires (2027-06-30). */
const NOW = new Date('2026-11-23T00:00:00Z');

function set(...prefixes: string[]): IpSet {
  return IpSet.fromPrefixes(prefixes.map((p) => {
    const r = parsePrefix(p);
    assert.ok(!('error' in r), p);
    return r.prefix;
  }));
}

/** Whether the whole prefix lies in the set. */
function inside(s: IpSet, p: Prefix): boolean {
  const [lo, hi] = prefixRange(p);
  return s.has(lo) && s.has(hi);
}

const DOC_V6 = set('2001:db8::/32');
const OURS = set('10.0.0.0/8', '2001:db8::/32');

describe('the sample estate', () => {
  const read = readPolicyDir(POLICY);
  const c = compilePolicy(read.sources, { now: NOW, diagnostics: read.diagnostics });

  it('loads without errors or warnings', () => {
    const shown = c.diagnostics.sorted().map((d) => `${d.severity} ${d.code} ${d.loc ? `${d.loc.file}:${d.loc.line}:${d.loc.col}` : ''} ${d.message}`);
    assert.equal(c.diagnostics.errorCount, 0, shown.join('\n'));
    assert.equal(c.diagnostics.warningCount, 0, shown.join('\n'));
  });

  it('has the promised shape', () => {
    const ws = c.policy.workloads;
    assert.ok(ws.length >= 140 && ws.length <= 160, `${ws.length} workloads`);
    const values = (k: string) => new Set(ws.map((w) => w.labels[k]).filter(Boolean));
    assert.deepEqual([...values('env')].sort(), ['dev', 'prod', 'staging']);
    assert.deepEqual([...values('loc')].sort(), ['aws-eu-west-1', 'dc1', 'dc2']);
    for (const app of ['shop', 'crm', 'hr', 'analytics', 'payments', 'ehr']) {
      for (const role of ['web', 'app', 'db']) assert.ok(ws.some((w) => w.labels.app === app && w.labels.role === role), `${app} ${role}`);
    }
    for (const role of ['jump', 'dns', 'ntp', 'ldap', 'syslog', 'monitor', 'backup', 'lb', 'k8s-node']) assert.ok(values('role').has(role), role);
    assert.ok(ws.some((w) => w.kind === 'pod' && w.labels.namespace));
    assert.ok(ws.filter((w) => !w.managed).length >= 2);
    assert.ok(ws.some((w) => w.addresses.some((p) => inside(DOC_V6, p))));
    assert.ok(ws.every((w) => !w.managed || w.addresses.every((p) => inside(OURS, p))));
    const overrides = c.policy.rules.filter((r) => r.tier === 'override');
    assert.ok(overrides.some((r) => r.expires?.toISOString() === '2027-06-30T00:00:00.000Z'));
    assert.ok(c.policy.rules.some((r) => r.tier === 'deny'));
    const modes = new Set(c.policy.modes.map((m) => m.mode));
    for (const m of ['enforce', 'test', 'visibility', 'idle'] as const) assert.ok(modes.has(m), m);
  });

  describe('expected flows', () => {
    const expected = readExpectedFlows(FLOWS);
    const flows = expected.flows;
    const ev = new Evaluator(c.ir);
    const naive = new NaiveEvaluator(c.policy);

    it('lists 15 to 25 flows covering every verdict, as of the estate’s reference time', () => {
      assert.equal(expected.now?.toISOString(), NOW.toISOString());
      assert.ok(flows.length >= 15 && flows.length <= 25, `${flows.length} flows`);
      assert.deepEqual([...new Set(flows.map((f) => f.expect))].sort(), ['allowed', 'blocked', 'not-evaluated', 'potentially-blocked']);
    });

    for (const f of flows) {
      it(`${f.expect}: ${f.note}`, () => {
        const flow = flowOf(c, f.from, f.to, f.port);
        const what = `${f.from} -> ${f.to} ${f.port}`;
        for (const [name, d] of [['evaluator', ev.decide(flow)], ['naive evaluator', naive.decide(flow)]] as const) {
          const by = d.rule ?? 'default';
          assert.equal(d.verdict, f.expect, `${name}: ${what}: decided by ${by}`);
          if (f.decidedBy !== undefined) assert.equal(by, f.decidedBy, `${name}: ${what}`);
        }
      });
    }
  });
});
