/**
 * NetFlow and IPFIX datagrams from files: packet captures (pcap, with any
 * byte order and micro- or nanosecond times, and pcapng) whose UDP payloads
 * are the datagrams, and raw files of datagrams one after another (as a
 * collector may save them). The datagrams go to one {@link NetflowDecoder},
 * which keeps templates per exporter (the packet's source address).
 */
import { formatAddr } from '../../netset/ip.js';
import type { FlowOut } from '../record.js';
import { NetflowDecoder } from './netflow.js';
import type { FlowDecoder } from './types.js';

/** The largest packet a capture record may hold (larger is taken as corruption). */
const MAX_PACKET = 262144;

/** Where a UDP payload sits in a captured frame, and who sent it; a problem string otherwise. */
export function udpPayload(frame: Uint8Array, linktype: number): { start: number; end: number; exporter: string } | string {
  let o: number;
  let ethertype = -1;
  switch (linktype) {
    case 1: // Ethernet
      if (frame.length < 14) return 'truncated frame';
      o = 14;
      ethertype = (frame[12] << 8) | frame[13];
      while ((ethertype === 0x8100 || ethertype === 0x88a8) && o + 4 <= frame.length) {
        ethertype = (frame[o + 2] << 8) | frame[o + 3];
        o += 4;
      }
      break;
    case 113: // Linux cooked (SLL)
      if (frame.length < 16) return 'truncated frame';
      o = 16;
      ethertype = (frame[14] << 8) | frame[15];
      break;
    case 276: // Linux cooked v2 (SLL2)
      if (frame.length < 20) return 'truncated frame';
      o = 20;
      ethertype = (frame[0] << 8) | frame[1];
      break;
    case 0: // BSD loopback: a host-order address family
      o = 4;
      break;
    case 101:
    case 12:
    case 14:
    case 228:
    case 229: // raw IP
      o = 0;
      break;
    default:
      return `link type ${linktype} is not supported`;
  }
  if (ethertype !== -1 && ethertype !== 0x0800 && ethertype !== 0x86dd) return 'not an IP packet';
  if (o >= frame.length) return 'truncated packet';
  const version = frame[o] >> 4;
  let proto: number;
  let l4: number;
  let exporter: string;
  if (version === 4) {
    const ihl = (frame[o] & 15) * 4;
    if (ihl < 20 || o + ihl > frame.length) return 'truncated IP header';
    const frag = ((frame[o + 6] << 8) | frame[o + 7]) & 0x3fff;
    if (frag !== 0) return 'IP fragment (not reassembled)';
    proto = frame[o + 9];
    exporter = formatAddr(((frame[o + 12] << 24) | (frame[o + 13] << 16) | (frame[o + 14] << 8) | frame[o + 15]) >>> 0);
    l4 = o + ihl;
  } else if (version === 6) {
    if (o + 40 > frame.length) return 'truncated IP header';
    proto = frame[o + 6];
    let a = 0n;
    for (let k = 0; k < 16; k++) a = (a << 8n) | BigInt(frame[o + 8 + k]);
    exporter = formatAddr(a >> 32n === 0xffffn ? Number(a & 0xffffffffn) : a);
    l4 = o + 40;
  } else return 'not an IP packet';
  if (proto !== 17) return 'not a UDP datagram';
  if (l4 + 8 > frame.length) return 'truncated UDP header';
  const udpLen = (frame[l4 + 4] << 8) | frame[l4 + 5];
  const end = Math.min(frame.length, udpLen >= 8 ? l4 + udpLen : frame.length);
  return { start: l4 + 8, end, exporter };
}

/** Decodes NetFlow/IPFIX datagrams from a pcap or pcapng capture. */
export class PcapDecoder implements FlowDecoder {
  readonly format = 'netflow';
  /** The datagram decoder (templates, stats). */
  readonly netflow: NetflowDecoder;
  private buf = new Uint8Array(0);
  private len = 0;
  private pos = 0;
  /** 0: before the file header; 1: pcap records; 2: pcapng blocks; 3: stopped (corrupt). */
  private state = 0;
  private little = true;
  private nanos = false;
  private linktype = 1;
  /** pcapng: each interface's link type and time units per second. */
  private ifaces: { linktype: number; unitsPerSec: number }[] = [];
  private packet = 0;

  constructor(private readonly out: FlowOut) {
    this.netflow = new NetflowDecoder(out);
  }

