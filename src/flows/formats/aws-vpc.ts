/**
 * AWS VPC Flow Logs, text: the default version 2 format (14 fields) and
 * custom formats, whose header line (as S3 delivery writes it) names the
 * fields. Fields are separated by spaces; `-` is "no value".
 *
 * The hot path reads bytes: fields are cut by hand, numbers and IPv4
 * addresses parsed in place, and rows written straight into the batch.
 */
import { ACTION, formatId, INITIATOR, V6, type FlowOut } from '../record.js';
import { excerpt, parseIPv4, parseAddrBytes, parseUint, text } from '../text.js';
import { LineDecoder, type DecoderOptions } from './types.js';

/** The fields of the default format, version 2, in order. */
export const VPC_DEFAULT_FIELDS = ['version', 'account-id', 'interface-id', 'srcaddr', 'dstaddr', 'srcport', 'dstport', 'protocol', 'packets', 'bytes', 'start', 'end', 'action', 'log-status'] as const;

/** Every field name AWS documents (versions 2 to 8), for telling a header line from data. */
export const VPC_FIELDS: ReadonlySet<string> = new Set([
  ...VPC_DEFAULT_FIELDS,
  'vpc-id', 'subnet-id', 'instance-id', 'tcp-flags', 'type', 'pkt-srcaddr', 'pkt-dstaddr', 'region', 'az-id', 'sublocation-type',
  'sublocation-id', 'pkt-src-aws-service', 'pkt-dst-aws-service', 'flow-direction', 'traffic-path', 'ecs-cluster-arn', 'ecs-cluster-name',
  'ecs-container-instance-arn', 'ecs-container-instance-id', 'ecs-container-id', 'ecs-second-container-id', 'ecs-service-name',
  'ecs-task-definition-arn', 'ecs-task-arn', 'ecs-task-id', 'reject-reason', 'resource-id', 'encryption-status',
]);

// Field roles.
const SKIP = 0;
const SRC = 1;
const DST = 2;
const SPORT = 3;
const DPORT = 4;
const PROTO = 5;
const PACKETS = 6;
const BYTES = 7;
const START = 8;
const END = 9;
const ACT = 10;
const STATUS = 11;
const FLAGS = 12;
const PKT_SRC = 13;
const PKT_DST = 14;

const ROLE: Record<string, number> = {
  srcaddr: SRC,
  dstaddr: DST,
  srcport: SPORT,
  dstport: DPORT,
  protocol: PROTO,
  packets: PACKETS,
  bytes: BYTES,
  start: START,
  end: END,
  action: ACT,
  'log-status': STATUS,
  'tcp-flags': FLAGS,
  'pkt-srcaddr': PKT_SRC,
  'pkt-dstaddr': PKT_DST,
};

const FORMAT = formatId('aws-vpc');
const MISSING = -2;
const INVALID = -3;
/** An address field that holds an IPv6 address (kept in its bigint variable). */
const IS_V6 = -4;

/** Whether a line (its first bytes) is a header: lowercase field names, at least srcaddr or dstaddr among them. */
export function isVpcHeader(line: string): boolean {
  const names = line.trim().split(/ +/);
  return names.length >= 2 && names.every((n) => /^[a-z][a-z0-9_-]*$/.test(n)) && names.some((n) => n === 'srcaddr' || n === 'dstaddr' || n === 'pkt-srcaddr');
}

/** Decodes AWS VPC Flow Logs text. */
export class VpcDecoder extends LineDecoder {
  readonly format = 'aws-vpc';
  private plan: Uint8Array = Uint8Array.from(VPC_DEFAULT_FIELDS.map((f) => ROLE[f] ?? SKIP));
  private names: readonly string[] = VPC_DEFAULT_FIELDS;
  private custom = false;

  constructor(out: FlowOut, options: DecoderOptions = {}) {
    super(out, options);
  }

