/**
 * Connections as Kubernetes policies see them: TCP, UDP and SCTP ports
 * 1–65535, held in bulkhead's {@link ConnSet}, and np-guard's text form of
 * them (`All Connections`, `TCP 80-81,UDP 53`).
 */
import { ConnSet, PROTOCOLS } from '../netset/connset.js';
import type { K8sProtocol } from './cluster.js';

/** The protocol number of a Kubernetes protocol. */
export const PROTOCOL_NUMBER: Readonly<Record<K8sProtocol, number>> = Object.freeze({ TCP: PROTOCOLS.tcp, UDP: PROTOCOLS.udp, SCTP: PROTOCOLS.sctp });

/** Every port (1–65535) of one protocol. */
export function protocolConns(p: K8sProtocol): ConnSet {
  return ConnSet.ports(PROTOCOL_NUMBER[p], 1, 65535);
}

/** Everything a Kubernetes policy can speak of: TCP, UDP and SCTP, ports 1–65535. */
export const K8S_ALL: ConnSet = protocolConns('TCP').union(protocolConns('UDP')).union(protocolConns('SCTP'));

/** Ports `lo..hi` of a protocol, clipped to 1–65535 (empty when nothing is left). */
export function portConns(p: K8sProtocol, lo: number, hi: number): ConnSet {
  const a = Math.max(1, lo);
  const b = Math.min(65535, hi);
  return a > b ? ConnSet.EMPTY : ConnSet.ports(PROTOCOL_NUMBER[p], a, b);
}

/**
 * np-guard's text of a connection set (`ConnStrFromConnProperties`):
 * `All Connections` when every port of TCP, UDP and SCTP is in it, else
 * `<PROTO> <ranges>` items joined by `,`, in the order SCTP, TCP, UDP, with
 * ranges `N` or `S-E` joined by `,`; the empty set is `No Connections`.
 */
export function formatConns(c: ConnSet): string {
  if (K8S_ALL.isSubset(c)) return 'All Connections';
  const items: string[] = [];
  for (const p of ['SCTP', 'TCP', 'UDP'] as const) {
    const part = c.intersect(protocolConns(p));
    if (part.isEmpty()) continue;
    const ranges = part.entries()[0].ranges.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`));
    items.push(`${p} ${ranges.join(',')}`);
  }
  return items.length === 0 ? 'No Connections' : items.join(',');
}
