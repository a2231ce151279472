/**
 * The network-namespace lab: one namespace per host, joined by veth pairs to a
 * bridge that lives in a namespace of its own, with listeners on each host's
 * ports. See docs/LAB.md.
 *
 * Safety: nothing is created in, or changed in, the machine's own (root)
 * network namespace. Namespaces are created with `ip netns add`; every link,
 * address, route, sysctl and ruleset is made inside a lab namespace (`ip -n`,
 * `ip netns exec`). Every namespace is named `bh-<runid>-…`, so `labDown` can
 * find everything of a run, also after a crash.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import {
  LabError,
  NS_PREFIX,
  alive,
  cmdline,
  labTools,
  listNamespaces,
  mapLimit,
  mustRun,
  PYTHON_FLAGS,
  pidsInNamespaces,
  run,
  scriptPath,
  sleep,
  which,
  type LabTools,
} from './sys.js';

/** A host to build in the lab. */
export interface LabHost {
  /** Unique within the lab; probes name hosts by it. */
  name: string;
  /** Single IPv4 and/or IPv6 addresses (no prefixes), all put on the host's `eth0`. */
  addresses: string[];
  /** TCP ports the host listens on (connections are accepted, then closed). */
  tcpPorts: number[];
  /** UDP ports the host listens on (each datagram is echoed back). */
  udpPorts: number[];
}

/** A host as built: its namespace and listener process. */
export interface LabHostState extends LabHost {
  /** The host's network namespace, `bh-<runid>-h<index>-<name>`. */
  ns: string;
  /** The bridge-side end of its veth pair, in the bridge namespace. */
  veth: string;
  /** The MAC address of its `eth0`: `02:62:68:` and the host's index. */
  mac: string;
  /** The pid of its listener process (the agent). */
  pid: number;
}

/** A lab: what {@link labUp} built, also kept as JSON in the state directory. */
export interface Lab {
  /** Short random id; every namespace of the lab is named `bh-<runId>-…`. */
  runId: string;
  /** When the lab was created (ISO 8601). */
  createdAt: string;
  /** The directory holding the state file. */
  stateDir: string;
  /** The state file, `<stateDir>/<runId>.json`. */
  stateFile: string;
  /** The namespace holding the bridge `br0`. */
  bridgeNs: string;
  /** The Python interpreter the agents and probers run under. */
  python: string;
  /** How hosts find each other's MAC addresses; see {@link LabUpOptions.neighbors}. */
  neighbors: 'static' | 'dynamic';
  /** The hosts, in the order given to {@link labUp}. */
  hosts: LabHostState[];
}

/** Where lab state files go unless told otherwise: `$BULKHEAD_LAB_STATE_DIR`, else `.bulkhead/lab` under the working directory. */
export function defaultStateDir(): string {
  return resolve(process.env.BULKHEAD_LAB_STATE_DIR ?? join('.bulkhead', 'lab'));
}

/** Options of {@link labUp}. */
export interface LabUpOptions {
  /** The run id (lower-case letters and digits, at most 12); default a random 6-hex-digit id. */
  runId?: string;
  /** Where to keep the state file; default {@link defaultStateDir}. */
  stateDir?: string;
  /** How many hosts are set up at once (default 24). */
  concurrency?: number;
  /** The Python interpreter for the agents; default as {@link findPython}. */
  python?: string;
  /** How long an agent may take to report ready (default 15 000 ms). */
  agentTimeoutMs?: number;
  /**
   * `dynamic`: hosts resolve each other by ARP and neighbour discovery, as
   * real hosts do (so a ruleset that blocks ARP or ND shows). `static`: every
   * host gets a permanent neighbour entry for every address of every other
   * host, and resolves nothing. The kernel's neighbour tables are shared by
   * all namespaces and hold 1024 dynamic entries by default
   * (`gc_thresh3`, a setting of the whole machine the lab must not change);
   * permanent entries do not count. Default: `dynamic` when hosts × addresses
   * is at most 256, else `static`.
   */
  neighbors?: 'static' | 'dynamic';
}

