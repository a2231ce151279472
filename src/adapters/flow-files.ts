/**
 * Reading flow files: streamed in chunks (never whole), gunzipped when they
 * start with the gzip magic (any name), the format detected from the first
 * decompressed bytes unless given, and every chunk handed to the format's
 * decoder. Memory stays bounded by the chunk size and the decoder's caps,
 * whatever the file size.
 */
import { open, stat } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { detectFormat, DETECT_BYTES, type Detection } from '../flows/detect.js';
import { createDecoder, NetflowFileDecoder, type DecoderName, type DecoderOptions } from '../flows/formats/index.js';
import type { NetflowStats } from '../flows/formats/netflow.js';
import { BadRecords, FLOW_BATCH_COLUMNS, FlowBatch, FlowOut, type BadRecord, type FlowBatchColumns } from '../flows/record.js';
import { foldPorts, ServerInference, type PortRange } from '../flows/attribute.js';
import { isMainThread, parentPort, workerData, type Worker } from 'node:worker_threads';
import { spawnModule } from './worker.js';

/** Progress of one file, for a progress bar. */
export interface FileProgress {
  /** Bytes of the file read so far (compressed bytes for a gzip file). */
  readonly bytesRead: number;
  /** The file's size in bytes. */
  readonly totalBytes: number;
  /** Records decoded so far (this file). */
  readonly records: number;
}

/** Options of {@link readFlowFile}. */
export interface ReadFlowFileOptions extends DecoderOptions {
  /** The format; detected from the content when absent. */
  readonly format?: DecoderName;
  /** Bytes per read (default 1 MiB). */
  readonly chunkSize?: number;
  /** Told after every chunk. */
  readonly onProgress?: (p: FileProgress) => void;
  /** Stops reading (the result covers what was read). */
  readonly signal?: AbortSignal;
}

/** What reading one file did. */
export interface FlowFileResult {
  readonly path: string;
  readonly format: DecoderName;
  /** How the format was chosen: `given`, or the detector's reason. */
  readonly why: string;
  readonly gzip: boolean;
  /** Bytes of the file read (compressed, for gzip) and after decompression. */
  readonly bytes: number;
  readonly decompressedBytes: number;
  /** Records this file produced. */
  readonly records: number;
  readonly ms: number;
  /** Template and skip counts, for NetFlow/IPFIX. */
  readonly netflow?: NetflowStats;
}

/** A file whose format cannot be told; the message says why and what to do. */
export class UnknownFormatError extends Error {}

/**
 * Reads one flow file into `out` (rows and bad records). The caller flushes
 * `out` when it is done with all files. Throws UnknownFormatError when the
 * format is not given and cannot be told from the content, and the file
 * system's errors (missing file, permissions) as they come.
 */
