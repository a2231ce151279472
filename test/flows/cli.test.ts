/**
 * The flow commands end to end: generate-flows writes a week of sample logs,
 * ingest reads them into a store, map draws them (golden files per output
 * format, the anomalies flagged, filters), the HTML page rendered by headless
 * Chromium, and collect over loopback UDP.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetflowV9Encoder } from '../../src/flows/formats/netflow-encode.js';
import { runCollect } from '../../src/cli/collect.js';
import type { Io } from '../../src/cli/common.js';
import { checkGolden } from '../helpers/golden.js';
import { flowsCli } from './cli.js';
import { readPng } from './png.js';

const ESTATE = 'examples/estate/policy';
const dir = mkdtempSync(join(tmpdir(), 'bulkhead-flows-cli-'));
const gen = join(dir, 'gen');
const store = join(dir, 'flows.duckdb');
const files = ['aws-vpc-flows.log.gz', 'zeek-conn.log', 'netflow-v9.pcap'].map((f) => join(gen, f));

before(async () => {
  const g = await flowsCli('generate-flows', '--out', gen, '--conversations', '3000', '--seed', '3');
  assert.equal(g.code, 0, g.err);
  const r = await flowsCli('ingest', ...files, '--store', store, '--policy', ESTATE);
  assert.equal(r.code, 0, r.err);
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('generate-flows: three formats and the anomalies it put in', () => {
  for (const f of files) assert.ok(existsSync(f), f);
  const anomalies = JSON.parse(readFileSync(join(gen, 'anomalies.json'), 'utf8')) as { kind: string; connections: number }[];
  assert.deepEqual([...new Set(anomalies.map((a) => a.kind))].sort(), ['dev-to-prod-db', 'port-scan', 'ssh-not-from-jump']);
  assert.equal(anomalies.find((a) => a.kind === 'port-scan')!.connections, 1024);
});

test('ingest: every file detected and counted; JSON output', async () => {
  const s2 = join(dir, 'second.duckdb');
  const r = await flowsCli('ingest', ...files, '--store', s2, '--policy', ESTATE, '-o', 'json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.ok, true);
  assert.deepEqual(j.files.map((f: { format: string }) => f.format), ['aws-vpc', 'zeek', 'netflow']);
  assert.equal(j.files[0].gzip, true);
  assert.equal(j.bad, 0);
  assert.ok(j.records > 5000);
  assert.ok(j.edges > 500);
  assert.ok(j.serverSide['port-class'] > 0 && j.serverSide.initiator > 0);
});

test('ingest: bad records are counted by reason with their line numbers; the rest goes in', async () => {
  const good = '2 123456789012 eni-1 10.10.1.21 10.10.1.41 40000 5432 6 5 500 1794816000 1794816060 ACCEPT OK';
  const lines = [good, 'garbage line', good, '2 1 eni 10.10.1.21 10.10.1.300 1 2 6 1 1 1794816000 1794816060 ACCEPT OK', 'x'.repeat(2000), good];
  const f = join(dir, 'bad.log');
  writeFileSync(f, lines.join('\n') + '\n');
  const r = await flowsCli('ingest', f, '--store', join(dir, 'bad.duckdb'), '--max-line-bytes', '1024', '--format', 'aws-vpc');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /bad\.log: 3 records \(aws-vpc: given\), 3 bad/);
  assert.match(r.err, /invalid dstaddr: 1 — line 4 \(10\.10\.1\.300\)/);
  assert.match(r.err, /line too long: 1 — line 5/);
  assert.match(r.err, /not a VPC flow log record: 1 — line 2 \(garbage line\)/);
  assert.match(r.err, /ingested 3 flow records from 1 file/);
});

test('ingest: usage errors and unreadable files are clear; other files still go in', async () => {
  const u = await flowsCli('ingest', files[1], '--store', join(dir, 'u.duckdb'), '--format', 'snmp');
  assert.equal(u.code, 2);
  assert.match(u.err, /argument 'snmp' is invalid|unknown --format `snmp`/);
  const c = await flowsCli('ingest', files[1], '--store', join(dir, 'u.duckdb'), '--format', 'csv');
  assert.equal(c.code, 2);
  assert.match(c.err, /--format csv needs --map/);
  const m = await flowsCli('ingest', join(dir, 'missing.log'), files[1], '--store', join(dir, 'u.duckdb'));
  assert.equal(m.code, 2);
  assert.match(m.err, /error: cannot read .*missing\.log: no such file/);
  assert.match(m.err, /ingested \d+ flow records from 1 file/);
  const notes = join(dir, 'notes.txt');
  writeFileSync(notes, 'hello\nworld\n');
  const n = await flowsCli('ingest', notes, '--store', join(dir, 'u.duckdb'));
  assert.equal(n.code, 2);
  assert.match(n.err, /cannot tell the format of .*notes\.txt: text in no known flow format; give it with --format/);
});

for (const format of ['table', 'json', 'dot', 'mermaid', 'graphml'] as const) {
  test(`map --by app,env --format ${format}: golden (one day, with the dev host at the prod database)`, async () => {
    const r = await flowsCli('map', '--store', store, '--policy', ESTATE, '--by', 'app,env', '--format', format, '--since', '2026-11-18T00:00:00Z', '--until', '2026-11-19T00:00:00Z');
    assert.equal(r.code, 0, r.err);
    checkGolden(`test/fixtures/map/app-env.${format === 'table' ? 'txt' : format === 'mermaid' ? 'mmd' : format}`, r.out + '\n');
  });
}

test('map: the anomalies stand out (blocked, by which rule)', async () => {
  const r = await flowsCli('map', '--store', store, '--policy', ESTATE, '--format', 'json');
  const m = JSON.parse(r.out) as { edges: { from: string; to: string; ports: { name: string }[]; verdicts: Record<string, number>; denyingRules: string[]; rejected: number }[] };
  const edge = (from: string, to: string) => m.edges.find((e) => e.from === from && e.to === to);
  const devDb = edge('w:shop-dev-app-1', 'w:shop-prod-db-1')!;
  assert.ok(devDb.verdicts.blocked > 0);
  assert.deepEqual(devDb.denyingRules, ['env-nonprod-to-prod']);
  const ssh = edge('w:analytics-prod-app-2', 'w:crm-prod-app-1')!;
  assert.ok(ssh.ports.some((p) => p.name === '22/tcp'));
  assert.ok(ssh.denyingRules.includes('admin-jump-only'));
  const scan = edge('w:crm-prod-web-2', 'w:hr-prod-db-1')!;
  assert.equal(scan.ports.length, 1024);
  const fromInternet = m.edges.find((e) => e.to === 'w:alb-dev' && e.rejected > 0);
  assert.ok(fromInternet, 'SSH from the internet, rejected by the security group');
});

test('map: filters by env, app, port and time; by workload', async () => {
  const all = JSON.parse((await flowsCli('map', '--store', store, '--policy', ESTATE, '--format', 'json')).out);
  const db = JSON.parse((await flowsCli('map', '--store', store, '--policy', ESTATE, '--format', 'json', '--port', '5432/tcp', '--env', 'prod')).out);
  assert.ok(db.edges.length > 0 && db.edges.length < all.edges.length);
  for (const e of db.edges) assert.deepEqual(e.ports.map((p: { name: string }) => p.name), ['5432/tcp']);
  const shop = JSON.parse((await flowsCli('map', '--store', store, '--policy', ESTATE, '--format', 'json', '--app', 'shop', '--by', 'app')).out);
  for (const e of shop.edges) assert.ok(e.from === 'g:app=shop' || e.to === 'g:app=shop', JSON.stringify(e));
  const day = JSON.parse((await flowsCli('map', '--store', store, '--policy', ESTATE, '--format', 'json', '--since', '2026-11-20T00:00:00Z', '--until', '2026-11-21T00:00:00Z')).out);
  assert.ok(day.flows > 0 && day.flows < all.flows);
  assert.ok(Date.parse(day.first) >= Date.parse('2026-11-20T00:00:00Z') - 3600_000);
  const last = JSON.parse((await flowsCli('map', '--store', store, '--policy', ESTATE, '--format', 'json', '--since', '24h')).out);
  assert.ok(last.flows > 0 && last.flows < all.flows);
  const bad = await flowsCli('map', '--store', store, '--policy', ESTATE, '--since', 'yesterday');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /invalid time `yesterday` for --since/);
});

/** Headless Chromium, when installed (Debian package `chromium`). */
function chromium(): string | undefined {
  for (const c of ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync('which', [c], { encoding: 'utf8' });
    if (r.status === 0) return r.stdout.trim();
  }
  return undefined;
}

