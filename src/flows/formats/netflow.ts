/**
 * NetFlow version 5, version 9 (RFC 3954) and IPFIX (RFC 7011) datagrams.
 *
 * Templates are kept per exporter and observation domain (v9 source id),
 * compiled once to flat arrays (offset, length, role of each field), so a data
 * record is read with a few byte loads per field and written straight into
 * the batch. Options templates are learned only to skip their data records.
 * IPv4 and IPv6 fields, reduced-size counters and IPFIX variable-length
 * fields are read; times come from absolute fields (IPFIX 150–157), uptime
 * fields (21/22, against the header or systemInitTimeMilliseconds) or
 * deltas (158/159), and otherwise the export time.
 */
import { ACTION, formatId, INITIATOR, V6, type FlowOut } from '../record.js';

// Field roles (information elements we read).
const R_SKIP = 0;
const R_BYTES = 1;
const R_PKTS = 2;
const R_PROTO = 3;
const R_FLAGS = 4;
const R_SPORT = 5;
const R_SRC4 = 6;
const R_DPORT = 7;
const R_DST4 = 8;
const R_LAST_UP = 9;
const R_FIRST_UP = 10;
const R_OUT_BYTES = 11;
const R_OUT_PKTS = 12;
const R_SRC6 = 13;
const R_DST6 = 14;
const R_ICMP = 15;
const R_ICMP_TYPE = 16;
const R_ICMP_CODE = 17;
const R_START_S = 18;
const R_END_S = 19;
const R_START_MS = 20;
const R_END_MS = 21;
const R_START_NTP = 22;
const R_END_NTP = 23;
const R_START_DUS = 24;
const R_END_DUS = 25;
const R_SYSINIT = 26;
const R_BIFLOW = 27;
const R_TOTAL_BYTES = 28;
const R_TOTAL_PKTS = 29;
const R_FW_EVENT = 30;

/** Information element id to role (IANA IPFIX registry; v9 uses the same numbers below 128). */
const ROLE_OF: Record<number, number> = {
  1: R_BYTES,
  2: R_PKTS,
  4: R_PROTO,
  6: R_FLAGS,
  7: R_SPORT,
  8: R_SRC4,
  11: R_DPORT,
  12: R_DST4,
  21: R_LAST_UP,
  22: R_FIRST_UP,
  23: R_OUT_BYTES,
  24: R_OUT_PKTS,
  27: R_SRC6,
  28: R_DST6,
  32: R_ICMP,
  139: R_ICMP,
  176: R_ICMP_TYPE,
  177: R_ICMP_CODE,
  178: R_ICMP_TYPE,
  179: R_ICMP_CODE,
  150: R_START_S,
  151: R_END_S,
  152: R_START_MS,
  153: R_END_MS,
  154: R_START_NTP,
  155: R_END_NTP,
  156: R_START_NTP,
  157: R_END_NTP,
  158: R_START_DUS,
  159: R_END_DUS,
  160: R_SYSINIT,
  239: R_BIFLOW,
  85: R_TOTAL_BYTES,
  86: R_TOTAL_PKTS,
  233: R_FW_EVENT,
};

/** A compiled template. */
interface Template {
  /** Per field: role, length (65535: variable) and fixed offset (-1 after a variable-length field). */
  readonly roles: Uint8Array;
  readonly lens: Uint16Array;
  readonly offs: Int32Array;
  /** The fixed record length, or -1 when a field has variable length. */
  readonly size: number;
  /** The smallest record (variable fields empty). */
  readonly minSize: number;
  /** Options templates only describe records to skip. */
  readonly options: boolean;
}

/** Counts beyond bad records: what was read and what was skipped on purpose. */
export interface NetflowStats {
  datagrams: number;
  templates: number;
  optionsRecords: number;
}

const F5 = formatId('netflow5');
const F9 = formatId('netflow9');
const F10 = formatId('ipfix');
const NTP_EPOCH = 2208988800;

function u16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/** A big-endian unsigned integer of 1 to 8 bytes (exact to 2^53). */
function uint(b: Uint8Array, o: number, len: number): number {
  switch (len) {
    case 1:
      return b[o];
    case 2:
      return u16(b, o);
    case 4:
      return u32(b, o);
    case 8:
      return u32(b, o) * 4294967296 + u32(b, o + 4);
    default: {
      let v = 0;
      for (let i = 0; i < len && i < 8; i++) v = v * 256 + b[o + i];
      return v;
    }
  }
}

