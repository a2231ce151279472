/**
 * Cilium Hubble: `hubble observe -o jsonpb`, one JSON object a line, each
 * `{"flow": {...}}` one observed packet event with its verdict. Hubble has
 * no byte counts: each event is one packet. `is_reply` tells the direction:
 * a reply's source is the server.
 */
import { parseAddr } from '../../netset/ip.js';
import type { FlowOut } from '../record.js';
import { excerptText, timeOf } from '../text.js';
import { JsonDecoder, type DecoderOptions } from './types.js';

const ACCEPT = new Set(['FORWARDED', 'AUDIT', 'REDIRECTED', 'TRANSLATED', 'TRACED']);
const REJECT = new Set(['DROPPED', 'ERROR']);

/** A field in either protojson spelling (`source_port` or `sourcePort`). */
function field(o: unknown, snake: string): unknown {
  if (o === null || typeof o !== 'object') return undefined;
  const r = o as Record<string, unknown>;
  if (snake in r) return r[snake];
  return r[snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())];
}

/** TCP flags from Hubble's `flags` object (`{"SYN": true, "ACK": true}`). */
export function hubbleFlags(f: unknown): number {
  if (f === null || typeof f !== 'object') return 0;
  const r = f as Record<string, unknown>;
  return (r.FIN ? 1 : 0) | (r.SYN ? 2 : 0) | (r.RST ? 4 : 0) | (r.PSH ? 8 : 0) | (r.ACK ? 16 : 0) | (r.URG ? 32 : 0);
}

/** Decodes Hubble jsonpb flow events. */
export class HubbleDecoder extends JsonDecoder {
  readonly format = 'hubble';

  constructor(out: FlowOut, options: DecoderOptions = {}) {
    super(out, options);
  }

  protected record(v: Record<string, unknown>, line: number): void {
    const flow = (v.flow ?? (v.IP !== undefined || v.l4 !== undefined ? v : undefined)) as Record<string, unknown> | undefined;
    const bad = (reason: string, detail?: string) => this.out.bad.add({ reason, line, detail });
    if (!flow || typeof flow !== 'object') return bad('not a flow event', excerptText(Object.keys(v).slice(0, 3).join(', ')));
    const ip = flow.IP ?? flow.ip;
    const srcT = field(ip, 'source');
    const dstT = field(ip, 'destination');
    if (typeof srcT !== 'string' || typeof dstT !== 'string') return bad('flow has no IP addresses');
    const src = parseAddr(srcT);
    if (src === null) return bad('invalid IP.source', excerptText(srcT));
    const dst = parseAddr(dstT);
    if (dst === null) return bad('invalid IP.destination', excerptText(dstT));
    const time = timeOf(flow.time ?? v.time);
    if (Number.isNaN(time)) return bad('invalid time', excerptText(String(flow.time ?? v.time)));
    const l4 = (flow.l4 ?? {}) as Record<string, unknown>;
    let proto = 0;
    let sport = 0;
    let dport = 0;
    let flags: number | undefined;
    const port = (o: unknown, k: string): number => {
      const p = field(o, k);
      return typeof p === 'number' && p >= 0 && p <= 65535 ? p : 0;
    };
    if (l4.TCP) {
      proto = 6;
      sport = port(l4.TCP, 'source_port');
      dport = port(l4.TCP, 'destination_port');
      flags = hubbleFlags(field(l4.TCP, 'flags'));
    } else if (l4.UDP) {
      proto = 17;
      sport = port(l4.UDP, 'source_port');
      dport = port(l4.UDP, 'destination_port');
    } else if (l4.SCTP) {
      proto = 132;
      sport = port(l4.SCTP, 'source_port');
      dport = port(l4.SCTP, 'destination_port');
    } else if (l4.ICMPv4 || l4.ICMPv6) {
      const icmp = (l4.ICMPv4 ?? l4.ICMPv6) as Record<string, unknown>;
      proto = l4.ICMPv4 ? 1 : 58;
      const type = typeof icmp.type === 'number' ? icmp.type & 255 : 0;
      const code = typeof icmp.code === 'number' ? icmp.code & 255 : 0;
      dport = type * 256 + code;
    } else return bad('flow has no layer 4');
    const verdict = String(flow.verdict ?? '');
    const action = ACCEPT.has(verdict) ? ('accept' as const) : REJECT.has(verdict) ? ('reject' as const) : undefined;
    const reply = field(flow, 'is_reply');
    const initiator = reply === true ? ('dst' as const) : reply === false ? ('src' as const) : undefined;
    this.out.push({
      start: time,
      end: time,
      src,
      dst,
      proto,
      srcPort: sport,
      dstPort: dport,
      packets: 1,
      bytes: 0,
      ...(action ? { action } : {}),
      ...(flags !== undefined ? { tcpFlags: flags } : {}),
      ...(initiator ? { initiator } : {}),
      format: 'hubble',
    });
  }
}
