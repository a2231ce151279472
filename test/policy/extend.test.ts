/**
 * extendPolicy (overrides added to a policy already loaded, as the server
 * adds break-glass) must give what a full load of the same documents gives:
 * the same rules in the same order, the same diagnostics, the same verdicts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateEstate } from '../../src/generate/index.js';
import { extendPolicy, loadPolicy, type LoadResult } from '../../src/policy/load.js';
import { compileLoaded } from '../../src/policy/index.js';
import { memoryDoc, type SourceDoc } from '../../src/policy/source.js';
import { Evaluator } from '../../src/engine/evaluate.js';
import { Rng } from '../../src/generate/prng.js';

const NOW = new Date('2026-11-23T00:00:00Z');

/** What a rule is, for comparison: everything but its source location's object identity. */
function ruleView(r: LoadResult['policy']['rules'][number]) {
  return { id: r.id, tier: r.tier, action: r.action, order: r.order, ruleset: r.ruleset, scope: String(r.scope), from: JSON.stringify(r.from, (_, v) => (typeof v === 'bigint' ? String(v) : v)), to: JSON.stringify(r.to, (_, v) => (typeof v === 'bigint' ? String(v) : v)), conns: r.conns.toString(), expires: r.expires?.toISOString(), loc: r.loc };
}

function diagView(l: LoadResult) {
  return l.diagnostics.items.map((d) => `${d.severity} ${d.code} ${d.loc?.file ?? '-'}:${d.loc?.line ?? 0} ${d.message}`).sort();
}

test('extendPolicy gives what a full load gives: rules, order, diagnostics and verdicts', () => {
  for (const seed of [1, 2, 3, 4]) {
    const doc = generateEstate({ seed, workloads: 300, rules: 80, overrides: 3 }) as unknown as { workloads: { name: string; labels?: Record<string, string> }[]; overrides: Record<string, unknown>[] };
    // One base override already expired by NOW: both paths must drop it with a warning.
    doc.overrides.push({ id: 'old-expired', from: ['any'], to: ['any'], services: ['any'], action: 'allow', expires: '2026-11-22T00:00:00Z', reason: 'expired' });
    const base = memoryDoc('base.yaml', doc);
    const rng = new Rng(seed);
    const rnd = () => rng.next();
    const w = () => doc.workloads[Math.floor(rnd() * doc.workloads.length)];
    const app = () => w().labels?.app ?? 'none';
    const extras: Record<string, unknown>[] = [
      { id: `bg-${seed}-a`, from: [{ cidr: '198.51.100.7/32' }], to: [`app == '${app()}'`], services: ['22/tcp'], action: 'allow', reason: 'incident' },
      { id: `bg-${seed}-b`, from: [{ workload: w().name }], to: ['any'], services: ['any'], action: 'deny', reason: 'quarantine' },
      // Problems: an unknown label key, an unknown workload, an id the base already has.
      { id: `bg-${seed}-c`, from: ["nosuchkey == 'x'"], to: ['any'], services: ['22/tcp'], action: 'allow', reason: 'bad' },
      { id: `bg-${seed}-d`, from: [{ workload: 'no-such-host' }], to: ['any'], services: ['22/tcp'], action: 'allow', reason: 'bad' },
      { id: String(doc.overrides[0].id), from: ['any'], to: ['any'], services: ['22/tcp'], action: 'allow', reason: 'dup' },
    ];
    const extra: SourceDoc = memoryDoc('/breakglass', { overrides: extras });
    const full = loadPolicy({ docs: [extra, base] }, { now: NOW });
    const baseLoad = loadPolicy({ docs: [base] }, { now: NOW });
    const ext = extendPolicy(baseLoad, [extra], { now: NOW });

    // With an id used twice the policy has an error either way (the server refuses it); which of the two a
    // full load keeps differs, so that id is left out of the comparison.
    const dupId = String(doc.overrides[0].id);
    const view = (l: LoadResult) => l.policy.rules.filter((r) => r.id !== dupId).map(ruleView);
    assert.deepEqual(view(ext), view(full), `seed ${seed}: rules`);
    assert.ok(ext.policy.rules.some((r) => r.id === `bg-${seed}-a`), 'the good break-glass rule is in');
    assert.ok(!ext.policy.rules.some((r) => r.id === 'old-expired') && !full.policy.rules.some((r) => r.id === 'old-expired'), 'the expired base override is out');
    // A full load reports the duplicate id at both uses; extendPolicy at the new one only. Otherwise the same.
    const dup = (s: string) => s.includes('BH201');
    assert.deepEqual(diagView(ext).filter((s) => !dup(s)), diagView(full).filter((s) => !dup(s)), `seed ${seed}: diagnostics`);
    assert.ok(diagView(ext).some(dup) && diagView(full).some(dup), 'the duplicate id is reported by both');

    // The same verdicts on a sample of workload pairs.
    const without = (l: LoadResult): LoadResult => ({ ...l, policy: { ...l.policy, rules: l.policy.rules.filter((r) => r.id !== dupId) } });
    const a = compileLoaded(without(ext)).ir;
    const b = compileLoaded(without(full)).ir;
    const ea = new Evaluator(a);
    const eb = new Evaluator(b);
    for (let k = 0; k < 300; k++) {
      const s = a.workloads[Math.floor(rnd() * a.workloads.length)].addresses[0].addr;
      const d = a.workloads[Math.floor(rnd() * a.workloads.length)].addresses[0].addr;
      const port = [22, 80, 443, 5432][k % 4];
      const q = { src: s, dst: d, proto: 6, port };
      const x = ea.decide(q);
      const y = eb.decide(q);
      assert.equal(x.verdict, y.verdict, `seed ${seed}: verdict of ${JSON.stringify({ ...q, src: String(s), dst: String(d) })}`);
      assert.equal(x.rule, y.rule);
    }
  }
});

test('extendPolicy with nothing to add drops what expired since the base was loaded', () => {
  const doc = generateEstate({ seed: 9, workloads: 50, rules: 10, overrides: 0 }) as unknown as { overrides: Record<string, unknown>[] };
  doc.overrides = [{ id: 'soon', from: ['any'], to: ['any'], services: ['22/tcp'], action: 'allow', expires: '2026-11-23T01:00:00Z', reason: 'r' }];
  const base = loadPolicy({ docs: [memoryDoc('p.yaml', doc)] }, { now: NOW });
  assert.ok(base.policy.rules.some((r) => r.id === 'soon'));
  const later = extendPolicy(base, [], { now: new Date('2026-11-23T02:00:00Z') });
  assert.ok(!later.policy.rules.some((r) => r.id === 'soon'));
  assert.ok(later.diagnostics.items.some((d) => d.code === 'BH701' && d.message.includes('soon')));
  assert.throws(() => extendPolicy(base, [memoryDoc('x', { workloads: [{ name: 'w', addresses: ['10.0.0.1'] }] })]), /only overrides/);
});