/** Decodes NetFlow v5, v9 and IPFIX datagrams, keeping templates per exporter and domain. */
export class NetflowDecoder {
  private readonly templates = new Map<string, Template>();
  /** Read and skip counts. */
  readonly stats: NetflowStats = { datagrams: 0, templates: 0, optionsRecords: 0 };
  /** The receive time of the datagram being decoded (used when its exporter's clock says 1970). */
  private received = 0;

  constructor(private readonly out: FlowOut) {}

  /**
   * Decodes one datagram from `exporter` (its address, or any name that keeps
   * exporters apart). `index` numbers it for bad-record reports; `received`
   * (epoch ms) is used when the datagram's own clock is unusable.
   */
  datagram(buf: Uint8Array, exporter: string, index: number, received = 0): void {
    this.stats.datagrams++;
    this.received = received;
    if (buf.length < 4) {
      this.bad('truncated datagram', index, `${buf.length} bytes`);
      return;
    }
    const version = u16(buf, 0);
    if (version === 5) this.v5(buf, index);
    else if (version === 9) this.v9(buf, exporter, index);
    else if (version === 10) this.ipfix(buf, exporter, index);
    else this.bad('not a NetFlow v5, v9 or IPFIX datagram', index, `version ${version}`);
  }

  private bad(reason: string, line: number, detail?: string): void {
    this.out.bad.add({ reason, line, detail });
  }

  // ------------------------------------------------------------ v5

  private v5(b: Uint8Array, index: number): void {
    if (b.length < 24) return this.bad('truncated datagram', index, `NetFlow v5 header needs 24 bytes, got ${b.length}`);
    const count = u16(b, 2);
    const uptime = u32(b, 4);
    const secs = u32(b, 8);
    const nsecs = u32(b, 12);
    const base = secs * 1000 + Math.floor(nsecs / 1e6) - uptime;
    let n = count;
    if (count > 30) this.bad('NetFlow v5 count above 30', index, `count ${count}`);
    if (24 + count * 48 > b.length) {
      n = Math.floor((b.length - 24) / 48);
      this.bad('truncated datagram', index, `NetFlow v5 count ${count} needs ${24 + count * 48} bytes, got ${b.length}`);
    }
    const out = this.out;
    const batch = out.batch;
    for (let k = 0; k < n; k++) {
      const o = 24 + k * 48;
      const i = out.row();
      batch.v6[i] = 0;
      batch.src4[i] = u32(b, o);
      batch.dst4[i] = u32(b, o + 4);
      batch.packets[i] = u32(b, o + 16);
      batch.bytes[i] = u32(b, o + 20);
      batch.start[i] = base + u32(b, o + 24);
      batch.end[i] = base + u32(b, o + 28);
      const proto = b[o + 38];
      batch.proto[i] = proto;
      if (proto === 1) {
        // v5 carries ICMP type and code in the destination port.
        batch.srcPort[i] = 0;
        batch.dstPort[i] = u16(b, o + 34);
      } else {
        batch.srcPort[i] = u16(b, o + 32);
        batch.dstPort[i] = u16(b, o + 34);
      }
      batch.tcpFlags[i] = proto === 6 ? b[o + 37] : -1;
      batch.action[i] = ACTION.none;
      batch.initiator[i] = INITIATOR.unknown;
      batch.format[i] = F5;
    }
  }

  // ------------------------------------------------------------ templates

  private compile(ids: number[], lens: number[], options: boolean): Template {
    const n = ids.length;
    const roles = new Uint8Array(n);
    const l = new Uint16Array(n);
    const offs = new Int32Array(n);
    let off = 0;
    let min = 0;
    let variable = false;
    for (let f = 0; f < n; f++) {
      roles[f] = options ? R_SKIP : (ROLE_OF[ids[f]] ?? R_SKIP);
      l[f] = lens[f];
      offs[f] = variable ? -1 : off;
      if (lens[f] === 65535) {
        variable = true;
        min += 1;
      } else {
        off += lens[f];
        min += lens[f];
      }
      // Addresses of the wrong length are not read as addresses.
      const r = roles[f];
      if ((r === R_SRC4 || r === R_DST4) && lens[f] !== 4) roles[f] = R_SKIP;
      if ((r === R_SRC6 || r === R_DST6) && lens[f] !== 16) roles[f] = R_SKIP;
      if (lens[f] === 65535 && r !== R_SKIP) roles[f] = R_SKIP;
    }
    return { roles, lens: l, offs, size: variable ? -1 : off, minSize: min, options };
  }

