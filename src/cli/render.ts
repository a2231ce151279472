/**
 * Renders diagnostics for people (rustc/miette style, with the source line
 * and a caret) and for scripts (JSON).
 */
import type { Diagnostic } from '../model/diagnostic.js';

export interface Style {
  readonly color: boolean;
}

const paint = (on: boolean, code: string, s: string) => (on ? `\u001b[${code}m${s}\u001b[0m` : s);

/** One diagnostic as text, with the offending line when its file text is known. */
export function renderDiagnostic(d: Diagnostic, texts: ReadonlyMap<string, string>, style: Style): string {
  const sev = d.severity === 'error' ? paint(style.color, '1;31', 'error') : paint(style.color, '1;33', 'warning');
  const lines = [`${sev}${paint(style.color, '1', `[${d.code}]: ${d.message}`)}`];
  const gutter = d.loc && d.loc.line > 0 ? String(d.loc.line).length : 1;
  if (d.loc) {
    const { file, line, col } = d.loc;
    lines.push(`${' '.repeat(gutter)}--> ${file}${line > 0 ? `:${line}:${col}` : ''}`);
    const text = texts.get(file);
    const src = text !== undefined && line > 0 ? text.split(/\r?\n/)[line - 1] : undefined;
    if (src !== undefined) {
      const n = String(line);
      const pad = ' '.repeat(n.length);
      const width = Math.max(1, (d.loc.endCol ?? col + 1) - col);
      lines.push(`${pad} |`);
      lines.push(`${n} | ${src}`);
      lines.push(`${pad} | ${' '.repeat(Math.max(0, col - 1))}${paint(style.color, d.severity === 'error' ? '31' : '33', '^'.repeat(width))}`);
    }
  }
  if (d.help) lines.push(`${' '.repeat(gutter)} = help: ${d.help}`);
  return lines.join('\n');
}

/** "1 workload", "2 workloads" */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** "2 errors, 1 warning" */
export function summary(errors: number, warnings: number): string {
  return `${plural(errors, 'error')}, ${plural(warnings, 'warning')}`;
}

/** A diagnostic as plain JSON-friendly data. */
export function diagnosticJson(d: Diagnostic): Record<string, unknown> {
  return {
    code: d.code,
    severity: d.severity,
    message: d.message,
    file: d.loc?.file ?? null,
    line: d.loc && d.loc.line > 0 ? d.loc.line : null,
    column: d.loc && d.loc.line > 0 ? d.loc.col : null,
    help: d.help ?? null,
  };
}

/** Left-aligned columns. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n');
}

/** One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180). */
export function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A Markdown table: the first row is the header; `|` in cells is escaped. */
export function markdownTable(rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return '';
  const cell = (c: string) => c.replace(/\|/g, '\\|');
  const line = (r: readonly string[]) => `| ${r.map(cell).join(' | ')} |`;
  return [line(rows[0]), `|${rows[0].map(() => '---').join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

/** A Graphviz DOT quoted id. */
export function dotId(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** A list shortened after `max` items: `a, b, c +4`. */
export function shortList(items: readonly string[], max = 3): string {
  return items.length > max ? `${items.slice(0, max).join(', ')} +${items.length - max}` : items.join(', ');
}
