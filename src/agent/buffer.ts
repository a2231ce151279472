/**
 * The flow buffer on disk: every batch of flow records the agent collects is
 * written to a segment file in `<state>/flows/` before it is sent, and the
 * segment is removed once the server answered `200`. While the server is
 * down segments pile up, bounded by a size cap: past it the oldest segments
 * are dropped and their records counted. When the server is back they are
 * replayed oldest first. A crash loses nothing that was written.
 *
 * Segments are JSON lines named `<sequence>-<records>.jsonl` (the count in the
 * name, so dropping one needs no read), written to a temporary name and
 * renamed, so a reader never sees half a segment.
 */
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentFlow } from './client.js';

/** Options of {@link FlowBuffer}. */
export interface FlowBufferOptions {
  /** The directory of the segments. */
  readonly dir: string;
  /** The most bytes the segments may take (default 64 MiB). */
  readonly maxBytes?: number;
  /** The most records in one segment, so one replayed request stays small (default 2,000). */
  readonly segmentRecords?: number;
}

/** How full the buffer is. */
export interface BufferStats {
  readonly segments: number;
  readonly records: number;
  readonly bytes: number;
  /** Records dropped because the buffer was full, since the state directory was made. */
  readonly dropped: number;
  /** Records the server refused for good (a 4xx other than 401, 408 and 429), dropped. */
  readonly refused: number;
}

interface Segment {
  readonly name: string;
  readonly seq: number;
  readonly records: number;
  readonly bytes: number;
}

const SEGMENT = /^(\d{12})-(\d+)\.jsonl$/;

/**
 * What a send answers: how many records were stored and how many refused for
 * good (the segment goes either way; refused ones are counted). A send that
 * throws keeps the segment for later.
 */
export interface SendResult {
  readonly stored: number;
  readonly refused: number;
}

/** A bounded queue of flow records on disk. */
export class FlowBuffer {
  private readonly segments: Segment[] = [];
  private readonly maxBytes: number;
  private readonly segmentRecords: number;
  private readonly countsFile: string;
  private seq = 0;
  private bytes = 0;
  private dropped = 0;
  private refused = 0;
  private inFlight: Segment | undefined;

  constructor(private readonly options: FlowBufferOptions) {
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.segmentRecords = Math.max(1, options.segmentRecords ?? 2000);
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    this.countsFile = join(options.dir, 'counts.json');
    for (const name of readdirSync(options.dir).sort()) {
      const m = SEGMENT.exec(name);
      if (!m) {
        // Left by a crash mid-write (a minute old: not another process writing it now).
        if (name.endsWith('.tmp') && Date.now() - statSync(join(options.dir, name)).mtimeMs > 60_000) rmSync(join(options.dir, name), { force: true });
        continue;
      }
      const bytes = statSync(join(options.dir, name)).size;
      this.segments.push({ name, seq: Number(m[1]), records: Number(m[2]), bytes });
      this.bytes += bytes;
      this.seq = Math.max(this.seq, Number(m[1]) + 1);
    }
    try {
      const c = JSON.parse(readFileSync(this.countsFile, 'utf8')) as { dropped?: number; refused?: number };
      this.dropped = c.dropped ?? 0;
      this.refused = c.refused ?? 0;
    } catch {
      // none yet
    }
  }

  /** How full the buffer is. */
  stats(): BufferStats {
    return { segments: this.segments.length, records: this.segments.reduce((n, s) => n + s.records, 0), bytes: this.bytes, dropped: this.dropped, refused: this.refused };
  }

  /** Writes records to new segments, then drops the oldest segments while over the cap; returns how many records were dropped. */
  append(records: readonly AgentFlow[]): number {
    for (let i = 0; i < records.length; i += this.segmentRecords) {
      const part = records.slice(i, i + this.segmentRecords);
      const text = part.map((r) => JSON.stringify(r)).join('\n') + '\n';
      const seq = this.seq++;
      const name = `${String(seq).padStart(12, '0')}-${part.length}.jsonl`;
      const tmp = join(this.options.dir, `${name}.tmp`);
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, join(this.options.dir, name));
      const bytes = Buffer.byteLength(text);
      this.segments.push({ name, seq, records: part.length, bytes });
      this.bytes += bytes;
    }
    let dropped = 0;
    // The newest segment always stays, even when it alone is over the cap.
    // The segment being sent is not dropped (it may be stored at this moment).
    while (this.bytes > this.maxBytes && this.segments.length > 1) {
      const at = this.segments[0] === this.inFlight ? 1 : 0;
      if (at >= this.segments.length - 1) break;
      const [s] = this.segments.splice(at, 1);
      this.remove(s);
      dropped += s.records;
    }
    if (dropped > 0) {
      this.dropped += dropped;
      this.saveCounts();
    }
    return dropped;
  }

  /**
   * Sends segments oldest first through `send`, removing each the server
   * stored or refused for good; stops at (and rethrows) the first error, the
   * segment kept. At most `maxSegments` segments per call, so a long backlog
   * is sent over several calls. Returns the records stored.
   */
  async drain(send: (records: AgentFlow[]) => Promise<SendResult>, signal?: AbortSignal, maxSegments = Infinity): Promise<number> {
    let stored = 0;
    for (let n = 0; n < maxSegments && this.segments.length > 0 && !signal?.aborted; n++) {
      const s = this.segments[0];
      let records: AgentFlow[];
      try {
        records = readFileSync(join(this.options.dir, s.name), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AgentFlow);
      } catch {
        // A damaged segment cannot be sent: count it as dropped.
        this.segments.shift();
        this.remove(s);
        this.dropped += s.records;
        this.saveCounts();
        continue;
      }
      this.inFlight = s;
      let r: SendResult;
      try {
        r = await send(records);
      } finally {
        this.inFlight = undefined;
      }
      this.segments.shift();
      this.remove(s);
      stored += r.stored;
      if (r.refused > 0) {
        this.refused += r.refused;
        this.saveCounts();
      }
    }
    return stored;
  }

  private remove(s: Segment): void {
    rmSync(join(this.options.dir, s.name), { force: true });
    this.bytes -= s.bytes;
  }

  private saveCounts(): void {
    const tmp = `${this.countsFile}.tmp`;
    writeFileSync(tmp, JSON.stringify({ dropped: this.dropped, refused: this.refused }) + '\n', { mode: 0o600 });
    renameSync(tmp, this.countsFile);
  }
}
