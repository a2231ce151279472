/**
 * Google Cloud VPC Flow Logs, as Cloud Logging exports them: JSON lines (a
 * sink to Cloud Storage) or a JSON array (`gcloud logging read
 * --format=json`). Each entry's `jsonPayload` has the `connection` 5-tuple,
 * start and end times, and the sampled `bytes_sent` / `packets_sent` (int64
 * as strings). Entries are sampled and report one direction each.
 */
import { parseAddr } from '../../netset/ip.js';
import type { FlowOut } from '../record.js';
import { countOf, excerptText, portOf, protoOf, timeOf } from '../text.js';
import { JsonDecoder, pick, type DecoderOptions } from './types.js';

/** Decodes GCP VPC flow log entries. */
export class GcpDecoder extends JsonDecoder {
  readonly format = 'gcp';

  constructor(out: FlowOut, options: DecoderOptions = {}) {
    super(out, options);
  }

  protected record(v: Record<string, unknown>, line: number): void {
    const bad = (reason: string, detail?: string) => this.out.bad.add({ reason, line, detail });
    const p = (v.jsonPayload ?? (v.connection !== undefined ? v : undefined)) as Record<string, unknown> | undefined;
    const conn = pick(p, 'connection') as Record<string, unknown> | undefined;
    if (!p || !conn || typeof conn !== 'object') return bad('not a VPC flow log entry (no jsonPayload.connection)', excerptText(String(v.logName ?? Object.keys(v).slice(0, 3).join(', '))));
    const src = typeof conn.src_ip === 'string' ? parseAddr(conn.src_ip) : null;
    if (src === null) return bad('invalid connection.src_ip', excerptText(String(conn.src_ip)));
    const dst = typeof conn.dest_ip === 'string' ? parseAddr(conn.dest_ip) : null;
    if (dst === null) return bad('invalid connection.dest_ip', excerptText(String(conn.dest_ip)));
    const proto = protoOf(conn.protocol);
    if (proto < 0) return bad('invalid connection.protocol', excerptText(String(conn.protocol)));
    const sport = conn.src_port === undefined ? 0 : portOf(conn.src_port);
    const dport = conn.dest_port === undefined ? 0 : portOf(conn.dest_port);
    if (sport < 0 || dport < 0) return bad('invalid port', `${String(conn.src_port)} -> ${String(conn.dest_port)}`);
    const start = timeOf(p.start_time ?? v.timestamp);
    if (Number.isNaN(start)) return bad('invalid start_time', excerptText(String(p.start_time)));
    const e = timeOf(p.end_time);
    this.out.push({
      start,
      end: Number.isNaN(e) ? start : e,
      src,
      dst,
      proto,
      srcPort: sport,
      dstPort: dport,
      packets: Math.max(0, countOf(p.packets_sent)),
      bytes: Math.max(0, countOf(p.bytes_sent)),
      format: 'gcp',
    });
  }
}
