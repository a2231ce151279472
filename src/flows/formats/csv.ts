/**
 * A generic CSV (or TSV) of flows with a column mapping: which column holds
 * the source, the destination, the ports, the protocol, the counters, the
 * times and the action. Columns are named by header or by position (`#3`); a
 * field may also be a constant (`proto=const:tcp`). Quoted fields follow
 * RFC 4180 within one line (a quoted newline is not supported).
 */
import { parseAddr } from '../../netset/ip.js';
import type { FlowOut } from '../record.js';
import { eachLine } from '../lines.js';
import { countOf, excerptText, portOf, protoOf, text, timeOf } from '../text.js';
import { LineDecoder, type CsvMapping, type DecoderOptions } from './types.js';

/** The flow fields a mapping may name. */
export const CSV_FIELDS = ['src', 'dst', 'proto', 'sport', 'dport', 'packets', 'bytes', 'start', 'end', 'action'] as const;

/** Parses `src=source_ip,dst=dest_ip,dport=#5,proto=const:tcp`; throws a RangeError naming the problem. */
export function parseCsvMapping(spec: string): CsvMapping {
  const m: Record<string, string> = {};
  for (const part of spec.split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new RangeError(`mapping entry \`${part}\` is not field=column`);
    const key = part.slice(0, eq).trim();
    const val = part.slice(eq + 1).trim();
    if (!(CSV_FIELDS as readonly string[]).includes(key)) throw new RangeError(`unknown field \`${key}\` in the mapping; fields: ${CSV_FIELDS.join(', ')}`);
    if (val === '') throw new RangeError(`field \`${key}\` has no column in the mapping`);
    m[key] = val;
  }
  if (m.src === undefined || m.dst === undefined) throw new RangeError('the mapping needs at least src and dst');
  return m as unknown as CsvMapping;
}

/** Splits one CSV line into fields; null when a quote is not closed. */
export function splitCsvLine(line: string, delim: string): string[] | null {
  const out: string[] = [];
  let i = 0;
  const n = line.length;
  for (;;) {
    if (line[i] === '"') {
      let v = '';
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) return null;
        v += line.slice(i, q);
        if (line[q + 1] === '"') {
          v += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      out.push(v);
      if (i >= n) return out;
      if (line.startsWith(delim, i)) i += delim.length;
      else return null;
    } else {
      const d = line.indexOf(delim, i);
      if (d < 0) {
        out.push(line.slice(i));
        return out;
      }
      out.push(line.slice(i, d));
      i = d + delim.length;
    }
  }
}

type Getter = (cols: readonly string[]) => string | undefined;

const ACCEPT = new Set(['accept', 'accepted', 'allow', 'allowed', 'permit', 'permitted', 'pass', 'forwarded', 'a']);
const REJECT = new Set(['reject', 'rejected', 'deny', 'denied', 'drop', 'dropped', 'block', 'blocked', 'r', 'd']);

/** Decodes a CSV of flows by a column mapping. */
export class CsvDecoder extends LineDecoder {
  readonly format = 'csv';
  private readonly mapping: CsvMapping;
  private readonly delim: string;
  private readonly hasHeader: boolean;
  private getters: Partial<Record<(typeof CSV_FIELDS)[number], Getter>> | undefined;
  private width = -1;
  private readonly time: number | undefined;

  constructor(out: FlowOut, options: DecoderOptions = {}) {
    super(out, options);
    if (!options.csv) throw new RangeError('the csv format needs a column mapping (--map src=...,dst=...)');
    this.mapping = options.csv;
    this.delim = options.delimiter ?? ',';
    this.hasHeader = options.header ?? true;
    this.time = options.time;
    if (!this.hasHeader) this.getters = this.bind(undefined, 0);
  }