  /** Takes the next chunk of the capture. */
  push(chunk: Uint8Array): void {
    if (this.state === 3) return;
    // Keep unread bytes and append.
    const rest = this.len - this.pos;
    if (rest + chunk.length > this.buf.length) {
      const grown = new Uint8Array(Math.max(rest + chunk.length, this.buf.length * 2, 65536));
      grown.set(this.buf.subarray(this.pos, this.len));
      this.buf = grown;
    } else if (this.pos > 0) this.buf.copyWithin(0, this.pos, this.len);
    this.buf.set(chunk, rest);
    this.len = rest + chunk.length;
    this.pos = 0;
    this.run();
  }

  /** The end of the capture. */
  end(): void {
    if (this.state !== 3 && this.len - this.pos > 0) this.out.bad.add({ reason: 'truncated capture: the last packet is cut short', line: this.packet + 1, detail: `${this.len - this.pos} bytes left over` });
    if (this.state === 0 && this.len === 0) this.out.bad.add({ reason: 'empty capture', line: 0 });
    this.len = this.pos = 0;
  }

  private u32(o: number, little = this.little): number {
    const b = this.buf;
    return little ? (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0 : ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
  }

  private u16(o: number): number {
    const b = this.buf;
    return this.little ? b[o] | (b[o + 1] << 8) : (b[o] << 8) | b[o + 1];
  }

  private stop(reason: string, detail?: string): void {
    this.out.bad.add({ reason, line: this.packet + 1, detail });
    this.state = 3;
    this.len = this.pos = 0;
  }

  private run(): void {
    for (;;) {
      const avail = this.len - this.pos;
      if (this.state === 0) {
        if (avail < 24) return;
        const m = this.u32(this.pos, false);
        if (m === 0xa1b2c3d4 || m === 0xa1b23c4d) this.little = false;
        else if (m === 0xd4c3b2a1 || m === 0x4d3cb2a1) this.little = true;
        else if (m === 0x0a0d0d0a) {
          this.state = 2;
          continue;
        } else return this.stop('not a pcap or pcapng capture', `magic ${m.toString(16)}`);
        this.nanos = m === 0xa1b23c4d || m === 0x4d3cb2a1;
        this.linktype = this.u32(this.pos + 20) & 0xffff;
        this.pos += 24;
        this.state = 1;
      } else if (this.state === 1) {
        if (avail < 16) return;
        const incl = this.u32(this.pos + 8);
        if (incl > MAX_PACKET) return this.stop('corrupt capture record', `packet ${this.packet + 1} claims ${incl} bytes`);
        if (avail < 16 + incl) return;
        const secs = this.u32(this.pos);
        const frac = this.u32(this.pos + 4);
        const ms = secs * 1000 + Math.floor(this.nanos ? frac / 1e6 : frac / 1e3);
        this.frame(this.pos + 16, this.pos + 16 + incl, this.linktype, ms);
        this.pos += 16 + incl;
      } else if (this.state === 2) {
        if (avail < 12) return;
        const type = this.u32(this.pos, false) === 0x0a0d0d0a ? 0x0a0d0d0a : this.u32(this.pos);
        if (type === 0x0a0d0d0a) {
          const bom = this.u32(this.pos + 8, true);
          if (bom === 0x1a2b3c4d) this.little = true;
          else if (bom === 0x4d3c2b1a) this.little = false;
          else return this.stop('corrupt pcapng section header');
          this.ifaces = [];
        }
        const total = this.u32(this.pos + 4);
        if (total < 12 || total % 4 !== 0 || total > MAX_PACKET + 64) return this.stop('corrupt pcapng block', `block of ${total} bytes`);
        if (avail < total) return;
        const body = this.pos + 8;
        if (type === 1) {
          // Interface description: link type, then options (if_tsresol).
          let unitsPerSec = 1e6;
          let o = body + 8;
          const blockEnd = this.pos + total - 4;
          while (o + 4 <= blockEnd) {
            const code = this.u16(o);
            const olen = this.u16(o + 2);
            if (code === 0) break;
            if (code === 9 && olen >= 1) {
              const r = this.buf[o + 4];
              unitsPerSec = r & 0x80 ? 2 ** (r & 0x7f) : 10 ** (r & 0x7f);
            }
            o += 4 + ((olen + 3) & ~3);
          }
          this.ifaces.push({ linktype: this.u16(body), unitsPerSec });
        } else if (type === 6) {
          const iface = this.ifaces[this.u32(body)];
          const cap = this.u32(body + 12);
          if (!iface || body + 20 + cap > this.pos + total) return this.stop('corrupt pcapng packet block');
          const ts = this.u32(body + 4) * 4294967296 + this.u32(body + 8);
          this.frame(body + 20, body + 20 + cap, iface.linktype, Math.floor((ts / iface.unitsPerSec) * 1000));
        } else if (type === 3) {
          const iface = this.ifaces[0];
          if (!iface) return this.stop('corrupt pcapng packet block');
          const orig = this.u32(body);
          this.frame(body + 4, Math.min(body + 4 + orig, this.pos + total - 4), iface.linktype, 0);
        }
        this.pos += total;
      } else return;
    }
  }

  private frame(s: number, e: number, linktype: number, ms: number): void {
    this.packet++;
    const frame = this.buf.subarray(s, e);
    const u = udpPayload(frame, linktype);
    if (typeof u === 'string') {
      this.out.bad.add({ reason: `packet skipped: ${u}`, line: this.packet });
      return;
    }
    this.netflow.datagram(frame.subarray(u.start, u.end), u.exporter, this.packet, ms);
  }
}

/**
 * Decodes a file of NetFlow v5, v9 or IPFIX datagrams one after another, with
 * no capture framing. v5 and IPFIX carry their length; a v9 datagram ends
 * where the next header (a flowset id of 5, 9 or 10, which no flowset uses)
 * begins. All datagrams count as from one exporter, `file`.
 */
export class NetflowStreamDecoder implements FlowDecoder {
  readonly format = 'netflow';
  /** The datagram decoder (templates, stats). */
  readonly netflow: NetflowDecoder;
  private buf = new Uint8Array(0);
  private len = 0;
  private index = 0;
  private stopped = false;