export async function readFlowFile(path: string, out: FlowOut, options: ReadFlowFileOptions = {}): Promise<FlowFileResult> {
  const t0 = performance.now();
  const st = await stat(path);
  if (st.isDirectory()) throw new Error(`${path} is a directory, not a flow file`);
  const total = st.size;
  const chunkSize = options.chunkSize ?? 1 << 20;
  const startRecords = out.records;
  const fh = await open(path, 'r');
  let magic: Uint8Array;
  try {
    const head = new Uint8Array(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    magic = head.subarray(0, bytesRead);
  } catch (e) {
    await fh.close();
    throw e;
  }
  const gzip = magic.length === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
  let bytesRead = 0;
  let decompressed = 0;
  let decoder: ReturnType<typeof createDecoder> | undefined;
  let format: DecoderName | undefined = options.format;
  let why = 'given';
  const pending: Uint8Array[] = [];
  let pendingLen = 0;
  const decoderOptions: DecoderOptions = { ...options, time: options.time ?? st.mtimeMs };

  const start = (det?: Detection) => {
    if (!format) {
      if (!det || !det.format) throw new UnknownFormatError(`cannot tell the format of ${path}: ${det?.why ?? 'no data'}; give it with --format (${'aws-vpc, zeek, zeek-json, conntrack, csv, netflow, hubble, calico, azure-nsg, azure-vnet, gcp'})`);
      format = det.format;
      why = det.why;
      if (det.format === 'csv' && !decoderOptions.csv && det.csv) Object.assign(decoderOptions, { csv: det.csv, delimiter: det.delimiter ?? ',' });
    }
    decoder = createDecoder(format, out, decoderOptions);
  };
  const feed = (chunk: Uint8Array) => {
    decompressed += chunk.length;
    if (decoder) {
      decoder.push(chunk);
      return;
    }
    // Before the decoder: gather enough to detect the format (a copy: the read buffer is reused).
    pending.push(chunk.slice());
    pendingLen += chunk.length;
    if (pendingLen >= DETECT_BYTES) flushPending();
  };
  const flushPending = () => {
    if (decoder) return;
    const all = new Uint8Array(pendingLen);
    let o = 0;
    for (const p of pending) {
      all.set(p, o);
      o += p.length;
    }
    pending.length = 0;
    pendingLen = 0;
    start(format ? undefined : detectFormat(all.subarray(0, DETECT_BYTES)));
    if (all.length > 0) decoder!.push(all);
  };
  const progress = () => options.onProgress?.({ bytesRead, totalBytes: total, records: out.records - startRecords });

  try {
    if (gzip) {
      await fh.close();
      const raw = createReadStream(path, { highWaterMark: chunkSize });
      raw.on('data', (c) => (bytesRead += c.length));
      const gunzip = createGunzip({ chunkSize: 256 * 1024 });
      raw.pipe(gunzip);
      raw.on('error', (e) => gunzip.destroy(e));
      try {
        for await (const chunk of gunzip) {
          if (options.signal?.aborted) break;
          feed(chunk as Uint8Array);
          progress();
        }
      } finally {
        raw.destroy();
        gunzip.destroy();
      }
    } else {
      const buf = new Uint8Array(chunkSize);
      try {
        for (;;) {
          if (options.signal?.aborted) break;
          const { bytesRead: n } = await fh.read(buf, 0, chunkSize, null);
          if (n === 0) break;
          bytesRead += n;
          feed(buf.subarray(0, n));
          progress();
        }
      } finally {
        await fh.close();
      }
    }
  } catch (e) {
    if (e instanceof UnknownFormatError) throw e;
    const msg = (e as Error).message;
    if (gzip && /unexpected end of file|incorrect header check|invalid/i.test(msg)) {
      // A damaged gzip stream: keep what was decompressed, report the rest as one bad record.
      if (!decoder) flushPending();
      out.bad.add({ reason: 'damaged gzip data (the rest of the file is unreadable)', line: 0, detail: msg });
    } else throw e;
  }
  if (!decoder) flushPending();
  decoder!.end();
  const netflow = decoder instanceof NetflowFileDecoder ? decoder.stats : undefined;
  return { path, format: format!, why, gzip, bytes: bytesRead, decompressedBytes: decompressed, records: out.records - startRecords, ms: performance.now() - t0, ...(netflow ? { netflow } : {}) };
}

// ---------------------------------------------------------------- reading in a worker thread

/** Options of {@link readFlowFilesInWorker}. */
export interface WorkerReadOptions extends DecoderOptions {
  readonly format?: DecoderName;
  /** The policy's service port ranges, for the server-side inference. */
  readonly servicePorts?: readonly PortRange[];
  /** Told after every chunk, with the index of the file being read. */
  readonly onProgress?: (file: number, p: FileProgress) => void;
  /** Rows per batch handed over (default 16384). */
  readonly batchRows?: number;
}

/** One file's outcome, from the worker. */
export interface WorkerFileResult {
  readonly path: string;
  readonly result?: FlowFileResult;
  readonly bad: BadRecords;
  /** Why it could not be read (the file system's or the detector's message). */
  readonly error?: string;
  readonly unknownFormat?: boolean;
}

/** Batches in flight between the worker and the caller, at most (bounds memory: about 1.3 MB each). */
const MAX_IN_FLIGHT = 8;

interface WorkerInput {
  readonly bulkheadFlowReader: true;
  readonly paths: readonly string[];
  readonly options: Omit<WorkerReadOptions, 'onProgress'>;
  /** Int32: batches posted and not yet returned. */
  readonly credit: SharedArrayBuffer;
}

type WorkerMessage =
  | { type: 'batch'; length: number; columns: FlowBatchColumns; server: Uint8Array; port: Uint16Array }
  | { type: 'progress'; file: number; progress: FileProgress }
  | { type: 'file'; file: WorkerFileResultWire }
  | { type: 'done'; reasons: number[] }
  | { type: 'error'; message: string };

interface WorkerFileResultWire {
  path: string;
  result?: FlowFileResult;
  counts: [string, number][];
  examples: [string, BadRecord[]][];
  error?: string;
  unknownFormat?: boolean;
}

/**
 * Reads flow files in a worker thread: reading, decompression, decoding, the
 * server-side inference and port folding happen there, while the caller's
 * thread takes the finished batches (`onBatch`, synchronously: the store's
 * appender). At most a few batches are in flight, so memory stays bounded
 * whatever the files' size. The server-side evidence spans all the files.
 */
export function readFlowFilesInWorker(
  paths: readonly string[],
  options: WorkerReadOptions,
  onBatch: (batch: FlowBatch, server: Uint8Array, port: Uint16Array) => void,
): Promise<{ files: WorkerFileResult[]; reasons: number[] }> {
  const credit = new SharedArrayBuffer(4);
  const inFlight = new Int32Array(credit);
  const { onProgress, ...rest } = options;
  const input: WorkerInput = { bulkheadFlowReader: true, paths, options: rest, credit };
  const worker = spawnSelf(input);
  const files: WorkerFileResult[] = [];
  return new Promise((resolve, reject) => {
    let settled = false;
    worker.on('message', (m: WorkerMessage) => {
      try {
        if (m.type === 'batch') {
          onBatch(new FlowBatch(m.columns.start.length, m.columns).withLength(m.length), m.server, m.port);
          Atomics.sub(inFlight, 0, 1);
          Atomics.notify(inFlight, 0);
        } else if (m.type === 'progress') onProgress?.(m.file, m.progress);
        else if (m.type === 'file') {
          const bad = new BadRecords(5);
          for (const [reason, n] of m.file.counts) bad.counts.set(reason, n);
          for (const [reason, ex] of m.file.examples) bad.examples.set(reason, ex);
          files.push({ path: m.file.path, bad, ...(m.file.result ? { result: m.file.result } : {}), ...(m.file.error ? { error: m.file.error } : {}), ...(m.file.unknownFormat ? { unknownFormat: true } : {}) });
        } else if (m.type === 'done') {
          settled = true;
          resolve({ files, reasons: m.reasons });
        } else if (m.type === 'error') {
          settled = true;
          reject(new Error(m.message));
        }
      } catch (e) {
        settled = true;
        void worker.terminate();
        reject(e);
      }
    });
    worker.on('error', (e) => {
      if (!settled) {
        settled = true;
        reject(e);
      }
    });
    worker.on('exit', (code) => {
      if (!settled) {
        settled = true;
        reject(new Error(`the flow reader thread stopped (exit code ${code})`));
      }
    });
  });
}

/** A worker running this module. */
function spawnSelf(input: WorkerInput): Worker {
  return spawnModule(import.meta.url, input);
}

/** The worker's side of {@link readFlowFilesInWorker}. */
async function workerMain(input: WorkerInput): Promise<void> {
  const port0 = parentPort!;
  const inFlight = new Int32Array(input.credit);
  const rows = input.options.batchRows ?? 16384;
  const inference = new ServerInference(input.options.servicePorts ?? []);
  const server = new Uint8Array(rows);
  const folded = new Uint16Array(rows);
  const post = (b: FlowBatch) => {
    inference.orient(b, server);
    foldPorts(b, server, folded);
    // Wait (bounded) for the caller to take earlier batches.
    while (Atomics.load(inFlight, 0) >= MAX_IN_FLIGHT) Atomics.wait(inFlight, 0, Atomics.load(inFlight, 0), 50);
    const n = b.length;
    const columns = {} as Record<string, unknown>;
    const transfer: ArrayBuffer[] = [];
    for (const [name, width] of FLOW_BATCH_COLUMNS) {
      const src = b[name];
      const copy = src.slice(0, n * width);
      columns[name] = copy;
      transfer.push(copy.buffer as ArrayBuffer);
    }
    const s = server.slice(0, n);
    const p = folded.slice(0, n);
    transfer.push(s.buffer, p.buffer);
    Atomics.add(inFlight, 0, 1);
    port0.postMessage({ type: 'batch', length: n, columns: columns as unknown as FlowBatchColumns, server: s, port: p } satisfies WorkerMessage, transfer);
  };
  try {
    for (let k = 0; k < input.paths.length; k++) {
      const path = input.paths[k];
      const bad = new BadRecords(5);
      const out = new FlowOut(post, bad, rows);
      const wire: WorkerFileResultWire = { path, counts: [], examples: [] };
      try {
        wire.result = await readFlowFile(path, out, { ...input.options, onProgress: (progress) => port0.postMessage({ type: 'progress', file: k, progress } satisfies WorkerMessage) });
      } catch (e) {
        wire.error = e instanceof UnknownFormatError ? e.message : `cannot read ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`;
        if (e instanceof UnknownFormatError) wire.unknownFormat = true;
      }
      out.flush();
      wire.counts = [...bad.counts];
      wire.examples = [...bad.examples];
      port0.postMessage({ type: 'file', file: wire } satisfies WorkerMessage);
    }
    port0.postMessage({ type: 'done', reasons: [...inference.reasons] } satisfies WorkerMessage);
  } catch (e) {
    port0.postMessage({ type: 'error', message: (e as Error).message } satisfies WorkerMessage);
  }
}

if (!isMainThread && (workerData as Partial<WorkerInput> | null)?.bulkheadFlowReader === true) void workerMain(workerData as WorkerInput);