  /** Resolves the mapping against the header (or positions only); undefined with a bad record when a column is missing. */
  private bind(header: string[] | undefined, line: number): Partial<Record<(typeof CSV_FIELDS)[number], Getter>> | undefined {
    const g: Partial<Record<(typeof CSV_FIELDS)[number], Getter>> = {};
    for (const f of CSV_FIELDS) {
      const spec = this.mapping[f];
      if (spec === undefined) continue;
      if (spec.startsWith('const:')) {
        const v = spec.slice(6);
        g[f] = () => v;
        continue;
      }
      let idx = -1;
      if (/^#[0-9]+$/.test(spec)) idx = Number(spec.slice(1)) - 1;
      else if (header) idx = header.findIndex((h) => h.trim().toLowerCase() === spec.toLowerCase());
      if (idx < 0) {
        this.out.bad.add({ reason: 'mapped column not in the header', line, detail: `${f}=${spec}; columns: ${excerptText((header ?? []).join(','))}` });
        return undefined;
      }
      g[f] = (cols) => cols[idx];
    }
    return g;
  }

  protected lines(buf: Uint8Array, start: number, end: number, firstLine: number): number {
    return eachLine(buf, start, end, firstLine, (s, e, line) => {
      if (s === e) return;
      const t = text(buf, s, e);
      const cols = splitCsvLine(t, this.delim);
      if (cols === null) {
        this.out.bad.add({ reason: 'unterminated quoted field', line, detail: excerptText(t) });
        return;
      }
      if (this.getters === undefined) {
        if (this.width >= 0) return; // the header did not bind: nothing can be read
        this.width = cols.length;
        this.getters = this.bind(cols, line);
        if (this.getters === undefined) this.width = 0;
        return;
      }
      this.row(cols, line);
    });
  }

  private row(cols: string[], line: number): void {
    const g = this.getters!;
    const get = (f: (typeof CSV_FIELDS)[number]): string | undefined => {
      const v = g[f]?.(cols);
      return v === undefined ? undefined : v.trim();
    };
    const bad = (reason: string, v?: string) => this.out.bad.add({ reason, line, detail: v === undefined ? undefined : excerptText(v) });
    const srcT = get('src');
    const dstT = get('dst');
    if (srcT === undefined || dstT === undefined) return bad('too few columns', cols.join(this.delim));
    const src = parseAddr(srcT);
    if (src === null) return bad('invalid src', srcT);
    const dst = parseAddr(dstT);
    if (dst === null) return bad('invalid dst', dstT);
    const protoT = get('proto');
    const proto = protoT === undefined ? 0 : protoOf(protoT);
    if (proto < 0) return bad('invalid proto', protoT);
    const port = (f: 'sport' | 'dport'): number => {
      const v = get(f);
      return v === undefined || v === '' || v === '-' ? 0 : portOf(v);
    };
    const sport = port('sport');
    if (sport < 0) return bad('invalid sport', get('sport'));
    const dport = port('dport');
    if (dport < 0) return bad('invalid dport', get('dport'));
    const count = (f: 'packets' | 'bytes'): number => {
      const v = get(f);
      return v === undefined || v === '' || v === '-' ? 0 : countOf(v);
    };
    const packets = count('packets');
    if (packets < 0) return bad('invalid packets', get('packets'));
    const bytes = count('bytes');
    if (bytes < 0) return bad('invalid bytes', get('bytes'));
    const startT = get('start');
    // Without a start column, the flows are as of the input's time (the file's, by default).
    const start = startT === undefined ? (this.time ?? NaN) : timeOf(startT);
    if (Number.isNaN(start)) return bad(startT === undefined ? 'missing start time' : 'invalid start', startT);
    const endT = get('end');
    const end = endT === undefined || endT === '' ? start : timeOf(endT);
    if (Number.isNaN(end)) return bad('invalid end', endT);
    const actT = get('action')?.toLowerCase();
    const action = actT === undefined || actT === '' || actT === '-' ? undefined : ACCEPT.has(actT) ? ('accept' as const) : REJECT.has(actT) ? ('reject' as const) : null;
    if (action === null) return bad('invalid action', actT);
    this.out.push({ start, end, src, dst, proto, srcPort: sport, dstPort: dport, packets, bytes, ...(action ? { action } : {}), format: 'csv' });
  }
}
