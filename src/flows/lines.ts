/**
 * Splitting a byte stream into lines for the text parsers, whatever the
 * chunk boundaries: complete lines go to the parser in bulk (a range of many
 * lines at once, so the hot path has no call per line), a line cut by a chunk
 * boundary is carried over, and a line longer than the cap is skipped and
 * reported rather than buffered without bound.
 */

/**
 * Takes the complete lines in `buf[start..end)`: every line ends with `\n`
 * except possibly the last one at the end of the input. The first is line
 * `firstLine` (1-based). Returns how many lines it took (the number of `\n`
 * in the range, plus one when the range does not end with `\n`).
 */
export type LinesHandler = (buf: Uint8Array, start: number, end: number, firstLine: number) => number;

/** The default longest line, in bytes: 1 MiB. */
export const DEFAULT_MAX_LINE = 1 << 20;

/** Splits pushed chunks into lines for a {@link LinesHandler}. */
export class LineSplitter {
  /** The number of complete lines so far. */
  private done = 0;
  private carry = new Uint8Array(0);
  private carryLen = 0;
  /** Inside a line that was too long: bytes are dropped until its newline. */
  private skipping = false;

  /**
   * @param handler takes complete lines.
   * @param onTooLong is told of a line longer than `maxLine` bytes (its number), which is skipped.
   * @param maxLine the longest line kept, in bytes without the newline.
   */
  constructor(
    private readonly handler: LinesHandler,
    private readonly onTooLong: (line: number) => void,
    readonly maxLine = DEFAULT_MAX_LINE,
  ) {
    if (!(maxLine >= 16)) throw new RangeError(`the longest line must be at least 16 bytes, not ${maxLine}`);
  }

  /** The number of lines read so far (complete ones). */
  get lines(): number {
    return this.done;
  }

  /** Takes the next chunk of input. */
  push(chunk: Uint8Array): void {
    // Pieces no longer than the cap: a line wholly inside one piece is then short enough.
    const max = this.maxLine;
    if (chunk.length <= max) this.piece(chunk);
    else for (let off = 0; off < chunk.length; off += max) this.piece(chunk.subarray(off, Math.min(chunk.length, off + max)));
  }

  private piece(chunk: Uint8Array): void {
    let pos = 0;
    if (this.skipping) {
      const nl = chunk.indexOf(10);
      if (nl < 0) return;
      this.skipping = false;
      this.done++;
      pos = nl + 1;
    }
    if (this.carryLen > 0) {
      const nl = chunk.indexOf(10, pos);
      const take = (nl < 0 ? chunk.length : nl) - pos;
      if (this.carryLen + take > this.maxLine) {
        this.onTooLong(this.done + 1);
        this.carryLen = 0;
        if (nl < 0) {
          this.skipping = true;
          return;
        }
        this.done++;
        pos = nl + 1;
      } else if (nl < 0) {
        this.append(chunk, pos, chunk.length);
        return;
      } else {
        this.append(chunk, pos, nl + 1);
        this.done += this.handler(this.carry, 0, this.carryLen, this.done + 1);
        this.carryLen = 0;
        pos = nl + 1;
      }
    }
    const last = chunk.lastIndexOf(10);
    if (last >= pos) {
      this.done += this.handler(chunk, pos, last + 1, this.done + 1);
      pos = last + 1;
    }
    if (pos < chunk.length) {
      if (chunk.length - pos > this.maxLine) {
        this.onTooLong(this.done + 1);
        this.skipping = true;
      } else this.append(chunk, pos, chunk.length);
    }
  }

  private append(chunk: Uint8Array, s: number, e: number): void {
    const need = this.carryLen + (e - s);
    if (need > this.carry.length) {
      const grown = new Uint8Array(Math.max(need, this.carry.length * 2, 4096));
      grown.set(this.carry.subarray(0, this.carryLen));
      this.carry = grown;
    }
    this.carry.set(chunk.subarray(s, e), this.carryLen);
    this.carryLen = need;
  }

  /** The end of input: the last line, if it has no newline. */
  end(): void {
    if (this.skipping) {
      this.skipping = false;
      this.done++;
    }
    if (this.carryLen > 0) {
      this.done += this.handler(this.carry, 0, this.carryLen, this.done + 1);
      this.carryLen = 0;
    }
  }
}

/**
 * Calls `fn` for each line in `buf[start..end)` (bytes `[s, e)` without the
 * newline or a carriage return before it), numbered from `firstLine`.
 * Returns the number of lines: the {@link LinesHandler} contract, for
 * parsers that work line by line.
 */
export function eachLine(buf: Uint8Array, start: number, end: number, firstLine: number, fn: (s: number, e: number, line: number) => void): number {
  let n = 0;
  let s = start;
  while (s < end) {
    let nl = buf.indexOf(10, s);
    if (nl < 0 || nl >= end) nl = end;
    let e = nl;
    if (e > s && buf[e - 1] === 13) e--;
    fn(s, e, firstLine + n);
    n++;
    s = nl + 1;
  }
  return n;
}
