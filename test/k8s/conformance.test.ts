/**
 * np-guard's connectivity cases (shared/conformance/k8s-netpol), used as they
 * are: every case's manifests through `bulkhead k8s connlist`'s reader and
 * analyzer, compared byte for byte with the expected report; then the eval
 * rows. The summary line states how many pass.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { readManifestDir } from '../../src/cli/k8s.js';
import { analyzeManifests, connlistText, evalConnection, type K8sProtocol } from '../../src/k8s/index.js';

/** The shared data sits beside the repository: <repo>/../shared. */
const ROOT = fileURLToPath(new URL('../../../shared/conformance/k8s-netpol/', import.meta.url));
const CASES = join(ROOT, 'cases');

interface EvalRow {
  case: string;
  src: string;
  dst: string;
  protocol: K8sProtocol;
  port: number;
  allowed: boolean;
  srcPeer: string;
  dstPeer: string;
}

const names = existsSync(CASES) ? readdirSync(CASES).sort() : [];
let passed = 0;
let evalPassed = 0;
const failed: string[] = [];
const rows: EvalRow[] = existsSync(join(ROOT, 'eval-cases.json')) ? (JSON.parse(readFileSync(join(ROOT, 'eval-cases.json'), 'utf8')) as EvalRow[]) : [];

test('the conformance data is there', () => {
  assert.ok(names.length > 0, `no cases under ${CASES}`);
  assert.equal(names.length, 66);
});

for (const name of names) {
  test(`connlist ${name}`, () => {
    const dir = join(CASES, name, 'input');
    // Paths relative to the case input, as the CLI shows them when run from there.
    const files = readManifestDir(dir, dir);
    const expected = readFileSync(join(CASES, name, 'expected.txt'), 'utf8');
    const r = connlistText(files);
    assert.deepEqual(r.diagnostics.items.filter((d) => d.severity === 'error'), [], 'the manifests read without errors');
    if (r.text === expected) passed++;
    else failed.push(name);
    assert.equal(r.text, expected);
  });
}

for (const row of rows) {
  test(`eval ${row.case}: ${row.src} -> ${row.dst} ${row.protocol} ${row.port}`, () => {
    const dir = join(CASES, row.case, 'input');
    const a = analyzeManifests(readManifestDir(dir, dir));
    const got = evalConnection(a, row.src, row.dst, row.protocol, row.port);
    const line = connlistText(readManifestDir(dir, dir))
      .text.split('\n')
      .find((l) => l.startsWith(`${row.srcPeer} => ${row.dstPeer} : `));
    assert.equal(got, row.allowed);
    if (row.allowed) assert.ok(line, 'the report has a line for the pair');
    evalPassed++;
  });
}

after(() => {
  console.log(`k8s-netpol conformance: ${passed}/${names.length} connlist cases pass, ${evalPassed}/${rows.length} eval rows pass${failed.length > 0 ? `; failing: ${failed.join(', ')}` : ''}`);
});
