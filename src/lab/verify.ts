/**
 * The lab and the policy together: lab hosts from an IR (addresses, and the
 * ports each workload serves), loading every managed host's compiled
 * ruleset, probe plans, and comparing what the kernel did with what the
 * engine decides. Used by `bulkhead lab`, the demo and the kernel
 * differential test.
 */
import { formatAddr, parseAddr } from '../netset/ip.js';
import { PROTOCOLS } from '../netset/connset.js';
import type { Ir } from '../policy/ir.js';
import { Evaluator, type Decision } from '../engine/evaluate.js';
import { HostCompiler } from '../compile/host.js';
import { compileNftables, type Failsafe } from '../compile/nftables.js';
import { compileIptables } from '../compile/iptables.js';
import { iptablesApply } from '../adapters/iptables.js';
import { labLoad } from './load.js';
import { LabError } from './sys.js';
import type { Lab, LabHost } from './lab.js';
import type { Probe, ProbeResult } from './probe.js';

export type Backend = 'nftables' | 'iptables';

/** At most this many ports of one range get a listener. */
const RANGE_SAMPLE = 2;

/**
 * Lab hosts for the workloads of an IR (all, or the named ones): their
 * addresses (single addresses only), listening on the TCP and UDP ports rules
 * allow towards them, plus `extraPorts`.
 */
export function labHostsFromIr(ir: Ir, options: { names?: readonly string[]; extraTcp?: readonly number[]; extraUdp?: readonly number[] } = {}): LabHost[] {
  const wanted = options.names ? new Set(options.names) : undefined;
  const out: LabHost[] = [];
  ir.workloads.forEach((w, i) => {
    if (wanted && !wanted.has(w.name)) return;
    const addresses = w.addresses.filter((p) => p.len === (typeof p.addr === 'number' ? 32 : 128)).map((p) => formatAddr(p.addr));
    if (addresses.length === 0) return;
    const tcp = new Set(options.extraTcp ?? []);
    const udp = new Set(options.extraUdp ?? []);
    const cls = ir.classOf[i];
    for (const r of ir.rules) {
      if (r.rule.action !== 'allow' || !r.to.classes.has(cls)) continue;
      for (const e of r.conns.entries()) {
        const set = e.proto === PROTOCOLS.tcp ? tcp : e.proto === PROTOCOLS.udp ? udp : undefined;
        if (!set) continue;
        for (const [lo, hi] of e.ranges) for (let p = lo; p <= Math.min(hi, lo + RANGE_SAMPLE - 1); p++) if (p > 0) set.add(p);
      }
    }
    out.push({ name: w.name, addresses, tcpPorts: [...tcp].sort((a, b) => a - b), udpPorts: [...udp].sort((a, b) => a - b) });
  });
  return out;
}

/** Compiles and loads the ruleset of every managed workload that is a lab host. */
export async function loadPolicy(lab: Lab, ir: Ir, backend: Backend, options: { failsafe?: Failsafe; dispatchMin?: number } = {}): Promise<number> {
  const hc = new HostCompiler(ir);
  let loaded = 0;
  for (let i = 0; i < ir.workloads.length; i++) {
    const state = lab.hosts.find((h) => h.name === ir.workloads[i].name);
    if (!state) continue;
    const host = hc.host(i);
    if (!host) continue;
    if (backend === 'nftables') await labLoad(lab, host.workload, { kind: 'nftables', text: compileNftables(host, options).text });
    else {
      const r = iptablesApply(compileIptables(host, options), { netns: state.ns });
      if (!r.ok) throw new LabError(`cannot load iptables in ${host.workload}: ${r.step}: ${r.error}`);
    }
    loaded++;
  }
  return loaded;
}

/**
 * Probes between lab hosts: every ordered pair, every address family both
 * have, every port the destination listens on, and an ICMP echo; with
 * `sample`, that many of them chosen evenly.
 */
export function probePlan(hosts: readonly LabHost[], options: { sample?: number } = {}): Probe[] {
  const plan: Probe[] = [];
  for (const a of hosts) {
    for (const b of hosts) {
      if (a === b) continue;
      for (const dst of b.addresses) {
        const v6 = dst.includes(':');
        const src = a.addresses.find((x) => x.includes(':') === v6);
        if (!src) continue;
        for (const port of b.tcpPorts) plan.push({ from: a.name, src, dst, proto: 'tcp', port });
        for (const port of b.udpPorts) plan.push({ from: a.name, src, dst, proto: 'udp', port });
        plan.push({ from: a.name, src, dst, proto: v6 ? 'icmpv6' : 'icmp', port: v6 ? 128 : 8 });
      }
    }
  }
  const n = options.sample;
  if (n === undefined || n >= plan.length) return plan;
  const step = plan.length / n;
  return Array.from({ length: n }, (_, k) => plan[Math.floor(k * step)]);
}

/** What the kernel should have done: the engine's `blocked` is dropped, everything else gets through. */
export function expectedResult(d: Decision): 'open' | 'filtered' {
  return d.verdict === 'blocked' ? 'filtered' : 'open';
}

export interface Comparison {
  readonly probes: number;
  readonly verdicts: ReadonlyMap<string, number>;
  /** Probes where the kernel and the engine disagree, explained. */
  readonly mismatches: readonly string[];
}

/** Compares probe results with the engine's decisions for the same flows. */
export function compareWithEngine(ir: Ir, results: readonly ProbeResult[], ev = new Evaluator(ir)): Comparison {
  const verdicts = new Map<string, number>();
  const mismatches: string[] = [];
  for (const r of results) {
    const proto = PROTOCOLS[r.proto];
    const port = r.proto === 'icmp' || r.proto === 'icmpv6' ? r.port * 256 : r.port;
    const d = ev.decide({ src: parseAddr(r.src!)!, dst: parseAddr(r.dst)!, proto, port });
    verdicts.set(d.verdict, (verdicts.get(d.verdict) ?? 0) + 1);
    if (r.result !== expectedResult(d)) {
      mismatches.push(`${r.from} ${r.src} -> ${r.dst} ${r.port}/${r.proto}: kernel ${r.result}, engine ${d.verdict} (${d.decidedBy ?? 'no end'} ${d.rule ?? 'default'})`);
    }
  }
  return { probes: results.length, verdicts, mismatches };
}
