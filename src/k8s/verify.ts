/**
 * Checks compiled Kubernetes manifests against the engine: the analyzer reads
 * the estate's pods and namespaces with the generated policies, and for every
 * pair of pods, and every pod with every kind of outside address, its
 * connectivity must equal what bulkhead's evaluator decides on the pod ends.
 *
 * Connections are checked at one representative of every piece of the
 * connection space that the rules cut (TCP, UDP and SCTP, ports 1–65535), and
 * addresses at one IPv4 address of every atom and every workload outside the
 * cluster, so the comparison is exhaustive for what the policy can tell apart.
 */
import { Evaluator, type SideDecision } from '../engine/evaluate.js';
import type { Loc } from '../model/diagnostic.js';
import { ConnSet, PROTOCOLS } from '../netset/connset.js';
import { formatAddr, IpSet, type Addr } from '../netset/ip.js';
import type { Ir } from '../policy/ir.js';
import { Analyzer, type AnalysisPeer } from './analyze.js';
import { buildCluster, workloadId } from './cluster.js';
import { K8sDiagnostics } from './diagnostics.js';
import { estateView, type EstatePod } from './estate.js';
import type { ManifestObject } from './manifest.js';
import { objectName, type Manifest } from './plan.js';
import { estateManifests } from './target-k8s.js';
import { calicoOracle, ciliumOracle, type OracleEnd } from './oracle.js';

/** One connection on which the compiled policy and the engine disagree. */
export interface Mismatch {
  readonly src: string;
  readonly dst: string;
  /** `TCP 80` */
  readonly connection: string;
  /** What the engine says for the pod ends. */
  readonly engine: boolean;
  /** What the analyzer says of the compiled manifests. */
  readonly cluster: boolean;
}

/** The outcome of {@link verifyK8s}. */
export interface VerifyResult {
  readonly mismatches: Mismatch[];
  /** How many (pair, connection) checks were made. */
  readonly checks: number;
}

/** Plain manifests as manifest objects (no source positions). */
export function manifestObjects(manifests: readonly Manifest[], file = 'compiled'): ManifestObject[] {
  const at: Loc = { file, line: 0, col: 0 };
  return manifests.map((m) => ({ kind: String(m.kind), apiVersion: String(m.apiVersion ?? ''), data: m, file, locate: () => at }));
}

/** Whether one end's decision lets a connection through (only an enforced deny blocks). */
function sideAllows(s: SideDecision | null): boolean {
  return s === null || !s.evaluated || s.mode !== 'enforce' || s.action === 'allow';
}

const PORT_PROTOS: readonly [string, number][] = [
  ['TCP', PROTOCOLS.tcp],
  ['UDP', PROTOCOLS.udp],
  ['SCTP', PROTOCOLS.sctp],
];

const ICMP_PROTOS: readonly [string, number][] = [
  ['ICMP', PROTOCOLS.icmp],
  ['ICMPv6', PROTOCOLS.icmpv6],
];

/** One key per piece of the connection space the rules cut, within TCP, UDP and SCTP ports 1–65535 (and ICMP types and codes with `icmp`). */
function connectionSamples(ir: Ir, icmp = false): { proto: number; port: number; name: string }[] {
  const protos = icmp ? [...PORT_PROTOS, ...ICMP_PROTOS] : PORT_PROTOS;
  const cuts = new Set<number>();
  for (const [, p] of PORT_PROTOS) cuts.add(ConnSet.key(p, 1));
  if (icmp) for (const [, p] of ICMP_PROTOS) cuts.add(ConnSet.key(p, 0));
  for (const r of ir.rules) {
    const b = r.conns.boundaries();
    for (let i = 0; i < b.length; i += 2) {
      cuts.add(b[i]);
      cuts.add(b[i + 1] + 1);
    }
  }
  const out: { proto: number; port: number; name: string }[] = [];
  for (const k of [...cuts].sort((a, b) => a - b)) {
    const proto = Math.floor(k / 65536);
    const port = k % 65536;
    const name = protos.find(([, p]) => p === proto)?.[0];
    const isIcmp = proto === PROTOCOLS.icmp || proto === PROTOCOLS.icmpv6;
    if (name && isIcmp) out.push({ proto, port, name: `${name} type ${port >>> 8} code ${port & 255}` });
    else if (name && port >= 1) out.push({ proto, port, name: `${name} ${port}` });
  }
  return out;
}

/** One IPv4 address of every atom and of every workload that is no pod, avoiding pod addresses. */
function outsideAddresses(ir: Ir, view: ReturnType<typeof estateView>): Set<number> {
  const podAddrs = view.pods.reduce((s, p) => s.union(p.addresses), IpSet.EMPTY);
  const outside = new Set<number>();
  for (const a of ir.atoms) {
    for (const [lo, hi] of a.v4.intervals()) {
      const first = IpSet.fromRanges([[lo, hi]], []).subtract(podAddrs).v4.min();
      if (first !== undefined) outside.add(first);
    }
  }
  ir.workloads.forEach((w, i) => {
    if (view.podOf.has(i)) return;
    for (const p of w.addresses) if (typeof p.addr === 'number' && !podAddrs.has(p.addr)) outside.add(p.addr);
  });
  return outside;
}

