/**
 * Sets of connections: protocol plus port, or ICMP type and code.
 *
 * A connection is a key `proto * 65536 + sub` in the space 0..2^24−1, where
 * `sub` is the destination port for tcp, udp and sctp, `type * 256 + code`
 * for icmp and icmpv6, and meaningless (any value 0..65535) for every other
 * protocol. A connection set is one canonical {@link IntervalSet} of keys, so
 * the whole algebra is interval algebra and lookups are one binary search.
 */
import { IntervalSet } from './interval.js';

/** Protocol numbers of the protocols the policy language names (IANA). */
export const PROTOCOLS = Object.freeze({ icmp: 1, tcp: 6, udp: 17, icmpv6: 58, sctp: 132 } as const);

/** A protocol the policy language names. */
export type ProtocolName = keyof typeof PROTOCOLS;

/** Keys per protocol block: 2^16. */
const BLOCK = 65536;
/** The largest key, for protocol 255. */
const MAX_KEY = 256 * BLOCK - 1;

const NAMES: ReadonlyMap<number, ProtocolName> = new Map(Object.entries(PROTOCOLS).map(([n, p]) => [p, n as ProtocolName]));

/** Whether a protocol carries ports in its `sub` (tcp, udp, sctp). */
export function hasPorts(proto: number): boolean {
  return proto === 6 || proto === 17 || proto === 132;
}

/** Whether a protocol carries an ICMP type and code in its `sub` (icmp, icmpv6). */
export function isIcmp(proto: number): boolean {
  return proto === 1 || proto === 58;
}

/** The name of a protocol number (`tcp`), or undefined for an unnamed protocol. */
export function protocolName(proto: number): ProtocolName | undefined {
  return NAMES.get(proto);
}

/** A protocol number from a number (0..255) or a name. Throws RangeError otherwise. */
export function protocolNumber(proto: number | ProtocolName): number {
  if (typeof proto === 'string') {
    const n = (PROTOCOLS as Record<string, number | undefined>)[proto];
    if (n === undefined) throw new RangeError(`unknown protocol \`${proto}\``);
    return n;
  }
  if (!Number.isInteger(proto) || proto < 0 || proto > 255) throw new RangeError(`protocol ${proto} is out of range (0-255)`);
  return proto;
}

/** Throws unless `x` is an integer in `0..max`. */
function checkRange(what: string, x: number, max: number): void {
  if (!Number.isInteger(x) || x < 0 || x > max) throw new RangeError(`${what} ${x} is out of range (0-${max})`);
}

/** One protocol's part of a connection set, as returned by {@link ConnSet.entries}. */
export interface ConnEntry {
  /** The protocol number. */
  readonly proto: number;
  /** Inclusive `sub` ranges within the protocol (ports, or `type * 256 + code` for ICMP), ascending; `[[0, 65535]]` when whole. */
  readonly ranges: [number, number][];
}

/**
 * An immutable set of connections (protocol + port or ICMP type/code).
 *
 * The text form ({@link toString}) is a comma-and-space separated list in
 * ascending key order (so by protocol number: icmp 1, tcp 6, udp 17, icmpv6 58,
 * sctp 132), each item one of:
 * - `tcp`, `icmp`: the whole of a named protocol;
 * - `tcp/22`, `tcp/8000-8080` (also udp, sctp): a port or port range;
 * - `icmp type 8`, `icmp type 0-8`, `icmp type 3 code 4`, `icmp type 3 code 0-4`
 *   (also icmpv6): ICMP types, or codes within one type;
 * - `proto 47`, `proto 2-5`: unnamed protocols (always whole).
 * The full set is `any` and the empty set `none`. When the complement renders
 * in fewer items, the set is written `any except <complement>`, for example
 * `any except tcp/22`.
 */
export class ConnSet {
  /** The largest key, `255 * 65536 + 65535` (2^24 − 1). */
  static readonly MAX_KEY: number = MAX_KEY;
  /** No connection. */
  static readonly EMPTY: ConnSet = new ConnSet(IntervalSet.EMPTY);
  /** Every protocol, every port, type and code. */
  static readonly ANY: ConnSet = new ConnSet(IntervalSet.of(0, MAX_KEY));

