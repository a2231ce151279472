/**
 * `bulkhead ingest`: flow files into the flow store. Each file is streamed
 * (gzip or not), its format detected unless given, every record's server
 * side inferred (the policy's services help) and its client port folded,
 * and the raw records and the edges aggregate written to the store. Bad
 * records are counted by reason and reported with their first line numbers;
 * they never stop the rest. A progress bar shows on a terminal only.
 */
import { Option, type Command } from 'commander';
import { statSync } from 'node:fs';
import { readFlowFile, readFlowFilesInWorker, UnknownFormatError, type FlowFileResult } from '../adapters/flow-files.js';
import { foldPorts, ServerInference, SERVER_REASONS, servicePortRanges } from '../flows/attribute.js';
import { parseCsvMapping } from '../flows/formats/csv.js';
import { decoderName, DECODERS, type CsvMapping, type DecoderName } from '../flows/formats/index.js';
import { BadRecords, FlowOut, type FlowBatch } from '../flows/record.js';
import type { Policy } from '../model/types.js';
import { DuckDbFlowStore } from '../store/flows-duckdb.js';
import type { FlowStore, IngestSummary, RetentionResult } from '../store/flows.js';
import { EXIT, loadDir, UsageError, type Io } from './common.js';
import { plural } from './render.js';

/** What to ingest and how. */
export interface IngestFilesOptions {
  readonly files: readonly string[];
  readonly store: FlowStore;
  /** Its services' ports count as server ports. */
  readonly policy?: Pick<Policy, 'services'>;
  readonly format?: DecoderName;
  readonly csv?: CsvMapping;
  readonly delimiter?: string;
  readonly header?: boolean;
  /** The time of snapshots without times (default: each file's modification time), epoch ms. */
  readonly time?: number;
  readonly maxLine?: number;
  /** Told after every chunk: bytes read of all files so far, their total size, records so far, the current file. */
  readonly onProgress?: (bytes: number, total: number, records: number, file: string) => void;
  /** Applies the store's retention at this time after ingesting (default: now). */
  readonly now?: number;
  /**
   * Read and decode in a worker thread while this one stores (default: when
   * the files add up to 64 MiB or more). The results are the same.
   */
  readonly worker?: boolean;
}

/** One file's outcome. */
export interface IngestedFile {
  readonly path: string;
  readonly result?: FlowFileResult;
  readonly bad: BadRecords;
  /** Why the file could not be read at all. */
  readonly error?: string;
}

/** What {@link ingestFiles} did. */
export interface IngestReport {
  readonly files: readonly IngestedFile[];
  readonly records: number;
  readonly bad: number;
  readonly summary: IngestSummary;
  readonly retention?: RetentionResult;
  /** How many records each server-side reason decided. */
  readonly serverReasons: Readonly<Record<string, number>>;
  readonly ms: number;
}

