/**
 * Zeek's conn.log: the TSV form (a `#separator` line, `#fields` naming the
 * columns, `-` unset and `(empty)` empty values) and the JSON form (one object
 * a line, keys such as `id.orig_h`). The originator is the connection's
 * initiator, so Zeek tells the client side outright.
 */
import { parseAddr, type Addr } from '../../netset/ip.js';
import type { FlowOut, FlowRecord } from '../record.js';
import { eachLine } from '../lines.js';
import { excerptText, parseDecimal, parseUint, text, timeOf } from '../text.js';
import { JsonDecoder, LineDecoder, type DecoderOptions } from './types.js';

/** The conn.log columns Zeek writes by default. */
export const ZEEK_CONN_FIELDS = [
  'ts', 'uid', 'id.orig_h', 'id.orig_p', 'id.resp_h', 'id.resp_p', 'proto', 'service', 'duration', 'orig_bytes', 'resp_bytes', 'conn_state',
  'local_orig', 'local_resp', 'missed_bytes', 'history', 'orig_pkts', 'orig_ip_bytes', 'resp_pkts', 'resp_ip_bytes', 'tunnel_parents',
] as const;

/** TCP flags from a Zeek history string (upper case: originator, lower: responder). */
export function flagsOfHistory(h: string): number {
  let f = 0;
  for (let i = 0; i < h.length; i++) {
    switch (h.charCodeAt(i) | 32) {
      case 115: // s: SYN
        f |= 2;
        break;
      case 104: // h: SYN-ACK
        f |= 18;
        break;
      case 97: // a: ACK
        f |= 16;
        break;
      case 102: // f: FIN
        f |= 1;
        break;
      case 114: // r: RST
        f |= 4;
        break;
      case 100: // d: data (PSH as the nearest flag)
        f |= 8;
        break;
    }
  }
  return f;
}

/** The values of one conn.log entry, whichever form it came in. */
interface ZeekConn {
  ts: number;
  orig: Addr | null;
  resp: Addr | null;
  origP: number;
  respP: number;
  proto: string;
  duration: number;
  origBytes: number;
  respBytes: number;
  origIpBytes: number;
  respIpBytes: number;
  origPkts: number;
  respPkts: number;
  history: string;
}

const PROTOS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1 };

/** Checks one entry and writes it out; returns a problem, or undefined. */
function emit(z: ZeekConn, out: FlowOut): string | undefined {
  if (!Number.isFinite(z.ts) || z.ts < 0) return 'invalid ts';
  if (z.orig === null) return 'invalid id.orig_h';
  if (z.resp === null) return 'invalid id.resp_h';
  let proto = PROTOS[z.proto];
  if (proto === undefined) return z.proto === 'unknown_transport' ? 'unknown transport protocol' : 'invalid proto';
  if (proto === 1 && (typeof z.orig === 'bigint' || typeof z.resp === 'bigint')) proto = 58;
  if (!(z.origP >= 0 && z.origP <= 65535)) return 'invalid id.orig_p';
  if (!(z.respP >= 0 && z.respP <= 65535)) return 'invalid id.resp_p';
  const icmp = proto === 1 || proto === 58;
  const start = Math.round(z.ts * 1000);
  const dur = z.duration >= 0 ? z.duration : 0;
  const ipBytes = z.origIpBytes >= 0 && z.respIpBytes >= 0;
  const r: FlowRecord = {
    start,
    end: start + Math.round(dur * 1000),
    src: z.orig,
    dst: z.resp,
    proto,
    // Zeek puts an ICMP message's type in orig_p and its code in resp_p.
    srcPort: icmp ? 0 : z.origP,
    dstPort: icmp ? (z.origP & 255) * 256 + (z.respP & 255) : z.respP,
    packets: Math.max(0, z.origPkts) + Math.max(0, z.respPkts),
    bytes: ipBytes ? z.origIpBytes + z.respIpBytes : Math.max(0, z.origBytes) + Math.max(0, z.respBytes),
    ...(proto === 6 && z.history ? { tcpFlags: flagsOfHistory(z.history) } : {}),
    initiator: 'src',
    format: 'zeek',
  };
  out.push(r);
  return undefined;
}

/** Decodes Zeek conn.log in its TSV form. */
export class ZeekTsvDecoder extends LineDecoder {
  readonly format = 'zeek';
  private sep = 9;
  private unset = '-';
  private empty = '(empty)';
  private fields: string[] = [...ZEEK_CONN_FIELDS];
  private index = new Map<string, number>(ZEEK_CONN_FIELDS.map((f, i) => [f, i]));
  private path = 'conn';

  constructor(out: FlowOut, options: DecoderOptions = {}) {
    super(out, options);
  }

  protected lines(buf: Uint8Array, start: number, end: number, firstLine: number): number {
    return eachLine(buf, start, end, firstLine, (s, e, line) => {
      if (s === e) return;
      if (buf[s] === 35) {
        this.directive(text(buf, s, e), line);
        return;
      }
      if (this.path !== 'conn') return;
      this.entry(buf, s, e, line);
    });
  }

