import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { NaiveEvaluator, peerHolds } from '../../src/engine/naive.js';
import { generateEstate, generateFlows, Rng, toYaml, toYamlFiles, type EstateDocument } from '../../src/generate/index.js';
import { resolveServices } from '../../src/generate/ports.js';
import { parseSelector } from '../../src/model/selector.js';
import type { Rule, Workload } from '../../src/model/types.js';
import { familyOf, parseAddr, type Addr } from '../../src/netset/ip.js';
import { flowFromGenerated, policyFromDoc } from '../helpers/policy.js';
import { allSelectors, balanced, checkDocument } from './check.js';

const ruleCount = (d: EstateDocument) => d.rulesets.reduce((n, rs) => n + rs.rules.length, 0);
const SECTIONS = ['iplists', 'modes', 'overrides', 'rulesets', 'services', 'settings', 'taxonomy', 'workloads'];

/** The family of an address written as text; fails the test when it does not parse. */
function familyOfText(text: string): 4 | 6 {
  const a = parseAddr(text);
  assert.ok(a !== null, `${text} is an address`);
  return familyOf(a);
}

/** Whether a rule of the loaded model covers the flow (peers, scope and connections), whatever the tiers and modes say. */
function covers(rule: Rule, f: { src: Addr; dst: Addr; proto: number; port: number }, sw: Workload | undefined, dw: Workload | undefined): boolean {
  return rule.conns.has(f.proto, f.port) && rule.from.some((p) => peerHolds(p, rule, f.src, sw)) && rule.to.some((p) => peerHolds(p, rule, f.dst, dw));
}

describe('Rng', () => {
  it('is deterministic per seed and spreads values', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    const xs = Array.from({ length: 1000 }, () => a.next());
    assert.deepEqual(xs, Array.from({ length: 1000 }, () => b.next()));
    const c = new Rng(8);
    assert.notDeepEqual(xs.slice(0, 10), Array.from({ length: 10 }, () => c.next()));
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
    const r = new Rng(1);
    for (let i = 0; i < 1000; i++) {
      const n = r.range(3, 5);
      assert.ok(n >= 3 && n <= 5 && Number.isInteger(n));
    }
  });
});

describe('generateEstate', () => {
  it('is deterministic: the same seed gives a deep-equal document, another seed a different one', () => {
    const a = generateEstate({ seed: 42, workloads: 2000, rules: 400 });
    const b = generateEstate({ seed: 42, workloads: 2000, rules: 400 });
    assert.deepEqual(a, b);
    const c = generateEstate({ seed: 43, workloads: 2000, rules: 400 });
    assert.notDeepEqual(a.workloads, c.workloads);
    assert.notDeepEqual(a.rulesets, c.rulesets);
  });

  it('keeps the workloads of a seed when only the rule count changes', () => {
    const a = generateEstate({ seed: 5, workloads: 500, rules: 50 });
    const b = generateEstate({ seed: 5, workloads: 500, rules: 900 });
    assert.deepEqual(a.workloads, b.workloads);
  });

  it('returns exactly the documented sections', () => {
    const d = generateEstate({ seed: 1, workloads: 100 });
    assert.deepEqual(Object.keys(d).sort(), SECTIONS);
  });

  it('honours the workload and rule counts', () => {
    for (const workloads of [0, 1, 3, 17, 150, 1000, 5000]) {
      assert.equal(generateEstate({ seed: workloads, workloads }).workloads.length, workloads);
    }
    for (const rules of [0, 1, 7, 60, 500, 3000]) {
      assert.equal(ruleCount(generateEstate({ seed: 9, workloads: 800, rules })), rules, `rules: ${rules}`);
    }
    assert.ok(ruleCount(generateEstate({ seed: 9, workloads: 800 })) > 50, 'a default rule budget');
    assert.equal(generateEstate({ seed: 1, workloads: 300, overrides: 5 }).overrides.length, 5);
    assert.equal(generateEstate({ seed: 1, workloads: 300, apps: 11 }).taxonomy.app.length, 4 + 11);
  });

  it('gives unique names and unique, non-overlapping addresses, and sound references', () => {
    for (const [seed, workloads, rules] of [[1, 150, undefined], [2, 3000, 800], [3, 12000, 4000]] as const) {
      assert.deepEqual(checkDocument(generateEstate({ seed, workloads, rules })), [], `seed ${seed}`);
    }
  });

  it('scales to 100k workloads and 10k rules', () => {
    const d = generateEstate({ seed: 100, workloads: 100_000, rules: 10_000 });
    assert.equal(d.workloads.length, 100_000);
    assert.equal(ruleCount(d), 10_000);
    const seen = new Set<string>();
    for (const w of d.workloads) for (const a of w.addresses) seen.add(a);
    assert.equal(seen.size, d.workloads.reduce((n, w) => n + w.addresses.length, 0));
    assert.equal(new Set(d.workloads.map((w) => w.name)).size, 100_000);
  });

  it('writes only well-formed selectors, in many forms', () => {
    const d = generateEstate({ seed: 11, workloads: 4000, rules: 1500 });
    const sels = allSelectors(d);
    for (const s of sels) {
      assert.ok(balanced(s), s);
      assert.ok(parseSelector(s).ok, s);
    }
    const text = sels.join('\n');
    for (const form of ['==', '!=', ' in {', ' not in {', '&&', '||', 'has(', '!has(', '!(', 'all()']) assert.ok(text.includes(form), `uses ${form}`);
  });

  it('uses the documented address ranges and a share of IPv6', () => {
    const d = generateEstate({ seed: 3, workloads: 10_000, ipv6Fraction: 0.2 });
    const managed = d.workloads.filter((w) => w.managed !== false);
    assert.ok(managed.every((w) => w.addresses[0].startsWith('10.')));
    const v6 = d.workloads.filter((w) => w.addresses.some((a) => familyOfText(a.split('/')[0]) === 6));
    assert.ok(v6.every((w) => w.addresses.filter((a) => familyOfText(a.split('/')[0]) === 6).every((a) => a.startsWith('2001:db8:'))));
    const share = v6.length / d.workloads.length;
    assert.ok(share > 0.15 && share < 0.25, `IPv6 share ${share}`);
    assert.equal(generateEstate({ seed: 3, workloads: 2000, ipv6Fraction: 0 }).workloads.filter((w) => w.addresses.length > 1).length, 0);
  });

  it('has a realistic shape: tiers, envs, pods, unmanaged, denies, globals, ranges, UDP and ICMP', () => {
    const d = generateEstate({ seed: 21, workloads: 6000, rules: 2500 });
    const roles = new Set(d.workloads.map((w) => w.labels?.role));
    for (const r of ['web', 'app', 'db', 'lb', 'jump', 'dns', 'ntp', 'ldap', 'syslog', 'monitor', 'backup', 'k8s-node']) assert.ok(roles.has(r), r);
    assert.deepEqual(new Set(d.workloads.map((w) => w.labels?.env).filter(Boolean)), new Set(['prod', 'staging', 'dev']));
    assert.ok(d.workloads.some((w) => w.kind === 'pod' && w.labels?.namespace));
    assert.ok(d.workloads.some((w) => w.managed === false && w.addresses[0].includes('/')));
    const rules = d.rulesets.flatMap((rs) => rs.rules);
    assert.ok(rules.some((r) => r.action === 'deny'));
    assert.ok(rules.some((r) => r.from.some((p) => typeof p === 'object' && 'global' in p && p.global)));
    assert.ok(rules.some((r) => r.from.some((p) => typeof p === 'object' && 'iplist' in p)));
    const services = new Map(d.services.map((s) => [s.name, s]));
    const ranges = rules.flatMap((r) => resolveServices(r.services, services));
    assert.ok(ranges.some((r) => r.hi > r.lo && r.proto === 'tcp'));
    assert.ok(ranges.some((r) => r.proto === 'udp'));
    assert.ok(ranges.some((r) => r.proto === 'icmp'));
    assert.ok(d.modes.some((m) => m.mode === 'visibility') && d.modes.some((m) => m.mode === 'test'));
    assert.ok(d.overrides.some((o) => o.expires));
  });

  it('round-trips through YAML, whole and split into files', () => {
    const d = generateEstate({ seed: 8, workloads: 300, rules: 120 });
    assert.deepEqual(parseYaml(toYaml(d)), d);
    const merged: Record<string, unknown> = {};
    for (const text of Object.values(toYamlFiles(d))) {
      for (const [k, v] of Object.entries(parseYaml(text) as Record<string, unknown>)) {
        merged[k] = Array.isArray(v) ? [...((merged[k] as unknown[]) ?? []), ...v] : { ...(merged[k] as object), ...(v as object) };
      }
    }
    assert.deepEqual(merged, d);
  });
});

