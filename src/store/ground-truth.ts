/**
 * Fills a flow store with flow records over a ground-truth estate's
 * conversations (src/generate/ground-truth.ts): for the recommendation's
 * quality test and `npm run bench:recommend`, without writing a log file.
 */
import { FlowBatch } from '../flows/record.js';
import { GroundTruthFlows, type GroundTruth } from '../generate/ground-truth.js';
import type { FlowStore, IngestSummary } from './flows.js';

export interface SeedOptions {
  /** Flow records to write (at least one per conversation is written first). */
  readonly records: number;
  readonly seed: number;
  /** The time window, epoch ms (default the week before 2026-11-23). */
  readonly start?: number;
  readonly ms?: number;
  /** Called after each batch with the records so far. */
  readonly progress?: (records: number) => void;
}

/** Appends `records` flow records over the ground truth's conversations to the store, in one ingest run. */
export async function seedGroundTruth(store: FlowStore, gt: GroundTruth, options: SeedOptions): Promise<IngestSummary> {
  const start = options.start ?? Date.UTC(2026, 10, 16);
  const flows = new GroundTruthFlows(gt.conversations, options.seed, { start, ms: options.ms ?? 7 * 86_400_000 });
  const run = await store.beginIngest(`ground-truth seed ${options.seed}`);
  const batch = new FlowBatch(8192);
  const server = new Uint8Array(batch.capacity);
  const port = new Uint16Array(batch.capacity);
  for (let done = 0; done < options.records; ) {
    const n = flows.fill(batch, done, options.records - done, server, port);
    run.append(batch, server, port);
    done += n;
    options.progress?.(done);
  }
  return run.finish();
}
