import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { generateGroundTruth } from '../../src/generate/ground-truth.js';
import { toYaml, toYamlFiles } from '../../src/generate/yaml.js';
import { DuckDbFlowStore } from '../../src/store/flows-duckdb.js';
import { seedGroundTruth } from '../../src/store/ground-truth.js';
import { Evaluator } from '../../src/engine/evaluate.js';
import { loadDir } from '../../src/cli/common.js';
import { cli } from '../helpers/cli.js';

/** A ground-truth estate: its inventory as a policy directory and its flows in a store. */
async function setup(t: { after: (f: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'bh-recommend-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const gt = generateGroundTruth({ seed: 7, apps: 5 });
  const policy = join(dir, 'policy');
  for (const [file, text] of Object.entries(toYamlFiles(gt.inventory))) {
    mkdirSync(dirname(join(policy, file)), { recursive: true });
    writeFileSync(join(policy, file), text);
  }
  const storePath = join(dir, 'flows.duckdb');
  const store = await DuckDbFlowStore.open(storePath);
  await seedGroundTruth(store, gt, { records: 20_000, seed: 7 });
  await store.close();
  return { dir, gt, policy, storePath };
}

test('recommend writes rules that, with the inventory, allow the legitimate traffic and not the noise', async (t) => {
  const { dir, gt, policy, storePath } = await setup(t);
  const out = join(policy, 'recommended.yaml');
  const r = await cli('recommend', '--store', storePath, '--policy', policy, '--out', out);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /wrote .*recommended\.yaml: \d+ rules in \d+ rulesets/);
  assert.match(r.err, /suspicious, no rule made/);
  const text = readFileSync(out, 'utf8');
  assert.match(text, /^# Recommended by bulkhead/);
  assert.match(text, /# \d[\d,]* flows?, .* edges?, 2026-11-1\d/);
  assert.match(text, /e\.g\. .* → .* \d+\/(tcp|udp) \(/);
  const c = loadDir(policy);
  assert.equal(c.diagnostics.errorCount, 0);
  const ev = new Evaluator(c.ir);
  for (const conv of gt.conversations) {
    const v = ev.decide({ src: conv.client, dst: conv.server, proto: conv.proto, port: conv.port }).verdict;
    if (conv.noise) {
      // Noise may share a group pair with legitimate traffic; never an admin port or an unknown address.
      if (conv.noise === 'admin' || conv.noise === 'unknown') assert.notEqual(v, 'allowed', `${conv.noise} ${conv.client} → ${conv.server}:${conv.port}`);
    } else assert.equal(v, 'allowed', `${conv.rule}`);
  }
  // Incremental from there: nothing is left to add.
  const more = await cli('recommend', '--store', storePath, '--policy', policy, '--incremental', '--output', 'json');
  assert.equal(more.code, 0, more.err);
  const j = JSON.parse(more.out);
  assert.equal(j.stats.rules, 0);
  assert.ok(j.stats.alreadyAllowed > 0);
  assert.ok(j.suspicious.length > 0);
  assert.ok(j.suspicious.every((s: { reasons: string[]; why: string }) => s.reasons.length > 0 && s.why.length > 0));
  void dir;
});

test('recommend --output json carries rules with evidence, the review list and the YAML', async (t) => {
  const { policy, storePath } = await setup(t);
  const r = await cli('recommend', '--store', storePath, '--policy', policy, '--by', 'role,app,env', '--output', 'json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.deepEqual(j.by, ['role', 'app', 'env']);
  assert.deepEqual(j.scope, ['app', 'env']);
  const rule = j.rulesets[0].rules[0];
  assert.ok(rule.evidence.flows > 0 && rule.evidence.examples.length > 0);
  assert.equal(j.check.allowed, j.check.coveredEdges);
  assert.match(j.yaml, /^# Recommended/);
  assert.ok(['cross-env', 'admin-port', 'unknown-address', 'scan'].every((k) => j.suspicious.some((s: { reasons: string[] }) => s.reasons.includes(k))));
});

test('recommend explains bad input', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bh-recommend-bad-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const empty = join(dir, 'empty.duckdb');
  (await DuckDbFlowStore.open(empty)).close();
  const gt = generateGroundTruth({ seed: 1, apps: 1 });
  const policy = join(dir, 'policy');
  mkdirSync(policy);
  writeFileSync(join(policy, 'all.yaml'), toYaml(gt.inventory));
  let r = await cli('recommend', '--store', empty, '--policy', policy);
  assert.equal(r.code, 2);
  assert.match(r.err, /holds no flows: run `bulkhead ingest` first/);
  r = await cli('recommend', '--store', empty, '--policy', policy, '--by', ',');
  assert.equal(r.code, 2);
  assert.match(r.err, /--by needs label keys/);
  r = await cli('recommend', '--store', empty, '--policy', policy, '--jump-hosts', 'role ==');
  assert.equal(r.code, 2);
  assert.match(r.err, /invalid selector for --jump-hosts `role ==`/);
  writeFileSync(join(policy, 'broken.yaml'), 'rulesets:\n  - name: x\n    rules:\n      - from: ["role == "]\n        to: [all()]\n        services: [https]\n');
  r = await cli('recommend', '--store', empty, '--policy', policy);
  assert.equal(r.code, 1);
  assert.match(r.err, /broken\.yaml:4/);
});
