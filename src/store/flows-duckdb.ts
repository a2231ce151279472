/**
 * The embedded flow store: DuckDB in one local file, no extensions.
 *
 * Tables (schema version 1):
 *
 * - `flows`: one row per raw flow record, with its time `bucket` (the start
 *   time divided by the bucket length, an hour by default) and the ingest run
 *   it came in. Addresses are 128-bit integers in two UBIGINT columns
 *   (`src_hi`, `src_lo`); an IPv4 address is stored as its IPv4-mapped IPv6
 *   form `::ffff:a.b.c.d`, so `src_hi = 0`, `src_lo >> 32 = 65535` and
 *   `src_lo & 4294967295` is the IPv4 number. `server` is 1 when the
 *   destination is the server, 2 when the source is; `port` is the folded
 *   server port. `tcp_flags` is -1 where the source has none.
 * - `edges`: per bucket, client, server, protocol and server port: flow,
 *   packet, byte and rejected counts and the first and last times. Each
 *   ingest run appends its own sums (an insert, no index to maintain);
 *   readers sum them, and every 16th run merges them into one row per key.
 * - `ingests`, `meta` (settings: bucket length, retention), `formats`.
 *
 * Rows go in through DuckDB's appender, a data chunk (2048 rows) at a time:
 * each column is copied from a typed array into the chunk's vector memory in
 * one call, so appending costs a few native calls per 2048 records.
 */
import { DuckDBConnection, DuckDBDataChunk, DuckDBInstance, type DuckDBAppender, type DuckDBType } from '@duckdb/node-api';
import duckdb from '@duckdb/node-bindings';
import { FLOW_FORMATS, V6, type FlowBatch } from '../flows/record.js';
import type { Addr } from '../netset/ip.js';
import type { EdgeFilter, EdgeRow, FlowStore, IngestRun, IngestSummary, RetentionResult, StoreStats, StoredFlow } from './flows.js';
import * as T from '@duckdb/node-api';

/** Options of {@link DuckDbFlowStore.open}. */
export interface DuckDbOptions {
  /** The bucket length for a new store, minutes (default 60). An existing store keeps its own. */
  readonly bucketMinutes?: number;
  /** DuckDB's memory limit (default `512MB`). */
  readonly memoryLimit?: string;
  /** DuckDB's threads (default: DuckDB's choice, the cores). */
  readonly threads?: number;
}

const SCHEMA_VERSION = '1';
const TWO32 = 4294967296;
const MAPPED = 0xffff;

/** The raw columns in appender order: name, SQL type, DuckDB type, bytes per value. */
const FLOW_COLUMNS: readonly [string, string, DuckDBType, number][] = [
  ['ingest', 'UINTEGER', T.DuckDBUIntegerType.instance, 4],
  ['bucket', 'UINTEGER', T.DuckDBUIntegerType.instance, 4],
  ['start_ms', 'TIMESTAMP_MS', T.DuckDBTimestampMillisecondsType.instance, 8],
  ['end_ms', 'TIMESTAMP_MS', T.DuckDBTimestampMillisecondsType.instance, 8],
  ['src_hi', 'UBIGINT', T.DuckDBUBigIntType.instance, 8],
  ['src_lo', 'UBIGINT', T.DuckDBUBigIntType.instance, 8],
  ['dst_hi', 'UBIGINT', T.DuckDBUBigIntType.instance, 8],
  ['dst_lo', 'UBIGINT', T.DuckDBUBigIntType.instance, 8],
  ['src_port', 'USMALLINT', T.DuckDBUSmallIntType.instance, 2],
  ['dst_port', 'USMALLINT', T.DuckDBUSmallIntType.instance, 2],
  ['proto', 'UTINYINT', T.DuckDBUTinyIntType.instance, 1],
  ['packets', 'UBIGINT', T.DuckDBUBigIntType.instance, 8],
  ['bytes', 'UBIGINT', T.DuckDBUBigIntType.instance, 8],
  ['action', 'UTINYINT', T.DuckDBUTinyIntType.instance, 1],
  ['tcp_flags', 'SMALLINT', T.DuckDBSmallIntType.instance, 2],
  ['initiator', 'UTINYINT', T.DuckDBUTinyIntType.instance, 1],
  ['server', 'UTINYINT', T.DuckDBUTinyIntType.instance, 1],
  ['port', 'USMALLINT', T.DuckDBUSmallIntType.instance, 2],
  ['format', 'UTINYINT', T.DuckDBUTinyIntType.instance, 1],
];

