/**
 * Telling a flow format from the first bytes of its content (after
 * decompression): capture and datagram magic numbers for the binary formats,
 * header lines, JSON keys and line shapes for the text ones. A CSV is
 * recognized when its header names the columns in a known way, and the
 * column mapping is guessed from it.
 */
import { isVpcHeader } from './formats/aws-vpc.js';
import type { DecoderName } from './formats/index.js';
import type { CsvMapping } from './formats/types.js';
import { splitCsvLine } from './formats/csv.js';

/** What {@link detectFormat} found: a format and why, or no format and why not. */
export type Detection = { readonly format: DecoderName; readonly why: string; readonly csv?: CsvMapping; readonly delimiter?: string } | { readonly format: undefined; readonly why: string };

/** How many bytes of the start of an input {@link detectFormat} wants (it works with fewer). */
export const DETECT_BYTES = 65536;

const decoder = new TextDecoder('utf-8', { fatal: false });

/** Column names that a generic CSV may use for each flow field, lowercase without separators. */
const CSV_SYNONYMS: Record<keyof CsvMapping, string[]> = {
  src: ['src', 'srcip', 'srcaddr', 'sourceip', 'source', 'sourceaddress', 'saddr', 'ipsrc', 'srcaddress', 'clientip', 'origh'],
  dst: ['dst', 'dstip', 'dstaddr', 'destip', 'destinationip', 'destination', 'dest', 'destinationaddress', 'daddr', 'ipdst', 'dstaddress', 'serverip', 'resph'],
  sport: ['sport', 'srcport', 'sourceport', 'spt', 'l4srcport', 'origp'],
  dport: ['dport', 'dstport', 'destport', 'destinationport', 'dpt', 'l4dstport', 'port', 'respp'],
  proto: ['proto', 'protocol', 'ipproto', 'transport', 'l4proto'],
  packets: ['packets', 'pkts', 'packetcount', 'npackets'],
  bytes: ['bytes', 'octets', 'bytecount', 'nbytes', 'size'],
  start: ['start', 'starttime', 'ts', 'timestamp', 'time', 'firstseen', 'first', 'begin', 'datetime'],
  end: ['end', 'endtime', 'lastseen', 'last', 'finish', 'stop'],
  action: ['action', 'decision', 'verdict', 'disposition', 'result'],
};

/** A mapping for a CSV header, when its names say where the source and destination are. */
export function guessCsvMapping(header: readonly string[]): CsvMapping | undefined {
  const norm = header.map((h) => h.trim().toLowerCase().replace(/[^a-z0-9]/g, ''));
  const m: Record<string, string> = {};
  for (const [field, names] of Object.entries(CSV_SYNONYMS)) {
    const i = norm.findIndex((h) => names.includes(h));
    if (i >= 0 && !Object.values(m).includes(header[i].trim())) m[field] = header[i].trim();
  }
  return m.src !== undefined && m.dst !== undefined ? (m as unknown as CsvMapping) : undefined;
}

function u16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

/** Whether the sample looks like text (few control bytes besides tab, CR and LF). */
function isText(b: Uint8Array): boolean {
  const n = Math.min(b.length, 4096);
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const c = b[i];
    if (c < 9 || (c > 13 && c < 32) || c === 127) bad++;
  }
  return bad <= n / 100;
}