test('map --format html: self-contained, and Chromium draws the graph', { skip: chromium() ? false : 'needs chromium (apt-get install -y chromium)' }, async () => {
  const html = join(dir, 'map.html');
  const r = await flowsCli('map', '--store', store, '--policy', ESTATE, '--by', 'app,env', '--format', 'html', '--out', html);
  assert.equal(r.code, 0, r.err);
  const page = readFileSync(html, 'utf8');
  assert.doesNotMatch(page, /(src|href)=["']?https?:/i, 'no external resources');
  assert.doesNotMatch(page, /@import|url\(http/i);
  const bin = chromium()!;
  const common = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', `--user-data-dir=${join(dir, 'chrome')}`, '--window-size=1280,800', '--virtual-time-budget=3000'];
  const dom = spawnSync(bin, [...common, '--dump-dom', `file://${html}`], { encoding: 'utf8', timeout: 60_000 });
  assert.match(dom.stdout, /data-ready="1"/, 'the script ran to the end');
  const nodes = JSON.parse((await flowsCli('map', '--store', store, '--policy', ESTATE, '--by', 'app,env', '--format', 'json')).out).nodes.length;
  assert.equal((dom.stdout.match(/<g class="node/g) ?? []).length, nodes, 'one drawn node per map node');
  const png = join(dir, 'map.png');
  spawnSync(bin, [...common, `--screenshot=${png}`, `file://${html}`], { encoding: 'utf8', timeout: 60_000 });
  const img = readPng(new Uint8Array(readFileSync(png)));
  assert.equal(img.width, 1280);
  // The graph area (left of the side panel, below the header) is not blank: enough colored pixels.
  let colored = 0;
  let total = 0;
  for (let y = 120; y < img.height - 20; y += 2) {
    for (let x = 20; x < img.width - 360; x += 2) {
      const i = (y * img.width + x) * 4;
      const [r0, g0, b0] = [img.pixels[i], img.pixels[i + 1], img.pixels[i + 2]];
      total++;
      if (Math.max(r0, g0, b0) - Math.min(r0, g0, b0) > 40 || Math.max(r0, g0, b0) < 200) colored++;
    }
  }
  assert.ok(colored / total > 0.01, `only ${((colored / total) * 100).toFixed(2)}% of the graph area is drawn`);
});

test('collect: NetFlow v9 over loopback into the store, bounded by a count', async () => {
  const T = Date.parse('2026-11-16T08:00:00Z');
  const records = Array.from({ length: 40 }, (_, k) => ({ start: T + k * 1000, end: T + k * 1000, src: 0x0a0a0115, dst: 0x0a0a0129, proto: 6, srcPort: 41000 + k, dstPort: 5432, packets: 2, bytes: 100, format: 'netflow9' }));
  const datagrams = new NetflowV9Encoder({ perDatagram: 10 }).encode(records);
  const err: string[] = [];
  const io: Io = { out: () => {}, err: (s) => err.push(s), color: false };
  const sender = createSocket('udp4');
  const s = join(dir, 'collected.duckdb');
  const run = runCollect({ listen: 'udp://127.0.0.1:0', store: s, maxDatagrams: String(datagrams.length), duration: '10', commitSeconds: '1', output: 'text' }, {
    ...io,
    err: (line) => {
      err.push(line);
      const m = /listening on udp:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (m) {
        let k = 0;
        const next = () => (k < datagrams.length ? sender.send(datagrams[k++], Number(m[1]), '127.0.0.1', next) : sender.close());
        next();
      }
    },
  });
  assert.equal(await run, 0);
  assert.match(err.join('\n'), /collected 4 datagrams from 1 exporter \(127\.0\.0\.1\): 40 flow records stored/);
  const m = await flowsCli('map', '--store', s, '--policy', ESTATE, '--format', 'json');
  const j = JSON.parse(m.out);
  assert.deepEqual(j.edges.map((e: { from: string; to: string; flows: number }) => `${e.from} ${e.to} ${e.flows}`), ['w:shop-prod-app-1 w:shop-prod-db-1 40']);
});

test('ingest --retention-days: old buckets go', async () => {
  const s = join(dir, 'ret.duckdb');
  const r = await flowsCli('ingest', files[0], '--store', s, '--retention-days', '3', '--now', '2026-11-23T00:00:00Z');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /retention: removed \d+ flow records and \d+ edges before 2026-11-20T00:00:00\.000Z/);
  const m = JSON.parse((await flowsCli('map', '--store', s, '--policy', ESTATE, '--format', 'json')).out);
  assert.ok(Date.parse(m.first) >= Date.parse('2026-11-20T00:00:00Z'));
});

test('ingest in a worker thread stores exactly what the single-threaded path stores', async () => {
  const { ingestFiles } = await import('../../src/cli/ingest.js');
  const { DuckDbFlowStore } = await import('../../src/store/flows-duckdb.js');
  const bad = join(dir, 'mixed.log');
  writeFileSync(bad, readFileSync(join('test/fixtures/flows', 'aws-vpc-v2.log')));
  const edgesOf = async (worker: boolean) => {
    const s = await DuckDbFlowStore.open(':memory:');
    const r = await ingestFiles({ files: [...files, bad, join(dir, 'nope.log')], store: s, worker });
    const edges = await s.edges();
    await s.close();
    return { r, edges: JSON.stringify(edges, (_k, v) => (typeof v === 'bigint' ? String(v) : v)) };
  };
  const a = await edgesOf(false);
  const b = await edgesOf(true);
  assert.equal(b.edges, a.edges);
  assert.equal(b.r.records, a.r.records);
  assert.deepEqual(b.r.serverReasons, a.r.serverReasons);
  assert.deepEqual(b.r.files.map((f) => [f.path, f.error ?? '', [...f.bad.counts]]), a.r.files.map((f) => [f.path, f.error ?? '', [...f.bad.counts]]));
});