  private v9(b: Uint8Array, exporter: string, index: number): void {
    if (b.length < 20) return this.bad('truncated datagram', index, `NetFlow v9 header needs 20 bytes, got ${b.length}`);
    const uptime = u32(b, 4);
    const secs = u32(b, 8);
    const sourceId = u32(b, 16);
    const scope = `${exporter}/9/${sourceId}`;
    const exportMs = secs > 0 ? secs * 1000 : this.received;
    const bootMs = exportMs - uptime;
    let o = 20;
    while (o + 4 <= b.length) {
      const id = u16(b, o);
      const len = u16(b, o + 2);
      if (len < 4 || o + len > b.length) return this.bad('truncated datagram', index, `flowset ${id} of length ${len} at byte ${o} runs past ${b.length}`);
      const end = o + len;
      if (id === 0) {
        let p = o + 4;
        while (p + 4 <= end) {
          const tid = u16(b, p);
          const count = u16(b, p + 2);
          p += 4;
          if (p + count * 4 > end) {
            this.bad('truncated template', index, `template ${tid} with ${count} fields`);
            break;
          }
          const ids: number[] = [];
          const lens: number[] = [];
          for (let f = 0; f < count; f++) {
            ids.push(u16(b, p));
            lens.push(u16(b, p + 2));
            p += 4;
          }
          if (tid < 256) this.bad('invalid template id', index, `template ${tid}`);
          else if (count === 0) this.templates.delete(`${scope}/${tid}`);
          else {
            this.templates.set(`${scope}/${tid}`, this.compile(ids, lens, false));
            this.stats.templates++;
          }
        }
      } else if (id === 1) {
        let p = o + 4;
        while (p + 6 <= end) {
          const tid = u16(b, p);
          const scopeLen = u16(b, p + 2);
          const optLen = u16(b, p + 4);
          p += 6;
          if (scopeLen % 4 !== 0 || optLen % 4 !== 0 || p + scopeLen + optLen > end) {
            this.bad('truncated options template', index, `template ${tid}`);
            break;
          }
          const lens: number[] = [];
          const ids: number[] = [];
          for (let q = 0; q < scopeLen + optLen; q += 4) {
            ids.push(u16(b, p + q));
            lens.push(u16(b, p + q + 2));
          }
          p += scopeLen + optLen;
          if (ids.length > 0) {
            this.templates.set(`${scope}/${tid}`, this.compile(ids, lens, true));
            this.stats.templates++;
          }
          // The rest of the flowset is padding.
          if (end - p < 6) break;
        }
      } else if (id >= 256) {
        this.data(b, o + 4, end, scope, id, index, F9, bootMs, exportMs);
      } else {
        this.bad('invalid flowset id', index, `flowset ${id}`);
      }
      o = end;
    }
  }

