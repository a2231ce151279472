/** `bulkhead diff`: known policy pairs, with the rules behind each change. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diffPolicies, type DiffEntry } from '../../src/analysis/diff.js';
import { labelGrouping } from '../../src/analysis/matrix.js';
import { checkGolden } from '../helpers/golden.js';
import { policyFromYaml } from '../helpers/policy.js';
import { bulkhead } from './cli.js';
import { policyDir, SMALL, SMALL_NEXT } from './small.js';

const NOW = '2026-11-23T00:00:00Z';

function line(e: DiffEntry): string {
  const change = e.kind === 'changed' ? `+${e.added} -${e.removed}` : e.kind === 'added' ? `${e.after}` : `${e.before}`;
  return `${e.kind} ${e.from} -> ${e.to}: ${change} | before [${e.rulesBefore}] after [${e.rulesAfter}]${e.deniesAfter.length > 0 ? ` denied after [${e.deniesAfter}]` : ''}`;
}

test('diff: identical policies have no changes', () => {
  const a = policyFromYaml(SMALL);
  const b = policyFromYaml(SMALL);
  const d = diffPolicies(a.ir, b.ir);
  assert.deepEqual(d.entries, []);
  assert.equal(d.pairsBefore, d.pairsAfter);
  assert.ok(d.pairsBefore > 10);
});

test('diff: a removed rule, a widened service, a new rule and a new deny', () => {
  const a = policyFromYaml(SMALL);
  const b = policyFromYaml(SMALL_NEXT);
  assert.equal(b.diagnostics.errorCount, 0, JSON.stringify(b.diagnostics.items));
  const d = diffPolicies(a.ir, b.ir, { grouping: labelGrouping(['role', 'app', 'env']) });
  assert.deepEqual(d.entries.map(line), [
    'removed role=app,app=shop,env=prod -> role=db,app=shop,env=prod: tcp/5432 | before [app-db] after []',
    'removed role=jump,app=infra,env=prod -> role=app,app=shop,env=dev: tcp/22 | before [jump-ssh] after [] denied after [no-jump-dev]',
    'removed role=jump,app=infra,env=prod -> role=web,app=shop,env=dev: tcp/22 | before [jump-ssh] after [] denied after [no-jump-dev]',
    'added role=lb,app=edge,env=prod -> role=app,app=shop,env=dev: tcp/8443 | before [] after [lb-app]',
    'added role=lb,app=edge,env=prod -> role=app,app=shop,env=prod: tcp/8443 | before [] after [lb-app]',
    'changed role=web,app=shop,env=dev -> role=app,app=shop,env=dev: +tcp/8443 -none | before [web-app] after [web-app]',
    'changed role=web,app=shop,env=prod -> role=app,app=shop,env=dev: +tcp/8443 -none | before [web-app] after [web-app]',
    'changed role=web,app=shop,env=prod -> role=app,app=shop,env=prod: +tcp/8443 -none | before [web-app] after [web-app]',
  ]);
  assert.deepEqual([d.added, d.removed, d.changed], [2, 3, 3]);
  // The other way round, added and removed swap.
  const back = diffPolicies(b.ir, a.ir, { grouping: labelGrouping(['role', 'app', 'env']) });
  assert.deepEqual([back.added, back.removed, back.changed], [3, 2, 3]);
});

test('diff: by default, label sets; a workload a rule names is keyed by its name too', () => {
  const named = SMALL.replace(`      - { id: jump-ssh,`, `      - { id: web1-db, from: [{ workload: web-1 }], to: ["role == 'db'"], services: ["5432/tcp"] }\n      - { id: jump-ssh,`);
  const d = diffPolicies(policyFromYaml(SMALL).ir, policyFromYaml(named).ir);
  assert.deepEqual(d.entries.map(line), ['added app=shop,env=prod,role=web#web-1 -> app=shop,compliance=pci,env=prod,role=db: tcp/5432 | before [] after [web1-db]']);
});

test('diff: a mode change shows only as deployed', () => {
  const enforce = SMALL.replace(/, mode: test \}/g, ' }');
  assert.deepEqual(diffPolicies(policyFromYaml(SMALL).ir, policyFromYaml(enforce).ir).entries, []);
  const d = diffPolicies(policyFromYaml(SMALL).ir, policyFromYaml(enforce).ir, { deployed: true, grouping: labelGrouping(['role', 'env']) });
  assert.ok(d.entries.length > 0);
  assert.ok(d.entries.every((e) => e.kind !== 'added'), 'enforcing takes connectivity away, never adds');
  const dev = d.entries.find((e) => e.from === 'role=web,env=dev' && e.to === 'role=app,env=dev')!;
  assert.equal(`${dev.before} -> ${dev.after}`, 'any -> tcp/8080');
});

test('diff: the command, on the small shop and on an edited copy of the sample estate', async () => {
  const a = policyDir(SMALL, 'before');
  const b = policyDir(SMALL_NEXT, 'after');
  const r = await bulkhead('diff', a, b, '--by', 'role,env');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^- role=app,env=prod -> role=db,env=prod {2}tcp\/5432\n {4}before: app-db$/m);
  assert.match(r.out, /^\+ role=lb,env=prod -> role=app,env=prod {2}tcp\/8443\n {4}after: lb-app$/m);
  assert.match(r.out, /^- role=jump,env=prod -> role=web,env=dev {2}tcp\/22\n {4}before: jump-ssh; denied after by: no-jump-dev$/m);
  assert.match(r.err, /^2 added, 3 removed, 3 changed pairs of groups \(by role,env\) \(14 reachable pairs before, 13 after\), as enforced$/);
  const j = JSON.parse((await bulkhead('diff', a, b, '--output', 'json', '--port', '8443/tcp')).out);
  assert.equal(j.ports, 'tcp/8443');
  assert.deepEqual(
    j.changes.map((c: { kind: string; to: string }) => `${c.kind} ${c.to}`),
    ['added app=shop,env=dev,role=app', 'added app=shop,env=prod,role=app', 'added app=shop,env=dev,role=app', 'added app=shop,env=dev,role=app', 'added app=shop,env=prod,role=app'],
  );

  // The sample estate: a tier-skipping rule, TLS to the app tier, the shop's cache rule removed.
  const root = mkdtempSync(join(tmpdir(), 'bulkhead-diff-'));
  const next = join(root, 'estate-next');
  cpSync('examples/estate/policy', next, { recursive: true });
  const shop = join(next, 'rulesets', 'shop.yaml');
  const text = readFileSync(shop, 'utf8')
    .replace('        services: [http-alt]\n', '        services: [http-alt, app-tls]\n      - id: shop-web-db\n        from: ["role == \'web\' && env == \'prod\'"]\n        to: ["role == \'db\'"]\n        services: [postgres]\n')
    .replace(/ {6}- id: shop-app-cache\n(?: {8}.*\n){3}/, '');
  assert.notEqual(text, readFileSync(shop, 'utf8'));
  writeFileSync(shop, text);
  const e = await bulkhead('diff', 'examples/estate/policy', next, '--now', NOW, '--by', 'role,app,env', '--port', 'tcp,udp', '--output', 'markdown');
  assert.equal(e.code, 0, e.err);
  checkGolden('test/fixtures/analysis/diff-estate.md', e.out.replaceAll(next, 'estate-next') + '\n');
  assert.equal((await bulkhead('diff', 'examples/estate/policy', policyDir(SMALL.replace('role: db,', 'role: dbx,')))).code, 1);
});
