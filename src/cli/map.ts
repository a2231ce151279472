/**
 * `bulkhead map`: the application dependency map from the flow store, by
 * workload or by label keys, filtered by time, labels and port, written as a
 * table, JSON, Graphviz DOT, Mermaid, GraphML or a self-contained HTML page.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Option, type Command } from 'commander';
import { parsePrefix, type Prefix } from '../netset/ip.js';
import { buildMap, type FlowMap } from '../flows/map.js';
import { mapDot, mapGraphml, mapJson, mapMermaid, mapTable, MAP_FORMATS, type MapFormat } from '../flows/map-render.js';
import { mapHtml } from '../flows/map-html.js';
import { DuckDbFlowStore } from '../store/flows-duckdb.js';
import { EXIT, loadDir, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { parseConnection } from './eval.js';
import { plural, summary } from './render.js';

/** Options of the command. */
export interface MapCliOptions {
  store: string;
  policy: string;
  by: string;
  format: string;
  out?: string;
  since?: string;
  until?: string;
  env?: string[];
  app?: string[];
  label?: string[];
  port?: string[];
  minFlows?: string;
  internal?: string[];
  verdicts: boolean;
  now?: string;
}

/** Renders a map in a format. */
export function renderMap(m: FlowMap, format: MapFormat): string {
  switch (format) {
    case 'table':
      return mapTable(m);
    case 'json':
      return mapJson(m);
    case 'dot':
      return mapDot(m);
    case 'mermaid':
      return mapMermaid(m);
    case 'graphml':
      return mapGraphml(m);
    case 'html':
      return mapHtml(m);
  }
}

/**
 * A time bound: ISO 8601 (`2026-11-16`, `2026-11-16T08:00:00Z`) or a
 * duration before `latest` (`24h`, `7d`, `30m`), epoch ms.
 */
export function parseWhen(s: string, flag: string, latest: number): number {
  const m = /^([0-9]+)(m|h|d|w)$/.exec(s);
  if (m) return latest - Number(m[1]) * { m: 60_000, h: 3600_000, d: 86400_000, w: 604800_000 }[m[2] as 'm' | 'h' | 'd' | 'w'];
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UsageError(`invalid time \`${s}\` for ${flag}: write ISO 8601 (2026-11-16T08:00:00Z) or a duration before the latest flow (24h, 7d)`);
  return t;
}

function list(values: string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
}

/** Runs `bulkhead map`. */
export async function runMap(opts: MapCliOptions, io: Io): Promise<number> {
  const format = opts.format as MapFormat;
  const by = opts.by === 'workload' ? ('workload' as const) : list([opts.by]);
  if (by !== 'workload' && by.length === 0) throw new UsageError('--by needs `workload` or label keys, such as app,env');
  const minFlows = opts.minFlows === undefined ? undefined : Number(opts.minFlows);
  if (minFlows !== undefined && (!Number.isInteger(minFlows) || minFlows < 0)) throw new UsageError(`--min-flows must be a whole number, not \`${opts.minFlows}\``);
  const ports = list(opts.port).map((p) => parseConnection(/\//.test(p) ? p : `${p}/tcp`));
  const internal: Prefix[] = list(opts.internal).map((s) => {
    const r = parsePrefix(s);
    if ('error' in r) throw new UsageError(`invalid --internal \`${s}\`: ${r.error}`);
    return r.prefix;
  });
  const labels: Record<string, string[]> = {};
  if (opts.env) labels.env = list(opts.env);
  if (opts.app) labels.app = list(opts.app);
  for (const l of list(opts.label)) {
    const eq = l.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid --label \`${l}\`: write key=value`);
    (labels[l.slice(0, eq)] ??= []).push(l.slice(eq + 1));
  }
  const c = loadDir(opts.policy, parseNow(opts.now));
  if (c.diagnostics.hasErrors()) {
    printDiagnostics(c.diagnostics.sorted().filter((d) => d.severity === 'error'), c.texts, io);
    io.err(`warning: the policy has problems (${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)}); the map uses what loaded`);
  }
  const store = await DuckDbFlowStore.open(opts.store);
  let text: string;
  let m: FlowMap;
  try {
    const st = await store.stats();
    const latest = st.last ?? Date.now();
    const since = opts.since !== undefined ? parseWhen(opts.since, '--since', latest) : undefined;
    const until = opts.until !== undefined ? parseWhen(opts.until, '--until', latest) : undefined;
    const portFilter = ports.length === 1 ? ports[0] : undefined;
    const edges = await store.edges({ since, until, ...(portFilter ? portFilter : {}) });
    m = buildMap(edges, c.ir, { by, labels, ports: ports.length ? ports : undefined, internal, minFlows, verdicts: opts.verdicts });
    text = renderMap(m, format);
  } finally {
    await store.close();
  }
  if (opts.out) {
    mkdirSync(dirname(opts.out), { recursive: true });
    writeFileSync(opts.out, text);
    io.err(`wrote ${opts.out} (${format}): ${plural(m.nodes.length, 'node')}, ${plural(m.edges.length, 'edge')}, ${plural(m.flows, 'flow')}`);
  } else io.out(text.replace(/\n$/, ''));
  return EXIT.ok;
}

/** Adds `map` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('map')
    .description('the application dependency map from the flow store: who talks to whom, on which ports')
    .requiredOption('--store <file>', 'the flow store (bulkhead ingest writes it)')
    .requiredOption('--policy <dir>', 'the policy directory: workloads, labels and IP lists to attribute addresses to')
    .option('--by <keys>', '`workload`, or label keys to group by (app,env)', 'workload')
    .addOption(new Option('-f, --format <format>', 'output format').choices([...MAP_FORMATS]).default('table'))
    .option('--out <file>', 'write to this file instead of stdout')
    .option('--since <time>', 'only flows from this time (ISO 8601, or 24h / 7d before the latest flow)')
    .option('--until <time>', 'only flows before this time')
    .option('--env <values...>', 'only edges with an end in these environments')
    .option('--app <values...>', 'only edges with an end in these apps')
    .option('--label <key=value...>', 'only edges with an end with this label')
    .option('--port <port/proto...>', 'only these server ports (5432/tcp, 53/udp, 8/icmp)')
    .option('--min-flows <n>', 'leave out edges with fewer flows')
    .option('--internal <prefix...>', 'more prefixes that are ours (not external), beside the private ranges')
    .option('--no-verdicts', 'do not judge the flows against the policy')
    .addOption(new Option('--now <time>', 'judge override expiry at this time (ISO 8601)'))
    .addHelpText(
      'after',
      '\nExamples:\n  bulkhead map --store flows.duckdb --policy examples/estate/policy\n  bulkhead map --store flows.duckdb --policy examples/estate/policy --by app,env --format html --out map.html\n  bulkhead map --store flows.duckdb --policy policy/ --env prod --port 5432/tcp --since 24h --format dot | dot -Tsvg > db.svg',
    )
    .action(async (opts: MapCliOptions) => {
      prog.setOptionValue('exit', await runMap(opts, io));
    });
}
