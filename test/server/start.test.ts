/** A server that cannot start says why and exits: nothing it opened (the flow store's thread, the state) keeps the process alive. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

test('serve on a port already taken: exit code 2 and the reason, promptly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-start-'));
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const port = (busy.address() as { port: number }).port;
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/bulkhead.ts', 'serve', '--state', join(dir, 'state.db'), '--listen', `127.0.0.1:${port}`, '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null);
      }, 30_000);
      child.once('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    assert.equal(code, 2, `exit code (null: still running after 30 s)\n${err}`);
    assert.match(err, /cannot start the server: listen EADDRINUSE/);
  } finally {
    busy.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
