/**
 * Policy modeling (src/analysis/replay.ts), pure: known answers on a small
 * hand-checked policy (counts per outcome and group, the listed edges, rule
 * hits and rules with no hits, the gate), and a differential check against
 * the reference evaluator (src/engine/naive.ts) on generated estates, with
 * groups and rule hits computed independently from the policy model.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddr, parsePrefix, prefixRange, type Addr, type Prefix } from '../../src/netset/ip.js';
import type { Rule, Workload } from '../../src/model/types.js';
import { Attributor, INTERNAL_RANGES } from '../../src/flows/attribute.js';
import { NaiveEvaluator, peerHolds } from '../../src/engine/naive.js';
import type { Flow } from '../../src/engine/evaluate.js';
import { generateEstate, generateFlows, Rng } from '../../src/generate/index.js';
import { gate, replay, type ReplayCounts, type ReplayInputEdge, type ReplayReport } from '../../src/analysis/replay.js';
import { flowFromGenerated, policyFromDoc, policyFromYaml } from '../helpers/policy.js';

const small = policyFromYaml(
  `
settings: { defaultMode: enforce }
iplists:
  - { name: internet, include: [0.0.0.0/0], exclude: [10.0.0.0/8, 192.0.2.0/24] }
  - { name: partners, include: [198.51.100.0/24] }
workloads:
  - { name: web-1, addresses: [10.0.1.1], labels: { app: shop, env: prod, role: web } }
  - { name: app-1, addresses: [10.0.1.2], labels: { app: shop, env: prod, role: app } }
  - { name: db-1, addresses: [10.0.1.3], labels: { app: shop, env: prod, role: db } }
  - { name: crm-1, addresses: [10.0.2.1], labels: { app: crm, env: prod, role: app }, mode: test }
  - { name: dev-1, addresses: [10.9.0.1], labels: { app: shop, env: dev, role: app } }
  - { name: legacy-1, addresses: [10.0.3.1], labels: { app: legacy, env: prod, role: app }, managed: false }
  - { name: idle-1, addresses: [10.0.4.1], labels: { app: batch, env: prod, role: app }, mode: idle }
rulesets:
  - name: shop
    rules:
      - { id: web-in, from: [{ iplist: internet }], to: ["role == 'web'"], services: ["443/tcp"] }
      - { id: web-app, from: ["role == 'web'"], to: ["role == 'app' && app == 'shop'"], services: ["8080/tcp"] }
      - { id: app-db, from: ["role == 'app' && app == 'shop'"], to: ["role == 'db'"], services: ["5432/tcp"] }
      - { id: no-dev-to-prod, action: deny, from: ["env == 'dev'"], to: ["env == 'prod'"], services: [any] }
      - { id: no-telnet, action: deny, from: [any], to: [any], services: ["23/tcp"] }
      - { id: crm-to-app, from: ["app == 'crm'"], to: ["app == 'shop' && role == 'app'"], services: ["9000/tcp"] }
      - { id: ping, from: [any], to: ["all()"], services: ["8/icmp"] }
`,
  { file: 'small.yaml' },
);

const T = Date.parse('2026-11-16T08:00:00Z');
const H = 3600_000;
function e(client: string, server: string, conn: string, flows: number, rejected = 0, at = 0): ReplayInputEdge {
  const [port, proto] = conn.split('/');
  const p = proto === 'tcp' ? 6 : proto === 'udp' ? 17 : 1;
  return { client: parseAddr(client)!, server: parseAddr(server)!, proto: p, port: Number(port), flows, packets: flows * 2, bytes: flows * 100, rejected, first: T + at * H, last: T + at * H + 60_000 };
}

const edges: ReplayInputEdge[] = [
  e('203.0.113.5', '10.0.1.1', '443/tcp', 100), // allowed by web-in (ingress)
  e('203.0.113.6', '10.0.1.1', '443/tcp', 50, 0, 1),
  e('10.0.1.1', '10.0.1.2', '8080/tcp', 200), // web-app, both ends
  e('10.0.1.2', '10.0.1.3', '5432/tcp', 300, 0, 2), // app-db, both ends
  e('10.9.0.1', '10.0.1.3', '5432/tcp', 7, 2, 3), // no-dev-to-prod at both ends, the source's decides; 2 rejected
  e('10.0.1.1', '10.0.1.3', '5432/tcp', 3, 0, 4), // default deny at the source
  e('10.0.2.1', '10.0.3.1', '22/tcp', 4, 0, 5), // test-mode source, unmanaged destination: potentially blocked
  e('10.0.3.1', '10.0.2.1', '23/tcp', 6, 0, 6), // no-telnet at a test-mode destination: potentially blocked
  e('10.0.3.1', '10.0.4.1', '80/tcp', 9), // unmanaged to idle: not evaluated
  e('10.5.5.5', '10.0.1.2', '8080/tcp', 2, 2), // unknown address, all rejected: never gated
  e('198.51.100.7', '10.0.1.1', '443/tcp', 10), // in two IP lists
  e('192.0.2.9', '10.0.1.1', '443/tcp', 1, 0, 7), // external, in no list: default deny at the destination
  e('10.0.1.2', '10.0.1.3', '65535/icmp', 5), // ICMP without type: not judged
  e('10.0.1.2', '10.0.1.3', String(8 * 256) + '/icmp', 4), // echo request: ping
];

function zero(): Record<keyof ReplayCounts, number> {
  return { flows: 0, allowed: 0, potentiallyBlocked: 0, blocked: 0, blockedByRule: 0, blockedByDefault: 0, notEvaluated: 0, unjudged: 0, rejected: 0 };
}
function c(o: Partial<ReplayCounts>): ReplayCounts {
  const r = { ...zero(), ...o };
  r.blocked = r.blockedByRule + r.blockedByDefault;
  r.flows = r.allowed + r.potentiallyBlocked + r.blocked + r.notEvaluated + r.unjudged;
  return r;
}

test('small policy: totals, groups (each end, in and out), IP lists, external and unknown', () => {
  assert.equal(small.diagnostics.errorCount, 0);
  const r = replay(small.ir, edges, { ends: new Attributor(small.ir) });
  assert.equal(r.edges, edges.length);
  assert.equal(r.by, 'app,env');
  assert.deepEqual(r.totals, c({ allowed: 664, blockedByRule: 5, blockedByDefault: 4, potentiallyBlocked: 10, notEvaluated: 9, unjudged: 5, rejected: 4 }));
  assert.equal(r.first, T);
  assert.equal(r.last, T + 7 * H + 60_000);
  const g = new Map(r.groups.map((x) => [x.name, x]));
  assert.deepEqual(
    r.groups.map((x) => `${x.name} ${x.kind} ${x.workloads}`),
    [
      'app=batch,env=prod workloads 1',
      'app=crm,env=prod workloads 1',
      'app=legacy,env=prod workloads 1',
      'app=shop,env=dev workloads 1',
      'app=shop,env=prod workloads 3',
      'ip:internet iplist 0',
      'ip:internet+partners iplist 0',
      'external external 0',
      'unknown unknown 0',
    ],
  );
  const prod = g.get('app=shop,env=prod')!;
  // Flows inside the group count once in total, in both in and out.
  assert.deepEqual(prod.total, c({ allowed: 664, blockedByRule: 5, blockedByDefault: 4, unjudged: 5, rejected: 4 }));
  assert.deepEqual(prod.out, c({ allowed: 504, blockedByDefault: 3, unjudged: 5 }));
  assert.deepEqual(prod.in, c({ allowed: 664, blockedByRule: 5, blockedByDefault: 4, unjudged: 5, rejected: 4 }));
  assert.deepEqual(g.get('app=shop,env=dev')!.out, c({ blockedByRule: 5, rejected: 2 }));
  assert.deepEqual(g.get('app=shop,env=dev')!.in, c({}));
  assert.deepEqual(g.get('app=crm,env=prod')!.total, c({ potentiallyBlocked: 10 }));
  assert.deepEqual(g.get('app=legacy,env=prod')!.total, c({ potentiallyBlocked: 10, notEvaluated: 9 }));
  assert.deepEqual(g.get('app=legacy,env=prod')!.out, c({ potentiallyBlocked: 6, notEvaluated: 9 }));
  assert.deepEqual(g.get('app=batch,env=prod')!.in, c({ notEvaluated: 9 }));
  assert.deepEqual(g.get('ip:internet')!.out, c({ allowed: 150 }));
  assert.deepEqual(g.get('ip:internet+partners')!.total, c({ allowed: 10 }));
  assert.deepEqual(g.get('external')!.total, c({ blockedByDefault: 1 }));
  assert.deepEqual(g.get('unknown')!.total, c({ rejected: 2 }));
});

test('small policy: the listed edges with their deciding rule and side; rejected flows apart', () => {
  const r = replay(small.ir, edges, { ends: new Attributor(small.ir) });
  const show = (l: ReplayReport['blockedByRule']) =>
    l.map((f) => `${f.client.name}${f.client.kind === 'workload' ? '' : ' ' + f.client.addresses.join(' ')} -> ${f.server.name} ${f.ports.map((p) => `${p.proto}/${p.port}`).join(',')} ${f.flows} ${f.outcome} ${f.rule ?? 'default'} ${f.decidedBy} ${f.tier}`);
  assert.deepEqual(show(r.blockedByRule), ['dev-1 -> db-1 6/5432 5 blocked-by-rule no-dev-to-prod egress deny']);
  assert.deepEqual(show(r.blockedByDefault), ['web-1 -> db-1 6/5432 3 blocked-by-default default egress default', 'external 192.0.2.9 -> web-1 6/443 1 blocked-by-default default ingress default']);
  assert.deepEqual(show(r.potentiallyBlocked), ['legacy-1 -> crm-1 6/23 6 potentially-blocked no-telnet ingress deny', 'crm-1 -> legacy-1 6/22 4 potentially-blocked default egress default']);
  assert.deepEqual(show(r.rejected), ['dev-1 -> db-1 6/5432 2 blocked-by-rule no-dev-to-prod egress deny', 'unknown 10.5.5.5 -> app-1 6/8080 2 blocked-by-default default ingress default']);
  const dev = r.blockedByRule[0];
  assert.equal(dev.first, T + 3 * H);
  assert.equal(dev.last, T + 3 * H + 60_000);
  assert.deepEqual(dev.client, { name: 'dev-1', kind: 'workload', group: 'app=shop,env=dev', addressCount: 1, addresses: ['10.9.0.1'] });
  assert.equal(r.blockedByDefault[1].server.group, 'app=shop,env=prod');
});

test('small policy: hits per rule (both ends, rejected flows too) and rules with no hits', () => {
  const r = replay(small.ir, edges, { ends: new Attributor(small.ir) });
  const hits = Object.fromEntries(r.rules.map((x) => [x.id, `${x.hits} e${x.egress} i${x.ingress} d${x.decided} ${x.edges}`]));
  assert.deepEqual(hits, {
    'web-in': '160 e0 i160 d160 3',
    'web-app': '200 e200 i200 d200 1',
    'app-db': '300 e300 i300 d300 1',
    'no-dev-to-prod': '7 e7 i7 d7 1',
    'no-telnet': '6 e0 i6 d6 1',
    'crm-to-app': '0 e0 i0 d0 0',
    ping: '4 e4 i4 d4 1',
  });
  const web = r.rules.find((x) => x.id === 'web-in')!;
  assert.equal(web.first, T);
  assert.equal(web.last, T + H + 60_000);
  assert.deepEqual(web.loc && { file: web.loc.file, line: web.loc.line }, { file: 'small.yaml', line: 17 });
  assert.equal(web.ruleset, 'shop');
  assert.deepEqual(r.rules.filter((x) => x.hits === 0).map((x) => x.id), ['crm-to-app']);
  assert.equal(r.rules.find((x) => x.id === 'crm-to-app')!.first, undefined);
});

test('the gate: blocked first, potentially blocked only when asked, rejected flows never', () => {
  const r = replay(small.ir, edges, { ends: new Attributor(small.ir) });
  assert.equal(gate(r.totals, 'potentially-blocked'), 'blocked');
  assert.equal(gate(r.totals, 'blocked'), 'blocked');
  assert.equal(gate(r.totals, 'never'), 'pass');
  const pb = replay(small.ir, edges.slice(6, 9), { ends: new Attributor(small.ir) });
  assert.equal(gate(pb.totals, 'potentially-blocked'), 'potentially-blocked');
  assert.equal(gate(pb.totals, 'blocked'), 'pass');
  // The unknown address's flows are all rejected: blocked by the policy, but not legitimate.
  const rejected = replay(small.ir, [edges[9], edges[0]], { ends: new Attributor(small.ir) });
  assert.equal(rejected.totals.rejected, 2);
  assert.equal(rejected.totals.blocked, 0);
  assert.equal(rejected.blockedByDefault.length, 0);
  assert.equal(rejected.rejected.length, 1);
  assert.equal(gate(rejected.totals, 'potentially-blocked'), 'pass');
});

test('order of the edges does not matter; other label keys group differently; progress is told', () => {
  const a = replay(small.ir, edges, { ends: new Attributor(small.ir) });
  const rng = new Rng(5);
  const shuffled = [...edges];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
  }
  assert.deepEqual(replay(small.ir, shuffled, { ends: new Attributor(small.ir) }), a);
  const byRole = replay(small.ir, edges, { ends: new Attributor(small.ir), by: ['role'] });
  assert.equal(byRole.by, 'role');
  assert.deepEqual(byRole.groups.filter((g) => g.kind === 'workloads').map((g) => g.name), ['role=app', 'role=db', 'role=web']);
  assert.deepEqual(byRole.totals, a.totals);
  const told: number[] = [];
  replay(small.ir, edges, { ends: new Attributor(small.ir), onProgress: (k) => told.push(k), progressEvery: 5 });
  assert.deepEqual(told, [5, 10]);
  const empty = replay(small.ir, [], { ends: new Attributor(small.ir) });
  assert.deepEqual(empty.totals, c({}));
  assert.equal(empty.first, undefined);
  assert.equal(empty.rules.every((x) => x.hits === 0), true);
});

// ---------------------------------------------------------------- against the reference

const internal: Prefix[] = INTERNAL_RANGES.map((s) => (parsePrefix(s) as { prefix: Prefix }).prefix);
function isInternal(a: Addr): boolean {
  return internal.some((p) => {
    if (typeof p.addr !== typeof a) return false;
    const [lo, hi] = prefixRange(p);
    return lo <= a && a <= hi;
  });
}

/** A managed end's own first matching rule in tier order, read off the model (whatever the end's mode). */
function sideRule(rules: readonly Rule[], f: Flow, sw: Workload | undefined, dw: Workload | undefined): Rule | undefined {
  const matches = (r: Rule) => r.conns.has(f.proto, f.port) && r.from.some((p) => peerHolds(p, r, f.src, sw)) && r.to.some((p) => peerHolds(p, r, f.dst, dw));
  return rules.find((r) => r.tier === 'override' && matches(r)) ?? rules.find((r) => r.tier === 'deny' && matches(r)) ?? rules.find((r) => r.tier === 'allow' && matches(r));
}

