/** `bulkhead k8s connlist` and `bulkhead k8s compile`, driven through commander as `main` does. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT } from '../../src/cli/common.js';
import { cli } from '../helpers/cli.js';

const CASE = fileURLToPath(new URL('../../../shared/conformance/k8s-netpol/cases/anp_test_3_pass_traffic/', import.meta.url));
const FIXTURE = fileURLToPath(new URL('../fixtures/k8s/estate/', import.meta.url));
const SAMPLE = fileURLToPath(new URL('../../examples/estate/policy/', import.meta.url));
const NOW = ['--now', '2026-11-23T00:00:00Z'];

/** Runs the CLI as `bulkhead` does. */
const run = cli;

test('connlist prints the report exactly as np-guard does', async () => {
  const r = await run('k8s', 'connlist', join(CASE, 'input'));
  assert.equal(r.code, EXIT.ok);
  assert.equal(r.out + '\n', readFileSync(join(CASE, 'expected.txt'), 'utf8'));
});

test('connlist --output json gives the lines as data', async () => {
  const r = await run('k8s', 'connlist', join(CASE, 'input'), '--output', 'json');
  const j = JSON.parse(r.out) as { ok: boolean; connections: { src: string; dst: string; conns: string }[] };
  assert.equal(j.ok, true);
  assert.deepEqual(j.connections.find((c) => c.src === 'foo-ns-1/foo[Deployment]'), { src: 'foo-ns-1/foo[Deployment]', dst: 'bar-ns/bar[Deployment]', conns: 'TCP 1-8079,8081-65535' });
});

test('connlist refuses manifests with errors and shows where', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bh-k8s-'));
  try {
    writeFileSync(join(dir, 'np.yaml'), 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: p }\nspec:\n  podSelector: {}\n  ingress: [{ from: [{ ipBlock: { cidr: nope } }] }]\n');
    const r = await run('k8s', 'connlist', dir);
    assert.equal(r.code, EXIT.policyErrors);
    assert.match(r.err, /error\[BH401\]: invalid CIDR `nope`/);
    assert.match(r.err, /np\.yaml:6/);
    assert.equal(r.out, '');
    const missing = await run('k8s', 'connlist', join(dir, 'nothing-here'));
    assert.equal(missing.code, EXIT.usage);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('compile writes manifests, verifies them, and refuses what a target cannot express', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bh-k8s-'));
  try {
    const ok = await run('k8s', 'compile', FIXTURE, '--target', 'k8s', '--verify', '--out', join(dir, 'out', 'k8s.yaml'), ...NOW);
    assert.equal(ok.code, EXIT.ok, ok.err);
    assert.match(ok.err, /verify: \d+ checks, the compiled policy agrees with bulkhead on every pod end/);
    assert.match(readFileSync(join(dir, 'out', 'k8s.yaml'), 'utf8'), /kind: AdminNetworkPolicy/);

    const refused = await run('k8s', 'compile', SAMPLE, '--target', 'cilium', '--out', join(dir, 'cilium.yaml'), ...NOW);
    assert.equal(refused.code, EXIT.policyErrors);
    assert.match(refused.err, /error\[BH901\]: rule `pmtud`: connections `icmp type 3 code 4` cannot be expressed/);
    assert.match(refused.err, /cannot compile for cilium/);
    assert.throws(() => readFileSync(join(dir, 'cilium.yaml')), 'nothing is written');

    const json = await run('k8s', 'compile', SAMPLE, '--target', 'calico', '--output', 'json', '--log-denied', ...NOW);
    assert.equal(json.code, EXIT.ok);
    const j = JSON.parse(json.out) as { ok: boolean; artifacts: { kind: string }[] };
    assert.equal(j.ok, true);
    assert.equal(j.artifacts[0].kind, 'Tier');

    const usage = await run('k8s', 'compile', FIXTURE, '--target', 'calico', '--verify', ...NOW);
    assert.equal(usage.code, EXIT.usage);
    const noTarget = await run('k8s', 'compile', FIXTURE);
    assert.equal(noTarget.code, EXIT.usage);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('compile refuses a policy with errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bh-k8s-'));
  try {
    mkdirSync(join(dir, 'p'));
    writeFileSync(join(dir, 'p', 'w.yaml'), 'workloads:\n  - { name: a, addresses: [not-an-ip] }\n');
    const r = await run('k8s', 'compile', join(dir, 'p'), '--target', 'k8s');
    assert.equal(r.code, EXIT.policyErrors);
    assert.match(r.err, /cannot compile: the policy has problems/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('help lists the commands with examples', async () => {
  const r = await run('k8s', 'compile', '--help');
  assert.equal(r.code, EXIT.ok);
  assert.match(r.out, /Examples:\n {2}bulkhead k8s compile/);
  const c = await run('k8s', 'connlist', '--help');
  assert.match(c.out, /np-guard/);
});