describe('generateFlows', () => {
  const estate = generateEstate({ seed: 77, workloads: 3000, rules: 900 });

  it('is deterministic and honours the count', () => {
    const a = generateFlows(estate, { seed: 1, count: 5000 });
    assert.equal(a.length, 5000);
    assert.deepEqual(a, generateFlows(estate, { seed: 1, count: 5000 }));
    assert.notDeepEqual(a, generateFlows(estate, { seed: 2, count: 5000 }));
    assert.equal(generateFlows(estate, { seed: 1, count: 0 }).length, 0);
  });

  it('gives valid addresses, protocols and ports, and a mix of rule-following and random flows', () => {
    const flows = generateFlows(estate, { seed: 3, count: 10_000, ruleFraction: 0.6 });
    for (const f of flows) {
      const fs = familyOfText(f.src);
      assert.equal(fs, familyOfText(f.dst), `${f.src} -> ${f.dst}`);
      assert.ok(['tcp', 'udp', 'sctp', 'icmp', 'icmpv6'].includes(f.proto));
      if (f.proto === 'icmp') assert.equal(fs, 4);
      if (f.proto === 'icmpv6') assert.equal(fs, 6);
      assert.ok(Number.isInteger(f.port) && f.port >= 0 && f.port <= 65535);
    }
    const share = flows.filter((f) => f.origin === 'rule').length / flows.length;
    assert.ok(share > 0.5 && share < 0.7, `rule share ${share}`);
    assert.ok(flows.some((f) => familyOfText(f.src) === 6));
  });

  it('samples rule flows that the rule really covers', () => {
    const c = policyFromDoc(estate);
    assert.equal(c.diagnostics.errorCount, 0, 'the estate loads cleanly');
    const rules = new Map(c.policy.rules.map((r) => [r.id, r]));
    const naive = new NaiveEvaluator(c.policy);
    const flows = generateFlows(estate, { seed: 4, count: 3000, ruleFraction: 1 });
    assert.ok(new Set(flows.map((f) => f.rule)).size > 50, 'many different rules');
    for (const g of flows) {
      assert.equal(g.origin, 'rule');
      const rule = rules.get(g.rule!);
      assert.ok(rule, `rule ${g.rule} is in the loaded policy`);
      const f = flowFromGenerated(g);
      assert.ok(covers(rule, f, naive.workloadAt(f.src), naive.workloadAt(f.dst)), `${g.rule}: ${g.src} -> ${g.dst} ${g.port}/${g.proto}`);
    }
  });

  it('works on a document without rules or workloads', () => {
    const flows = generateFlows({}, { seed: 1, count: 20 });
    assert.equal(flows.length, 20);
    assert.ok(flows.every((f) => f.origin === 'random'));
  });
});
