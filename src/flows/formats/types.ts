/**
 * What every flow format's decoder shares: bytes in (chunks of any size, at
 * any boundary), rows of a {@link FlowOut} and counted bad records out. Text
 * formats sit on the line splitter, JSON formats on the record splitter.
 */
import { JsonRecordSplitter, DEFAULT_MAX_RECORD } from '../json-records.js';
import { DEFAULT_MAX_LINE, LineSplitter } from '../lines.js';
import type { FlowOut } from '../record.js';

/** A streaming decoder of one format. */
export interface FlowDecoder {
  /** The format it reads (a {@link FLOW_FORMATS} name, or a family such as `netflow`). */
  readonly format: string;
  /** Takes the next chunk of input. */
  push(chunk: Uint8Array): void;
  /** The end of input: anything held back is written out. */
  end(): void;
}

/** The column mapping of the generic CSV format: a flow field to a column (a header name or `#N`, 1-based), or a constant (`const:tcp`). */
export interface CsvMapping {
  readonly src: string;
  readonly dst: string;
  readonly proto?: string;
  readonly sport?: string;
  readonly dport?: string;
  readonly packets?: string;
  readonly bytes?: string;
  readonly start?: string;
  readonly end?: string;
  readonly action?: string;
}

/** Options of the decoders; each reads the ones it knows. */
export interface DecoderOptions {
  /** The longest line kept, in bytes (text formats); a longer one is skipped and counted. Default 1 MiB. */
  readonly maxLine?: number;
  /** The largest JSON record kept, in bytes. Default 16 MiB. */
  readonly maxRecord?: number;
  /** The time of a snapshot that carries none (conntrack -L), epoch milliseconds. */
  readonly time?: number;
  /** Generic CSV: the column mapping. */
  readonly csv?: CsvMapping;
  /** Generic CSV: the delimiter (default `,`). */
  readonly delimiter?: string;
  /** Generic CSV: the first line is a header (default true). */
  readonly header?: boolean;
}

/** A decoder of a line-based text format: lines come in bulk from a {@link LineSplitter}. */
export abstract class LineDecoder implements FlowDecoder {
  abstract readonly format: string;
  private readonly splitter: LineSplitter;

  constructor(
    protected readonly out: FlowOut,
    options: DecoderOptions = {},
  ) {
    const max = options.maxLine ?? DEFAULT_MAX_LINE;
    this.splitter = new LineSplitter(
      (buf, s, e, line) => this.lines(buf, s, e, line),
      (line) => out.bad.add({ reason: 'line too long', line, detail: `longer than ${max} bytes; skipped` }),
      max,
    );
  }

  /** Takes complete lines (the {@link LinesHandler} contract). */
  protected abstract lines(buf: Uint8Array, start: number, end: number, firstLine: number): number;

  /** Writes out anything held back at the end of input (default: nothing). */
  protected finish(): void {}

  /** Takes the next chunk of input. */
  push(chunk: Uint8Array): void {
    this.splitter.push(chunk);
  }

  /** The end of input. */
  end(): void {
    this.splitter.end();
    this.finish();
  }
}

/** A decoder of a JSON format: records come one at a time from a {@link JsonRecordSplitter}, parsed. */
export abstract class JsonDecoder implements FlowDecoder {
  abstract readonly format: string;
  private readonly splitter: JsonRecordSplitter;

  constructor(
    protected readonly out: FlowOut,
    options: DecoderOptions = {},
  ) {
    this.splitter = new JsonRecordSplitter(
      (json, line) => {
        let v: unknown;
        try {
          v = JSON.parse(json);
        } catch (e) {
          out.bad.add({ reason: 'invalid JSON', line, detail: (e as Error).message.slice(0, 120) });
          return;
        }
        if (v === null || typeof v !== 'object' || Array.isArray(v)) {
          out.bad.add({ reason: 'not a JSON object', line });
          return;
        }
        this.record(v as Record<string, unknown>, line);
      },
      (reason, line, detail) => out.bad.add({ reason, line, detail }),
      options.maxRecord ?? DEFAULT_MAX_RECORD,
    );
  }

  /** Takes one parsed record object, starting on `line`. */
  protected abstract record(v: Record<string, unknown>, line: number): void;

  /** Takes the next chunk of input. */
  push(chunk: Uint8Array): void {
    this.splitter.push(chunk);
  }

  /** The end of input. */
  end(): void {
    this.splitter.end();
  }
}

/** A nested property by path (`a.b.c`), or undefined. */
export function pick(v: unknown, ...path: string[]): unknown {
  let cur = v;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}
