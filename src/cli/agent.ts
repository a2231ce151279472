/**
 * `bulkhead agent`: the host agent. Registers the host with the control
 * plane, enforces the ruleset it serves, reports flows and heartbeats, and
 * runs until SIGTERM or SIGINT. See docs/AGENT.md.
 */
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { Agent, type AgentOptions } from '../agent/agent.js';
import { createLogger } from '../agent/log.js';
import { EXIT, UsageError, type Io } from './common.js';

/** The options of `bulkhead agent`, as commander gives them (all strings until checked). */
export interface AgentCliOptions {
  server?: string;
  token?: string;
  tokenFile?: string;
  state?: string;
  netns?: string;
  labels?: string;
  hostname?: string;
  ca?: string;
  config?: string;
  wait?: string;
  heartbeat?: string;
  flowInterval?: string;
  driftInterval?: string;
  bufferMax?: string;
  retryMax?: string;
  nflogGroup?: string;
  conntrack?: boolean;
  conntrackAcct?: boolean;
  verifyControlPlane?: boolean;
  backend?: string;
  output?: string;
}

/** Where the agent keeps its state unless told otherwise. */
export const DEFAULT_STATE_DIR = '/var/lib/bulkhead/agent';

/** The keys a config file may have (the long option names, in camelCase). */
const CONFIG_KEYS = new Set(['server', 'token', 'tokenFile', 'state', 'netns', 'labels', 'hostname', 'ca', 'wait', 'heartbeat', 'flowInterval', 'driftInterval', 'bufferMax', 'retryMax', 'nflogGroup', 'conntrack', 'conntrackAcct', 'verifyControlPlane', 'backend', 'output']);

/** Parses `k=v,k2=v2` into labels. */
export function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const k = eq < 0 ? '' : part.slice(0, eq).trim();
    const v = eq < 0 ? '' : part.slice(eq + 1).trim();
    if (k === '' || v === '') throw new UsageError(`invalid label \`${part}\` in --labels: write key=value, separated by commas`);
    if (k in out) throw new UsageError(`label \`${k}\` is given twice in --labels`);
    out[k] = v;
  }
  return out;
}

/** Reads a config file (YAML or JSON) into options; the command line wins over it. */
function readConfig(file: string): AgentCliOptions {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`cannot read the config file \`${file}\`: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new UsageError(`the config file \`${file}\` must be a map of option names to values`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    if (!CONFIG_KEYS.has(k)) throw new UsageError(`unknown key \`${k}\` in the config file \`${file}\` (known: ${[...CONFIG_KEYS].join(', ')})`);
    if (k === 'labels' && v !== null && typeof v === 'object' && !Array.isArray(v)) {
      out.labels = Object.entries(v as Record<string, unknown>).map(([lk, lv]) => `${lk}=${String(lv)}`).join(',');
    } else if (k === 'conntrack' || k === 'conntrackAcct' || k === 'verifyControlPlane') {
      if (typeof v !== 'boolean') throw new UsageError(`\`${k}\` in the config file must be true or false`);
      out[k] = v;
    } else out[k] = String(v);
  }
  return out as AgentCliOptions;
}

function seconds(v: string | undefined, name: string, fallback: number | undefined, max = 86_400): number | undefined {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > max) throw new UsageError(`invalid ${name} \`${v}\`: give a number of seconds above 0 and at most ${max}`);
  return n;
}

/** Checks the options and turns them into the agent's. */
export function agentOptions(cli: AgentCliOptions, io: Io, env: NodeJS.ProcessEnv = process.env): AgentOptions {
  const file = cli.config !== undefined ? readConfig(cli.config) : {};
  // The command line wins over the config file, which wins over the defaults.
  const o: AgentCliOptions = { ...file, ...Object.fromEntries(Object.entries(cli).filter(([, v]) => v !== undefined)) };
  if (!o.server) throw new UsageError('the control plane is missing: give --server URL (or `server:` in --config)');
  let token = o.token;
  if (token === undefined && o.tokenFile !== undefined) {
    try {
      token = readFileSync(o.tokenFile, 'utf8').trim();
    } catch (e) {
      throw new UsageError(`cannot read the token file \`${o.tokenFile}\`: ${(e as Error).message}`);
    }
  }
  token ??= env.BULKHEAD_AGENT_TOKEN;
  if (!token) throw new UsageError('the agent token is missing: give --token, --token-file FILE or $BULKHEAD_AGENT_TOKEN');
  let ca: string | undefined;
  if (o.ca !== undefined) {
    try {
      ca = readFileSync(o.ca, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read the CA file \`${o.ca}\`: ${(e as Error).message}`);
    }
  }
  const group = o.nflogGroup === undefined ? undefined : Number(o.nflogGroup);
  if (group !== undefined && !(Number.isInteger(group) && group >= 0 && group <= 65535)) throw new UsageError(`invalid --nflog-group \`${o.nflogGroup}\`: give 1 to 65535, or 0 to leave log statements alone`);
  const bufferMiB = o.bufferMax === undefined ? 64 : Number(o.bufferMax);
  if (!Number.isFinite(bufferMiB) || bufferMiB <= 0) throw new UsageError(`invalid --buffer-max \`${o.bufferMax}\`: give a size in MiB above 0`);
  const backend = o.backend ?? 'auto';
  if (backend !== 'auto' && backend !== 'nftables' && backend !== 'iptables') throw new UsageError(`invalid --backend \`${backend}\`: auto, nftables or iptables`);
  const output = o.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`invalid --output \`${output}\`: text or json`);
  try {
    new URL(o.server);
  } catch {
    throw new UsageError(`invalid --server \`${o.server}\`: write http://host:port or https://host:port`);
  }
  return {
    server: o.server,
    token,
    ca,
    stateDir: resolve(o.state ?? DEFAULT_STATE_DIR),
    netns: o.netns,
    hostname: o.hostname ?? o.netns ?? osHostname(),
    labels: o.labels !== undefined ? parseLabels(o.labels) : {},
    waitSeconds: seconds(o.wait, '--wait', undefined, 60),
    heartbeatSeconds: seconds(o.heartbeat, '--heartbeat', 30),
    flowSeconds: seconds(o.flowInterval, '--flow-interval', 10),
    driftSeconds: seconds(o.driftInterval, '--drift-interval', 30),
    retryMaxSeconds: seconds(o.retryMax, '--retry-max', 60, 3600),
    bufferMaxBytes: Math.round(bufferMiB * 1024 * 1024),
    nflogGroup: group === 0 ? false : group,
    conntrack: o.conntrack !== false,
    conntrackAcct: o.conntrackAcct === true,
    backend,
    // Commander sets it true by default (a --no- flag): only an explicit false turns the check off; with --netns the agent's default (off).
    ...(o.verifyControlPlane === false ? { verifyControlPlane: false } : {}),
    logger: createLogger(output, (line) => io.err(line)),
  };
}

