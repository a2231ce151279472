/** The API by role: what admin, editor, viewer, app owner and agent may and may not do; drafts, provisioning, rollback. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { client, smallDoc, testServer } from './helpers.js';

test('roles: each role may do what docs/API.md says, and nothing more', async (t) => {
  const s = await testServer();
  t.after(() => s.stop());
  const admin = client(s.url, s.adminToken);
  const mk = async (role: string, app?: string) => (await admin('POST', '/api/v1/tokens', { name: role, role, ...(app ? { app } : {}) })).body.token as string;
  const editor = client(s.url, await mk('editor'));
  const viewer = client(s.url, await mk('viewer'));
  const owner = client(s.url, await mk('app-owner', 'shop'));
  assert.equal((await admin('PUT', '/api/v1/draft', smallDoc())).status, 200);
  assert.equal((await editor('POST', '/api/v1/versions', { message: 'v1' })).status, 201);
  const agentToken = (await admin('POST', '/api/v1/agents', { workload: 'shop-web-1' })).body.token as string;
  const agent = client(s.url, agentToken);

  // Reading: everyone but the agent.
  for (const c of [admin, editor, viewer, owner]) {
    for (const p of ['/api/v1/draft', '/api/v1/versions', '/api/v1/workloads', '/api/v1/agents', '/api/v1/violations', '/api/v1/breakglass', '/api/v1/reports/weekly']) assert.equal((await c('GET', p)).status, 200, p);
    assert.equal((await c('POST', '/api/v1/query/test', { from: 'shop-web-1', to: 'shop-app-1', port: '8080/tcp' })).status, 200);
  }
  for (const p of ['/api/v1/draft', '/api/v1/versions', '/api/v1/agents', '/api/v1/audit']) assert.equal((await agent('GET', p)).status, 403, `agent ${p}`);

  // The audit log and tokens: admin only.
  assert.equal((await admin('GET', '/api/v1/audit')).status, 200);
  for (const c of [editor, viewer, owner]) {
    assert.equal((await c('GET', '/api/v1/audit')).status, 403);
    assert.equal((await c('GET', '/api/v1/audit/verify')).status, 403);
    assert.equal((await c('POST', '/api/v1/tokens', { name: 'x', role: 'admin' })).status, 403);
    assert.equal((await c('POST', '/api/v1/agents', { workload: 'shop-web-2' })).status, 403);
    assert.equal((await c('POST', '/api/v1/alerts/sinks', { kind: 'syslog', host: '127.0.0.1' })).status, 403);
  }

  // Editing the draft: admin and editor; the viewer cannot; the app owner only its app's rulesets.
  const doc = smallDoc();
  assert.equal((await editor('PUT', '/api/v1/draft/modes', [{ scope: "app == 'shop'", mode: 'test' }])).status, 200);
  assert.equal((await viewer('PUT', '/api/v1/draft/modes', [])).status, 403);
  assert.equal((await viewer('POST', '/api/v1/versions', { message: 'no' })).status, 403);
  assert.equal((await owner('PUT', '/api/v1/draft/modes', [])).status, 403);
  assert.equal((await owner('PUT', '/api/v1/draft', doc)).status, 403);
  const shopRs = { name: 'shop', scope: "app == 'shop' && env == 'prod'", rules: [{ id: 'shop-web-in', from: ['any'], to: ["role == 'web'"], services: ['https', '80/tcp'] }] };
  const r1 = await owner('PUT', '/api/v1/draft/rulesets/shop', shopRs);
  assert.equal(r1.status, 200, r1.text);
  assert.equal((await owner('PUT', '/api/v1/draft/rulesets/crm', { name: 'crm', scope: "app == 'crm'", rules: [] })).status, 403, 'another app');
  assert.equal((await owner('PUT', '/api/v1/draft/rulesets/admin', { name: 'admin', scope: "app == 'shop'", rules: [] })).status, 403, 'overwrite a ruleset of all apps');
  assert.equal((await owner('DELETE', '/api/v1/draft/rulesets/crm')).status, 403);
  // A rule in the owner's ruleset may not open another app's ingress.
  const sneaky = { name: 'shop-extra', scope: "app == 'shop'", rules: [{ from: ["role == 'web'"], to: [{ selector: "app == 'crm'", global: true }], services: ['5432/tcp'] }] };
  assert.equal((await owner('PUT', '/api/v1/draft/rulesets/shop-extra', sneaky)).status, 403);
  assert.equal((await owner('PUT', '/api/v1/draft/rulesets/shop-extra', { ...sneaky, rules: [{ from: ["role == 'web'"], to: [{ cidr: '10.2.0.30/32' }], services: ['5432/tcp'] }] })).status, 403);
  assert.equal((await owner('PUT', '/api/v1/draft/rulesets/shop-extra', { ...sneaky, rules: [{ from: ["role == 'web'"], to: [{ workload: 'crm-db-1' }], services: ['5432/tcp'] }] })).status, 403);
  // Consumers from anywhere, into its own app: fine; deny rules: fine.
  const fine = { name: 'shop-extra', scope: "app == 'shop'", rules: [{ from: [{ selector: "app == 'crm'", global: true }], to: ["role == 'app'"], services: ['8080/tcp'] }, { action: 'deny', from: ['all()'], to: ['any'], services: ['23/tcp'] }] };
  assert.equal((await owner('PUT', '/api/v1/draft/rulesets/shop-extra', fine)).status, 200);
  assert.equal((await owner('POST', '/api/v1/versions', { message: 'shop owner provisions' })).status, 201);
  assert.equal((await owner('DELETE', '/api/v1/draft/rulesets/shop-extra')).status, 200);

  // Rollback and break-glass: editor and admin.
  assert.equal((await owner('POST', '/api/v1/versions/1/rollback', {})).status, 403);
  assert.equal((await viewer('POST', '/api/v1/versions/1/rollback', {})).status, 403);
  assert.equal((await editor('POST', '/api/v1/versions/1/rollback', {})).status, 201);
  const bg = { from: [{ workload: 'jump-1' }], to: [{ workload: 'shop-db-1' }], services: ['5432/tcp'], reason: 'INC-42', ttlSeconds: 600 };
  assert.equal((await owner('POST', '/api/v1/breakglass', bg)).status, 403);
  assert.equal((await viewer('POST', '/api/v1/breakglass', bg)).status, 403);
  assert.equal((await editor('POST', '/api/v1/breakglass', bg)).status, 201);

  // Tokens: unknown, malformed, missing, revoked.
  assert.equal((await client(s.url, undefined)('GET', '/api/v1/draft')).status, 401);
  assert.equal((await client(s.url, 'nope')('GET', '/api/v1/draft')).status, 401);
  assert.equal((await client(s.url, 'bh_000000000000_' + '0'.repeat(64))('GET', '/api/v1/draft')).status, 401);
  const tmp = (await admin('POST', '/api/v1/tokens', { name: 'tmp', role: 'viewer' })).body;
  assert.equal((await client(s.url, tmp.token)('GET', '/api/v1/draft')).status, 200);
  assert.equal((await admin('DELETE', `/api/v1/tokens/${tmp.id}`)).status, 200);
  const gone = await client(s.url, tmp.token)('GET', '/api/v1/draft');
  assert.equal(gone.status, 401);
  assert.equal(gone.body.error.code, 'unauthorized');
  // The last admin token cannot be revoked.
  const me = (await admin('GET', '/api/v1/whoami')).body;
  assert.equal((await admin('DELETE', `/api/v1/tokens/${me.id}`)).status, 409);
  // An app owner needs an app.
  assert.equal((await admin('POST', '/api/v1/tokens', { name: 'x', role: 'app-owner' })).status, 400);
  // Denied mutations are audited.
  const denied = (await admin('GET', '/api/v1/audit?action=denied&limit=1000')).body.entries;
  assert.ok(denied.length >= 5);
});

test('provisioning: a draft with errors gets 422 with the diagnostics and the active version stays', async (t) => {
  const s = await testServer();
  t.after(() => s.stop());
  const admin = client(s.url, s.adminToken);
  assert.equal((await admin('POST', '/api/v1/versions', { message: 'empty' })).status, 201, 'an empty draft is a valid policy');
  await admin('PUT', '/api/v1/draft', smallDoc());
  const v2 = await admin('POST', '/api/v1/versions', { message: 'v2' });
  assert.equal(v2.status, 201);
  assert.equal(v2.body.version, 2);
  assert.match(v2.body.digest, /^sha256:[0-9a-f]{64}$/);
  // Shape errors are refused at once (400) and the draft stays.
  const shape = await admin('PUT', '/api/v1/draft/workloads', [{ name: 'x', addresses: 'nope', bogus: 1 }]);
  assert.equal(shape.status, 400);
  assert.ok(shape.body.error.details.some((d: { path: string }) => d.path.startsWith('/workloads/0')));
  // Semantic errors are accepted in the draft (with the diagnostics), refused at provisioning.
  const bad = smallDoc();
  (bad.rulesets as { rules: unknown[] }[])[0].rules.push({ id: 'oops', from: [{ workload: 'no-such-host' }], to: ["role == 'web'"], services: ['https'] });
  (bad.workloads as unknown[]).push({ name: 'dup', addresses: ['10.1.0.10'], labels: { role: 'web', app: 'shop', env: 'prod' } });
  const put = await admin('PUT', '/api/v1/draft', bad);
  assert.equal(put.status, 200);
  assert.ok(put.body.errors >= 2);
  const rev = put.body.revision;
  const r = await admin('POST', '/api/v1/versions', { message: 'broken' });
  assert.equal(r.status, 422);
  assert.equal(r.body.error.code, 'policy-errors');
  const codes = r.body.error.details.map((d: { code: string }) => d.code).sort();
  assert.deepEqual(codes, ['BH301', 'BH403']);
  const unresolved = r.body.error.details.find((d: { code: string }) => d.code === 'BH301');
  assert.equal(unresolved.path, '/rulesets/0/rules/3/from/0');
  const versions = (await admin('GET', '/api/v1/versions')).body;
  assert.equal(versions.active, 2);
  assert.equal(versions.versions.length, 2);
  // Provisioning a revision that is not the draft's: 412.
  assert.equal((await admin('POST', '/api/v1/versions', { message: 'x', revision: rev - 1 })).status, 412);
  // If-Match guards edits.
  assert.equal((await admin('PUT', '/api/v1/draft', smallDoc(), { 'if-match': `"${rev - 1}"` })).status, 412);
  assert.equal((await admin('PUT', '/api/v1/draft', smallDoc(), { 'if-match': `"${rev}"` })).status, 200);
  const diag = (await admin('GET', '/api/v1/draft/diagnostics')).body;
  assert.equal(diag.ok, true);
  // Inventory files cannot be read by the server.
  assert.equal((await admin('PUT', '/api/v1/draft/inventory', ['hosts.csv'])).status, 400);
  assert.equal((await admin('GET', '/api/v1/draft/nonsense')).status, 404);
});

test('versions: immutable, rollback makes a new active version with the old content', async (t) => {
  const s = await testServer();
  t.after(() => s.stop());
  const admin = client(s.url, s.adminToken);
  await admin('PUT', '/api/v1/draft', smallDoc());
  const v1 = (await admin('POST', '/api/v1/versions', { message: 'v1' })).body;
  const doc2 = smallDoc();
  (doc2.rulesets as { rules: unknown[] }[])[1].rules = [];
  await admin('PUT', '/api/v1/draft', doc2);
  const v2 = (await admin('POST', '/api/v1/versions', { message: 'v2' })).body;
  assert.notEqual(v1.digest, v2.digest);
  const test = async () => (await admin('POST', '/api/v1/query/test', { from: 'crm-web-1', to: 'crm-db-1', port: '5432/tcp' })).body.verdict;
  assert.equal(await test(), 'potentially-blocked', 'crm is in test mode and v2 has no crm rules');
  const rb = await admin('POST', '/api/v1/versions/1/rollback', { message: 'back' });
  assert.equal(rb.status, 201);
  assert.equal(rb.body.version, 3);
  assert.equal(rb.body.rollbackOf, 1);
  assert.equal(await test(), 'allowed');
  const v3 = (await admin('GET', '/api/v1/versions/3')).body;
  assert.equal(v3.digest, v1.digest);
  assert.equal(v3.active, true);
  assert.deepEqual(v3.document, (await admin('GET', '/api/v1/versions/1')).body.document);
  assert.equal((await admin('POST', '/api/v1/versions/99/rollback', {})).status, 404);
  assert.equal((await admin('GET', '/api/v1/versions/2')).body.message, 'v2');
  const audit = (await admin('GET', '/api/v1/audit?action=version.rollback')).body.entries;
  assert.equal(audit.length, 1);
  assert.equal(audit[0].detail.rollbackOf, 1);
  // Workloads of the active version, with their modes.
  const ws = (await admin('GET', '/api/v1/workloads')).body.workloads;
  assert.equal(ws.find((w: { name: string }) => w.name === 'crm-db-1').mode, 'test');
  assert.equal(ws.find((w: { name: string }) => w.name === 'partner-1').mode, null);
  // Queries on the active version.
  const reach = (await admin('POST', '/api/v1/query/reach', { by: 'app', to: "app == 'shop'", port: 'tcp' })).body;
  assert.ok(reach.pairs.some((p: { from: string; to: string }) => p.from === 'app=infra' && p.to === 'app=shop'));
  assert.equal((await admin('POST', '/api/v1/query/reach', { from: "app ==" })).status, 400);
});
