/**
 * Writing NetFlow v5, v9 and IPFIX datagrams and pcap captures of them: for
 * the sample-data generator, the tests and the benchmark. The output is what
 * a router would send: templates first (and again every few datagrams),
 * then data flowsets, records of one address family per template.
 */
import type { FlowRecord } from '../record.js';

class Writer {
  buf: Uint8Array;
  o = 0;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }
  u8(v: number): void {
    this.buf[this.o++] = v & 255;
  }
  u16(v: number): void {
    this.buf[this.o++] = (v >>> 8) & 255;
    this.buf[this.o++] = v & 255;
  }
  u32(v: number): void {
    this.u16(Math.floor(v / 65536) & 0xffff);
    this.u16(v & 0xffff);
  }
  u64(v: number): void {
    this.u32(Math.floor(v / 4294967296));
    this.u32(v % 4294967296);
  }
  addr(a: number | bigint): void {
    if (typeof a === 'number') this.u32(a);
    else for (let k = 15; k >= 0; k--) this.u8(Number((a >> BigInt(k * 8)) & 255n));
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.o);
  }
}

/** Options of the datagram encoders. */
export interface EncodeOptions {
  /** v9 source id / IPFIX observation domain (default 0). */
  readonly domain?: number;
  /** The exporter's boot time, epoch ms (v5/v9 uptime fields count from it; default: an hour before the first record). */
  readonly bootMs?: number;
  /** Records per datagram (default 30 for v5, 24 for v9 and IPFIX). */
  readonly perDatagram?: number;
  /** Send the templates in the first datagram and then every this many (default 20). */
  readonly templateEvery?: number;
}

function isV6(r: FlowRecord): boolean {
  return typeof r.src === 'bigint' || typeof r.dst === 'bigint';
}

/** NetFlow v5 datagrams (IPv4 only; IPv6 records are left out). */
export function encodeV5(records: readonly FlowRecord[], options: EncodeOptions = {}): Uint8Array[] {
  const rs = records.filter((r) => !isV6(r));
  const per = Math.min(30, options.perDatagram ?? 30);
  const boot = options.bootMs ?? (rs.length ? rs.reduce((m, r) => Math.min(m, r.start), Infinity) - 3600_000 : 0);
  const out: Uint8Array[] = [];
  let seq = 0;
  for (let k = 0; k < rs.length; k += per) {
    const part = rs.slice(k, k + per);
    const now = part.reduce((m, r) => Math.max(m, r.end), 0);
    const w = new Writer(24 + part.length * 48);
    w.u16(5);
    w.u16(part.length);
    w.u32(now - boot);
    w.u32(Math.floor(now / 1000));
    w.u32((now % 1000) * 1e6);
    w.u32(seq);
    w.u8(0);
    w.u8(options.domain ?? 0);
    w.u16(0);
    for (const r of part) {
      w.u32(r.src as number);
      w.u32(r.dst as number);
      w.u32(0);
      w.u16(1);
      w.u16(2);
      w.u32(r.packets);
      w.u32(r.bytes);
      w.u32(r.start - boot);
      w.u32(r.end - boot);
      w.u16(r.srcPort);
      w.u16(r.dstPort);
      w.u8(0);
      w.u8(r.tcpFlags ?? 0);
      w.u8(r.proto);
      w.u8(0);
      w.u16(0);
      w.u16(0);
      w.u8(24);
      w.u8(24);
      w.u16(0);
    }
    seq += part.length;
    out.push(w.done());
  }
  return out;
}

/** The fields of the v9 templates this encoder writes: [type, length]. */
const V9_V4: [number, number][] = [[8, 4], [12, 4], [7, 2], [11, 2], [4, 1], [6, 1], [2, 4], [1, 8], [22, 4], [21, 4]];
const V9_V6: [number, number][] = [[27, 16], [28, 16], [7, 2], [11, 2], [4, 1], [6, 1], [2, 4], [1, 8], [22, 4], [21, 4]];
/** IPFIX: absolute millisecond times and biflowDirection. */
const IPFIX_V4: [number, number][] = [[8, 4], [12, 4], [7, 2], [11, 2], [4, 1], [6, 1], [2, 8], [1, 8], [152, 8], [153, 8], [239, 1]];
const IPFIX_V6: [number, number][] = [[27, 16], [28, 16], [7, 2], [11, 2], [4, 1], [6, 1], [2, 8], [1, 8], [152, 8], [153, 8], [239, 1]];

