/** The DuckDB flow store: raw flows and edges round trip, upserts across runs, filters, retention, reopening a file. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatAddr, parseAddr } from '../../src/netset/ip.js';
import { decodeAll } from '../../src/flows/formats/index.js';
import type { FlowRecord } from '../../src/flows/record.js';
import { addrOfParts, DuckDbFlowStore, partsOfAddr } from '../../src/store/flows-duckdb.js';
import { fixture } from '../flows/util.js';
import { ingest } from './ingest-helper.js';

const dir = mkdtempSync(join(tmpdir(), 'bulkhead-store-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));


test('addresses: the two stored halves round trip, IPv4 as mapped IPv6', () => {
  for (const s of ['0.0.0.0', '10.10.1.41', '255.255.255.255', '::', '::1', '2001:db8::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff']) {
    const a = parseAddr(s)!;
    const [hi, lo] = partsOfAddr(a);
    assert.equal(formatAddr(addrOfParts(hi, lo)), s);
  }
  assert.deepEqual(partsOfAddr(parseAddr('10.0.0.1')!), [0n, (0xffffn << 32n) | 0x0a000001n]);
});

test('round trip: raw flows come back as ingested; edges fold both directions and the client ports', async () => {
  const path = join(dir, 'a.duckdb');
  const store = await DuckDbFlowStore.open(path);
  const vpc = decodeAll('aws-vpc', fixture('aws-vpc-v2.log')).records;
  const s = await ingest(store, vpc);
  assert.equal(s.flows, vpc.length);
  const back = await store.flows();
  assert.equal(back.length, vpc.length);
  const key = (r: { start: number; src: unknown; dst: unknown; srcPort: number }) => `${r.start} ${formatAddr(r.src as never)} ${formatAddr(r.dst as never)} ${r.srcPort}`;
  assert.deepEqual(back.map(key).sort(), vpc.map(key).sort());
  const v6 = back.find((r) => typeof r.src === 'bigint')!;
  assert.equal(formatAddr(v6.src), '2001:db8:101:4::21');
  assert.equal(v6.tcpFlags, -1);
  assert.equal(v6.format, 'aws-vpc');
  const edges = await store.edges();
  const text = edges.map((e) => `${formatAddr(e.client)} -> ${formatAddr(e.server)} ${e.proto}/${e.port} flows=${e.flows} bytes=${e.bytes} rejected=${e.rejected}`);
  assert.deepEqual(text, [
    '10.100.1.21 -> 10.100.1.41 6/5432 flows=2 bytes=14067 rejected=0',
    '10.101.0.50 -> 10.101.4.21 1/65535 flows=1 bytes=336 rejected=0',
    '10.101.4.22 -> 10.101.0.10 17/53 flows=1 bytes=76 rejected=0',
    '203.0.113.12 -> 10.100.250.17 6/22 flows=1 bytes=40 rejected=1',
    '2001:db8:101:4::21 -> 2001:db8:10::53 17/53 flows=1 bytes=180 rejected=0',
  ]);
  await store.close();

  // Reopened: the data is there; a second run adds to the same edges.
  const again = await DuckDbFlowStore.open(path, { bucketMinutes: 5 });
  assert.equal(again.bucketMs, 3600_000, 'the bucket length of an existing store stays');
  await ingest(again, vpc.slice(0, 2));
  const e2 = await again.edges({ port: 5432 });
  assert.equal(e2.length, 1);
  assert.equal(e2[0].flows, 4);
  assert.equal(e2[0].first, Date.parse('2026-11-16T08:00:00Z'));
  assert.equal(e2[0].last, Date.parse('2026-11-16T08:01:00Z'));
  const st = await again.stats();
  assert.equal(st.flows, vpc.length + 2);
  assert.equal(st.ingests, 2);
  await again.close();
});

test('filters by time (whole buckets), protocol and port', async () => {
  const store = await DuckDbFlowStore.open(':memory:');
  const T = Date.parse('2026-11-16T00:00:00Z');
  const mk = (h: number, port: number): FlowRecord => ({ start: T + h * 3600_000 + 60_000, end: T + h * 3600_000 + 120_000, src: 0x0a000001, dst: 0x0a000002, proto: 6, srcPort: 50000, dstPort: port, packets: 1, bytes: 100, format: 'csv' });
  await ingest(store, [mk(0, 443), mk(1, 443), mk(2, 443), mk(2, 22), mk(30, 443)]);
  const sum = async (f: object) => (await store.edges(f)).reduce((n, e) => n + e.flows, 0);
  assert.equal(await sum({}), 5);
  assert.equal(await sum({ since: T + 3600_000 }), 4);
  assert.equal(await sum({ since: T + 3600_000, until: T + 3 * 3600_000 }), 3);
  assert.equal(await sum({ port: 22 }), 1);
  assert.equal(await sum({ proto: 17 }), 0);
  assert.equal((await store.flows({ limit: 2 })).length, 2);
  await store.close();
});

test('retention: whole buckets before now less the retention go, in flows and edges', async () => {
  const store = await DuckDbFlowStore.open(':memory:');
  const T = Date.parse('2026-11-01T00:00:00Z');
  const mk = (day: number): FlowRecord => ({ start: T + day * 86400_000, end: T + day * 86400_000, src: 0x0a000001, dst: 0x0a000002, proto: 6, srcPort: 50000, dstPort: 443, packets: 1, bytes: 1, format: 'csv' });
  await ingest(store, [mk(0), mk(1), mk(10), mk(20)]);
  assert.equal(await store.applyRetention(T + 21 * 86400_000), undefined, 'no retention set: nothing goes');
  await store.setRetentionDays(15);
  const r = await store.applyRetention(T + 21 * 86400_000);
  assert.ok(r);
  assert.equal(r.flowsDeleted, 2);
  assert.equal(r.edgesDeleted, 2);
  assert.equal(new Date(r.cutoff).toISOString(), '2026-11-07T00:00:00.000Z');
  const st = await store.stats();
  assert.equal(st.flows, 2);
  assert.equal(st.retentionDays, 15);
  await assert.rejects(store.setRetentionDays(-1), /positive number of days/);
  await store.close();
});

test('a file that is not a flow store is refused with a clear error', async () => {
  const path = join(dir, 'other.duckdb');
  const s = await DuckDbFlowStore.open(path);
  await s.close();
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const inst = await DuckDBInstance.create(path);
  const c = await inst.connect();
  await c.run(`UPDATE meta SET value = '99' WHERE key = 'schema'`);
  c.closeSync();
  inst.closeSync();
  await assert.rejects(DuckDbFlowStore.open(path), /has flow store schema 99; this bulkhead reads schema 1/);
});

test('a run whose edge sums cannot be stored keeps none of its rows (so sending it again counts nothing twice)', async () => {
  const store = await DuckDbFlowStore.open(join(dir, 'fails.duckdb'));
  const conn = (store as unknown as { conn: { run(sql: string): Promise<unknown>; runAndReadAll(sql: string): Promise<{ getRows(): unknown[][] }> } }).conn;
  try {
    const vpc = decodeAll('aws-vpc', fixture('aws-vpc-v2.log')).records;
    await ingest(store, vpc);
    // The fault: the edges table has gone (as if the disk had refused the write).
    await conn.run('ALTER TABLE edges RENAME TO edges_away');
    await assert.rejects(ingest(store, vpc), /edges/);
    await conn.run('ALTER TABLE edges_away RENAME TO edges');
    const count = async (sql: string) => Number((await conn.runAndReadAll(sql)).getRows()[0][0]);
    assert.equal(await count('SELECT COUNT(*) FROM flows'), vpc.length, 'only the first run');
    assert.equal(await count('SELECT COUNT(*) FROM ingests'), 1, 'the failed run is not listed');
    const s = await ingest(store, vpc);
    assert.equal(s.flows, vpc.length);
    assert.equal(await count('SELECT SUM(flows) FROM edges'), 2 * vpc.length, 'edges count each stored run once');
  } finally {
    await store.close();
  }
});
