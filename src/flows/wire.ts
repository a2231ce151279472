/**
 * The binary form of an agent's flow batch (`application/vnd.bulkhead.flows.v1`,
 * docs/API.md): the batch's columns as little-endian typed arrays, so the
 * server makes views of the body instead of parsing JSON and addresses.
 *
 * Layout (every column starts on a multiple of 8 bytes; `n` records):
 *
 *   0   "BHF1"                     magic and version
 *   4   u32 n                      records
 *   8   u32 flags                  bit 0: the IPv6 columns are present
 *   12  u32 table                  bytes of the rule table at the end
 *   16  f64 start[n], end[n], packets[n], bytes[n]   epoch ms; counts
 *       u32 src4[n], dst4[n]       IPv4 ends (0 where the end is IPv6)
 *       u32 src6[4n], dst6[4n]     IPv6 ends, four words, most significant
 *                                  first (only with flag bit 0)
 *       u16 sport[n], dport[n], rule[n]   rule: 0 none, k: table entry k-1
 *       u8  family[n]              bit 0: src is IPv6, bit 1: dst is IPv6
 *       u8  proto[n], initiator[n] (0 unknown, 1 src), verdict[n]
 *                                  (0 none, 1 allowed, 2 blocked, 3 potentially-blocked)
 *       the rule table: a JSON list of rule ids, UTF-8
 *
 * Written here: there is no standard columnar wire format a Node agent can
 * write without a dependency far bigger than this (Arrow IPC); this is the
 * columns of the JSON form, byte for byte.
 */
import { parseAddr, type Addr } from '../netset/ip.js';
import { V6, v6ToWords } from './record.js';

export const FLOW_WIRE_TYPE = 'application/vnd.bulkhead.flows.v1';

/** Verdict codes of the wire form, index = code. */
export const WIRE_VERDICTS = [null, 'allowed', 'blocked', 'potentially-blocked'] as const;
export type WireVerdict = NonNullable<(typeof WIRE_VERDICTS)[number]>;

/** One flow as an agent reports it (`AgentFlow` of docs/API.md), in any of the three body forms. */
export interface WireFlow {
  /** Epoch milliseconds. */
  readonly start: number;
  readonly end: number;
  readonly src: string;
  readonly dst: string;
  /** Ports; for ICMP, `sport` is 0 and `dport` is `type × 256 + code`. */
  readonly sport: number;
  readonly dport: number;
  /** IANA protocol number. */
  readonly proto: number;
  readonly packets: number;
  readonly bytes: number;
  readonly initiator?: 'src';
  readonly verdict?: WireVerdict;
  readonly rule?: string;
}

/**
 * A flow batch as JSON columns (docs/API.md): one list per field, entry `i`
 * of each for record `i`; optional fields are columns with `null` for
 * absent, left out when no record has them. Far fewer keys to parse than a
 * list of records.
 */
export interface WireColumns {
  readonly start: readonly number[];
  readonly end: readonly number[];
  readonly src: readonly string[];
  readonly dst: readonly string[];
  readonly sport: readonly number[];
  readonly dport: readonly number[];
  readonly proto: readonly number[];
  readonly packets: readonly number[];
  readonly bytes: readonly number[];
  readonly initiator?: readonly ('src' | null)[];
  readonly verdict?: readonly (WireVerdict | null)[];
  readonly rule?: readonly (string | null)[];
}

/** Records as columns. */
export function wireColumns(records: readonly WireFlow[]): WireColumns {
  const n = records.length;
  const c = { start: new Array<number>(n), end: new Array<number>(n), src: new Array<string>(n), dst: new Array<string>(n), sport: new Array<number>(n), dport: new Array<number>(n), proto: new Array<number>(n), packets: new Array<number>(n), bytes: new Array<number>(n) };
  let initiator: ('src' | null)[] | undefined;
  let verdict: (WireVerdict | null)[] | undefined;
  let rule: (string | null)[] | undefined;
  for (let i = 0; i < n; i++) {
    const r = records[i];
    c.start[i] = r.start;
    c.end[i] = r.end;
    c.src[i] = r.src;
    c.dst[i] = r.dst;
    c.sport[i] = r.sport;
    c.dport[i] = r.dport;
    c.proto[i] = r.proto;
    c.packets[i] = r.packets;
    c.bytes[i] = r.bytes;
    if (r.initiator !== undefined) (initiator ??= new Array<'src' | null>(n).fill(null))[i] = r.initiator;
    if (r.verdict !== undefined) (verdict ??= new Array<WireVerdict | null>(n).fill(null))[i] = r.verdict;
    if (r.rule !== undefined) (rule ??= new Array<string | null>(n).fill(null))[i] = r.rule;
  }
  return { ...c, ...(initiator ? { initiator } : {}), ...(verdict ? { verdict } : {}), ...(rule ? { rule } : {}) };
}

