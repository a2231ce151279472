/**
 * The cluster compilers: golden files per target, schemas, the reference
 * readings of the output against the engine, and failing closed on what a
 * target cannot express.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadDir } from '../../src/cli/common.js';
import { compile, manifestsYaml, type Manifest, type Target } from '../../src/k8s/compile.js';
import type { K8sDiagnostic } from '../../src/k8s/diagnostics.js';
import { validateManifests } from '../../src/k8s/schema.js';
import { verifyK8s, verifySides } from '../../src/k8s/verify.js';
import { checkGolden } from '../helpers/golden.js';
import { policyFromYaml } from '../helpers/policy.js';

const NOW = new Date('2026-11-23T00:00:00Z');
const FIXTURE = fileURLToPath(new URL('../fixtures/k8s/estate/', import.meta.url));
const GOLDEN = fileURLToPath(new URL('../fixtures/k8s/golden/', import.meta.url));
const SAMPLE = fileURLToPath(new URL('../../examples/estate/policy/', import.meta.url));
mkdirSync(GOLDEN, { recursive: true });

const fixture = loadDir(FIXTURE, NOW);
const sample = loadDir(SAMPLE, NOW);

function diagText(items: readonly K8sDiagnostic[]): string {
  return items.map((d) => `${d.severity}[${d.code}]: ${d.message}${d.loc && d.loc.line > 0 ? ` (line ${d.loc.line})` : ''}\n`).join('');
}

function verify(target: Target, ir: typeof fixture.ir, artifacts: Manifest[]) {
  return target === 'k8s' ? verifyK8s(ir, artifacts) : verifySides(ir, target, artifacts);
}

test('the fixture estate loads cleanly', () => {
  assert.equal(fixture.diagnostics.errorCount, 0);
  assert.equal(sample.diagnostics.errorCount, 0);
});

for (const target of ['k8s', 'calico', 'cilium'] as const) {
  test(`${target}: golden output of the fixture estate, valid and equal to the engine`, () => {
    const r = compile(fixture.ir, { target });
    assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error'), []);
    checkGolden(`${GOLDEN}${target}.yaml`, manifestsYaml(r.artifacts));
    checkGolden(`${GOLDEN}${target}.diagnostics.txt`, diagText(r.diagnostics));
    assert.deepEqual(validateManifests(r.artifacts), []);
    const v = verify(target, fixture.ir, r.artifacts);
    assert.ok(v.checks > 1000);
    assert.deepEqual(v.mismatches, []);
  });

  test(`${target}: the sample estate ${target === 'calico' ? 'compiles whole' : 'fails closed, and with dropped allows narrows only'}`, () => {
    const strict = compile(sample.ir, { target });
    checkGolden(`${GOLDEN}sample-${target}.diagnostics.txt`, diagText(strict.diagnostics));
    if (target === 'calico') {
      // Calico says ICMP types and codes, denies from addresses, and orders overrides: the whole estate.
      assert.deepEqual(strict.diagnostics, []);
      assert.deepEqual(verifySides(sample.ir, 'calico', strict.artifacts).mismatches, []);
      return;
    }
    assert.ok(strict.diagnostics.some((d) => d.severity === 'error'));
    assert.deepEqual(strict.artifacts, [], 'nothing is emitted on errors');
    const lenient = compile(sample.ir, { target, dropUnsupportedAllows: true, logDenied: true });
    assert.deepEqual(lenient.diagnostics.filter((d) => d.severity === 'error'), []);
    assert.ok(lenient.artifacts.length > 0);
    assert.deepEqual(validateManifests(lenient.artifacts), []);
    if (target === 'k8s') {
      // ICMP is outside what the analyzer compares, so leaving it out changes nothing it sees.
      assert.deepEqual(verifyK8s(sample.ir, lenient.artifacts).mismatches, []);
    }
  });
}

test('calico: logDenied puts a Log rule before every Deny and in the default deny', () => {
  const r = compile(fixture.ir, { target: 'calico', logDenied: true, tier: 'sec' });
  const policies = r.artifacts.filter((m) => String(m.kind).endsWith('NetworkPolicy'));
  for (const p of policies) {
    const spec = p.spec as { tier: string; ingress?: { action: string }[]; egress?: { action: string }[] };
    assert.equal(spec.tier, 'sec');
    for (const rules of [spec.ingress ?? [], spec.egress ?? []]) {
      rules.forEach((rule, i) => {
        if (rule.action === 'Deny') assert.equal(rules[i - 1]?.action, 'Log');
      });
    }
  }
  const dd = policies.find((p) => String((p.metadata as { name: string }).name) === 'sec.default-deny')!;
  assert.deepEqual((dd.spec as { ingress: unknown[] }).ingress, [{ action: 'Log' }]);
  assert.deepEqual(verifySides(fixture.ir, 'calico', r.artifacts).mismatches, []);
});

test('the schemas catch mistakes', () => {
  const r = compile(fixture.ir, { target: 'k8s' });
  type Obj = { kind: string; metadata: Record<string, unknown>; spec: Record<string, unknown> };
  const bad = structuredClone(r.artifacts) as unknown as Obj[];
  const anp = bad.find((m) => m.kind === 'AdminNetworkPolicy')!;
  anp.spec.priority = 1001;
  const np = bad.find((m) => m.kind === 'NetworkPolicy')!;
  np.metadata.name = 'Not_A_Name';
  np.spec.podSelektor = {};
  const problems = validateManifests(bad as unknown as Manifest[]);
  assert.equal(problems.length, 2);
  assert.match(problems.map((p) => p.problems.join('; ')).join('\n'), /priority/);
  assert.match(problems.map((p) => p.problems.join('; ')).join('\n'), /metadata\.name/);
  assert.match(problems.map((p) => p.problems.join('; ')).join('\n'), /podSelektor/);
});

test('kubernetes-models accepts every NetworkPolicy (skipped when the package is not installed)', async (t) => {
  let NetworkPolicy: (new (data: unknown) => { validate(): void }) | undefined;
  try {
    const m = (await import('kubernetes-models/networking.k8s.io/v1/NetworkPolicy' as string)) as { NetworkPolicy: new (data: unknown) => { validate(): void } };
    NetworkPolicy = m.NetworkPolicy;
  } catch {
    t.skip('kubernetes-models is not installed');
    return;
  }
  const all = [...compile(fixture.ir, { target: 'k8s' }).artifacts, ...compile(sample.ir, { target: 'k8s', dropUnsupportedAllows: true }).artifacts];
  const nps = all.filter((m) => m.kind === 'NetworkPolicy');
  assert.ok(nps.length > 10);
  for (const m of nps) new NetworkPolicy(m).validate();
  assert.throws(() => new NetworkPolicy({ ...nps[0], spec: { podSelector: {}, ingress: [{ ports: [{ port: { nested: true } }] }] } }).validate());
});

// ---------------------------------------------------------------- failing closed

const BASE = `
workloads:
  - { name: a1, kind: pod, addresses: [10.244.0.1], labels: { namespace: n, app: a } }
  - { name: a2, kind: pod, addresses: [10.244.0.2], labels: { namespace: n, app: a } }
  - { name: b1, kind: pod, addresses: [10.244.0.3, "2001:db8::3"], labels: { namespace: n, app: b } }
  - { name: h1, kind: host, addresses: [10.1.0.1], labels: { app: h } }
`;

function compileInline(rules: string, target: Target, drop = false) {
  const c = policyFromYaml(BASE + rules);
  assert.deepEqual(c.diagnostics.items.filter((d) => d.severity === 'error'), []);
  return compile(c.ir, { target, dropUnsupportedAllows: drop });
}

test('an allow rule with ICMP toward pods: k8s fails closed; leaving it out is a warning; Calico says it', () => {
  const rules = `rulesets: [{ name: r, rules: [{ id: ping, from: ["app == 'h'"], to: ["app == 'a'"], services: [8/icmp, 443/tcp] }] }]`;
  const strict = compileInline(rules, 'k8s');
  assert.deepEqual(strict.artifacts, []);
  assert.deepEqual(
    strict.diagnostics.map((d) => [d.severity, d.code, d.message, d.rules]),
    [['error', 'BH901', 'rule `ping`: connections `icmp type 8` cannot be expressed', ['ping']]],
  );
  const lenient = compileInline(rules, 'k8s', true);
  assert.equal(lenient.diagnostics[0].severity, 'warning');
  assert.match(lenient.diagnostics[0].help ?? '', /narrows access/);
  assert.match(manifestsYaml(lenient.artifacts), /port: 443/);
  assert.doesNotMatch(manifestsYaml(lenient.artifacts), /icmp/i);
  const calico = compileInline(rules, 'calico');
  assert.deepEqual(calico.diagnostics, []);
  assert.match(manifestsYaml(calico.artifacts), /protocol: ICMP\n\s+icmp:\n\s+type: 8/);
  const cilium = compileInline(rules, 'cilium');
  assert.deepEqual(cilium.diagnostics, []);
  assert.match(manifestsYaml(cilium.artifacts), /icmps:/);
});

test('a deny rule the target cannot say fails even when allows may be dropped', () => {
  const rules = `rulesets: [{ name: r, rules: [{ id: no-pmtud, action: deny, from: ["app == 'h'"], to: ["app == 'a'"], services: ["3:4/icmp"] }] }]`;
  for (const target of ['k8s', 'cilium'] as const) {
    const r = compileInline(rules, target, true);
    assert.deepEqual(r.artifacts, []);
    assert.deepEqual(
      r.diagnostics.map((d) => [d.severity, d.rules]),
      [['error', ['no-pmtud']]],
    );
  }
});

test('cilium: an allow override that a later deny overlaps cannot be ordered', () => {
  const rules = `
rulesets: [{ name: r, rules: [{ id: no-ssh, action: deny, from: ["all()"], to: ["app == 'a'"], services: ["22/tcp"] }] }]
overrides: [{ id: bg-ssh, action: allow, from: [{ workload: h1 }], to: ["app == 'a'"], services: ["22/tcp"] }]`;
  const r = compileInline(rules, 'cilium');
  assert.deepEqual(r.artifacts, []);
  assert.equal(r.diagnostics[0].message, 'rule `bg-ssh`: an allow override cannot come before the deny rule `no-ssh` in Cilium');
  for (const target of ['k8s', 'calico'] as const) {
    const ok = compileInline(rules, target);
    assert.deepEqual(ok.diagnostics, []);
    const c = policyFromYaml(BASE + rules);
    assert.deepEqual(verify(target, c.ir, ok.artifacts).mismatches, [], `${target} orders the override first`);
  }
});

test('pods that no label selector tells apart: a named pod with a twin, a pod half in an address range', () => {
  const named = compileInline(`overrides: [{ id: just-a1, action: deny, from: [{ workload: a1 }], to: [{ workload: h1 }], services: [any] }]`, 'k8s');
  assert.deepEqual(named.artifacts, []);
  assert.match(named.diagnostics[0].message, /^rule `just-a1`: no label selector selects exactly the pods `a1`$/);
  const half = compileInline(`rulesets: [{ name: r, rules: [{ id: v4-only, from: [{ cidr: 10.244.0.0/24 }], to: ["app == 'h'"], services: [any] }] }]`, 'calico');
  assert.deepEqual(half.artifacts, []);
  assert.match(half.diagnostics[0].message, /pod `b1` has addresses both inside and outside/);
});

test('a service limited to a process cannot be said for pods', () => {
  const r = compileInline(
    `services: [{ name: web, ports: [80/tcp], process: /usr/sbin/nginx }]
rulesets: [{ name: r, rules: [{ id: to-web, from: ["app == 'h'"], to: ["app == 'a'"], services: [web] }] }]`,
    'calico',
  );
  assert.deepEqual(r.artifacts, []);
  assert.match(r.diagnostics[0].message, /service `web` is limited to a process or user/);
});

test('rules that concern no pod are left out, and an estate without pods compiles to nothing', () => {
  const r = compileInline(`rulesets: [{ name: r, rules: [{ id: hosts, from: ["app == 'h'"], to: ["app == 'h'"], services: [any] }] }]`, 'k8s');
  assert.equal(r.artifacts.filter((m) => (m.metadata as { annotations: Record<string, string> }).annotations['bulkhead.io/rule'] === 'hosts').length, 0);
  const empty = compile(policyFromYaml(`workloads: [{ name: h, addresses: [10.0.0.1] }]`).ir, { target: 'calico' });
  assert.deepEqual(
    empty.artifacts.map((m) => m.kind),
    ['Tier'],
  );
});