  private header(line: string, lineNo: number): void {
    const names = line.trim().split(/ +/).map((n) => n.replace(/_/g, '-'));
    const roles = names.map((n) => ROLE[n] ?? SKIP);
    const unknown = names.filter((n) => !VPC_FIELDS.has(n));
    if (!roles.includes(SRC) && !roles.includes(PKT_SRC)) {
      this.out.bad.add({ reason: 'header without srcaddr and dstaddr', line: lineNo, detail: excerptOf(line) });
      return;
    }
    if (unknown.length > 0) this.out.bad.add({ reason: 'unknown field in header (ignored)', line: lineNo, detail: unknown.slice(0, 5).join(' ') });
    this.plan = Uint8Array.from(roles);
    this.names = names;
    this.custom = true;
  }

  protected lines(buf: Uint8Array, start: number, end: number, firstLine: number): number {
    const out = this.out;
    const plan = this.plan;
    const nf = plan.length;
    let line = firstLine;
    let p = start;
    while (p < end) {
      // Skip leading spaces; a blank line is nothing.
      while (p < end && buf[p] === 32) p++;
      let c = p < end ? buf[p] : 10;
      if (c === 10 || c === 13) {
        if (c === 13) p++;
        if (p < end && buf[p] === 10) p++;
        line++;
        continue;
      }
      const lineStart = p;
      if (c >= 97 && c <= 122) {
        // A header line (custom format), or junk.
        let e = buf.indexOf(10, p);
        if (e < 0 || e > end) e = end;
        const t = text(buf, lineStart, e).replace(/\r$/, '');
        if (isVpcHeader(t)) {
          this.header(t, line);
          return line - firstLine + 1 + (e < end ? this.lines(buf, e + 1, end, line + 1) : 0);
        }
        out.bad.add({ reason: 'not a VPC flow log record', line, detail: excerptOf(t) });
        p = e + 1;
        line++;
        continue;
      }
      let f = 0;
      let src = -1;
      let dst = -1;
      let psrc = -1;
      let pdst = -1;
      let src6 = 0n;
      let dst6 = 0n;
      let psrc6 = 0n;
      let pdst6 = 0n;
      let sport = 0;
      let dport = 0;
      let proto = -1;
      let packets = 0;
      let bytes = 0;
      let t0 = -1;
      let t1 = -1;
      let action = 0;
      let status = 0;
      let flags = -1;
      let badField = -1;
      let badS = 0;
      let badE = 0;
      let lineEnd = end;
      for (;;) {
        const fs = p;
        while (p < end && (c = buf[p]) !== 32 && c !== 10 && c !== 13) p++;
        const fe = p;
        if (f < nf) {
          let v = 0;
          switch (plan[f]) {
            case SKIP:
              break;
            case SRC:
            case DST:
            case PKT_SRC:
            case PKT_DST: {
              const r = plan[f];
              v = parseIPv4(buf, fs, fe);
              if (v < 0) {
                if (fe - fs === 1 && buf[fs] === 45) v = MISSING;
                else {
                  const a = parseAddrBytes(buf, fs, fe);
                  if (typeof a === 'number') v = a;
                  else if (a === null) v = INVALID;
                  else {
                    v = IS_V6;
                    if (r === SRC) src6 = a;
                    else if (r === DST) dst6 = a;
                    else if (r === PKT_SRC) psrc6 = a;
                    else pdst6 = a;
                  }
                }
              }
              if (r === SRC) src = v;
              else if (r === DST) dst = v;
              else if (r === PKT_SRC) psrc = v;
              else pdst = v;
              if (v === INVALID && badField < 0) {
                badField = f;
                badS = fs;
                badE = fe;
              }
              break;
            }
            case SPORT:
            case DPORT: {
              v = parseUint(buf, fs, fe);
              if (v < 0 || v > 65535) {
                if (fe - fs === 1 && buf[fs] === 45) v = 0;
                else if (badField < 0) {
                  badField = f;
                  badS = fs;
                  badE = fe;
                }
              }
              if (plan[f] === SPORT) sport = v;
              else dport = v;
              break;
            }
            case PROTO:
              proto = parseUint(buf, fs, fe);
              if ((proto < 0 || proto > 255) && !(fe - fs === 1 && buf[fs] === 45) && badField < 0) {
                badField = f;
                badS = fs;
                badE = fe;
              }
              break;
            case PACKETS:
            case BYTES:
            case START:
            case END:
              v = parseUint(buf, fs, fe);
              if (v < 0) {
                if (fe - fs === 1 && buf[fs] === 45) v = -1;
                else if (badField < 0) {
                  badField = f;
                  badS = fs;
                  badE = fe;
                }
              }
              if (plan[f] === PACKETS) packets = v;
              else if (plan[f] === BYTES) bytes = v;
              else if (plan[f] === START) t0 = v;
              else t1 = v;
              break;
            case ACT: {
              const a = buf[fs];
              if (a === 65) action = ACTION.accept;
              else if (a === 82) action = ACTION.reject;
              else if (a === 45 && fe - fs === 1) action = ACTION.none;
              else if (badField < 0) {
                badField = f;
                badS = fs;
                badE = fe;
              }
              break;
            }
            case STATUS: {
              const a = buf[fs];
              status = a === 79 ? 0 : a === 78 || a === 83 ? 1 : a === 45 ? 0 : 2;
              break;
            }
            case FLAGS:
              flags = parseUint(buf, fs, fe);
              if (flags > 255) flags = -1;
              break;
          }
        }
        f++;
        // Separators: one or more spaces; the line ends at \n (with an optional \r).
        while (p < end && buf[p] === 32) p++;
        if (p >= end) break;
        c = buf[p];
        if (c === 13) {
          lineEnd = p;
          p++;
          if (p < end && buf[p] === 10) p++;
          break;
        }
        if (c === 10) {
          lineEnd = p;
          p++;
          break;
        }
      }
      if (status === 1) {
        out.bad.add({ reason: 'no data (log-status NODATA or SKIPDATA)', line });
      } else if (f !== nf) {
        out.bad.add({
          reason: this.custom ? `wrong field count (the header has ${nf})` : 'wrong field count (the default format has 14; a custom format needs its header line)',
          line,
          detail: `${f} fields: ${excerpt(buf, lineStart, lineEnd)}`,
        });
      } else if (badField >= 0) {
        out.bad.add({ reason: `invalid ${this.names[badField]}`, line, detail: excerpt(buf, badS, badE) });
      } else {
        // The packet's own addresses, where logged, beat the interface's (NAT, load balancers).
        if (psrc >= 0 || psrc === IS_V6) {
          src = psrc;
          src6 = psrc6;
        }
        if (pdst >= 0 || pdst === IS_V6) {
          dst = pdst;
          dst6 = pdst6;
        }
        if ((src < 0 && src !== IS_V6) || (dst < 0 && dst !== IS_V6)) {
          out.bad.add({ reason: 'missing address', line, detail: excerpt(buf, lineStart, lineEnd) });
        } else if (t0 < 0 || proto < 0) {
          out.bad.add({ reason: t0 < 0 ? 'missing start time' : 'missing protocol', line, detail: excerpt(buf, lineStart, lineEnd) });
        } else {
          const b = out.batch;
          const i = out.row();
          let fam = 0;
          if (src === IS_V6) {
            b.setSrc(i, src6);
            fam |= V6.src;
          } else b.src4[i] = src;
          if (dst === IS_V6) {
            b.setDst(i, dst6);
            fam |= V6.dst;
          } else b.dst4[i] = dst;
          b.v6[i] = fam;
          b.start[i] = t0 * 1000;
          b.end[i] = (t1 < 0 ? t0 : t1) * 1000;
          b.proto[i] = proto;
          b.srcPort[i] = sport;
          b.dstPort[i] = dport;
          b.packets[i] = packets < 0 ? 0 : packets;
          b.bytes[i] = bytes < 0 ? 0 : bytes;
          b.action[i] = action;
          b.tcpFlags[i] = flags;
          b.initiator[i] = INITIATOR.unknown;
          b.format[i] = FORMAT;
        }
      }
      line++;
    }
    return line - firstLine;
  }
}

function excerptOf(t: string): string {
  return t.length > 60 ? t.slice(0, 57) + '...' : t;
}