/** A decoded batch: views of the body's columns. */
export interface WireBatch {
  readonly length: number;
  readonly start: Float64Array;
  readonly end: Float64Array;
  readonly packets: Float64Array;
  readonly bytes: Float64Array;
  readonly src4: Uint32Array;
  readonly dst4: Uint32Array;
  /** Empty when no end is IPv6. */
  readonly src6: Uint32Array;
  readonly dst6: Uint32Array;
  readonly sport: Uint16Array;
  readonly dport: Uint16Array;
  readonly rule: Uint16Array;
  /** {@link V6} bits. */
  readonly family: Uint8Array;
  readonly proto: Uint8Array;
  readonly initiator: Uint8Array;
  readonly verdict: Uint8Array;
  readonly rules: readonly string[];
}

const MAGIC = [0x42, 0x48, 0x46, 0x31]; // "BHF1"
const HEADER = 16;
const pad8 = (n: number) => (n + 7) & ~7;

/** Byte offsets of the columns for `n` records. */
function layout(n: number, v6: boolean) {
  let at = HEADER;
  const take = (bytes: number) => {
    const o = at;
    at = pad8(at + bytes);
    return o;
  };
  const o = {
    start: take(8 * n), end: take(8 * n), packets: take(8 * n), bytes: take(8 * n),
    src4: take(4 * n), dst4: take(4 * n),
    src6: v6 ? take(16 * n) : at, dst6: v6 ? take(16 * n) : at,
    sport: take(2 * n), dport: take(2 * n), rule: take(2 * n),
    family: take(n), proto: take(n), initiator: take(n), verdict: take(n),
    table: 0,
  };
  o.table = at;
  return o;
}

/** Why a record cannot be encoded (the same checks as the JSON schema), or undefined. */
function problem(r: WireFlow): string | undefined {
  const whole = (v: number) => Number.isSafeInteger(v) && v >= 0;
  if (!whole(r.start) || !whole(r.end)) return 'start and end are whole epoch ms';
  if (r.end < r.start) return '`end` is before `start`';
  if (!whole(r.packets) || !whole(r.bytes)) return 'packets and bytes are whole numbers';
  if (!Number.isInteger(r.sport) || r.sport < 0 || r.sport > 65535 || !Number.isInteger(r.dport) || r.dport < 0 || r.dport > 65535) return 'ports are 0 to 65535';
  if (!Number.isInteger(r.proto) || r.proto < 0 || r.proto > 255) return 'proto is 0 to 255';
  return undefined;
}

