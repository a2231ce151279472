/**
 * Attribution: what each end of a flow is, and which end is the server.
 *
 * - An address is a **workload** (inventory, most specific prefix first, via
 *   the IR's longest-prefix table), else a member of one or more **IP lists**,
 *   else **unknown**. Addresses outside the private ranges (and any extra
 *   internal prefixes given) that are no workload are **external**.
 * - The **server** side of a flow, in order of evidence: the source says who
 *   opened it (Zeek, conntrack, Hubble, Calico, Azure, IPFIX biflow); TCP
 *   flags (a SYN without ACK comes from the client; AWS's SYN-ACK, 18, from
 *   the server); a service port (one the policy names, a well-known port
 *   below 1024 or a common registered service port) against an ephemeral
 *   one (from 32768 up); listening evidence (an address and port that many
 *   peers talk to, at least twice as many as the other end's); any other
 *   difference of port class (service, registered, ephemeral); and last the
 *   lower port.
 * - The client's port is then folded away: an edge is (client, server,
 *   protocol, server port). ICMP echo replies fold into their requests.
 */
import type { Addr, Prefix } from '../netset/ip.js';
import { IpSet, parsePrefix } from '../netset/ip.js';
import type { Ir } from '../policy/ir.js';
import type { Policy } from '../model/types.js';
import { FlowBatch, formatId, INITIATOR, V6, type FlowRecord } from './record.js';

// ---------------------------------------------------------------- ends

/** What an address is. */
export interface EndInfo {
  readonly kind: 'workload' | 'iplist' | 'unknown';
  /** The workload's index in `ir.workloads` (kind `workload`). */
  readonly workload?: number;
  /** The IP lists that hold the address, by name, sorted (any kind). */
  readonly iplists: readonly string[];
  /** No workload, and outside the internal ranges. */
  readonly external: boolean;
}

/** The private and special-use ranges that count as internal: RFC 1918, CGNAT, loopback, link-local, unique-local. */
export const INTERNAL_RANGES: readonly string[] = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '::1/128', 'fc00::/7', 'fe80::/10'];

/** Options of {@link Attributor}. */
export interface AttributorOptions {
  /** More prefixes that count as internal (your own public ranges). */
  readonly internal?: readonly Prefix[];
}

/** Attributes addresses to workloads, IP lists or nothing; memoized per address. */
export class Attributor {
  private readonly internal: IpSet;
  private readonly lists: readonly { name: string; set: IpSet }[];
  private readonly memo4 = new Map<number, EndInfo>();
  private readonly memo6 = new Map<bigint, EndInfo>();