/** Above this many potential dynamic neighbour entries, a lab uses static ones by default. */
const DYNAMIC_NEIGHBOR_LIMIT = 256;

const RUN_ID = /^[a-z0-9]{1,12}$/;

/** The namespace name prefix of one run: `bh-<runId>-`. */
export function runPrefix(runId: string): string {
  return `${NS_PREFIX}${runId}-`;
}

function checkRunId(runId: string): void {
  if (!RUN_ID.test(runId)) throw new LabError(`bad lab run id \`${runId}\`: use 1 to 12 lower-case letters and digits`);
}

function validateHosts(hosts: readonly LabHost[]): void {
  if (hosts.length === 0) throw new LabError('a lab needs at least one host');
  if (hosts.length > 4000) throw new LabError(`${hosts.length} hosts is more than the lab supports (4000)`);
  const names = new Set<string>();
  const owners = new Map<string, string>();
  for (const h of hosts) {
    if (typeof h.name !== 'string' || h.name === '') throw new LabError('every lab host needs a name');
    if (names.has(h.name)) throw new LabError(`two lab hosts are named \`${h.name}\``);
    names.add(h.name);
    if (h.addresses.length === 0) throw new LabError(`lab host \`${h.name}\` has no address`);
    for (const a of h.addresses) {
      if (isIP(a) === 0) throw new LabError(`lab host \`${h.name}\`: \`${a}\` is not a single IPv4 or IPv6 address`);
      const key = canonicalAddress(a);
      const other = owners.get(key);
      if (other !== undefined) throw new LabError(`address ${a} is on both \`${other}\` and \`${h.name}\``);
      owners.set(key, h.name);
    }
    for (const [proto, ports] of [['tcp', h.tcpPorts], ['udp', h.udpPorts]] as const) {
      const seen = new Set<number>();
      for (const p of ports) {
        if (!Number.isInteger(p) || p < 1 || p > 65535) throw new LabError(`lab host \`${h.name}\`: ${proto} port ${p} is not in 1..65535`);
        if (seen.has(p)) throw new LabError(`lab host \`${h.name}\`: ${proto} port ${p} is listed twice`);
        seen.add(p);
      }
    }
  }
}

/** An address in one canonical spelling (IPv6 compressed, lower case) for comparisons. */
export function canonicalAddress(a: string): string {
  if (isIP(a) !== 6) return a;
  return new URL(`http://[${a}]/`).hostname.slice(1, -1);
}

function nsName(runId: string, index: number, host: string): string {
  const safe = host.toLowerCase().replace(/[^a-z0-9_.-]+/g, '_').slice(0, 24);
  return `${runPrefix(runId)}h${index}-${safe}`;
}

/** A locally administered MAC address for host `i`: `02:62:68` ("bh") and the index. */
function hostMac(i: number): string {
  return ['02', '62', '68', (i >> 16) & 255, (i >> 8) & 255, i & 255].map((b) => (typeof b === 'string' ? b : b.toString(16).padStart(2, '0'))).join(':');
}

function stateFileOf(stateDir: string, runId: string): string {
  return join(stateDir, `${runId}.json`);
}

function writeState(lab: Lab, status: 'creating' | 'up'): void {
  mkdirSync(lab.stateDir, { recursive: true });
  const tmp = `${lab.stateFile}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ version: 1, status, ...lab }, null, 2) + '\n');
  renameSync(tmp, lab.stateFile);
}

/**
 * Reads a lab from its state file, for a process other than the one that
 * built it. Throws when there is no such lab.
 */
export function labOpen(runId: string, options: { stateDir?: string } = {}): Lab {
  checkRunId(runId);
  const stateDir = resolve(options.stateDir ?? defaultStateDir());
  const file = stateFileOf(stateDir, runId);
  let data: Lab & { version?: number; status?: string };
  try {
    data = JSON.parse(readFileSync(file, 'utf8')) as Lab & { version?: number; status?: string };
  } catch {
    throw new LabError(`no lab \`${runId}\` (no state file ${file})`);
  }
  if (data.status !== 'up') throw new LabError(`lab \`${runId}\` is not up (state: ${data.status ?? 'unknown'})`);
  const { version: _v, status: _s, ...lab } = data;
  return { ...lab, stateDir, stateFile: file };
}

