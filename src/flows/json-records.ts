/**
 * Streaming JSON records out of a byte stream, whatever its layout:
 *
 * - JSON lines (one object a line: Zeek, Hubble, Calico, GCP exports);
 * - objects one after another, pretty-printed or not;
 * - a top-level array of objects (`gcloud logging read --format=json`);
 * - a wrapper object whose `records` key holds the array (Azure flow logs,
 *   one blob an hour, often a single line of many megabytes).
 *
 * Records are cut by a small byte-level scanner (depth, strings, escapes), so
 * a wrapper of any size streams; only one record at a time is held. In JSON
 * lines, a broken line is reported and the scan resumes at the next line.
 */

/** The default largest record, in bytes: 16 MiB. */
export const DEFAULT_MAX_RECORD = 16 << 20;

/** Takes one record's text and the line it starts on. */
export type RecordHandler = (json: string, line: number) => void;

/** Told of a problem: a reason (a short phrase) and the line it is on. */
export type ProblemHandler = (reason: string, line: number, detail?: string) => void;

const decoder = new TextDecoder('utf-8', { fatal: false });

/** Splits pushed chunks into JSON records. */
export class JsonRecordSplitter {
  private line = 1;
  private depth = 0;
  private inStr = false;
  private esc = false;
  /** The depth of the record container: 0 (top-level objects), 1 (a top-level array), 2 (a wrapper's `records` array). */
  private container = 0;
  /** The record being cut: its parts (copies of chunk slices), where it starts in the current chunk (-1: none) and its line. */
  private parts: Uint8Array[] = [];
  private partsLen = 0;
  private recStart = -1;
  private recLine = 0;
  private recTooLong = false;
  /** Depth-1 key tracking in a top-level object, to find a wrapper's `records`. */
  private expectKey = false;
  private keyBytes: number[] = [];
  private lastKey = '';
  private inKey = false;
  /** After junk at the top: skip to the end of the line. */
  private junk = false;
  /** Inside a value of the container that is not an object: skip to the next `,`. */
  private skipValue = false;
  /** The last byte was a newline (or nothing was read yet). */
  private bol = true;
  private first = true;

  /**
   * @param onRecord takes each record's text.
   * @param onProblem is told of input that is no record.
   * @param maxRecord the largest record kept, in bytes; a longer one is skipped and reported.
   */
  constructor(
    private readonly onRecord: RecordHandler,
    private readonly onProblem: ProblemHandler,
    readonly maxRecord = DEFAULT_MAX_RECORD,
  ) {}

