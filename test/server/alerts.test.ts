/** Violations and alert sinks: a webhook that fails twice then succeeds, syslog RFC 5424 over UDP, both on 127.0.0.1; the weekly report. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createSocket } from 'node:dgram';
import { createHmac } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { sdEscape, syslogMessage, WebhookSink } from '../../src/server/alerts.js';
import { client, smallDoc, testServer, until } from './helpers.js';

test('webhook: retries 5xx with backoff, gives up on 4xx, drops the oldest past its bound', async (t) => {
  let calls = 0;
  const bodies: unknown[] = [];
  const signatures: string[] = [];
  const srv = createServer((req, res) => {
    let b = '';
    req.on('data', (c) => (b += c));
    req.on('end', () => {
      calls++;
      signatures.push(String(req.headers['x-bulkhead-signature']));
      if (calls <= 2) {
        res.writeHead(503).end();
        return;
      }
      bodies.push(JSON.parse(b));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => srv.close());
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/hook`;
  const sink = new WebhookSink('w', { url, secret: 'sekrit-123', backoffMs: 20 });
  sink.send({ kind: 'violation', severity: 4, at: 0, message: 'm', fields: { app: 'shop', count: 3 } });
  await sink.drain(5000);
  assert.equal(calls, 3);
  assert.equal(sink.stats.retried, 2);
  assert.equal(sink.stats.sent, 1);
  assert.deepEqual(bodies[0], { kind: 'violation', severity: 4, at: '1970-01-01T00:00:00.000Z', message: 'm', app: 'shop', count: 3 });
  const expected = 'sha256=' + createHmac('sha256', 'sekrit-123').update(JSON.stringify(bodies[0])).digest('hex');
  assert.equal(signatures[2], expected);

  // 4xx: not retried.
  const srv400 = createServer((_req, res) => res.writeHead(400).end());
  await new Promise<void>((r) => srv400.listen(0, '127.0.0.1', r));
  t.after(() => srv400.close());
  const s4 = new WebhookSink('x', { url: `http://127.0.0.1:${(srv400.address() as AddressInfo).port}/`, backoffMs: 10 });
  s4.send({ kind: 'k', severity: 5, at: 0, message: 'm', fields: {} });
  await s4.drain(2000);
  assert.equal(s4.stats.failed, 1);
  assert.equal(s4.stats.retried, 0);

  // A dead receiver: the queue stays bounded.
  const dead = new WebhookSink('d', { url: 'http://127.0.0.1:9/', maxQueue: 3, attempts: 2, backoffMs: 5000 });
  for (let i = 0; i < 10; i++) dead.send({ kind: 'k', severity: 5, at: 0, message: String(i), fields: {} });
  assert.ok(dead.stats.dropped >= 6);
  dead.close();
});

test('syslog: RFC 5424 with structured data, escaped', () => {
  const m = syslogMessage({ kind: 'violation', severity: 4, at: Date.UTC(2026, 10, 23, 8, 0, 0), message: 'blocked "x"', fields: { app: 'sh]op', rule: 'a"b\\c', count: 2 } }, { facility: 16, hostname: 'cp 1', procId: '42' });
  assert.equal(m, '<132>1 2026-11-23T08:00:00.000Z cp1 bulkhead 42 violation [bulkhead@32473 kind="violation" app="sh\\]op" rule="a\\"b\\\\c" count="2"] \ufeffblocked "x"');
  assert.equal(sdEscape('a]b"c\\'), 'a\\]b\\"c\\\\');
});

test('violations: agents report blocked and would-be-blocked flows; they are aggregated per app and rule and reach the sinks', async (t) => {
  const udp = createSocket('udp4');
  const datagrams: string[] = [];
  udp.on('message', (m) => datagrams.push(m.toString()));
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  t.after(() => udp.close());
  const hooks: Record<string, unknown>[] = [];
  let hookCalls = 0;
  const srv = createServer((req, res) => {
    let b = '';
    req.on('data', (c) => (b += c));
    req.on('end', () => {
      hookCalls++;
      if (hookCalls === 1) return void res.writeHead(500).end(); // the first try fails: retried
      hooks.push(JSON.parse(b));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => srv.close());

  const s = await testServer();
  t.after(() => s.stop());
  const admin = client(s.url, s.adminToken);
  await admin('PUT', '/api/v1/draft', smallDoc());
  await admin('POST', '/api/v1/versions', { message: 'v1' });
  assert.equal((await admin('POST', '/api/v1/alerts/sinks', { kind: 'syslog', host: '127.0.0.1', port: (udp.address() as AddressInfo).port })).status, 201);
  assert.equal((await admin('POST', '/api/v1/alerts/sinks', { kind: 'webhook', url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/alerts`, secret: 'a-long-secret' })).status, 201);
  const sinks = (await admin('GET', '/api/v1/alerts/sinks')).body.sinks;
  assert.equal(sinks.length, 2);
  assert.ok(sinks.every((x: Record<string, unknown>) => !('secret' in x)));
  // The webhook sink retries with its default backoff (500 ms): make it quick for the test.
  for (const sink of s.control.sinks.values()) Object.assign((sink as unknown as { o: object }).o ?? {}, { backoffMs: 20 });

  const web = client(s.url, (await admin('POST', '/api/v1/agents', { workload: 'shop-db-1' })).body.token);
  const crm = client(s.url, (await admin('POST', '/api/v1/agents', { workload: 'crm-db-1' })).body.token);
  const now = Date.now();
  const rec = (src: string, dst: string, dport: number, verdict?: string, rule?: string) => ({ start: now, end: now, src, dst, sport: 50000, dport, proto: 6, packets: 1, bytes: 60, ...(verdict ? { verdict } : {}), ...(rule ? { rule } : {}) });
  const r1 = await web('POST', '/api/v1/agent/flows', { records: [rec('10.1.0.10', '10.1.0.30', 5432, 'blocked', 'default'), rec('10.1.0.11', '10.1.0.30', 5432, 'blocked', 'default'), rec('10.1.0.20', '10.1.0.30', 5432, 'allowed', 'shop-app-db'), rec('10.1.0.20', '10.1.0.30', 5432)] });
  assert.equal(r1.status, 200);
  await crm('POST', '/api/v1/agent/flows', { records: [rec('10.1.0.20', '10.2.0.30', 5432, 'potentially-blocked', 'default')] });
  const v = (await admin('GET', '/api/v1/violations')).body.violations;
  assert.deepEqual(
    v.map((x: { app: string; rule: string; verdict: string; count: number }) => [x.app, x.rule, x.verdict, x.count]),
    [
      ['shop', 'default', 'blocked', 2],
      ['crm', 'default', 'potentially-blocked', 1],
    ],
  );
  assert.equal(v[0].pairs, 2);
  assert.equal((await admin('GET', '/api/v1/violations?app=crm')).body.violations.length, 1);
  assert.equal((await admin('GET', `/api/v1/violations?since=${new Date(now + 7200000).toISOString()}`)).body.violations.length, 0);
  const stored = (await admin('GET', '/api/v1/flows')).body.flows;
  assert.equal(stored.length, 5);
  assert.equal(stored.filter((f: { action: number }) => f.action === 2).length, 2, 'blocked flows are stored as rejected');

  await until(() => datagrams.length >= 2 && hooks.length >= 2, 5000, 'alerts');
  const shop = datagrams.find((d) => d.includes('app="shop"'))!;
  assert.match(shop, /^<132>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ bulkhead \d+ violation \[bulkhead@32473 kind="violation" app="shop" rule="default" verdict="blocked" count="2" workloads="1"\] \ufeff2 blocked flows in app shop by rule default on shop-db-1$/);
  assert.match(datagrams.find((d) => d.includes('app="crm"'))!, /^<133>1 /, 'potentially blocked is a notice');
  assert.ok(hookCalls >= 3, 'the first webhook call failed and was retried');
  assert.deepEqual(hooks.map((h) => h.app).sort(), ['crm', 'shop']);

  // Events that matter alert too.
  await web('POST', '/api/v1/agent/events', { events: [{ kind: 'apply-failed', at: new Date().toISOString(), version: 1, detail: 'nft: syntax error' }] });
  await until(() => datagrams.some((d) => d.includes('agent.apply-failed')), 3000, 'the apply-failed alert');
  assert.match(datagrams.find((d) => d.includes('agent.apply-failed'))!, /^<131>1 /);

  // The weekly report.
  const report = (await admin('GET', '/api/v1/reports/weekly')).body;
  assert.equal(report.versions.length, 1);
  assert.equal(report.violations[0].count, 2);
  assert.equal(report.agents.total, 2);
  assert.equal(report.agents.applyFailures, 1);
  assert.equal(report.flows.stored, 5);
  assert.equal(report.audit.ok, true);
  const md = await admin('GET', '/api/v1/reports/weekly?format=markdown');
  assert.match(md.headers.get('content-type')!, /text\/markdown/);
  assert.match(md.text, /^# bulkhead weekly review\n/);
  assert.match(md.text, /\| shop \| default \| blocked \| 2 \| 1 \| 10\.1\.0\.1[01] -> 10\.1\.0\.30 5432\/6 \|/);
  assert.equal((await admin('GET', '/api/v1/reports/weekly?format=pdf')).status, 400);
  assert.equal((await admin('DELETE', `/api/v1/alerts/sinks/${sinks[0].id}`)).status, 200);
  assert.equal((await admin('GET', '/api/v1/alerts/sinks')).body.sinks.length, 1);
});
