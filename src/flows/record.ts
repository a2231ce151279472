/**
 * The one flow record shape every telemetry source yields, and the columnar
 * batch the hot path moves around (parsers fill batches; the store appends
 * them; nothing allocates an object per record on the fast path).
 */
import type { Addr } from '../netset/ip.js';

/** One observed flow (a conversation summary), whatever the source. */
export interface FlowRecord {
  /** Start and end, epoch milliseconds (equal when the source gives one time). */
  readonly start: number;
  readonly end: number;
  readonly src: Addr;
  readonly dst: Addr;
  /** IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6, 132 sctp, …). */
  readonly proto: number;
  /** Ports; 0 when the protocol has none. For ICMP, srcPort is 0 and dstPort is `type * 256 + code`. */
  readonly srcPort: number;
  readonly dstPort: number;
  readonly packets: number;
  readonly bytes: number;
  /** What the reporting device did, where it says (cloud security groups, firewalls). */
  readonly action?: 'accept' | 'reject';
  /** OR of the TCP flags seen, where the source reports them (bit 0 FIN, 1 SYN, 2 RST, 3 PSH, 4 ACK, 5 URG). */
  readonly tcpFlags?: number;
  /**
   * Which end opened the conversation, where the source knows it (Zeek's
   * originator, conntrack's original direction, Hubble's `is_reply`, Calico,
   * Azure flow tuples, IPFIX `biflowDirection`). Absent when the source does not say.
   */
  readonly initiator?: 'src' | 'dst';
  /** The format it came from, e.g. `aws-vpc`, `zeek`, `netflow9`. */
  readonly format: string;
}

/** Why a record was skipped; counted per reason, with the first few line numbers kept. */
export interface BadRecord {
  readonly reason: string;
  /** 1-based line (text formats) or record index (binary formats). */
  readonly line: number;
  readonly detail?: string;
}

/** Counts of bad records by reason, keeping the first `keep` examples of each. */
export class BadRecords {
  readonly counts = new Map<string, number>();
  readonly examples = new Map<string, BadRecord[]>();
  constructor(private readonly keep = 5) {}

  add(bad: BadRecord): void {
    this.counts.set(bad.reason, (this.counts.get(bad.reason) ?? 0) + 1);
    let ex = this.examples.get(bad.reason);
    if (!ex) this.examples.set(bad.reason, (ex = []));
    if (ex.length < this.keep) ex.push(bad);
  }

  get total(): number {
    let n = 0;
    for (const c of this.counts.values()) n += c;
    return n;
  }
}

// ---------------------------------------------------------------- columnar batches

/** The formats, by id: the id is what a {@link FlowBatch} row and the store keep. */
export const FLOW_FORMATS = [
  'unknown',
  'aws-vpc',
  'zeek',
  'conntrack',
  'csv',
  'netflow5',
  'netflow9',
  'ipfix',
  'hubble',
  'calico',
  'azure-nsg',
  'azure-vnet',
  'gcp',
] as const;

/** A format name of {@link FLOW_FORMATS}. */
export type FlowFormat = (typeof FLOW_FORMATS)[number];

/** The id of a format name (its index in {@link FLOW_FORMATS}); 0 (`unknown`) for a name that is not listed. */
export function formatId(name: string): number {
  const i = (FLOW_FORMATS as readonly string[]).indexOf(name);
  return i < 0 ? 0 : i;
}

/** Action codes of {@link FlowBatch.action}. */
export const ACTION = { none: 0, accept: 1, reject: 2 } as const;
/** Initiator codes of {@link FlowBatch.initiator}. */
export const INITIATOR = { unknown: 0, src: 1, dst: 2 } as const;
/** Bits of {@link FlowBatch.v6}: which ends are IPv6. */
export const V6 = { src: 1, dst: 2 } as const;

/**
 * The columns of a {@link FlowBatch} as plain typed arrays, `capacity` long
 * each (`src6` and `dst6`: four times that).
 */
export interface FlowBatchColumns {
  start: Float64Array;
  end: Float64Array;
  v6: Uint8Array;
  src4: Uint32Array;
  dst4: Uint32Array;
  src6: Uint32Array;
  dst6: Uint32Array;
  proto: Uint8Array;
  srcPort: Uint16Array;
  dstPort: Uint16Array;
  packets: Float64Array;
  bytes: Float64Array;
  action: Uint8Array;
  tcpFlags: Int16Array;
  initiator: Uint8Array;
  format: Uint8Array;
}

