/** The binary flow batch: what it encodes decodes to the same columns as the JSON forms; bad bytes are refused with a place. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFlowBatch, encodeFlowBatch, wireColumns, type WireBatch, type WireFlow } from '../../src/flows/wire.js';
import { flowsBodyBatch } from '../../src/server/schemas.js';
import { Rng } from '../../src/generate/prng.js';

function randomRecords(seed: number, n: number, v6: boolean): WireFlow[] {
  const rng = new Rng(seed);
  const v4 = () => `10.${rng.int(256)}.${rng.int(256)}.${rng.int(256)}`;
  const six = () => `2001:db8::${rng.int(65536).toString(16)}:${rng.int(65536).toString(16)}`;
  const out: WireFlow[] = [];
  for (let i = 0; i < n; i++) {
    const start = 1_700_000_000_000 + rng.int(1e9);
    out.push({
      start,
      end: start + rng.int(60000),
      src: v6 && rng.chance(0.3) ? six() : v4(),
      dst: v6 && rng.chance(0.3) ? six() : v4(),
      sport: rng.int(65536),
      dport: rng.int(65536),
      proto: [6, 17, 1, 58][rng.int(4)],
      packets: rng.int(1e6),
      bytes: rng.int(2 ** 40),
      ...(rng.chance(0.5) ? { initiator: 'src' as const } : {}),
      ...(rng.chance(0.2) ? { verdict: (['allowed', 'blocked', 'potentially-blocked'] as const)[rng.int(3)] } : {}),
      ...(rng.chance(0.2) ? { rule: `rule-${rng.int(5)}` } : {}),
    });
  }
  return out;
}

/** Plain arrays of a batch, for comparison (IPv6 columns compared only where a row has an IPv6 end). */
function plain(b: WireBatch) {
  const six = (col: Uint32Array, bit: number) => [...b.family].flatMap((f, i) => (f & bit ? [...col.subarray(4 * i, 4 * i + 4)] : []));
  return {
    length: b.length,
    start: [...b.start], end: [...b.end], packets: [...b.packets], bytes: [...b.bytes],
    src4: [...b.src4], dst4: [...b.dst4], src6: six(b.src6, 1), dst6: six(b.dst6, 2),
    sport: [...b.sport], dport: [...b.dport], proto: [...b.proto], family: [...b.family], initiator: [...b.initiator], verdict: [...b.verdict],
    rule: [...b.rule].map((k) => (k === 0 ? null : b.rules[k - 1])),
  };
}

test('wire: binary, records and columns give the same batch', () => {
  for (const [seed, n, v6] of [[1, 0, false], [2, 1, false], [3, 500, false], [4, 500, true], [5, 3, true]] as const) {
    const records = randomRecords(seed, n, v6);
    const bin = decodeFlowBatch(encodeFlowBatch(records), 50000);
    assert.ok(!('message' in bin), JSON.stringify(bin));
    const fromRecords = flowsBodyBatch({ records });
    assert.deepEqual(plain(bin), plain(fromRecords), `seed ${seed}`);
    assert.deepEqual(plain(flowsBodyBatch({ columns: wireColumns(records) })), plain(fromRecords), `seed ${seed}: columns`);
    assert.equal(bin.src6.length, v6 && records.some((r) => r.src.includes(':') || r.dst.includes(':')) ? 4 * n : 0);
  }
});

test('wire: a batch at an odd offset in a bigger buffer decodes (copied to align), a Buffer too', () => {
  const enc = encodeFlowBatch(randomRecords(7, 50, true));
  for (const big of [new Uint8Array(enc.length + 3), Buffer.alloc(enc.length + 3)]) {
    big.set(enc, 3);
    const b = decodeFlowBatch(big.subarray(3), 100);
    assert.ok(!('message' in b));
    assert.deepEqual(plain(b), plain(decodeFlowBatch(enc, 100) as WireBatch));
  }
});