  constructor(
    readonly ir: Ir,
    options: AttributorOptions = {},
  ) {
    const prefixes = INTERNAL_RANGES.map((s) => (parsePrefix(s) as { prefix: Prefix }).prefix);
    this.internal = IpSet.fromPrefixes([...prefixes, ...(options.internal ?? [])]);
    this.lists = [...ir.policy.iplists.values()].map((l) => ({ name: l.name, set: l.set })).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** What the address is. */
  end(a: Addr): EndInfo {
    const memo = typeof a === 'number' ? this.memo4 : this.memo6;
    let e = (memo as Map<Addr, EndInfo>).get(a);
    if (!e) {
      const w = this.ir.workloadLookup.lookup(a);
      const iplists = this.lists.filter((l) => l.set.has(a)).map((l) => l.name);
      e = w !== undefined ? { kind: 'workload', workload: w, iplists, external: false } : { kind: iplists.length > 0 ? 'iplist' : 'unknown', iplists, external: !this.internal.has(a) };
      if (memo.size < 1 << 20) (memo as Map<Addr, EndInfo>).set(a, e);
    }
    return e;
  }

  /** Whether the address is in the internal ranges. */
  isInternal(a: Addr): boolean {
    return this.internal.has(a);
  }
}

// ---------------------------------------------------------------- the server side

/** The folded ICMP "port" of a source that logs no ICMP type (AWS): type and code 255. */
export const ICMP_UNKNOWN = 65535;

/** Codes of {@link ServerInference.orient}: which end of the record as reported is the server. */
export const SERVER = { dst: 1, src: 2 } as const;

/** Why a side was chosen, for reporting; the index is the code {@link ServerInference.reasons} counts. */
export const SERVER_REASONS = ['initiator', 'tcp-flags', 'listener', 'port-class', 'lower-port', 'icmp', 'other-protocol'] as const;

/** Registered ports (1024 and up) of common services, taken as server ports like the well-known ones. */
export const COMMON_SERVICE_PORTS: readonly number[] = [
  1080, 1194, 1433, 1434, 1521, 1723, 1812, 1813, 2049, 2181, 2375, 2376, 2379, 2380, 3000, 3128, 3268, 3269, 3306, 3389, 4369, 4789, 5000, 5044, 5060,
  5061, 5432, 5601, 5672, 5683, 5900, 5984, 5985, 5986, 6379, 6443, 6514, 7000, 7001, 7077, 7199, 7474, 8000, 8008, 8080, 8081, 8086, 8088, 8123, 8200, 8300,
  8301, 8443, 8500, 8883, 8888, 9000, 9042, 9090, 9092, 9093, 9100, 9102, 9200, 9300, 9418, 9443, 10250, 11211, 15672, 25565, 27017, 27018, 50000,
];

/** A port range of a port protocol: [protocol, first, last]. */
export type PortRange = readonly [number, number, number];

/** The port ranges of a policy's services that name server ports: tcp, udp and sctp ranges up to 1024 ports wide (a whole protocol or a wide range says nothing about one port). */
export function servicePortRanges(policy: Pick<Policy, 'services'>): PortRange[] {
  const out: PortRange[] = [];
  for (const s of policy.services.values()) {
    for (const e of s.conns.entries()) {
      if (PORT_PROTOS[e.proto] === undefined) continue;
      for (const [lo, hi] of e.ranges) if (hi - lo < 1024) out.push([e.proto, lo, hi]);
    }
  }
  return out;
}

/** Options of {@link ServerInference}. */
export interface ServerInferenceOptions {
  /** Distinct peers an address and port must have to count as listening (default 3). */
  readonly minPeers?: number;
  /** The first ephemeral port (default 32768, Linux's default range start). */
  readonly ephemeralFrom?: number;
  /** Slots of the listening-evidence table, a power of two (default 2^18). */
  readonly tableSize?: number;
}

const PORT_PROTOS: Record<number, number> = { 6: 0, 17: 1, 132: 2 };
const AWS = formatId('aws-vpc');

function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Decides the server side of flows. Keeps listening evidence as it goes (a
 * bounded table of address, protocol and port to the number of distinct
 * peers seen, approximated by counting changes of peer), so later flows are
 * judged with what earlier ones showed.
 */
export class ServerInference {
  /** Per port protocol (tcp, udp, sctp): the class of each port, 0 (ephemeral) to 4 (a policy service port). */
  private readonly classes: Uint8Array[];
  private readonly minPeers: number;
  private readonly mask: number;
  private readonly tKey: Uint32Array;
  private readonly tSub: Uint32Array;
  private readonly tPeer: Uint32Array;
  private readonly tCount: Uint16Array;
  /** How many records each reason decided ({@link SERVER_REASONS} order). */
  readonly reasons = new Float64Array(SERVER_REASONS.length);
  private readonly one = new FlowBatch(1);