const C = Object.fromEntries(FLOW_COLUMNS.map((c, i) => [c[0], i])) as Record<string, number>;

/** A 128-bit address from its two stored halves. */
export function addrOfParts(hi: bigint, lo: bigint): Addr {
  if (hi === 0n && lo >> 32n === 0xffffn) return Number(lo & 0xffffffffn);
  return (hi << 64n) | lo;
}

/** The two stored halves of an address. */
export function partsOfAddr(a: Addr): [bigint, bigint] {
  if (typeof a === 'number') return [0n, (0xffffn << 32n) | BigInt(a)];
  return [a >> 64n, a & 0xffffffffffffffffn];
}

function num(v: unknown): number {
  return typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0;
}

function ms(v: unknown): number {
  if (v instanceof T.DuckDBTimestampMillisecondsValue) return Number(v.millis);
  if (v instanceof T.DuckDBTimestampValue) return Number(v.micros / 1000n);
  return num(v);
}

/** A store in a DuckDB file. */
export class DuckDbFlowStore implements FlowStore {
  readonly kind = 'duckdb';

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly conn: DuckDBConnection,
    readonly bucketMs: number,
  ) {}

  /** Opens (creating when needed) the store in `path` (`:memory:` for none). */
  static async open(path: string, options: DuckDbOptions = {}): Promise<DuckDbFlowStore> {
    const config: Record<string, string> = { memory_limit: options.memoryLimit ?? '512MB', autoinstall_known_extensions: 'false', autoload_known_extensions: 'false' };
    if (options.threads) config.threads = String(options.threads);
    const instance = await DuckDBInstance.create(path, config);
    const conn = await instance.connect();
    try {
      await conn.run(`CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)`);
      const version = await scalar(conn, `SELECT value FROM meta WHERE key = 'schema'`);
      if (version !== undefined && String(version) !== SCHEMA_VERSION) throw new Error(`${path} has flow store schema ${String(version)}; this bulkhead reads schema ${SCHEMA_VERSION}`);
      await conn.run(`CREATE TABLE IF NOT EXISTS formats (id UTINYINT PRIMARY KEY, name VARCHAR)`);
      await conn.run(`INSERT INTO formats SELECT * FROM (VALUES ${FLOW_FORMATS.map((f, i) => `(${i}, '${f}')`).join(', ')}) ON CONFLICT DO NOTHING`);
      await conn.run(`CREATE TABLE IF NOT EXISTS ingests (id UINTEGER PRIMARY KEY, source VARCHAR, started TIMESTAMP_MS, finished TIMESTAMP_MS, flows UBIGINT)`);
      await conn.run(`CREATE TABLE IF NOT EXISTS flows (${FLOW_COLUMNS.map(([n, t]) => `${n} ${t}`).join(', ')})`);
      await conn.run(`CREATE TABLE IF NOT EXISTS edges (
        bucket UINTEGER, client_hi UBIGINT, client_lo UBIGINT, server_hi UBIGINT, server_lo UBIGINT, proto UTINYINT, port USMALLINT,
        flows UBIGINT, packets UBIGINT, bytes UBIGINT, rejected UBIGINT, first_ms TIMESTAMP_MS, last_ms TIMESTAMP_MS)`);
      let bucketMinutes = num(await scalar(conn, `SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'bucket_minutes'`));
      if (!bucketMinutes) {
        bucketMinutes = options.bucketMinutes ?? 60;
        if (!Number.isInteger(bucketMinutes) || bucketMinutes < 1 || bucketMinutes > 10080) throw new RangeError(`the bucket length must be 1 to 10080 minutes, not ${bucketMinutes}`);
        await conn.run(`INSERT INTO meta VALUES ('schema', '${SCHEMA_VERSION}'), ('bucket_minutes', '${bucketMinutes}') ON CONFLICT DO NOTHING`);
      }
      return new DuckDbFlowStore(instance, conn, bucketMinutes * 60000);
    } catch (e) {
      conn.closeSync();
      instance.closeSync();
      throw e;
    }
  }

  async beginIngest(source: string): Promise<IngestRun> {
    const id = num(await scalar(this.conn, `SELECT COALESCE(MAX(id), 0) + 1 FROM ingests`));
    await this.conn.run(`INSERT INTO ingests VALUES ($id, $source, $now, NULL, 0)`, { id, source, now: new T.DuckDBTimestampMillisecondsValue(BigInt(Date.now())) });
    const appender = await this.conn.createAppender('flows');
    return new DuckDbIngestRun(id, this.conn, appender, this.bucketMs);
  }

  async edges(filter: EdgeFilter = {}): Promise<EdgeRow[]> {
    const where = this.where(filter, 'port');
    const r = await this.conn.runAndReadAll(
      `SELECT client_hi, client_lo, server_hi, server_lo, proto, port, SUM(flows), SUM(packets), SUM(bytes), SUM(rejected), MIN(first_ms), MAX(last_ms)
       FROM edges ${where} GROUP BY ALL ORDER BY client_hi, client_lo, server_hi, server_lo, proto, port`,
    );
    const cols = r.getColumns();
    const n = r.currentRowCount;
    const out: EdgeRow[] = new Array(n);
    for (let i = 0; i < n; i++) {
      out[i] = {
        client: addrOfParts(cols[0][i] as bigint, cols[1][i] as bigint),
        server: addrOfParts(cols[2][i] as bigint, cols[3][i] as bigint),
        proto: num(cols[4][i]),
        port: num(cols[5][i]),
        flows: num(cols[6][i]),
        packets: num(cols[7][i]),
        bytes: num(cols[8][i]),
        rejected: num(cols[9][i]),
        first: ms(cols[10][i]),
        last: ms(cols[11][i]),
      };
    }
    return out;
  }

  async flows(filter: EdgeFilter & { limit?: number } = {}): Promise<StoredFlow[]> {
    const where = this.where(filter, 'port');
    const limit = Math.max(0, Math.floor(filter.limit ?? 1000));
    const r = await this.conn.runAndReadAll(
      `SELECT start_ms, end_ms, src_hi, src_lo, dst_hi, dst_lo, proto, src_port, dst_port, packets, bytes, action, tcp_flags, initiator, server, format, bucket
       FROM flows ${where} ORDER BY start_ms, ingest, src_hi, src_lo, dst_hi, dst_lo, src_port, dst_port LIMIT ${limit}`,
    );
    return r.getRows().map((c) => ({
      start: ms(c[0]),
      end: ms(c[1]),
      src: addrOfParts(c[2] as bigint, c[3] as bigint),
      dst: addrOfParts(c[4] as bigint, c[5] as bigint),
      proto: num(c[6]),
      srcPort: num(c[7]),
      dstPort: num(c[8]),
      packets: num(c[9]),
      bytes: num(c[10]),
      action: num(c[11]),
      tcpFlags: num(c[12]),
      initiator: num(c[13]),
      server: num(c[14]),
      format: FLOW_FORMATS[num(c[15])] ?? 'unknown',
      bucket: num(c[16]),
    }));
  }

  /** The WHERE clause of a filter (numbers only, so it is built as text safely). */
  private where(f: EdgeFilter, portColumn: string): string {
    const parts: string[] = [];
    const b = this.bucketMs;
    if (f.since !== undefined) parts.push(`bucket >= ${Math.floor(f.since / b)}`);
    if (f.until !== undefined) parts.push(`bucket < ${Math.ceil(f.until / b)}`);
    if (f.proto !== undefined) parts.push(`proto = ${Math.floor(f.proto)}`);
    if (f.port !== undefined) parts.push(`${portColumn} = ${Math.floor(f.port)}`);
    return parts.length ? `WHERE ${parts.join(' AND ')}` : '';
  }

  async setRetentionDays(days: number | undefined): Promise<void> {
    if (days === undefined) {
      await this.conn.run(`DELETE FROM meta WHERE key = 'retention_days'`);
      return;
    }
    if (!(days > 0) || !Number.isFinite(days)) throw new RangeError(`retention must be a positive number of days, not ${days}`);
    await this.conn.run(`INSERT OR REPLACE INTO meta VALUES ('retention_days', $v)`, { v: String(days) });
  }

  private async retentionDays(): Promise<number | undefined> {
    const v = await scalar(this.conn, `SELECT value FROM meta WHERE key = 'retention_days'`);
    return v === undefined ? undefined : Number(v);
  }

  async applyRetention(now: number): Promise<RetentionResult | undefined> {
    const days = await this.retentionDays();
    if (days === undefined) return undefined;
    const cutoff = now - days * 86400000;
    // Whole buckets only: a bucket is removed when it ends at or before the cutoff.
    const bucket = Math.floor(cutoff / this.bucketMs);
    const f = await this.conn.run(`DELETE FROM flows WHERE bucket < ${bucket}`);
    const e = await this.conn.run(`DELETE FROM edges WHERE bucket < ${bucket}`);
    return { cutoff: bucket * this.bucketMs, flowsDeleted: f.rowsChanged, edgesDeleted: e.rowsChanged };
  }

  async stats(): Promise<StoreStats> {
    const r = await this.conn.runAndReadAll(`SELECT (SELECT COUNT(*) FROM flows), (SELECT COUNT(*) FROM edges), (SELECT MIN(first_ms) FROM edges), (SELECT MAX(last_ms) FROM edges), (SELECT COUNT(*) FROM ingests)`);
    const row = r.getRows()[0];
    const retentionDays = await this.retentionDays();
    return {
      flows: num(row[0]),
      edges: num(row[1]),
      ...(row[2] !== null ? { first: ms(row[2]), last: ms(row[3]) } : {}),
      ...(retentionDays !== undefined ? { retentionDays } : {}),
      ingests: num(row[4]),
      bucketMs: this.bucketMs,
    };
  }

  async close(): Promise<void> {
    try {
      await this.conn.run('CHECKPOINT');
    } finally {
      this.conn.closeSync();
      this.instance.closeSync();
    }
  }
}

