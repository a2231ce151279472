/**
 * Byte-level helpers for the text parsers: numbers and addresses read
 * straight from the input bytes (no string per field on the hot path), and
 * the slow-path conversions (times, protocol names) the other formats share.
 */
import { parseAddr, type Addr } from '../netset/ip.js';

const decoder = new TextDecoder('utf-8', { fatal: false });

/** The bytes `buf[s..e)` as text (UTF-8, invalid sequences replaced). */
export function text(buf: Uint8Array, s: number, e: number): string {
  return decoder.decode(buf.subarray(s, e));
}

/** A short printable excerpt of `buf[s..e)` for an error message: at most 60 characters, control characters escaped. */
export function excerpt(buf: Uint8Array, s: number, e: number): string {
  return excerptText(text(buf, s, Math.min(e, s + 240)));
}

/** A short printable form of a string for an error message: at most 60 characters, control characters escaped. */
export function excerptText(t: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = t.replace(/[\u0000-\u001f\u007f-\u009f\ufffd]/g, (c) => (c === '\t' ? '\\t' : c === '\ufffd' ? '?' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
  return clean.length > 60 ? clean.slice(0, 57) + '...' : clean;
}

/** An unsigned decimal integer in `buf[s..e)` (at most 15 digits), or -1 when empty or not all digits. */
export function parseUint(buf: Uint8Array, s: number, e: number): number {
  if (s >= e || e - s > 15) return -1;
  let v = 0;
  for (let i = s; i < e; i++) {
    const d = buf[i] - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/**
 * A non-negative decimal number with an optional fraction (`1591367999.305988`)
 * in `buf[s..e)`, or -1 when invalid. Exponents are not accepted.
 */
export function parseDecimal(buf: Uint8Array, s: number, e: number): number {
  if (s >= e) return -1;
  let v = 0;
  let i = s;
  let digits = 0;
  for (; i < e; i++) {
    const d = buf[i] - 48;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
    digits++;
  }
  if (i === e) return digits > 0 && digits <= 16 ? v : -1;
  if (buf[i] !== 46 || digits > 16) return -1;
  let scale = 1;
  let frac = 0;
  let fd = 0;
  for (i++; i < e; i++) {
    const d = buf[i] - 48;
    if (d < 0 || d > 9) return -1;
    if (fd < 9) {
      frac = frac * 10 + d;
      scale *= 10;
      fd++;
    }
  }
  if (digits === 0 && fd === 0) return -1;
  return v + frac / scale;
}

/**
 * A dotted quad in `buf[s..e)`, strictly as {@link parseAddr} reads it (four
 * octets 0..255, no leading zeros), or -1.
 */
export function parseIPv4(buf: Uint8Array, s: number, e: number): number {
  let parts = 0;
  let val = 0;
  let acc = 0;
  let digits = 0;
  for (let i = s; i < e; i++) {
    const c = buf[i];
    if (c >= 48 && c <= 57) {
      if (digits > 0 && acc === 0) return -1;
      acc = acc * 10 + (c - 48);
      digits++;
      if (acc > 255) return -1;
    } else if (c === 46) {
      if (digits === 0 || parts === 3) return -1;
      val = val * 256 + acc;
      parts++;
      acc = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  if (parts !== 3 || digits === 0) return -1;
  return val * 256 + acc;
}

/** An address of either family in `buf[s..e)` (IPv4 on the fast path), or null. */
export function parseAddrBytes(buf: Uint8Array, s: number, e: number): Addr | null {
  const v4 = parseIPv4(buf, s, e);
  if (v4 >= 0) return v4;
  if (e - s > 64 || e <= s) return null;
  return parseAddr(text(buf, s, e));
}

/** Whether `buf[s..e)` is exactly the ASCII string `lit`. */
export function bytesEqual(buf: Uint8Array, s: number, e: number, lit: string): boolean {
  if (e - s !== lit.length) return false;
  for (let i = 0; i < lit.length; i++) if (buf[s + i] !== lit.charCodeAt(i)) return false;
  return true;
}

/** Protocol names the text formats use, lowercase, to numbers. */
const PROTO_NAMES: Record<string, number> = {
  icmp: 1,
  igmp: 2,
  tcp: 6,
  udp: 17,
  gre: 47,
  esp: 50,
  ah: 51,
  icmpv6: 58,
  'ipv6-icmp': 58,
  icmp6: 58,
  sctp: 132,
  t: 6,
  u: 17,
};

/** A protocol from a number (0..255) or a name (`tcp`, `UDP`, `icmpv6`, `ipv6-icmp`, …), or -1. */
export function protoOf(v: unknown): number {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 255 ? v : -1;
  if (typeof v !== 'string' || v === '') return -1;
  if (/^[0-9]{1,3}$/.test(v)) {
    const n = Number(v);
    return n <= 255 ? n : -1;
  }
  return PROTO_NAMES[v.toLowerCase()] ?? -1;
}

/**
 * A time as epoch milliseconds, from a number or a numeric string (epoch
 * seconds, milliseconds, microseconds or nanoseconds, told apart by size) or
 * an ISO 8601 string (`2026-11-16T08:00:00Z`, fractions to nanoseconds).
 * NaN when it is none of these.
 */
export function timeOf(v: unknown): number {
  if (typeof v === 'number') return epochMs(v);
  if (typeof v !== 'string' || v === '') return NaN;
  if (/^[0-9]+(\.[0-9]+)?$/.test(v)) return epochMs(Number(v));
  // Date.parse keeps milliseconds only; longer fractions are cut, which it would reject in some engines.
  const m = /^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/.exec(v);
  if (!m) return NaN;
  const frac = m[2] ? m[2].slice(0, 4) : '';
  const zone = m[3] ?? 'Z';
  return Date.parse(`${m[1].replace(' ', 'T')}${frac}${zone}`);
}

/** Epoch seconds, milliseconds, microseconds or nanoseconds to milliseconds, told apart by size. */
export function epochMs(n: number): number {
  if (!Number.isFinite(n) || n < 0) return NaN;
  if (n < 1e11) return Math.round(n * 1000); // seconds (until the year 5138)
  if (n < 1e14) return Math.round(n); // milliseconds
  if (n < 1e17) return Math.round(n / 1000); // microseconds
  return Math.round(n / 1e6); // nanoseconds
}

/** A non-negative integer count from a number or numeric string (JSON formats write int64 as strings), or -1. */
export function countOf(v: unknown): number {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? v : -1;
  if (typeof v === 'string' && /^[0-9]{1,16}$/.test(v)) return Number(v);
  return -1;
}

/** A port from a number or numeric string, or -1 when out of 0..65535. */
export function portOf(v: unknown): number {
  const n = countOf(v);
  return n >= 0 && n <= 65535 ? n : -1;
}
