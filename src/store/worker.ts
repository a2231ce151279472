/**
 * The flow store in a worker thread, behind the {@link FlowStore} interface.
 *
 * DuckDB's appender closes synchronously (it stores the run's rows then),
 * and every query's continuation waits for the caller's thread: on the
 * server's one JavaScript thread, busy parsing agents' batches, a group
 * commit took twice as long as the store needs. Here the store has a thread
 * of its own: the caller posts copies of its batches and awaits answers.
 *
 * Messages are ordered, so a run's appends reach the store before its
 * finish. An append that fails in the worker fails the run's finish, and
 * none of the run's rows are kept (they will be sent again). If the
 * worker dies, every pending and later call fails with the reason: nothing
 * is acknowledged that was not stored.
 */
import { isMainThread, parentPort, workerData, type Worker } from 'node:worker_threads';
import { FLOW_BATCH_COLUMNS, FlowBatch, type FlowBatchColumns } from '../flows/record.js';
import { spawnModule } from '../adapters/worker.js';
import { DuckDbFlowStore, type DuckDbOptions } from './flows-duckdb.js';
import type { EdgeFilter, EdgeRow, FlowStore, IngestRun, IngestSummary, RetentionResult, StoreStats, StoredFlow } from './flows.js';

interface WorkerInput {
  readonly bulkheadFlowStore: true;
  readonly path: string;
  readonly options: DuckDbOptions;
}

type Call =
  | { op: 'begin'; source: string }
  | { op: 'edges'; filter?: EdgeFilter }
  | { op: 'flows'; filter?: EdgeFilter & { limit?: number } }
  | { op: 'setRetentionDays'; days: number | undefined }
  | { op: 'applyRetention'; now: number }
  | { op: 'stats' }
  | { op: 'finish'; run: number }
  | { op: 'abort'; run: number }
  | { op: 'close' };

/** An append: no answer (a failure shows at the run's finish). */
interface Append {
  readonly op: 'append';
  readonly run: number;
  readonly length: number;
  readonly columns: FlowBatchColumns;
  readonly server: Uint8Array;
  readonly port: Uint16Array;
}

type Answer = { id: number; ok: true; value: unknown } | { id: number; ok: false; message: string };

/** A DuckDB flow store run by a worker thread. */
export class WorkerFlowStore implements FlowStore {
  readonly kind = 'duckdb';
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private dead?: Error;
  private closing = false;
  /** Told once if the thread dies while the store is open (not on {@link close}). */
  onDeath?: (e: Error) => void;

  private constructor(
    private readonly worker: Worker,
    readonly bucketMs: number,
  ) {
    worker.on('message', (a: Answer) => {
      const p = this.pending.get(a.id);
      if (!p) return;
      this.pending.delete(a.id);
      if (a.ok) p.resolve(a.value);
      else p.reject(new Error(a.message));
    });
    worker.on('error', (e) => this.die(new Error(`the flow store thread failed: ${e.message}`)));
    worker.on('exit', (code) => this.die(new Error(`the flow store thread stopped (exit code ${code})`)));
  }

  /** Opens the store in `path` in a new worker; fails as {@link DuckDbFlowStore.open} does. */
  static async open(path: string, options: DuckDbOptions = {}): Promise<WorkerFlowStore> {
    const input: WorkerInput = { bulkheadFlowStore: true, path, options };
    const worker = spawnModule(import.meta.url, input);
    const opened = await new Promise<{ bucketMs: number }>((resolve, reject) => {
      const onExit = (code: number) => reject(new Error(`the flow store thread stopped while opening (exit code ${code})`));
      worker.once('error', reject);
      worker.once('exit', onExit);
      worker.once('message', (a: Answer) => {
        worker.off('error', reject);
        worker.off('exit', onExit);
        if (a.ok) resolve(a.value as { bucketMs: number });
        else reject(new Error(a.message));
      });
    }).catch(async (e: Error) => {
      await ended(worker);
      throw e;
    });
    return new WorkerFlowStore(worker, opened.bucketMs);
  }

  /** Why the store cannot answer, if it cannot (the thread died, or the store is closed). */
  get failure(): Error | undefined {
    return this.dead;
  }

  private die(e: Error): void {
    if (!this.dead && !this.closing) this.onDeath?.(e);
    this.dead ??= e;
    for (const p of this.pending.values()) p.reject(this.dead);
    this.pending.clear();
  }

  private call<T>(c: Call): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, ...c });
    });
  }

  /** Posts a run's batch: copies of its used rows, handed over without a second copy. */
  append(run: number, b: FlowBatch, server: Uint8Array, port: Uint16Array): void {
    if (this.dead) throw this.dead;
    const n = b.length;
    const columns = {} as Record<keyof FlowBatchColumns, FlowBatchColumns[keyof FlowBatchColumns]>;
    const transfer: ArrayBuffer[] = [];
    for (const [name, width] of FLOW_BATCH_COLUMNS) {
      const col = b[name].slice(0, n * width);
      columns[name] = col;
      transfer.push(col.buffer as ArrayBuffer);
    }
    const s = server.slice(0, n);
    const p = port.slice(0, n);
    transfer.push(s.buffer as ArrayBuffer, p.buffer as ArrayBuffer);
    const msg: Append = { op: 'append', run, length: n, columns: columns as unknown as FlowBatchColumns, server: s, port: p };
    this.worker.postMessage(msg, transfer);
  }

  async beginIngest(source: string): Promise<IngestRun> {
    const { run, id } = await this.call<{ run: number; id: number }>({ op: 'begin', source });
    return new WorkerIngestRun(this, run, id);
  }

  /** Ends a run: stores it ({@link IngestRun.finish}), or gives it up. */
  endRun(run: number, how: 'finish'): Promise<IngestSummary>;
  endRun(run: number, how: 'abort'): Promise<void>;
  endRun(run: number, how: 'finish' | 'abort'): Promise<IngestSummary | void> {
    return this.call({ op: how, run });
  }

  edges(filter?: EdgeFilter): Promise<EdgeRow[]> {
    return this.call({ op: 'edges', filter });
  }

  flows(filter?: EdgeFilter & { limit?: number }): Promise<StoredFlow[]> {
    return this.call({ op: 'flows', filter });
  }

  setRetentionDays(days: number | undefined): Promise<void> {
    return this.call({ op: 'setRetentionDays', days });
  }

  applyRetention(now: number): Promise<RetentionResult | undefined> {
    return this.call({ op: 'applyRetention', now });
  }

  stats(): Promise<StoreStats> {
    return this.call({ op: 'stats' });
  }

  async close(): Promise<void> {
    if (this.dead) return;
    this.closing = true;
    try {
      await this.call({ op: 'close' });
    } finally {
      this.die(new Error('the flow store is closed'));
      await ended(this.worker);
    }
  }
}

