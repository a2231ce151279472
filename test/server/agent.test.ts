/** The agent protocol: registration, the long-polled ruleset with its ETag, isolation, flows, events, revocation. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HostCompiler } from '../../src/compile/host.js';
import { compileNftables } from '../../src/compile/nftables.js';
import { parsePrefix } from '../../src/netset/ip.js';
import { compileDoc } from '../../src/server/policy.js';
import { generateEstate } from '../../src/generate/index.js';
import { gunzipSync } from 'node:zlib';
import { encodeFlowBatch, FLOW_WIRE_TYPE } from '../../src/flows/wire.js';
import { parseIptablesDocument } from '../../src/compile/iptables.js';
import { client, smallDoc, testServer, until } from './helpers.js';

async function setup(t: { after: (f: () => Promise<void>) => void }, o = {}) {
  const s = await testServer(o);
  t.after(() => s.stop());
  const admin = client(s.url, s.adminToken);
  await admin('PUT', '/api/v1/draft', smallDoc());
  assert.equal((await admin('POST', '/api/v1/versions', { message: 'v1' })).status, 201);
  const mkAgent = async (workload: string) => {
    const r = (await admin('POST', '/api/v1/agents', { workload })).body;
    return { id: r.id as string, token: r.token as string, call: client(s.url, r.token) };
  };
  return { s, admin, mkAgent };
}

test('policy: the ruleset of its own workload with the control plane failsafe; ETag long poll holds, then 304', async (t) => {
  const { s, mkAgent } = await setup(t, { advertise: ['127.0.0.1', '10.99.0.5'] });
  const web = await mkAgent('shop-web-1');
  const reg = await web.call('POST', '/api/v1/agent/register', { hostname: 'web1', addresses: ['10.1.0.10'], labels: { role: 'web' }, agentVersion: '0.1.0' });
  assert.equal(reg.status, 200);
  assert.deepEqual(reg.body, { workload: 'shop-web-1', pollSeconds: 30, inPolicy: true, policyAddresses: ['10.1.0.10/32'], flowFormats: ['records', 'columns', 'binary'] });
  const p = await web.call('GET', '/api/v1/agent/policy');
  assert.equal(p.status, 200);
  // fetch asks for gzip (and inflates): the ruleset comes gzipped; asked for none, or refused with q=0, it comes plain.
  assert.equal(p.headers.get('content-encoding'), 'gzip');
  for (const ae of ['identity', 'gzip;q=0']) {
    const plain = await web.call('GET', '/api/v1/agent/policy', undefined, { 'accept-encoding': ae });
    assert.equal(plain.headers.get('content-encoding'), null, ae);
    assert.equal(plain.text, p.text, 'the same body either way');
  }
  assert.equal(p.body.workload, 'shop-web-1');
  assert.equal(p.body.version, 1);
  assert.equal(p.body.mode, 'enforce');
  assert.equal(p.body.format, 'nftables');
  assert.equal(p.headers.get('etag'), `"${p.body.etag}"`);
  assert.match(p.body.ruleset, /^# bulkhead ruleset for shop-web-1 \(mode enforce\)\n/);
  assert.match(p.body.ruleset, /ip saddr \{ 10\.99\.0\.5, 127\.0\.0\.1 \} counter accept comment "failsafe: control plane"/);
  assert.match(p.body.ruleset, /ip daddr \{ 10\.99\.0\.5, 127\.0\.0\.1 \} counter accept comment "failsafe: control plane"/);
  // Same ETag: held for `wait`, then 304 with the ETag.
  const t0 = Date.now();
  const held = await web.call('GET', '/api/v1/agent/policy?wait=1', undefined, { 'if-none-match': p.headers.get('etag')! });
  assert.equal(held.status, 304);
  assert.ok(Date.now() - t0 >= 900, 'held about a second');
  assert.equal(held.headers.get('etag'), `"${p.body.etag}"`);
  // A stale ETag: answered at once.
  const stale = await web.call('GET', '/api/v1/agent/policy?wait=30', undefined, { 'if-none-match': '"old"' });
  assert.equal(stale.status, 200);
  assert.equal((await web.call('GET', '/api/v1/agent/policy?wait=61')).status, 400);
  // A workload in test mode, and one that is unmanaged (nothing programmed).
  const crm = await mkAgent('crm-db-1');
  const pc = (await crm.call('GET', '/api/v1/agent/policy')).body;
  assert.equal(pc.mode, 'test');
  assert.match(pc.ruleset, /bh test-drop/);
  const partner = await mkAgent('partner-1');
  const pp = (await partner.call('GET', '/api/v1/agent/policy')).body;
  assert.equal(pp.mode, 'idle');
  assert.match(pp.ruleset, /delete table inet bulkhead/);
  assert.doesNotMatch(pp.ruleset, /chain/);
  void s;
});

test('long poll: wakes on provision (only the agents whose ruleset changed) and on break-glass', async (t) => {
  const { admin, mkAgent } = await setup(t);
  const web = await mkAgent('shop-web-1');
  const crm = await mkAgent('crm-web-1');
  const e1 = (await web.call('GET', '/api/v1/agent/policy')).body.etag;
  const c1 = (await crm.call('GET', '/api/v1/agent/policy')).body.etag;
  // A change to crm's rules only.
  const doc = smallDoc();
  (doc.rulesets as { name: string; rules: unknown[] }[])[1].rules.push({ id: 'crm-web-in', from: [{ cidr: '203.0.113.0/24' }], to: ["role == 'web'"], services: ['https'] });
  await admin('PUT', '/api/v1/draft', doc);
  const t0 = Date.now();
  const webPoll = web.call('GET', '/api/v1/agent/policy?wait=2', undefined, { 'if-none-match': `"${e1}"` });
  const crmPoll = crm.call('GET', '/api/v1/agent/policy?wait=20', undefined, { 'if-none-match': `"${c1}"` });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await admin('POST', '/api/v1/versions', { message: 'crm web in' })).status, 201);
  const c2 = await crmPoll;
  assert.equal(c2.status, 200);
  assert.ok(Date.now() - t0 < 1500, 'crm woke on the provision');
  assert.notEqual(c2.body.etag, c1);
  assert.equal(c2.body.version, 2);
  assert.match(c2.body.ruleset, /crm-web-in/);
  const w2 = await webPoll;
  assert.equal(w2.status, 304, 'shop-web-1 is not affected: not woken');
  // Break-glass wakes the affected agent within the poll.
  const t1 = Date.now();
  const webPoll2 = web.call('GET', '/api/v1/agent/policy?wait=20', undefined, { 'if-none-match': `"${e1}"` });
  await new Promise((r) => setTimeout(r, 100));
  const bg = await admin('POST', '/api/v1/breakglass', { from: [{ workload: 'jump-1' }], to: [{ workload: 'shop-web-1' }], services: ['3389/tcp'], reason: 'INC-7 rdp for recovery', ttlSeconds: 300 });
  assert.equal(bg.status, 201);
  const w3 = await webPoll2;
  assert.equal(w3.status, 200);
  assert.ok(Date.now() - t1 < 1500);
  assert.match(w3.body.ruleset, new RegExp(`tcp dport 3389 counter accept comment "${bg.body.id}"`));
  // Ending it early wakes it again, back to the old ruleset.
  const webPoll3 = web.call('GET', '/api/v1/agent/policy?wait=20', undefined, { 'if-none-match': `"${w3.body.etag}"` });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal((await admin('DELETE', `/api/v1/breakglass/${bg.body.id}`)).status, 200);
  const w4 = await webPoll3;
  assert.equal(w4.status, 200);
  assert.equal(w4.body.etag, e1);
  const list = (await admin('GET', '/api/v1/breakglass')).body.breakglass;
  assert.equal(list[0].state, 'ended');
});

test('break-glass expires by itself: agents are woken, the expiry is audited', async (t) => {
  const { admin, mkAgent } = await setup(t);
  const web = await mkAgent('shop-web-1');
  const e1 = (await web.call('GET', '/api/v1/agent/policy')).body.etag;
  const bg = (await admin('POST', '/api/v1/breakglass', { from: [{ workload: 'jump-1' }], to: [{ workload: 'shop-web-1' }], services: ['3389/tcp'], reason: 'INC-8 short', ttlSeconds: 1 })).body;
  const p = (await web.call('GET', '/api/v1/agent/policy', undefined, { 'if-none-match': `"${e1}"` })).body;
  assert.notEqual(p.etag, e1);
  const t0 = Date.now();
  const back = await web.call('GET', '/api/v1/agent/policy?wait=10', undefined, { 'if-none-match': `"${p.etag}"` });
  assert.equal(back.status, 200);
  assert.equal(back.body.etag, e1);
  assert.ok(Date.now() - t0 < 2500);
  assert.doesNotMatch(back.body.ruleset, /3389/);
  const list = (await admin('GET', '/api/v1/breakglass')).body.breakglass;
  assert.equal(list.find((b: { id: string }) => b.id === bg.id).state, 'expired');
  const audit = (await admin('GET', '/api/v1/audit?action=breakglass.expire')).body.entries;
  assert.equal(audit.length, 1);
  assert.equal(audit[0].actor, 'system');
  assert.equal(audit[0].target, bg.id);
  assert.equal((await admin('GET', '/api/v1/audit/verify')).body.ok, true);
  // A break-glass rule with errors is refused.
  const bad = await admin('POST', '/api/v1/breakglass', { from: [{ workload: 'nobody' }], to: ['all()'], services: ['22/tcp'], reason: 'typo', ttlSeconds: 60 });
  assert.equal(bad.status, 422);
  assert.equal(bad.body.error.details[0].code, 'BH301');
});

test('isolation: an agent fetches only its own policy and posts only its own flows', async (t) => {
  const { s, admin, mkAgent } = await setup(t);
  const web = await mkAgent('shop-web-1');
  const db = await mkAgent('shop-db-1');
  // There is no way to name another workload: the policy is the token's.
  const p = (await web.call('GET', '/api/v1/agent/policy?workload=shop-db-1')).body;
  assert.equal(p.workload, 'shop-web-1');
  const now = Date.now();
  const rec = (src: string, dst: string, extra = {}) => ({ start: now, end: now + 10, src, dst, sport: 40000, dport: 443, proto: 6, packets: 3, bytes: 300, ...extra });
  // Flows that touch its own addresses are taken; one that does not refuses the whole batch.
  assert.deepEqual((await web.call('POST', '/api/v1/agent/flows', { records: [rec('203.0.113.5', '10.1.0.10', { initiator: 'src' })] })).body, { accepted: 1 });
  const refused = await web.call('POST', '/api/v1/agent/flows', { records: [rec('203.0.113.5', '10.1.0.10'), rec('10.1.0.20', '10.1.0.30')] });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, 'not-your-flow');
  // IPv6: the db's second address.
  assert.equal((await db.call('POST', '/api/v1/agent/flows', { records: [rec('10.1.0.20', '2001:db8::30', { dport: 5432 })] })).status, 200);
  assert.equal((await web.call('POST', '/api/v1/agent/flows', { records: [rec('not-an-ip', '10.1.0.10')] })).status, 400);
  // The binary form: the same checks. Stored as the JSON forms are; a record of another workload refuses the batch.
  const binary = (records: ReturnType<typeof rec>[], type = FLOW_WIRE_TYPE) =>
    fetch(`${s.url}/api/v1/agent/flows`, { method: 'POST', headers: { authorization: `Bearer ${web.token}`, 'content-type': type }, body: encodeFlowBatch(records) });
  const bin = await binary([rec('198.51.100.9', '10.1.0.10', { initiator: 'src', verdict: 'blocked', rule: 'default' })]);
  assert.equal(bin.status, 200);
  assert.deepEqual(await bin.json(), { accepted: 1 });
  const binRefused = await binary([rec('198.51.100.9', '10.1.0.10'), rec('10.1.0.20', '10.1.0.30')]);
  assert.equal(binRefused.status, 403);
  assert.match(((await binRefused.json()) as { error: { message: string } }).error.message, /record 1 \(10\.1\.0\.20 -> 10\.1\.0\.30\)/);
  const binBad = await fetch(`${s.url}/api/v1/agent/flows`, { method: 'POST', headers: { authorization: `Bearer ${web.token}`, 'content-type': FLOW_WIRE_TYPE }, body: 'BHF1 but short' });
  assert.equal(binBad.status, 400);
  assert.equal((await binary([rec('198.51.100.9', '10.1.0.10')], 'application/octet-stream')).status, 415);
  assert.equal((await web.call('POST', '/api/v1/agent/flows', { records: [{ ...rec('1.2.3.4', '10.1.0.10'), extra: 1 }] })).status, 400);
  const flows = (await admin('GET', '/api/v1/flows')).body.flows;
  assert.equal(flows.length, 3, 'only the accepted records are stored');
  assert.deepEqual(flows.map((f: { src: string }) => f.src).sort(), ['10.1.0.20', '198.51.100.9', '203.0.113.5']);
  // Agent tokens cannot use the rest of the API, nor other tokens the agent endpoints.
  assert.equal((await web.call('GET', '/api/v1/workloads')).status, 403);
  assert.equal((await admin('GET', '/api/v1/agent/policy')).status, 403);
  // Events and heartbeats show in the agent list.
  const etag = p.etag;
  assert.equal((await web.call('POST', '/api/v1/agent/events', { events: [{ kind: 'applied', at: Date.now(), version: 1, etag }] })).status, 200);
  assert.equal((await web.call('POST', '/api/v1/agent/heartbeat', { version: 1, etag: `"${etag}"`, stats: { rules: 12 } })).status, 200);
  const agents = (await admin('GET', '/api/v1/agents')).body.agents;
  const a = agents.find((x: { id: string }) => x.id === web.id);
  assert.equal(a.state, 'enforcing');
  assert.equal(a.appliedVersion, 1);
  assert.equal(a.current, true);
  assert.deepEqual(a.stats, { rules: 12 });
  // Revoking: the token stops at once, and a waiting poll is closed.
  const poll = web.call('GET', '/api/v1/agent/policy?wait=20', undefined, { 'if-none-match': `"${etag}"` }).catch((e: Error) => e);
  await until(() => s.control.agents.waiters > 0, 2000, 'the poll to wait');
  assert.equal((await admin('DELETE', `/api/v1/agents/${web.id}`)).status, 200);
  const closed = await poll;
  assert.ok(closed instanceof Error, 'the held request was closed');
  assert.equal((await web.call('GET', '/api/v1/agent/policy')).status, 401);
  assert.equal((await admin('GET', '/api/v1/agents')).body.agents.find((x: { id: string }) => x.id === web.id).state, 'revoked');
});

test('rulesets: each agent gets exactly what compileNftables makes of its host view (endpoint sharing and the signature cache are exact)', async () => {
  const doc = generateEstate({ seed: 3, workloads: 300, rules: 60 }) as unknown as Record<string, unknown>;
  const s = await (await import('./helpers.js')).testServer({ advertise: ['10.99.0.5'] });
  try {
    const admin = client(s.url, s.adminToken);
    assert.equal((await admin('PUT', '/api/v1/draft', doc)).status, 200);
    const v = await admin('POST', '/api/v1/versions', { message: 'estate' });
    assert.equal(v.status, 201, v.text);
    const c = compileDoc(doc, { now: Date.now() });
    const hc = new HostCompiler(c.ir);
    const failsafe = { controlPlane: [(parsePrefix('10.99.0.5') as { prefix: import('../../src/netset/ip.js').Prefix }).prefix], managementPrefixes: [], managementPorts: [{ proto: 6, port: 22 }] };
    const gen = s.control.generation();
    let checked = 0;
    const etags = new Set<string>();
    for (let i = 0; i < c.ir.workloads.length; i++) {
      const name = c.ir.workloads[i].name;
      const host = hc.host(i);
      const want = host ? compileNftables(host, { failsafe }).text : undefined;
      const e = gen.entry(name);
      const t = s.control.agents.texts.get(e);
      const body = JSON.parse(Buffer.concat((await import('../../src/server/rulesets.js')).policyBody(gen, e, t)).toString());
      if (want !== undefined && host!.mode !== 'idle') assert.equal(body.ruleset, want, name);
      else assert.equal(body.mode, 'idle');
      etags.add(body.etag);
      checked++;
    }
    assert.equal(checked, 300);
    assert.equal(etags.size, 300, 'one ETag per workload');
    assert.ok(s.control.agents.texts.compiles < 300, `texts are shared: ${s.control.agents.texts.compiles} compiles for 300 workloads`);
  } finally {
    await s.stop();
  }
});

test('rulesets: set elements are shared between texts as one buffer each, need no JSON escaping, and the cache counts them once', async () => {
  const doc = generateEstate({ seed: 5, workloads: 400, rules: 80 }) as unknown as Record<string, unknown>;
  const c = compileDoc(doc, { now: Date.now() });
  const hc = new HostCompiler(c.ir);
  // What compileNftables hands out: after `elements = { `, a list of addresses and prefixes, nothing JSON must escape.
  let sets = 0;
  for (let i = 0; i < c.ir.workloads.length; i++) {
    const h = hc.host(i);
    if (!h) continue;
    const chunks = compileNftables(h).chunks;
    for (let k = 1; k < chunks.length; k++) {
      if (!chunks[k - 1].endsWith('elements = { ')) continue;
      sets++;
      assert.match(chunks[k], /^[0-9a-f.:/]+(, [0-9a-f.:/]+)*$/, 'set elements');
      assert.equal(JSON.stringify(chunks[k]).length, chunks[k].length + 2);
    }
  }
  assert.ok(sets > 100, `${sets} sets`);

  const { TextCache, Generation, policyBody } = await import('../../src/server/rulesets.js');
  const failsafe = { controlPlane: [(parsePrefix('10.99.0.5') as { prefix: import('../../src/netset/ip.js').Prefix }).prefix], managementPorts: [{ proto: 6, port: 22 }] };
  const check = (cache: InstanceType<typeof TextCache>) => {
    // The bytes held: every cached text's own pieces, and each shared piece once.
    const pieces = new Set<{ buf: Buffer; gz?: Buffer }>();
    let own = 0;
    for (const t of cache.cached()) {
      own += t.own;
      for (const p of t.pieces) pieces.add(p);
    }
    const shared = [...pieces].reduce((n, p) => n + p.buf.length + (p.gz?.length ?? 0), 0);
    assert.deepEqual(cache.size, { entries: [...cache.cached()].length, bytes: own + shared, shared: pieces.size, sharedBytes: shared });
  };
  const big = new TextCache(1 << 30, failsafe);
  const gen = new Generation(1, 1, [], c, 'k');
  let total = 0;
  const buffers = new Map<string, Buffer>();
  for (const w of c.ir.workloads) {
    const e = gen.entry(w.name);
    const t = big.get(e);
    const body = JSON.parse(Buffer.concat(policyBody(gen, e, t)).toString()) as { ruleset: string; mode: string };
    if (e.host) assert.equal(body.ruleset, compileNftables(e.host, { failsafe }).text.replace(e.host.workload, w.name), w.name);
    total += t.length;
    // One buffer per content, whichever text holds it.
    for (const p of t.pieces) {
      const seen = buffers.get(p.buf.toString());
      if (seen) assert.equal(seen, p.buf);
      else buffers.set(p.buf.toString(), p.buf);
    }
  }
  check(big);
  assert.ok(big.size.shared > 10 && big.size.bytes < total, `shared: ${JSON.stringify(big.size)}, ${total} bytes of texts`);
  // Gzipped: each answer is a run of gzip members (shared pieces compressed once) that inflates to the plain body.
  let plainBytes = 0;
  let gzBytes = 0;
  for (const w of c.ir.workloads) {
    const e = gen.entry(w.name);
    const t = big.get(e);
    const plain = Buffer.concat(policyBody(gen, e, t));
    const gz = Buffer.concat(policyBody(gen, e, t, big));
    assert.ok(gunzipSync(gz).equals(plain), w.name);
    plainBytes += plain.length;
    gzBytes += gz.length;
    for (const p of t.pieces) assert.ok(p.gz && gunzipSync(p.gz).equals(p.buf));
  }
  assert.ok(gzBytes * 3 < plainBytes, `gzip: ${gzBytes} bytes for ${plainBytes}`);
  check(big);
  // A newer generation with an override on every host: new signatures, new string objects with the same set
  // contents, which find the buffers they had.
  const now = Date.now();
  const override = { id: 'bg-test', from: [{ cidr: '198.51.100.7/32' }], to: ['all()'], services: ['22/tcp'], action: 'allow', expires: new Date(now + 3600000).toISOString(), reason: 'test', owner: 'me' };
  const again = new Generation(2, 1, ['bg-test'], compileDoc(doc, { now, overrides: [override] }), 'k');
  big.epoch++;
  const before = { ...big.size, compiles: big.compiles };
  for (const w of c.ir.workloads) {
    const t = big.get(again.entry(w.name));
    for (const p of t.pieces) assert.equal(buffers.get(p.buf.toString()), p.buf);
  }
  assert.ok(big.compiles > before.compiles + 10, 'new signatures');
  assert.equal(big.size.shared, before.shared, 'no new shared piece');
  check(big);
  // A small cache evicts and keeps its accounting exact.
  const small = new TextCache(256 << 10, failsafe);
  for (const [i, w] of c.ir.workloads.entries()) {
    const t = small.get(gen.entry(w.name));
    if (i % 2 === 0) small.gzipped(t);
    assert.ok(small.size.bytes <= 256 << 10 || small.size.entries === 1);
  }
  check(small);
  assert.ok(small.compiles > small.size.entries);
});

test('gzip: members that store bytes inflate to them, at any length; Accept-Encoding is read with its q-values', async () => {
  const { storedGzip, acceptsGzip } = await import('../../src/server/rulesets.js');
  for (const n of [0, 1, 1000, 65535, 65536, 300001]) {
    const data = Buffer.alloc(n);
    for (let i = 0; i < n; i++) data[i] = (i * 7919) & 255;
    const joined = gunzipSync(Buffer.concat([storedGzip(data), storedGzip(Buffer.from('end'))]));
    assert.ok(joined.subarray(0, n).equals(data) && joined.subarray(n).toString() === 'end', `${n} bytes`);
  }
  assert.equal(acceptsGzip('gzip'), true);
  assert.equal(acceptsGzip('br, gzip;q=0.5'), true);
  assert.equal(acceptsGzip('*'), true);
  assert.equal(acceptsGzip('GZIP'), true);
  assert.equal(acceptsGzip('gzip;q=0'), false);
  assert.equal(acceptsGzip('identity'), false);
  assert.equal(acceptsGzip(undefined), false);
  assert.equal(acceptsGzip(['deflate', 'gzip']), true);
  assert.equal(acceptsGzip('gzip;q=0, *'), false, 'named, gzip is refused; * does not bring it back');
  assert.equal(acceptsGzip('br, *;q=0.1'), true);
  assert.equal(acceptsGzip('*;q=0'), false);
});

test('a flow store whose thread dies: health says so (still 200: policies are served), batches get 503, an alert and a log line say why', async (t) => {
  const lines: string[] = [];
  const { s, admin, mkAgent } = await setup(t, { log: (l: string) => lines.push(l) });
  const web = await mkAgent('shop-web-1');
  const now = Date.now();
  const rec = { start: now, end: now + 10, src: '203.0.113.5', dst: '10.1.0.10', sport: 40000, dport: 443, proto: 6, packets: 3, bytes: 300 };
  assert.equal((await web.call('POST', '/api/v1/agent/flows', { records: [rec] })).status, 200);
  assert.deepEqual((await admin('GET', '/api/v1/health')).body, { ok: true, activeVersion: 1, store: 'ok' });
  const alerts: { kind: string }[] = [];
  s.control.alert = (a) => void alerts.push(a);
  // What a crash of the store's thread looks like from the server.
  await (s.control.store as unknown as { call(c: { op: string }): Promise<unknown> }).call({ op: 'close' });
  await until(() => alerts.length > 0);
  assert.equal(alerts[0].kind, 'store.failed');
  assert.ok(lines.some((l) => /flow store thread stopped.*restarted/.test(l)), lines.join('\n'));
  const h = await admin('GET', '/api/v1/health');
  assert.equal(h.status, 200);
  assert.equal(h.body.ok, true);
  assert.match(h.body.store, /stopped/);
  // Retention still removes old violations (they are in the state file), and says the flows could not be.
  const removed = await s.control.maintain(Date.now() + 400 * 86400000);
  assert.ok(removed.violationsDeleted >= 0 && removed.flowsDeleted === 0);
  assert.ok(lines.some((l) => /retention of flows failed/.test(l)));
  const refused = await web.call('POST', '/api/v1/agent/flows', { records: [rec] });
  assert.equal(refused.status, 503);
  // The rest of the server still answers.
  assert.equal((await web.call('GET', '/api/v1/agent/policy')).status, 200);
});

test('retention: maintenance removes violations and flows older than the retention, and keeps the rest', async (t) => {
  const { s, admin, mkAgent } = await setup(t, { violationRetentionDays: 2, flowRetentionDays: 3 });
  const web = await mkAgent('shop-web-1');
  const day = 86400000;
  const now = Date.now();
  const rec = (ageDays: number) => ({ start: now - ageDays * day, end: now - ageDays * day + 10, src: '203.0.113.5', dst: '10.1.0.10', sport: 40000, dport: 443, proto: 6, packets: 3, bytes: 300, verdict: 'blocked', rule: 'default' });
  assert.equal((await web.call('POST', '/api/v1/agent/flows', { records: [rec(10), rec(2.5), rec(0)] })).status, 200);
  const count = () => (s.control.db.prepare('SELECT COUNT(*) AS n FROM violations').get() as { n: number }).n;
  assert.equal(count(), 3);
  assert.equal((await admin('GET', '/api/v1/flows')).body.flows.length, 3);
  const r = await s.control.maintain(now);
  assert.equal(r.violationsDeleted, 2, 'the 10- and 2.5-day-old hours');
  assert.equal(count(), 1);
  assert.equal(r.flowsDeleted, 1, 'the 10-day-old flow');
  const left = (await admin('GET', '/api/v1/flows')).body.flows as { start: number }[];
  assert.equal(left.length, 2);
  assert.ok(left.every((f) => new Date(f.start).getTime() > now - 3 * day), JSON.stringify(left));
  // Nothing more to remove.
  assert.deepEqual(await s.control.maintain(now), { flowsDeleted: 0, edgesDeleted: 0, violationsDeleted: 0 });
});

test('policy in the iptables form: its own ETag, one text with the three restore files, checked as the agent checks it; 304 and a bad backend', async (t) => {
  const { admin, mkAgent } = await setup(t, { advertise: ['10.99.0.5'] });
  const web = await mkAgent('shop-web-1');
  const nft = await web.call('GET', '/api/v1/agent/policy');
  const ipt = await web.call('GET', '/api/v1/agent/policy?backend=iptables');
  assert.equal(ipt.status, 200);
  assert.equal(ipt.body.format, 'iptables');
  assert.equal(ipt.body.mode, 'enforce');
  assert.notEqual(ipt.body.etag, nft.body.etag, 'the same rules, another text: another ETag');
  assert.equal(ipt.headers.get('etag'), `"${ipt.body.etag}"`);
  const doc = ipt.body.ruleset as string;
  assert.match(doc, /^# bulkhead iptables rules for shop-web-1 \(mode enforce\)\n### ipset\n/);
  const parsed = parseIptablesDocument(doc);
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
  assert.match(parsed.files.iptables, /^-A BH-INPUT -s 10\.99\.0\.5\/32 -m comment --comment "failsafe: control plane" -j ACCEPT$/m);
  assert.match(parsed.files.iptables, /-j DROP$/m, 'enforce mode drops');
  // The nftables ETag does not satisfy an iptables poll, and the other way round.
  const cross = await web.call('GET', '/api/v1/agent/policy?backend=iptables&wait=1', undefined, { 'if-none-match': nft.headers.get('etag')! });
  assert.equal(cross.status, 200);
  const held = await web.call('GET', '/api/v1/agent/policy?backend=iptables&wait=1', undefined, { 'if-none-match': ipt.headers.get('etag')! });
  assert.equal(held.status, 304);
  assert.equal(held.headers.get('etag'), ipt.headers.get('etag'));
  // An agent that applied the iptables form is current, as one that applied the nftables form would be.
  const current = async () => (await admin('GET', '/api/v1/agents')).body.agents.find((x: { id: string }) => x.id === web.id).current as boolean;
  assert.equal((await web.call('POST', '/api/v1/agent/heartbeat', { version: 1, etag: `"${ipt.body.etag as string}"` })).status, 200);
  assert.equal(await current(), true);
  assert.equal((await web.call('POST', '/api/v1/agent/heartbeat', { version: 1, etag: '"ipt1-stale"' })).status, 200);
  assert.equal(await current(), false);
  const bad = await web.call('GET', '/api/v1/agent/policy?backend=pf');
  assert.equal(bad.status, 400);
  assert.match(bad.text, /backend must be nftables or iptables/);
});
