/**
 * The map as text: an aligned table, JSON, Graphviz DOT, Mermaid and
 * GraphML. Every output is deterministic (sorted) so it can be diffed and
 * kept as a golden file. The interactive HTML page is in `map-html.ts`.
 */
import type { FlowMap, MapEdge, MapNode } from './map.js';

/** Output formats of `bulkhead map`. */
export const MAP_FORMATS = ['table', 'json', 'dot', 'mermaid', 'graphml', 'html'] as const;
/** A {@link MAP_FORMATS} name. */
export type MapFormat = (typeof MAP_FORMATS)[number];

/** A byte count in B, kB, MB, GB (powers of 1000, one decimal). */
export function humanBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let u = 0;
  let v = n;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** A time as `2026-11-16 08:00` (UTC). */
export function shortTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}

/** The ports of an edge, the first few by flows: `5432/tcp, 22/tcp +3`. */
export function portsText(e: MapEdge, max = 4): string {
  const names = e.ports.slice(0, max).map((p) => p.name);
  return names.join(', ') + (e.ports.length > max ? ` +${e.ports.length - max}` : '');
}

/** Short flags of an edge: what the policy would do and what its ends are. */
export function edgeNotes(e: MapEdge, nodes: ReadonlyMap<string, MapNode>): string {
  const notes: string[] = [];
  const v = e.verdicts;
  if (v) {
    if (v.blocked) notes.push(`blocked ${v.blocked}`);
    if (v['potentially-blocked']) notes.push(`potentially blocked ${v['potentially-blocked']}`);
  }
  if (e.rejected) notes.push(`rejected ${e.rejected}`);
  const from = nodes.get(e.from);
  const to = nodes.get(e.to);
  if (from?.external || to?.external) notes.push('external');
  if (from?.unknown || to?.unknown) notes.push('unknown');
  if (e.denyingRules && e.denyingRules.length > 0) notes.push(`by ${e.denyingRules.join(', ')}`);
  return notes.join('; ');
}

