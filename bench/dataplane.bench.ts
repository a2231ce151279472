/**
 * npm run bench:dataplane [-- --workloads 10000,100000 --seconds 3 --rounds 3]
 *
 * In a two-host network-namespace lab (needs root; never touches this
 * machine's own network): the TCP connection rate and iperf3 throughput from
 * a client to a server with
 *   (a) no ruleset,
 *   (b) bulkhead's compiled nftables rulesets for a generated estate of each size,
 *       on both hosts, and (b1) on the server only (where (c) puts its rules),
 *   (c) a naive ruleset for the same policy: one iptables rule per allowed
 *       source address and port on the server, the client's rule last.
 * Prints the ratios (targets: b/a ≥ 0.9 at 100k workloads, b ≥ 10× c), the
 * compile time per host once the IR is built (p99 ≤ 5 ms), and the time to
 * load a ruleset with 100k set elements (≤ 2 s).
 */
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { generateEstate } from '../src/generate/index.js';
import { loadPolicy as loadModel } from '../src/policy/load.js';
import { buildIr } from '../src/policy/ir.js';
import { memoryDoc } from '../src/policy/source.js';
import { Evaluator } from '../src/engine/evaluate.js';
import { HostCompiler } from '../src/compile/host.js';
import { compileNftables } from '../src/compile/nftables.js';
import { formatAddr } from '../src/netset/ip.js';
import { PROTOCOLS } from '../src/netset/connset.js';
import { labDown, labLoad, labFlush, labProblems, labTcpRate, labUp, type Lab } from '../src/lab/index.js';
import { runNft, withScratchNetns } from '../src/adapters/nft.js';