/**
 * Builds a lab: a bridge namespace, one namespace per host joined to the
 * bridge by a veth pair, the hosts' addresses (IPv6 without DAD), `lo` up,
 * on-link default routes for IPv4 and IPv6, forwarding and rp_filter off, and
 * one listener process per host. On any failure everything built so far is
 * removed before the error is thrown.
 */
export async function labUp(hosts: LabHost[], options: LabUpOptions = {}): Promise<Lab> {
  const tools = labTools();
  validateHosts(hosts);
  const runId = options.runId ?? randomBytes(3).toString('hex');
  checkRunId(runId);
  const prefix = runPrefix(runId);
  if (listNamespaces().some((n) => n.startsWith(prefix))) throw new LabError(`lab run \`${runId}\` already exists (namespaces ${prefix}*): choose another run id or take it down first`);
  const stateDir = resolve(options.stateDir ?? defaultStateDir());
  const python = options.python ?? tools.python;
  const addressCount = hosts.reduce((n, h) => n + h.addresses.length, 0);
  const lab: Lab = {
    runId,
    createdAt: new Date().toISOString(),
    stateDir,
    stateFile: stateFileOf(stateDir, runId),
    bridgeNs: `${prefix}br`,
    python,
    neighbors: options.neighbors ?? (hosts.length * addressCount <= DYNAMIC_NEIGHBOR_LIMIT ? 'dynamic' : 'static'),
    hosts: hosts.map((h, i) => ({
      name: h.name,
      addresses: [...h.addresses],
      tcpPorts: [...h.tcpPorts],
      udpPorts: [...h.udpPorts],
      ns: nsName(runId, i, h.name),
      veth: `v${i}`,
      mac: hostMac(i),
      pid: 0,
    })),
  };
  // Recorded before anything exists, so a crash midway can still be cleaned up.
  writeState(lab, 'creating');
  try {
    await build(lab, tools, options);
  } catch (e) {
    try {
      await labDown(runId, { stateDir });
    } catch (down) {
      throw new LabError(`${e instanceof Error ? e.message : String(e)}\n(and taking the half-built lab down failed too: ${down instanceof Error ? down.message : String(down)}; run labDown('${runId}'))`);
    }
    throw e;
  }
  writeState(lab, 'up');
  return lab;
}

async function build(lab: Lab, tools: LabTools, options: LabUpOptions): Promise<void> {
  const concurrency = options.concurrency ?? 24;
  const ip = tools.ip;
  // 1. The namespaces, in one `ip` process. `netns add` creates a namespace and
  //    nothing else.
  const adds = [lab.bridgeNs, ...lab.hosts.map((h) => h.ns)].map((n) => `netns add ${n}`).join('\n') + '\n';
  await mustRun('creating the lab namespaces', ip, ['-batch', '-'], { input: adds, timeoutMs: 60_000 });

  // 2. The agents: each sets its namespace's sysctls (before eth0 exists, so
  //    the `default` settings apply to it) and starts listening.
  const agent = scriptPath('agent.py');
  const started = await Promise.allSettled([
    startBridgeSysctls(lab, ip),
    mapLimit(lab.hosts, concurrency, async (h) => {
      h.pid = await startAgent(lab, h, ip, agent, options.agentTimeoutMs ?? 15_000);
    }),
  ]);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  writeState(lab, 'creating');

  // 3. The bridge and every veth pair, from inside the bridge namespace: the
  //    host end is created directly in the host's namespace as eth0.
  const bridge = ['link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0', 'link set br0 up'];
  for (const h of lab.hosts) {
    bridge.push(`link add ${h.veth} type veth peer name eth0 address ${h.mac} netns ${h.ns}`);
    bridge.push(`link set ${h.veth} master br0 up`);
  }
  await mustRun(`building the bridge in ${lab.bridgeNs}`, ip, ['-n', lab.bridgeNs, '-batch', '-'], { input: bridge.join('\n') + '\n', timeoutMs: 120_000 });

  // 4. Each host's links, addresses, on-link default routes and (static
  //    neighbours) a permanent entry for every other host's addresses.
  const neighbors = lab.neighbors === 'static' ? lab.hosts.flatMap((o) => o.addresses.map((a) => ({ owner: o, line: `neigh replace ${a} lladdr ${o.mac} dev eth0 nud permanent` }))) : [];
  await mapLimit(lab.hosts, concurrency, async (h) => {
    const cmds = ['link set lo up', 'link set eth0 up'];
    for (const a of h.addresses) cmds.push(isIP(a) === 6 ? `addr add ${a}/128 dev eth0 nodad` : `addr add ${a}/32 dev eth0`);
    cmds.push('route add default dev eth0', 'route add ::/0 dev eth0');
    for (const n of neighbors) if (n.owner !== h) cmds.push(n.line);
    await mustRun(`configuring ${h.ns}`, ip, ['-n', h.ns, '-batch', '-'], { input: cmds.join('\n') + '\n', timeoutMs: 30_000 });
  });
}

