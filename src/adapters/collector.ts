/**
 * The NetFlow v5 / v9 / IPFIX collector: a UDP socket (node:dgram) whose
 * datagrams go straight to one decoder (templates per exporter address and
 * domain). Bounded: it stops after a number of datagrams, a duration or an
 * abort signal, whichever comes first, and decodes each datagram as it
 * arrives (no queue). Datagrams can also be saved to a pcap capture, which
 * `bulkhead ingest` reads back.
 */
import { createSocket, type RemoteInfo } from 'node:dgram';
import { createWriteStream, type WriteStream } from 'node:fs';
import { isIP } from 'node:net';
import { parseAddr } from '../netset/ip.js';
import { NetflowDecoder, type NetflowStats } from '../flows/formats/netflow.js';
import { pcapHeader, pcapRecord } from '../flows/formats/netflow-encode.js';
import type { FlowOut } from '../flows/record.js';

/** Where to listen: from `udp://127.0.0.1:2055` or `udp://[::1]:2055`. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** Parses a `udp://host:port` address; throws a RangeError saying what is wrong. */
export function parseListen(s: string): ListenAddress {
  const m = /^udp:\/\/(\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(s);
  if (!m) throw new RangeError(`listen address \`${s}\` is not udp://<ip>:<port> (for example udp://127.0.0.1:2055)`);
  const host = m[2] ?? m[3];
  const port = Number(m[4]);
  if (port > 65535) throw new RangeError(`port ${port} is out of range (0-65535)`);
  const family = isIP(host);
  if (family !== 4 && family !== 6) throw new RangeError(`\`${host}\` is not an IP address`);
  return { host, port, family: family as 4 | 6 };
}

/** Options of {@link collect}. */
export interface CollectOptions {
  /** Stop after this many datagrams. */
  readonly maxDatagrams?: number;
  /** Stop after this many milliseconds. */
  readonly durationMs?: number;
  /** Stop when aborted. */
  readonly signal?: AbortSignal;
  /** Told the bound address once listening (the port, when 0 was asked for). */
  readonly onListening?: (address: { address: string; port: number }) => void;
  /**
   * Called every `tickMs` (default 5 s) while running: a chance to commit
   * what was collected. Datagrams that arrive meanwhile wait in a bounded
   * queue (at most `maxQueued`, default 65536; more are dropped and counted).
   */
  readonly onTick?: () => void | Promise<void>;
  readonly tickMs?: number;
  readonly maxQueued?: number;
  /** Save every datagram to this pcap file. */
  readonly savePcap?: string;
  /** The socket's receive buffer, bytes (default: the system's). */
  readonly receiveBufferSize?: number;
}

/** What a collection run saw. */
export interface CollectResult {
  readonly datagrams: number;
  readonly bytes: number;
  readonly exporters: readonly string[];
  readonly netflow: NetflowStats;
  readonly ms: number;
  /** Datagrams dropped because the queue was full while committing. */
  readonly dropped: number;
  /** Why it stopped: `count`, `duration` or `signal`. */
  readonly stopped: 'count' | 'duration' | 'signal';
}

/**
 * Listens on `listen` and decodes datagrams into `out` until a bound is hit.
 * The caller flushes `out` afterwards. Rejects when the socket cannot bind.
 */
export function collect(listen: ListenAddress, out: FlowOut, options: CollectOptions = {}): Promise<CollectResult> {
  if (options.maxDatagrams === undefined && options.durationMs === undefined && options.signal === undefined) {
    return Promise.reject(new RangeError('a collector needs a bound: a datagram count, a duration or an abort signal'));
  }
  const decoder = new NetflowDecoder(out);
  const socket = createSocket({ type: listen.family === 6 ? 'udp6' : 'udp4', ...(options.receiveBufferSize ? { recvBufferSize: options.receiveBufferSize } : {}) });
  const exporters = new Set<string>();
  let datagrams = 0;
  let bytes = 0;
  let dropped = 0;
  const queue: { msg: Buffer; address: string; port: number; time: number }[] = [];
  const maxQueued = options.maxQueued ?? 65536;
  const t0 = performance.now();
  let pcap: WriteStream | undefined;
  const local = parseAddr(listen.host);
  return new Promise<CollectResult>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let ticker: ReturnType<typeof setInterval> | undefined;
    let done = false;
    let ticking: Promise<void> | undefined;
    const finish = (stopped: CollectResult['stopped']) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      if (ticker) clearInterval(ticker);
      options.signal?.removeEventListener('abort', onAbort);
      socket.close();
      const end = () =>
        (ticking ?? Promise.resolve()).then(() => {
          drain();
          resolve({ datagrams, bytes, exporters: [...exporters].sort(), netflow: decoder.stats, ms: performance.now() - t0, dropped, stopped });
        }, reject);
      if (pcap) pcap.end(end);
      else end();
    };
    const onAbort = () => finish('signal');
    socket.on('error', (e) => {
      if (!done) {
        done = true;
        if (timer) clearTimeout(timer);
        if (ticker) clearInterval(ticker);
        socket.close();
        reject(e);
      }
    });
    const handle = (msg: Buffer, address: string, port: number, now: number) => {
      if (pcap) {
        const src = parseAddr(address);
        pcap.write(pcapRecord({ time: now, src: typeof src === 'number' ? src : 0, dst: typeof local === 'number' ? local : 0, sport: port, dport: listen.port, payload: msg }));
      }
      decoder.datagram(msg, address, datagrams - queue.length, now);
    };
    const drain = () => {
      while (queue.length > 0) {
        const q = queue.shift()!;
        handle(q.msg, q.address, q.port, q.time);
      }
    };
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      if (done) return;
      datagrams++;
      bytes += msg.length;
      exporters.add(rinfo.address);
      const now = Date.now();
      if (ticking) {
        // Committing: hold the datagram (bounded) until the commit is done.
        if (queue.length < maxQueued) queue.push({ msg, address: rinfo.address, port: rinfo.port, time: now });
        else dropped++;
      } else handle(msg, rinfo.address, rinfo.port, now);
      if (options.maxDatagrams !== undefined && datagrams >= options.maxDatagrams) finish('count');
    });
    socket.on('listening', () => {
      const a = socket.address();
      options.onListening?.({ address: a.address, port: a.port });
      if (options.durationMs !== undefined) timer = setTimeout(() => finish('duration'), options.durationMs);
      if (options.onTick) {
        ticker = setInterval(() => {
          if (!ticking)
            ticking = Promise.resolve(options.onTick!()).finally(() => {
              ticking = undefined;
              drain();
            });
        }, options.tickMs ?? 5000);
      }
    });
    if (options.signal) {
      if (options.signal.aborted) {
        finish('signal');
        return;
      }
      options.signal.addEventListener('abort', onAbort);
    }
    if (options.savePcap) {
      pcap = createWriteStream(options.savePcap);
      pcap.on('error', (e) => {
        if (!done) {
          done = true;
          socket.close();
          reject(e);
        }
      });
      pcap.write(pcapHeader());
    }
    socket.bind(listen.port, listen.host);
  });
}