/** Compares the compiled `k8s` manifests of an IR with the engine on the pod ends. */
export function verifyK8s(ir: Ir, compiled: readonly Manifest[], maxMismatches = 20): VerifyResult {
  const view = estateView(ir);
  const cluster = buildCluster(manifestObjects([...estateManifests({ view }), ...compiled]), new K8sDiagnostics());
  const analyzer = new Analyzer(cluster);
  const evaluator = new Evaluator(ir, { cacheBits: 0 });
  const byId = new Map(cluster.workloads.map((w) => [workloadId(w), w]));
  const podPeer = (p: EstatePod): AnalysisPeer => ({ kind: 'workload', workload: byId.get(workloadId({ namespace: p.namespace, name: objectName(p.workload.name), kind: 'Pod' }))! });
  const addrOf = (p: EstatePod): Addr => p.workload.addresses[0].addr;

  const outside = outsideAddresses(ir, view);
  const samples = connectionSamples(ir);
  const mismatches: Mismatch[] = [];
  let checks = 0;
  const compare = (src: string, dst: string, allowed: ConnSet, engine: (proto: number, port: number) => boolean) => {
    for (const c of samples) {
      checks++;
      const e = engine(c.proto, c.port);
      const k = allowed.has(c.proto, c.port);
      if (e !== k && mismatches.length < maxMismatches) mismatches.push({ src, dst, connection: c.name, engine: e, cluster: k });
    }
  };
  for (const s of view.pods) {
    for (const d of view.pods) {
      if (s === d) continue;
      compare(s.workload.name, d.workload.name, analyzer.allowed(podPeer(s), podPeer(d)), (proto, port) => evaluator.decide({ src: addrOf(s), dst: addrOf(d), proto, port }).verdict !== 'blocked');
    }
    for (const a of outside) {
      const ip: AnalysisPeer = { kind: 'ip', set: IpSet.fromAddrs([a]) };
      compare(s.workload.name, formatAddr(a), analyzer.allowed(podPeer(s), ip), (proto, port) => sideAllows(evaluator.decide({ src: addrOf(s), dst: a, proto, port }).egress));
      compare(formatAddr(a), s.workload.name, analyzer.allowed(ip, podPeer(s)), (proto, port) => sideAllows(evaluator.decide({ src: a, dst: addrOf(s), proto, port }).ingress));
    }
  }
  return { mismatches, checks };
}

/**
 * Compares compiled Calico or Cilium manifests with the engine, one pod end
 * at a time, with the reference readings of oracle.ts: for every managed pod
 * and every peer (pod or outside address), each direction and connection
 * (ICMP included), the target's enforced decision must let through exactly
 * what bulkhead does not block on that end. For Calico, the staged policies of
 * pods in test mode must also decide as bulkhead evaluates them.
 */
export function verifySides(ir: Ir, target: 'calico' | 'cilium', compiled: readonly Manifest[], maxMismatches = 20): VerifyResult {
  const view = estateView(ir);
  const oracle = target === 'calico' ? calicoOracle(compiled) : ciliumOracle(compiled);
  const evaluator = new Evaluator(ir, { cacheBits: 0 });
  const samples = connectionSamples(ir, true);
  const ends: { name: string; end: OracleEnd }[] = [
    ...view.pods.map((p) => ({ name: p.workload.name, end: { kind: 'pod' as const, namespace: p.namespace, labels: p.labels, addr: p.workload.addresses[0].addr } })),
    ...[...outsideAddresses(ir, view)].map((a) => ({ name: formatAddr(a), end: { kind: 'ip' as const, addr: a } })),
  ];
  const mismatches: Mismatch[] = [];
  let checks = 0;
  const note = (src: string, dst: string, connection: string, engine: boolean, cluster: boolean) => {
    checks++;
    if (engine !== cluster && mismatches.length < maxMismatches) mismatches.push({ src, dst, connection, engine, cluster });
  };
  for (const s of view.pods) {
    const subject = ends.find((e) => e.name === s.workload.name)!.end as OracleEnd & { kind: 'pod' };
    for (const peer of ends) {
      if (peer.end === subject) continue;
      for (const ingress of [false, true]) {
        for (const c of samples) {
          const flow = ingress ? { src: peer.end.addr, dst: subject.addr, proto: c.proto, port: c.port } : { src: subject.addr, dst: peer.end.addr, proto: c.proto, port: c.port };
          const d = evaluator.decide(flow);
          const side = ingress ? d.ingress : d.egress;
          const [src, dst] = ingress ? [peer.name, s.workload.name] : [s.workload.name, peer.name];
          note(src, dst, c.name, sideAllows(side), oracle(subject, peer.end, ingress, c, false));
          if (target === 'calico' && s.mode === 'test') note(src, dst, `${c.name} (staged)`, side === null || side.action === 'allow', oracle(subject, peer.end, ingress, c, true));
        }
      }
    }
  }
  return { mismatches, checks };
}