function recordSize(fields: [number, number][]): number {
  return fields.reduce((n, f) => n + f[1], 0);
}

/**
 * A NetFlow v9 exporter: {@link encode} turns records into datagrams, with
 * the IPv4 template (256) and the IPv6 template (257) in the first datagram
 * and every `templateEvery` datagrams after, as routers refresh them.
 */
export class NetflowV9Encoder {
  private sequence = 0;
  private sent = 0;
  private readonly domain: number;
  private readonly per: number;
  private readonly every: number;
  private bootMs: number | undefined;

  constructor(options: EncodeOptions = {}) {
    this.domain = options.domain ?? 0;
    this.per = options.perDatagram ?? 24;
    this.every = options.templateEvery ?? 20;
    this.bootMs = options.bootMs;
  }

  /** Datagrams for the records (in order; a datagram holds one family). */
  encode(records: readonly FlowRecord[]): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (records.length === 0) return out;
    this.bootMs ??= records.reduce((m, r) => Math.min(m, r.start), Infinity) - 3600_000;
    const boot = this.bootMs;
    const fam: [FlowRecord[], FlowRecord[]] = [[], []];
    for (const r of records) fam[isV6(r) ? 1 : 0].push(r);
    for (let f = 0; f < 2; f++) {
      const rs = fam[f];
      const fields = f === 0 ? V9_V4 : V9_V6;
      for (let k = 0; k < rs.length; k += this.per) {
        const part = rs.slice(k, k + this.per);
        const withTemplates = this.sent % this.every === 0;
        // v9 headers carry whole seconds: the uptime is taken at that second, so uptime fields convert back exactly.
        const nowS = Math.floor(part.reduce((m, r) => Math.max(m, r.end), 0) / 1000);
        const tplLen = 4 + (4 + V9_V4.length * 4) + (4 + V9_V6.length * 4);
        const dataLen = 4 + part.length * recordSize(fields);
        const pad = (4 - (dataLen % 4)) % 4;
        const w = new Writer(20 + (withTemplates ? tplLen : 0) + dataLen + pad);
        w.u16(9);
        w.u16(part.length + (withTemplates ? 2 : 0));
        w.u32(Math.max(0, nowS * 1000 - boot));
        w.u32(nowS);
        w.u32(this.sequence++);
        w.u32(this.domain);
        if (withTemplates) {
          w.u16(0);
          w.u16(tplLen);
          for (const [id, fs] of [[256, V9_V4], [257, V9_V6]] as const) {
            w.u16(id);
            w.u16(fs.length);
            for (const [t, l] of fs) {
              w.u16(t);
              w.u16(l);
            }
          }
        }
        w.u16(f === 0 ? 256 : 257);
        w.u16(dataLen + pad);
        for (const r of part) {
          w.addr(r.src);
          w.addr(r.dst);
          w.u16(r.srcPort);
          w.u16(r.dstPort);
          w.u8(r.proto);
          w.u8(r.tcpFlags ?? 0);
          w.u32(r.packets);
          w.u64(r.bytes);
          w.u32(Math.max(0, r.start - boot));
          w.u32(Math.max(0, r.end - boot));
        }
        for (let p = 0; p < pad; p++) w.u8(0);
        this.sent++;
        out.push(w.done());
      }
    }
    return out;
  }
}

/**
 * IPFIX messages: templates 256 (IPv4) and 257 (IPv6) with absolute
 * millisecond times and `biflowDirection`, and, when `withOptions` is set, an
 * options template (258) and one options record before the data, which a
 * reader must skip.
 */