const { values } = parseArgs({ options: { workloads: { type: 'string', default: '10000,100000' }, seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' } } });
const problems = labProblems({ needIptables: true });
if (problems.length > 0) {
  console.error(`bench:dataplane cannot run here:\n  - ${problems.join('\n  - ')}`);
  process.exit(2);
}
const seconds = Number(values.seconds);
const rounds = Math.max(1, Number(values.rounds));
const now = () => performance.now();

function iperf(lab: Lab, client: string, server: string): number {
  const s = lab.hosts.find((h) => h.name === server)!;
  const c = lab.hosts.find((h) => h.name === client)!;
  const srv = spawnSync('ip', ['netns', 'exec', s.ns, 'iperf3', '-s', '-1', '-D', '-p', '5201'], { encoding: 'utf8' });
  if (srv.status !== 0) return NaN;
  spawnSync('sleep', ['0.3']);
  const r = spawnSync('ip', ['netns', 'exec', c.ns, 'iperf3', '-c', s.addresses[0], '-p', '5201', '-t', String(Math.min(seconds, 5)), '-J'], { encoding: 'utf8', timeout: 20_000 });
  try {
    return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e9;
  } catch {
    return NaN;
  }
}

async function rate(lab: Lab, client: string, server: string, port: number): Promise<number> {
  return (await labTcpRate(lab, client, server, port, seconds)).connectionsPerSecond;
}

for (const size of values.workloads!.split(',').map(Number)) {
  console.log(`\nbench:dataplane  ${size} workloads, ${size / 10} rules`);
  const doc = generateEstate({ seed: 5, workloads: size, rules: size / 10 });
  const { policy } = loadModel({ docs: [memoryDoc('generated', doc)] }, { now: new Date('2026-11-23T00:00:00Z') });
  const ir = buildIr(policy);
  const ev = new Evaluator(ir);
  const hc = new HostCompiler(ir);

  // Compile time per host, once the IR is built: a sample of managed hosts, twice. The first pass also
  // renders each distinct peer address set for the first time; the second is the steady state of a
  // control plane recompiling hosts after a change.
  let biggest = { elements: 0, text: '', name: '' };
  const step = Math.max(1, Math.floor(ir.workloads.length / 500));
  // The text is a rope over cached element strings; `bytes` also times laying it out as the bytes nft reads.
  const pass = (bytes = false) => {
    const times: number[] = [];
    for (let i = 0; i < ir.workloads.length; i += step) {
      const t0 = now();
      const h = hc.host(i);
      if (!h) continue;
      const a = compileNftables(h);
      if (bytes) Buffer.from(a.text);
      times.push(now() - t0);
      if (a.setElements > biggest.elements) biggest = { elements: a.setElements, text: a.text, name: h.workload };
    }
    return times.sort((a, b) => a - b);
  };
  const cold = pass();
  const warm = pass();
  const warmBytes = pass(true);
  const pct = (t: number[], q: number) => t[Math.min(t.length - 1, Math.floor(t.length * q))].toFixed(2);
  const p99 = Number(pct(warm, 0.99));
  console.log(`  compile per host, cold  p50 ${pct(cold, 0.5)} ms, p99 ${pct(cold, 0.99)} ms over ${cold.length} hosts (first use of each peer set)`);
  console.log(`  compile per host, warm  p50 ${pct(warm, 0.5)} ms, p99 ${p99.toFixed(2)} ms   target p99 <= 5 ms   ${p99 <= 5 ? 'met' : 'MISSED'}`);
  console.log(`  … and laid out as bytes p50 ${pct(warmBytes, 0.5)} ms, p99 ${pct(warmBytes, 0.99)} ms (the copy nft's input needs; a long poll answer pays it once per version)`);

  // Load time of the biggest ruleset in a scratch namespace.
  const loadMs = withScratchNetns((netns) => {
    const t0 = now();
    const r = runNft(['-f', '-'], biggest.text, { netns });
    if (r.code !== 0) throw new Error(r.stderr);
    return now() - t0;
  });
  console.log(`  load biggest ruleset    ${loadMs.toFixed(0)} ms for ${biggest.elements} set elements (${biggest.name})${biggest.elements >= 100000 ? `   target <= 2000 ms   ${loadMs <= 2000 ? 'met' : 'MISSED'}` : ''}`);

  // The server: an enforcing workload whose TCP allow rules admit the most source addresses (a hub such as
  // DNS or a load balancer: the worst case for a ruleset that lists addresses); the client: one of them that
  // the engine allows.
  let pair: { client: number; server: number; port: number } | undefined;
  let best = -1;
  const stepS = Math.max(1, Math.floor(ir.workloads.length / 2000));
  for (let i = 0; i < ir.workloads.length; i += stepS) {
    if (ir.classes[ir.classOf[i]].mode !== 'enforce' || typeof ir.workloads[i].addresses[0].addr !== 'number') continue;
    const h = hc.host(i);
    if (!h) continue;
    for (const r of h.ingress) {
      const tcp = r.conns.entries().find((e) => e.proto === PROTOCOLS.tcp);
      if (r.action !== 'allow' || !tcp || r.own) continue;
      const n = r.peer.v4.size();
      if (n <= best || n > 1_000_000) continue;
      const port = tcp.ranges[0][0] || 1;
      // A client: a managed, enforcing workload inside the peer set that the engine allows.
      for (const c of ir.rules[r.index].from.classes.indices()) {
        const m = ir.classes[c].members.find((w) => w !== i && ir.classes[ir.classOf[w]].mode === 'enforce' && typeof ir.workloads[w].addresses[0].addr === 'number');
        if (m === undefined) continue;
        if (ev.decide({ src: ir.workloads[m].addresses[0].addr, dst: ir.workloads[i].addresses[0].addr, proto: 6, port }).verdict !== 'allowed') continue;
        pair = { client: m, server: i, port };
        best = n;
        break;
      }
    }
  }
  if (!pair) {
    console.log('  no allowed TCP pair of enforcing workloads found; skipping the lab part');
    continue;
  }
  const client = ir.workloads[pair.client];
  const server = ir.workloads[pair.server];
  const hosts = [client, server].map((w) => ({ name: w.name, addresses: [formatAddr(w.addresses[0].addr)], tcpPorts: [pair!.port], udpPorts: [] }));
  const lab = await labUp(hosts);
  try {
    // (a') the cost of connection tracking alone: a table that only tracks and accepts.
    const trackOnly = 'table inet bulkhead {}\ndelete table inet bulkhead\ntable inet bulkhead {\n  chain input {\n    type filter hook input priority filter; policy accept;\n    ct state established,related accept\n    accept\n  }\n  chain output {\n    type filter hook output priority filter; policy accept;\n    ct state established,related accept\n    accept\n  }\n}\n';
    const both = [pair.client, pair.server];
    const setups: Record<'a' | 'at' | 'b' | 'b1', () => Promise<void>> = {
      a: async () => {
        for (const w of both) await labFlush(lab, ir.workloads[w].name);
      },
      at: async () => {
        for (const w of both) await labLoad(lab, ir.workloads[w].name, { kind: 'nftables', text: trackOnly });
      },
      b: async () => {
        for (const w of both) await labLoad(lab, ir.workloads[w].name, { kind: 'nftables', text: compileNftables(hc.host(w)!).text });
      },
      // (b1) the server's ruleset only, the client bare: where (c) puts its rules, and what one host pays for its
      // own enforcement (in the lab both hosts share the same 2 cores, so (b) pays the client's tracking too).
      b1: async () => {
        await labFlush(lab, client.name);
        await labLoad(lab, server.name, { kind: 'nftables', text: compileNftables(hc.host(pair!.server)!).text });
      },
    };
    // Interleaved rounds, medians: the rate of one run drifts with whatever else the machine does.
    const runs: Record<'a' | 'at' | 'b' | 'b1', number[]> = { a: [], at: [], b: [], b1: [] };
    for (let round = 0; round < rounds; round++) {
      for (const k of ['a', 'at', 'b', 'b1'] as const) {
        await setups[k]();
        runs[k].push(await rate(lab, client.name, server.name, pair.port));
      }
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const spread = (xs: number[]) => (xs.length > 1 ? ` (runs ${xs.map((x) => Math.round(x)).join(', ')})` : '');
    const a = median(runs.a);
    const at = median(runs.at);
    const b = median(runs.b);
    const b1 = median(runs.b1);
    await setups.a();
    const ia = iperf(lab, client.name, server.name);
    // iperf3's own port is no policy port: let it through as a failsafe (control plane) rule, then measure.
    const peerOf = (w: number) => ({ addr: ir.workloads[w === pair!.client ? pair!.server : pair!.client].addresses[0].addr, len: 32 });
    for (const w of [pair.client, pair.server]) await labLoad(lab, ir.workloads[w].name, { kind: 'nftables', text: compileNftables(hc.host(w)!, { failsafe: { controlPlane: [peerOf(w)] } }).text });
    const ib = iperf(lab, client.name, server.name);
    for (const w of [pair.client, pair.server]) await labFlush(lab, ir.workloads[w].name);
    // (c) naive: one rule per allowed source address and port on the server, the client's own rule last.
    const host = hc.host(pair.server)!;
    const lines = ['*filter', ':INPUT ACCEPT [0:0]', '-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT'];
    const clientAddr = formatAddr(client.addresses[0].addr);
    let naiveRules = 0;
    const seen = new Set<string>([clientAddr]);
    for (const r of host.ingress) {
      if (r.action !== 'allow') continue;
      const tcp = r.conns.entries().find((e) => e.proto === PROTOCOLS.tcp);
      if (!tcp) continue;
      // One rule per workload address the rule admits (and per port range), as a hand-written list would have.
      for (const cls of ir.rules[r.index].from.classes.indices()) {
        for (const m of ir.classes[cls].members) {
          const a0 = ir.workloads[m].addresses[0].addr;
          if (typeof a0 !== 'number') continue;
          const addr = formatAddr(a0);
          if (seen.has(addr)) continue;
          seen.add(addr);
          for (const [lo, hi] of tcp.ranges) {
            lines.push(`-A INPUT -s ${addr}/32 -p tcp --dport ${lo === hi ? lo : `${lo}:${hi}`} -j ACCEPT`);
            naiveRules++;
          }
        }
      }
    }
    lines.push(`-A INPUT -s ${clientAddr}/32 -p tcp --dport ${pair.port} -j ACCEPT`, '-A INPUT -p tcp --dport 5201 -j ACCEPT', '-A INPUT -j DROP', 'COMMIT', '');
    await labLoad(lab, server.name, { kind: 'iptables', ipset: '', iptables: lines.join('\n'), ip6tables: '' });
    const c = await rate(lab, client.name, server.name, pair.port);
    await labFlush(lab, server.name);
    console.log(`  client ${client.name} -> server ${server.name} on ${pair.port}/tcp; the allow rule admits ${best} source addresses; server ruleset: ${host.ingress.length} ingress rules`);
    console.log(`  rates: medians of ${rounds} interleaved rounds of ${seconds} s each`);
    console.log(`  (a) no ruleset          ${a.toFixed(0)} connections/s${spread(runs.a)}, iperf3 ${ia.toFixed(2)} Gbit/s`);
    console.log(`  (a') conntrack only     ${at.toFixed(0)} connections/s${spread(runs.at)}   a'/a = ${(at / a).toFixed(2)} (what tracking connections costs, before any rule)`);
    console.log(`  (b) bulkhead nftables   ${b.toFixed(0)} connections/s${spread(runs.b)}, iperf3 ${ib.toFixed(2)} Gbit/s   b/a = ${(b / a).toFixed(2)}   target >= 0.9   ${b / a >= 0.9 ? 'met' : 'MISSED'}   b/a' = ${(b / at).toFixed(2)}`);
    console.log(`  (b1) server only        ${b1.toFixed(0)} connections/s${spread(runs.b1)}   b1/a = ${(b1 / a).toFixed(2)} (one enforcing host, as in (c))`);
    console.log(`  (c) naive iptables      ${c.toFixed(0)} connections/s (${naiveRules + 1} rules on the server, one per source address and port)   b/c = ${(b / c).toFixed(1)}x   target >= 10x   ${b / c >= 10 ? 'met' : 'MISSED'}   b1/c = ${(b1 / c).toFixed(1)}x`);
  } finally {
    await labDown(lab.runId);
  }
}