/** Reads the files into the store: the pipeline behind `bulkhead ingest` (and the benchmark). */
export async function ingestFiles(o: IngestFilesOptions): Promise<IngestReport> {
  const t0 = performance.now();
  const inference = new ServerInference(o.policy);
  const run = await o.store.beginIngest(o.files.length === 1 ? o.files[0] : `${o.files.length} files`);
  let server = new Uint8Array(2048);
  let port = new Uint16Array(2048);
  const onBatch = (b: FlowBatch) => {
    if (b.length > server.length) {
      server = new Uint8Array(b.capacity);
      port = new Uint16Array(b.capacity);
    }
    inference.orient(b, server);
    foldPorts(b, server, port);
    run.append(b, server, port);
  };
  const sizes = o.files.map((f) => {
    try {
      return statSync(f).size;
    } catch {
      return 0;
    }
  });
  const total = sizes.reduce((a, b) => a + b, 0);
  let done = 0;
  let records = 0;
  const files: IngestedFile[] = [];
  let reasons: ArrayLike<number> = inference.reasons;
  const inWorker = o.worker ?? total >= 64 << 20;
  if (inWorker) {
    const before = sizes.map((_, k) => sizes.slice(0, k).reduce((a, b) => a + b, 0));
    let finished = 0;
    let current = 0;
    const r = await readFlowFilesInWorker(
      o.files,
      { format: o.format, csv: o.csv, delimiter: o.delimiter, header: o.header, time: o.time, maxLine: o.maxLine, servicePorts: o.policy ? servicePortRanges(o.policy) : [], onProgress: (k, p) => {
        if (k !== current) {
          current = k;
          finished = records;
        }
        o.onProgress?.(before[k] + p.bytesRead, total, finished + p.records, o.files[k]);
      } },
      (b, server, port) => {
        records += b.length;
        run.append(b, server, port);
      },
    );
    files.push(...r.files);
    reasons = r.reasons;
    done = total;
  }
  for (let k = 0; k < o.files.length && !inWorker; k++) {
    const path = o.files[k];
    const bad = new BadRecords(5);
    const out = new FlowOut(onBatch, bad);
    try {
      const result = await readFlowFile(path, out, {
        format: o.format,
        csv: o.csv,
        delimiter: o.delimiter,
        header: o.header,
        time: o.time,
        maxLine: o.maxLine,
        onProgress: (p) => o.onProgress?.(done + p.bytesRead, total, records + p.records, path),
      });
      out.flush();
      records += result.records;
      files.push({ path, result, bad });
    } catch (e) {
      out.flush();
      const msg = e instanceof UnknownFormatError ? e.message : `cannot read ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`;
      records += out.records;
      files.push({ path, bad, error: msg });
    }
    done += sizes[k];
  }
  const summary = await run.finish();
  const retention = await o.store.applyRetention(o.now ?? Date.now());
  const serverReasons: Record<string, number> = {};
  SERVER_REASONS.forEach((r, i) => {
    if (reasons[i] > 0) serverReasons[r] = reasons[i];
  });
  return { files, records, bad: files.reduce((n, f) => n + f.bad.total, 0), summary, ...(retention ? { retention } : {}), serverReasons, ms: performance.now() - t0 };
}

/** A progress bar on stderr, redrawn at most ten times a second; silent unless stderr is a terminal. */
export class ProgressBar {
  private last = 0;
  private readonly t0 = performance.now();
  private shown = false;

  constructor(private readonly write: (s: string) => void) {}

  /** Redraws the bar. */
  update(bytes: number, total: number, records: number, label: string): void {
    const now = performance.now();
    if (now - this.last < 100) return;
    this.last = now;
    const secs = (now - this.t0) / 1000;
    const frac = total > 0 ? Math.min(1, bytes / total) : 0;
    const width = 24;
    const fill = Math.round(frac * width);
    const rate = secs > 0 ? records / secs : 0;
    const eta = frac > 0.01 ? (secs / frac) * (1 - frac) : NaN;
    const mm = (s: number) => (Number.isFinite(s) ? `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}` : '-:--');
    const name = label.length > 30 ? '…' + label.slice(-29) : label;
    this.write(`\r\x1b[2K${String(Math.round(frac * 100)).padStart(3)}% [${'='.repeat(fill)}${' '.repeat(width - fill)}] ${compact(records)} records  ${compact(rate)}/s  ${mib(bytes)}/${mib(total)}  ETA ${mm(eta)}  ${name}`);
    this.shown = true;
  }

  /** Clears the bar. */
  done(): void {
    if (this.shown) this.write('\r\x1b[2K');
  }
}

function compact(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(Math.round(n));
}

function mib(n: number): string {
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

/** Parses a time given on the command line (ISO 8601), epoch ms. */
export function parseTimeOption(s: string | undefined, flag: string): number | undefined {
  if (s === undefined) return undefined;
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UsageError(`invalid time \`${s}\` for ${flag}: write ISO 8601, such as 2026-11-16T08:00:00Z`);
  return t;
}

/** A positive whole number from the command line. */
export function parseCount(s: string | undefined, flag: string): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${flag} must be a positive whole number, not \`${s}\``);
  return n;
}

