/**
 * Linux conntrack: `conntrack -L` snapshots (with or without `-o extended`)
 * and the `conntrack -E` event stream (with or without `-o timestamp`).
 *
 * The first tuple of an entry is the original direction, so its source is the
 * initiator. Counters (`packets=`, `bytes=`) appear only with
 * `nf_conntrack_acct` on. A snapshot has no times: the decoder takes the
 * snapshot time as an option (the file's modification time, by default).
 *
 * Events: one record per connection. `[NEW]` opens it, `[DESTROY]` closes it
 * with its counters; `[UPDATE]` only changes state. Connections still open at
 * the end of input are written with what is known (bounded: past 1M open
 * connections, a new one is written at once).
 */
import { parseAddr, type Addr } from '../../netset/ip.js';
import type { FlowOut } from '../record.js';
import { eachLine } from '../lines.js';
import { excerptText, protoOf, text } from '../text.js';
import { LineDecoder, type DecoderOptions } from './types.js';

/** The most connections held open while reading events. */
export const MAX_OPEN_CONNECTIONS = 1_000_000;

interface Entry {
  event: 'NEW' | 'UPDATE' | 'DESTROY' | undefined;
  time: number | undefined;
  proto: number;
  src: Addr;
  dst: Addr;
  sport: number;
  dport: number;
  packets: number;
  bytes: number;
  /** Seconds since the connection started (`delta-time=`, with timestamps on). */
  delta: number | undefined;
}

interface Open {
  start: number;
  entry: Entry;
}

/** Parses one line; an Entry, or a problem (reason, detail). */
export function parseConntrackLine(t: string): Entry | { reason: string; detail?: string } | null {
  const tok = t.trim().split(/\s+/);
  let k = 0;
  let time: number | undefined;
  let event: Entry['event'];
  if (tok[k]?.startsWith('[') && /^\[[0-9]+(\.[0-9]+)?\]$/.test(tok[k])) {
    time = Math.round(Number(tok[k].slice(1, -1)) * 1000);
    k++;
  }
  const ev = /^\[(NEW|UPDATE|DESTROY)\]$/.exec(tok[k] ?? '');
  if (ev) {
    event = ev[1] as Entry['event'];
    k++;
  }
  if (tok[k] === 'ipv4' || tok[k] === 'ipv6') k += 2; // -o extended: family name and number
  const protoName = tok[k++];
  const protoNum = tok[k++];
  if (protoName === undefined || protoNum === undefined || !/^[0-9]{1,3}$/.test(protoNum)) return { reason: 'not a conntrack entry', detail: excerptText(t) };
  const proto = Number(protoNum);
  if (proto > 255 || (protoOf(protoName) >= 0 && protoOf(protoName) !== proto && protoName !== 'unknown')) return { reason: 'invalid protocol', detail: `${protoName} ${protoNum}` };
  const kv: Record<string, string> = {};
  const reply: Record<string, string> = {};
  let seenSrc = 0;
  for (; k < tok.length; k++) {
    const x = tok[k];
    const eq = x.indexOf('=');
    if (eq <= 0) continue; // timeout, state, [ASSURED], [UNREPLIED]
    const key = x.slice(0, eq);
    const val = x.slice(eq + 1);
    if (key === 'src') seenSrc++;
    const into = seenSrc >= 2 ? reply : kv;
    if (!(key in into)) into[key] = val;
  }
  if (kv.src === undefined || kv.dst === undefined) return { reason: 'missing src= or dst=', detail: excerptText(t) };
  const src = parseAddr(kv.src);
  const dst = parseAddr(kv.dst);
  if (src === null) return { reason: 'invalid src', detail: excerptText(kv.src) };
  if (dst === null) return { reason: 'invalid dst', detail: excerptText(kv.dst) };
  const icmp = proto === 1 || proto === 58;
  const num = (v: string | undefined, max: number): number => (v !== undefined && /^[0-9]{1,15}$/.test(v) && Number(v) <= max ? Number(v) : -1);
  let sport = 0;
  let dport = 0;
  if (icmp) {
    const type = num(kv.type, 255);
    const code = num(kv.code, 255);
    if (type < 0 || code < 0) return { reason: 'invalid ICMP type or code', detail: `type=${kv.type} code=${kv.code}` };
    dport = type * 256 + code;
  } else if (kv.sport !== undefined || kv.dport !== undefined) {
    sport = num(kv.sport, 65535);
    dport = num(kv.dport, 65535);
    if (sport < 0) return { reason: 'invalid sport', detail: excerptText(kv.sport ?? '') };
    if (dport < 0) return { reason: 'invalid dport', detail: excerptText(kv.dport ?? '') };
  }
  const count = (a: string | undefined, b: string | undefined): number => Math.max(0, num(a, Number.MAX_SAFE_INTEGER)) + Math.max(0, num(b, Number.MAX_SAFE_INTEGER));
  const delta = num(kv['delta-time'], 1e12);
  return { event, time, proto, src, dst, sport, dport, packets: count(kv.packets, reply.packets), bytes: count(kv.bytes, reply.bytes), delta: delta >= 0 ? delta : undefined };
}

/** Decodes conntrack snapshots and event streams. */
export class ConntrackDecoder extends LineDecoder {
  readonly format = 'conntrack';
  private readonly time: number;
  private readonly open = new Map<string, Open>();

  constructor(out: FlowOut, options: DecoderOptions = {}) {
    super(out, options);
    this.time = options.time ?? 0;
  }

  protected lines(buf: Uint8Array, start: number, end: number, firstLine: number): number {
    return eachLine(buf, start, end, firstLine, (s, e, line) => {
      if (s === e) return;
      const t = text(buf, s, e);
      if (/^\s*$/.test(t) || /^conntrack v[0-9.]+ \(conntrack-tools\)/.test(t) || t.startsWith('#')) return;
      const r = parseConntrackLine(t);
      if (r === null) return;
      if ('reason' in r) {
        this.out.bad.add({ reason: r.reason, line, detail: r.detail });
        return;
      }
      this.entry(r);
    });
  }

  private write(e: Entry, start: number, end: number): void {
    this.out.push({ start, end, src: e.src, dst: e.dst, proto: e.proto, srcPort: e.sport, dstPort: e.dport, packets: e.packets, bytes: e.bytes, initiator: 'src', format: 'conntrack' });
  }

  private entry(e: Entry): void {
    const t = e.time ?? this.time;
    if (e.event === undefined) {
      // A snapshot entry: seen at the snapshot time; with delta-time, since then.
      this.write(e, e.delta !== undefined ? t - e.delta * 1000 : t, t);
      return;
    }
    const key = `${e.proto} ${String(e.src)} ${String(e.dst)} ${e.sport} ${e.dport}`;
    if (e.event === 'NEW') {
      if (this.open.size >= MAX_OPEN_CONNECTIONS) this.write(e, t, t);
      else this.open.set(key, { start: t, entry: e });
    } else if (e.event === 'DESTROY') {
      const o = this.open.get(key);
      if (o) this.open.delete(key);
      this.write(e, o ? o.start : e.delta !== undefined ? t - e.delta * 1000 : t, t);
    } else {
      const o = this.open.get(key);
      if (o) o.entry = { ...e, packets: Math.max(e.packets, o.entry.packets), bytes: Math.max(e.bytes, o.entry.bytes) };
    }
  }

  protected override finish(): void {
    for (const o of this.open.values()) this.write(o.entry, o.start, o.entry.time ?? o.start);
    this.open.clear();
  }
}
