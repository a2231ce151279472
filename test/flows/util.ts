/** Shared by the flow tests: the fixtures and a readable rendering of decoded records for golden files. */
import { readFileSync } from 'node:fs';
import { formatAddr } from '../../src/netset/ip.js';
import type { Decoded, DecoderName, DecoderOptions } from '../../src/flows/formats/index.js';
import type { FlowRecord } from '../../src/flows/record.js';

export const FIXTURES = 'test/fixtures/flows';

/** Every fixture, the decoder that reads it and its options. */
export const FORMAT_FIXTURES: readonly { file: string; decoder: DecoderName; options?: DecoderOptions }[] = [
  { file: 'aws-vpc-v2.log', decoder: 'aws-vpc' },
  { file: 'aws-vpc-custom.log', decoder: 'aws-vpc' },
  { file: 'zeek-conn.log', decoder: 'zeek' },
  { file: 'zeek-conn.json', decoder: 'zeek-json' },
  { file: 'conntrack-L.txt', decoder: 'conntrack', options: { time: Date.parse('2026-11-16T08:05:00Z') } },
  { file: 'conntrack-E.txt', decoder: 'conntrack' },
  {
    file: 'flows.csv',
    decoder: 'csv',
    options: { csv: { src: 'source_ip', dst: 'dest_ip', sport: 'source_port', dport: '#5', proto: 'protocol', packets: 'packets', bytes: 'bytes', start: 'timestamp', action: 'action' } },
  },
  { file: 'hubble.jsonl', decoder: 'hubble' },
  { file: 'calico.jsonl', decoder: 'calico' },
  { file: 'azure-nsg.json', decoder: 'azure-nsg' },
  { file: 'azure-vnet.json', decoder: 'azure-vnet' },
  { file: 'gcp.json', decoder: 'gcp' },
  { file: 'netflow5.bin', decoder: 'netflow' },
  { file: 'netflow9.pcap', decoder: 'netflow' },
  { file: 'ipfix.bin', decoder: 'netflow' },
];

/** The bytes of a fixture. */
export function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(`${FIXTURES}/${name}`));
}

/** One record on one line. */
export function renderRecord(r: FlowRecord): string {
  const t = (ms: number) => new Date(ms).toISOString();
  const extra = [r.action, r.tcpFlags !== undefined ? `flags=${r.tcpFlags}` : undefined, r.initiator ? `initiator=${r.initiator}` : undefined].filter(Boolean).join(' ');
  const ep = (a: FlowRecord['src'], p: number) => (typeof a === "bigint" ? `[${formatAddr(a)}]:${p}` : `${formatAddr(a)}:${p}`);
  return `${t(r.start)} ${t(r.end)} ${ep(r.src, r.srcPort)} -> ${ep(r.dst, r.dstPort)} proto=${r.proto} packets=${r.packets} bytes=${r.bytes}${extra ? ' ' + extra : ''} [${r.format}]`;
}

/** Records, then bad records by reason with their examples. */
export function renderDecoded(d: Decoded): string {
  const lines = d.records.map(renderRecord);
  for (const [reason, n] of [...d.bad.counts].sort((a, b) => a[0].localeCompare(b[0]))) {
    const ex = d.bad.examples.get(reason) ?? [];
    lines.push(`bad: ${reason} (${n}): ${ex.map((e) => `line ${e.line}${e.detail ? ` (${e.detail})` : ''}`).join('; ')}`);
  }
  return lines.join('\n') + '\n';
}