  /**
   * @param policy its services' ports count as server ports (ranges up to
   * 1024 ports wide); or those ports given as {@link servicePortRanges} (what
   * crosses a worker boundary).
   */
  constructor(policy?: Pick<Policy, 'services'> | readonly PortRange[], options: ServerInferenceOptions = {}) {
    this.minPeers = options.minPeers ?? 3;
    const eph = options.ephemeralFrom ?? 32768;
    const size = options.tableSize ?? 1 << 18;
    if ((size & (size - 1)) !== 0) throw new RangeError(`the table size must be a power of two, not ${size}`);
    this.mask = size - 1;
    this.tKey = new Uint32Array(size);
    this.tSub = new Uint32Array(size);
    this.tPeer = new Uint32Array(size);
    this.tCount = new Uint16Array(size);
    const base = new Uint8Array(65536);
    for (let p = 1; p < 65536; p++) base[p] = p < 1024 ? 3 : p < eph ? 1 : 0;
    for (const p of COMMON_SERVICE_PORTS) if (base[p] < 3) base[p] = 3;
    this.classes = [base.slice(), base.slice(), base.slice()];
    const ranges = policy === undefined ? [] : Array.isArray(policy) ? (policy as readonly PortRange[]) : servicePortRanges(policy as Pick<Policy, 'services'>);
    for (const [proto, lo, hi] of ranges) {
      const k = PORT_PROTOS[proto];
      if (k !== undefined) for (let p = Math.max(1, lo); p <= hi; p++) this.classes[k][p] = 4;
    }
  }

  /** The class of a port of a port protocol: 0 ephemeral, 1 registered, 3 well-known or common service, 4 a policy service port. */
  portClass(proto: number, port: number): number {
    const k = PORT_PROTOS[proto];
    return k === undefined ? 0 : this.classes[k][port];
  }

  /** Counts `peer` for (addr, proto, port); returns the distinct peers so far (approximate). */
  private touch(addr: number, sub: number, peer: number): number {
    const m = this.mask;
    let slot = mix(addr ^ Math.imul(sub, 0x9e3779b1)) & m;
    let victim = -1;
    for (let probe = 0; probe < 4; probe++, slot = (slot + 1) & m) {
      const c = this.tCount[slot];
      if (c === 0) {
        this.tKey[slot] = addr;
        this.tSub[slot] = sub;
        this.tPeer[slot] = peer;
        this.tCount[slot] = 1;
        return 1;
      }
      if (this.tKey[slot] === addr && this.tSub[slot] === sub) {
        if (this.tPeer[slot] !== peer) {
          this.tPeer[slot] = peer;
          if (c < 65535) this.tCount[slot] = c + 1;
          return c + 1;
        }
        return c;
      }
      if (c <= 1 && victim < 0) victim = slot;
    }
    if (victim >= 0) {
      this.tKey[victim] = addr;
      this.tSub[victim] = sub;
      this.tPeer[victim] = peer;
      this.tCount[victim] = 1;
    }
    return 1;
  }

  /**
   * Decides every row of the batch: `out[i]` is {@link SERVER}.dst or
   * {@link SERVER}.src. Learns listening evidence from the rows as it goes.
   */
  orient(b: FlowBatch, out: Uint8Array): void {
    const n = b.length;
    const reasons = this.reasons;
    for (let i = 0; i < n; i++) {
      const proto = b.proto[i];
      const k = PORT_PROTOS[proto];
      if (k === undefined) {
        if (proto === 1 || proto === 58) {
          // AWS logs no ICMP type (ports 0): each direction stands as reported.
          const type = b.format[i] === AWS ? -1 : b.dstPort[i] >>> 8;
          out[i] = (proto === 1 && type === 0) || (proto === 58 && type === 129) ? SERVER.src : SERVER.dst;
          reasons[5]++;
        } else {
          out[i] = SERVER.dst;
          reasons[6]++;
        }
        continue;
      }
      const sp = b.srcPort[i];
      const dp = b.dstPort[i];
      // Evidence first (it must be gathered from every row), as 32-bit address digests.
      const fam = b.v6[i];
      let sa: number;
      let da: number;
      if (fam & V6.src) {
        const w = i * 4;
        sa = mix(b.src6[w] ^ mix(b.src6[w + 1] ^ mix(b.src6[w + 2] ^ mix(b.src6[w + 3]))));
      } else sa = b.src4[i];
      if (fam & V6.dst) {
        const w = i * 4;
        da = mix(b.dst6[w] ^ mix(b.dst6[w + 1] ^ mix(b.dst6[w + 2] ^ mix(b.dst6[w + 3]))));
      } else da = b.dst4[i];
      const sub = proto << 16;
      const sPeers = this.touch(sa, sub | sp, da);
      const dPeers = this.touch(da, sub | dp, sa);
      const ini = b.initiator[i];
      if (ini !== INITIATOR.unknown) {
        out[i] = ini === INITIATOR.src ? SERVER.dst : SERVER.src;
        reasons[0]++;
        continue;
      }
      const flags = b.tcpFlags[i];
      if (proto === 6 && flags >= 0) {
        if ((flags & 0x12) === 0x02) {
          out[i] = SERVER.dst;
          reasons[1]++;
          continue;
        }
        if ((flags & 0x12) === 0x12 && b.format[i] === AWS) {
          out[i] = SERVER.src;
          reasons[1]++;
          continue;
        }
      }
      const cls = this.classes[k];
      const sc = cls[sp];
      const dc = cls[dp];
      // A service or well-known port against an ephemeral one: no evidence overturns that
      // (a busy client reuses ephemeral ports across many peers over a week).
      if (dc >= 3 && sc === 0) {
        out[i] = SERVER.dst;
        reasons[3]++;
        continue;
      }
      if (sc >= 3 && dc === 0) {
        out[i] = SERVER.src;
        reasons[3]++;
        continue;
      }
      const min = this.minPeers;
      if (dPeers >= min && dPeers >= 2 * sPeers) {
        out[i] = SERVER.dst;
        reasons[2]++;
        continue;
      }
      if (sPeers >= min && sPeers >= 2 * dPeers) {
        out[i] = SERVER.src;
        reasons[2]++;
        continue;
      }
      if (sc !== dc) {
        out[i] = dc > sc ? SERVER.dst : SERVER.src;
        reasons[3]++;
        continue;
      }
      out[i] = sp < dp ? SERVER.src : SERVER.dst;
      reasons[4]++;
    }
  }