  /**
   * The keys `proto * 65536 + sub`.
   * INVARIANT: a subset of 0..2^24−1, and for every protocol that is neither a
   * port protocol nor ICMP, the block [p*65536, p*65536+65535] is either wholly
   * in or wholly out.
   */
  readonly keys: IntervalSet;

  /** Memo of {@link boundaries}; not part of the value. */
  private plainBounds: readonly number[] | undefined;

  private constructor(keys: IntervalSet) {
    this.keys = keys;
  }

  /** Wraps keys, reusing the constants. */
  private static make(keys: IntervalSet): ConnSet {
    if (keys.isEmpty()) return ConnSet.EMPTY;
    return new ConnSet(keys);
  }

  /** The key of a connection: `proto * 65536 + sub`. */
  static key(proto: number, sub: number): number {
    return proto * BLOCK + sub;
  }

  /** Ports `lo..hi` (inclusive) of a port protocol (tcp, udp, sctp). Throws RangeError for another protocol or an out-of-range port; `lo > hi` is empty. */
  static ports(proto: number | ProtocolName, lo: number, hi: number): ConnSet {
    const p = protocolNumber(proto);
    if (!hasPorts(p)) throw new RangeError(`protocol ${protocolName(p) ?? p} has no ports`);
    checkRange('port', lo, 65535);
    checkRange('port', hi, 65535);
    return ConnSet.make(IntervalSet.of(p * BLOCK + lo, p * BLOCK + hi));
  }

  /** Every connection of one protocol. */
  static protocol(proto: number | ProtocolName): ConnSet {
    const p = protocolNumber(proto);
    return new ConnSet(IntervalSet.of(p * BLOCK, p * BLOCK + BLOCK - 1));
  }

  /**
   * ICMP messages of icmp or icmpv6: every message when `type` is absent, every
   * code of `type` when `code` is absent, else the one type and code. Throws
   * RangeError for another protocol or a type or code outside 0..255.
   */
  static icmp(proto: number | ProtocolName, type?: number, code?: number): ConnSet {
    const p = protocolNumber(proto);
    if (!isIcmp(p)) throw new RangeError(`protocol ${protocolName(p) ?? p} is not icmp or icmpv6`);
    if (type === undefined) {
      if (code !== undefined) throw new RangeError('an ICMP code needs a type');
      return ConnSet.protocol(p);
    }
    checkRange('ICMP type', type, 255);
    if (code === undefined) return new ConnSet(IntervalSet.of(p * BLOCK + type * 256, p * BLOCK + type * 256 + 255));
    checkRange('ICMP code', code, 255);
    return new ConnSet(IntervalSet.point(p * BLOCK + type * 256 + code));
  }

  /** The connections in either set. */
  union(other: ConnSet): ConnSet {
    return ConnSet.make(this.keys.union(other.keys));
  }

  /** The connections in both sets. */
  intersect(other: ConnSet): ConnSet {
    return ConnSet.make(this.keys.intersect(other.keys));
  }

  /** The connections of this set that are not in `other`. */
  subtract(other: ConnSet): ConnSet {
    return ConnSet.make(this.keys.subtract(other.keys));
  }

  /** Every connection not in this set. */
  complement(): ConnSet {
    return ConnSet.make(this.keys.complement(0, MAX_KEY));
  }

  /** Whether the sets share a connection (no allocation). */
  overlaps(other: ConnSet): boolean {
    return this.keys.overlaps(other.keys);
  }

  /** Whether every connection of this set is in `other`. */
  isSubset(other: ConnSet): boolean {
    return this.keys.isSubset(other.keys);
  }

  /** Whether the sets have the same connections. */
  equals(other: ConnSet): boolean {
    return this.keys.equals(other.keys);
  }

  /** Whether the set has no connection. */
  isEmpty(): boolean {
    return this.keys.isEmpty();
  }

  /** Whether this is every connection. */
  isAny(): boolean {
    const b = this.keys.bounds;
    return b.length === 2 && b[0] === 0 && b[1] === MAX_KEY;
  }

