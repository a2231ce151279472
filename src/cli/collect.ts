/**
 * `bulkhead collect`: a NetFlow v5 / v9 / IPFIX collector on a UDP port,
 * writing into the flow store. It commits (stores the raw records and updates
 * the edges) every few seconds and when it stops: after `--duration`,
 * `--max-datagrams`, or on Ctrl-C.
 */
import { Option, type Command } from 'commander';
import { collect, parseListen } from '../adapters/collector.js';
import { foldPorts, ServerInference } from '../flows/attribute.js';
import { BadRecords, FlowOut, type FlowBatch } from '../flows/record.js';
import { DuckDbFlowStore } from '../store/flows-duckdb.js';
import type { IngestRun } from '../store/flows.js';
import { EXIT, loadDir, UsageError, type Io } from './common.js';
import { parseCount } from './ingest.js';
import { plural } from './render.js';

/** Options of the command. */
export interface CollectCliOptions {
  listen: string;
  store: string;
  policy?: string;
  duration?: string;
  maxDatagrams?: string;
  commitSeconds: string;
  save?: string;
  output: string;
}

/** Runs `bulkhead collect`. */
export async function runCollect(opts: CollectCliOptions, io: Io, signal?: AbortSignal): Promise<number> {
  let listen;
  try {
    listen = parseListen(opts.listen);
  } catch (e) {
    throw new UsageError(`invalid --listen: ${(e as Error).message}`);
  }
  const seconds = parseCount(opts.duration, '--duration');
  const maxDatagrams = parseCount(opts.maxDatagrams, '--max-datagrams');
  const commit = parseCount(opts.commitSeconds, '--commit-seconds')!;
  const policy = opts.policy !== undefined ? loadDir(opts.policy).policy : undefined;
  const store = await DuckDbFlowStore.open(opts.store);
  const inference = new ServerInference(policy);
  const server = new Uint8Array(2048);
  const port = new Uint16Array(2048);
  let run: IngestRun = await store.beginIngest(opts.listen);
  let stored = 0;
  let edges = 0;
  const out = new FlowOut((b: FlowBatch) => {
    inference.orient(b, server);
    foldPorts(b, server, port);
    run.append(b, server, port);
  }, new BadRecords(5));
  const commitNow = async () => {
    out.flush();
    const s = await run.finish();
    stored += s.flows;
    edges += s.edges;
    run = await store.beginIngest(opts.listen);
  };
  // Without a bound, run until Ctrl-C.
  const ctl = new AbortController();
  const onSigint = () => ctl.abort();
  if (!signal && seconds === undefined && maxDatagrams === undefined) process.once('SIGINT', onSigint);
  try {
    const r = await collect(listen, out, {
      durationMs: seconds !== undefined ? seconds * 1000 : undefined,
      maxDatagrams,
      signal: signal ?? ctl.signal,
      savePcap: opts.save,
      tickMs: commit * 1000,
      onTick: commitNow,
      onListening: (a) => io.err(`listening on udp://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port} for NetFlow v5, v9 and IPFIX${seconds ? ` for ${seconds} s` : ''}${maxDatagrams ? `, up to ${plural(maxDatagrams, 'datagram')}` : ''}`),
    });
    out.flush();
    const s = await run.finish();
    stored += s.flows;
    edges += s.edges;
    if (opts.output === 'json') io.out(JSON.stringify({ ...r, records: stored, edges, bad: Object.fromEntries(out.bad.counts) }, null, 2));
    else {
      io.err(`collected ${plural(r.datagrams, 'datagram')} from ${plural(r.exporters.length, 'exporter')} (${r.exporters.join(', ') || 'none'}): ${plural(stored, 'flow record')} stored, ${plural(edges, 'edge')} written${r.dropped ? `, ${r.dropped} dropped while committing` : ''}`);
      for (const [reason, n] of out.bad.counts) io.err(`  ${reason}: ${n} — ${(out.bad.examples.get(reason) ?? []).map((b) => `datagram ${b.line}${b.detail ? ` (${b.detail})` : ''}`).join('; ')}`);
      if (opts.save) io.err(`saved the datagrams to ${opts.save} (read it back with bulkhead ingest)`);
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    await store.close();
  }
  return EXIT.ok;
}

/** Adds `collect` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('collect')
    .description('collect NetFlow v5, v9 and IPFIX over UDP into the flow store')
    .option('--listen <udp://ip:port>', 'where to listen', 'udp://127.0.0.1:2055')
    .requiredOption('--store <file>', 'the flow store (a DuckDB file)')
    .option('--policy <dir>', "a policy directory: its services' ports help tell servers from clients")
    .option('--duration <seconds>', 'stop after this many seconds')
    .option('--max-datagrams <n>', 'stop after this many datagrams')
    .option('--commit-seconds <n>', 'store what was collected this often', '10')
    .option('--save <file.pcap>', 'also save every datagram to a pcap capture')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .addHelpText('after', '\nExamples:\n  bulkhead collect --listen udp://0.0.0.0:2055 --store flows.duckdb --policy examples/estate/policy\n  bulkhead collect --store flows.duckdb --duration 60 --save capture.pcap\n\nWithout --duration or --max-datagrams it runs until Ctrl-C.')
    .action(async (opts: CollectCliOptions) => {
      prog.setOptionValue('exit', await runCollect(opts, io));
    });
}
