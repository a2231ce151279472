/**
 * The flow formats by name: a decoder for each, and a helper that decodes a
 * whole input at once (tests, small files). Every decoder is pure: bytes in,
 * batches and bad-record counts out.
 */
import { BadRecords, FlowOut, type FlowBatch, type FlowRecord } from '../record.js';
import { VpcDecoder } from './aws-vpc.js';
import { AzureDecoder } from './azure.js';
import { CalicoDecoder } from './calico.js';
import { NetflowStreamDecoder, PcapDecoder } from './captures.js';
import { ConntrackDecoder } from './conntrack.js';
import { CsvDecoder } from './csv.js';
import { GcpDecoder } from './gcp.js';
import { HubbleDecoder } from './hubble.js';
import type { NetflowStats } from './netflow.js';
import type { DecoderOptions, FlowDecoder } from './types.js';
import { ZeekJsonDecoder, ZeekTsvDecoder } from './zeek.js';

/** The names `--format` takes, one decoder each. */
export const DECODERS = ['aws-vpc', 'zeek', 'zeek-json', 'conntrack', 'csv', 'netflow', 'hubble', 'calico', 'azure-nsg', 'azure-vnet', 'gcp'] as const;

/** A decoder name of {@link DECODERS}. */
export type DecoderName = (typeof DECODERS)[number];

/** Other spellings `--format` accepts. */
const ALIASES: Record<string, DecoderName> = {
  vpc: 'aws-vpc',
  'zeek-tsv': 'zeek',
  netflow5: 'netflow',
  netflow9: 'netflow',
  ipfix: 'netflow',
  pcap: 'netflow',
  azure: 'azure-nsg',
  'azure-vnet-flow': 'azure-vnet',
};

/** The decoder name for a `--format` value, or undefined. */
export function decoderName(s: string): DecoderName | undefined {
  const k = s.toLowerCase();
  return (DECODERS as readonly string[]).includes(k) ? (k as DecoderName) : ALIASES[k];
}

/**
 * NetFlow/IPFIX from a file: a pcap or pcapng capture, or raw datagrams one
 * after another, told apart by the first bytes.
 */
export class NetflowFileDecoder implements FlowDecoder {
  readonly format = 'netflow';
  private inner: PcapDecoder | NetflowStreamDecoder | undefined;
  private head = new Uint8Array(0);

  constructor(private readonly out: FlowOut) {}

  /** Template and skip counts of the datagrams read so far. */
  get stats(): NetflowStats | undefined {
    return this.inner?.netflow.stats;
  }

  /** Takes the next chunk. */
  push(chunk: Uint8Array): void {
    if (this.inner) return this.inner.push(chunk);
    const joined = new Uint8Array(this.head.length + chunk.length);
    joined.set(this.head);
    joined.set(chunk, this.head.length);
    if (joined.length < 4) {
      this.head = joined;
      return;
    }
    this.head = new Uint8Array(0);
    const m = ((joined[0] << 24) | (joined[1] << 16) | (joined[2] << 8) | joined[3]) >>> 0;
    const pcap = m === 0xa1b2c3d4 || m === 0xd4c3b2a1 || m === 0xa1b23c4d || m === 0x4d3cb2a1 || m === 0x0a0d0d0a;
    this.inner = pcap ? new PcapDecoder(this.out) : new NetflowStreamDecoder(this.out);
    this.inner.push(joined);
  }

  /** The end of input. */
  end(): void {
    if (!this.inner && this.head.length > 0) this.out.bad.add({ reason: 'truncated datagram', line: 1, detail: `${this.head.length} bytes` });
    this.inner?.end();
  }
}

/** A decoder of the named format writing to `out`. Throws a RangeError when the options do not fit (csv without a mapping). */
export function createDecoder(name: DecoderName, out: FlowOut, options: DecoderOptions = {}): FlowDecoder {
  switch (name) {
    case 'aws-vpc':
      return new VpcDecoder(out, options);
    case 'zeek':
      return new ZeekTsvDecoder(out, options);
    case 'zeek-json':
      return new ZeekJsonDecoder(out, options);
    case 'conntrack':
      return new ConntrackDecoder(out, options);
    case 'csv':
      return new CsvDecoder(out, options);
    case 'netflow':
      return new NetflowFileDecoder(out);
    case 'hubble':
      return new HubbleDecoder(out, options);
    case 'calico':
      return new CalicoDecoder(out, options);
    case 'azure-nsg':
      return new AzureDecoder(out, options, 'azure-nsg');
    case 'azure-vnet':
      return new AzureDecoder(out, options, 'azure-vnet');
    case 'gcp':
      return new GcpDecoder(out, options);
  }
}

/** What {@link decodeAll} returns. */
export interface Decoded {
  readonly records: FlowRecord[];
  readonly bad: BadRecords;
}

/**
 * Decodes a whole input (text or bytes) into records, fed in chunks of
 * `chunkSize` bytes (default: all at once) to exercise the streaming paths.
 */
export function decodeAll(name: DecoderName, input: string | Uint8Array, options: DecoderOptions & { chunkSize?: number } = {}): Decoded {
  const bytes = typeof input === 'string' ? new TextEncoder().encode(input) : input;
  const records: FlowRecord[] = [];
  const bad = new BadRecords(1000);
  const out = new FlowOut((b: FlowBatch) => {
    for (let i = 0; i < b.length; i++) records.push(b.get(i));
  }, bad);
  const d = createDecoder(name, out, options);
  const step = Math.max(1, options.chunkSize ?? bytes.length);
  for (let o = 0; o < bytes.length; o += step) d.push(bytes.subarray(o, Math.min(bytes.length, o + step)));
  d.end();
  out.flush();
  return { records, bad };
}

/** The decoder interface and its options, for callers of this module. */
export type { DecoderOptions, FlowDecoder, CsvMapping } from './types.js';
