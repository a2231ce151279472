/** `bulkhead blast-radius`: known paths on the small shop, the comparison of two versions, the sample estate. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSelector, type Selector } from '../../src/model/selector.js';
import { ConnSet } from '../../src/netset/connset.js';
import { blastRadius, LATERAL_DEFAULT, SENSITIVE_DEFAULT } from '../../src/analysis/blast.js';
import { Connectivity } from '../../src/analysis/connectivity.js';
import { checkGolden } from '../helpers/golden.js';
import { policyFromYaml } from '../helpers/policy.js';
import { bulkhead } from './cli.js';
import { policyDir, SMALL, SMALL_NEXT } from './small.js';

const ESTATE = 'examples/estate/policy';
const NOW = '2026-11-23T00:00:00Z';

function sel(s: string): Selector {
  const r = parseSelector(s);
  assert.ok(r.ok);
  return r.selector;
}

function radius(text: string, start: string, ports = LATERAL_DEFAULT) {
  const c = policyFromYaml(text);
  assert.equal(c.diagnostics.errorCount, 0);
  const names = c.ir.workloads.map((w) => w.name);
  const r = blastRadius(new Connectivity(c.ir, { ports }), [names.indexOf(start)], { sensitive: [sel(SENSITIVE_DEFAULT)] });
  const hops = Object.fromEntries(names.flatMap((n, i) => (r.hops[i] >= 0 ? [[n, r.hops[i]]] : [])));
  return { r, names, hops };
}

test('blast radius: a web server reaches the app tier directly and the database in two hops', () => {
  const { r, names, hops } = radius(SMALL, 'web-1');
  assert.deepEqual(hops, { 'app-1': 1, 'app-dev': 1, 'db-1': 2 });
  assert.deepEqual(r.perHop, [0, 2, 1]);
  assert.equal(r.sensitive.length, 1);
  assert.equal(r.sensitiveTotal, 1);
  const path = r.pathTo(r.sensitive[0].workload);
  assert.deepEqual(
    path.map((h) => `${h.from.workload} -> ${h.to.workload} ${h.conns} [${h.rules}]`),
    ['web-1 -> app-1 tcp/8080 [web-app]', 'app-1 -> db-1 tcp/5432 [app-db]'],
  );
  assert.equal(names[r.sensitive[0].workload], 'db-1');
});

test('blast radius: the load balancer and the jump host', () => {
  assert.deepEqual(radius(SMALL, 'lb-1').hops, { 'web-1': 1, 'web-2': 1, 'web-dev': 1, 'app-1': 2, 'app-dev': 2, 'db-1': 3 });
  const jump = radius(SMALL, 'jump-1');
  assert.equal(jump.r.reached, 7);
  assert.deepEqual(jump.r.perHop, [0, 7]);
  // A dev web server stops at dev: dev never reaches prod.
  assert.deepEqual(radius(SMALL, 'web-dev').hops, { 'app-dev': 1 });
});

test('blast radius: ICMP is left out unless asked for; addresses outside are reported, not moved through', () => {
  const pmtud = SMALL.replace('  - name: admin\n', '  - name: icmp\n    rules:\n      - { id: pmtud, from: [any], to: ["all()"], services: ["3:4/icmp"] }\n  - name: admin\n');
  assert.deepEqual(radius(pmtud, 'web-1').hops, { 'app-1': 1, 'app-dev': 1, 'db-1': 2 });
  assert.equal(radius(pmtud, 'web-1', ConnSet.ANY).r.reached, 7, 'with ICMP everything is one hop away');
  const lb = radius(SMALL, 'app-1', ConnSet.ANY);
  assert.deepEqual(lb.r.external, []);
  const out = radius(SMALL.replace('to: ["role == \'db\'"], services: ["5432/tcp"]', 'to: ["role == \'db\'", { iplist: internet }], services: ["5432/tcp"]'), 'app-1');
  assert.deepEqual(out.r.external.map((e) => `${e.label} ${e.hops} ${e.path.map((h) => `${h.from.workload}->${h.to.ip}`)}`), ['internet 1 app-1->internet']);
});

test('blast radius: --max-hops and several start workloads', () => {
  const c = policyFromYaml(SMALL);
  const names = c.ir.workloads.map((w) => w.name);
  const conn = new Connectivity(c.ir, { ports: LATERAL_DEFAULT });
  const one = blastRadius(conn, [names.indexOf('lb-1')], { sensitive: [], maxHops: 1 });
  assert.equal(one.reached, 3);
  const both = blastRadius(conn, [names.indexOf('web-1'), names.indexOf('web-2')], { sensitive: [sel("role == 'app'"), sel("role == 'db'")] });
  assert.deepEqual(
    both.sensitive.map((s) => `${names[s.workload]} rank ${s.rank} hops ${s.hops}`),
    ['app-1 rank 0 hops 1', 'app-dev rank 0 hops 1', 'db-1 rank 1 hops 2'],
  );
});

test('blast-radius --compare: how much the radius shrank', async () => {
  const a = policyDir(SMALL, 'before');
  const b = policyDir(SMALL_NEXT, 'after');
  const r = await bulkhead('blast-radius', a, 'web-1', '--compare', b);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /reaches 3 of 7 other workloads: 2 directly, 1 in 2 hops/);
  assert.match(r.out, /reachable workloads +3 -> 2, -1 \(33% smaller\)/);
  assert.match(r.out, /sensitive workloads +1 -> 0, -1 \(100% smaller\)/);
  assert.match(r.out, /no longer reachable: db-1/);
  const j = JSON.parse((await bulkhead('blast-radius', a, 'web-1', '--compare', b, '--output', 'json')).out);
  assert.deepEqual(j.compare.before, { reached: 3, sensitive: 1, external: 0 });
  assert.deepEqual(j.compare.after, { reached: 2, sensitive: 0, external: 0 });
  assert.deepEqual(j.sensitiveWorkloads[0].path.map((h: { rules: string[] }) => h.rules[0]), ['web-app', 'app-db']);
});

test('blast-radius: golden on the sample estate; a selector; usage errors', async () => {
  const r = await bulkhead('blast-radius', ESTATE, 'shop-prod-web-1', '--now', NOW, '--limit', '6');
  assert.equal(r.code, 0, r.err);
  checkGolden('test/fixtures/analysis/blast-shop-web.txt', r.out + '\n');
  const many = await bulkhead('blast-radius', ESTATE, "app == 'crm' && role == 'web' && env == 'prod'", '--now', NOW, '--sensitive', "compliance == 'pci'", '--sensitive', 'has(compliance)', '--output', 'json');
  assert.equal(many.code, 0, many.err);
  const j = JSON.parse(many.out);
  assert.equal(j.start.length, 4);
  assert.ok(j.sensitiveWorkloads.length > 0);
  // PCI first, then PHI: ranks never go down along the list.
  const ranks = j.sensitiveWorkloads.map((s: { rank: number }) => s.rank);
  assert.deepEqual(ranks, [...ranks].sort((x: number, y: number) => x - y));
  const typo = await bulkhead('blast-radius', ESTATE, 'shop-prod-web-99', '--now', NOW);
  assert.equal(typo.code, 2);
  assert.match(typo.err, /`shop-prod-web-99` is neither a workload nor a selector; did you mean `shop-prod-web-1`\?/);
  assert.equal((await bulkhead('blast-radius', ESTATE, "app == 'nothing'", '--now', NOW)).code, 2);
  assert.equal((await bulkhead('blast-radius', ESTATE, 'shop-prod-web-1', '--max-hops', '0')).code, 2);
});
