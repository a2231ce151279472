/**
 * Calico flow logs (Calico Enterprise / Cloud `flows.log`, JSON lines): one
 * record per aggregated connection group and reporter, with `source_ip`,
 * `dest_ip`, `dest_port`, `proto`, packet and byte counts in and out, and the
 * policy `action`. The source is the initiator. A record aggregated past its
 * addresses (`source_ip` of `-`) cannot be placed and is counted as bad.
 */
import { parseAddr } from '../../netset/ip.js';
import type { FlowOut } from '../record.js';
import { countOf, excerptText, portOf, protoOf, timeOf } from '../text.js';
import { JsonDecoder, type DecoderOptions } from './types.js';

/** Decodes Calico flow logs. */
export class CalicoDecoder extends JsonDecoder {
  readonly format = 'calico';

  constructor(out: FlowOut, options: DecoderOptions = {}) {
    super(out, options);
  }

  protected record(v: Record<string, unknown>, line: number): void {
    const bad = (reason: string, detail?: string) => this.out.bad.add({ reason, line, detail });
    if (!('dest_ip' in v) && !('source_ip' in v) && !('dest_port' in v)) return bad('not a Calico flow log record', excerptText(Object.keys(v).slice(0, 4).join(', ')));
    const s = v.source_ip;
    const d = v.dest_ip;
    if (s === null || s === undefined || s === '-' || d === null || d === undefined || d === '-') return bad('no addresses (aggregated by name)', `${String(v.source_name_aggr ?? v.source_name ?? '?')} -> ${String(v.dest_name_aggr ?? v.dest_name ?? '?')}`);
    const src = typeof s === 'string' ? parseAddr(s) : null;
    if (src === null) return bad('invalid source_ip', excerptText(String(s)));
    const dst = typeof d === 'string' ? parseAddr(d) : null;
    if (dst === null) return bad('invalid dest_ip', excerptText(String(d)));
    const proto = protoOf(v.proto);
    if (proto < 0) return bad('invalid proto', excerptText(String(v.proto)));
    const sport = v.source_port === null || v.source_port === undefined || v.source_port === '-' ? 0 : portOf(v.source_port);
    if (sport < 0) return bad('invalid source_port', excerptText(String(v.source_port)));
    const dport = v.dest_port === null || v.dest_port === undefined || v.dest_port === '-' ? 0 : portOf(v.dest_port);
    if (dport < 0) return bad('invalid dest_port', excerptText(String(v.dest_port)));
    const start = timeOf(v.start_time);
    if (Number.isNaN(start)) return bad('invalid start_time', excerptText(String(v.start_time)));
    const endT = timeOf(v.end_time);
    const end = Number.isNaN(endT) ? start : endT;
    const c = (k: string): number => Math.max(0, countOf(v[k]));
    const act = String(v.action ?? '').toLowerCase();
    const action = act === 'allow' ? ('accept' as const) : act === 'deny' ? ('reject' as const) : undefined;
    this.out.push({
      start,
      end,
      src,
      dst,
      proto,
      srcPort: sport,
      dstPort: dport,
      packets: c('packets_in') + c('packets_out'),
      bytes: c('bytes_in') + c('bytes_out'),
      ...(action ? { action } : {}),
      initiator: 'src',
      format: 'calico',
    });
  }
}