/** Options of the command. */
export interface IngestCliOptions {
  store: string;
  policy?: string;
  format?: string;
  map?: string;
  delimiter?: string;
  header: boolean;
  time?: string;
  retentionDays?: string;
  bucketMinutes?: string;
  maxLineBytes?: string;
  output: string;
  quiet?: boolean;
  now?: string;
}

/** Runs `bulkhead ingest`. */
export async function runIngest(files: string[], opts: IngestCliOptions, io: Io, tty = Boolean(process.stderr.isTTY)): Promise<number> {
  let format: DecoderName | undefined;
  if (opts.format !== undefined) {
    format = decoderName(opts.format);
    if (!format) throw new UsageError(`unknown --format \`${opts.format}\`; formats: ${DECODERS.join(', ')}`);
  }
  let csv: CsvMapping | undefined;
  if (opts.map !== undefined) {
    try {
      csv = parseCsvMapping(opts.map);
    } catch (e) {
      throw new UsageError(`invalid --map: ${(e as Error).message}`);
    }
    format ??= 'csv';
  }
  if (format === 'csv' && !csv) throw new UsageError('--format csv needs --map, such as --map src=src_ip,dst=dst_ip,dport=dst_port,proto=protocol,start=time');
  const time = parseTimeOption(opts.time, '--time');
  const now = parseTimeOption(opts.now, '--now');
  const retention = parseCount(opts.retentionDays, '--retention-days');
  const bucketMinutes = parseCount(opts.bucketMinutes, '--bucket-minutes');
  const maxLine = parseCount(opts.maxLineBytes, '--max-line-bytes');
  let policy: Policy | undefined;
  if (opts.policy !== undefined) {
    const c = loadDir(opts.policy);
    if (c.diagnostics.hasErrors()) io.err(`warning: the policy in ${opts.policy} has problems (${plural(c.diagnostics.errorCount, 'error')}); using the services that loaded (run \`bulkhead validate ${opts.policy}\`)`);
    policy = c.policy;
  }
  const store = await DuckDbFlowStore.open(opts.store, { bucketMinutes });
  const bar = tty && !opts.quiet ? new ProgressBar((s) => process.stderr.write(s)) : undefined;
  let report: IngestReport;
  try {
    if (retention !== undefined) await store.setRetentionDays(retention);
    report = await ingestFiles({ files, store, policy, format, csv, delimiter: opts.delimiter, header: opts.header, time, maxLine, now, onProgress: bar ? (b, t, r, f) => bar.update(b, t, r, f) : undefined });
  } finally {
    bar?.done();
    await store.close();
  }
  const failed = report.files.filter((f) => f.error);
  if (opts.output === 'json') {
    io.out(
      JSON.stringify(
        {
          ok: failed.length === 0,
          store: opts.store,
          records: report.records,
          bad: report.bad,
          edges: report.summary.edges,
          ms: Math.round(report.ms),
          recordsPerSecond: Math.round(report.records / (report.ms / 1000)),
          serverSide: report.serverReasons,
          retention: report.retention ?? null,
          files: report.files.map((f) => ({
            path: f.path,
            ...(f.error ? { error: f.error } : {}),
            ...(f.result ? { format: f.result.format, detected: f.result.why, gzip: f.result.gzip, bytes: f.result.bytes, records: f.result.records } : {}),
            bad: Object.fromEntries([...f.bad.counts].map(([reason, n]) => [reason, { count: n, first: (f.bad.examples.get(reason) ?? []).map((b) => ({ line: b.line, ...(b.detail ? { detail: b.detail } : {}) })) }])),
          })),
        },
        null,
        2,
      ),
    );
  } else {
    for (const f of report.files) {
      if (f.error) {
        io.err(`error: ${f.error}`);
        continue;
      }
      const r = f.result!;
      io.err(`${f.path}: ${plural(r.records, 'record')} (${r.format}${r.gzip ? ', gzip' : ''}: ${r.why})${f.bad.total ? `, ${f.bad.total} bad` : ''}`);
      for (const [reason, n] of [...f.bad.counts].sort((a, b) => b[1] - a[1])) {
        const ex = f.bad.examples.get(reason) ?? [];
        const where = ex.map((b) => (b.line > 0 ? `line ${b.line}` : 'the file') + (b.detail ? ` (${b.detail})` : '')).join('; ');
        io.err(`  ${reason}: ${n}${where ? ` — ${where}${n > ex.length ? '; …' : ''}` : ''}`);
      }
    }
    const secs = report.ms / 1000;
    io.err(
      `ingested ${plural(report.records, 'flow record')} from ${plural(report.files.length - failed.length, 'file')} in ${secs.toFixed(1)} s (${Math.round(report.records / Math.max(secs, 1e-9)).toLocaleString('en-US')} records/s) into ${opts.store}: ${plural(report.summary.edges, 'edge')} written` +
        (report.bad ? `; ${plural(report.bad, 'bad record')} skipped` : ''),
    );
    if (report.retention && (report.retention.flowsDeleted || report.retention.edgesDeleted)) {
      io.err(`retention: removed ${plural(report.retention.flowsDeleted, 'flow record')} and ${plural(report.retention.edgesDeleted, 'edge')} before ${new Date(report.retention.cutoff).toISOString()}`);
    }
  }
  return failed.length > 0 ? EXIT.usage : EXIT.ok;
}