for (const seed of [3, 8]) {
  test(`agrees with the reference evaluator, groups and rule hits computed from the model (seed ${seed})`, () => {
    const doc = generateEstate({ seed, workloads: 300, rules: 90 });
    const compiled = policyFromDoc(doc);
    assert.equal(compiled.diagnostics.errorCount, 0);
    const policy = compiled.policy;
    const naive = new NaiveEvaluator(policy);
    const rng = new Rng(seed * 31);
    const input: ReplayInputEdge[] = generateFlows(doc, { seed: seed * 7919, count: 1500 }).map((g, i) => {
      const f = flowFromGenerated(g);
      const flows = 1 + rng.int(20);
      const rejected = rng.next() < 0.1 ? rng.int(flows + 1) : 0;
      const icmpUnknown = (f.proto === 1 || f.proto === 58) && rng.next() < 0.3;
      return { client: f.src, server: f.dst, proto: f.proto, port: icmpUnknown ? 65535 : f.port, flows, packets: flows, bytes: flows * 60, rejected, first: T + i * 1000, last: T + i * 1000 + 500 };
    });
    // Internal addresses that are no workload, to servers the sample talks to.
    for (const [i, a] of ['100.64.7.7', '10.254.254.254', 'fd00::7777'].entries()) {
      const to = input.find((x) => typeof x.server === (a.includes(':') ? 'bigint' : 'number'))!;
      input.push({ ...to, client: parseAddr(a)!, flows: 3 + i, rejected: i });
    }

    const expectTotals = zero();
    const groups = new Map<string, { total: Record<keyof ReplayCounts, number>; out: Record<keyof ReplayCounts, number>; in: Record<keyof ReplayCounts, number> }>();
    const hits = new Map<string, { hits: number; egress: number; ingress: number; decided: number }>(policy.rules.map((r) => [r.id, { hits: 0, egress: 0, ingress: 0, decided: 0 }]));
    const groupOf = (a: Addr): string => {
      const w = naive.workloadAt(a);
      if (w) {
        const parts = ['app', 'env'].filter((k) => k in w.labels).map((k) => `${k}=${w.labels[k]}`);
        return parts.length ? parts.join(',') : '(no labels)';
      }
      const lists = [...policy.iplists.values()].filter((l) => l.set.has(a)).map((l) => l.name).sort();
      if (lists.length) return `ip:${lists.join('+')}`;
      return isInternal(a) ? 'unknown' : 'external';
    };
    const add = (row: Record<keyof ReplayCounts, number>, key: keyof ReplayCounts, legit: number, rejected: number) => {
      row[key] += legit;
      row.flows += legit;
      row.rejected += rejected;
    };
    const seen = new Set<string>();
    for (const x of input) {
      const legit = x.flows - x.rejected;
      let key: keyof ReplayCounts = 'unjudged';
      if (!((x.proto === 1 || x.proto === 58) && x.port === 65535)) {
        const f: Flow = { src: x.client, dst: x.server, proto: x.proto, port: x.port };
        const d = naive.decide(f);
        key = d.verdict === 'allowed' ? 'allowed' : d.verdict === 'potentially-blocked' ? 'potentiallyBlocked' : d.verdict === 'not-evaluated' ? 'notEvaluated' : d.rule ? 'blockedByRule' : 'blockedByDefault';
        if (d.rule) hits.get(d.rule)!.decided += x.flows;
        const sw = naive.workloadAt(x.client);
        const dw = naive.workloadAt(x.server);
        const eg = sw?.managed ? sideRule(policy.rules, f, sw, dw) : undefined;
        const ing = dw?.managed ? sideRule(policy.rules, f, sw, dw) : undefined;
        if (eg) hits.get(eg.id)!.egress += x.flows;
        if (ing) hits.get(ing.id)!.ingress += x.flows;
        for (const r of new Set([eg, ing])) if (r) hits.get(r.id)!.hits += x.flows;
      }
      add(expectTotals, key, legit, x.rejected);
      if (key === 'blockedByRule' || key === 'blockedByDefault') expectTotals.blocked += legit;
      const gc = groupOf(x.client);
      const gs = groupOf(x.server);
      seen.add(gc);
      seen.add(gs);
      for (const name of [gc, gs]) if (!groups.has(name)) groups.set(name, { total: zero(), out: zero(), in: zero() });
      const rows = [groups.get(gc)!.out, groups.get(gs)!.in, groups.get(gc)!.total, ...(gc !== gs ? [groups.get(gs)!.total] : [])];
      for (const row of rows) {
        add(row, key, legit, x.rejected);
        if (key === 'blockedByRule' || key === 'blockedByDefault') row.blocked += legit;
      }
    }

    const r = replay(compiled.ir, input, { ends: new Attributor(compiled.ir) });
    assert.deepEqual(r.totals, expectTotals);
    // The sample must exercise the interesting outcomes, or the comparison proves little.
    assert.ok(r.totals.allowed > 100 && r.totals.blocked > 100 && r.totals.potentiallyBlocked > 0 && r.totals.notEvaluated > 0 && r.totals.rejected > 0 && r.totals.unjudged > 0, JSON.stringify(r.totals));
    assert.deepEqual(new Set(r.groups.map((g) => g.name)), seen);
    for (const g of r.groups) assert.deepEqual({ total: g.total, out: g.out, in: g.in }, groups.get(g.name), g.name);
    assert.ok(r.groups.some((g) => g.kind === 'iplist') && r.groups.some((g) => g.kind === 'unknown'), `addresses that are no workload were replayed: ${r.groups.map((g) => g.name).join(' ')}`);
    for (const rule of r.rules) assert.deepEqual({ hits: rule.hits, egress: rule.egress, ingress: rule.ingress, decided: rule.decided }, hits.get(rule.id), rule.id);
    assert.ok(r.rules.some((x) => x.hits === 0) && r.rules.some((x) => x.hits > 0));
    // The listed edges hold exactly the flows counted.
    const sum = (l: ReplayReport['blockedByRule']) => l.reduce((s, f) => s + f.flows, 0);
    assert.equal(sum(r.blockedByRule), r.totals.blockedByRule);
    assert.equal(sum(r.blockedByDefault), r.totals.blockedByDefault);
    assert.equal(sum(r.potentiallyBlocked), r.totals.potentiallyBlocked);
    assert.equal(sum(r.rejected), r.totals.rejected);
    for (const f of r.blockedByRule) assert.ok(f.rule !== null && f.tier !== 'default');
    for (const f of r.blockedByDefault) assert.ok(f.rule === null && f.tier === 'default');
  });
}