/** An aligned text table, edges by flows (most first). */
export function mapTable(m: FlowMap): string {
  const nodes = new Map(m.nodes.map((n) => [n.id, n]));
  const rows = [...m.edges]
    .sort((a, b) => b.flows - a.flows || (a.from < b.from ? -1 : a.from > b.from ? 1 : a.to < b.to ? -1 : 1))
    .map((e) => [nodes.get(e.from)!.label, nodes.get(e.to)!.label, portsText(e), String(e.flows), humanBytes(e.bytes), shortTime(e.first), shortTime(e.last), edgeNotes(e, nodes)]);
  const head = ['CLIENT', 'SERVER', 'PORTS', 'FLOWS', 'BYTES', 'FIRST SEEN', 'LAST SEEN', 'NOTES'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 3 || i === 4 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const summary = `${m.nodes.length} nodes, ${m.edges.length} edges, ${m.flows} flows, ${humanBytes(m.bytes)}` + (m.flows ? `, ${shortTime(m.first)} to ${shortTime(m.last)} UTC` : '') + ` (by ${m.by})`;
  return [line(head), ...rows.map(line), '', summary].join('\n') + '\n';
}

/** The map as JSON (times as ISO 8601). */
export function mapJson(m: FlowMap): string {
  const iso = (t: number) => (t ? new Date(t).toISOString() : null);
  return (
    JSON.stringify(
      {
        by: m.by,
        first: iso(m.first),
        last: iso(m.last),
        flows: m.flows,
        bytes: m.bytes,
        nodes: m.nodes,
        edges: m.edges.map((e) => ({ ...e, first: iso(e.first), last: iso(e.last) })),
      },
      null,
      2,
    ) + '\n'
  );
}

function dotString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * A fill color for every node: workloads and groups by app (the apps in
 * sorted order take the palette in turn, so few share a color), IP lists
 * and external ends grey.
 */
export function nodeColors(nodes: readonly MapNode[]): Map<string, string> {
  const palette = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#e15759', '#9c755f', '#ff9da7', '#86bcb6', '#8cd17d', '#b6992d', '#499894', '#d37295', '#a0cbe8', '#ffbe7d'];
  const keys = [...new Set(nodes.filter((n) => n.kind === 'workload' || n.kind === 'group').map(nodeColorKey))].sort();
  const byKey = new Map(keys.map((k, i) => [k, palette[i % palette.length]]));
  return new Map(nodes.map((n) => [n.id, n.kind === 'workload' || n.kind === 'group' ? byKey.get(nodeColorKey(n))! : n.external ? '#b0b0b0' : '#d9d9d9']));
}

/** What a node is colored by: its app, else its kind. */
export function nodeColorKey(n: MapNode): string {
  return n.labels.app ?? Object.values(n.labels)[0] ?? n.kind;
}

function edgeColor(e: MapEdge): string {
  if (e.verdicts?.blocked) return '#d62728';
  if (e.verdicts?.['potentially-blocked']) return '#ff7f0e';
  return '#555555';
}

/** Graphviz DOT: boxes for workloads and groups, ellipses for IP lists, dashed for unknown; blocked edges red. */
export function mapDot(m: FlowMap): string {
  const colors = nodeColors(m.nodes);
  const out = ['digraph flows {', '  rankdir=LR;', '  node [fontname="Helvetica", fontsize=10, style=filled, fillcolor="#ffffff"];', '  edge [fontname="Helvetica", fontsize=8];'];
  for (const n of m.nodes) {
    const shape = n.kind === 'workload' || n.kind === 'group' ? 'box' : n.kind === 'iplist' ? 'ellipse' : 'octagon';
    const style = n.unknown ? 'filled,dashed' : 'filled';
    const fill = colors.get(n.id)!;
    out.push(`  ${dotString(n.id)} [label=${dotString(n.label)}, shape=${shape}, style=${dotString(style)}, fillcolor=${dotString(fill)}];`);
  }
  for (const e of m.edges) {
    const color = edgeColor(e);
    out.push(`  ${dotString(e.from)} -> ${dotString(e.to)} [label=${dotString(`${portsText(e, 3)}\n${e.flows} flows`)}, color=${dotString(color)}, fontcolor=${dotString(color)}];`);
  }
  out.push('}');
  return out.join('\n') + '\n';
}

/** Mermaid flowchart (left to right), nodes numbered in id order. */
export function mapMermaid(m: FlowMap): string {
  const ids = new Map(m.nodes.map((n, i) => [n.id, `n${i}`]));
  const esc = (s: string) => s.replace(/"/g, '#quot;');
  const out = ['flowchart LR'];
  for (const n of m.nodes) {
    const id = ids.get(n.id)!;
    const label = esc(n.label);
    out.push(n.kind === 'workload' || n.kind === 'group' ? `  ${id}["${label}"]` : n.kind === 'iplist' ? `  ${id}(["${label}"])` : `  ${id}{{"${label}"}}`);
  }
  m.edges.forEach((e, i) => {
    out.push(`  ${ids.get(e.from)} -->|"${esc(portsText(e, 3))}"| ${ids.get(e.to)}`);
    if (e.verdicts?.blocked) out.push(`  linkStyle ${i} stroke:#d62728,stroke-width:2px`);
    else if (e.verdicts?.['potentially-blocked']) out.push(`  linkStyle ${i} stroke:#ff7f0e,stroke-width:2px`);
  });
  const ext = m.nodes.filter((n) => n.external || n.unknown).map((n) => ids.get(n.id));
  if (ext.length > 0) {
    out.push('  classDef outside fill:#eeeeee,stroke:#999999,stroke-dasharray: 4 2');
    out.push(`  class ${ext.join(',')} outside`);
  }
  return out.join('\n') + '\n';
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** GraphML with node and edge attributes (yEd, Gephi, networkx read it). */
export function mapGraphml(m: FlowMap): string {
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    '  <key id="label" for="node" attr.name="label" attr.type="string"/>',
    '  <key id="kind" for="node" attr.name="kind" attr.type="string"/>',
    '  <key id="labels" for="node" attr.name="labels" attr.type="string"/>',
    '  <key id="external" for="node" attr.name="external" attr.type="boolean"/>',
    '  <key id="unknown" for="node" attr.name="unknown" attr.type="boolean"/>',
    '  <key id="ports" for="edge" attr.name="ports" attr.type="string"/>',
    '  <key id="flows" for="edge" attr.name="flows" attr.type="long"/>',
    '  <key id="bytes" for="edge" attr.name="bytes" attr.type="long"/>',
    '  <key id="first" for="edge" attr.name="first" attr.type="string"/>',
    '  <key id="last" for="edge" attr.name="last" attr.type="string"/>',
    '  <key id="verdict" for="edge" attr.name="verdict" attr.type="string"/>',
    `  <graph id="flows" edgedefault="directed">`,
  ];
  for (const n of m.nodes) {
    out.push(`    <node id="${xml(n.id)}">`);
    out.push(`      <data key="label">${xml(n.label)}</data>`);
    out.push(`      <data key="kind">${n.kind}</data>`);
    out.push(`      <data key="labels">${xml(Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(','))}</data>`);
    out.push(`      <data key="external">${n.external}</data>`);
    out.push(`      <data key="unknown">${n.unknown}</data>`);
    out.push('    </node>');
  }
  m.edges.forEach((e, i) => {
    out.push(`    <edge id="e${i}" source="${xml(e.from)}" target="${xml(e.to)}">`);
    out.push(`      <data key="ports">${xml(e.ports.map((p) => p.name).join(','))}</data>`);
    out.push(`      <data key="flows">${e.flows}</data>`);
    out.push(`      <data key="bytes">${e.bytes}</data>`);
    out.push(`      <data key="first">${new Date(e.first).toISOString()}</data>`);
    out.push(`      <data key="last">${new Date(e.last).toISOString()}</data>`);
    if (e.verdicts) out.push(`      <data key="verdict">${Object.entries(e.verdicts).map(([k, v]) => `${k}:${v}`).join(',')}</data>`);
    out.push('    </edge>');
  });
  out.push('  </graph>', '</graphml>');
  return out.join('\n') + '\n';
}