/** Adds `ingest` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('ingest')
    .description('read flow logs (AWS VPC, Azure, GCP, Zeek, NetFlow/IPFIX, conntrack, Hubble, Calico, CSV) into the flow store')
    .argument('<files...>', 'flow files, plain or gzip; the format is detected from the content')
    .requiredOption('--store <file>', 'the flow store (a DuckDB file; created when missing)')
    .option('--policy <dir>', "a policy directory: its services' ports help tell servers from clients")
    .addOption(new Option('--format <format>', 'the format, when it cannot be detected').choices([...DECODERS, 'vpc', 'ipfix', 'netflow5', 'netflow9', 'pcap', 'azure', 'zeek-tsv']))
    .option('--map <mapping>', 'csv: the column mapping, field=column,... (fields: src dst sport dport proto packets bytes start end action; a column by header name or #N; const:VALUE for a constant)')
    .option('--delimiter <char>', 'csv: the delimiter', ',')
    .option('--no-header', 'csv: the first line is data, not a header (map columns by #N)')
    .option('--time <iso>', 'the time of snapshots that carry none (conntrack -L); default: the file modification time')
    .option('--retention-days <n>', 'keep this many days of flows in the store (saved in the store, applied after every ingest)')
    .option('--bucket-minutes <n>', 'the time bucket length of a new store (default 60)')
    .option('--max-line-bytes <n>', 'skip and report lines longer than this (default 1048576)')
    .option('--quiet', 'no progress bar')
    .addOption(new Option('--now <time>', 'apply retention as of this time (ISO 8601) instead of now'))
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .addHelpText(
      'after',
      '\nExamples:\n  bulkhead ingest vpc/*.log.gz --store flows.duckdb --policy examples/estate/policy\n  bulkhead ingest conn.log capture.pcap --store flows.duckdb\n  bulkhead ingest export.csv --store flows.duckdb --map src=SrcIP,dst=DstIP,dport=DstPort,proto=Proto,start=Time\n\nBad records are counted by reason and their first line numbers shown; the rest of the file is still read.',
    )
    .action(async (files: string[], opts: IngestCliOptions) => {
      prog.setOptionValue('exit', await runIngest(files, opts, io));
    });
}