  /** Takes the next chunk of input. */
  push(chunk: Uint8Array): void {
    let i = 0;
    if (this.first && chunk.length > 0) {
      this.first = false;
      if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) i = 3;
    }
    const n = chunk.length;
    if (this.recStart >= 0) this.recStart = 0;
    for (; i < n; i++) {
      const c = chunk[i];
      const bol = this.bol;
      this.bol = c === 10;
      if (c === 10) this.line++;
      if (this.junk) {
        if (c === 10) this.junk = false;
        continue;
      }
      if (this.inStr) {
        if (c === 10) {
          // JSON strings hold no raw newline: whatever this is, it is broken.
          this.broken(true);
          continue;
        }
        if (this.esc) this.esc = false;
        else if (c === 92) this.esc = true;
        else if (c === 34) {
          this.inStr = false;
          if (this.inKey) {
            this.inKey = false;
            this.lastKey = String.fromCharCode(...this.keyBytes);
          }
        } else if (this.inKey && this.keyBytes.length < 32) this.keyBytes.push(c);
        continue;
      }
      // A `{` at the start of a line while a top-level record is open: that record was cut short.
      if (bol && c === 123 && this.container === 0 && this.depth > 0) this.broken(false);
      switch (c) {
        case 32:
        case 9:
        case 13:
        case 10:
          break;
        case 34: // "
          if (this.depth === this.container && !this.skipValue) {
            this.notObject(chunk, i);
            if (this.junk) break;
          }
          this.inStr = true;
          if (this.depth === 1 && this.container === 0 && this.expectKey) {
            this.inKey = true;
            this.keyBytes = [];
          }
          break;
        case 123: // {
          if (this.depth === this.container && !this.skipValue) this.begin(i);
          this.depth++;
          if (this.depth === 1) this.expectKey = true;
          break;
        case 91: // [
          if (this.depth === 0 && this.container === 0) {
            // A top-level array: its elements are the records.
            this.container = 1;
            this.depth = 1;
            break;
          }
          if (this.depth === 1 && this.container === 0 && this.lastKey === 'records' && !this.expectKey) {
            // A wrapper, `{"records": [ ... ]}`: drop the wrapper and cut the array's elements.
            this.container = 2;
            this.drop();
            this.depth = 2;
            break;
          }
          if (this.depth === this.container && !this.skipValue) this.notObject(chunk, i);
          this.depth++;
          break;
        case 125: // }
        case 93: // ]
          if (this.depth === 0) {
            this.junkAt(chunk, i);
            break;
          }
          this.depth--;
          if (this.depth === this.container && this.recStart >= 0) this.finish(chunk, i + 1);
          else if (this.depth < this.container) {
            // The container closed: back to the top (a wrapper's other keys are ignored).
            this.container = 0;
            this.skipValue = false;
          }
          if (this.depth === 0) {
            this.expectKey = false;
            this.lastKey = '';
          }
          break;
        case 58: // :
          if (this.depth === 1 && this.container === 0) this.expectKey = false;
          break;
        case 44: // ,
          if (this.depth === 1 && this.container === 0) this.expectKey = true;
          if (this.depth === this.container) this.skipValue = false;
          break;
        default:
          if (this.depth === this.container && !this.skipValue) {
            if (this.depth === 0) this.junkAt(chunk, i);
            else this.notObject(chunk, i);
          }
      }
    }
    // Keep the part of the open record that is in this chunk.
    if (this.recStart >= 0) this.keep(chunk, this.recStart, n);
  }

  /** The end of input. */
  end(): void {
    if (this.recStart >= 0 || this.parts.length > 0 || this.recTooLong) this.onProblem('truncated JSON: the input ends inside a record', this.recLine);
    this.reset();
  }

  private begin(i: number): void {
    this.recStart = i;
    this.recLine = this.line;
    this.parts = [];
    this.partsLen = 0;
    this.recTooLong = false;
  }

  private keep(chunk: Uint8Array, s: number, e: number): void {
    if (this.recTooLong) return;
    if (this.partsLen + (e - s) > this.maxRecord) {
      this.recTooLong = true;
      this.parts = [];
      this.partsLen = 0;
      return;
    }
    // A copy: the reader may reuse the chunk.
    this.parts.push(chunk.slice(s, e));
    this.partsLen += e - s;
  }

  private finish(chunk: Uint8Array, e: number): void {
    const startLine = this.recLine;
    this.keep(chunk, this.recStart, e);
    this.recStart = -1;
    const tooLong = this.recTooLong;
    this.recTooLong = false;
    const parts = this.parts;
    const len = this.partsLen;
    this.parts = [];
    this.partsLen = 0;
    if (tooLong) {
      this.onProblem('record too long', startLine, `more than ${this.maxRecord} bytes`);
      return;
    }
    let bytes: Uint8Array;
    if (parts.length === 1) bytes = parts[0];
    else {
      bytes = new Uint8Array(len);
      let o = 0;
      for (const p of parts) {
        bytes.set(p, o);
        o += p.length;
      }
    }
    this.onRecord(decoder.decode(bytes), startLine);
  }

  /** Drops the record being cut (it was a wrapper). */
  private drop(): void {
    this.recStart = -1;
    this.parts = [];
    this.partsLen = 0;
    this.recTooLong = false;
  }

  /** The open record (or wrapper) is broken: report it and start over at the top. */
  private broken(newline: boolean): void {
    const inRecord = this.recStart >= 0 || this.parts.length > 0 || this.recTooLong;
    const line = inRecord ? this.recLine : this.line - (newline ? 1 : 0);
    this.onProblem('truncated or invalid JSON', line, newline ? 'a string runs past the end of its line' : 'the record is cut short by the next one');
    this.reset();
  }

  private notObject(chunk: Uint8Array, i: number): void {
    this.onProblem('not a JSON object', this.line, excerptAt(chunk, i));
    if (this.depth === 0) this.junk = true;
    else this.skipValue = true;
  }

  private junkAt(chunk: Uint8Array, i: number): void {
    this.onProblem('not JSON', this.line, excerptAt(chunk, i));
    this.junk = true;
  }

  private reset(): void {
    this.depth = 0;
    this.inStr = false;
    this.esc = false;
    this.inKey = false;
    this.drop();
    this.expectKey = false;
    this.lastKey = '';
    this.container = 0;
    this.skipValue = false;
  }
}

function excerptAt(chunk: Uint8Array, i: number): string {
  let e = i;
  while (e < chunk.length && e - i < 40 && chunk[e] !== 10) e++;
  // eslint-disable-next-line no-control-regex
  return decoder.decode(chunk.subarray(i, e)).replace(/[\u0000-\u001f]/g, '?');
}
