/** The flow store in a worker thread answers exactly as the store on the caller's thread, and fails loudly. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeAll } from '../../src/flows/formats/index.js';
import { FlowBatch } from '../../src/flows/record.js';
import { DuckDbFlowStore } from '../../src/store/flows-duckdb.js';
import { WorkerFlowStore } from '../../src/store/worker.js';
import { fixture } from '../flows/util.js';
import { ingest } from './ingest-helper.js';

const dir = mkdtempSync(join(tmpdir(), 'bulkhead-wstore-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));


const show = (v: unknown) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}n` : x));

test('worker store: the same flows, edges, stats and retention as the store on this thread', async () => {
  const records = [...decodeAll('aws-vpc', fixture('aws-vpc-v2.log')).records, ...decodeAll('conntrack', fixture('conntrack-L.txt')).records];
  assert.ok(records.some((r) => typeof r.src === 'bigint'), 'IPv6 rows too');
  const local = await DuckDbFlowStore.open(join(dir, 'local.duckdb'));
  const remote = await WorkerFlowStore.open(join(dir, 'remote.duckdb'));
  try {
    for (const size of [3, 1000]) {
      const a = await ingest(local, records, size);
      const b = await ingest(remote, records, size);
      assert.deepEqual({ ...b, aggregateMs: 0 }, { ...a, aggregateMs: 0 });
    }
    assert.equal(show(await remote.flows({ limit: 100000 })), show(await local.flows({ limit: 100000 })));
    assert.equal(show(await remote.edges()), show(await local.edges()));
    assert.equal(show(await remote.edges({ proto: 6, port: 443 })), show(await local.edges({ proto: 6, port: 443 })));
    await local.setRetentionDays(1);
    await remote.setRetentionDays(1);
    assert.deepEqual(await remote.stats(), await local.stats());
    const now = Math.max(...records.map((r) => r.end)) + 2 * 86400000;
    assert.deepEqual(await remote.applyRetention(now), await local.applyRetention(now));
    assert.deepEqual(await remote.stats(), await local.stats());
    assert.equal(remote.bucketMs, local.bucketMs);
    // A finished run refuses more.
    const run = await remote.beginIngest('again');
    await run.finish();
    assert.throws(() => run.append(new FlowBatch(1), new Uint8Array(1), new Uint16Array(1)), /finished/);
  } finally {
    await local.close();
    await remote.close();
  }
  await assert.rejects(remote.stats(), /closed/);
});

test('worker store: a store that cannot open says why; a dead thread fails every call', async () => {
  const bad = join(dir, 'not-a-store.duckdb');
  writeFileSync(bad, 'this is not a DuckDB file');
  await assert.rejects(WorkerFlowStore.open(bad), (e: Error) => e.message.length > 0 && !/stopped/.test(e.message));
  const store = await WorkerFlowStore.open(join(dir, 'dies.duckdb'));
  const deaths: Error[] = [];
  store.onDeath = (e) => deaths.push(e);
  // What the end of the store's thread looks like from here (the thread closes its store and ends, unasked).
  await (store as unknown as { call(c: { op: string }): Promise<unknown> }).call({ op: 'close' });
  const pending = store.stats();
  await assert.rejects(pending, /stopped/);
  assert.equal(deaths.length, 1);
  assert.match(String(store.failure?.message), /the flow store thread stopped/);
  await assert.rejects(store.stats(), /stopped/);
  await assert.rejects(store.beginIngest('x'), /stopped/);
  await store.close(); // nothing left to close
});

test('worker store: a run whose append fails keeps none of its rows; an aborted run neither', async () => {
  const records = decodeAll('aws-vpc', fixture('aws-vpc-v2.log')).records;
  const store = await WorkerFlowStore.open(join(dir, 'abort.duckdb'));
  try {
    const before = await store.stats();
    const run = await store.beginIngest('fails');
    const b = new FlowBatch(records.length);
    records.forEach((r, i) => b.set(i, r));
    b.length = records.length;
    const server = new Uint8Array(records.length).fill(1);
    const port = new Uint16Array(records.length);
    run.append(b, server, port);
    // What an append that fails in the store's thread looks like: one whose columns do not arrive.
    const handle = (run as unknown as { run: number }).run;
    (store as unknown as { worker: { postMessage(m: unknown): void } }).worker.postMessage({ op: 'append', run: handle, length: 5, columns: {}, server: new Uint8Array(5), port: new Uint16Array(5) });
    await assert.rejects(run.finish(), /appending to ingest run \d+ failed/);
    const after = await store.stats();
    assert.equal(after.flows, before.flows, 'none of the rows appended before the failure stay');
    assert.equal(after.edges, before.edges);
    // A run given up.
    const run2 = await store.beginIngest('given up');
    run2.append(b, server, port);
    await run2.abort();
    assert.equal((await store.stats()).flows, before.flows);
    assert.equal((await store.stats()).ingests, before.ingests);
    // And one that finishes.
    const run3 = await store.beginIngest('kept');
    run3.append(b, server, port);
    assert.equal((await run3.finish()).flows, records.length);
    assert.equal((await store.stats()).flows, before.flows + records.length);
  } finally {
    await store.close();
  }
});
