/** The command line: exit codes, text and JSON output, usage errors, help. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli.js';

const ESTATE = 'examples/estate/policy';
const NOW = '2026-11-23T00:00:00Z';

test('validate: the sample estate is clean', async () => {
  const r = await cli('validate', ESTATE, '--now', NOW);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /policy is valid: 0 errors, 0 warnings; 149 workloads/);
});

test('validate --output json reports counts', async () => {
  const r = await cli('validate', ESTATE, '--now', NOW, '--output', 'json');
  assert.equal(r.code, 0);
  const j = JSON.parse(r.out);
  assert.equal(j.ok, true);
  assert.equal(j.stats.workloads, 149);
  assert.ok(j.stats.rules > 50);
});

test('validate --strict fails on warnings (an override expired by --now)', async () => {
  const plain = await cli('validate', ESTATE, '--now', '2027-07-01T00:00:00Z');
  assert.equal(plain.code, 0);
  assert.match(plain.err, /BH701/);
  const strict = await cli('validate', ESTATE, '--now', '2027-07-01T00:00:00Z', '--strict');
  assert.equal(strict.code, 1);
});

test('eval: allowed exits 0 and names the rule and its place', async () => {
  const r = await cli('eval', ESTATE, '--from', 'shop-prod-web-1', '--to', 'shop-prod-app-1', '--port', '8080/tcp', '--now', NOW);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^allowed: .*\(shop-prod-web-1\) -> .*\(shop-prod-app-1\) on 8080\/tcp/);
  assert.match(r.out, /decided by the destination's ingress: allow rule `shop-web-app` \(examples\/estate\/policy\/rulesets\/shop\.yaml:\d+:\d+\)/);
});

test('eval: blocked exits 3, potentially blocked exits 4', async () => {
  const blocked = await cli('eval', ESTATE, '--from', 'shop-dev-app-1', '--to', 'shop-prod-db-1', '--port', '5432/tcp', '--now', NOW);
  assert.equal(blocked.code, 3);
  assert.match(blocked.out, /^blocked:/);
  const potential = await cli('eval', ESTATE, '--from', 'crm-prod-web-1', '--to', 'crm-prod-db-1', '--port', '3306/tcp', '--now', NOW);
  assert.equal(potential.code, 4);
  assert.match(potential.out, /^potentially-blocked:/);
});

test('eval --output json carries the explanation', async () => {
  const r = await cli('eval', ESTATE, '--from', 'shop-dev-app-1', '--to', 'shop-prod-db-1', '--port', '5432/tcp', '--now', NOW, '--output', 'json');
  const j = JSON.parse(r.out);
  assert.equal(j.verdict, 'blocked');
  assert.equal(j.rule, 'env-nonprod-to-prod');
  assert.equal(j.tier, 'deny');
  assert.ok(j.ruleLocation.line > 0);
  assert.equal(j.src.workload, 'shop-dev-app-1');
});

test('eval: usage errors exit 2 with a clear message', async () => {
  const badName = await cli('eval', ESTATE, '--from', 'shop-prod-web-9x', '--to', 'shop-prod-app-1', '--port', '8080/tcp');
  assert.equal(badName.code, 2);
  assert.match(badName.err, /--from `shop-prod-web-9x` is neither an address nor a workload; did you mean `shop-prod-web-1`\?/);
  const badPort = await cli('eval', ESTATE, '--from', 'shop-prod-web-1', '--to', 'shop-prod-app-1', '--port', '8080');
  assert.equal(badPort.code, 2);
  assert.match(badPort.err, /invalid --port `8080`/);
  const missing = await cli('eval', ESTATE, '--from', 'shop-prod-web-1');
  assert.equal(missing.code, 2);
  const nodir = await cli('validate', 'no/such/dir');
  assert.equal(nodir.code, 2);
  assert.match(nodir.err, /cannot read policy `no\/such\/dir`/);
});

test('eval refuses a policy with errors', async () => {
  const r = await cli('eval', 'test/fixtures/diag/everything', '--from', '10.0.0.1', '--to', '10.0.0.2', '--port', '80/tcp');
  assert.equal(r.code, 1);
  assert.match(r.err, /cannot evaluate: the policy has problems/);
});

test('--help teaches: commands, examples and exit codes', async () => {
  const r = await cli('--help');
  assert.equal(r.code, 0);
  for (const s of ['validate', 'eval', 'demo', 'generate', 'Exit codes:', 'potentially blocked']) assert.ok(r.out.includes(s), s);
  const e = await cli('eval', '--help');
  assert.match(e.out, /Examples:/);
});

test('demo runs the loop on the bundled estate and writes its outputs', async () => {
  const out = mkdtempSync(join(tmpdir(), 'bulkhead-demo-'));
  try {
    const r = await cli('demo', '--out', out);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /25 as expected, 0 not/);
    for (const f of ['validate.json', 'decisions.json', 'report.md']) assert.ok(existsSync(join(out, f)), f);
    const decisions = JSON.parse(readFileSync(join(out, 'decisions.json'), 'utf8')) as unknown[];
    assert.equal(decisions.length, 25);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('demo fails when an expectation does not hold', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-demo-'));
  try {
    const flows = join(dir, 'flows.yaml');
    writeFileSync(flows, '- { note: wrong on purpose, from: shop-prod-web-1, to: shop-prod-app-1, port: 8080/tcp, expect: blocked }\n');
    const r = await cli('demo', '--estate', ESTATE, '--flows', flows, '--out', join(dir, 'out'), '--now', NOW);
    assert.equal(r.code, 1);
    assert.match(r.out, /MISMATCH/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('generate writes an estate that validates', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-gen-'));
  try {
    const g = await cli('generate', '--out', dir, '--workloads', '500', '--rules', '60', '--seed', '3');
    assert.equal(g.code, 0, g.err);
    const v = await cli('validate', dir, '--now', NOW);
    assert.equal(v.code, 0, v.err);
    assert.match(v.err, /500 workloads/);
    const bad = await cli('generate', '--out', dir, '--workloads', 'many');
    assert.equal(bad.code, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('inventory from JSON and CSV loads beside YAML', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-inv-'));
  try {
    mkdirSync(join(dir, 'inv'));
    writeFileSync(join(dir, 'policy.yaml'), [
      'taxonomy: { role: [web, db], env: [prod] }',
      'inventory: [inv/a.json, inv/b.csv]',
      'rulesets:',
      '  - name: r',
      '    rules:',
      '      - { id: web-db, from: ["role == \'web\'"], to: ["role == \'db\'"], services: ["5432/tcp"] }',
      '',
    ].join('\n'));
    writeFileSync(join(dir, 'inv/a.json'), JSON.stringify({ workloads: [{ name: 'web1', addresses: ['10.0.0.1'], labels: { role: 'web', env: 'prod' } }] }));
    writeFileSync(join(dir, 'inv/b.csv'), 'name,addresses,managed,role,env\ndb1,10.0.0.2 fd00::2,true,db,prod\n');
    const r = await cli('eval', dir, '--from', 'web1', '--to', '10.0.0.2', '--port', '5432/tcp');
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, /^allowed: 10\.0\.0\.1 \(web1\) -> 10\.0\.0\.2 \(db1\)/);
    const v = await cli('eval', dir, '--from', '10.0.0.1', '--to', 'db1', '--port', '5432/tcp', '--output', 'json');
    assert.equal(JSON.parse(v.out).dst.workload, 'db1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a reader that goes away (| head) ends the CLI quietly, not with an EPIPE crash', async () => {
  const { spawnSync } = await import('node:child_process');
  const c = JSON.parse((await cli('compile', ESTATE, '--output', 'json', '--now', NOW)).out) as { hosts: { workload: string }[] };
  // Twenty rulesets: far more than a pipe buffers, so the writes go on after head has left.
  const names = c.hosts.slice(0, 20).map((h) => h.workload);
  const r = spawnSync('bash', ['-c', 'set -o pipefail; node --import tsx scripts/bulkhead.ts "$@" | head -c 10 >/dev/null', 'bash', 'compile', ESTATE, '--now', NOW, '-w', ...names], { encoding: 'utf8' });
  assert.doesNotMatch(r.stderr, /EPIPE|Unhandled 'error' event/);
  assert.equal(r.status, 0, r.stderr);
});
