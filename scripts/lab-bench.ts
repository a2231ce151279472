/**
 * Measures the network-namespace lab at scale (needs root):
 *
 *   node --import tsx scripts/lab-bench.ts [hosts=150] [probes=3000] [prober concurrency]
 *
 * Builds `hosts` hosts (IPv4 + IPv6, TCP 22/80/443, UDP 53), loads an
 * nftables ruleset dropping TCP 443 into every tenth host, runs `probes`
 * random probes (tcp, udp, icmp, icmpv6; open, closed and filtered) and checks
 * every result against what the setup implies. Prints the timings as JSON and
 * always takes the lab down.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown, labLoad, labProbe, labTcpRate, labUp, type LabHost, type Probe } from '../src/lab/index.js';

const nHosts = Number(process.argv[2] ?? 150);
const nProbes = Number(process.argv[3] ?? 3000);
const concurrency = process.argv[4] === undefined ? undefined : Number(process.argv[4]);

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** mulberry32: a small seeded generator, so every run probes the same plan. */
let seed = 42;
function rnd(n: number): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return (((t ^ (t >>> 14)) >>> 0) % n);
}

async function main(): Promise<void> {
  const stateDir = mkdtempSync(join(tmpdir(), 'bh-lab-bench-'));
  const hosts: LabHost[] = Array.from({ length: nHosts }, (_, i) => ({
    name: `host${i}`,
    addresses: [`10.88.${i >> 8}.${(i & 255) + 1}`, `fd00:88::${(i + 1).toString(16)}`],
    tcpPorts: [22, 80, 443],
    udpPorts: [53],
  }));
  const t0 = performance.now();
  const lab = await labUp(hosts, { stateDir });
  const upMs = performance.now() - t0;
  try {
    const rss = lab.hosts.map((h) => rssOf(h.pid));
    const guarded = new Set(lab.hosts.filter((_, i) => i % 10 === 0).map((h) => h.name));
    const t1 = performance.now();
    for (const name of guarded) {
      await labLoad(lab, name, { kind: 'nftables', text: 'table inet bulkhead {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp dport 443 drop\n  }\n}\n' });
    }
    const loadMs = (performance.now() - t1) / guarded.size;

    const probes: Probe[] = [];
    const expected: string[] = [];
    for (let k = 0; k < nProbes; k++) {
      const from = hosts[rnd(nHosts)];
      const to = hosts[rnd(nHosts)];
      const v6 = rnd(2) === 1;
      const dst = to.addresses[v6 ? 1 : 0];
      const kind = rnd(4);
      if (kind === 0) {
        probes.push({ from: from.name, dst, proto: v6 ? 'icmpv6' : 'icmp', port: v6 ? 128 : 8 });
        expected.push('open');
      } else if (kind === 1) {
        const port = [53, 54][rnd(2)];
        probes.push({ from: from.name, dst, proto: 'udp', port });
        expected.push(port === 53 ? 'open' : 'closed');
      } else {
        const port = [22, 80, 443, 8080][rnd(4)];
        probes.push({ from: from.name, dst, proto: 'tcp', port });
        expected.push(port === 8080 ? 'closed' : port === 443 && guarded.has(to.name) ? 'filtered' : 'open');
      }
    }
    const t2 = performance.now();
    const results = await labProbe(lab, probes, { concurrency });
    const probeMs = performance.now() - t2;
    const wrong = results.filter((r, i) => r.result !== expected[i]);
    const counts: Record<string, number> = {};
    for (const r of results) counts[r.result] = (counts[r.result] ?? 0) + 1;
    const rate = await labTcpRate(lab, hosts[1].name, hosts[2].name, 80, 2);
    console.log(JSON.stringify({
      hosts: nHosts,
      upMs: Math.round(upMs),
      agentRssKb: { min: Math.min(...rss), max: Math.max(...rss), totalMb: Math.round(rss.reduce((a, b) => a + b, 0) / 1024) },
      nftLoadMsPerHost: Math.round(loadMs),
      probes: nProbes,
      probeMs: Math.round(probeMs),
      probesPerSecond: Math.round(nProbes / (probeMs / 1000)),
      counts,
      wrong: wrong.length,
      wrongSample: wrong.slice(0, 5),
      tcpConnectionsPerSecond: Math.round(rate.connectionsPerSecond),
    }, null, 2));
    if (wrong.length > 0) process.exitCode = 1;
  } finally {
    const t3 = performance.now();
    await labDown(lab.runId, { stateDir });
    console.log(JSON.stringify({ downMs: Math.round(performance.now() - t3) }));
    rmSync(stateDir, { recursive: true, force: true });
  }
}

await main();