  /** The server side of one record (the slow path, for tests and single flows). */
  serverSide(r: FlowRecord): 'src' | 'dst' {
    const batch = this.one;
    batch.length = 1;
    batch.set(0, r);
    const out = new Uint8Array(1);
    this.orient(batch, out);
    return out[0] === SERVER.src ? 'src' : 'dst';
  }
}

/** A flow with the client's port folded away: the edge it counts toward. */
export interface FoldedFlow {
  readonly client: Addr;
  readonly server: Addr;
  readonly proto: number;
  /** The server's port; for ICMP `type * 256 + code`, echo replies folded into requests. */
  readonly port: number;
}

/** Folds a record, given its server side. */
export function fold(r: FlowRecord, server: 'src' | 'dst'): FoldedFlow {
  let port = server === 'dst' ? r.dstPort : r.srcPort;
  if (r.proto === 1 || r.proto === 58) {
    port = r.format === 'aws-vpc' ? ICMP_UNKNOWN : r.dstPort;
    const type = port >>> 8;
    if (r.proto === 1 && type === 0) port = 8 * 256 + (port & 255);
    if (r.proto === 58 && type === 129) port = 128 * 256 + (port & 255);
  }
  return server === 'dst' ? { client: r.src, server: r.dst, proto: r.proto, port } : { client: r.dst, server: r.src, proto: r.proto, port };
}

/**
 * The folded server port of every row of a batch, given its server sides
 * (from {@link ServerInference.orient}): the server's port, or for ICMP the
 * message (`type * 256 + code`) with echo replies folded into requests.
 */
export function foldPorts(b: FlowBatch, server: Uint8Array, out: Uint16Array): void {
  for (let i = 0; i < b.length; i++) {
    const proto = b.proto[i];
    if (proto === 1 || proto === 58) {
      let p = b.dstPort[i];
      // AWS logs no ICMP type: 65535 (type and code 255, reserved) stands for "some ICMP".
      if (b.format[i] === AWS) p = ICMP_UNKNOWN;
      const type = p >>> 8;
      if (proto === 1 && type === 0) p = 2048 + (p & 255);
      else if (proto === 58 && type === 129) p = 32768 + (p & 255);
      out[i] = p;
    } else out[i] = server[i] === SERVER.src ? b.srcPort[i] : b.dstPort[i];
  }
}