  private directive(t: string, line: number): void {
    const sp = t.search(/[ \t]/);
    const key = sp < 0 ? t : t.slice(0, sp);
    const rest = sp < 0 ? '' : t.slice(sp + 1);
    const sepChar = String.fromCharCode(this.sep);
    switch (key) {
      case '#separator': {
        const m = /^\\x([0-9a-fA-F]{2})$/.exec(rest.trim());
        const v = m ? parseInt(m[1], 16) : rest.length === 1 ? rest.charCodeAt(0) : -1;
        if (v < 0) this.out.bad.add({ reason: 'invalid #separator', line, detail: excerptText(rest) });
        else this.sep = v;
        break;
      }
      case '#unset_field':
        this.unset = rest;
        break;
      case '#empty_field':
        this.empty = rest;
        break;
      case '#path':
        this.path = rest.split(sepChar)[0].trim();
        if (this.path !== 'conn') this.out.bad.add({ reason: 'not a conn log (skipped)', line, detail: `#path ${excerptText(this.path)}` });
        break;
      case '#fields': {
        const names = rest.split(sepChar);
        const need = ['ts', 'id.orig_h', 'id.orig_p', 'id.resp_h', 'id.resp_p', 'proto'];
        const missing = need.filter((n) => !names.includes(n));
        if (missing.length > 0) {
          this.out.bad.add({ reason: 'conn log header lacks fields', line, detail: missing.join(', ') });
          return;
        }
        this.fields = names;
        this.index = new Map(names.map((f, i) => [f, i]));
        break;
      }
      default:
        break; // #set_separator, #open, #close, #types and comments
    }
  }

  private entry(buf: Uint8Array, s: number, e: number, line: number): void {
    // Cut the fields by the separator (bytes; values are short).
    const starts: number[] = [];
    const ends: number[] = [];
    let fs = s;
    for (let i = s; i <= e; i++) {
      if (i === e || buf[i] === this.sep) {
        starts.push(fs);
        ends.push(i);
        fs = i + 1;
      }
    }
    if (starts.length !== this.fields.length) {
      this.out.bad.add({ reason: `wrong field count (the header has ${this.fields.length})`, line, detail: `${starts.length} fields: ${excerptText(text(buf, s, e))}` });
      return;
    }
    const idx = this.index;
    const str = (name: string): string => {
      const k = idx.get(name);
      if (k === undefined) return '';
      const v = text(buf, starts[k], ends[k]);
      return v === this.unset || v === this.empty ? '' : v;
    };
    const num = (name: string): number => {
      const k = idx.get(name);
      if (k === undefined) return -1;
      const v = parseDecimal(buf, starts[k], ends[k]);
      return v;
    };
    const int = (name: string): number => {
      const k = idx.get(name);
      if (k === undefined) return -1;
      return parseUint(buf, starts[k], ends[k]);
    };
    const z: ZeekConn = {
      ts: num('ts'),
      orig: parseAddr(str('id.orig_h')),
      resp: parseAddr(str('id.resp_h')),
      origP: int('id.orig_p'),
      respP: int('id.resp_p'),
      proto: str('proto'),
      duration: num('duration'),
      origBytes: int('orig_bytes'),
      respBytes: int('resp_bytes'),
      origIpBytes: int('orig_ip_bytes'),
      respIpBytes: int('resp_ip_bytes'),
      origPkts: int('orig_pkts'),
      respPkts: int('resp_pkts'),
      history: str('history'),
    };
    const problem = emit(z, this.out);
    if (problem) {
      const field = problem.startsWith('invalid ') ? problem.slice(8) : undefined;
      this.out.bad.add({ reason: problem, line, detail: field ? excerptText(str(field) || text(buf, starts[idx.get(field) ?? 0], ends[idx.get(field) ?? 0])) : undefined });
    }
  }
}

/** Decodes Zeek conn.log in its JSON form (`LogAscii::use_json=T`). */
export class ZeekJsonDecoder extends JsonDecoder {
  readonly format = 'zeek';

  constructor(out: FlowOut, options: DecoderOptions = {}) {
    super(out, options);
  }

  protected record(v: Record<string, unknown>, line: number): void {
    const n = (k: string): number => {
      const x = v[k];
      return typeof x === 'number' && x >= 0 ? x : typeof x === 'string' && /^[0-9]+$/.test(x) ? Number(x) : -1;
    };
    const addr = (k: string): Addr | null => (typeof v[k] === 'string' ? parseAddr(v[k] as string) : null);
    if (!('id.orig_h' in v) && !('id.resp_h' in v)) {
      this.out.bad.add({ reason: 'not a conn log entry', line });
      return;
    }
    const ts = typeof v.ts === 'number' ? v.ts : typeof v.ts === 'string' ? timeOf(v.ts) / 1000 : NaN;
    const z: ZeekConn = {
      ts,
      orig: addr('id.orig_h'),
      resp: addr('id.resp_h'),
      origP: n('id.orig_p'),
      respP: n('id.resp_p'),
      proto: typeof v.proto === 'string' ? v.proto : '',
      duration: n('duration'),
      origBytes: n('orig_bytes'),
      respBytes: n('resp_bytes'),
      origIpBytes: n('orig_ip_bytes'),
      respIpBytes: n('resp_ip_bytes'),
      origPkts: n('orig_pkts'),
      respPkts: n('resp_pkts'),
      history: typeof v.history === 'string' ? v.history : '',
    };
    const problem = emit(z, this.out);
    if (problem) {
      const field = problem.startsWith('invalid ') ? problem.slice(8) : undefined;
      this.out.bad.add({ reason: problem, line, detail: field ? excerptText(JSON.stringify(v[field] ?? null)) : undefined });
    }
  }
}