export function encodeIpfix(records: readonly FlowRecord[], options: EncodeOptions & { withOptions?: boolean } = {}): Uint8Array[] {
  const per = options.perDatagram ?? 24;
  const out: Uint8Array[] = [];
  const fam: [FlowRecord[], FlowRecord[]] = [[], []];
  for (const r of records) fam[isV6(r) ? 1 : 0].push(r);
  let seq = 0;
  let first = true;
  for (let f = 0; f < 2; f++) {
    const rs = fam[f];
    const fields = f === 0 ? IPFIX_V4 : IPFIX_V6;
    for (let k = 0; k < rs.length; k += per) {
      const part = rs.slice(k, k + per);
      const tplLen = first ? 4 + (4 + IPFIX_V4.length * 4) + (4 + IPFIX_V6.length * 4) : 0;
      // Options template 258: scope observationDomainId (149, 4), option exportedFlowRecordTotalCount (42, 8).
      const optTplLen = first && options.withOptions ? 4 + 6 + 8 : 0;
      const optDataLen = first && options.withOptions ? 4 + 12 : 0;
      const dataLen = 4 + part.length * recordSize(fields);
      const total = 16 + tplLen + optTplLen + optDataLen + dataLen;
      const w = new Writer(total);
      const now = part.reduce((m, r) => Math.max(m, r.end), 0);
      w.u16(10);
      w.u16(total);
      w.u32(Math.floor(now / 1000));
      w.u32(seq);
      w.u32(options.domain ?? 0);
      if (tplLen) {
        w.u16(2);
        w.u16(tplLen);
        for (const [id, fs] of [[256, IPFIX_V4], [257, IPFIX_V6]] as const) {
          w.u16(id);
          w.u16(fs.length);
          for (const [t, l] of fs) {
            w.u16(t);
            w.u16(l);
          }
        }
      }
      if (optTplLen) {
        w.u16(3);
        w.u16(optTplLen);
        w.u16(258);
        w.u16(2);
        w.u16(1);
        w.u16(149);
        w.u16(4);
        w.u16(42);
        w.u16(8);
        w.u16(258);
        w.u16(optDataLen);
        w.u32(options.domain ?? 0);
        w.u64(records.length);
      }
      w.u16(f === 0 ? 256 : 257);
      w.u16(dataLen);
      for (const r of part) {
        w.addr(r.src);
        w.addr(r.dst);
        w.u16(r.srcPort);
        w.u16(r.dstPort);
        w.u8(r.proto);
        w.u8(r.tcpFlags ?? 0);
        w.u64(r.packets);
        w.u64(r.bytes);
        w.u64(r.start);
        w.u64(r.end);
        w.u8(r.initiator === 'src' ? 1 : r.initiator === 'dst' ? 2 : 0);
      }
      first = false;
      seq += part.length;
      out.push(w.done());
    }
  }
  return out;
}

/** One UDP datagram to put in a capture. */
export interface CapturedDatagram {
  /** Epoch milliseconds. */
  readonly time: number;
  /** The exporter's and the collector's IPv4 addresses and ports. */
  readonly src: number;
  readonly dst: number;
  readonly sport: number;
  readonly dport: number;
  readonly payload: Uint8Array;
}

/** The pcap file header (microsecond times, raw IP link type 101). */
export function pcapHeader(): Uint8Array {
  const h = new Uint8Array(24);
  const v = new DataView(h.buffer);
  v.setUint32(0, 0xa1b2c3d4, true);
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setUint32(16, 65535, true);
  v.setUint32(20, 101, true);
  return h;
}

/** One pcap record: a raw IPv4/UDP packet carrying the datagram. */
export function pcapRecord(d: CapturedDatagram): Uint8Array {
  const ipLen = 20 + 8 + d.payload.length;
  const rec = new Uint8Array(16 + ipLen);
  const v = new DataView(rec.buffer);
  v.setUint32(0, Math.floor(d.time / 1000), true);
  v.setUint32(4, (d.time % 1000) * 1000, true);
  v.setUint32(8, ipLen, true);
  v.setUint32(12, ipLen, true);
  const o = 16;
  rec[o] = 0x45;
  v.setUint16(o + 2, ipLen);
  rec[o + 8] = 64;
  rec[o + 9] = 17;
  v.setUint32(o + 12, d.src);
  v.setUint32(o + 16, d.dst);
  let sum = 0;
  for (let k = 0; k < 20; k += 2) sum += (rec[o + k] << 8) | rec[o + k + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  v.setUint16(o + 10, ~sum & 0xffff);
  v.setUint16(o + 20, d.sport);
  v.setUint16(o + 22, d.dport);
  v.setUint16(o + 24, 8 + d.payload.length);
  rec.set(d.payload, o + 28);
  return rec;
}
