/** `bulkhead reach`: known answers on a small policy, golden outputs on the sample estate, usage errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Connectivity } from '../../src/analysis/connectivity.js';
import { buildUnits, GroupMatrix, labelGrouping, workloadGrouping } from '../../src/analysis/matrix.js';
import { parsePortText } from '../../src/policy/ports.js';
import { parseSelector } from '../../src/model/selector.js';
import { checkGolden } from '../helpers/golden.js';
import { policyFromYaml } from '../helpers/policy.js';
import { bulkhead } from './cli.js';
import { policyDir, SMALL } from './small.js';

const ESTATE = 'examples/estate/policy';
const NOW = '2026-11-23T00:00:00Z';
const GOLDEN = 'test/fixtures/analysis';

/** The small shop's matrix by workload, as `from -> to: ports [rules]` lines. */
function workloadLines(deployed: boolean, ports?: string): string[] {
  const c = policyFromYaml(SMALL);
  assert.equal(c.diagnostics.errorCount, 0, JSON.stringify(c.diagnostics.items));
  const p = ports === undefined ? undefined : parsePortText(ports);
  const conn = new Connectivity(c.ir, { deployed, ports: p && p.ok ? p.conns : undefined });
  const units = buildUnits(conn.places, workloadGrouping);
  const m = new GroupMatrix(conn, units);
  return [...m.cells()].map((cell) => {
    const r = conn.results.get(cell.result);
    return `${units.groups[cell.from]} -> ${units.groups[cell.to]}: ${r.conns} [${r.rules.map((k) => c.ir.rules[k].rule.id).join(' ')}]${r.open ? ' open' : ''}`;
  });
}

test('reach: the small shop, as enforced, workload by workload', () => {
  const lines = workloadLines(false);
  // Each rule gives exactly the flows it should; nothing else passes.
  assert.ok(lines.includes('app-1 -> db-1: tcp/5432 [app-db]'));
  assert.ok(lines.includes('web-1 -> app-1: tcp/8080 [web-app]'));
  assert.ok(lines.includes('web-dev -> app-dev: tcp/8080 [web-app]'));
  assert.ok(lines.includes('lb-1 -> web-dev: tcp/443 [lb-web]'), 'prod may reach dev; only dev -> prod is denied');
  assert.ok(lines.includes('ip:internet -> lb-1: tcp/443 [internet-lb]'));
  assert.ok(lines.includes('ip:vpn -> jump-1: tcp/22 [vpn-jump]'));
  for (const w of ['lb-1', 'web-1', 'web-2', 'app-1', 'db-1', 'web-dev', 'app-dev']) assert.ok(lines.includes(`jump-1 -> ${w}: tcp/22 [jump-ssh]`), w);
  assert.ok(!lines.some((l) => l.startsWith('web-dev -> app-1')), 'dev -> prod is denied');
  assert.ok(!lines.some((l) => l.startsWith('app-dev -> db-1')), 'dev -> prod is denied');
  assert.ok(!lines.some((l) => l.startsWith('web-1 -> web-2')), 'no rule between web servers');
  assert.ok(!lines.some((l) => l.startsWith('web-1 -> db-1')), 'no tier skipping');
  assert.ok(lines.includes('web-1 -> app-dev: tcp/8080 [web-app]'), 'prod may reach dev');
  // 7 from the jump host, 3 from the load balancer, 5 web -> app, 1 app -> db, 2 from IP lists.
  assert.equal(lines.length, 7 + 3 + 5 + 1 + 2, lines.join('\n'));
});

test('reach: as deployed, ends that do not enforce let everything through', () => {
  const lines = workloadLines(true);
  // Both ends in test mode: everything passes, and the rule that would allow 8080 is still named.
  assert.ok(lines.includes('web-dev -> app-dev: any [web-app] open'), lines.join('\n'));
  assert.ok(lines.includes('app-dev -> web-dev: any [] open'));
  // One end enforces: the policy decides.
  assert.ok(!lines.some((l) => l.startsWith('web-dev -> app-1')));
  assert.ok(lines.includes('web-1 -> app-1: tcp/8080 [web-app]'));
});