/** The bridge namespace routes nothing and speaks no IPv6 itself: it only bridges. */
async function startBridgeSysctls(lab: Lab, ip: string): Promise<void> {
  const code = [
    'import sys',
    'for k, v in (("net/ipv4/ip_forward", "0"), ("net/ipv6/conf/all/disable_ipv6", "1"), ("net/ipv6/conf/default/disable_ipv6", "1")):',
    '    try:',
    '        open("/proc/sys/" + k, "w").write(v)',
    '    except OSError as e:',
    '        sys.stderr.write("%s: %s\\n" % (k, e))',
  ].join('\n');
  await mustRun(`setting sysctls in ${lab.bridgeNs}`, ip, ['netns', 'exec', lab.bridgeNs, lab.python, ...PYTHON_FLAGS, '-c', code], { timeoutMs: 15_000 });
}

/**
 * Starts a host's agent, detached (it outlives this process, so another
 * process can probe the lab), and waits for its one-line ready report.
 */
function startAgent(lab: Lab, h: LabHostState, ip: string, agent: string, timeoutMs: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const args = ['netns', 'exec', h.ns, lab.python, ...PYTHON_FLAGS, agent, '--run', lab.runId, '--host', h.name, '--tcp', h.tcpPorts.join(','), '--udp', h.udpPorts.join(',')];
    const child = spawn(ip, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let settled = false;
    const finish = (e: Error | undefined, pid?: number) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      child.unref();
      if (e) {
        if (child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL');
        reject(e);
      } else resolvePromise(pid!);
    };
    const timer = setTimeout(() => finish(new LabError(`the agent of ${h.name} (${h.ns}) did not report ready within ${timeoutMs} ms${err ? `:\n${err.trim()}` : ''}`)), timeoutMs);
    child.on('error', (e) => finish(new LabError(`cannot start the agent of ${h.name}: ${e.message}`)));
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString('utf8');
    });
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString('utf8');
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      let msg: { ready?: boolean; pid?: number; error?: string };
      try {
        msg = JSON.parse(out.slice(0, nl)) as typeof msg;
      } catch {
        finish(new LabError(`the agent of ${h.name} said something unexpected: ${out.slice(0, nl)}`));
        return;
      }
      if (msg.ready && typeof msg.pid === 'number') finish(undefined, msg.pid);
      else finish(new LabError(`the agent of ${h.name} (${h.ns}) failed: ${msg.error ?? 'unknown error'}`));
    });
    child.on('exit', (code, signal) => {
      finish(new LabError(`the agent of ${h.name} (${h.ns}) exited (${signal ?? `code ${code}`}) before it was ready${err ? `:\n${err.trim()}` : ''}`));
    });
  });
}

/** Options of {@link labDown}. */
export interface LabDownOptions {
  /** Where the state files are; default {@link defaultStateDir}. */
  stateDir?: string;
}

