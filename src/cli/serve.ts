/**
 * `bulkhead serve`: the control plane (docs/SERVER.md). Runs until SIGTERM
 * or SIGINT, then stops taking requests, answers waiting polls, stores the
 * flows it acknowledged, and closes the state and the flow store.
 */
import type { Command } from 'commander';
import { startServer, type ServerOptions } from '../server/index.js';
import { EXIT, UsageError, type Io } from './common.js';

/** Options of the command. */
export interface ServeCliOptions {
  state: string;
  listen: string;
  store?: string;
  tlsCert?: string;
  tlsKey?: string;
  advertise?: string[];
  mgmt?: string[];
  maxBody: string;
  rate: string;
  agentRate: string;
  pollSeconds: string;
  flowRetentionDays?: string;
  storeMemory?: string;
  violationRetentionDays?: string;
  quiet?: boolean;
}

/** Parses `HOST:PORT`, `[v6]:PORT` or `:PORT`. */
export function parseListenAddress(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`invalid --listen \`${s}\`: write HOST:PORT, such as 127.0.0.1:8443 or [::1]:8443`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** A size: bytes, or with k, m or g (KiB, MiB, GiB). */
export function parseSize(s: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i.exec(s.trim());
  if (!m) throw new UsageError(`invalid ${flag} \`${s}\`: write bytes, or a number with k, m or g, such as 8m`);
  const n = Math.floor(Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] || ' ').toLowerCase()));
  if (!(n > 0)) throw new UsageError(`${flag} must be more than 0`);
  return n;
}

/** `--store-memory`: a size for DuckDB (`256MB`, `1GB`), checked here so a typo fails before the server starts. */
function storeMemory(s: string): string {
  const m = /^(\d+(?:\.\d+)?)\s*(kb|mb|gb|kib|mib|gib)$/i.exec(s.trim());
  if (!m || !(Number(m[1]) > 0)) throw new UsageError(`invalid --store-memory \`${s}\`: write a size such as 256MB or 1GB`);
  return `${m[1]}${m[2].toUpperCase()}`;
}

function positive(s: string, flag: string): number {
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number, not \`${s}\``);
  return n;
}

/** Runs the server until a signal (or `signal` aborts); returns the exit code. */
export async function runServe(opts: ServeCliOptions, io: Io, signal?: AbortSignal): Promise<number> {
  const { host, port } = parseListenAddress(opts.listen);
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  const options: ServerOptions = {
    state: opts.state,
    host,
    port,
    store: opts.store,
    tlsCert: opts.tlsCert,
    tlsKey: opts.tlsKey,
    advertise: opts.advertise?.flatMap((a) => a.split(',')).filter((a) => a !== ''),
    mgmt: opts.mgmt?.flatMap((a) => a.split(',')).filter((a) => a !== ''),
    maxBody: parseSize(opts.maxBody, '--max-body'),
    rate: positive(opts.rate, '--rate'),
    agentRate: positive(opts.agentRate, '--agent-rate'),
    pollSeconds: positive(opts.pollSeconds, '--poll-seconds'),
    ...(opts.storeMemory !== undefined ? { storeMemory: storeMemory(opts.storeMemory) } : {}),
    flowRetentionDays: opts.flowRetentionDays === undefined ? undefined : positive(opts.flowRetentionDays, '--flow-retention-days'),
    violationRetentionDays: positive(opts.violationRetentionDays ?? '90', '--violation-retention-days'),
    log: opts.quiet ? undefined : (line) => io.err(line),
  };
  let server;
  try {
    server = await startServer(options);
  } catch (e) {
    throw new UsageError(`cannot start the server: ${(e as Error).message}`);
  }
  io.err(`bulkhead serve: ${server.url}; the bootstrap admin token, if new, is in ${opts.state}.admin-token`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    signal?.addEventListener('abort', stop, { once: true });
  });
  io.err('stopping: finishing requests, storing acknowledged flows');
  await server.close();
  return EXIT.ok;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Adds `serve` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('serve')
    .description('run the control plane: the API, policy versions, agents, break-glass, violations and the audit log')
    .requiredOption('--state <file>', 'the SQLite state file (created on first start, with an admin token in <file>.admin-token)')
    .option('--listen <host:port>', 'where to listen', '127.0.0.1:8443')
    .option('--store <dir>', 'the flow store directory (flows.duckdb inside); default <state>.flows.duckdb')
    .option('--tls-cert <file>', 'TLS certificate (PEM); serve HTTPS')
    .option('--tls-key <file>', 'TLS private key (PEM)')
    .option('--advertise <addr>', "the address(es) agents reach this server at: every agent's failsafe rules allow them (repeatable; default: the listen address, or every interface address)", collect)
    .option('--mgmt <prefix>', 'management networks always allowed in on 22/tcp by every agent (repeatable)', collect)
    .option('--max-body <size>', 'the largest request body (413 beyond)', '8m')
    .option('--rate <n>', 'requests per second per token (429 beyond)', '50')
    .option('--agent-rate <n>', 'requests per second per agent', '20')
    .option('--poll-seconds <n>', 'how often agents poll, told at registration', '30')
    .option('--store-memory <size>', "the flow store's memory limit (DuckDB), such as 256MB or 1GB", '256MB')
    .option('--flow-retention-days <n>', 'days of flows and edges the flow store keeps (removed hourly; default: what the store says, all at first)')
    .option('--violation-retention-days <n>', 'days of violations kept (removed hourly)', '90')
    .option('--quiet', 'no log lines on stderr')
    .addHelpText(
      'after',
      `
Examples:
  bulkhead serve --state /var/lib/bulkhead/state.db --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem --advertise 10.0.0.5
  bulkhead serve --state ./bulkhead.db --listen 127.0.0.1:8080

Stops cleanly on SIGTERM or SIGINT. See docs/SERVER.md and docs/API.md.`,
    )
    .action(async (opts: ServeCliOptions) => {
      prog.setOptionValue('exit', await runServe(opts, io));
    });
}