test('reach: a port filter cuts every rule first', () => {
  const lines = workloadLines(false, '22/tcp');
  assert.ok(lines.every((l) => l.includes('tcp/22')), lines.join('\n'));
  assert.equal(lines.filter((l) => l.startsWith('jump-1 ->')).length, 7);
});

test('reach: groups aggregate workloads, and filters by selector', () => {
  const c = policyFromYaml(SMALL);
  const conn = new Connectivity(c.ir);
  const units = buildUnits(conn.places, labelGrouping(['role', 'env']));
  const sel = parseSelector("role == 'app'");
  assert.ok(sel.ok);
  const m = new GroupMatrix(conn, units, { fromClasses: c.ir.selectClasses(sel.selector) });
  const cells = [...m.cells()].map((x) => `${units.groups[x.from]} -> ${units.groups[x.to]}: ${conn.results.get(x.result).conns}`);
  // app-dev -> db-1 is denied (dev never reaches prod); app-1 -> db-1 passes; both apps are one group per env.
  assert.deepEqual(cells, ['role=app,env=prod -> role=db,env=prod: tcp/5432']);
  const all = new GroupMatrix(conn, units);
  const web = [...all.rowCells(units.groupIndex.get('role=web,env=dev')!)].map((x) => `${units.groups[x.to]}: ${conn.results.get(x.result).conns}`);
  assert.deepEqual(web, ['role=app,env=dev: tcp/8080']);
});

test('reach: golden outputs on the sample estate', async () => {
  const cases: [string, string[]][] = [
    ['reach-app-env.txt', ['--by', 'app,env', '--port', 'tcp,udp']],
    ['reach-pci.csv', ['--by', 'workload', '--to', "compliance == 'pci'", '--port', 'tcp', '--output', 'csv']],
    ['reach-app.dot', ['--by', 'app', '--port', 'tcp', '--port', 'udp', '--output', 'dot']],
    ['reach-payments.json', ['--from', "app == 'payments'", '--output', 'json']],
    ['reach-crm-deployed.md', ['--by', 'app,env', '--from', "app == 'crm'", '--as-deployed', '--output', 'markdown']],
  ];
  for (const [file, args] of cases) {
    const r = await bulkhead('reach', ESTATE, '--now', NOW, ...args);
    assert.equal(r.code, 0, r.err);
    checkGolden(`${GOLDEN}/${file}`, r.out + '\n');
  }
});

test('reach: the table lists pairs with ports and rules, and says how many', async () => {
  const r = await bulkhead('reach', ESTATE, '--now', NOW, '--by', 'app', '--from', "app == 'shop'", '--to', "app == 'payments'");
  assert.equal(r.code, 0);
  assert.match(r.out, /^from +to +ports +rules\napp=shop +app=payments +icmp type 3 code 4, tcp\/8443, icmpv6 type 2 +payments-from-shop, pmtud$/);
  assert.match(r.err, /^1 reachable pair between 2 groups \(by app\), as enforced$/);
});

test('reach: usage errors exit 2, policy errors exit 1', async () => {
  assert.equal((await bulkhead('reach', ESTATE, '--port', '22/tpc')).code, 2);
  const bad = await bulkhead('reach', ESTATE, '--from', "role = 'web'");
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^error: invalid --from selector `role = 'web'`/);
  assert.equal((await bulkhead('reach', ESTATE, '--by', 'role;app')).code, 2);
  assert.equal((await bulkhead('reach', ESTATE, '--output', 'xml')).code, 2);
  assert.equal((await bulkhead('reach', 'no/such/dir')).code, 2);
  const broken = policyDir(SMALL.replace("role: db, app: shop", "role: dbx, app: shop"));
  const r = await bulkhead('reach', broken);
  assert.equal(r.code, 1);
  assert.match(r.err, /cannot compute reachability: the policy has problems/);
  assert.equal((await bulkhead('reach', '--help')).code, 0);
});
