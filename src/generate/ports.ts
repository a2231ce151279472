/**
 * Service entries as intervals to sample flows from. Entries are read by
 * src/policy/ports.ts; this only cuts each entry's connection set into
 * per-protocol intervals, entry by entry in the order written, so that a
 * sample is drawn the same way whatever the protocol numbers are.
 */
import { isIcmp, protocolName, type ConnSet } from '../netset/connset.js';
import { parsePortEntry } from '../policy/ports.js';
import type { FlowProto, PortEntry, ServiceDoc } from './types.js';

/** One protocol and an inclusive interval of ports (ICMP: of types; `code` pins an ICMP code). */
export interface PortRange {
  proto: FlowProto;
  lo: number;
  hi: number;
  code?: number;
}

/** The connections of one entry, as the policy loader reads them; throws when the entry is invalid. */
export function entryConns(entry: PortEntry): ConnSet {
  const r = parsePortEntry(typeof entry === 'string' ? entry : { ...entry, ports: entry.ports?.map(String) });
  if (!r.ok) throw new Error(`bad port entry ${JSON.stringify(entry)}: ${r.message}`);
  return r.conns;
}

/** ICMP `sub` keys `[lo, hi]` (type * 256 + code) as ranges of whole types, or single type and code. */
function icmpRanges(proto: FlowProto, lo: number, hi: number, out: PortRange[]): void {
  let k = lo;
  while (k <= hi) {
    const type = k >>> 8;
    if ((k & 255) === 0 && hi - k >= 255) {
      const last = ((hi + 1) >>> 8) - 1;
      out.push({ proto, lo: type, hi: last });
      k = (last + 1) * 256;
    } else {
      out.push({ proto, lo: type, hi: type, code: k & 255 });
      k++;
    }
  }
}

/** The intervals of a connection set, by protocol number; protocols the language does not name are left out. */
export function connRanges(conns: ConnSet): PortRange[] {
  const out: PortRange[] = [];
  for (const { proto, ranges } of conns.entries()) {
    const name = protocolName(proto);
    if (name === undefined) continue;
    for (const [lo, hi] of ranges) {
      if (isIcmp(proto)) icmpRanges(name, lo, hi, out);
      else out.push({ proto: name, lo, hi });
    }
  }
  return out;
}

/** The intervals a rule's `services` list stands for: names resolved through the services section. Throws on an invalid entry. */
export function resolveServices(
  services: ReadonlyArray<string | PortEntry>,
  byName: ReadonlyMap<string, ServiceDoc>,
): PortRange[] {
  const out: PortRange[] = [];
  for (const s of services) {
    const named = typeof s === 'string' ? byName.get(s) : undefined;
    for (const e of named ? named.ports : [s]) out.push(...connRanges(entryConns(e)));
  }
  return out;
}
