/**
 * Connection sets as the match clauses firewalls understand: whole
 * protocols, port ranges per protocol, ICMP types and type/code ranges.
 * Shared by every backend so each renders the same split.
 */
import { ConnSet, PROTOCOLS } from '../netset/connset.js';

/** One match clause; a connection set is the union of its clauses. */
export type ServiceMatch =
  | { readonly kind: 'any' }
  | { readonly kind: 'proto'; readonly proto: number }
  | { readonly kind: 'ports'; readonly proto: number; readonly ranges: readonly (readonly [number, number])[] }
  /** One ICMP (or ICMPv6) type, with a code range, or every code when `codes` is absent. */
  | { readonly kind: 'icmp'; readonly proto: number; readonly type: number; readonly codes?: readonly [number, number] };

const PORTED = new Set<number>([PROTOCOLS.tcp, PROTOCOLS.udp, PROTOCOLS.sctp]);
const ICMP = new Set<number>([PROTOCOLS.icmp, PROTOCOLS.icmpv6]);

/** Splits a connection set into match clauses. */
export function serviceMatches(conns: ConnSet): ServiceMatch[] {
  if (conns.isAny()) return [{ kind: 'any' }];
  const out: ServiceMatch[] = [];
  for (const e of conns.entries()) {
    const whole = e.ranges.length === 1 && e.ranges[0][0] === 0 && e.ranges[0][1] === 65535;
    if (whole) out.push({ kind: 'proto', proto: e.proto });
    else if (PORTED.has(e.proto)) out.push({ kind: 'ports', proto: e.proto, ranges: e.ranges });
    else if (ICMP.has(e.proto)) {
      for (const [lo, hi] of e.ranges) {
        for (let t = lo >>> 8; t <= hi >>> 8; t++) {
          const a = Math.max(lo, t * 256) & 255;
          const z = Math.min(hi, t * 256 + 255) & 255;
          out.push(a === 0 && z === 255 ? { kind: 'icmp', proto: e.proto, type: t } : { kind: 'icmp', proto: e.proto, type: t, codes: [a, z] });
        }
      }
    } else {
      // INVARIANT (ConnSet): other protocols are always whole.
      out.push({ kind: 'proto', proto: e.proto });
    }
  }
  return out;
}

/** Which address family a clause can apply to: ICMP only to IPv4, ICMPv6 only to IPv6. */
export function familiesOf(m: ServiceMatch): readonly (4 | 6)[] {
  if (m.kind === 'icmp' || m.kind === 'proto') {
    if (m.proto === PROTOCOLS.icmp) return [4];
    if (m.proto === PROTOCOLS.icmpv6) return [6];
  }
  return [4, 6];
}
