/**
 * The connectivity report of a cluster in np-guard's `list` text format
 * (shared/conformance/k8s-netpol/README.md): one line
 * `src => dst : conns` per ordered pair of peers with something allowed,
 * sorted by source then destination in byte order.
 *
 * Peers are the workloads and the external address ranges. Sources and
 * destinations split the IPv4 space independently: sources by every
 * NetworkPolicy ingress `ipBlock`, destinations by every egress `ipBlock` and
 * every (B)ANP egress `networks` entry, into the maximal ranges on which
 * membership in each of them does not change.
 */
import type { ConnSet } from '../netset/connset.js';
import { formatAddr, IpSet } from '../netset/ip.js';
import { Analyzer, type AnalysisPeer } from './analyze.js';
import { workloadId, type Cluster } from './cluster.js';
import { formatConns } from './conns.js';

/** One line of the report. */
export interface ConnLine {
  readonly src: string;
  readonly dst: string;
  readonly conns: ConnSet;
}

/** A peer of the report with its name. */
interface NamedPeer {
  readonly name: string;
  readonly peer: AnalysisPeer;
}

/**
 * Cuts 0.0.0.0–255.255.255.255 at every boundary of the given sets' IPv4
 * parts: the maximal ranges on which membership in each set is constant, in
 * ascending order.
 */
export function splitIpv4(sets: readonly IpSet[]): [number, number][] {
  const cuts = new Set<number>([0]);
  for (const s of sets) {
    for (const [lo, hi] of s.v4.intervals()) {
      cuts.add(lo);
      if (hi < 0xffffffff) cuts.add(hi + 1);
    }
  }
  const sorted = [...cuts].sort((a, b) => a - b);
  return sorted.map((c, i) => [c, i + 1 < sorted.length ? sorted[i + 1] - 1 : 0xffffffff]);
}

/** The IP sets that split the sources (ingress ipBlocks) and the destinations (egress ipBlocks and networks). */
export function ipBlocksOf(cluster: Cluster): { sources: IpSet[]; destinations: IpSet[] } {
  const sources: IpSet[] = [];
  const destinations: IpSet[] = [];
  for (const np of cluster.networkPolicies) {
    for (const r of np.ingress) for (const p of r.peers) if (p.kind === 'ipBlock') sources.push(p.set);
    for (const r of np.egress) for (const p of r.peers) if (p.kind === 'ipBlock') destinations.push(p.set);
  }
  const admin = [...cluster.adminPolicies, ...(cluster.baselinePolicy ? [cluster.baselinePolicy] : [])];
  for (const p of admin) for (const r of p.egress) for (const x of r.peers) if (x.kind === 'networks') destinations.push(x.set);
  return { sources, destinations };
}

function externalPeers(sets: readonly IpSet[]): NamedPeer[] {
  return splitIpv4(sets).map(([lo, hi]) => ({ name: `${formatAddr(lo)}-${formatAddr(hi)}[External]`, peer: { kind: 'ip', set: IpSet.fromRanges([[lo, hi]], []) } }));
}

const byteOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Every line of the report, sorted. Pairs of a workload with itself, of two external ranges, and with nothing allowed are left out. */
export function connlist(cluster: Cluster, analyzer: Analyzer = new Analyzer(cluster)): ConnLine[] {
  const workloads: NamedPeer[] = cluster.workloads.map((w) => ({ name: workloadId(w), peer: { kind: 'workload', workload: w } }));
  const { sources, destinations } = ipBlocksOf(cluster);
  const srcs = [...externalPeers(sources), ...workloads];
  const dsts = [...externalPeers(destinations), ...workloads];
  const lines: ConnLine[] = [];
  for (const s of srcs) {
    for (const d of dsts) {
      if (s.peer.kind === 'ip' && d.peer.kind === 'ip') continue;
      if (s.name === d.name) continue;
      const conns = analyzer.allowed(s.peer, d.peer);
      if (!conns.isEmpty()) lines.push({ src: s.name, dst: d.name, conns });
    }
  }
  return lines.sort((a, b) => byteOrder(a.src, b.src) || byteOrder(a.dst, b.dst));
}

/** The report as np-guard's txt formatter writes it: every line ends in `\n`; no lines give the empty string. */
export function formatConnlist(lines: readonly ConnLine[]): string {
  return lines.map((l) => `${l.src} => ${l.dst} : ${formatConns(l.conns)}\n`).join('');
}