/** Tells the format of an input from its first bytes (up to {@link DETECT_BYTES}). */
export function detectFormat(sample: Uint8Array): Detection {
  if (sample.length === 0) return { format: undefined, why: 'the input is empty' };
  if (sample.length >= 4) {
    const m = ((sample[0] << 24) | (sample[1] << 16) | (sample[2] << 8) | sample[3]) >>> 0;
    if (m === 0xa1b2c3d4 || m === 0xd4c3b2a1 || m === 0xa1b23c4d || m === 0x4d3cb2a1) return { format: 'netflow', why: 'a pcap capture (NetFlow/IPFIX datagrams inside)' };
    if (m === 0x0a0d0d0a) return { format: 'netflow', why: 'a pcapng capture (NetFlow/IPFIX datagrams inside)' };
  }
  if (sample.length >= 2 && sample[0] === 0x1f && sample[1] === 0x8b) return { format: undefined, why: 'gzip data that was not decompressed' };
  const text = isText(sample);
  if (!text && sample.length >= 16) {
    const v = u16(sample, 0);
    if (v === 5 && u16(sample, 2) <= 30) return { format: 'netflow', why: 'NetFlow v5 datagrams' };
    if (v === 9 && u16(sample, 2) < 1000) return { format: 'netflow', why: 'NetFlow v9 datagrams' };
    if (v === 10 && u16(sample, 2) >= 16) return { format: 'netflow', why: 'IPFIX messages' };
    return { format: undefined, why: 'binary data that is not a pcap capture or NetFlow/IPFIX datagrams' };
  }
  let t = decoder.decode(sample.subarray(0, Math.min(sample.length, DETECT_BYTES)));
  if (t.charCodeAt(0) === 0xfeff) t = t.slice(1);
  const lines = t.split('\n').map((l) => l.replace(/\r$/, ''));
  // The last line may be cut by the sample's end.
  if (sample.length >= DETECT_BYTES && lines.length > 1) lines.pop();
  const firstLines = lines.filter((l) => l.trim() !== '').slice(0, 20);
  if (firstLines.length === 0) return { format: undefined, why: 'the input has no text lines' };
  const first = firstLines[0].trimStart();
  if (/^#(separator|fields|path|set_separator|empty_field|unset_field|open|types)\b/.test(first)) return { format: 'zeek', why: 'a Zeek log header (#separator, #fields)' };
  if (first.startsWith('{') || /^\[\s*(\{|$)/.test(first)) {
    const has = (k: string) => t.includes(k);
    if (has('"id.orig_h"')) return { format: 'zeek-json', why: 'JSON with Zeek conn.log keys (id.orig_h)' };
    if (has('"flowTuples"') && (has('"flowRecords"') || has('"flowGroups"') || has('FlowLogFlowEvent'))) return { format: 'azure-vnet', why: 'Azure VNet flow log records (flowRecords, flowTuples)' };
    if (has('"flowTuples"') || has('NetworkSecurityGroupFlowEvent')) return { format: 'azure-nsg', why: 'Azure NSG flow log records (flowTuples)' };
    if (has('"jsonPayload"') && (has('"connection"') || has('vpc_flows'))) return { format: 'gcp', why: 'GCP VPC flow log entries (jsonPayload.connection)' };
    if (has('"flow"') && (has('"verdict"') || has('"IP"') || has('"l4"'))) return { format: 'hubble', why: 'Hubble flow events (flow.verdict, flow.IP, flow.l4)' };
    if ((has('"dest_ip"') || has('"source_ip"')) && (has('"reporter"') || has('"num_flows"') || has('"dest_port"'))) return { format: 'calico', why: 'Calico flow log records (source_ip, dest_ip, reporter)' };
    return { format: undefined, why: 'JSON, but with the keys of no known flow format' };
  }
  if (isVpcHeader(first)) return { format: 'aws-vpc', why: 'an AWS VPC flow log header line' };
  const vpcLike = firstLines.filter((l) => {
    const f = l.trim().split(/ +/);
    return f.length === 14 && /^[0-9]+$/.test(f[0]) && /^(OK|NODATA|SKIPDATA)$/.test(f[13]);
  }).length;
  if (vpcLike > 0 && vpcLike >= firstLines.length / 2) return { format: 'aws-vpc', why: 'AWS VPC flow log records in the default format (14 fields, ending OK/NODATA/SKIPDATA)' };
  const ctLike = firstLines.filter((l) => /^(\[[0-9.]+\]\s+)?(\[(NEW|UPDATE|DESTROY)\]\s+)?((ipv4|ipv6)\s+\d+\s+)?[a-z0-9-]+\s+\d+\s.*\bsrc=\S+\s+dst=\S+/.test(l.trim())).length;
  if (ctLike > 0 && ctLike >= firstLines.length / 2) {
    const events = firstLines.some((l) => /\[(NEW|UPDATE|DESTROY)\]/.test(l));
    return { format: 'conntrack', why: events ? 'conntrack -E events ([NEW], [DESTROY])' : 'conntrack -L entries (src= dst= sport= dport=)' };
  }
  for (const delim of [',', '\t', ';']) {
    if (!first.includes(delim)) continue;
    const header = splitCsvLine(firstLines[0], delim);
    if (!header || header.length < 2) continue;
    const csv = guessCsvMapping(header);
    if (csv) return { format: 'csv', why: `a CSV whose header names the columns (${Object.entries(csv).map(([k, v]) => `${k}=${v}`).join(',')})`, csv, delimiter: delim };
  }
  return { format: undefined, why: 'text in no known flow format' };
}