/** Runs between merges of the edges' partial sums. */
const COMPACT_EVERY = 16;

/** Merges the partial sums of the edges table into one row per key and bucket. */
async function compactEdges(conn: DuckDBConnection): Promise<void> {
  await conn.run('BEGIN TRANSACTION');
  try {
    await conn.run(`CREATE TEMP TABLE edges_merged AS
      SELECT bucket, client_hi, client_lo, server_hi, server_lo, proto, port, SUM(flows) AS flows, SUM(packets) AS packets, SUM(bytes) AS bytes,
        SUM(rejected) AS rejected, MIN(first_ms) AS first_ms, MAX(last_ms) AS last_ms
      FROM edges GROUP BY ALL`);
    await conn.run('DELETE FROM edges');
    await conn.run('INSERT INTO edges SELECT * FROM edges_merged');
    await conn.run('DROP TABLE edges_merged');
    await conn.run('COMMIT');
  } catch (e) {
    await conn.run('ROLLBACK');
    throw e;
  }
}

async function scalar(conn: DuckDBConnection, sql: string): Promise<unknown> {
  const r = await conn.runAndReadAll(sql);
  const rows = r.getRows();
  return rows.length > 0 ? (rows[0][0] ?? undefined) : undefined;
}

/** One ingest run's appender: columns copied into a reused data chunk. */
class DuckDbIngestRun implements IngestRun {
  private readonly chunk: DuckDBDataChunk;
  private readonly bufs: ArrayBuffer[];
  private readonly u32: Uint32Array[];
  private readonly u16: Uint16Array[];
  private readonly u8: Uint8Array[];
  private readonly i16: Int16Array[];
  private readonly cap: number;
  private count = 0;
  private finished = false;

