/** The file adapter (gzip, detection, streaming, damaged input) and the UDP collector (loopback only, bounded). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { readFlowFile, UnknownFormatError } from '../../src/adapters/flow-files.js';
import { collect, parseListen } from '../../src/adapters/collector.js';
import { decodeAll } from '../../src/flows/formats/index.js';
import { NetflowV9Encoder } from '../../src/flows/formats/netflow-encode.js';
import { BadRecords, FlowOut, type FlowRecord } from '../../src/flows/record.js';
import { fixture, renderDecoded, renderRecord } from './util.js';

const dir = mkdtempSync(join(tmpdir(), 'bulkhead-flows-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function sink(): { out: FlowOut; records: FlowRecord[] } {
  const records: FlowRecord[] = [];
  const out = new FlowOut((b) => {
    for (let i = 0; i < b.length; i++) records.push(b.get(i));
  }, new BadRecords(100));
  return { out, records };
}

test('a gzip file (any name) reads like the plain one; the format is detected after decompression', async () => {
  const plain = fixture('aws-vpc-custom.log');
  const gz = join(dir, 'flows.log.gz');
  writeFileSync(gz, gzipSync(plain));
  const noExt = join(dir, 'flows-without-extension');
  writeFileSync(noExt, gzipSync(plain));
  for (const path of [gz, noExt]) {
    const { out, records } = sink();
    const r = await readFlowFile(path, out, { chunkSize: 64 });
    out.flush();
    assert.equal(r.gzip, true);
    assert.equal(r.format, 'aws-vpc');
    assert.equal(r.decompressedBytes, plain.length);
    assert.equal(records.map(renderRecord).join('\n') + '\n', renderDecoded({ records: decodeAll('aws-vpc', plain).records, bad: new BadRecords() }));
    assert.equal(out.bad.counts.get('invalid bytes'), 1);
  }
});

test('a damaged gzip file keeps what decompressed and reports the rest', async () => {
  const big = new TextEncoder().encode(new TextDecoder().decode(fixture('aws-vpc-v2.log')).repeat(200));
  const gz = gzipSync(big);
  const path = join(dir, 'cut.gz');
  writeFileSync(path, gz.subarray(0, Math.floor(gz.length / 2)));
  const { out, records } = sink();
  const r = await readFlowFile(path, out);
  out.flush();
  assert.equal(r.format, 'aws-vpc');
  assert.ok(records.length > 0);
  assert.match([...out.bad.counts.keys()].join('|'), /damaged gzip data/);
});

test('a file in no known format says so, and how to give the format', async () => {
  const path = join(dir, 'notes.txt');
  writeFileSync(path, 'dear diary\ntoday I ingested flows\n');
  await assert.rejects(readFlowFile(path, sink().out), (e: Error) => e instanceof UnknownFormatError && /cannot tell the format of .*notes\.txt: text in no known flow format; give it with --format/.test(e.message));
  const r = await readFlowFile(path, sink().out, { format: 'aws-vpc' });
  assert.equal(r.why, 'given');
});

test('the snapshot time of a conntrack file defaults to its modification time', async () => {
  const path = join(dir, 'ct.txt');
  writeFileSync(path, fixture('conntrack-L.txt'));
  const { out, records } = sink();
  await readFlowFile(path, out, { time: Date.parse('2026-11-16T09:00:00Z') });
  out.flush();
  assert.equal(new Date(records[0].start).toISOString(), '2026-11-16T09:00:00.000Z');
});

test('parseListen: udp URLs only, with clear errors', () => {
  assert.deepEqual(parseListen('udp://127.0.0.1:2055'), { host: '127.0.0.1', port: 2055, family: 4 });
  assert.deepEqual(parseListen('udp://[::1]:0'), { host: '::1', port: 0, family: 6 });
  assert.throws(() => parseListen('tcp://127.0.0.1:2055'), /is not udp:\/\/<ip>:<port>/);
  assert.throws(() => parseListen('udp://127.0.0.1:70000'), /out of range/);
});

test('collector: NetFlow v9 over loopback UDP, bounded by count and time, saved to pcap and read back', async () => {
  const T = Date.parse('2026-11-16T08:00:00Z');
  const records: FlowRecord[] = Array.from({ length: 50 }, (_, k) => ({
    start: T + k * 1000,
    end: T + k * 1000 + 500,
    src: 0x0a0a0115 + (k % 3),
    dst: 0x0a0a0129,
    proto: 6,
    srcPort: 40000 + k,
    dstPort: 5432,
    packets: 3,
    bytes: 300 + k,
    format: 'netflow9',
  }));
  const datagrams = new NetflowV9Encoder({ domain: 3, perDatagram: 10 }).encode(records);
  const { out, records: got } = sink();
  const pcap = join(dir, 'collected.pcap');
  const sender = createSocket('udp4');
  const done = collect(parseListen('udp://127.0.0.1:0'), out, {
    maxDatagrams: datagrams.length,
    durationMs: 5000,
    savePcap: pcap,
    onListening: ({ port }) => {
      // Only to the loopback address the collector is bound to, a handful of datagrams.
      let k = 0;
      const next = () => {
        if (k >= datagrams.length) return sender.close();
        sender.send(datagrams[k++], port, '127.0.0.1', next);
      };
      next();
    },
  });
  const r = await done;
  out.flush();
  assert.equal(r.stopped, 'count');
  assert.equal(r.datagrams, datagrams.length);
  assert.deepEqual(r.exporters, ['127.0.0.1']);
  assert.equal(got.length, 50);
  assert.equal(got[49].bytes, 349);
  // The capture reads back to the same records.
  const back = sink();
  const f = await readFlowFile(pcap, back.out);
  back.out.flush();
  assert.equal(f.format, 'netflow');
  assert.deepEqual(back.records.map(renderRecord), got.map(renderRecord));
});

test('collector: stops at its duration with no traffic; refuses to run unbounded', async () => {
  const r = await collect(parseListen('udp://127.0.0.1:0'), sink().out, { durationMs: 50 });
  assert.equal(r.stopped, 'duration');
  assert.equal(r.datagrams, 0);
  await assert.rejects(collect(parseListen('udp://127.0.0.1:0'), sink().out), /needs a bound/);
});

test('pcapng captures (Wireshark, dumpcap) read like pcap', async () => {
  const T = Date.parse('2026-11-16T08:00:00Z');
  const recs: FlowRecord[] = [{ start: T, end: T + 500, src: 0x0a0a0115, dst: 0x0a0a0129, proto: 6, srcPort: 40000, dstPort: 5432, packets: 3, bytes: 300, tcpFlags: 27, format: 'netflow9' }];
  const payload = new NetflowV9Encoder({ domain: 1 }).encode(recs)[0];
  const { pcapRecord } = await import('../../src/flows/formats/netflow-encode.js');
  const frame = pcapRecord({ time: T, src: 0x0a140001, dst: 0x0a140064, sport: 5000, dport: 2055, payload }).subarray(16); // the raw IP packet
  const block = (type: number, body: Uint8Array) => {
    const len = 12 + Math.ceil(body.length / 4) * 4;
    const b = new Uint8Array(len);
    const v = new DataView(b.buffer);
    v.setUint32(0, type, true);
    v.setUint32(4, len, true);
    b.set(body, 8);
    v.setUint32(len - 4, len, true);
    return b;
  };
  const shb = new Uint8Array(16);
  new DataView(shb.buffer).setUint32(0, 0x1a2b3c4d, true);
  new DataView(shb.buffer).setUint16(4, 1, true);
  new DataView(shb.buffer).setBigInt64(8, -1n, true);
  const idb = new Uint8Array(8);
  new DataView(idb.buffer).setUint16(0, 101, true); // raw IP
  const epb = new Uint8Array(20 + frame.length);
  const ev = new DataView(epb.buffer);
  const us = BigInt(T) * 1000n;
  ev.setUint32(4, Number(us >> 32n), true);
  ev.setUint32(8, Number(us & 0xffffffffn), true);
  ev.setUint32(12, frame.length, true);
  ev.setUint32(16, frame.length, true);
  epb.set(frame, 20);
  const parts = [block(0x0a0d0d0a, shb), block(1, idb), block(6, epb)];
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  const path = join(dir, 'capture.pcapng');
  writeFileSync(path, all);
  const { out, records } = sink();
  const r = await readFlowFile(path, out, { chunkSize: 7 });
  out.flush();
  assert.equal(r.why, 'a pcapng capture (NetFlow/IPFIX datagrams inside)');
  assert.equal(out.bad.total, 0, [...out.bad.counts.keys()].join());
  assert.deepEqual(records.map(renderRecord), recs.map(renderRecord));
});