test('wire: an IPv4-mapped IPv6 end is read as the IPv4 address, as the JSON forms read it', () => {
  const r: WireFlow = { start: 1, end: 2, src: '10.0.0.1', dst: '2001:db8::1', sport: 1, dport: 2, proto: 6, packets: 1, bytes: 1 };
  const enc = encodeFlowBatch([r, { ...r, dst: '10.0.0.2' }]);
  // Write ::ffff:10.0.0.2 as the second record's IPv6 destination by hand (the encoder writes IPv4 for it).
  const n = 2;
  const dst6 = 16 + 4 * 8 * n + 2 * 4 * n + 16 * n; // header, four f64 columns, src4 and dst4, src6
  const dv = new DataView(enc.buffer, enc.byteOffset);
  dv.setUint32(dst6 + 16 + 8, 0xffff, true);
  dv.setUint32(dst6 + 16 + 12, 0x0a000002, true);
  const family = dst6 + 16 * n + 3 * pad(2 * n);
  enc[family + 1] = 2;
  const b = decodeFlowBatch(enc, 10) as WireBatch;
  assert.ok(!('message' in b), JSON.stringify(b));
  assert.equal(b.family[1], 0);
  assert.equal(b.dst4[1], 0x0a000002);
  assert.deepEqual(plain(b), plain(flowsBodyBatch({ records: [r, { ...r, dst: '::ffff:10.0.0.2' }] })));
});

function pad(n: number): number {
  return (n + 7) & ~7;
}

test('wire: bad batches are refused with the place and the reason', () => {
  const records = randomRecords(8, 10, false).map((r) => ({ ...r, rule: 'r1', verdict: 'blocked' as const }));
  const good = encodeFlowBatch(records);
  const problem = (bytes: Uint8Array, max = 100) => {
    const r = decodeFlowBatch(bytes, max);
    assert.ok('message' in r, 'refused');
    return `${r.path}: ${r.message}`;
  };
  assert.match(problem(new TextEncoder().encode('{"records":[]}')), /^\/: not a bulkhead flow batch/);
  assert.match(problem(good.subarray(0, good.length - 1)), /^\/: \d+ bytes; 10 records/);
  assert.match(problem(good, 5), /^\/n: at most 5 records/);
  // Offsets of this layout (10 records, no IPv6): start at 16, end 96, packets 176, bytes 256, src4 336, dst4 376,
  // sport 416, dport 440, rule 464, family 488, proto 504, initiator 520, verdict 536, table 552.
  const edit = (f: (b: Uint8Array, dv: DataView) => void) => {
    const b = good.slice();
    f(b, new DataView(b.buffer));
    return b;
  };
  assert.match(problem(edit((_, dv) => dv.setFloat64(16 + 8 * 3, 1.5, true))), /^\/start\/3: a whole number/);
  assert.match(problem(edit((_, dv) => dv.setFloat64(256 + 8 * 2, -1, true))), /^\/bytes\/2: a whole number/);
  assert.match(problem(edit((b) => (b[488 + 4] = 1))), /^\/family\/4: an IPv6 end, but the batch has no IPv6 columns/);
  assert.match(problem(edit((b) => (b[536 + 1] = 9))), /^\/verdict\/1: a verdict code/);
  assert.match(problem(edit((_, dv) => dv.setUint16(464 + 2 * 6, 2, true))), /^\/rule\/6: a rule table index, 0 to 1/);
  assert.match(problem(edit((_, dv) => dv.setUint32(8, 4, true))), /^\/flags: unknown flags 4/);
  assert.match(problem(edit((b) => (b[552] = 0x7b))), /^\/rules: /);
  // What the encoder refuses: what the server would refuse anyway.
  assert.throws(() => encodeFlowBatch([{ ...records[0], src: 'not-an-ip' }]), /record 0: `not-an-ip` is not an IP address/);
  assert.throws(() => encodeFlowBatch([{ ...records[0], dport: 70000 }]), /record 0: ports are 0 to 65535/);
  assert.throws(() => encodeFlowBatch([{ ...records[0], start: 1.5 }]), /record 0: start and end/);
  assert.throws(() => encodeFlowBatch([{ ...records[0], end: records[0].start - 1 }]), /record 0: `end` is before `start`/);
});
