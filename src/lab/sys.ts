/**
 * The lab's contact with the machine: running programs, finding tools and
 * scripts, listing network namespaces and the processes inside them.
 *
 * Nothing here changes the root network namespace. The only programs run in
 * it are `ip netns add|del` (which create and remove namespaces, nothing else)
 * and `ip -n <lab namespace> ...` (which acts inside a lab namespace).
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where `ip netns` keeps its namespace handles (iproute2's NETNS_RUN_DIR). */
export const NETNS_DIR = '/run/netns';

/** Every lab namespace name starts with this. */
export const NS_PREFIX = 'bh-';

/** An error of the lab: a missing requirement, a failed command, a bad argument. */
export class LabError extends Error {
  /** The standard error of the command that failed, when a command failed. */
  readonly stderr: string | undefined;
  constructor(message: string, stderr?: string) {
    super(message);
    this.name = 'LabError';
    this.stderr = stderr;
  }
}

/** What a finished command left behind. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when the command was killed for running past its time limit. */
  timedOut: boolean;
}

/**
 * Runs `cmd args`, writing `input` to its standard input, and collects its
 * output. A command that runs past `timeoutMs` is killed (by its pid: it is
 * our own child). Never throws for a non-zero exit; see {@link mustRun}.
 */
export function run(cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new LabError(`cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolvePromise({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), timedOut });
    });
    child.stdin.on('error', () => undefined); // the command may exit before reading everything
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command and throws a {@link LabError} carrying its standard error when it fails. */
export async function mustRun(what: string, cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${opts.timeoutMs} ms` : r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`;
    const detail = r.stderr.trim() || r.stdout.trim();
    throw new LabError(`${what} failed (${why})${detail ? `:\n${detail}` : ''}`, r.stderr);
  }
  return r;
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results keep the order of `items`. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i], i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker);
  const settled = await Promise.allSettled(workers);
  const bad = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (bad) throw bad.reason;
  return results;
}

const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin'];

/** The absolute path of an executable found on `PATH` or in the usual sbin directories, or undefined. */
export function which(name: string): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SBIN];
  for (const d of dirs) {
    const p = join(d, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * The Python interpreter the lab's agent and prober run under: `$BULKHEAD_PYTHON`,
 * else the system `/usr/bin/python3` (it starts fastest: no version-manager
 * shim), else `python3` on `PATH`.
 */
export function findPython(): string | undefined {
  const env = process.env.BULKHEAD_PYTHON;
  if (env) return which(env);
  return isExecutable('/usr/bin/python3') ? '/usr/bin/python3' : which('python3');
}

/**
 * Flags for the lab's Python scripts: isolated (no user site, no PYTHON*
 * variables) and without `site` (they use the standard library only, and
 * start faster).
 */
export const PYTHON_FLAGS: readonly string[] = ['-I', '-S'];

/** The tools the lab needs, resolved to absolute paths. */
export interface LabTools {
  ip: string;
  nft: string | undefined;
  python: string;
  iptablesRestore: string | undefined;
  ip6tablesRestore: string | undefined;
  ipset: string | undefined;
  conntrack: string | undefined;
}

/** Why the lab cannot run here (empty when it can): root, `ip`, `nft` and Python 3 are required. */
export function labProblems(opts: { needIptables?: boolean } = {}): string[] {
  const problems: string[] = [];
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) problems.push('the lab needs root (it creates network namespaces): run as root');
  if (process.platform !== 'linux') problems.push('the lab needs Linux network namespaces');
  if (!which('ip')) problems.push('`ip` (iproute2) not found: apt-get install iproute2');
  if (!which('nft')) problems.push('`nft` not found: apt-get install nftables');
  if (!findPython()) problems.push('python3 not found (the lab agent and prober are Python scripts): apt-get install python3');
  if (opts.needIptables) {
    for (const t of ['iptables-restore', 'ip6tables-restore']) if (!which(t)) problems.push(`\`${t}\` not found: apt-get install iptables`);
    if (!which('ipset')) problems.push('`ipset` not found: apt-get install ipset');
  }
  return problems;
}

/** The lab's tools; throws a {@link LabError} listing every missing requirement. */
export function labTools(): LabTools {
  const problems = labProblems();
  if (problems.length > 0) throw new LabError(`the network-namespace lab cannot run here:\n  - ${problems.join('\n  - ')}`);
  return {
    ip: which('ip')!,
    nft: which('nft'),
    python: findPython()!,
    iptablesRestore: which('iptables-restore'),
    ip6tablesRestore: which('ip6tables-restore'),
    ipset: which('ipset'),
    conntrack: which('conntrack'),
  };
}

/**
 * The path of one of the lab's Python scripts. They live next to this module
 * in `src/lab/`; from a build in `dist/lab/` the sources are used.
 */
export function scriptPath(name: 'agent.py' | 'prober.py'): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, name), resolve(here, '../../src/lab', name)];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new LabError(`lab script ${name} not found (looked in ${candidates.join(', ')})`);
  return found;
}

/** The names of every network namespace `ip netns` knows (handles in {@link NETNS_DIR}). */
export function listNamespaces(): string[] {
  try {
    return readdirSync(NETNS_DIR).sort();
  } catch {
    return [];
  }
}

/** The namespace inode of a named network namespace, or undefined when it is gone. */
function nsInode(name: string): number | undefined {
  try {
    return statSync(join(NETNS_DIR, name)).ino;
  } catch {
    return undefined;
  }
}

/**
 * Every process whose network namespace is one of `names`, found by comparing
 * `/proc/<pid>/ns/net` with the namespace handles (no process is spawned).
 */
export function pidsInNamespaces(names: readonly string[]): number[] {
  const inodes = new Set<string>();
  for (const n of names) {
    const ino = nsInode(n);
    if (ino !== undefined && ino !== statSync('/proc/self/ns/net').ino) inodes.add(`net:[${ino}]`);
  }
  if (inodes.size === 0) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (inodes.has(readlinkSync(`/proc/${entry}/ns/net`))) pids.push(Number(entry));
    } catch {
      // gone, or a kernel thread
    }
  }
  return pids;
}

/** The command line of a process, or undefined when it is gone. */
export function cmdline(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
  } catch {
    return undefined;
  }
}

/** True when the process exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
