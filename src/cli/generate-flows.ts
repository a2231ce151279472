/**
 * `bulkhead generate-flows`: a week of sample flow telemetry for a policy's
 * estate (the bundled sample by default), in the formats its sensors would
 * write: AWS VPC Flow Logs (gzip, as S3 delivers them) for the cloud, a Zeek
 * conn.log for dc1, NetFlow v9 in a pcap for dc2; with the anomalies a first
 * look finds (listed in anomalies.json).
 */
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import { generateFlowLogs, netflowPcap, vpcLines, zeekLines } from '../generate/flowlogs.js';
import { Evaluator } from '../engine/evaluate.js';
import { VerdictCode } from '../engine/combine.js';
import type { Addr } from '../netset/ip.js';
import { EXIT, loadDir, UsageError, type Io } from './common.js';
import { parseCount, parseTimeOption } from './ingest.js';
import { plural } from './render.js';

/** Options of the command. */
export interface GenerateFlowsOptions {
  policy: string;
  out: string;
  seed: string;
  conversations: string;
  days: string;
  start?: string;
  anomalies: boolean;
}

function lines(gen: Iterable<string>): Readable {
  return Readable.from(
    (function* () {
      let buf = '';
      for (const l of gen) {
        buf += l + '\n';
        if (buf.length > 1 << 16) {
          yield buf;
          buf = '';
        }
      }
      if (buf) yield buf;
    })(),
  );
}

/** Runs `bulkhead generate-flows`. */
export async function runGenerateFlows(opts: GenerateFlowsOptions, io: Io): Promise<number> {
  const seed = Number(opts.seed);
  if (!Number.isInteger(seed)) throw new UsageError(`--seed must be a whole number, not \`${opts.seed}\``);
  const conversations = parseCount(opts.conversations, '--conversations')!;
  const days = parseCount(opts.days, '--days')!;
  const start = parseTimeOption(opts.start, '--start');
  const c = loadDir(opts.policy);
  if (c.diagnostics.hasErrors()) throw new UsageError(`the policy in ${opts.policy} has errors; run \`bulkhead validate ${opts.policy}\``);
  // Everyday traffic follows the policy: pairs the policy would block are left to the anomalies.
  const evaluator = new Evaluator(c.ir);
  const keep = (a: Addr, b: Addr, proto: number, port: number) => {
    const v = evaluator.decideCode(a, b, proto, port) & 3;
    return v === VerdictCode.Allowed || v === VerdictCode.NotEvaluated;
  };
  const logs = generateFlowLogs(c.ir, { seed, conversations, days, start, noAnomalies: !opts.anomalies, keep });
  mkdirSync(opts.out, { recursive: true });
  const vpc = join(opts.out, 'aws-vpc-flows.log.gz');
  const zeek = join(opts.out, 'zeek-conn.log');
  const pcap = join(opts.out, 'netflow-v9.pcap');
  await pipeline(lines(vpcLines(logs.conversations)), createGzip(), createWriteStream(vpc));
  await pipeline(lines(zeekLines(logs.conversations, logs.start)), createWriteStream(zeek));
  await pipeline(Readable.from(netflowPcap(logs.conversations, logs.start - 86400_000)), createWriteStream(pcap));
  writeFileSync(join(opts.out, 'anomalies.json'), JSON.stringify(logs.anomalies, null, 2) + '\n');
  const by = (s: string) => logs.conversations.filter((x) => x.sensor === s).length;
  io.out(`wrote ${plural(logs.conversations.length, 'conversation')} from ${new Date(logs.start).toISOString().slice(0, 10)} for ${plural(days, 'day')} to ${opts.out}/:`);
  io.out(`  aws-vpc-flows.log.gz  ${plural(by('aws-vpc'), 'conversation')} (AWS VPC Flow Logs, one record per direction)`);
  io.out(`  zeek-conn.log         ${plural(by('zeek'), 'conversation')} (Zeek conn.log, dc1)`);
  io.out(`  netflow-v9.pcap       ${plural(by('netflow9'), 'conversation')} (NetFlow v9 from the dc2 router)`);
  io.out(`  anomalies.json        ${logs.anomalies.length} ${logs.anomalies.length === 1 ? 'anomaly' : 'anomalies'} put in`);
  return EXIT.ok;
}

/** Adds `generate-flows` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('generate-flows')
    .description('write a week of sample flow logs for an estate (VPC, Zeek, NetFlow v9), with anomalies')
    .option('--policy <dir>', 'the estate', 'examples/estate/policy')
    .requiredOption('--out <dir>', 'where to write the files')
    .option('--seed <n>', 'random seed', '1')
    .option('--conversations <n>', 'about this many connections in all', '50000')
    .option('--days <n>', 'how many days', '7')
    .option('--start <iso>', 'the first day (default 2026-11-16, a Monday)')
    .option('--no-anomalies', 'leave out the anomalies')
    .addHelpText('after', '\nExamples:\n  bulkhead generate-flows --out out/flows\n  bulkhead ingest out/flows/* --store out/flows.duckdb --policy examples/estate/policy\n  bulkhead map --store out/flows.duckdb --policy examples/estate/policy --by app,env --format html --out out/map.html')
    .action(async (opts: GenerateFlowsOptions) => {
      prog.setOptionValue('exit', await runGenerateFlows(opts, io));
    });
}
