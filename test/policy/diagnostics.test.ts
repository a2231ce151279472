/**
 * Golden files for diagnostics: each folder in test/fixtures/diag is a broken
 * policy; `expected.txt` is what `bulkhead validate` prints for it. Run with
 * UPDATE_GOLDEN=1 to rewrite them; a mismatch writes `expected.txt.actual`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { relative } from 'node:path';
import { main } from '../../src/cli/main.js';
import { checkGolden } from '../helpers/golden.js';

const root = fileURLToPath(new URL('../fixtures/diag/', import.meta.url));

for (const name of readdirSync(root).sort()) {
  test(`diagnostics golden: ${name}`, async () => {
    const out: string[] = [];
    const dir = relative(process.cwd(), root + name);
    const code = await main(['node', 'bulkhead', 'validate', dir, '--now', '2026-11-23T00:00:00Z'], { out: (s) => out.push(s), err: (s) => out.push(s), color: false });
    assert.equal(code, 1, 'a broken policy exits 1');
    checkGolden(`${root}${name}/expected.txt`, out.join('\n') + '\n');
  });
}

test('validate --output json lists every diagnostic with code, place and help', async () => {
  const out: string[] = [];
  const dir = relative(process.cwd(), root + 'everything');
  const code = await main(['node', 'bulkhead', 'validate', dir, '--output', 'json', '--now', '2026-11-23T00:00:00Z'], { out: (s) => out.push(s), err: () => {}, color: false });
  assert.equal(code, 1);
  const r = JSON.parse(out.join('\n')) as { ok: boolean; errors: number; diagnostics: { code: string; file: string | null; line: number | null; column: number | null; help: string | null }[] };
  assert.equal(r.ok, false);
  assert.ok(r.errors >= 20, `expected many errors, got ${r.errors}`);
  const codes = new Set(r.diagnostics.map((d) => d.code));
  for (const c of ['BH002', 'BH005', 'BH101', 'BH102', 'BH201', 'BH301', 'BH401', 'BH402', 'BH403', 'BH501', 'BH601', 'BH602', 'BH701', 'BH702', 'BH703', 'BH801']) assert.ok(codes.has(c), `diagnostic ${c} is reported`);
  for (const d of r.diagnostics) {
    assert.ok(d.file, 'every diagnostic names its file');
    assert.ok(d.line && d.line > 0 && d.column && d.column > 0, `every diagnostic has a line and column: ${JSON.stringify(d)}`);
  }
});
