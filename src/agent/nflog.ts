/**
 * Blocked and would-be-blocked packets, from NFLOG.
 *
 * The compiled rulesets log every drop and every test-mode would-be drop
 * (rate-limited) with the prefix `bh drop <rule> ` or `bh test-drop <rule> `.
 * The kernel log is no use to an agent: inside a network namespace other than
 * the machine's own, `log` prints nothing unless the machine-wide
 * `nf_log_all_netns` sysctl is set, and parsing dmesg is fragile anyway. So
 * the agent adds `group N` to those statements (enforce.ts), which sends the
 * packets to nfnetlink_log group N of the namespace they were seen in, and
 * reads that group here. NFLOG works in every namespace and needs no sysctl.
 *
 * Node has no netlink sockets, so a small reader in Python (standard library
 * only, like the lab's scripts) runs in the managed namespace
 * (`ip netns exec NS python3 -c …`), binds the group, and writes one JSON
 * line per packet: the prefix and the first bytes of the packet. Everything
 * else, the IP and port parsing and the aggregation into flow records, is
 * here, in TypeScript.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { formatAddr } from '../netset/ip.js';
import { inTarget, findTool, type HostTarget } from './host.js';
import type { AgentFlow } from './client.js';

/** The NFLOG group the agent uses unless told otherwise ("bh" is 0x6268; any 16-bit number will do). */
export const DEFAULT_NFLOG_GROUP = 6268;

/**
 * The reader, run as `python3 -I -S -c READER <group>`. Binds NFLOG group
 * `<group>` (nfnetlink_log, netlink family NETLINK_NETFILTER) with a copy of
 * the first 128 bytes of each packet; prints `{"ready": true}` once bound
 * (or `{"ready": false, "error": …}` and exits 1), then one line per packet:
 * `{"t": <epoch s>, "f": <address family>, "p": <prefix>, "h": <hex bytes>}`,
 * and `{"lost": n}` when the socket overflowed.
 */
export const NFLOG_READER = String.raw`
import json, os, socket, struct, sys, time
group = int(sys.argv[1])
def out(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()
try:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
    s.bind((0, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    seq = 0
    def attr(t, data):
        n = 4 + len(data)
        return struct.pack("=HH", n, t) + data + b"\0" * ((4 - n % 4) % 4)
    def config(attrs):
        global seq
        seq += 1
        body = struct.pack("=BBH", 0, 0, socket.htons(group)) + attrs
        s.send(struct.pack("=IHHII", 16 + len(body), (4 << 8) | 1, 1 | 4, seq, 0) + body)
        while True:
            data = s.recv(65536)
            n, typ = struct.unpack_from("=IH", data, 0)
            if typ == 2:
                err = struct.unpack_from("=i", data, 16)[0]
                if err != 0:
                    raise OSError(-err, os.strerror(-err))
                return
    config(attr(1, struct.pack("=B", 1)))
    config(attr(2, struct.pack(">IBB", 128, 2, 0)))
except OSError as e:
    out({"ready": False, "error": "cannot bind NFLOG group %d: %s" % (group, e.strerror or e)})
    sys.exit(1)
out({"ready": True, "group": group})
lost = 0
while True:
    try:
        data = s.recv(1 << 20)
    except OSError as e:
        if e.errno == 105:
            lost += 1
            out({"lost": lost})
            continue
        raise
    now = time.time()
    off = 0
    while off + 16 <= len(data):
        n, typ = struct.unpack_from("=IH", data, off)
        if n < 16:
            break
        if typ == (4 << 8):
            fam = data[off + 16]
            a, end = off + 20, off + n
            prefix, payload = "", b""
            while a + 4 <= end:
                al, at = struct.unpack_from("=HH", data, a)
                if al < 4:
                    break
                at &= 0x7fff
                if at == 10:
                    prefix = data[a + 4:a + al].rstrip(b"\0").decode("utf-8", "replace")
                elif at == 9:
                    payload = data[a + 4:a + al]
                a += (al + 3) & ~3
            out({"t": now, "f": fam, "p": prefix, "h": payload[:80].hex()})
        off += (n + 3) & ~3
`;

/** A logged packet, parsed. */
export interface LoggedPacket {
  readonly verdict: 'blocked' | 'potentially-blocked';
  readonly rule: string;
  readonly proto: number;
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  /** The packet's length from its IP header. */
  readonly bytes: number;
}