/** The names of the {@link FlowBatchColumns}, and how many values a row has in each. */
export const FLOW_BATCH_COLUMNS: readonly (readonly [keyof FlowBatchColumns, number])[] = [
  ['start', 1], ['end', 1], ['v6', 1], ['src4', 1], ['dst4', 1], ['src6', 4], ['dst6', 4], ['proto', 1], ['srcPort', 1], ['dstPort', 1],
  ['packets', 1], ['bytes', 1], ['action', 1], ['tcpFlags', 1], ['initiator', 1], ['format', 1],
];

/** Writes a bigint IPv6 address as four 32-bit words, most significant first, at `words[at..at+3]`. */
export function v6ToWords(a: bigint, words: Uint32Array, at: number): void {
  words[at] = Number((a >> 96n) & 0xffffffffn);
  words[at + 1] = Number((a >> 64n) & 0xffffffffn);
  words[at + 2] = Number((a >> 32n) & 0xffffffffn);
  words[at + 3] = Number(a & 0xffffffffn);
}

/** Reads four 32-bit words (most significant first) at `words[at..at+3]` as a bigint IPv6 address. */
export function wordsToV6(words: Uint32Array, at: number): bigint {
  return (BigInt(words[at]) << 96n) | (BigInt(words[at + 1]) << 64n) | (BigInt(words[at + 2]) << 32n) | BigInt(words[at + 3]);
}

/**
 * Flow records in columns (typed arrays), so parsers fill them and the store
 * appends them without an object per record. Row `i` of every column belongs
 * to one record; only rows `0..length-1` are meaningful, and a producer sets
 * every column of a row it adds (there are no defaults left from a previous
 * use). Addresses: an IPv4 end is in `src4`/`dst4`; an IPv6 end (its bit set
 * in `v6`) is in `src6`/`dst6` as four words, most significant first.
 */
export class FlowBatch {
  /** The number of rows in use. INVARIANT: 0 <= length <= capacity. */
  length = 0;
  /** Start and end, epoch milliseconds. */
  readonly start: Float64Array;
  readonly end: Float64Array;
  /** Bits of {@link V6}: which ends are IPv6. */
  readonly v6: Uint8Array;
  readonly src4: Uint32Array;
  readonly dst4: Uint32Array;
  /** Four words a row. */
  readonly src6: Uint32Array;
  readonly dst6: Uint32Array;
  readonly proto: Uint8Array;
  readonly srcPort: Uint16Array;
  readonly dstPort: Uint16Array;
  readonly packets: Float64Array;
  readonly bytes: Float64Array;
  /** {@link ACTION} codes. */
  readonly action: Uint8Array;
  /** The TCP flags, or -1 where the source does not report them. */
  readonly tcpFlags: Int16Array;
  /** {@link INITIATOR} codes. */
  readonly initiator: Uint8Array;
  /** The format id ({@link FLOW_FORMATS}). */
  readonly format: Uint8Array;

  /**
   * A batch of `capacity` rows, with fresh columns, or over the given ones
   * (`columns`, each of the length {@link FlowBatchColumns} says): how a batch
   * crosses a worker boundary without a copy.
   */
  constructor(
    readonly capacity = 2048,
    columns?: FlowBatchColumns,
  ) {
    if (columns) {
      this.start = columns.start;
      this.end = columns.end;
      this.v6 = columns.v6;
      this.src4 = columns.src4;
      this.dst4 = columns.dst4;
      this.src6 = columns.src6;
      this.dst6 = columns.dst6;
      this.proto = columns.proto;
      this.srcPort = columns.srcPort;
      this.dstPort = columns.dstPort;
      this.packets = columns.packets;
      this.bytes = columns.bytes;
      this.action = columns.action;
      this.tcpFlags = columns.tcpFlags;
      this.initiator = columns.initiator;
      this.format = columns.format;
      return;
    }
    this.start = new Float64Array(capacity);
    this.end = new Float64Array(capacity);
    this.v6 = new Uint8Array(capacity);
    this.src4 = new Uint32Array(capacity);
    this.dst4 = new Uint32Array(capacity);
    this.src6 = new Uint32Array(capacity * 4);
    this.dst6 = new Uint32Array(capacity * 4);
    this.proto = new Uint8Array(capacity);
    this.srcPort = new Uint16Array(capacity);
    this.dstPort = new Uint16Array(capacity);
    this.packets = new Float64Array(capacity);
    this.bytes = new Float64Array(capacity);
    this.action = new Uint8Array(capacity);
    this.tcpFlags = new Int16Array(capacity);
    this.initiator = new Uint8Array(capacity);
    this.format = new Uint8Array(capacity);
  }

  /** Sets the number of rows in use and returns the batch. */
  withLength(n: number): this {
    if (!(n >= 0 && n <= this.capacity)) throw new RangeError(`a batch of ${this.capacity} rows cannot hold ${n}`);
    this.length = n;
    return this;
  }

