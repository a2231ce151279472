/** The sample flow-log generator: deterministic, rhythmic, with its anomalies, and every writer reads back through its decoder. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateFlowLogs, netflowPcap, vpcLines, zeekLines, directionalRecords } from '../../src/generate/flowlogs.js';
import { decodeAll } from '../../src/flows/formats/index.js';
import { ProgressBar } from '../../src/cli/ingest.js';
import { sampleEstate } from '../helpers/estate.js';

const logs = generateFlowLogs(sampleEstate().ir, { seed: 5, conversations: 4000 });

test('deterministic in the seed; about the conversations asked for; a week', () => {
  const again = generateFlowLogs(sampleEstate().ir, { seed: 5, conversations: 4000 });
  assert.deepEqual(again.conversations.slice(0, 50), logs.conversations.slice(0, 50));
  const other = generateFlowLogs(sampleEstate().ir, { seed: 6, conversations: 4000 });
  assert.notDeepEqual(other.conversations.slice(0, 50), logs.conversations.slice(0, 50));
  const everyday = logs.conversations.filter((c) => !c.pattern.startsWith('anomaly:')).length;
  assert.ok(everyday > 3000 && everyday < 5000, `${everyday}`);
  assert.equal(logs.end - logs.start, 7 * 86400_000);
  for (const c of logs.conversations) assert.ok(c.start >= logs.start && c.start < logs.end);
});

test('a daily and weekly rhythm: afternoons busier than nights, weekdays than weekends', () => {
  const hourOf = (t: number) => new Date(t).getUTCHours();
  const dayOf = (t: number) => Math.floor((t - logs.start) / 86400_000);
  const business = logs.conversations.filter((c) => !c.pattern.startsWith('anomaly:') && ![53, 123, 514, 9100].includes(c.serverPort));
  const at = (h: number) => business.filter((c) => hourOf(c.start) === h && dayOf(c.start) < 5).length;
  assert.ok(at(14) > 3 * at(3), `14:00 ${at(14)} vs 03:00 ${at(3)}`);
  const weekday = business.filter((c) => dayOf(c.start) === 1).length;
  const sunday = business.filter((c) => dayOf(c.start) === 6).length;
  assert.ok(weekday > 2 * sunday, `Tuesday ${weekday} vs Sunday ${sunday}`);
});

test('the anomalies are in, and the writers read back through their decoders', () => {
  assert.deepEqual(logs.anomalies.map((a) => a.kind), ['dev-to-prod-db', 'ssh-not-from-jump', 'ssh-not-from-jump', 'ssh-not-from-jump', 'port-scan']);
  const bySensor = (s: string) => logs.conversations.filter((c) => c.sensor === s);
  const enc = new TextEncoder();
  const vpc = decodeAll('aws-vpc', enc.encode([...vpcLines(logs.conversations)].join('\n') + '\n'));
  assert.equal(vpc.bad.total, 0, [...vpc.bad.counts.keys()].join());
  assert.equal(vpc.records.length, bySensor('aws-vpc').reduce((n, c) => n + directionalRecords(c, 'aws-vpc').length, 0));
  const zeek = decodeAll('zeek', enc.encode([...zeekLines(logs.conversations, logs.start)].join('\n') + '\n'));
  assert.equal(zeek.bad.total, 0, [...zeek.bad.counts.keys()].join());
  assert.equal(zeek.records.length, bySensor('zeek').length);
  const parts = [...netflowPcap(logs.conversations, logs.start - 86400_000)];
  const pcap = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    pcap.set(p, o);
    o += p.length;
  }
  const nf = decodeAll('netflow', pcap);
  assert.equal(nf.bad.total, 0, [...nf.bad.counts.keys()].join());
  assert.equal(nf.records.length, bySensor('netflow9').reduce((n, c) => n + directionalRecords(c, 'netflow9').length, 0));
  // The scan: 1024 SYN-only connections, in Zeek (crm-prod-web-2 is in dc1).
  const scan = zeek.records.filter((r) => r.tcpFlags === 2 && r.dst === 0x0a0a0329);
  assert.equal(scan.length, 1024);
});

test('the progress bar: percent, records, rate, bytes and ETA on one line, at most ten times a second', () => {
  const out: string[] = [];
  const bar = new ProgressBar((s) => out.push(s));
  bar.update(512 << 20, 1024 << 20, 1_500_000, '/data/vpc/2026/11/16/flows.log.gz');
  bar.update(600 << 20, 1024 << 20, 1_600_000, 'x');
  assert.equal(out.length, 1, 'throttled');
  assert.ok(out[0].startsWith('\r\u001b[2K'), 'clears the line first');
  assert.match(out[0].slice(5), /^ 50% \[=+ +\] 1\.50M records {2}[0-9.]+[kM]?\/s {2}512\.0 MiB\/1\.00 GiB {2}ETA \d+:\d\d {2}…/);
  bar.done();
  assert.equal(out[1], '\r\x1b[2K');
});
