/**
 * The flow store: raw flow records in time buckets, the edges aggregate
 * (client, server, protocol, server port per bucket), and a retention
 * setting. This is the interface every backend implements: the embedded
 * default is DuckDB in a local file (`flows-duckdb.ts`); ClickHouse can take
 * its place at scale.
 */
import type { FlowBatch, FlowRecord } from '../flows/record.js';

/** One aggregated edge: the client's port folded away (defined beside the map, which the pure layer builds from it). */
export type { Edge as EdgeRow } from '../flows/map.js';
import type { Edge as EdgeRow } from '../flows/map.js';

/** Which edges to read. All bounds are optional. */
export interface EdgeFilter {
  /** Only buckets that overlap [since, until), epoch milliseconds. */
  readonly since?: number;
  readonly until?: number;
  readonly proto?: number;
  /** The server port. */
  readonly port?: number;
}

/** What finishing an ingest run did. */
export interface IngestSummary {
  readonly id: number;
  /** Raw flow records stored. */
  readonly flows: number;
  /** Edge rows written or updated. */
  readonly edges: number;
  /** Time spent aggregating, ms. */
  readonly aggregateMs: number;
}

/** One ingest run: batches appended, then aggregated into edges on {@link finish}. */
export interface IngestRun {
  readonly id: number;
  /**
   * Appends a batch (synchronously: the batch may be reused once this
   * returns). `server[i]` is the server side of row `i` (SERVER codes of
   * flows/attribute) and `port[i]` its folded server port.
   */
  append(batch: FlowBatch, server: Uint8Array, port: Uint16Array): void;
  /** Stores what was appended and aggregates it into edges. */
  finish(): Promise<IngestSummary>;
  /** Gives the run up: none of its rows stay in the store. */
  abort(): Promise<void>;
}

/** What {@link FlowStore.applyRetention} removed. */
export interface RetentionResult {
  /** Data before this time (epoch ms) was removed. */
  readonly cutoff: number;
  readonly flowsDeleted: number;
  readonly edgesDeleted: number;
}

/** Counts for `bulkhead map` and reports. */
export interface StoreStats {
  readonly flows: number;
  readonly edges: number;
  /** The earliest and latest flow times, epoch ms; undefined when empty. */
  readonly first?: number;
  readonly last?: number;
  readonly retentionDays?: number;
  readonly ingests: number;
  readonly bucketMs: number;
}

/**
 * A stored raw flow, as read back (for checks and exports): a flow record with
 * the store's integer codes for action ({@link ACTION}: 0 none, 1 accept, 2 reject), TCP
 * flags, initiator and server side, and its time bucket.
 */
export interface StoredFlow extends Omit<FlowRecord, 'action' | 'tcpFlags' | 'initiator'> {
  readonly action: number;
  readonly tcpFlags: number;
  readonly initiator: number;
  readonly server: number;
  readonly bucket: number;
}

/** A flow store backend. */
export interface FlowStore {
  /** The backend's name, such as `duckdb`. */
  readonly kind: string;
  /** The length of a time bucket, ms. */
  readonly bucketMs: number;
  /** Starts an ingest run named after its source (files, a listener). */
  beginIngest(source: string): Promise<IngestRun>;
  /** The edges, summed over the buckets the filter keeps. */
  edges(filter?: EdgeFilter): Promise<EdgeRow[]>;
  /** Raw flows in time order, at most `limit` (default 1000). */
  flows(filter?: EdgeFilter & { limit?: number }): Promise<StoredFlow[]>;
  /** Sets (a number of days) or clears (undefined) the retention. */
  setRetentionDays(days: number | undefined): Promise<void>;
  /** Removes flows and edges in buckets that end before `now` less the retention; nothing when no retention is set. */
  applyRetention(now: number): Promise<RetentionResult | undefined>;
  stats(): Promise<StoreStats>;
  close(): Promise<void>;
  /** Why the store cannot answer any more, when a backend can fail apart from its caller (a thread that died). */
  readonly failure?: Error;
}
