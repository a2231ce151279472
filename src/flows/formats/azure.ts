/**
 * Azure flow logs, the JSON blobs Network Watcher writes (one an hour,
 * `{"records": [...]}`, streamed record by record):
 *
 * - NSG flow logs, version 2: `properties.flows[].flows[].flowTuples[]`, each
 *   `time,src,dst,sport,dport,T|U,I|O,A|D,B|C|E,pkts→,bytes→,pkts←,bytes←`
 *   (version 1 tuples stop after the decision);
 * - VNet flow logs: `flowRecords.flows[].flowGroups[].flowTuples[]`, each
 *   `time(ms),src,dst,sport,dport,proto,I|O,B|C|E|D,encryption,pkts→,bytes→,pkts←,bytes←`.
 *
 * The tuple's source opened the flow. A record's tuples share its line number.
 */
import { parseAddr } from '../../netset/ip.js';
import type { FlowOut } from '../record.js';
import { excerptText } from '../text.js';
import { JsonDecoder, type DecoderOptions } from './types.js';

function num(s: string | undefined): number {
  return s !== undefined && /^[0-9]{1,16}$/.test(s) ? Number(s) : s === undefined || s === '' ? 0 : -1;
}

/** Parses one flow tuple; a problem string when it cannot. `vnet` selects the VNet layout. */
export function azureTuple(t: string, vnet: boolean, out: FlowOut): string | undefined {
  const f = t.split(',');
  if (f.length < (vnet ? 8 : 8)) return `flow tuple has ${f.length} fields`;
  const time = num(f[0]);
  if (time < 0 || f[0] === '') return 'invalid tuple time';
  const src = parseAddr(f[1]);
  if (src === null) return 'invalid tuple source';
  const dst = parseAddr(f[2]);
  if (dst === null) return 'invalid tuple destination';
  const sport = num(f[3]);
  const dport = num(f[4]);
  if (sport < 0 || sport > 65535 || dport < 0 || dport > 65535) return 'invalid tuple port';
  let proto: number;
  if (vnet) proto = num(f[5]);
  else proto = f[5] === 'T' ? 6 : f[5] === 'U' ? 17 : -1;
  if (proto < 0 || proto > 255) return 'invalid tuple protocol';
  let action: 'accept' | 'reject' | undefined;
  let counts: number;
  if (vnet) {
    action = f[7] === 'D' ? 'reject' : 'accept';
    counts = 9;
  } else {
    action = f[7] === 'A' ? 'accept' : f[7] === 'D' ? 'reject' : undefined;
    if (action === undefined) return 'invalid tuple decision';
    counts = 9;
  }
  const pk1 = num(f[counts]);
  const by1 = num(f[counts + 1]);
  const pk2 = num(f[counts + 2]);
  const by2 = num(f[counts + 3]);
  if (pk1 < 0 || by1 < 0 || pk2 < 0 || by2 < 0) return 'invalid tuple counters';
  const ms = vnet ? time : time * 1000;
  out.push({ start: ms, end: ms, src, dst, proto, srcPort: sport, dstPort: dport, packets: pk1 + pk2, bytes: by1 + by2, action, initiator: 'src', format: vnet ? 'azure-vnet' : 'azure-nsg' });
  return undefined;
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** Decodes Azure NSG (version 1 and 2) and VNet flow log blobs; each record says which it is. */
export class AzureDecoder extends JsonDecoder {
  readonly format: string;

  constructor(
    out: FlowOut,
    options: DecoderOptions = {},
    format: 'azure-nsg' | 'azure-vnet' = 'azure-nsg',
  ) {
    super(out, options);
    this.format = format;
  }

  protected record(v: Record<string, unknown>, line: number): void {
    const tuples: string[] = [];
    let vnet: boolean;
    const props = v.properties as Record<string, unknown> | undefined;
    const fr = v.flowRecords as Record<string, unknown> | undefined;
    if (fr && typeof fr === 'object') {
      vnet = true;
      for (const f of list(fr.flows)) for (const g of list((f as Record<string, unknown>)?.flowGroups)) for (const t of list((g as Record<string, unknown>)?.flowTuples)) tuples.push(String(t));
    } else if (props && typeof props === 'object' && Array.isArray(props.flows)) {
      vnet = false;
      for (const r of list(props.flows)) for (const f of list((r as Record<string, unknown>)?.flows)) for (const t of list((f as Record<string, unknown>)?.flowTuples)) tuples.push(String(t));
    } else {
      this.out.bad.add({ reason: 'not an Azure flow log record', line, detail: excerptText(String(v.category ?? Object.keys(v).slice(0, 3).join(', '))) });
      return;
    }
    for (const t of tuples) {
      const problem = azureTuple(t, vnet, this.out);
      if (problem) this.out.bad.add({ reason: problem, line, detail: excerptText(t) });
    }
  }
}
