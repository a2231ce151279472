/**
 * The application dependency map: stored edges (client, server, protocol,
 * port) attributed to their ends and grouped by workload or by any set of
 * label keys (for example app and env). Each map edge carries its ports,
 * flow, packet and byte counts, first and last seen, and what the policy
 * would do with its flows; ends that are no workload are IP lists, unknown
 * internal addresses (by /24 or /64) or unknown external ones, and are
 * flagged.
 */
import { protocolName } from '../netset/connset.js';
import { formatAddr, formatPrefix, makePrefix, type Addr, type Prefix } from '../netset/ip.js';
import type { Ir } from '../policy/ir.js';
import { Evaluator } from '../engine/evaluate.js';
import { VERDICTS, type Verdict } from '../engine/combine.js';
import { Attributor } from './attribute.js';

/** One aggregated edge, as the flow store keeps it (defined in the model, beside the other shared shapes). */
export type { FlowEdge as Edge } from '../model/types.js';
import type { FlowEdge as Edge } from '../model/types.js';

/** How to build the map. */
export interface MapOptions {
  /** `workload`, or label keys to group by (`['app', 'env']`). */
  readonly by: 'workload' | readonly string[];
  /** Keep edges with an end whose label has one of these values (`env` and `app` filters; any key works). */
  readonly labels?: Readonly<Record<string, readonly string[]>>;
  /** Keep only these connections (protocol and port). */
  readonly ports?: readonly { proto: number; port: number }[];
  /** More prefixes that count as internal. */
  readonly internal?: readonly Prefix[];
  /** Drop map edges with fewer flows. */
  readonly minFlows?: number;
  /** Judge each connection against the policy (default true). */
  readonly verdicts?: boolean;
}

/** What a node stands for. */
export type NodeKind = 'workload' | 'group' | 'iplist' | 'unknown' | 'external';

/** A node of the map. */
export interface MapNode {
  readonly id: string;
  readonly label: string;
  readonly kind: NodeKind;
  /** The workload's labels, or the group's values of the `by` keys. */
  readonly labels: Readonly<Record<string, string>>;
  /** Workloads in the node (1 for a workload, the group's members seen in flows). */
  readonly workloads: number;
  /** Distinct addresses seen. */
  readonly addresses: number;
  /** An address outside the internal ranges that is no workload. */
  readonly external: boolean;
  /** Addresses that are no workload and in no IP list. */
  readonly unknown: boolean;
}

/** One connection of a map edge. */
export interface MapPort {
  readonly proto: number;
  readonly port: number;
  /** `5432/tcp`, `8/icmp`, `proto 47`. */
  readonly name: string;
  readonly flows: number;
  readonly bytes: number;
}

/** An edge of the map: a client node to a server node. */
export interface MapEdge {
  readonly from: string;
  readonly to: string;
  /** By flows, most first. */
  readonly ports: readonly MapPort[];
  readonly flows: number;
  readonly packets: number;
  readonly bytes: number;
  readonly rejected: number;
  readonly first: number;
  readonly last: number;
  /** Flows by what the policy would do with them (absent when not judged). */
  readonly verdicts?: Readonly<Partial<Record<Verdict, number>>>;
  /** The rules that would block or potentially block some of its flows. */
  readonly denyingRules?: readonly string[];
}

/** The map. */
export interface FlowMap {
  readonly by: string;
  readonly nodes: readonly MapNode[];
  readonly edges: readonly MapEdge[];
  /** The first and last times of the flows in the map, epoch ms (0 when empty). */
  readonly first: number;
  readonly last: number;
  readonly flows: number;
  readonly bytes: number;
}

