/** Limits and transport: body size (413), rate (429 with Retry-After), input checks (400), TLS with a self-signed certificate, the CLI. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { client, testServer } from './helpers.js';
import { parseListenAddress, parseSize, runServe } from '../../src/cli/serve.js';

test('body size: over --max-body is 413, and the server goes on', async (t) => {
  const s = await testServer({ maxBody: 1024 });
  t.after(() => s.stop());
  const admin = client(s.url, s.adminToken);
  const big = { workloads: Array.from({ length: 100 }, (_, i) => ({ name: `w${i}`, addresses: [`10.0.0.${i}`] })) };
  const r = await admin('PUT', '/api/v1/draft', big);
  assert.equal(r.status, 413);
  assert.equal(r.body.error.code, 'too-large');
  assert.equal((await admin('GET', '/api/v1/draft')).status, 200);
  assert.equal((await admin('PUT', '/api/v1/draft', { workloads: [] })).status, 200);
});

test('input: bad JSON, wrong content type and schema problems are 400/415 with details; unknown paths 404, wrong methods 405', async (t) => {
  const s = await testServer();
  t.after(() => s.stop());
  const admin = client(s.url, s.adminToken);
  const r = await admin('PUT', '/api/v1/draft', '{"workloads": [');
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, 'bad-json');
  assert.equal((await admin('POST', '/api/v1/versions', 'x', { 'content-type': 'text/plain' })).status, 415);
  const bg = await admin('POST', '/api/v1/breakglass', { from: 'any', to: 'any', services: 'any', reason: 'x', ttlSeconds: -1 });
  assert.equal(bg.status, 400);
  assert.ok(bg.body.error.details.some((d: { path: string }) => d.path === '/ttlSeconds'));
  assert.ok(bg.body.error.details.some((d: { path: string }) => d.path === '/reason'));
  assert.equal((await admin('GET', '/api/v1/nothing')).status, 404);
  const m = await admin('PATCH', '/api/v1/draft');
  assert.equal(m.status, 405);
  assert.equal((await admin('DELETE', '/api/v1/versions')).status, 405);
  assert.equal((await admin('POST', '/api/v1/alerts/sinks', { kind: 'webhook', url: 'file:///etc/passwd' })).status, 400);
});

test('rate: more than --rate requests a second from one token is 429 with Retry-After; agents have their own limit', async (t) => {
  const s = await testServer({ rate: 5, agentRate: 3 });
  t.after(() => s.stop());
  const admin = client(s.url, s.adminToken);
  const codes: number[] = [];
  for (let i = 0; i < 12; i++) codes.push((await admin('GET', '/api/v1/versions')).status);
  assert.ok(codes.slice(0, 5).every((c) => c === 200));
  assert.ok(codes.includes(429));
  const limited = await admin('GET', '/api/v1/versions');
  assert.equal(limited.status, 429);
  assert.ok(Number(limited.headers.get('retry-after')) >= 1);
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal((await admin('GET', '/api/v1/versions')).status, 200, 'the bucket refills');
  // Another token is not affected.
  const viewer = client(s.url, (await admin('POST', '/api/v1/tokens', { name: 'v', role: 'viewer' })).body.token);
  assert.equal((await viewer('GET', '/api/v1/versions')).status, 200);
  const agent = client(s.url, (await admin('POST', '/api/v1/agents', { workload: 'w' })).body.token);
  const ac: number[] = [];
  for (let i = 0; i < 6; i++) ac.push((await agent('POST', '/api/v1/agent/heartbeat', {})).status);
  assert.ok(ac.includes(429));
  // Failed authentication is limited per client address.
  const bad = client(s.url, 'bh_000000000000_' + '1'.repeat(64));
  const bc: number[] = [];
  for (let i = 0; i < 10; i++) bc.push((await bad('GET', '/api/v1/versions')).status);
  assert.ok(bc.includes(401) && bc.includes(429));
});

test('TLS: with a certificate and key the server speaks HTTPS only', { skip: spawnSync('openssl', ['version']).status !== 0 ? 'openssl is not installed' : false }, async (t) => {
  const s0 = await testServer();
  const dir = s0.dir;
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  await s0.close();
  const { startServer } = await import('../../src/server/index.js');
  const s = await startServer({ state: join(dir, 'tls.db'), host: '127.0.0.1', port: 0, tlsCert: cert, tlsKey: key });
  t.after(async () => {
    await s.close();
    (await import('node:fs')).rmSync(dir, { recursive: true, force: true });
  });
  assert.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const get = (ca: Buffer | undefined) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = request(s.url + '/api/v1/whoami', { headers: { authorization: `Bearer ${s.adminToken}` }, ...(ca ? { ca } : {}) }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      r.on('error', reject);
      r.end();
    });
  const ok = await get(readFileSync(cert));
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).role, 'admin');
  await assert.rejects(get(undefined), /self-signed|self signed/);
  // Plain HTTP to the TLS port does not get an answer from the API.
  const plain = await fetch(s.url.replace('https', 'http') + '/api/v1/health').then((r) => r.status).catch(() => 0);
  assert.notEqual(plain, 200);
});

test('serve: the command runs the server until told to stop; the admin token file is 0600', async (t) => {
  assert.deepEqual(parseListenAddress('127.0.0.1:8443'), { host: '127.0.0.1', port: 8443 });
  assert.deepEqual(parseListenAddress('[::1]:0'), { host: '::1', port: 0 });
  assert.deepEqual(parseListenAddress(':9000'), { host: '0.0.0.0', port: 9000 });
  assert.throws(() => parseListenAddress('localhost'));
  assert.equal(parseSize('8m', '--max-body'), 8 << 20);
  assert.equal(parseSize('1024', '--max-body'), 1024);
  const io = { out: () => {}, err: () => {}, color: false };
  const base = { state: '/nonexistent/never-made.db', listen: '127.0.0.1:0', maxBody: '1m', rate: '50', agentRate: '20', pollSeconds: '30' };
  await assert.rejects(runServe({ ...base, storeMemory: '12xx' }, io), /invalid --store-memory `12xx`: write a size such as 256MB/);
  await assert.rejects(runServe({ ...base, violationRetentionDays: '0' }, io), /--violation-retention-days must be a positive number/);
  const s0 = await testServer();
  const dir = s0.dir;
  await s0.stop();
  (await import('node:fs')).mkdirSync(dir, { recursive: true });
  t.after(async () => (await import('node:fs')).rmSync(dir, { recursive: true, force: true }));
  const state = join(dir, 'cli.db');
  const lines: string[] = [];
  const ctl = new AbortController();
  const run = runServe({ state, listen: '127.0.0.1:0', maxBody: '1m', rate: '50', agentRate: '20', pollSeconds: '30', store: join(dir, 'flows'), storeMemory: '128MB', violationRetentionDays: '30' }, { out: (l) => lines.push(l), err: (l) => lines.push(l), color: false }, ctl.signal);
  const t0 = Date.now();
  while (!lines.some((l) => l.startsWith('bulkhead serve:')) && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 20));
  const url = /bulkhead serve: (\S+);/.exec(lines.find((l) => l.startsWith('bulkhead serve:'))!)![1];
  const token = readFileSync(state + '.admin-token', 'utf8').trim();
  assert.equal(statSync(state + '.admin-token').mode & 0o777, 0o600);
  assert.equal((await client(url, token)('GET', '/api/v1/whoami')).status, 200);
  ctl.abort();
  assert.equal(await run, 0);
  assert.ok(existsSync(join(dir, 'flows', 'flows.duckdb')));
  assert.ok(lines.some((l) => l === 'stopped'));
});