  constructor(
    readonly id: number,
    private readonly conn: DuckDBConnection,
    private readonly appender: DuckDBAppender,
    private readonly bucketMs: number,
  ) {
    this.cap = duckdb.vector_size();
    this.chunk = DuckDBDataChunk.create(FLOW_COLUMNS.map((c) => c[2]));
    this.bufs = FLOW_COLUMNS.map((c) => new ArrayBuffer(c[3] * this.cap));
    this.u32 = this.bufs.map((b) => new Uint32Array(b, 0, b.byteLength >>> 2));
    this.u16 = this.bufs.map((b) => new Uint16Array(b, 0, b.byteLength >>> 1));
    this.u8 = this.bufs.map((b) => new Uint8Array(b));
    this.i16 = this.bufs.map((b) => new Int16Array(b, 0, b.byteLength >>> 1));
  }

  append(b: FlowBatch, server: Uint8Array, port: Uint16Array): void {
    if (this.finished) throw new Error('this ingest run is finished');
    for (let off = 0; off < b.length; off += this.cap) this.slice(b, server, port, off, Math.min(b.length, off + this.cap));
  }

  private slice(b: FlowBatch, server: Uint8Array, port: Uint16Array, from: number, to: number): void {
    const n = to - from;
    const id = this.id;
    const bms = this.bucketMs;
    const ingest = this.u32[C.ingest];
    const bucket = this.u32[C.bucket];
    const st = this.u32[C.start_ms];
    const en = this.u32[C.end_ms];
    const sh = this.u32[C.src_hi];
    const sl = this.u32[C.src_lo];
    const dh = this.u32[C.dst_hi];
    const dl = this.u32[C.dst_lo];
    const pk = this.u32[C.packets];
    const by = this.u32[C.bytes];
    const sp = this.u16[C.src_port];
    const dp = this.u16[C.dst_port];
    const pr = this.u8[C.proto];
    const ac = this.u8[C.action];
    const fl = this.i16[C.tcp_flags];
    const ini = this.u8[C.initiator];
    const sv = this.u8[C.server];
    const po = this.u16[C.port];
    const fm = this.u8[C.format];
    for (let k = 0; k < n; k++) {
      const i = from + k;
      const k2 = k * 2;
      ingest[k] = id;
      const s = b.start[i];
      const e = b.end[i];
      bucket[k] = Math.floor(s / bms);
      st[k2] = s % TWO32;
      st[k2 + 1] = Math.floor(s / TWO32);
      en[k2] = e % TWO32;
      en[k2 + 1] = Math.floor(e / TWO32);
      const fam = b.v6[i];
      if (fam & V6.src) {
        const w = i * 4;
        sh[k2] = b.src6[w + 1];
        sh[k2 + 1] = b.src6[w];
        sl[k2] = b.src6[w + 3];
        sl[k2 + 1] = b.src6[w + 2];
      } else {
        sh[k2] = 0;
        sh[k2 + 1] = 0;
        sl[k2] = b.src4[i];
        sl[k2 + 1] = MAPPED;
      }
      if (fam & V6.dst) {
        const w = i * 4;
        dh[k2] = b.dst6[w + 1];
        dh[k2 + 1] = b.dst6[w];
        dl[k2] = b.dst6[w + 3];
        dl[k2 + 1] = b.dst6[w + 2];
      } else {
        dh[k2] = 0;
        dh[k2 + 1] = 0;
        dl[k2] = b.dst4[i];
        dl[k2 + 1] = MAPPED;
      }
      const p = b.packets[i];
      pk[k2] = p % TWO32;
      pk[k2 + 1] = Math.floor(p / TWO32);
      const y = b.bytes[i];
      by[k2] = y % TWO32;
      by[k2 + 1] = Math.floor(y / TWO32);
      sp[k] = b.srcPort[i];
      dp[k] = b.dstPort[i];
      pr[k] = b.proto[i];
      ac[k] = b.action[i];
      fl[k] = b.tcpFlags[i];
      ini[k] = b.initiator[i];
      sv[k] = server[i];
      po[k] = port[i];
      fm[k] = b.format[i];
    }
    const raw = this.chunk.chunk;
    for (let c = 0; c < FLOW_COLUMNS.length; c++) {
      duckdb.copy_data_to_vector(duckdb.data_chunk_get_vector(raw, c), 0, this.bufs[c], 0, FLOW_COLUMNS[c][3] * n);
    }
    this.chunk.rowCount = n;
    this.appender.appendDataChunk(this.chunk);
    this.chunk.reset();
    this.count += n;
  }

