/**
 * The host the agent manages: running programs in its network namespace
 * (the agent's own, or `--netns NAME` through `ip netns exec`), and the
 * facts it registers (addresses from `ip -j addr`).
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Where the agent enforces: its own network namespace, or a named one. */
export interface HostTarget {
  /** A network namespace known to `ip netns` (`/run/netns/NAME`); undefined: the agent's own. */
  readonly netns?: string;
}

/** What a finished program left behind. */
export interface Ran {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin'];

/** The absolute path of an executable on `PATH` or in the usual sbin directories, or undefined. */
export function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SBIN];
  for (const d of dirs) {
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The command line that runs `cmd args` inside the target's namespace. */
export function inTarget(target: HostTarget, cmd: string, args: readonly string[]): [string, string[]] {
  return target.netns ? ['ip', ['netns', 'exec', target.netns, cmd, ...args]] : [cmd, [...args]];
}

/** Runs a program in the target's namespace and collects its output; never throws for an exit code. */
export function runIn(target: HostTarget, cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<Ran> {
  const [c, a] = inTarget(target, cmd, args);
  return new Promise((resolve) => {
    const child = spawn(c, a, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout: '', stderr: `cannot run \`${c}\`: ${e.message}` });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Why the agent cannot manage `target` (undefined when it can): the namespace must exist. */
export function targetProblem(target: HostTarget): string | undefined {
  if (target.netns === undefined) return undefined;
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(target.netns)) return `\`${target.netns}\` is not a network namespace name`;
  if (!existsSync(join('/run/netns', target.netns))) return `no network namespace \`${target.netns}\` (ip netns list shows the ones there are)`;
  return undefined;
}

interface IpAddrJson {
  ifname?: string;
  addr_info?: { family?: string; local?: string; scope?: string }[];
}

/**
 * The host's own addresses from `ip -j addr` output: global scope only (no
 * loopback, no IPv6 link-local), each once, in the order listed.
 */
export function addressesFromIpJson(json: string): string[] {
  let links: IpAddrJson[];
  try {
    links = JSON.parse(json) as IpAddrJson[];
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const l of Array.isArray(links) ? links : []) {
    for (const a of l.addr_info ?? []) {
      if (typeof a.local !== 'string' || a.scope !== 'global') continue;
      if (a.family !== 'inet' && a.family !== 'inet6') continue;
      if (!out.includes(a.local)) out.push(a.local);
    }
  }
  return out;
}

/** The target's addresses (`ip -j addr show`, in its namespace). Throws when `ip` fails. */
export async function hostAddresses(target: HostTarget): Promise<string[]> {
  const r = target.netns ? await runIn({}, 'ip', ['-n', target.netns, '-j', 'addr', 'show']) : await runIn({}, 'ip', ['-j', 'addr', 'show']);
  if (r.code !== 0) throw new Error(`cannot list the host's addresses: ${r.stderr.trim() || `ip exited with ${r.code}`}`);
  return addressesFromIpJson(r.stdout);
}