/** What {@link labDown} removed. */
export interface LabDownReport {
  /** The namespaces deleted. */
  namespaces: string[];
  /** The pids of the processes killed (every process inside those namespaces). */
  killed: number[];
  /** The state files removed. */
  stateFiles: string[];
}

/**
 * Takes a lab down: kills every process inside its namespaces, deletes the
 * namespaces (the bridge first; the veth pairs go with them) and removes its
 * state file. With no run id, every `bh-` namespace on the machine and every
 * state file in the state directory. Idempotent, and works without the state
 * file (after a crash): the namespace names are enough.
 */
export async function labDown(runId?: string, options: LabDownOptions = {}): Promise<LabDownReport> {
  const plan = planDown(runId, options);
  const killed = killAll(plan.pids);
  for (let i = 0; i < 100 && killed.some(alive); i++) await sleep(20);
  if (plan.namespaces.length > 0) {
    // -force: go on past a namespace that vanished meanwhile.
    await run(ipPath(), ['-force', '-batch', '-'], { input: delBatch(plan.namespaces), timeoutMs: 120_000 });
  }
  return finishDown(plan, killed);
}

/**
 * {@link labDown} without awaiting anything, for `process.on('exit')` and
 * signal handlers, where asynchronous work never runs.
 */
export function labDownSync(runId?: string, options: LabDownOptions = {}): LabDownReport {
  const plan = planDown(runId, options);
  const killed = killAll(plan.pids);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 100 && killed.some(alive); i++) Atomics.wait(pause, 0, 0, 20);
  if (plan.namespaces.length > 0) spawnSync(ipPath(), ['-force', '-batch', '-'], { input: delBatch(plan.namespaces), timeout: 120_000, stdio: ['pipe', 'ignore', 'ignore'] });
  return finishDown(plan, killed);
}

interface DownPlan {
  namespaces: string[];
  pids: number[];
  files: string[];
}

function planDown(runId: string | undefined, options: LabDownOptions): DownPlan {
  if (runId !== undefined) checkRunId(runId);
  const stateDir = resolve(options.stateDir ?? defaultStateDir());
  const prefix = runId === undefined ? NS_PREFIX : runPrefix(runId);
  const namespaces = listNamespaces().filter((n) => n.startsWith(prefix));
  // The bridge namespaces first: deleting them removes every veth pair at once.
  namespaces.sort((a, b) => Number(b.endsWith('-br')) - Number(a.endsWith('-br')) || a.localeCompare(b));
  // Processes: everything inside the namespaces, and the recorded agents
  // (in case a namespace handle is already gone), checked by command line.
  const pids = new Set(pidsInNamespaces(namespaces));
  const files = stateFilesOf(stateDir, runId);
  for (const f of files) {
    for (const pid of recordedAgents(f)) pids.add(pid);
  }
  pids.delete(process.pid);
  return { namespaces, pids: [...pids], files };
}

function killAll(pids: readonly number[]): number[] {
  const killed: number[] = [];
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // already gone
    }
  }
  return killed.sort((a, b) => a - b);
}

function ipPath(): string {
  const ip = which('ip');
  if (!ip) throw new LabError('`ip` (iproute2) not found: apt-get install iproute2');
  return ip;
}

function delBatch(namespaces: readonly string[]): string {
  return namespaces.map((n) => `netns del ${n}`).join('\n') + '\n';
}

function finishDown(plan: DownPlan, killed: number[]): LabDownReport {
  const left = listNamespaces().filter((n) => plan.namespaces.includes(n));
  if (left.length > 0) throw new LabError(`could not delete lab namespaces: ${left.join(', ')}`);
  for (const f of plan.files) rmSync(f, { force: true });
  return { namespaces: plan.namespaces, killed, stateFiles: plan.files };
}