  private ipfix(b: Uint8Array, exporter: string, index: number): void {
    if (b.length < 16) return this.bad('truncated datagram', index, `IPFIX header needs 16 bytes, got ${b.length}`);
    const length = u16(b, 2);
    if (length < 16 || length > b.length) return this.bad('truncated datagram', index, `IPFIX message length ${length}, datagram ${b.length} bytes`);
    const exportMs = u32(b, 4) > 0 ? u32(b, 4) * 1000 : this.received;
    const domain = u32(b, 12);
    const scope = `${exporter}/10/${domain}`;
    let o = 16;
    while (o + 4 <= length) {
      const id = u16(b, o);
      const len = u16(b, o + 2);
      if (len < 4 || o + len > length) return this.bad('truncated datagram', index, `set ${id} of length ${len} at byte ${o} runs past ${length}`);
      const end = o + len;
      if (id === 2 || id === 3) {
        const options = id === 3;
        let p = o + 4;
        while (p + 4 <= end) {
          const tid = u16(b, p);
          const count = u16(b, p + 2);
          p += 4;
          if (count === 0) {
            // A withdrawal: one template, or all of them (id 2 or 3).
            if (tid === 2 || tid === 3) for (const k of [...this.templates.keys()]) if (k.startsWith(scope + '/')) this.templates.delete(k);
            this.templates.delete(`${scope}/${tid}`);
            continue;
          }
          if (options) {
            if (p + 2 > end) break;
            p += 2; // scope field count
          }
          const ids: number[] = [];
          const lens: number[] = [];
          let ok = true;
          for (let f = 0; f < count; f++) {
            if (p + 4 > end) {
              ok = false;
              break;
            }
            const ie = u16(b, p);
            ids.push(ie & 0x8000 ? 0 : ie); // enterprise-specific fields are skipped
            lens.push(u16(b, p + 2));
            p += ie & 0x8000 ? 8 : 4;
            if (p > end) ok = false;
          }
          if (!ok) {
            this.bad('truncated template', index, `template ${tid} with ${count} fields`);
            break;
          }
          if (tid < 256) this.bad('invalid template id', index, `template ${tid}`);
          else {
            this.templates.set(`${scope}/${tid}`, this.compile(ids, lens, options));
            this.stats.templates++;
          }
          if (end - p < 4) break; // padding
        }
      } else if (id >= 256) {
        this.data(b, o + 4, end, scope, id, index, F10, -1, exportMs);
      } else {
        this.bad('invalid set id', index, `set ${id}`);
      }
      o = end;
    }
  }

  // ------------------------------------------------------------ data records

