/**
 * The round trip, as a property over seeded random estates (src/generate):
 * compile the IR to Kubernetes NetworkPolicy and AdminNetworkPolicy, read the
 * manifests back with the analyzer (np-guard's semantics), and require the
 * connectivity of every pod pair and of every pod with every kind of outside
 * address to equal the engine's on the pod ends. Rules the target cannot
 * express are taken out of the estate first (the compiler names them), so the
 * property speaks of what the target can express.
 *
 * Calico and Cilium output is checked the same way against the reference
 * readings of oracle.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { generateEstate, type EstateDocument } from '../../src/generate/index.js';
import { compile, type Manifest, type Target } from '../../src/k8s/compile.js';
import { validateManifests } from '../../src/k8s/schema.js';
import { verifyK8s, verifySides } from '../../src/k8s/verify.js';
import type { Ir } from '../../src/policy/ir.js';
import { policyFromDoc } from '../helpers/policy.js';

/** Compiles a seeded estate for a target, taking out the rules the compiler says it cannot express. */
function expressible(seed: number, target: Target, workloads: number): { ir: Ir; artifacts: Manifest[]; removed: string[]; pods: number } | undefined {
  const doc: EstateDocument = generateEstate({ seed, workloads, k8sFraction: 0.8 });
  const removed: string[] = [];
  for (let round = 0; round < 10; round++) {
    const c = policyFromDoc(doc);
    assert.equal(c.diagnostics.errorCount, 0, 'generated estates load cleanly');
    const r = compile(c.ir, { target });
    const errors = r.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length === 0) return { ir: c.ir, artifacts: r.artifacts, removed, pods: c.ir.workloads.filter((w) => w.kind === 'pod').length };
    const ids = new Set(errors.flatMap((d) => d.rules ?? []));
    if (ids.size === 0) return undefined; // not about a rule (pods of one label set in two modes): no policy to speak of
    removed.push(...ids);
    for (const rs of doc.rulesets) rs.rules = rs.rules.filter((x) => x.id === undefined || !ids.has(x.id));
    doc.overrides = doc.overrides.filter((o) => !ids.has(o.id));
  }
  return undefined;
}

const RUNS: Record<Target, number> = { k8s: 12, calico: 6, cilium: 6 };

for (const target of ['k8s', 'calico', 'cilium'] as const) {
  test(`round trip (${target}): the compiled policy allows exactly what bulkhead allows on every pod end`, () => {
    let checked = 0;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), (seed) => {
        const e = expressible(seed, target, 90);
        fc.pre(e !== undefined && e.pods > 0);
        assert.deepEqual(validateManifests(e.artifacts), []);
        const v = target === 'k8s' ? verifyK8s(e.ir, e.artifacts) : verifySides(e.ir, target, e.artifacts);
        assert.deepEqual(v.mismatches, [], `seed ${seed} (rules taken out: ${e.removed.join(', ') || 'none'})`);
        checked++;
      }),
      { numRuns: RUNS[target], seed: 20261123 },
    );
    assert.ok(checked > 0, "some estates had pods");
    console.log(`round trip (${target}): ${checked} estates checked`);
  });
}

test('round trip (k8s) on a larger estate with overrides and deny rules from addresses', () => {
  const e = expressible(4, 'k8s', 200);
  assert.ok(e && e.pods > 50);
  assert.ok(e.artifacts.some((m) => m.kind === 'AdminNetworkPolicy'));
  assert.ok(e.artifacts.some((m) => String((m.metadata as { name: string }).name).startsWith('bulkhead-ingress-addresses')));
  assert.deepEqual(verifyK8s(e.ir, e.artifacts).mismatches, []);
});
