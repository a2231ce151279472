/** Golden-file checks: UPDATE_GOLDEN=1 rewrites; a mismatch leaves `<file>.actual` beside the expected file. */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

export function checkGolden(path: string, actual: string): void {
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(path)) {
    if (process.env.CI && !existsSync(path)) assert.fail(`golden file ${path} is missing`);
    writeFileSync(path, actual);
    return;
  }
  const expected = readFileSync(path, 'utf8');
  if (expected !== actual) {
    writeFileSync(path + '.actual', actual);
    assert.equal(actual, expected, `output differs from ${path} (see ${path}.actual; UPDATE_GOLDEN=1 to accept)`);
  } else if (existsSync(path + '.actual')) rmSync(path + '.actual');
}