/** Encodes records; throws (naming the record) for one that the server would refuse anyway. */
export function encodeFlowBatch(records: readonly WireFlow[]): Uint8Array {
  const n = records.length;
  const src: Addr[] = new Array(n);
  const dst: Addr[] = new Array(n);
  let v6 = false;
  for (let i = 0; i < n; i++) {
    const r = records[i];
    const p = problem(r);
    if (p) throw new RangeError(`record ${i}: ${p}`);
    const s = parseAddr(r.src);
    const d = parseAddr(r.dst);
    if (s === null || d === null) throw new RangeError(`record ${i}: \`${s === null ? r.src : r.dst}\` is not an IP address`);
    src[i] = s;
    dst[i] = d;
    if (typeof s === 'bigint' || typeof d === 'bigint') v6 = true;
  }
  const rules: string[] = [];
  const ruleIndex = new Map<string, number>();
  for (const r of records) if (r.rule !== undefined && !ruleIndex.has(r.rule)) ruleIndex.set(r.rule, rules.push(r.rule));
  if (rules.length > 65535) throw new RangeError('at most 65,535 distinct rules a batch');
  const table = new TextEncoder().encode(JSON.stringify(rules));
  const o = layout(n, v6);
  const buf = new ArrayBuffer(o.table + table.length);
  const u8 = new Uint8Array(buf);
  u8.set(MAGIC, 0);
  const dv = new DataView(buf);
  dv.setUint32(4, n, true);
  dv.setUint32(8, v6 ? 1 : 0, true);
  dv.setUint32(12, table.length, true);
  // Typed arrays write in the machine's byte order: little-endian on every platform Node supports but a few;
  // DataView keeps the format right on those too, at a cost only there.
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  const f64 = (off: number, f: (r: WireFlow) => number) => {
    if (le) {
      const a = new Float64Array(buf, off, n);
      for (let i = 0; i < n; i++) a[i] = f(records[i]);
    } else for (let i = 0; i < n; i++) dv.setFloat64(off + 8 * i, f(records[i]), true);
  };
  const u32 = (off: number, count: number, get: (k: number) => number) => {
    if (le) {
      const a = new Uint32Array(buf, off, count);
      for (let k = 0; k < count; k++) a[k] = get(k);
    } else for (let k = 0; k < count; k++) dv.setUint32(off + 4 * k, get(k), true);
  };
  const u16 = (off: number, get: (i: number) => number) => {
    if (le) {
      const a = new Uint16Array(buf, off, n);
      for (let i = 0; i < n; i++) a[i] = get(i);
    } else for (let i = 0; i < n; i++) dv.setUint16(off + 2 * i, get(i), true);
  };
  f64(o.start, (r) => r.start);
  f64(o.end, (r) => r.end);
  f64(o.packets, (r) => r.packets);
  f64(o.bytes, (r) => r.bytes);
  u32(o.src4, n, (i) => (typeof src[i] === 'number' ? (src[i] as number) : 0));
  u32(o.dst4, n, (i) => (typeof dst[i] === 'number' ? (dst[i] as number) : 0));
  if (v6) {
    const words = new Uint32Array(4);
    const six = (addrs: Addr[]) => (k: number) => {
      const a = addrs[k >> 2];
      if (typeof a !== 'bigint') return 0;
      if ((k & 3) === 0) v6ToWords(a, words, 0);
      return words[k & 3];
    };
    u32(o.src6, 4 * n, six(src));
    u32(o.dst6, 4 * n, six(dst));
  }
  u16(o.sport, (i) => records[i].sport);
  u16(o.dport, (i) => records[i].dport);
  u16(o.rule, (i) => (records[i].rule === undefined ? 0 : ruleIndex.get(records[i].rule!)!));
  for (let i = 0; i < n; i++) {
    const r = records[i];
    u8[o.family + i] = (typeof src[i] === 'bigint' ? V6.src : 0) | (typeof dst[i] === 'bigint' ? V6.dst : 0);
    u8[o.proto + i] = r.proto;
    u8[o.initiator + i] = r.initiator === 'src' ? 1 : 0;
    u8[o.verdict + i] = r.verdict === undefined ? 0 : WIRE_VERDICTS.indexOf(r.verdict);
  }
  u8.set(table, o.table);
  return u8;
}

/** A problem with a binary batch: where (a JSON-pointer-like path) and what. */
export interface WireProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * Decodes and checks a batch (at most `max` records). The columns are views
 * of `bytes` when it is 8-byte aligned, else of one aligned copy; IPv4-mapped
 * IPv6 ends are rewritten, in them, as IPv4.
 */