/** Runs the agent until SIGTERM or SIGINT (or `signal`); returns the exit code. */
export async function runAgent(cli: AgentCliOptions, io: Io, signal?: AbortSignal): Promise<number> {
  const options = agentOptions(cli, io);
  const agent = new Agent(options);
  try {
    await agent.start();
  } catch (e) {
    io.err(`error: cannot start the agent: ${(e as Error).message}`);
    return EXIT.policyErrors;
  }
  const stop = () => void agent.stop();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  signal?.addEventListener('abort', stop, { once: true });
  try {
    await agent.done;
  } finally {
    process.removeListener('SIGTERM', stop);
    process.removeListener('SIGINT', stop);
    signal?.removeEventListener('abort', stop);
  }
  await agent.stop();
  return EXIT.ok;
}

/** Adds `agent` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('agent')
    .description('run the host agent: enforce the control plane\'s policy on this host, report flows and heartbeats')
    .option('--server <url>', 'the control plane, http(s)://host:port')
    .option('--token <token>', 'the agent\'s token (visible to other users in ps: prefer --token-file or $BULKHEAD_AGENT_TOKEN)')
    .option('--token-file <file>', 'read the token from this file')
    .option('--state <dir>', `state directory: last known good ruleset, flow buffer (default ${DEFAULT_STATE_DIR})`)
    .option('--netns <name>', 'enforce inside this network namespace (the lab, tests) instead of the agent\'s own')
    .option('--labels <k=v,...>', 'labels to register, e.g. role=web,env=prod')
    .option('--hostname <name>', 'host name to register (default: the machine\'s, or the --netns name)')
    .option('--ca <file>', 'trust these PEM certificates for an https server')
    .option('--config <file>', 'read options from a YAML or JSON file (keys: the long option names in camelCase; the command line wins)')
    .option('--wait <seconds>', 'how long one long poll for the policy waits (default: the server\'s choice, else 30; at most 60)')
    .option('--heartbeat <seconds>', 'seconds between heartbeats (default 30)')
    .option('--flow-interval <seconds>', 'seconds between flow snapshots and reports (default 10)')
    .option('--drift-interval <seconds>', 'seconds between checks of the table for changes by others (default 30)')
    .option('--buffer-max <MiB>', 'the most disk the flow buffer uses while the server is unreachable (default 64)')
    .option('--retry-max <seconds>', 'the longest wait between retries (default 60)')
    .option('--backend <backend>', 'enforce with nftables or iptables (+ ipset), or auto: nftables where `nft` is installed, else iptables (default auto)')
    .option('--nflog-group <n>', 'NFLOG group for blocked and would-be-blocked packets (default 6268; 0: leave log statements alone)')
    .option('--no-conntrack', 'do not read connection tracking for flows')
    .option('--conntrack-acct', 'turn on conntrack packet and byte accounting (nf_conntrack_acct) in the managed namespace')
    .option('--no-verify-control-plane', 'do not check that the server still answers after each apply (the check loads the ruleset before again if it does not; off anyway with --netns)')
    .addOption(new Option('-o, --output <format>', 'log format on stderr').choices(['text', 'json']))
    .addHelpText(
      'after',
      `
Runs until SIGTERM or SIGINT. Stopping leaves the ruleset loaded: enforcement
goes on without the agent. With the server unreachable the agent keeps the
last good ruleset and buffers flows on disk.

Exit status: 0 stopped by a signal, 1 cannot start (nft missing, namespace
missing, state directory in use), 2 usage error.

Examples:
  bulkhead agent --server https://pce.example:8443 --token-file /etc/bulkhead/agent.token --ca /etc/bulkhead/ca.pem
  bulkhead agent --server http://127.0.0.1:8080 --token bh_… --netns bh-lab1-h0-web --state /tmp/agent-web --output json`,
    )
    .action(async (opts: AgentCliOptions, cmd: Command) => {
      // `--no-conntrack` defaults conntrack to true; only an explicit flag may override the config file.
      if (cmd.getOptionValueSource('conntrack') !== 'cli') delete opts.conntrack;
      prog.setOptionValue('exit', await runAgent(opts, io));
    });
}
