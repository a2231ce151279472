/**
 * Every parser against bad input: truncation at every point, garbage bytes,
 * random corruption, huge lines and records, and the wrong format. None may
 * throw; each problem is a counted bad record with a clear reason and its
 * line, and the good records around it are still read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeAll, DECODERS, type DecoderName, type DecoderOptions } from '../../src/flows/formats/index.js';
import { Rng } from '../../src/generate/prng.js';
import { FORMAT_FIXTURES, fixture } from './util.js';

/** Options every decoder can run with (csv needs a mapping). */
function optionsFor(d: DecoderName): DecoderOptions {
  return d === 'csv' ? { csv: { src: 'source_ip', dst: 'dest_ip', start: 'timestamp', proto: 'protocol', dport: 'dest_port' } } : {};
}

test('truncation: every prefix of every fixture decodes without throwing, to about no more records than the whole', () => {
  for (const f of FORMAT_FIXTURES) {
    const bytes = fixture(f.file);
    const whole = decodeAll(f.decoder, bytes, f.options).records.length;
    const step = Math.max(1, Math.floor(bytes.length / 97));
    for (let cut = 0; cut < bytes.length; cut += step) {
      const r = decodeAll(f.decoder, bytes.subarray(0, cut), f.options);
      // A cut can make one bad last record good (a port of 99999 cut to 9999), never more.
      assert.ok(r.records.length <= whole + 1, `${f.file} cut at ${cut}: ${r.records.length} > ${whole}`);
    }
  }
});

test('truncation: a cut record is reported, not silently dropped', () => {
  const vpc = fixture('aws-vpc-v2.log');
  const cut = decodeAll('aws-vpc', vpc.subarray(0, 60));
  assert.equal(cut.records.length, 0);
  assert.match([...cut.bad.counts.keys()].join(), /wrong field count/);
  const json = decodeAll('hubble', fixture('hubble.jsonl').subarray(0, 300));
  assert.deepEqual([...json.bad.counts.keys()], ['truncated JSON: the input ends inside a record']);
  const pcap = decodeAll('netflow', fixture('netflow9.pcap').subarray(0, 200));
  assert.match([...pcap.bad.counts.keys()].join(), /truncated capture/);
  const ipfix = decodeAll('netflow', fixture('ipfix.bin').subarray(0, 100));
  assert.match([...ipfix.bad.counts.keys()].join(), /truncated datagram/);
  const nsg = decodeAll('azure-nsg', fixture('azure-nsg.json').subarray(0, 900));
  assert.ok(nsg.bad.total > 0);
});

test('garbage bytes: every decoder survives 64 KiB of random bytes and says why', () => {
  const rng = new Rng(7);
  const junk = Uint8Array.from({ length: 65536 }, () => rng.int(256));
  for (const d of DECODERS) {
    const r = decodeAll(d, junk, optionsFor(d));
    assert.ok(r.bad.total > 0 || r.records.length === 0, `${d} said nothing about garbage`);
    for (const reason of r.bad.counts.keys()) assert.match(reason, /^[a-z]/, `${d}: reason ${reason}`);
  }
});

test('garbage inside good input: flipped bytes never throw, and most records survive', () => {
  const rng = new Rng(11);
  for (const f of FORMAT_FIXTURES) {
    const bytes = fixture(f.file);
    for (let k = 0; k < 60; k++) {
      const copy = bytes.slice();
      const flips = 1 + rng.int(4);
      for (let j = 0; j < flips; j++) copy[rng.int(copy.length)] = rng.int(256);
      decodeAll(f.decoder, copy, { ...f.options, chunkSize: 1 + rng.int(64) });
    }
  }
});

test('huge lines: a 3 MiB line is skipped and reported with its number; the lines after it are read', () => {
  const good = '2 123456789012 eni-1 10.0.0.1 10.0.0.2 40000 443 6 1 60 1794816000 1794816060 ACCEPT OK\n';
  const huge = 'x'.repeat(3 << 20) + '\n';
  const input = good + huge + good + good;
  for (const chunkSize of [65536, 1 << 20, input.length]) {
    const r = decodeAll('aws-vpc', input, { chunkSize });
    assert.equal(r.records.length, 3, `chunks of ${chunkSize}`);
    assert.deepEqual(r.bad.examples.get('line too long')?.map((b) => b.line), [2]);
  }
  // The cap is an option; every line-based decoder enforces it.
  for (const d of ['aws-vpc', 'zeek', 'conntrack', 'csv'] as const) {
    const r = decodeAll(d, 'a,b\n' + 'y'.repeat(5000) + '\n', { ...optionsFor(d), maxLine: 1024 });
    assert.equal(r.bad.counts.get('line too long'), 1, d);
  }
  // A huge last line without a newline.
  const r = decodeAll('aws-vpc', good + 'z'.repeat(3 << 20), { chunkSize: 1 << 16 });
  assert.equal(r.records.length, 1);
  assert.deepEqual(r.bad.examples.get('line too long')?.map((b) => b.line), [2]);
});

test('huge JSON records are skipped past the cap; the next record is read', () => {
  const rec = fixture('hubble.jsonl');
  const first = new TextDecoder().decode(rec).split('\n')[0];
  const big = `{"flow":{"pad":"${'p'.repeat(200_000)}"}}`;
  const r = decodeAll('hubble', `${first}\n${big}\n${first}\n`, { maxRecord: 65536, chunkSize: 4096 });
  assert.equal(r.records.length, 2);
  assert.deepEqual(r.bad.examples.get('record too long')?.map((b) => b.line), [2]);
});

test('wrong format: every fixture through every other decoder: no throw, and the problem is said', () => {
  for (const f of FORMAT_FIXTURES) {
    const bytes = fixture(f.file);
    for (const d of DECODERS) {
      if (d === f.decoder) continue;
      const r = decodeAll(d, bytes, optionsFor(d));
      if (r.records.length > 0) continue; // some formats overlap (csv with a guessable header)
      assert.ok(r.bad.total > 0 || bytes.length === 0, `${f.file} read as ${d}: nothing said`);
    }
  }
  const zeekAsVpc = decodeAll('aws-vpc', fixture('zeek-conn.log'));
  assert.equal(zeekAsVpc.records.length, 0);
  assert.ok(zeekAsVpc.bad.total >= 6);
  const vpcAsNetflow = decodeAll('netflow', fixture('aws-vpc-v2.log'));
  assert.match([...vpcAsNetflow.bad.counts.keys()].join(), /cannot frame the next datagram/);
});

test('empty input and blank lines are nothing, not errors', () => {
  for (const d of DECODERS) {
    if (d === 'netflow') continue;
    const r = decodeAll(d, '\n\n  \n', optionsFor(d));
    assert.equal(r.records.length, 0, d);
  }
  assert.equal(decodeAll('aws-vpc', '').bad.total, 0);
});