  async abort(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    try {
      this.appender.closeSync();
    } catch {
      // whatever it held is removed below
    }
    // The appender may have flushed rows on its own (every few row groups): they go, with the run.
    await this.conn.run(`DELETE FROM flows WHERE ingest = ${this.id}`);
    await this.conn.run(`DELETE FROM ingests WHERE id = ${this.id}`);
  }

  async finish(): Promise<IngestSummary> {
    if (this.finished) throw new Error('this ingest run is finished');
    this.finished = true;
    this.appender.closeSync();
    const t0 = performance.now();
    let edges = 0;
    // The edge sums and the run's end go in together; if they cannot, the run's rows go too, so a caller that is told
    // it failed can send it all again without counting anything twice.
    try {
      await this.conn.run('BEGIN TRANSACTION');
      if (this.count > 0) {
        const r = await this.conn.run(`INSERT INTO edges
          SELECT bucket,
            CASE WHEN server = 2 THEN dst_hi ELSE src_hi END, CASE WHEN server = 2 THEN dst_lo ELSE src_lo END,
            CASE WHEN server = 2 THEN src_hi ELSE dst_hi END, CASE WHEN server = 2 THEN src_lo ELSE dst_lo END,
            proto, port, COUNT(*), SUM(packets), SUM(bytes), COUNT(*) FILTER (WHERE action = 2), MIN(start_ms), MAX(end_ms)
          FROM flows WHERE ingest = ${this.id} GROUP BY ALL`);
        edges = r.rowsChanged;
      }
      await this.conn.run(`UPDATE ingests SET finished = $now, flows = ${this.count} WHERE id = ${this.id}`, { now: new T.DuckDBTimestampMillisecondsValue(BigInt(Date.now())) });
      await this.conn.run('COMMIT');
    } catch (e) {
      await this.conn.run('ROLLBACK').catch(() => undefined);
      await this.conn.run(`DELETE FROM flows WHERE ingest = ${this.id}`).catch(() => undefined);
      await this.conn.run(`DELETE FROM ingests WHERE id = ${this.id}`).catch(() => undefined);
      throw e;
    }
    // Each run adds its own sums; now and then they are merged, so the table stays near one row per key and bucket.
    // The run is stored by now: a merge that fails (it rolls back) is left to a later run, not reported as this one failing.
    if (this.count > 0 && this.id % COMPACT_EVERY === 0) await compactEdges(this.conn).catch(() => undefined);
    return { id: this.id, flows: this.count, edges, aggregateMs: performance.now() - t0 };
  }

}