/** The verdict and rule a bulkhead log prefix carries (`bh drop <rule> `, `bh test-drop <rule> `), or undefined for another prefix. */
export function parsePrefix(prefix: string): { verdict: LoggedPacket['verdict']; rule: string } | undefined {
  const m = /^bh (drop|test-drop) (.*?)\s*$/.exec(prefix);
  if (!m || m[2] === '') return undefined;
  return { verdict: m[1] === 'drop' ? 'blocked' : 'potentially-blocked', rule: m[2] };
}

/** The IPv6 address at `b[at..at+15]`, written as everywhere else in bulkhead. */
function ipv6Text(b: Uint8Array, at: number): string {
  let v = 0n;
  for (let i = 0; i < 16; i++) v = (v << 8n) | BigInt(b[at + i]);
  return formatAddr(v);
}

/** Parses the start of an IPv4 or IPv6 packet (as NFLOG copies it); undefined when it is too short or not IP. */
export function parsePacket(b: Uint8Array): { proto: number; src: string; dst: string; sport: number; dport: number; bytes: number } | undefined {
  if (b.length < 1) return undefined;
  const version = b[0] >> 4;
  let proto: number;
  let src: string;
  let dst: string;
  let l4: number;
  let bytes: number;
  if (version === 4) {
    if (b.length < 20) return undefined;
    const ihl = (b[0] & 15) * 4;
    proto = b[9];
    bytes = (b[2] << 8) | b[3];
    src = `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
    dst = `${b[16]}.${b[17]}.${b[18]}.${b[19]}`;
    const fragOffset = ((b[6] & 0x1f) << 8) | b[7];
    l4 = fragOffset === 0 ? ihl : -1;
  } else if (version === 6) {
    if (b.length < 40) return undefined;
    bytes = ((b[4] << 8) | b[5]) + 40;
    src = ipv6Text(b, 8);
    dst = ipv6Text(b, 24);
    proto = b[6];
    l4 = 40;
    // Hop-by-hop, routing, destination options: skip; a non-first fragment has no ports.
    for (let hops = 0; hops < 8 && l4 >= 0; hops++) {
      if (proto === 0 || proto === 43 || proto === 60) {
        if (b.length < l4 + 2) return { proto, src, dst, sport: 0, dport: 0, bytes };
        const next = b[l4];
        l4 += (b[l4 + 1] + 1) * 8;
        proto = next;
      } else if (proto === 44) {
        if (b.length < l4 + 8) return { proto, src, dst, sport: 0, dport: 0, bytes };
        const next = b[l4];
        const offset = ((b[l4 + 2] << 8) | b[l4 + 3]) >> 3;
        l4 = offset === 0 ? l4 + 8 : -1;
        proto = next;
      } else break;
    }
  } else return undefined;
  let sport = 0;
  let dport = 0;
  if (l4 >= 0) {
    if ((proto === 6 || proto === 17 || proto === 132 || proto === 136) && b.length >= l4 + 4) {
      sport = (b[l4] << 8) | b[l4 + 1];
      dport = (b[l4 + 2] << 8) | b[l4 + 3];
    } else if ((proto === 1 || proto === 58) && b.length >= l4 + 2) {
      dport = b[l4] * 256 + b[l4 + 1];
    }
  }
  return { proto, src, dst, sport, dport, bytes };
}

/** Parses one line of the reader: a logged packet, or undefined for anything else. */
export function parseReaderLine(line: string): { packet: LoggedPacket; at: number } | undefined {
  let o: { t?: unknown; p?: unknown; h?: unknown };
  try {
    o = JSON.parse(line) as typeof o;
  } catch {
    return undefined;
  }
  if (typeof o.p !== 'string' || typeof o.h !== 'string' || typeof o.t !== 'number') return undefined;
  const pre = parsePrefix(o.p);
  if (!pre) return undefined;
  const p = parsePacket(Buffer.from(o.h, 'hex'));
  if (!p) return undefined;
  return { packet: { ...pre, ...p }, at: Math.round(o.t * 1000) };
}

interface Aggregate {
  flow: AgentFlow & { packets: number; bytes: number; end: number };
}

/**
 * Folds logged packets into flow records: one per verdict, rule and
 * 5-tuple, over one reporting interval (a blocked connection's SYN retries
 * are one record). Bounded: past `maxKeys` distinct flows in an interval,
 * packets are counted as overflow and not kept.
 */
export class DropAggregator {
  private readonly open = new Map<string, Aggregate>();
  /** Packets not kept because the interval held too many flows. */
  overflow = 0;

  constructor(
    private readonly isLocal: (addr: string) => boolean,
    private readonly maxKeys = 20_000,
  ) {}

  /** Adds one packet seen at `at` (epoch ms). */
  add(p: LoggedPacket, at: number): void {
    if (!this.isLocal(p.src) && !this.isLocal(p.dst)) return;
    const key = `${p.verdict} ${p.rule} ${p.proto} ${p.src} ${p.dst} ${p.sport} ${p.dport}`;
    const a = this.open.get(key);
    if (a) {
      a.flow.packets++;
      a.flow.bytes += p.bytes;
      a.flow.end = Math.max(a.flow.end, at);
      return;
    }
    if (this.open.size >= this.maxKeys) {
      this.overflow++;
      return;
    }
    this.open.set(key, { flow: { start: at, end: at, src: p.src, dst: p.dst, sport: p.sport, dport: p.dport, proto: p.proto, packets: 1, bytes: p.bytes, initiator: 'src', verdict: p.verdict, rule: p.rule } });
  }

  /** The records of the interval, which starts afresh. */
  drain(): AgentFlow[] {
    const out = [...this.open.values()].map((a) => a.flow);
    this.open.clear();
    return out;
  }
}

/** The Python interpreter: `$BULKHEAD_PYTHON`, else the system's `/usr/bin/python3` (no version-manager shim), else `python3` on PATH. */
export function findPython(): string | undefined {
  const env = process.env.BULKHEAD_PYTHON;
  if (env) return env.includes('/') ? env : findTool(env);
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : findTool('python3');
}

/** Options of {@link NflogReader}. */
export interface NflogReaderOptions {
  readonly target: HostTarget;
  readonly group: number;
  /** Takes each logged packet. */
  readonly onPacket: (p: LoggedPacket, at: number) => void;
  /** Takes the reader's problems (it could not start, it died, it lost packets). */
  readonly onProblem: (message: string) => void;
  /** The Python interpreter (default `$BULKHEAD_PYTHON`, `/usr/bin/python3`, or `python3` on PATH). */
  readonly python?: string;
}

/** The NFLOG reader process: started in the target namespace, stopped with {@link stop}. */
export class NflogReader {
  private child: ChildProcess | undefined;
  private stopped = false;
  /** Packets the kernel could not queue for the reader (socket overflows). */
  lost = 0;

  constructor(private readonly options: NflogReaderOptions) {}

  /** Whether the reader is running. */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts the reader; resolves true once it bound the group, false when it could not (the problem is reported). */
  start(): Promise<boolean> {
    if (this.stopped) return Promise.resolve(false);
    const python = this.options.python ?? findPython();
    if (!python) {
      this.options.onProblem('python3 not found: blocked packets are not reported (rule counters still are)');
      return Promise.resolve(false);
    }
    const [cmd, args] = inTarget(this.options.target, python, ['-I', '-S', '-c', NFLOG_READER, String(this.options.group)]);
    return new Promise((resolve) => {
      let ready = false;
      let err = '';
      const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      this.child = child;
      child.stderr!.on('data', (b: Buffer) => {
        err = (err + b.toString('utf8')).slice(-2000);
      });
      child.on('error', (e) => {
        this.options.onProblem(`cannot start the NFLOG reader: ${e.message}`);
        resolve(false);
      });
      child.on('exit', (code, signal) => {
        if (!ready) {
          resolve(false);
          return;
        }
        if (!this.stopped) this.options.onProblem(`the NFLOG reader stopped (${signal ?? `exit code ${code}`})${err ? `: ${err.trim().split('\n').pop()}` : ''}`);
      });
      const lines = createInterface({ input: child.stdout! });
      lines.on('line', (line) => {
        if (!ready) {
          try {
            const msg = JSON.parse(line) as { ready?: boolean; error?: string };
            if (msg.ready) {
              ready = true;
              resolve(true);
            } else {
              this.options.onProblem(msg.error ?? 'the NFLOG reader failed');
            }
          } catch {
            this.options.onProblem(`the NFLOG reader said something unexpected: ${line.slice(0, 120)}`);
          }
          return;
        }
        if (line.startsWith('{"lost"')) {
          this.lost++;
          return;
        }
        const r = parseReaderLine(line);
        if (r) this.options.onPacket(r.packet, r.at);
      });
    });
  }

  /** Stops the reader (its own child process, by pid). */
  stop(): void {
    this.stopped = true;
    if (this.running) this.child!.kill('SIGTERM');
  }
}