export function decodeFlowBatch(bytes: Uint8Array, max: number): WireBatch | WireProblem {
  if (bytes.length < HEADER || MAGIC.some((b, i) => bytes[i] !== b)) return { path: '/', message: 'not a bulkhead flow batch (it starts with "BHF1")' };
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  if (!le) return { path: '/', message: 'this server reads binary batches only on a little-endian machine; send JSON' };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = dv.getUint32(4, true);
  const flags = dv.getUint32(8, true);
  const tableBytes = dv.getUint32(12, true);
  if (n > max) return { path: '/n', message: `at most ${max} records a batch` };
  if (flags > 1) return { path: '/flags', message: `unknown flags ${flags}` };
  const v6 = flags === 1;
  const o = layout(n, v6);
  if (bytes.length !== o.table + tableBytes) return { path: '/', message: `${bytes.length} bytes; ${n} records${v6 ? ' with IPv6 columns' : ''} and a ${tableBytes}-byte rule table take ${o.table + tableBytes}` };
  // An aligned copy when needed (a Buffer's slice() is a view: a new Uint8Array of it copies).
  const b = bytes.byteOffset % 8 === 0 ? bytes : new Uint8Array(bytes);
  const buf = b.buffer as ArrayBuffer;
  const base = b.byteOffset;
  let rules: unknown;
  try {
    rules = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(o.table)));
  } catch {
    return { path: '/rules', message: 'the rule table is not a JSON list in UTF-8' };
  }
  if (!Array.isArray(rules) || rules.some((r) => typeof r !== 'string' || r.length > 200)) return { path: '/rules', message: 'the rule table is a list of rule ids of at most 200 characters' };
  const batch: WireBatch = {
    length: n,
    start: new Float64Array(buf, base + o.start, n),
    end: new Float64Array(buf, base + o.end, n),
    packets: new Float64Array(buf, base + o.packets, n),
    bytes: new Float64Array(buf, base + o.bytes, n),
    src4: new Uint32Array(buf, base + o.src4, n),
    dst4: new Uint32Array(buf, base + o.dst4, n),
    src6: new Uint32Array(buf, base + o.src6, v6 ? 4 * n : 0),
    dst6: new Uint32Array(buf, base + o.dst6, v6 ? 4 * n : 0),
    sport: new Uint16Array(buf, base + o.sport, n),
    dport: new Uint16Array(buf, base + o.dport, n),
    rule: new Uint16Array(buf, base + o.rule, n),
    family: new Uint8Array(buf, base + o.family, n),
    proto: new Uint8Array(buf, base + o.proto, n),
    initiator: new Uint8Array(buf, base + o.initiator, n),
    verdict: new Uint8Array(buf, base + o.verdict, n),
    rules: rules as string[],
  };
  const whole = (v: number) => Number.isSafeInteger(v) && v >= 0;
  const mapped = (col: Uint32Array, i: number) => col[4 * i] === 0 && col[4 * i + 1] === 0 && col[4 * i + 2] === 0xffff;
  for (let i = 0; i < n; i++) {
    // An IPv4-mapped IPv6 end (::ffff:a.b.c.d) is that IPv4 address, as the JSON forms read it.
    if (v6) {
      for (const [bit, col6, col4] of [[V6.src, batch.src6, batch.src4], [V6.dst, batch.dst6, batch.dst4]] as const) {
        if (!(batch.family[i] & bit) || !mapped(col6, i)) continue;
        col4[i] = col6[4 * i + 3];
        batch.family[i] &= ~bit;
      }
    }
    if (!whole(batch.start[i])) return { path: `/start/${i}`, message: 'a whole number of epoch ms' };
    if (!whole(batch.end[i])) return { path: `/end/${i}`, message: 'a whole number of epoch ms' };
    if (!whole(batch.packets[i])) return { path: `/packets/${i}`, message: 'a whole number' };
    if (!whole(batch.bytes[i])) return { path: `/bytes/${i}`, message: 'a whole number' };
    const f = batch.family[i];
    if (f > 3 || (f !== 0 && !v6)) return { path: `/family/${i}`, message: v6 ? 'a family code, 0 to 3' : 'an IPv6 end, but the batch has no IPv6 columns' };
    if (batch.initiator[i] > 1) return { path: `/initiator/${i}`, message: '0 (unknown) or 1 (src)' };
    if (batch.verdict[i] > 3) return { path: `/verdict/${i}`, message: 'a verdict code, 0 to 3' };
    if (batch.rule[i] > batch.rules.length) return { path: `/rule/${i}`, message: `a rule table index, 0 to ${batch.rules.length}` };
  }
  return batch;
}