/** A connection's name: `5432/tcp`, `53/udp`, `8/icmp`, `3:4/icmp`, `proto 47`. */
export function portName(proto: number, port: number): string {
  const name = protocolName(proto);
  if (proto === 1 || proto === 58) {
    if (port === 65535) return name ?? `proto ${proto}`; // a source that logs no ICMP type
    const type = port >>> 8;
    const code = port & 255;
    return `${code ? `${type}:${code}` : type}/${name}`;
  }
  if (proto === 6 || proto === 17 || proto === 132) return `${port}/${name}`;
  return name ?? `proto ${proto}`;
}

interface NodeAcc {
  id: string;
  label: string;
  kind: NodeKind;
  labels: Record<string, string>;
  workloads: Set<number>;
  addresses: Set<string>;
  external: boolean;
  unknown: boolean;
}

interface EdgeAcc {
  from: string;
  to: string;
  ports: Map<number, { proto: number; port: number; flows: number; bytes: number }>;
  flows: number;
  packets: number;
  bytes: number;
  rejected: number;
  first: number;
  last: number;
  verdicts: number[];
  rules: Set<string>;
}

/** Builds the map from stored edges and the policy's IR. */
export function buildMap(input: readonly Edge[], ir: Ir, options: MapOptions): FlowMap {
  const at = new Attributor(ir, { internal: options.internal });
  const byKeys = options.by === 'workload' ? undefined : [...options.by];
  const evaluator = options.verdicts === false ? undefined : new Evaluator(ir);
  const nodes = new Map<string, NodeAcc>();
  const edges = new Map<string, EdgeAcc>();
  const portKeep = options.ports ? new Set(options.ports.map((p) => p.proto * 65536 + p.port)) : undefined;
  const labelFilter = options.labels ? Object.entries(options.labels).filter(([, v]) => v.length > 0) : [];

  const nodeOf = (a: Addr): { node: NodeAcc; labels: Readonly<Record<string, string>> | undefined } => {
    const e = at.end(a);
    let id: string;
    let make: () => NodeAcc;
    let labels: Readonly<Record<string, string>> | undefined;
    if (e.kind === 'workload') {
      const w = ir.workloads[e.workload!];
      labels = w.labels;
      if (!byKeys) {
        id = `w:${w.name}`;
        make = () => ({ id, label: w.name, kind: 'workload', labels: { ...w.labels }, workloads: new Set(), addresses: new Set(), external: false, unknown: false });
      } else {
        const values = byKeys.map((k) => w.labels[k] ?? '-');
        id = `g:${byKeys.map((k, i) => `${k}=${values[i]}`).join(',')}`;
        make = () => ({ id, label: values.join(' / '), kind: 'group', labels: Object.fromEntries(byKeys.map((k, i) => [k, values[i]])), workloads: new Set(), addresses: new Set(), external: false, unknown: false });
      }
    } else if (e.kind === 'iplist') {
      const names = e.iplists.join('+');
      id = `l:${names}`;
      make = () => ({ id, label: names, kind: 'iplist', labels: {}, workloads: new Set(), addresses: new Set(), external: false, unknown: false });
    } else if (e.external) {
      id = 'x:external';
      make = () => ({ id, label: 'external (unknown)', kind: 'external', labels: {}, workloads: new Set(), addresses: new Set(), external: true, unknown: true });
    } else {
      const net = formatPrefix(makePrefix(a, typeof a === 'number' ? 24 : 64));
      id = `u:${net}`;
      make = () => ({ id, label: `unknown ${net}`, kind: 'unknown', labels: {}, workloads: new Set(), addresses: new Set(), external: false, unknown: true });
    }
    let n = nodes.get(id);
    if (!n) nodes.set(id, (n = make()));
    if (e.kind === 'workload') n.workloads.add(e.workload!);
    if (e.external) n.external = true;
    if (n.addresses.size < 100000) n.addresses.add(formatAddr(a));
    return { node: n, labels };
  };

  for (const r of input) {
    if (portKeep && !portKeep.has(r.proto * 65536 + r.port)) continue;
    if (labelFilter.length > 0) {
      const le = (a: Addr) => {
        const e = at.end(a);
        return e.kind === 'workload' ? ir.workloads[e.workload!].labels : undefined;
      };
      const cl = le(r.client);
      const sl = le(r.server);
      const ok = labelFilter.every(([k, vals]) => (cl !== undefined && vals.includes(cl[k])) || (sl !== undefined && vals.includes(sl[k])));
      if (!ok) continue;
    }
    const c = nodeOf(r.client).node;
    const s = nodeOf(r.server).node;
    const key = `${c.id}\u0000${s.id}`;
    let e = edges.get(key);
    if (!e) edges.set(key, (e = { from: c.id, to: s.id, ports: new Map(), flows: 0, packets: 0, bytes: 0, rejected: 0, first: Infinity, last: -Infinity, verdicts: [0, 0, 0, 0], rules: new Set() }));
    const pk = r.proto * 65536 + r.port;
    let p = e.ports.get(pk);
    if (!p) e.ports.set(pk, (p = { proto: r.proto, port: r.port, flows: 0, bytes: 0 }));
    p.flows += r.flows;
    p.bytes += r.bytes;
    e.flows += r.flows;
    e.packets += r.packets;
    e.bytes += r.bytes;
    e.rejected += r.rejected;
    if (r.first < e.first) e.first = r.first;
    if (r.last > e.last) e.last = r.last;
    // A source that logs no ICMP type (port 65535) cannot be judged.
    if (evaluator && !((r.proto === 1 || r.proto === 58) && r.port === 65535)) {
      const code = evaluator.decideCode(r.client, r.server, r.proto, r.port);
      const v = code & 3;
      e.verdicts[v] += r.flows;
      const rule = (code >>> 4) - 1;
      if ((v === 1 || v === 2) && rule >= 0) e.rules.add(ir.rules[rule].rule.id);
      else if (v === 1 || v === 2) e.rules.add('(default deny)');
    }
  }

  const minFlows = options.minFlows ?? 0;
  const kept = [...edges.values()].filter((e) => e.flows >= minFlows);
  const used = new Set<string>();
  for (const e of kept) {
    used.add(e.from);
    used.add(e.to);
  }
  const outNodes: MapNode[] = [...nodes.values()]
    .filter((n) => used.has(n.id))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((n) => ({ id: n.id, label: n.label, kind: n.kind, labels: n.labels, workloads: n.workloads.size, addresses: n.addresses.size, external: n.external, unknown: n.unknown }));
  const outEdges: MapEdge[] = kept
    .sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : a.to < b.to ? -1 : a.to > b.to ? 1 : 0))
    .map((e) => {
      const ports = [...e.ports.values()]
        .sort((a, b) => b.flows - a.flows || a.proto - b.proto || a.port - b.port)
        .map((p) => ({ proto: p.proto, port: p.port, name: portName(p.proto, p.port), flows: p.flows, bytes: p.bytes }));
      const verdicts: Partial<Record<Verdict, number>> = {};
      e.verdicts.forEach((n, i) => {
        if (n > 0) verdicts[VERDICTS[i]] = n;
      });
      return {
        from: e.from,
        to: e.to,
        ports,
        flows: e.flows,
        packets: e.packets,
        bytes: e.bytes,
        rejected: e.rejected,
        first: e.first,
        last: e.last,
        ...(evaluator ? { verdicts, denyingRules: [...e.rules].sort() } : {}),
      };
    });
  let first = Infinity;
  let last = -Infinity;
  let flows = 0;
  let bytes = 0;
  for (const e of outEdges) {
    first = Math.min(first, e.first);
    last = Math.max(last, e.last);
    flows += e.flows;
    bytes += e.bytes;
  }
  return { by: byKeys ? byKeys.join(',') : 'workload', nodes: outNodes, edges: outEdges, first: Number.isFinite(first) ? first : 0, last: Number.isFinite(last) ? last : 0, flows, bytes };
}
