/**
 * Service entries: `443/tcp`, `8000-8100/tcp`, `tcp`, `8/icmp`, `3:4/icmp`,
 * `any`, or `{proto, ports | type, code}`, to connection sets.
 */
import { ConnSet, PROTOCOLS } from '../netset/connset.js';
import { q } from '../model/diagnostic.js';
import type { PortEntryInput } from './schema.js';

export type PortParse = { ok: true; conns: ConnSet } | { ok: false; message: string; help?: string };

const PORT_PROTOS = new Set(['tcp', 'udp', 'sctp']);
const ICMP_PROTOS = new Set(['icmp', 'icmpv6']);
const PROTO_HELP = 'protocols are `tcp`, `udp`, `sctp`, `icmp`, `icmpv6`, or `any`';

function protoNumber(name: string): number | undefined {
  return (PROTOCOLS as Record<string, number>)[name];
}

function bad(message: string, help?: string): PortParse {
  return { ok: false, message, help };
}

function portRange(text: string, proto: number): PortParse {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text.trim());
  if (!m) return bad(`${q(text)} is not a port or port range`, 'write a port such as `443` or a range such as `8000-8100`');
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo > 65535 || hi > 65535) return bad(`port ${q(lo > 65535 ? lo : hi)} is out of range`, 'ports are 0 to 65535');
  if (lo > hi) return bad(`port range ${q(text)} runs backwards`, `write \`${hi}-${lo}\``);
  return { ok: true, conns: ConnSet.ports(proto, lo, hi) };
}

function icmpType(proto: number, type: number, code: number | undefined, text: string): PortParse {
  if (!Number.isInteger(type) || type < 0 || type > 255) return bad(`ICMP type ${q(type)} in ${q(text)} is out of range`, 'ICMP types are 0 to 255');
  if (code !== undefined && (!Number.isInteger(code) || code < 0 || code > 255)) return bad(`ICMP code ${q(code)} in ${q(text)} is out of range`, 'ICMP codes are 0 to 255');
  return { ok: true, conns: ConnSet.icmp(proto, type, code) };
}

/** Parses one service entry. */
export function parsePortEntry(entry: PortEntryInput): PortParse {
  if (typeof entry === 'string') return parsePortText(entry);
  const name = entry.proto.toLowerCase();
  const proto = protoNumber(name);
  if (proto === undefined) return bad(`unknown protocol ${q(entry.proto)}`, PROTO_HELP);
  if (ICMP_PROTOS.has(name)) {
    if (entry.ports) return bad(`${q(name)} has no ports`, 'use `type` and `code` for ICMP');
    if (entry.type === undefined) return entry.code === undefined ? { ok: true, conns: ConnSet.protocol(proto) } : bad('an ICMP code needs a `type`');
    return icmpType(proto, entry.type, entry.code, `${entry.type}/${name}`);
  }
  if (entry.type !== undefined || entry.code !== undefined) return bad(`${q(name)} has no ICMP type or code`);
  if (!entry.ports) return { ok: true, conns: ConnSet.protocol(proto) };
  let conns = ConnSet.EMPTY;
  for (const p of entry.ports) {
    const r = portRange(p, proto);
    if (!r.ok) return r;
    conns = conns.union(r.conns);
  }
  return { ok: true, conns };
}

/** Parses the text form of a service entry. */
export function parsePortText(raw: string): PortParse {
  const text = raw.trim().toLowerCase();
  if (text === 'any' || text === 'all') return { ok: true, conns: ConnSet.ANY };
  const slash = text.lastIndexOf('/');
  if (slash < 0) {
    const proto = protoNumber(text);
    if (proto !== undefined) return { ok: true, conns: ConnSet.protocol(proto) };
    if (/^\d+(-\d+)?$/.test(text)) return bad(`port ${q(raw)} needs a protocol`, `write \`${text}/tcp\` or \`${text}/udp\``);
    return bad(`${q(raw)} is not a service entry`, 'write `443/tcp`, `8000-8100/tcp`, `53/udp`, `8/icmp`, `tcp` or `any`');
  }
  const what = text.slice(0, slash);
  const name = text.slice(slash + 1);
  const proto = protoNumber(name);
  if (proto === undefined) {
    // `tcp/443` written the other way round is a common slip.
    if (protoNumber(what) !== undefined && /^\d/.test(name)) return bad(`${q(raw)} has port and protocol swapped`, `write \`${name}/${what}\``);
    return bad(`unknown protocol ${q(name)} in ${q(raw)}`, PROTO_HELP);
  }
  if (ICMP_PROTOS.has(name)) {
    const m = /^(\d+)(?::(\d+))?$/.exec(what);
    if (!m) return bad(`${q(raw)} is not an ICMP type`, 'write `<type>/icmp` or `<type>:<code>/icmp`, for example `8/icmp`');
    return icmpType(proto, Number(m[1]), m[2] === undefined ? undefined : Number(m[2]), raw);
  }
  if (!PORT_PROTOS.has(name)) return bad(`${q(name)} has no ports`, `write \`${name}\` alone`);
  return portRange(what, proto);
}
