/**
 * Flows from connection tracking: `conntrack -L -o extended,id` snapshots
 * taken every few seconds in the managed namespace, read with the conntrack
 * parser of src/flows/formats. Each connection is reported when it is first
 * seen; its traffic since then is reported again every `refreshMs` while it
 * lasts, and once more when it ends, so the server's sums are right and a
 * connection is never counted twice.
 *
 * Connections the firewall dropped never enter the table (the kernel only
 * confirms an entry once its first packet passed every hook); those come from
 * the NFLOG reader (nflog.ts). A conntrack entry lives at least ten seconds
 * after its last packet (TCP close), thirty for UDP and ICMP, so snapshots a
 * few seconds apart miss no connection.
 */
import { formatAddr } from '../netset/ip.js';
import { parseConntrackLine } from '../flows/formats/conntrack.js';
import type { AgentFlow } from './client.js';
import { findTool, runIn, type HostTarget } from './host.js';

interface Tracked {
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly proto: number;
  packets: number;
  bytes: number;
  reportedPackets: number;
  reportedBytes: number;
  lastReport: number;
}

/** Options of {@link ConntrackTracker}. */
export interface ConntrackTrackerOptions {
  /** Whether an address (as written) is one of the host's own; flows touching none are left out. */
  readonly isLocal: (addr: string) => boolean;
  /** How often a long-lived connection's new traffic is reported, milliseconds (default 60 000). */
  readonly refreshMs?: number;
  /** The most connections followed at once (default 200 000); past it new ones are reported once and not followed. */
  readonly maxTracked?: number;
}

/** Turns successive conntrack snapshots into flow records. Pure: text in, records out. */
export class ConntrackTracker {
  private readonly tracked = new Map<string, Tracked>();
  private readonly refreshMs: number;
  private readonly maxTracked: number;
  /** Lines the parser could not read, counted. */
  bad = 0;

  constructor(private readonly options: ConntrackTrackerOptions) {
    this.refreshMs = options.refreshMs ?? 60_000;
    this.maxTracked = options.maxTracked ?? 200_000;
  }

  /** Connections being followed. */
  get size(): number {
    return this.tracked.size;
  }

  /** Takes one snapshot (the text of `conntrack -L`, taken at `now`) and returns the records it yields. */
  snapshot(text: string, now: number): AgentFlow[] {
    const out: AgentFlow[] = [];
    const seen = new Set<string>();
    for (const line of text.split('\n')) {
      if (line.trim() === '' || line.startsWith('conntrack v')) continue;
      const e = parseConntrackLine(line);
      if (e === null) continue;
      if ('reason' in e) {
        this.bad++;
        continue;
      }
      const src = formatAddr(e.src);
      const dst = formatAddr(e.dst);
      if (!this.options.isLocal(src) && !this.options.isLocal(dst)) continue;
      const id = /\bid=(\d+)/.exec(line)?.[1] ?? '';
      const key = `${id} ${e.proto} ${src} ${dst} ${e.sport} ${e.dport}`;
      seen.add(key);
      const t = this.tracked.get(key);
      if (!t) {
        const start = e.delta !== undefined ? now - e.delta * 1000 : now;
        out.push({ start, end: now, src, dst, sport: e.sport, dport: e.dport, proto: e.proto, packets: e.packets, bytes: e.bytes, initiator: 'src' });
        if (this.tracked.size < this.maxTracked) {
          this.tracked.set(key, { src, dst, sport: e.sport, dport: e.dport, proto: e.proto, packets: e.packets, bytes: e.bytes, reportedPackets: e.packets, reportedBytes: e.bytes, lastReport: now });
        }
        continue;
      }
      t.packets = Math.max(t.packets, e.packets);
      t.bytes = Math.max(t.bytes, e.bytes);
      if (now - t.lastReport >= this.refreshMs) this.report(t, now, out);
    }
    for (const [key, t] of this.tracked) {
      if (seen.has(key)) continue;
      // The connection ended: whatever it did since the last report.
      this.report(t, now, out);
      this.tracked.delete(key);
    }
    return out;
  }

  /** Reports every followed connection's unreported traffic (at shutdown). */
  flush(now: number): AgentFlow[] {
    const out: AgentFlow[] = [];
    for (const t of this.tracked.values()) this.report(t, now, out);
    return out;
  }

  private report(t: Tracked, now: number, out: AgentFlow[]): void {
    const packets = t.packets - t.reportedPackets;
    const bytes = t.bytes - t.reportedBytes;
    if (packets > 0 || bytes > 0) {
      out.push({ start: t.lastReport, end: now, src: t.src, dst: t.dst, sport: t.sport, dport: t.dport, proto: t.proto, packets, bytes, initiator: 'src' });
    }
    t.reportedPackets = t.packets;
    t.reportedBytes = t.bytes;
    t.lastReport = now;
  }
}

/** Takes a snapshot of the target's connection tracking table: the text of `conntrack -L -o extended,id`. */
export async function conntrackSnapshot(target: HostTarget): Promise<string> {
  const tool = findTool('conntrack') ?? 'conntrack';
  const r = await runIn(target, tool, ['-L', '-o', 'extended,id'], { timeoutMs: 30_000 });
  // conntrack exits 0 with an empty table, and writes its summary line on stderr.
  if (r.code !== 0) throw new Error(`conntrack -L failed: ${r.stderr.trim().split('\n')[0] || `exit code ${r.code}`}`);
  return r.stdout;
}
