/**
 * The kernel differential test: seeded random estates are compiled for every
 * managed host, loaded into a network-namespace lab (nftables, then
 * iptables + ipset), and probed with real TCP, UDP and ICMP: what the kernel
 * did must equal what the engine says, on every probe. At least 2,000 probes
 * per backend per run.
 *
 * Expected: the engine's `blocked` means the packet is dropped (filtered);
 * `allowed`, `potentially-blocked` (test mode logs and lets through) and
 * `not-evaluated` mean it gets through (every port has a listener).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatAddr, parseAddr } from '../../src/netset/ip.js';
import { PROTOCOLS } from '../../src/netset/connset.js';
import { Evaluator } from '../../src/engine/evaluate.js';
import { HostCompiler } from '../../src/compile/host.js';
import { compileNftables } from '../../src/compile/nftables.js';
import { compileIptables } from '../../src/compile/iptables.js';
import { iptablesApply } from '../../src/adapters/iptables.js';
import { labDown, labLoad, labProbe, labProblems, labUp, type Probe } from '../../src/lab/index.js';
import { randomLabEstate } from '../helpers/random-policy.js';
import { policyFromDoc } from '../helpers/policy.js';

const problems = process.getuid?.() === 0 ? labProblems({ needIptables: true }) : ['needs root (network namespaces)'];
const skip = problems.length > 0 ? problems.join('; ') : false;
const SEEDS = [11, 12, 13];
const MIN_PROBES = 2000;

for (const backend of ['nftables', 'iptables'] as const) {
  test(`the kernel enforces what the engine decides (${backend})`, { skip, timeout: 240_000 }, async () => {
    let probes = 0;
    let mismatches: string[] = [];
    const verdicts = new Map<string, number>();
    for (const seed of SEEDS) {
      const estate = randomLabEstate(seed + (backend === 'iptables' ? 100 : 0));
      const c = policyFromDoc(estate.doc);
      assert.equal(c.diagnostics.errorCount, 0, 'the random estate loads');
      const ev = new Evaluator(c.ir);
      const hosts = [
        ...c.ir.workloads.map((w) => ({ name: w.name, addresses: w.addresses.map((p) => formatAddr(p.addr)) })),
        ...estate.externals,
      ].map((h) => ({ ...h, tcpPorts: [...estate.tcpPorts], udpPorts: [...estate.udpPorts] }));
      const lab = await labUp(hosts);
      try {
        const hc = new HostCompiler(c.ir);
        for (let i = 0; i < c.ir.workloads.length; i++) {
          const h = hc.host(i);
          if (!h) continue;
          const ns = lab.hosts.find((x) => x.name === h.workload)!.ns;
          if (backend === 'nftables') await labLoad(lab, h.workload, { kind: 'nftables', text: compileNftables(h).text });
          else {
            const r = iptablesApply(compileIptables(h), { netns: ns });
            assert.ok(r.ok, `${h.workload}: ${r.ok ? '' : `${r.step}: ${r.error}`}`);
          }
        }
        // Every ordered pair of hosts, every address family they share, every port, and a ping.
        const plan: Probe[] = [];
        for (const a of hosts) {
          for (const b of hosts) {
            if (a === b) continue;
            for (const dst of b.addresses) {
              const v6 = dst.includes(':');
              const src = a.addresses.find((x) => x.includes(':') === v6);
              if (!src) continue;
              for (const port of estate.tcpPorts) plan.push({ from: a.name, src, dst, proto: 'tcp', port });
              for (const port of estate.udpPorts) plan.push({ from: a.name, src, dst, proto: 'udp', port });
              plan.push({ from: a.name, src, dst, proto: v6 ? 'icmpv6' : 'icmp', port: v6 ? 128 : 8 });
            }
          }
        }
        const results = await labProbe(lab, plan, { timeoutMs: 300 });
        for (const r of results) {
          const proto = PROTOCOLS[r.proto];
          const port = r.proto === 'icmp' || r.proto === 'icmpv6' ? r.port * 256 : r.port;
          const d = ev.decide({ src: parseAddr(r.src!)!, dst: parseAddr(r.dst)!, proto, port });
          verdicts.set(d.verdict, (verdicts.get(d.verdict) ?? 0) + 1);
          const expect = d.verdict === 'blocked' ? 'filtered' : 'open';
          if (r.result !== expect) mismatches.push(`seed ${seed}: ${r.from} ${r.src} -> ${r.dst} ${r.port}/${r.proto}: kernel ${r.result} (${(r as { detail?: string }).detail ?? ''}), engine ${d.verdict} by ${d.decidedBy ?? '-'} ${d.rule ?? 'default'}`);
        }
        probes += results.length;
      } finally {
        await labDown(lab.runId);
      }
      mismatches = mismatches.slice(0, 20);
    }
    console.log(`${backend}: ${probes} probes, ${[...verdicts].map(([v, n]) => `${n} ${v}`).join(', ')}; ${mismatches.length === 0 ? 'kernel and engine agree on every probe' : `${mismatches.length}+ mismatches`}`);
    assert.deepEqual(mismatches, [], 'the kernel agrees with the engine');
    assert.ok(probes >= MIN_PROBES, `at least ${MIN_PROBES} probes (${probes})`);
    assert.ok((verdicts.get('allowed') ?? 0) > 100 && (verdicts.get('blocked') ?? 0) > 100, 'both outcomes are exercised');
  });
}