  constructor(
    private readonly out: FlowOut,
    private readonly exporter = 'file',
  ) {
    this.netflow = new NetflowDecoder(out);
  }

  /** Takes the next chunk. */
  push(chunk: Uint8Array): void {
    if (this.stopped) return;
    if (this.len + chunk.length > this.buf.length) {
      const grown = new Uint8Array(Math.max(this.len + chunk.length, this.buf.length * 2, 65536));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(chunk, this.len);
    this.len += chunk.length;
    this.run(false);
  }

  /** The end of input. */
  end(): void {
    if (!this.stopped) this.run(true);
    this.len = 0;
  }

  /** The length of the datagram at `pos`, 0 when more input is needed, -1 when it cannot be framed. */
  private frameLength(pos: number, atEnd: boolean): number {
    const b = this.buf;
    const n = this.len - pos;
    if (n < 4) return atEnd && n > 0 ? -1 : 0;
    const version = (b[pos] << 8) | b[pos + 1];
    if (version === 5) {
      const size = 24 + ((b[pos + 2] << 8) | b[pos + 3]) * 48;
      return n >= size ? size : atEnd ? n : 0;
    }
    if (version === 10) {
      const size = (b[pos + 2] << 8) | b[pos + 3];
      if (size < 16) return -1;
      return n >= size ? size : atEnd ? n : 0;
    }
    if (version === 9) {
      let o = 20;
      for (;;) {
        if (o + 4 > n) return atEnd ? n : 0;
        const id = (b[pos + o] << 8) | b[pos + o + 1];
        const len = (b[pos + o + 2] << 8) | b[pos + o + 3];
        if (id === 5 || id === 9 || id === 10) return o;
        if (len < 4) return -1;
        if (o + len > n) return atEnd ? n : 0;
        o += len;
        if (o > 65535) return -1;
      }
    }
    return -1;
  }

  private run(atEnd: boolean): void {
    let pos = 0;
    for (;;) {
      const size = pos < this.len ? this.frameLength(pos, atEnd) : 0;
      if (size === 0) break;
      if (size < 0) {
        this.out.bad.add({ reason: 'cannot frame the next datagram (not NetFlow v5, v9 or IPFIX)', line: this.index + 1, detail: `${this.len - pos} bytes left unread` });
        this.stopped = true;
        this.len = 0;
        return;
      }
      this.index++;
      this.netflow.datagram(this.buf.subarray(pos, pos + size), this.exporter, this.index);
      pos += size;
    }
    // Keep the unread rest at the start of the buffer (once per push).
    if (pos > 0) {
      this.buf.copyWithin(0, pos, this.len);
      this.len -= pos;
    }
  }
}
