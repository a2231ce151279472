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
import { labDown, labProbe, labProblems, labUp } from '../../src/lab/index.js';
import { compareWithEngine, labHostsFromIr, loadPolicy, probePlan } from '../../src/lab/verify.js';
import { randomLabEstate } from '../helpers/random-policy.js';
import { policyFromDoc } from '../helpers/policy.js';

const problems = process.getuid?.() === 0 ? labProblems({ needIptables: true }) : ['needs root (network namespaces)'];
const skip = problems.length > 0 ? problems.join('; ') : false;
const SEEDS = [11, 12, 13];
const MIN_PROBES = 2000;

for (const backend of ['nftables', 'iptables'] as const) {
  test(`the kernel enforces what the engine decides (${backend})`, { skip, timeout: 240_000 }, async () => {
    let probes = 0;
    const mismatches: string[] = [];
    const verdicts = new Map<string, number>();
    for (const seed of SEEDS) {
      const estate = randomLabEstate(seed + (backend === 'iptables' ? 100 : 0));
      const c = policyFromDoc(estate.doc);
      assert.equal(c.diagnostics.errorCount, 0, 'the random estate loads');
      const ports = { tcpPorts: [...estate.tcpPorts], udpPorts: [...estate.udpPorts] };
      const hosts = [...labHostsFromIr(c.ir, { extraTcp: estate.tcpPorts, extraUdp: estate.udpPorts }), ...estate.externals.map((e) => ({ ...e, ...ports }))];
      const lab = await labUp(hosts);
      try {
        // nftables: the first seed forces the port dispatch (verdict map into per-port chains) on every side with a port rule.
        await loadPolicy(lab, c.ir, backend, backend === 'nftables' && seed === SEEDS[0] ? { dispatchMin: 1 } : {});
        const cmp = compareWithEngine(c.ir, await labProbe(lab, probePlan(hosts), { timeoutMs: 300 }));
        probes += cmp.probes;
        for (const [v, n] of cmp.verdicts) verdicts.set(v, (verdicts.get(v) ?? 0) + n);
        mismatches.push(...cmp.mismatches.slice(0, 10).map((m) => `seed ${seed}: ${m}`));
      } finally {
        await labDown(lab.runId);
      }
    }
    console.log(`${backend}: ${probes} probes, ${[...verdicts].map(([v, n]) => `${n} ${v}`).join(', ')}; ${mismatches.length === 0 ? 'kernel and engine agree on every probe' : `${mismatches.length} mismatches`}`);
    assert.deepEqual(mismatches, [], 'the kernel agrees with the engine');
    assert.ok(probes >= MIN_PROBES, `at least ${MIN_PROBES} probes (${probes})`);
    assert.ok((verdicts.get('allowed') ?? 0) > 100 && (verdicts.get('blocked') ?? 0) > 100, 'both outcomes are exercised');
  });
}
