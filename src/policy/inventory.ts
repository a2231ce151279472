/**
 * Inventory files: CSV (a header row; `name`, `addresses`, optional `kind`,
 * `managed`, `mode`, every other column a label) and JSON (`{"workloads":
 * [...]}` or a bare array). A bad row is reported and skipped; the rest load.
 */
import { parse as parseCsv } from 'csv-parse/sync';
import type { z } from 'zod';
import { q, type Diagnostics, type Loc } from '../model/diagnostic.js';
import { reportIssues } from './issues.js';
import type { WorkloadInput } from './schema.js';
import { parseYamlFile, type Path, type SourceFile } from './source.js';

/** A workload read from an inventory file, and how to locate its fields. */
export interface InventoryRow {
  readonly value: WorkloadInput;
  readonly locate: (path: Path, key?: boolean) => Loc | undefined;
}

const FIXED = new Set(['name', 'addresses', 'kind', 'managed', 'mode', 'description']);

/** Reads one inventory file. */
export function parseInventory(file: SourceFile, schema: z.ZodType<WorkloadInput>, diags: Diagnostics): InventoryRow[] {
  if (/\.json$/i.test(file.path)) return parseJsonInventory(file, schema, diags);
  return parseCsvInventory(file, schema, diags);
}

function parseJsonInventory(file: SourceFile, schema: z.ZodType<WorkloadInput>, diags: Diagnostics): InventoryRow[] {
  const out: InventoryRow[] = [];
  for (const doc of parseYamlFile(file, diags)) {
    const data = doc.data as unknown;
    const base: Path = Array.isArray(data) ? [] : ['workloads'];
    const list = Array.isArray(data) ? data : (data as { workloads?: unknown } | null)?.workloads;
    if (!Array.isArray(list)) {
      diags.error('BH003', 'expected a list of workloads, or a map with `workloads`', doc.locate([]));
      continue;
    }
    list.forEach((item, i) => {
      const r = schema.safeParse(item);
      if (!r.success) reportIssues(r.error.issues, { doc, base: [...base, i], data: item, what: 'workload', schema }, diags);
      else out.push({ value: r.data, locate: (p, k) => doc.locate([...base, i, ...p], k) });
    });
  }
  return out;
}

/** Columns (1-based, end exclusive) of field `index` in one raw CSV line. */
function fieldColumns(raw: string, index: number): { col: number; endCol: number } {
  let field = 0;
  let quoted = false;
  let start = index === 0 ? 0 : -1;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === '"') quoted = !quoted;
    else if (c === ',' && !quoted) {
      if (field === index) return { col: start + 1, endCol: i + 1 };
      field++;
      if (field === index) start = i + 1;
    }
  }
  return start >= 0 ? { col: start + 1, endCol: raw.length + 1 } : { col: 1, endCol: 2 };
}

function parseCsvInventory(file: SourceFile, schema: z.ZodType<WorkloadInput>, diags: Diagnostics): InventoryRow[] {
  let header: string[] = [];
  const skipped: { line: number; message: string }[] = [];
  let records: { record: Record<string, string>; info: { lines: number; raw?: string } }[];
  try {
    records = parseCsv(file.text, {
      columns: (h: string[]) => (header = h.map((c) => c.trim())),
      info: true,
      raw: true,
      bom: true,
      trim: true,
      skip_empty_lines: true,
      comment: '#',
      relax_column_count: false,
      skip_records_with_error: true,
      on_skip: (err: { message: string; lines?: number } | undefined) => {
        if (err) skipped.push({ line: err.lines ?? 0, message: err.message });
      },
    }) as typeof records;
  } catch (e) {
    diags.error('BH801', `cannot read CSV: ${(e as Error).message.replace(/\.$/, '')}`, { file: file.path, line: 1, col: 1 });
    return [];
  }
  for (const s of skipped) diags.error('BH801', `row skipped: ${s.message.replace(/\.$/, '').replace(/^./, (c) => c.toLowerCase())}`, { file: file.path, line: s.line, col: 1 });
  for (const col of ['name', 'addresses']) {
    if (!header.includes(col)) {
      diags.error('BH801', `inventory ${q(file.path)} has no ${q(col)} column`, { file: file.path, line: 1, col: 1 }, `the header row needs \`name\` and \`addresses\`; found ${header.map(q).join(', ')}`);
      return [];
    }
  }
  const out: InventoryRow[] = [];
  for (const { record, info } of records) {
    const raw = (info.raw ?? '').replace(/\r?\n$/, '');
    const line = info.lines - (raw.match(/\n/g)?.length ?? 0);
    const at = (column: string): Loc => ({ file: file.path, line, ...fieldColumns(raw, Math.max(0, header.indexOf(column))) });
    const labels: Record<string, string> = {};
    for (const col of header) if (!FIXED.has(col) && record[col] !== '') labels[col] = record[col];
    const item: Record<string, unknown> = {
      name: record.name,
      addresses: record.addresses.split(/[\s;]+/).filter((a) => a !== ''),
      labels,
    };
    if (record.kind) item.kind = record.kind;
    if (record.mode) item.mode = record.mode;
    if (record.description) item.description = record.description;
    if (record.managed) {
      const m = record.managed.toLowerCase();
      if (!['true', 'false', 'yes', 'no'].includes(m)) {
        diags.error('BH801', `${q(record.managed)} is not a valid value for \`managed\``, at('managed'), 'write `true` or `false`');
        continue;
      }
      item.managed = m === 'true' || m === 'yes';
    }
    const r = schema.safeParse(item);
    if (!r.success) {
      for (const issue of r.error.issues) {
        const column = String(issue.path[0] ?? 'name');
        const label = issue.path[0] === 'labels' ? String(issue.path[1]) : column;
        diags.error('BH801', `invalid ${q(label)} in inventory row: ${issue.message.toLowerCase().replace(/\.$/, '')}`, at(label));
      }
      continue;
    }
    out.push({
      value: r.data,
      locate: (p) => {
        if (p[0] === 'labels') return at(String(p[1]));
        return at(String(p[0] ?? 'name'));
      },
    });
  }
  return out;
}