/**
 * Waits for a worker that is ending by itself (its store closed, its port
 * closed), terminating it only if it has not ended within 5 s: terminating a
 * thread that still holds DuckDB objects can abort the process as their
 * finalizers run.
 */
async function ended(worker: Worker): Promise<void> {
  if (worker.threadId === -1) return;
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  const late = setTimeout(() => void worker.terminate(), 5000);
  await exited;
  clearTimeout(late);
}

class WorkerIngestRun implements IngestRun {
  private finished = false;

  constructor(
    private readonly store: WorkerFlowStore,
    private readonly run: number,
    readonly id: number,
  ) {}

  append(batch: FlowBatch, server: Uint8Array, port: Uint16Array): void {
    if (this.finished) throw new Error('this ingest run is finished');
    if (batch.length > 0) this.store.append(this.run, batch, server, port);
  }

  finish(): Promise<IngestSummary> {
    if (this.finished) return Promise.reject(new Error('this ingest run is finished'));
    this.finished = true;
    return this.store.endRun(this.run, 'finish');
  }

  abort(): Promise<void> {
    if (this.finished) return Promise.resolve();
    this.finished = true;
    return this.store.endRun(this.run, 'abort');
  }
}

// ---------------------------------------------------------------- the worker's side

async function workerMain(input: WorkerInput): Promise<void> {
  const port = parentPort!;
  let store: DuckDbFlowStore;
  try {
    store = await DuckDbFlowStore.open(input.path, input.options);
  } catch (e) {
    port.postMessage({ id: 0, ok: false, message: (e as Error).message } satisfies Answer);
    return;
  }
  port.postMessage({ id: 0, ok: true, value: { bucketMs: store.bucketMs } } satisfies Answer);
  const runs = new Map<number, { run: IngestRun; failed?: Error }>();
  let nextRun = 1;
  // Calls run one at a time, in order (as on one connection): a run's appends before its finish.
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (m: (Call & { id: number }) | Append) => {
    if (m.op === 'close') {
      // The last message: answered once the store is closed; then the port closes and the thread ends by itself.
      queue = queue.then(async () => {
        try {
          await store.close();
          port.postMessage({ id: m.id, ok: true, value: undefined } satisfies Answer);
        } catch (e) {
          port.postMessage({ id: m.id, ok: false, message: (e as Error).message } satisfies Answer);
        }
        port.close();
      });
      return;
    }
    if (m.op === 'append') {
      // Appends are synchronous; they wait only for what was posted before them.
      queue = queue.then(() => {
        const r = runs.get(m.run);
        if (!r || r.failed) return;
        try {
          const batch = new FlowBatch(m.length, m.columns);
          batch.length = m.length;
          r.run.append(batch, m.server, m.port);
        } catch (e) {
          r.failed = e as Error;
        }
      });
      return;
    }
    queue = queue.then(async () => {
      try {
        port.postMessage({ id: m.id, ok: true, value: await serve(m) } satisfies Answer);
      } catch (e) {
        port.postMessage({ id: m.id, ok: false, message: (e as Error).message } satisfies Answer);
      }
    });
  });

  async function serve(c: Call): Promise<unknown> {
    switch (c.op) {
      case 'begin': {
        const run = await store.beginIngest(c.source);
        const handle = nextRun++;
        runs.set(handle, { run });
        return { run: handle, id: run.id };
      }
      case 'finish': {
        const r = runs.get(c.run);
        if (!r) throw new Error(`no ingest run ${c.run}`);
        runs.delete(c.run);
        if (r.failed) {
          // Nothing of a run that lost a batch is kept: its sender is told it failed and sends it all again.
          await r.run.abort();
          throw new Error(`appending to ingest run ${r.run.id} failed: ${r.failed.message}`);
        }
        return r.run.finish();
      }
      case 'abort': {
        const r = runs.get(c.run);
        runs.delete(c.run);
        await r?.run.abort();
        return undefined;
      }
      case 'edges':
        return store.edges(c.filter);
      case 'flows':
        return store.flows(c.filter);
      case 'setRetentionDays':
        return store.setRetentionDays(c.days);
      case 'applyRetention':
        return store.applyRetention(c.now);
      case 'stats':
        return store.stats();
      case 'close':
        return undefined; // handled where messages arrive
    }
  }
}

if (!isMainThread && (workerData as Partial<WorkerInput> | null)?.bulkheadFlowStore === true) void workerMain(workerData as WorkerInput);