  private data(b: Uint8Array, start: number, end: number, scope: string, tid: number, index: number, format: number, bootMs: number, exportMs: number): void {
    const t = this.templates.get(`${scope}/${tid}`);
    if (!t) {
      this.bad('data before its template', index, `template ${tid} of ${scope.replace(/\/(9|10)\//, ' domain ')}`);
      return;
    }
    if (t.minSize === 0) return;
    if (t.options) {
      if (t.size > 0) this.stats.optionsRecords += Math.floor((end - start) / t.size);
      else this.stats.optionsRecords++;
      return;
    }
    const out = this.out;
    const batch = out.batch;
    const { roles, lens, offs } = t;
    const nf = roles.length;
    let p = start;
    while (p + t.minSize <= end) {
      let bytes = -1;
      let pkts = -1;
      let outBytes = -1;
      let outPkts = -1;
      let totBytes = -1;
      let totPkts = -1;
      let proto = 0;
      let flags = -1;
      let sport = 0;
      let dport = 0;
      let icmp = -1;
      let icmpType = -1;
      let icmpCode = 0;
      let firstUp = -1;
      let lastUp = -1;
      let startMs = -1;
      let endMs = -1;
      let startDus = -1;
      let endDus = -1;
      let sysInit = -1;
      let biflow = 0;
      let fam = 0;
      let src4 = 0;
      let dst4 = 0;
      let src6 = -1;
      let dst6 = -1;
      let q = p;
      let ok = true;
      for (let f = 0; f < nf; f++) {
        let len = lens[f];
        let o: number;
        if (t.size >= 0) o = p + offs[f];
        else {
          o = q;
          if (len === 65535) {
            if (o >= end) {
              ok = false;
              break;
            }
            len = b[o];
            o++;
            if (len === 255) {
              if (o + 2 > end) {
                ok = false;
                break;
              }
              len = u16(b, o);
              o += 2;
            }
          }
          q = o + len;
          if (q > end) {
            ok = false;
            break;
          }
        }
        switch (roles[f]) {
          case R_SKIP:
            break;
          case R_BYTES:
            bytes = uint(b, o, len);
            break;
          case R_PKTS:
            pkts = uint(b, o, len);
            break;
          case R_OUT_BYTES:
            outBytes = uint(b, o, len);
            break;
          case R_OUT_PKTS:
            outPkts = uint(b, o, len);
            break;
          case R_TOTAL_BYTES:
            totBytes = uint(b, o, len);
            break;
          case R_TOTAL_PKTS:
            totPkts = uint(b, o, len);
            break;
          case R_PROTO:
            proto = b[o + len - 1];
            break;
          case R_FLAGS:
            flags = b[o + len - 1];
            break;
          case R_SPORT:
            sport = uint(b, o, len) & 0xffff;
            break;
          case R_DPORT:
            dport = uint(b, o, len) & 0xffff;
            break;
          case R_SRC4:
            src4 = u32(b, o);
            break;
          case R_DST4:
            dst4 = u32(b, o);
            break;
          case R_SRC6:
            src6 = o;
            fam |= V6.src;
            break;
          case R_DST6:
            dst6 = o;
            fam |= V6.dst;
            break;
          case R_ICMP:
            icmp = uint(b, o, len) & 0xffff;
            break;
          case R_ICMP_TYPE:
            icmpType = b[o];
            break;
          case R_ICMP_CODE:
            icmpCode = b[o];
            break;
          case R_FIRST_UP:
            firstUp = uint(b, o, len);
            break;
          case R_LAST_UP:
            lastUp = uint(b, o, len);
            break;
          case R_START_S:
            startMs = uint(b, o, len) * 1000;
            break;
          case R_END_S:
            endMs = uint(b, o, len) * 1000;
            break;
          case R_START_MS:
            startMs = uint(b, o, len);
            break;
          case R_END_MS:
            endMs = uint(b, o, len);
            break;
          case R_START_NTP:
            if (len === 8) startMs = (u32(b, o) - NTP_EPOCH) * 1000 + Math.floor((u32(b, o + 4) / 4294967296) * 1000);
            break;
          case R_END_NTP:
            if (len === 8) endMs = (u32(b, o) - NTP_EPOCH) * 1000 + Math.floor((u32(b, o + 4) / 4294967296) * 1000);
            break;
          case R_START_DUS:
            startDus = uint(b, o, len);
            break;
          case R_END_DUS:
            endDus = uint(b, o, len);
            break;
          case R_SYSINIT:
            sysInit = uint(b, o, len);
            break;
          case R_BIFLOW:
            biflow = b[o + len - 1];
            break;
          case R_FW_EVENT:
            break;
        }
      }
      if (!ok) {
        this.bad('truncated data record', index, `template ${tid}`);
        return;
      }
      p = t.size >= 0 ? p + t.size : q;
      // Times: absolute fields, else uptime against the boot time, else deltas, else the export time.
      const boot = sysInit >= 0 ? sysInit : bootMs;
      if (startMs < 0) startMs = firstUp >= 0 && boot >= 0 ? boot + firstUp : startDus >= 0 ? exportMs - Math.floor(startDus / 1000) : -1;
      if (endMs < 0) endMs = lastUp >= 0 && boot >= 0 ? boot + lastUp : endDus >= 0 ? exportMs - Math.floor(endDus / 1000) : -1;
      if (startMs < 0) startMs = endMs >= 0 ? endMs : exportMs;
      if (endMs < 0) endMs = startMs;
      const i = out.row();
      batch.v6[i] = fam;
      if (fam & V6.src) {
        const w = i * 4;
        batch.src6[w] = u32(b, src6);
        batch.src6[w + 1] = u32(b, src6 + 4);
        batch.src6[w + 2] = u32(b, src6 + 8);
        batch.src6[w + 3] = u32(b, src6 + 12);
      } else batch.src4[i] = src4;
      if (fam & V6.dst) {
        const w = i * 4;
        batch.dst6[w] = u32(b, dst6);
        batch.dst6[w + 1] = u32(b, dst6 + 4);
        batch.dst6[w + 2] = u32(b, dst6 + 8);
        batch.dst6[w + 3] = u32(b, dst6 + 12);
      } else batch.dst4[i] = dst4;
      batch.start[i] = startMs;
      batch.end[i] = endMs;
      batch.proto[i] = proto;
      if (proto === 1 || proto === 58) {
        batch.srcPort[i] = 0;
        batch.dstPort[i] = icmp >= 0 ? icmp : icmpType >= 0 ? icmpType * 256 + icmpCode : dport;
      } else {
        batch.srcPort[i] = sport;
        batch.dstPort[i] = dport;
      }
      batch.packets[i] = pkts >= 0 ? pkts : outPkts >= 0 ? outPkts : totPkts >= 0 ? totPkts : 0;
      batch.bytes[i] = bytes >= 0 ? bytes : outBytes >= 0 ? outBytes : totBytes >= 0 ? totBytes : 0;
      batch.tcpFlags[i] = proto === 6 ? flags : -1;
      batch.action[i] = ACTION.none;
      batch.initiator[i] = biflow === 1 ? INITIATOR.src : biflow === 2 ? INITIATOR.dst : INITIATOR.unknown;
      batch.format[i] = format;
    }
  }
}
