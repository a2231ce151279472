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
