/**
 * Reading service port entries (docs/POLICY.md, "services") into protocol and
 * port intervals, for sampling flows and for the generator's own checks.
 */
import type { FlowProto, PortEntry, ServiceDoc } from './types.js';

export const PROTOCOLS: readonly FlowProto[] = ['tcp', 'udp', 'sctp', 'icmp', 'icmpv6'];

/** One protocol and an inclusive interval of ports (ICMP: of types; `code` pins an ICMP code). */
export interface PortRange {
  proto: FlowProto;
  lo: number;
  hi: number;
  code?: number;
}

function isProto(s: string): s is FlowProto {
  return (PROTOCOLS as readonly string[]).includes(s);
}

function maxPort(proto: FlowProto): number {
  return proto === 'icmp' || proto === 'icmpv6' ? 255 : 65535;
}

function interval(proto: FlowProto, spec: string, original: string): PortRange {
  const icmp = proto === 'icmp' || proto === 'icmpv6';
  if (icmp && spec.includes(':')) {
    const [t, c] = spec.split(':');
    const type = Number(t);
    const code = Number(c);
    if (!Number.isInteger(type) || !Number.isInteger(code) || type < 0 || type > 255 || code < 0 || code > 255) {
      throw new Error(`bad port entry: ${original}`);
    }
    return { proto, lo: type, hi: type, code };
  }
  const m = /^(\d+)(?:-(\d+))?$/.exec(spec);
  if (!m) throw new Error(`bad port entry: ${original}`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo > hi || hi > maxPort(proto)) throw new Error(`bad port entry: ${original}`);
  return { proto, lo, hi };
}

/** The intervals of one port entry; `any` gives every protocol. */
export function parsePortEntry(entry: PortEntry): PortRange[] {
  if (typeof entry === 'string') {
    const s = entry.trim();
    if (s === 'any') return PROTOCOLS.map((proto) => ({ proto, lo: 0, hi: maxPort(proto) }));
    if (isProto(s)) return [{ proto: s, lo: 0, hi: maxPort(s) }];
    const slash = s.lastIndexOf('/');
    const proto = s.slice(slash + 1);
    if (slash < 0 || !isProto(proto)) throw new Error(`bad port entry: ${entry}`);
    return [interval(proto, s.slice(0, slash), entry)];
  }
  const proto = entry.proto;
  if (!isProto(proto)) throw new Error(`bad protocol in port entry: ${JSON.stringify(entry)}`);
  if (entry.type !== undefined) {
    return [{ proto, lo: entry.type, hi: entry.type, ...(entry.code !== undefined ? { code: entry.code } : {}) }];
  }
  if (!entry.ports || entry.ports.length === 0) return [{ proto, lo: 0, hi: maxPort(proto) }];
  return entry.ports.map((p) => interval(proto, String(p), JSON.stringify(entry)));
}

/** The intervals a rule's `services` list stands for: names resolved through the services section. */
export function resolveServices(
  services: ReadonlyArray<string | PortEntry>,
  byName: ReadonlyMap<string, ServiceDoc>,
): PortRange[] {
  const out: PortRange[] = [];
  for (const s of services) {
    const named = typeof s === 'string' ? byName.get(s) : undefined;
    if (named) for (const e of named.ports) out.push(...parsePortEntry(e));
    else out.push(...parsePortEntry(s));
  }
  return out;
}

export function rangeCovers(ranges: readonly PortRange[], proto: FlowProto, port: number): boolean {
  return ranges.some((r) => r.proto === proto && port >= r.lo && port <= r.hi);
}