function stateFilesOf(stateDir: string, runId: string | undefined): string[] {
  if (runId !== undefined) {
    const f = stateFileOf(stateDir, runId);
    try {
      readFileSync(f);
      return [f];
    } catch {
      return [];
    }
  }
  try {
    return readdirSync(stateDir).filter((n) => RUN_ID.test(n.replace(/\.json$/, '')) && n.endsWith('.json')).map((n) => join(stateDir, n));
  } catch {
    return [];
  }
}

/** Agent pids from a state file that are still that run's agents. */
function recordedAgents(file: string): number[] {
  let lab: Partial<Lab>;
  try {
    lab = JSON.parse(readFileSync(file, 'utf8')) as Partial<Lab>;
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const h of lab.hosts ?? []) {
    if (!h.pid) continue;
    const cmd = cmdline(h.pid);
    if (cmd && isAgent(cmd, lab.runId ?? '')) out.push(h.pid);
  }
  return out;
}

function isAgent(cmd: string[], runId: string): boolean {
  const i = cmd.indexOf('--run');
  return cmd.some((a) => a.endsWith('agent.py')) && i >= 0 && cmd[i + 1] === runId;
}

/** One lab as {@link labStatus} sees it. */
export interface LabStatusEntry {
  runId: string;
  /** The state file, when there is one (none: namespaces left by a crash or by another state directory). */
  stateFile?: string;
  /** `up`, `creating` (or a crash while creating), or `orphan` (namespaces without a state file). */
  status: 'up' | 'creating' | 'orphan';
  createdAt?: string;
  /** Hosts recorded in the state file. */
  hosts: number;
  /** `bh-<runId>-` namespaces present. */
  namespaces: number;
  /** Recorded agents still running. */
  agentsAlive: number;
}

/** Lists the labs: those with a state file in the state directory, and any other `bh-` namespaces grouped by run id. */
export function labStatus(options: { stateDir?: string } = {}): LabStatusEntry[] {
  const stateDir = resolve(options.stateDir ?? defaultStateDir());
  const namespaces = listNamespaces().filter((n) => n.startsWith(NS_PREFIX));
  const byRun = new Map<string, LabStatusEntry>();
  for (const f of stateFilesOf(stateDir, undefined)) {
    let data: Partial<Lab> & { status?: string };
    try {
      data = JSON.parse(readFileSync(f, 'utf8')) as typeof data;
    } catch {
      continue;
    }
    if (!data.runId) continue;
    const prefix = runPrefix(data.runId);
    const hosts = data.hosts ?? [];
    byRun.set(data.runId, {
      runId: data.runId,
      stateFile: f,
      status: data.status === 'up' ? 'up' : 'creating',
      createdAt: data.createdAt,
      hosts: hosts.length,
      namespaces: namespaces.filter((n) => n.startsWith(prefix)).length,
      agentsAlive: hosts.filter((h) => h.pid && alive(h.pid) && isAgent(cmdline(h.pid) ?? [], data.runId!)).length,
    });
  }
  for (const n of namespaces) {
    const runId = n.slice(NS_PREFIX.length).split('-')[0];
    if (!runId || byRun.has(runId)) continue;
    const prefix = runPrefix(runId);
    byRun.set(runId, { runId, status: 'orphan', hosts: 0, namespaces: namespaces.filter((x) => x.startsWith(prefix)).length, agentsAlive: 0 });
  }
  return [...byRun.values()].sort((a, b) => a.runId.localeCompare(b.runId));
}

/**
 * Builds a lab, runs `fn` on it and always takes it down afterwards, whether
 * `fn` returns or throws.
 */
export async function withLab<T>(hosts: LabHost[], fn: (lab: Lab) => Promise<T>, options: LabUpOptions = {}): Promise<T> {
  const lab = await labUp(hosts, options);
  try {
    return await fn(lab);
  } finally {
    await labDown(lab.runId, { stateDir: lab.stateDir });
  }
}

/** Finds a host of the lab by name; throws when there is none. */
export function labHost(lab: Lab, name: string): LabHostState {
  const h = lab.hosts.find((x) => x.name === name);
  if (!h) throw new LabError(`lab ${lab.runId} has no host \`${name}\``);
  return h;
}
