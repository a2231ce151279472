/**
 * Probing the lab: real connections from one host's namespace to an address,
 * classified as open, closed or filtered. Probes are run in batches: one
 * prober process per source namespace (src/lab/prober.py, JSON in, JSON out),
 * several namespaces at once.
 */
import { isIP } from 'node:net';
import { canonicalAddress, labHost, type Lab, type LabHostState } from './lab.js';
import { LabError, PYTHON_FLAGS, labTools, mapLimit, mustRun, scriptPath } from './sys.js';

/** One connection attempt. */
export interface Probe {
  /** The host (by name) the probe is made from, inside its namespace. */
  from: string;
  /** The source address; default the host's first address of the destination's family. Must be one of the host's addresses. */
  src?: string;
  /** The destination address (any address: a lab host's, or one nobody has). */
  dst: string;
  proto: 'tcp' | 'udp' | 'icmp' | 'icmpv6';
  /** The destination port; for `icmp` / `icmpv6` the ICMP type, which must be echo request (8 / 128). */
  port: number;
}

/** What the kernel did with a probe. */
export interface ProbeResult extends Probe {
  /** The source address used. */
  src: string;
  /**
   * `open`: connected (tcp), echoed (udp) or echo reply (icmp). `closed`: reset
   * (tcp) or ICMP port unreachable (udp). `filtered`: no answer within the
   * timeout, another ICMP unreachable, or dropped on the way out.
   */
  result: 'open' | 'closed' | 'filtered';
  /** Milliseconds from the first packet to the outcome. */
  ms: number;
  /** How the outcome showed: `connected`, `echo`, `echo-reply`, `refused`, `timeout`, `unreachable`, `local-drop`, … */
  detail: string;
}

/** Options of {@link labProbe}. */
export interface LabProbeOptions {
  /** How long to wait for an answer before calling a probe filtered (default 300 ms). */
  timeoutMs?: number;
  /** How many prober processes (source namespaces) run at once (default 16). */
  concurrency?: number;
  /** How many probes one prober has in flight at once (default 128). */
  inflight?: number;
}

interface Prepared {
  index: number;
  probe: Probe;
  src: string;
}

/** A batch larger than this is split over several prober processes. */
const MAX_PER_PROCESS = 4000;

function family(addr: string): 4 | 6 {
  return isIP(addr) === 6 ? 6 : 4;
}

function prepare(lab: Lab, p: Probe, index: number): { host: LabHostState; prep: Prepared } {
  const host = labHost(lab, p.from);
  const fam = isIP(p.dst);
  if (fam === 0) throw new LabError(`probe ${index}: destination \`${p.dst}\` is not an IP address`);
  if (p.proto === 'tcp' || p.proto === 'udp') {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) throw new LabError(`probe ${index}: ${p.proto} port ${p.port} is not in 1..65535`);
  } else if (p.proto === 'icmp' || p.proto === 'icmpv6') {
    const want = p.proto === 'icmp' ? 4 : 6;
    if (fam !== want) throw new LabError(`probe ${index}: ${p.proto} to ${p.dst}: use ${want === 4 ? 'icmp for IPv4' : 'icmpv6 for IPv6'}`);
    const echo = p.proto === 'icmp' ? 8 : 128;
    if (p.port !== echo) throw new LabError(`probe ${index}: only ICMP echo request can be probed (${p.proto} type ${echo}), not type ${p.port}`);
  } else {
    throw new LabError(`probe ${index}: unknown protocol \`${String(p.proto)}\``);
  }
  let src = p.src;
  if (src === undefined) {
    src = host.addresses.find((a) => family(a) === fam);
    if (src === undefined) throw new LabError(`probe ${index}: host \`${host.name}\` has no IPv${fam} address to reach ${p.dst} from`);
  } else {
    if (family(src) !== fam || isIP(src) === 0) throw new LabError(`probe ${index}: source ${src} and destination ${p.dst} are not of one family`);
    const c = canonicalAddress(src);
    if (!host.addresses.some((a) => canonicalAddress(a) === c)) throw new LabError(`probe ${index}: ${src} is not an address of \`${host.name}\``);
  }
  return { host, prep: { index, probe: p, src } };
}

interface ProberReply {
  results: ({ result: ProbeResult['result'] | 'error'; ms: number; detail: string } | { error: string })[];
}

/**
 * Runs probes in the lab's kernel and returns their results in the order
 * given. Throws a {@link LabError} for a probe that names an unknown host, a
 * source address the host does not have, or an ICMP type other than echo.
 */