  /** Sets the source address of row `i` (either family). */
  setSrc(i: number, a: Addr): void {
    if (typeof a === 'number') {
      this.src4[i] = a;
      this.v6[i] &= ~V6.src;
    } else {
      v6ToWords(a, this.src6, i * 4);
      this.v6[i] |= V6.src;
    }
  }

  /** Sets the destination address of row `i` (either family). */
  setDst(i: number, a: Addr): void {
    if (typeof a === 'number') {
      this.dst4[i] = a;
      this.v6[i] &= ~V6.dst;
    } else {
      v6ToWords(a, this.dst6, i * 4);
      this.v6[i] |= V6.dst;
    }
  }

  /** The source address of row `i`. */
  src(i: number): Addr {
    return this.v6[i] & V6.src ? wordsToV6(this.src6, i * 4) : this.src4[i];
  }

  /** The destination address of row `i`. */
  dst(i: number): Addr {
    return this.v6[i] & V6.dst ? wordsToV6(this.dst6, i * 4) : this.dst4[i];
  }

  /** Writes a record into row `i` (every column). */
  set(i: number, r: FlowRecord): void {
    this.v6[i] = 0;
    this.start[i] = r.start;
    this.end[i] = r.end;
    this.setSrc(i, r.src);
    this.setDst(i, r.dst);
    this.proto[i] = r.proto;
    this.srcPort[i] = r.srcPort;
    this.dstPort[i] = r.dstPort;
    this.packets[i] = r.packets;
    this.bytes[i] = r.bytes;
    this.action[i] = r.action === 'accept' ? ACTION.accept : r.action === 'reject' ? ACTION.reject : ACTION.none;
    this.tcpFlags[i] = r.tcpFlags === undefined ? -1 : r.tcpFlags;
    this.initiator[i] = r.initiator === 'src' ? INITIATOR.src : r.initiator === 'dst' ? INITIATOR.dst : INITIATOR.unknown;
    this.format[i] = formatId(r.format);
  }

  /** Row `i` as a record (for tests, golden files and slow paths). */
  get(i: number): FlowRecord {
    const action = this.action[i];
    const flags = this.tcpFlags[i];
    const ini = this.initiator[i];
    return {
      start: this.start[i],
      end: this.end[i],
      src: this.src(i),
      dst: this.dst(i),
      proto: this.proto[i],
      srcPort: this.srcPort[i],
      dstPort: this.dstPort[i],
      packets: this.packets[i],
      bytes: this.bytes[i],
      ...(action === ACTION.accept ? { action: 'accept' as const } : action === ACTION.reject ? { action: 'reject' as const } : {}),
      ...(flags >= 0 ? { tcpFlags: flags } : {}),
      ...(ini === INITIATOR.src ? { initiator: 'src' as const } : ini === INITIATOR.dst ? { initiator: 'dst' as const } : {}),
      format: FLOW_FORMATS[this.format[i]] ?? 'unknown',
    };
  }
}

/**
 * Where a parser puts what it reads: rows of a batch that is handed on
 * (synchronously) whenever it fills, and the bad-record counts. A parser
 * takes a row with {@link row} only once a record has passed its checks, then
 * sets every column of it.
 */
export class FlowOut {
  /** The batch being filled. */
  readonly batch: FlowBatch;
  /** Records handed on so far, plus those in the batch. */
  private handed = 0;

  /**
   * @param onBatch takes a full batch (or the rest, on {@link flush}); the batch is reused once it returns.
   * @param bad where bad records are counted.
   */
  constructor(
    private readonly onBatch: (batch: FlowBatch) => void,
    readonly bad: BadRecords = new BadRecords(),
    capacity = 2048,
  ) {
    this.batch = new FlowBatch(capacity);
  }

  /** The index of a fresh row, handing the batch on first when it is full. */
  row(): number {
    const b = this.batch;
    if (b.length === b.capacity) this.flush();
    return b.length++;
  }

  /** Appends a whole record (the slow path, for formats that build objects anyway). */
  push(r: FlowRecord): void {
    this.batch.set(this.row(), r);
  }

  /** Hands on the rows filled so far, if any. */
  flush(): void {
    const b = this.batch;
    if (b.length === 0) return;
    this.handed += b.length;
    this.onBatch(b);
    b.length = 0;
  }

  /** The number of records produced (handed on or waiting in the batch). */
  get records(): number {
    return this.handed + this.batch.length;
  }
}

/** Collects every record a parser produces into an array (tests, small inputs). */
export function collectingOut(records: FlowRecord[], bad = new BadRecords()): FlowOut {
  return new FlowOut((b) => {
    for (let i = 0; i < b.length; i++) records.push(b.get(i));
  }, bad);
}
