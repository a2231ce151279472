/** Every flow format: golden files of what each fixture decodes to, format detection, and independence from chunk boundaries. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeAll } from '../../src/flows/formats/index.js';
import { detectFormat } from '../../src/flows/detect.js';
import { parseCsvMapping } from '../../src/flows/formats/csv.js';
import { checkGolden } from '../helpers/golden.js';
import { FIXTURES, FORMAT_FIXTURES, fixture, renderDecoded } from './util.js';

for (const f of FORMAT_FIXTURES) {
  test(`golden: ${f.file} (${f.decoder})`, () => {
    const bytes = fixture(f.file);
    const whole = decodeAll(f.decoder, bytes, f.options);
    const det = detectFormat(bytes);
    checkGolden(`${FIXTURES}/${f.file}.golden`, `# detected: ${det.format ?? 'none'} (${det.why})\n` + renderDecoded(whole));
    assert.equal(det.format, f.decoder, `detection of ${f.file}: ${det.why}`);
    // The same records and bad records whatever the chunk boundaries.
    for (const chunkSize of [1, 7, 64]) {
      const chunked = decodeAll(f.decoder, bytes, { ...f.options, chunkSize });
      assert.equal(renderDecoded(chunked), renderDecoded(whole), `${f.file} fed in chunks of ${chunkSize}`);
    }
  });
}

test('detect: a gzip stream, binary junk, empty input, JSON of no known format, plain text', () => {
  assert.match(detectFormat(Uint8Array.of(0x1f, 0x8b, 8, 0)).why, /gzip/);
  assert.equal(detectFormat(new Uint8Array(0)).format, undefined);
  assert.match(detectFormat(Uint8Array.from({ length: 64 }, (_, i) => (i * 37) & 255)).why, /binary data/);
  assert.match(detectFormat(new TextEncoder().encode('{"hello": "world"}\n')).why, /JSON, but with the keys of no known flow format/);
  assert.match(detectFormat(new TextEncoder().encode('hello world\nthis is text\n')).why, /text in no known flow format/);
});

test('detect: a CSV header maps itself; tab-separated too', () => {
  const d = detectFormat(new TextEncoder().encode('time\tsrc_ip\tdst_ip\tdst_port\tproto\n2026-11-16T08:00:00Z\t10.0.0.1\t10.0.0.2\t443\ttcp\n'));
  assert.equal(d.format, 'csv');
  assert.ok(d.format === 'csv' && d.csv && d.delimiter === '\t');
  const r = decodeAll('csv', '2026-11-16T08:00:00Z\t10.0.0.1\t10.0.0.2\t443\ttcp\n', { csv: d.csv, delimiter: '\t', header: false });
  assert.equal(r.records.length, 0, 'positions only work with #N columns');
  const mapping = parseCsvMapping('src=#2,dst=#3,dport=#4,proto=#5,start=#1');
  const r2 = decodeAll('csv', '2026-11-16T08:00:00Z\t10.0.0.1\t10.0.0.2\t443\ttcp\n', { csv: mapping, delimiter: '\t', header: false });
  assert.equal(r2.records.length, 1);
  assert.equal(r2.records[0].dstPort, 443);
});

test('csv mapping: clear errors for bad specs; constants', () => {
  assert.throws(() => parseCsvMapping('src=a'), /needs at least src and dst/);
  assert.throws(() => parseCsvMapping('src=a,dst=b,colour=c'), /unknown field `colour`/);
  assert.throws(() => parseCsvMapping('src=a,dst'), /is not field=column/);
  const r = decodeAll('csv', 'a,b,t\n10.0.0.1,10.0.0.2,1794816000\n', { csv: parseCsvMapping('src=a,dst=b,start=t,proto=const:udp,dport=const:53') });
  assert.equal(r.records[0].proto, 17);
  assert.equal(r.records[0].dstPort, 53);
  const missing = decodeAll('csv', 'a,b\n10.0.0.1,10.0.0.2\n', { csv: parseCsvMapping('src=a,dst=c') });
  assert.match([...missing.bad.counts.keys()][0], /mapped column not in the header/);
});
