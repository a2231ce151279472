/** The audit log: every mutating call leaves a hash-chained entry; editing, deleting or cutting rows in the SQLite file shows. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { canonicalJson } from '../../src/server/audit.js';
import { client, smallDoc, testServer } from './helpers.js';

test('canonical JSON sorts keys at every level', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: 0 }], c: null } }), '{"a":{"c":null,"d":[2,{"e":0,"f":1}]},"b":1}');
});

test('audit: the chain holds; an edited, a deleted and a cut-off row are each detected', async (t) => {
  const s = await testServer();
  t.after(() => s.stop());
  const admin = client(s.url, s.adminToken);
  await admin('PUT', '/api/v1/draft', smallDoc());
  await admin('POST', '/api/v1/versions', { message: 'v1' });
  await admin('POST', '/api/v1/tokens', { name: 'carol', role: 'viewer' });
  await admin('POST', '/api/v1/agents', { workload: 'shop-web-1' });
  await admin('PUT', '/api/v1/draft/modes', []);
  const entries = (await admin('GET', '/api/v1/audit')).body.entries;
  assert.deepEqual(
    entries.map((e: { action: string }) => e.action).reverse(),
    ['token.bootstrap', 'draft.replace', 'version.provision', 'token.create', 'agent.create', 'draft.section'],
  );
  for (let i = 0; i + 1 < entries.length; i++) assert.equal(entries[i].prev, entries[i + 1].hash);
  const ok = (await admin('GET', '/api/v1/audit/verify')).body;
  assert.equal(ok.ok, true);
  assert.equal(ok.entries, 6);

  // Tamper with the file from outside, as someone with write access to it would.
  const file = new Database(join(s.dir, 'state.db'));
  t.after(() => file.close());
  const original = file.prepare('SELECT detail FROM audit WHERE seq = 3').get() as { detail: string };
  file.prepare('UPDATE audit SET detail = ? WHERE seq = 3').run(original.detail.replace('v1', 'v1 (reviewed)'));
  let v = (await admin('GET', '/api/v1/audit/verify')).body;
  assert.equal(v.ok, false);
  assert.equal(v.brokenAt, 3);
  assert.match(v.reason, /changed/);
  file.prepare('UPDATE audit SET detail = ? WHERE seq = 3').run(original.detail);
  assert.equal((await admin('GET', '/api/v1/audit/verify')).body.ok, true);

  // Recomputing the edited row's own hash does not help: the next row points at the old one.
  const row = file.prepare('SELECT * FROM audit WHERE seq = 2').get() as Record<string, unknown>;
  file.prepare('UPDATE audit SET actor = ? WHERE seq = 2').run('mallory');
  v = (await admin('GET', '/api/v1/audit/verify')).body;
  assert.equal(v.brokenAt, 2);
  file.prepare('UPDATE audit SET actor = ? WHERE seq = 2').run(row.actor);

  // A deleted row in the middle.
  const r4 = file.prepare('SELECT * FROM audit WHERE seq = 4').get() as Record<string, unknown>;
  file.prepare('DELETE FROM audit WHERE seq = 4').run();
  v = (await admin('GET', '/api/v1/audit/verify')).body;
  assert.equal(v.ok, false);
  assert.equal(v.brokenAt, 4);
  file.prepare('INSERT INTO audit (seq, at, actor, role, action, target, detail, prev, hash) VALUES (@seq, @at, @actor, @role, @action, @target, @detail, @prev, @hash)').run(r4);
  assert.equal((await admin('GET', '/api/v1/audit/verify')).body.ok, true);

  // The last rows cut off (a shorter, self-consistent chain): caught against the head.
  file.prepare('DELETE FROM audit WHERE seq >= 5').run();
  v = (await admin('GET', '/api/v1/audit/verify')).body;
  assert.equal(v.ok, false);
  assert.equal(v.brokenAt, 5);
  assert.match(v.reason, /removed/);
  // The weekly report says so too.
  const report = (await admin('GET', '/api/v1/reports/weekly')).body;
  assert.equal(report.audit.ok, false);
});

test('audit: the chain and its head survive a restart', async (t) => {
  const s = await testServer();
  const admin = client(s.url, s.adminToken);
  await admin('PUT', '/api/v1/draft', smallDoc());
  const state = join(s.dir, 'state.db');
  await s.close();
  const { startServer } = await import('../../src/server/index.js');
  const s2 = await startServer({ state, host: '127.0.0.1', port: 0 });
  t.after(async () => {
    await s2.close();
    (await import('node:fs')).rmSync(s.dir, { recursive: true, force: true });
  });
  assert.equal(s2.adminToken, s.adminToken, 'the bootstrap token is made once');
  const a2 = client(s2.url, s2.adminToken);
  await a2('POST', '/api/v1/versions', { message: 'after restart' });
  const v = (await a2('GET', '/api/v1/audit/verify')).body;
  assert.equal(v.ok, true);
  assert.equal(v.entries, 3);
  assert.equal((await a2('GET', '/api/v1/versions')).body.active, 1);
});