export async function labProbe(lab: Lab, probes: Probe[], options: LabProbeOptions = {}): Promise<ProbeResult[]> {
  const timeoutMs = options.timeoutMs ?? 300;
  const inflight = options.inflight ?? 128;
  const concurrency = options.concurrency ?? 16;
  if (!(timeoutMs > 0 && timeoutMs <= 60_000)) throw new LabError(`probe timeout ${timeoutMs} ms is not in (0, 60000]`);
  if (probes.length === 0) return [];
  const tools = labTools();
  const prober = scriptPath('prober.py');

  // Group by source namespace, then cut groups into batches.
  const groups = new Map<string, Prepared[]>();
  probes.forEach((p, i) => {
    const { host, prep } = prepare(lab, p, i);
    const g = groups.get(host.ns) ?? [];
    g.push(prep);
    groups.set(host.ns, g);
  });
  const batches: { ns: string; items: Prepared[] }[] = [];
  for (const [ns, items] of groups) {
    for (let i = 0; i < items.length; i += MAX_PER_PROCESS) batches.push({ ns, items: items.slice(i, i + MAX_PER_PROCESS) });
  }
  // Largest batches first, so one long batch does not start last.
  batches.sort((a, b) => b.items.length - a.items.length);

  const results = new Array<ProbeResult>(probes.length);
  await mapLimit(batches, concurrency, async ({ ns, items }) => {
    const input = JSON.stringify({
      timeoutMs,
      inflight,
      probes: items.map(({ probe, src }) => ({ src, dst: probe.dst, proto: probe.proto, port: probe.port })),
    });
    // Bound: every probe could time out, `inflight` at a time, plus start-up.
    const bound = Math.ceil(items.length / inflight) * (timeoutMs + 200) + 15_000;
    const r = await mustRun(`probing from ${ns}`, tools.ip, ['netns', 'exec', ns, lab.python, ...PYTHON_FLAGS, prober], { input, timeoutMs: bound });
    let reply: ProberReply;
    try {
      reply = JSON.parse(r.stdout) as ProberReply;
    } catch {
      throw new LabError(`the prober in ${ns} printed no JSON:\n${r.stdout.slice(0, 500)}${r.stderr}`);
    }
    if (reply.results.length !== items.length) throw new LabError(`the prober in ${ns} answered ${reply.results.length} of ${items.length} probes`);
    items.forEach((it, k) => {
      const res = reply.results[k];
      if ('error' in res) throw new LabError(`probe ${it.index} from ${it.probe.from}: ${res.error}`);
      if (res.result === 'error') {
        const hint = res.detail === 'enobufs' || res.detail === 'einval' ? ' (is the kernel neighbour table full? see `neighbors` in docs/LAB.md)' : '';
        throw new LabError(`probe ${it.index} from ${it.probe.from} to ${it.probe.dst} failed with ${res.detail.toUpperCase()}, which says nothing about the ruleset${hint}`);
      }
      results[it.index] = { ...it.probe, src: it.src, result: res.result as ProbeResult['result'], ms: res.ms, detail: res.detail };
    });
  });
  return results;
}

/** What {@link labTcpRate} measured. */
export interface TcpRate {
  /** Connections completed per second. */
  connectionsPerSecond: number;
  /** Connections completed. */
  connections: number;
  /** Connection attempts that failed or timed out. */
  failures: number;
  /** The time measured, in seconds. */
  seconds: number;
}

/**
 * A small benchmark: opens TCP connections from `from` to `to` (a host name,
 * whose first address is used, or an address) on `port`, back to back with
 * `parallel` in flight (default 8), for `seconds` (at most 60), each closed
 * with a reset. The rate is bounded by the Python prober (one core); compare
 * rates measured the same way, not against other tools.
 */
export async function labTcpRate(lab: Lab, from: string, to: string, port: number, seconds: number, options: { parallel?: number } = {}): Promise<TcpRate> {
  if (!(seconds > 0 && seconds <= 60)) throw new LabError(`labTcpRate: seconds must be in (0, 60], not ${seconds}`);
  const dst = isIP(to) !== 0 ? to : labHost(lab, to).addresses[0];
  const { host, prep } = prepare(lab, { from, dst, proto: 'tcp', port }, 0);
  const tools = labTools();
  const input = JSON.stringify({ mode: 'rate', src: prep.src, dst, port, seconds, parallel: options.parallel ?? 8, timeoutMs: 1000 });
  const r = await mustRun(`measuring the TCP rate from ${from}`, tools.ip, ['netns', 'exec', host.ns, lab.python, ...PYTHON_FLAGS, scriptPath('prober.py')], { input, timeoutMs: seconds * 1000 + 15_000 });
  const m = JSON.parse(r.stdout) as { connections: number; failures: number; seconds: number };
  return { connectionsPerSecond: m.seconds > 0 ? m.connections / m.seconds : 0, connections: m.connections, failures: m.failures, seconds: m.seconds };
}