  /**
   * Whether the connection is in the set (no allocation). `sub` is the port,
   * `type * 256 + code` for ICMP, and any value in 0..65535 (say 0) for other
   * protocols. An out-of-range `proto` or `sub` is never a member.
   */
  has(proto: number, sub: number): boolean {
    if (proto >>> 8 !== 0 || sub >>> 16 !== 0) return false;
    return this.keys.has(proto * BLOCK + sub);
  }

  /** Whether the key `proto * 65536 + sub` is in the set (no allocation). */
  hasKey(key: number): boolean {
    return this.keys.has(key);
  }

  /**
   * The flat canonical key bounds `[lo0, hi0, lo1, hi1, ...]` (closed
   * intervals), for building lookup tables. A frozen array, computed once per
   * set; `keys.bounds` holds the same numbers in a Float64Array.
   */
  boundaries(): readonly number[] {
    return (this.plainBounds ??= Object.freeze(Array.from(this.keys.bounds)));
  }

  /** The set per protocol, ascending by protocol number; protocols with nothing are left out. */
  entries(): ConnEntry[] {
    const out: ConnEntry[] = [];
    const b = this.keys.bounds;
    let cur: ConnEntry | undefined;
    for (let i = 0; i < b.length; i += 2) {
      let lo = b[i];
      const hi = b[i + 1];
      while (lo <= hi) {
        const p = Math.floor(lo / BLOCK);
        const blockEnd = p * BLOCK + BLOCK - 1;
        const end = hi < blockEnd ? hi : blockEnd;
        if (cur === undefined || cur.proto !== p) out.push((cur = { proto: p, ranges: [] }));
        cur.ranges.push([lo - p * BLOCK, end - p * BLOCK]);
        lo = end + 1;
      }
    }
    return out;
  }

  /** The human text form described on the class, e.g. `tcp/22, tcp/8000-8080, udp/53, icmp type 8`. */
  toString(): string {
    if (this.isEmpty()) return 'none';
    if (this.isAny()) return 'any';
    const items = renderItems(this.entries());
    const comp = renderItems(this.complement().entries());
    return comp.length < items.length ? `any except ${comp.join(', ')}` : items.join(', ');
  }
}

/** Renders ICMP `sub` range `[lo, hi]` (over type*256+code) as items. */
function renderIcmp(name: string, lo: number, hi: number, out: string[]): void {
  let t0 = lo >>> 8;
  const c0 = lo & 255;
  let t1 = hi >>> 8;
  const c1 = hi & 255;
  const codes = (t: number, a: number, z: number) => `${name} type ${t} code ${a === z ? a : `${a}-${z}`}`;
  if (t0 === t1) {
    out.push(c0 === 0 && c1 === 255 ? `${name} type ${t0}` : codes(t0, c0, c1));
    return;
  }
  if (c0 !== 0) out.push(codes(t0++, c0, 255));
  const tail = c1 !== 255 ? codes(t1--, 0, c1) : undefined;
  if (t0 <= t1) out.push(`${name} type ${t0 === t1 ? t0 : `${t0}-${t1}`}`);
  if (tail !== undefined) out.push(tail);
}

/** Renders per-protocol entries as text items (see {@link ConnSet}). */
function renderItems(entries: ConnEntry[]): string[] {
  const out: string[] = [];
  let runLo = -1; // an open run of whole unnamed protocols
  let runHi = -1;
  const flush = () => {
    if (runLo >= 0) out.push(runLo === runHi ? `proto ${runLo}` : `proto ${runLo}-${runHi}`);
    runLo = runHi = -1;
  };
  for (const { proto, ranges } of entries) {
    const name = protocolName(proto);
    const whole = ranges.length === 1 && ranges[0][0] === 0 && ranges[0][1] === BLOCK - 1;
    if (name === undefined) {
      // INVARIANT: unnamed protocols are whole.
      if (runLo >= 0 && runHi === proto - 1) runHi = proto;
      else {
        flush();
        runLo = runHi = proto;
      }
      continue;
    }
    flush();
    if (whole) out.push(name);
    else if (isIcmp(proto)) for (const [lo, hi] of ranges) renderIcmp(name, lo, hi, out);
    else for (const [lo, hi] of ranges) out.push(lo === hi ? `${name}/${lo}` : `${name}/${lo}-${hi}`);
  }
  flush();
  return out;
}
