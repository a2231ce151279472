/**
 * npm run bench:ingest [-- --records N --dir /tmp --keep]
 *
 * Writes an AWS VPC flow log of N records (default 10M, about 1.1 GB) to a
 * scratch directory, with addresses of the sample estate; then, each phase in
 * a child process of its own so that each peak memory is its own:
 *
 * 1. DuckDB's own `read_csv` + GROUP BY of the file (the yardstick);
 * 2. `bulkhead ingest` end to end: streamed, parsed, server side inferred,
 *    stored raw and aggregated into edges in a DuckDB file;
 * 3. decoding alone, records per second, for every format: the VPC file
 *    itself, and its first records converted to NetFlow v9, IPFIX, NetFlow
 *    v5, Zeek TSV and JSON, conntrack, CSV, Hubble, Calico, Azure and GCP.
 *
 * Targets (issue 3): ≥ 1M records/s for VPC text and NetFlow v9/IPFIX
 * decoding; end-to-end ≥ 0.5 of DuckDB's speed; peak memory ≤ 1 GB.
 * The scratch files are removed at the end unless --keep.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '10000000' },
    dir: { type: 'string', default: '/tmp/bulkhead-bench-ingest' },
    keep: { type: 'boolean', default: false },
    phase: { type: 'string' },
    file: { type: 'string' },
    sample: { type: 'string', default: '1000000' },
  },
});

const self = fileURLToPath(import.meta.url);

/** A phase in a child process: its JSON result and its peak memory. */
function child(phase: string, heapMb: number): Record<string, number | string> {
  const r = spawnSync(process.execPath, ['--import', 'tsx', `--max-old-space-size=${heapMb}`, self, '--phase', phase, '--file', join(values.dir!, 'vpc.log'), '--dir', values.dir!, '--sample', values.sample!], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`phase ${phase} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function peakMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

async function writeVpc(path: string, n: number): Promise<void> {
  // Addresses of the sample estate: clients and servers of a few hundred conversations, plus outside peers.
  const { readPolicyDir } = await import('../src/adapters/policy-dir.js');
  const { compilePolicy } = await import('../src/policy/index.js');
  const read = readPolicyDir('examples/estate/policy');
  const c = compilePolicy(read.sources, { diagnostics: read.diagnostics });
  const v4 = c.policy.workloads.flatMap((w) => w.addresses.filter((p) => typeof p.addr === 'number' && p.len === 32).map((p) => p.addr as number));
  const dotted = (a: number) => `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  const hosts = v4.map(dotted);
  for (let k = 0; k < 40; k++) hosts.push(`203.0.${113 + (k & 1)}.${10 + k}`);
  const ports = [443, 5432, 3306, 8080, 8443, 53, 22, 6379, 9100, 389, 123, 514];
  let x = 0x9e3779b9;
  const rnd = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
  const pairs: [string, string, number, number][] = [];
  for (let k = 0; k < 2000; k++) pairs.push([hosts[rnd() % hosts.length], hosts[rnd() % hosts.length], ports[rnd() % ports.length], ports[k % ports.length] === 53 || ports[k % ports.length] === 123 || ports[k % ports.length] === 514 ? 17 : 6]);
  const fd = openSync(path, 'w');
  let s = 'version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n';
  const t0 = Math.floor(Date.parse('2026-11-16T00:00:00Z') / 1000);
  for (let i = 0; i < n; i++) {
    const r = rnd();
    const [a, b, port, proto] = pairs[r % pairs.length];
    const eph = 32768 + ((r >>> 11) % 28000);
    const st = t0 + Math.floor((i / n) * 7 * 86400);
    const reply = (r & 0x400) !== 0;
    s += reply
      ? `2 123456789012 eni-0a1b2c3d4e5f6a7b8 ${b} ${a} ${port} ${eph} ${proto} ${1 + (r & 31)} ${40 + ((r >>> 5) & 65535)} ${st} ${st + 60} ACCEPT OK\n`
      : `2 123456789012 eni-0a1b2c3d4e5f6a7b8 ${a} ${b} ${eph} ${port} ${proto} ${1 + (r & 31)} ${40 + ((r >>> 5) & 65535)} ${st} ${st + 60} ${(r & 0xf000) === 0 ? 'REJECT' : 'ACCEPT'} OK\n`;
    if (s.length > 1 << 22) {
      writeSync(fd, s);
      s = '';
    }
  }
  writeSync(fd, s);
  closeSync(fd);
}

async function phaseDuckdb(file: string) {
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const inst = await DuckDBInstance.create(':memory:', { memory_limit: '512MB' });
  const c = await inst.connect();
  const t0 = performance.now();
  const r = await c.runAndReadAll(
    `SELECT srcaddr, dstaddr, protocol, dstport, COUNT(*) AS flows, SUM(packets), SUM(bytes), MIN(start), MAX("end")
     FROM read_csv('${file}', delim = ' ', header = true) GROUP BY ALL`,
  );
  const ms = performance.now() - t0;
  // The same with the client port folded away, as bulkhead's edges are (the lower port taken as the server's).
  const t1 = performance.now();
  const f = await c.runAndReadAll(
    `SELECT srcaddr, dstaddr, protocol, LEAST(srcport, dstport), COUNT(*) AS flows, SUM(packets), SUM(bytes), MIN(start), MAX("end")
     FROM read_csv('${file}', delim = ' ', header = true) GROUP BY ALL`,
  );
  const msFolded = performance.now() - t1;
  const n = await c.runAndReadAll(`SELECT COUNT(*) FROM read_csv('${file}', delim = ' ', header = true)`);
  return { ms, groups: r.currentRowCount, msFolded, groupsFolded: f.currentRowCount, records: Number(n.getRows()[0][0]), peakMb: peakMb() };
}

async function phaseIngest(file: string, dir: string) {
  const { DuckDbFlowStore } = await import('../src/store/flows-duckdb.js');
  const { ingestFiles } = await import('../src/cli/ingest.js');
  const { readPolicyDir } = await import('../src/adapters/policy-dir.js');
  const { compilePolicy } = await import('../src/policy/index.js');
  const read = readPolicyDir('examples/estate/policy');
  const policy = compilePolicy(read.sources, { diagnostics: read.diagnostics }).policy;
  const path = join(dir, 'bench.duckdb');
  rmSync(path, { force: true });
  rmSync(path + '.wal', { force: true });
  const t0 = performance.now();
  const store = await DuckDbFlowStore.open(path);
  const report = await ingestFiles({ files: [file], store, policy });
  await store.close();
  const ms = performance.now() - t0;
  return { ms, records: report.records, edges: report.summary.edges, aggregateMs: report.summary.aggregateMs, storeMb: Math.round(statSync(path).size / 2 ** 20), peakMb: peakMb() };
}

async function phaseDecode(file: string, sample: number) {
  const { openSync: open, readSync } = await import('node:fs');
  const { decodeAll, createDecoder } = await import('../src/flows/formats/index.js');
  const { FlowOut } = await import('../src/flows/record.js');
  const enc = await import('../src/flows/formats/netflow-encode.js');
  const { ZEEK_CONN_FIELDS } = await import('../src/flows/formats/zeek.js');
  const { formatAddr } = await import('../src/netset/ip.js');
  const out: Record<string, number> = {};
  // The VPC file itself, streamed as ingest reads it.
  {
    let n = 0;
    const fo = new FlowOut((b) => (n += b.length));
    const d = createDecoder('aws-vpc', fo);
    const fd = open(file, 'r');
    const buf = new Uint8Array(1 << 20);
    const t0 = performance.now();
    for (;;) {
      const r = readSync(fd, buf, 0, buf.length, null);
      if (r === 0) break;
      d.push(buf.subarray(0, r));
    }
    d.end();
    fo.flush();
    closeSync(fd);
    out['aws-vpc'] = Math.round(n / ((performance.now() - t0) / 1000));
  }
  // The first records, in every other format (in memory).
  const fd = open(file, 'r');
  const bytes = new Uint8Array(Math.min(statSync(file).size, sample * 130));
  readSync(fd, bytes, 0, bytes.length, 0);
  closeSync(fd);
  const recs = decodeAll('aws-vpc', bytes).records.slice(0, sample);
  // Decoding only: records are counted in their batches, never made into objects.
  const rate = (name: Parameters<typeof decodeAll>[0], input: Uint8Array | string, count: number, opts = {}) => {
    const bytes = typeof input === 'string' ? new TextEncoder().encode(input) : input;
    let n = 0;
    const fo = new FlowOut((b) => (n += b.length));
    const d = createDecoder(name, fo, opts);
    const t0 = performance.now();
    for (let o = 0; o < bytes.length; o += 1 << 20) d.push(bytes.subarray(o, Math.min(bytes.length, o + (1 << 20))));
    d.end();
    fo.flush();
    const s = (performance.now() - t0) / 1000;
    if (n < count * 0.99) throw new Error(`${name}: decoded ${n} of ${count}`);
    return Math.round(n / s);
  };
  const cat = (parts: Uint8Array[]) => {
    const total = parts.reduce((n, p) => n + p.length, 0);
    const all = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return all;
  };
  const v9 = cat([enc.pcapHeader(), ...new enc.NetflowV9Encoder({ domain: 1 }).encode(recs).map((payload, k) => enc.pcapRecord({ time: recs[0].start + k, src: 0x0a140001, dst: 0x0a140064, sport: 5000, dport: 2055, payload }))]);
  out['netflow9 (pcap)'] = rate('netflow', v9, recs.length);
  out['ipfix'] = rate('netflow', cat(enc.encodeIpfix(recs)), recs.length);
  const v4 = recs.filter((r) => typeof r.src === 'number' && typeof r.dst === 'number');
  out['netflow5'] = rate('netflow', cat(enc.encodeV5(v4)), v4.length);
  const small = recs.slice(0, Math.min(recs.length, 300_000));
  const a = (x: (typeof recs)[number]['src']) => formatAddr(x);
  const proto = (p: number) => (p === 6 ? 'tcp' : p === 17 ? 'udp' : 'icmp');
  const zeek = ['#separator \\x09', `#fields\t${ZEEK_CONN_FIELDS.join('\t')}`, ...small.map((r, i) => `${r.start / 1000}.000000\tC${i}\t${a(r.src)}\t${r.srcPort}\t${a(r.dst)}\t${r.dstPort}\t${proto(r.proto)}\t-\t60.000000\t${r.bytes}\t0\tSF\tT\tT\t0\tShADadFf\t${r.packets}\t${r.bytes}\t0\t0\t(empty)`)].join('\n') + '\n';
  out['zeek (tsv)'] = rate('zeek', zeek, small.length);
  const zeekJson = small.map((r) => JSON.stringify({ ts: r.start / 1000, uid: 'C', 'id.orig_h': a(r.src), 'id.orig_p': r.srcPort, 'id.resp_h': a(r.dst), 'id.resp_p': r.dstPort, proto: proto(r.proto), duration: 60, orig_bytes: r.bytes, resp_bytes: 0, orig_pkts: r.packets, resp_pkts: 0 })).join('\n') + '\n';
  out['zeek (json)'] = rate('zeek-json', zeekJson, small.length);
  const ct = small.map((r) => `ipv4     2 ${proto(r.proto)}      ${r.proto} 100 ESTABLISHED src=${a(r.src)} dst=${a(r.dst)} sport=${r.srcPort} dport=${r.dstPort} packets=${r.packets} bytes=${r.bytes} src=${a(r.dst)} dst=${a(r.src)} sport=${r.dstPort} dport=${r.srcPort} packets=1 bytes=60 [ASSURED] mark=0 use=1`).join('\n') + '\n';
  out['conntrack'] = rate('conntrack', ct, small.length, { time: recs[0].start });
  const csv = 'time,src,dst,sport,dport,proto,packets,bytes\n' + small.map((r) => `${r.start / 1000},${a(r.src)},${a(r.dst)},${r.srcPort},${r.dstPort},${r.proto},${r.packets},${r.bytes}`).join('\n') + '\n';
  out['csv'] = rate('csv', csv, small.length, { csv: { src: 'src', dst: 'dst', sport: 'sport', dport: 'dport', proto: 'proto', packets: 'packets', bytes: 'bytes', start: 'time' } });
  const iso = (t: number) => new Date(t).toISOString();
  const hubble = small.map((r) => JSON.stringify({ flow: { time: iso(r.start), verdict: 'FORWARDED', IP: { source: a(r.src), destination: a(r.dst), ipVersion: 'IPv4' }, l4: { [r.proto === 17 ? 'UDP' : 'TCP']: { source_port: r.srcPort, destination_port: r.dstPort } }, is_reply: false } })).join('\n') + '\n';
  out['hubble'] = rate('hubble', hubble, small.length);
  const calico = small.map((r) => JSON.stringify({ start_time: r.start / 1000, end_time: r.end / 1000, source_ip: a(r.src), dest_ip: a(r.dst), source_port: r.srcPort, dest_port: r.dstPort, proto: proto(r.proto), action: 'allow', reporter: 'src', bytes_in: 0, bytes_out: r.bytes, packets_in: 0, packets_out: r.packets })).join('\n') + '\n';
  out['calico'] = rate('calico', calico, small.length);
  const tuples = small.map((r) => `${r.start / 1000},${a(r.src)},${a(r.dst)},${r.srcPort},${r.dstPort},${r.proto === 17 ? 'U' : 'T'},I,A,E,${r.packets},${r.bytes},0,0`);
  const nsg: string[] = [];
  for (let k = 0; k < tuples.length; k += 1000) nsg.push(JSON.stringify({ time: iso(small[0].start), category: 'NetworkSecurityGroupFlowEvent', properties: { Version: 2, flows: [{ rule: 'r', flows: [{ mac: '00', flowTuples: tuples.slice(k, k + 1000) }] }] } }));
  out['azure-nsg'] = rate('azure-nsg', `{"records":[${nsg.join(',')}]}`, small.length);
  const gcp = small.map((r) => JSON.stringify({ jsonPayload: { connection: { src_ip: a(r.src), dest_ip: a(r.dst), src_port: r.srcPort, dest_port: r.dstPort, protocol: r.proto }, start_time: iso(r.start), end_time: iso(r.end), bytes_sent: String(r.bytes), packets_sent: String(r.packets) } })).join('\n') + '\n';
  out['gcp'] = rate('gcp', gcp, small.length);
  return { ...out, peakMb: peakMb() };
}

async function main(): Promise<void> {
  if (values.phase) {
    const r = values.phase === 'duckdb' ? await phaseDuckdb(values.file!) : values.phase === 'ingest' ? await phaseIngest(values.file!, values.dir!) : await phaseDecode(values.file!, Number(values.sample));
    process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  const n = Number(values.records);
  mkdirSync(values.dir!, { recursive: true });
  const file = join(values.dir!, 'vpc.log');
  try {
    let t = performance.now();
    await writeVpc(file, n);
    const size = statSync(file).size;
    console.log(`wrote ${n.toLocaleString('en-US')} VPC records (${(size / 2 ** 30).toFixed(2)} GiB) in ${((performance.now() - t) / 1000).toFixed(1)} s to ${file}`);
    t = performance.now();
    // The ingest runs with a 768 MB JavaScript heap: it must fit; decoding alone converts records to other formats in memory first.
    const duck = child('duckdb', 768);
    const ingest = child('ingest', 768);
    const decode = child('decode', 4096);
    const duckRate = n / (Number(duck.ms) / 1000);
    const ingestRate = Number(ingest.records) / (Number(ingest.ms) / 1000);
    const ratio = ingestRate / duckRate;
    const pass = (ok: boolean) => (ok ? 'ok' : 'MISSED');
    console.log('');
    const foldedRate = n / (Number(duck.msFolded) / 1000);
    console.log(`DuckDB read_csv + GROUP BY      ${(Number(duck.ms) / 1000).toFixed(2)} s  ${Math.round(duckRate).toLocaleString('en-US')} records/s  (src, dst, proto, dstport: ${duck.groups} groups, peak ${duck.peakMb} MB)`);
    console.log(`  the same, client port folded  ${(Number(duck.msFolded) / 1000).toFixed(2)} s  ${Math.round(foldedRate).toLocaleString('en-US')} records/s  (LEAST(srcport, dstport): ${duck.groupsFolded} groups)`);
    console.log(`bulkhead ingest, end to end     ${(Number(ingest.ms) / 1000).toFixed(2)} s  ${Math.round(ingestRate).toLocaleString('en-US')} records/s  (${ingest.edges} edges, aggregation ${(Number(ingest.aggregateMs) / 1000).toFixed(2)} s, store ${ingest.storeMb} MB, peak ${ingest.peakMb} MB)`);
    console.log(`ratio (bulkhead / DuckDB)       ${ratio.toFixed(2)}   target >= 0.5: ${pass(ratio >= 0.5)}  (against the folded query: ${(ingestRate / foldedRate).toFixed(2)})`);
    console.log(`peak memory of the ingest       ${ingest.peakMb} MB   target <= 1024 MB: ${pass(Number(ingest.peakMb) <= 1024)}`);
    console.log('');
    console.log('decoding alone, records/s (one core):');
    for (const [k, v] of Object.entries(decode)) {
      if (k === 'peakMb') continue;
      const target = k === 'aws-vpc' || k.startsWith('netflow9') || k === 'ipfix' ? `  target >= 1,000,000: ${pass(Number(v) >= 1e6)}` : '';
      console.log(`  ${k.padEnd(16)} ${Number(v).toLocaleString('en-US').padStart(12)}${target}`);
    }
    console.log(`(decode phase peak ${decode.peakMb} MB; total ${((performance.now() - t) / 1000).toFixed(1)} s)`);
  } finally {
    if (!values.keep) rmSync(values.dir!, { recursive: true, force: true });
  }
}

await main();
