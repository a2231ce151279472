/** Test helper for the flow stores: one ingest run of records, oriented and folded as the ingest command does. */
import { foldPorts, ServerInference } from '../../src/flows/attribute.js';
import { FlowBatch, type FlowRecord } from '../../src/flows/record.js';
import type { FlowStore } from '../../src/store/flows.js';

/** Appends `records` in one run, in batches of `size` (one batch object, reused, as callers do), and finishes it. */
export async function ingest(store: FlowStore, records: readonly FlowRecord[], size = 3, infer = new ServerInference()) {
  const run = await store.beginIngest('test');
  const b = new FlowBatch(size);
  const server = new Uint8Array(size);
  const port = new Uint16Array(size);
  for (let k = 0; k < records.length; k += size) {
    const part = records.slice(k, k + size);
    part.forEach((r, i) => b.set(i, r));
    b.length = part.length;
    infer.orient(b, server);
    foldPorts(b, server, port);
    run.append(b, server, port);
  }
  return run.finish();
}
