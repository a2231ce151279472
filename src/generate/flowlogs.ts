/**
 * A week of realistic flow telemetry for an estate, from its policy: the
 * conversations the allow rules describe (clients and servers sampled from
 * each rule's sides, its services' ports), each pair at its own rate with a
 * daily and weekly rhythm (business traffic by day and on weekdays;
 * monitoring, DNS and NTP around the clock; backups at night), plus the
 * anomalies a first look at a network finds:
 *
 * - a dev host reaching a prod database;
 * - SSH that does not come from the jump hosts (and from the internet, rejected);
 * - a host scanning a thousand ports of another.
 *
 * Each conversation is seen by one sensor, by where its ends are: AWS VPC
 * Flow Logs for the cloud, a Zeek sensor in dc1, a NetFlow v9 router in dc2.
 * The writers turn conversations into each format (VPC text, Zeek conn.log,
 * NetFlow v9 datagrams in a pcap). Pure and deterministic in (policy, options).
 */
import type { Addr } from '../netset/ip.js';
import { formatAddr, parseAddr, type IpSet } from '../netset/ip.js';
import type { Ir } from '../policy/ir.js';
import type { FlowRecord } from '../flows/record.js';
import { NetflowV9Encoder, pcapHeader, pcapRecord } from '../flows/formats/netflow-encode.js';
import { ZEEK_CONN_FIELDS } from '../flows/formats/zeek.js';
import { Rng } from './prng.js';

/** Which sensor sees a conversation (the format it is written in). */
export type Sensor = 'aws-vpc' | 'zeek' | 'netflow9';

/** One connection, client to server. */
export interface Conversation {
  readonly start: number;
  readonly end: number;
  readonly client: Addr;
  readonly server: Addr;
  readonly clientPort: number;
  /** The server port; ICMP: `type * 256 + code`. */
  readonly serverPort: number;
  readonly proto: number;
  /** Client to server, and back. */
  readonly packetsOut: number;
  readonly bytesOut: number;
  readonly packetsIn: number;
  readonly bytesIn: number;
  /** `ok`: a normal exchange; `rejected`: refused (RST or a security group); `syn-only`: no answer (a scan). */
  readonly state: 'ok' | 'rejected' | 'syn-only';
  /** The rule it follows, or the anomaly it is. */
  readonly pattern: string;
  readonly sensor: Sensor;
}

/** An anomaly the generator put in, for checking that the map shows it. */
export interface InjectedAnomaly {
  readonly kind: 'dev-to-prod-db' | 'ssh-not-from-jump' | 'port-scan';
  readonly description: string;
  readonly client: string;
  readonly server: string;
  readonly ports: string;
  readonly connections: number;
  readonly day: number;
}

/** Options of {@link generateFlowLogs}. */
export interface FlowLogOptions {
  readonly seed: number;
  /** The first day, epoch ms (default 2026-11-16T00:00:00Z, a Monday). */
  readonly start?: number;
  readonly days?: number;
  /** About this many conversations in all (default 50,000). */
  readonly conversations?: number;
  /** Leave out the anomalies (default false). */
  readonly noAnomalies?: boolean;
  /**
   * Whether a sampled pair may carry everyday traffic: the policy's verdict,
   * in practice (an allow rule's sides can still meet a deny rule, such as
   * environment isolation). Without it, every sampled pair is kept.
   */
  readonly keep?: (client: Addr, server: Addr, proto: number, port: number) => boolean;
}

/** What {@link generateFlowLogs} returns. */
export interface FlowLogs {
  /** In time order. */
  readonly conversations: readonly Conversation[];
  readonly anomalies: readonly InjectedAnomaly[];
  readonly start: number;
  readonly end: number;
}

/** How a service behaves: rate per pair per hour, rhythm, duration and sizes. */
interface Profile {
  readonly rate: number;
  readonly rhythm: 'business' | 'flat' | 'night';
  readonly seconds: [number, number];
  readonly out: [number, number];
  readonly in: [number, number];
}

const PROFILES: Record<string, Profile> = {
  dns: { rate: 30, rhythm: 'flat', seconds: [0.001, 0.05], out: [60, 90], in: [90, 400] },
  ntp: { rate: 4, rhythm: 'flat', seconds: [0.001, 0.01], out: [76, 76], in: [76, 76] },
  syslog: { rate: 20, rhythm: 'flat', seconds: [0.5, 60], out: [300, 20000], in: [0, 200] },
  'node-exporter': { rate: 12, rhythm: 'flat', seconds: [0.05, 0.3], out: [300, 500], in: [8000, 40000] },
  'bacula-fd': { rate: 0.05, rhythm: 'night', seconds: [300, 3600], out: [2000, 10000], in: [5e7, 5e9] },
  ssh: { rate: 0.2, rhythm: 'business', seconds: [30, 3600], out: [5000, 200000], in: [10000, 2000000] },
  rdp: { rate: 0.05, rhythm: 'business', seconds: [300, 7200], out: [1e5, 5e6], in: [1e6, 5e7] },
  admin: { rate: 0.2, rhythm: 'business', seconds: [30, 3600], out: [5000, 200000], in: [10000, 2000000] },
  ldap: { rate: 6, rhythm: 'business', seconds: [0.01, 0.5], out: [400, 2000], in: [800, 8000] },
  ping: { rate: 2, rhythm: 'flat', seconds: [0, 0.01], out: [84, 84], in: [84, 84] },
  pmtud: { rate: 0.02, rhythm: 'flat', seconds: [0, 0], out: [576, 576], in: [0, 0] },
  https: { rate: 40, rhythm: 'business', seconds: [0.2, 30], out: [800, 20000], in: [5000, 500000] },
  web: { rate: 40, rhythm: 'business', seconds: [0.2, 30], out: [800, 20000], in: [5000, 500000] },
  postgres: { rate: 25, rhythm: 'business', seconds: [0.05, 5], out: [500, 20000], in: [1000, 400000] },
  mysql: { rate: 25, rhythm: 'business', seconds: [0.05, 5], out: [500, 20000], in: [1000, 400000] },
  redis: { rate: 40, rhythm: 'business', seconds: [0.001, 0.2], out: [100, 2000], in: [100, 20000] },
  clickhouse: { rate: 8, rhythm: 'business', seconds: [0.5, 60], out: [1000, 50000], in: [1e4, 5e7] },
  hsm: { rate: 6, rhythm: 'business', seconds: [0.01, 0.2], out: [200, 1000], in: [200, 1000] },
  hl7: { rate: 6, rhythm: 'business', seconds: [0.1, 5], out: [1000, 20000], in: [100, 500] },
};
const DEFAULT_PROFILE: Profile = { rate: 15, rhythm: 'business', seconds: [0.05, 10], out: [500, 30000], in: [1000, 300000] };

/** A relative rate for an hour of the week (0 = Monday 00:00 UTC). */
function rhythm(kind: Profile['rhythm'], hourOfWeek: number): number {
  const day = Math.floor(hourOfWeek / 24);
  const h = hourOfWeek % 24;
  if (kind === 'flat') return 1;
  if (kind === 'night') return h >= 1 && h < 4 ? 6 : 0.05;
  const weekday = day < 5 ? 1 : 0.3;
  // A working day: low at night, rising from 7, a plateau 9-17 with a lunch dip, falling in the evening.
  const curve = [0.15, 0.1, 0.08, 0.08, 0.1, 0.15, 0.3, 0.6, 1.1, 1.5, 1.6, 1.6, 1.3, 1.5, 1.6, 1.6, 1.4, 1.1, 0.8, 0.6, 0.45, 0.35, 0.25, 0.2][h];
  return curve * weekday;
}

/** A Poisson draw (normal approximation for large means). */
function poisson(rng: Rng, mean: number): number {
  if (mean <= 0) return 0;
  if (mean > 30) return Math.max(0, Math.round(mean + Math.sqrt(mean) * gauss(rng)));
  const l = Math.exp(-mean);
  let k = 0;
  let p = 1;
  do {
    k++;
    p *= rng.next();
  } while (p > l);
  return k - 1;
}

function gauss(rng: Rng): number {
  const u = Math.max(1e-12, rng.next());
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

/** A value between lo and hi, log-uniform (sizes and durations spread over magnitudes). */
function logBetween(rng: Rng, [lo, hi]: [number, number]): number {
  if (hi <= lo) return lo;
  const a = Math.log(Math.max(lo, 1e-6));
  return Math.exp(a + (Math.log(hi) - a) * rng.next());
}

/** An endpoint of a pattern: a workload (index) or an outside address. */
type End = { w: number } | { a: Addr };

interface Pattern {
  readonly id: string;
  readonly client: End;
  readonly server: End;
  readonly proto: number;
  readonly port: number;
  readonly profile: Profile;
  readonly rate: number;
}

/** Some addresses of an IP set to stand for its members (public ones first, as the outside is). */
function sampleAddresses(set: IpSet, rng: Rng, n: number): Addr[] {
  const out: Addr[] = [];
  const b = set.v4.bounds;
  const ranges: [number, number][] = [];
  for (let i = 0; i < b.length; i += 2) ranges.push([b[i], b[i + 1]]);
  if (ranges.length === 0) return out;
  const sizes = ranges.map(([lo, hi]) => hi - lo + 1);
  for (let k = 0; k < n * 4 && out.length < n; k++) {
    const r = ranges[rng.weighted(sizes)];
    const a = r[0] + Math.floor(rng.next() * (r[1] - r[0] + 1));
    // Skip the network and broadcast-looking ends and multicast.
    if ((a & 255) === 0 || (a & 255) === 255 || a >= 0xe0000000) continue;
    if (!out.includes(a)) out.push(a);
  }
  return out;
}

/** Generates a week (or `days`) of conversations for the estate of `ir`. */
export function generateFlowLogs(ir: Ir, options: FlowLogOptions): FlowLogs {
  const rng = new Rng(options.seed);
  const start = options.start ?? Date.parse('2026-11-16T00:00:00Z');
  const days = options.days ?? 7;
  const target = options.conversations ?? 50_000;
  const workloads = ir.workloads;
  const byName = new Map(workloads.map((w, i) => [w.name, i]));
  const v4Of = (i: number): number | undefined => workloads[i].addresses.find((p) => typeof p.addr === 'number' && p.len === 32)?.addr as number | undefined;
  const v6Of = (i: number): bigint | undefined => workloads[i].addresses.find((p) => typeof p.addr === 'bigint' && p.len === 128)?.addr as bigint | undefined;
  const anyV4 = (i: number): number | undefined => {
    const exact = v4Of(i);
    if (exact !== undefined) return exact;
    const p = workloads[i].addresses.find((x) => typeof x.addr === 'number');
    return p ? (p.addr as number) + 10 + (rng.int(2 ** (32 - p.len) - 20) || 0) : undefined;
  };

  // Patterns from the allow rules.
  const patterns: Pattern[] = [];
  const outside = new Map<string, Addr[]>();
  for (const r of ir.rules) {
    if (r.rule.action !== 'allow' || r.rule.tier !== 'allow') continue;
    const side = (s: typeof r.from): End[] => {
      const ends: End[] = [];
      for (const c of s.classes.indices()) for (const m of ir.classes[c].members) ends.push({ w: m });
      if (!s.ips.isEmpty()) {
        const key = s.ips.toString();
        let pool = outside.get(key);
        if (!pool) outside.set(key, (pool = sampleAddresses(s.ips, rng, 12)));
        for (const a of pool) ends.push({ a });
      }
      return ends;
    };
    const clients = side(r.from);
    const servers = side(r.to);
    if (clients.length === 0 || servers.length === 0) continue;
    const conns: { proto: number; port: number }[] = [];
    for (const e of r.conns.entries()) {
      if (e.proto !== 6 && e.proto !== 17 && e.proto !== 1 && e.proto !== 58) continue;
      for (const [lo, hi] of e.ranges) {
        if (hi - lo > 1024) continue; // whole protocols and wide ranges: not one service
        conns.push({ proto: e.proto, port: lo });
        if (hi > lo && (e.proto === 6 || e.proto === 17)) conns.push({ proto: e.proto, port: lo + 1 + rng.int(hi - lo) });
      }
    }
    if (conns.length === 0) continue;
    const service = r.rule.services.map((s) => s.name).find((n) => PROFILES[n]) ?? r.rule.services[0]?.name ?? '';
    const profile = PROFILES[service] ?? DEFAULT_PROFILE;
    const maxPairs = service === 'node-exporter' || service === 'dns' || service === 'ntp' || service === 'syslog' ? 60 : 24;
    for (let k = 0; k < maxPairs; k++) {
      const client = rng.pick(clients);
      const server = rng.pick(servers);
      if ('w' in client && 'w' in server && client.w === server.w) continue;
      const c = rng.pick(conns);
      if (options.keep) {
        const a = 'w' in client ? anyV4(client.w) : client.a;
        const b = 'w' in server ? anyV4(server.w) : server.a;
        if (a === undefined || b === undefined || typeof a !== typeof b || !options.keep(a, b, c.proto, c.port)) continue;
      }
      patterns.push({ id: r.rule.id, client, server, proto: c.proto, port: c.port, profile, rate: profile.rate * Math.exp(gauss(rng) * 0.8) });
    }
  }

  // Scale the rates to the wanted number of conversations.
  const hours = days * 24;
  let expected = 0;
  for (const p of patterns) for (let h = 0; h < Math.min(hours, 168); h++) expected += p.rate * rhythm(p.profile.rhythm, h % 168);
  expected *= hours / Math.min(hours, 168);
  const scale = expected > 0 ? target / expected : 0;

  const sensorOf = (c: End, s: End): Sensor => {
    const loc = (e: End) => ('w' in e ? workloads[e.w].labels.loc : undefined);
    const l = [loc(c), loc(s)];
    if (l.includes('aws-eu-west-1')) return 'aws-vpc';
    if (l.includes('dc2')) return 'netflow9';
    return 'zeek';
  };
  const out: Conversation[] = [];
  const addConv = (p: { client: End; server: End; proto: number; port: number; profile: Profile; id: string }, t: number, state: Conversation['state'] = 'ok') => {
    let useV6 = 'w' in p.client && 'w' in p.server && v6Of(p.client.w) !== undefined && v6Of(p.server.w) !== undefined && rng.chance(0.25);
    // IPv6 only where the policy treats the pair as it does over IPv4.
    if (useV6 && options.keep && state === 'ok' && !options.keep(v6Of((p.client as { w: number }).w)!, v6Of((p.server as { w: number }).w)!, p.proto, p.port)) useV6 = false;
    const addr = (e: End): Addr | undefined => ('a' in e ? e.a : useV6 ? v6Of(e.w) : anyV4(e.w));
    const client = addr(p.client);
    const server = addr(p.server);
    if (client === undefined || server === undefined || typeof client !== typeof server) return;
    const icmp = p.proto === 1 || p.proto === 58;
    if ((p.proto === 1 && typeof client === 'bigint') || (p.proto === 58 && typeof client === 'number')) return;
    const prof = p.profile;
    const secs = state === 'ok' ? logBetween(rng, prof.seconds) : 0;
    const bytesOut = state === 'ok' ? Math.round(logBetween(rng, prof.out)) : 60;
    const bytesIn = state === 'ok' ? Math.round(logBetween(rng, prof.in)) : state === 'rejected' ? 40 : 0;
    const packetsOut = Math.max(1, Math.ceil(bytesOut / 1200) + (p.proto === 6 && state === 'ok' ? 3 : 0));
    const packetsIn = bytesIn === 0 ? 0 : Math.max(1, Math.ceil(bytesIn / 1400) + (p.proto === 6 && state === 'ok' ? 2 : 0));
    out.push({
      start: t,
      end: t + Math.round(secs * 1000),
      client,
      server,
      clientPort: icmp ? 0 : 32768 + rng.int(28232),
      serverPort: p.port,
      proto: p.proto,
      packetsOut,
      bytesOut,
      packetsIn,
      bytesIn,
      state,
      pattern: p.id,
      sensor: sensorOf(p.client, p.server),
    });
  };
  for (let h = 0; h < hours; h++) {
    const t0 = start + h * 3600_000;
    for (const p of patterns) {
      const n = poisson(rng, p.rate * rhythm(p.profile.rhythm, h % 168) * scale);
      for (let k = 0; k < n; k++) addConv(p, t0 + rng.int(3600_000));
    }
  }

  // Anomalies.
  const anomalies: InjectedAnomaly[] = [];
  const w = (name: string): End | undefined => {
    const i = byName.get(name);
    return i === undefined ? undefined : { w: i };
  };
  const inject = (kind: InjectedAnomaly['kind'], description: string, client: End | undefined, server: End | undefined, proto: number, ports: number[], day: number, hour: number, count: number, state: Conversation['state'], profile: Profile) => {
    if (!client || !server || day >= days) return;
    const t0 = start + day * 86400_000 + hour * 3600_000;
    const before = out.length;
    for (let k = 0; k < count; k++) {
      const port = ports[k % ports.length];
      addConv({ client, server, proto, port, profile, id: `anomaly:${kind}` }, t0 + (ports.length > 1 ? k * 250 : rng.int(3 * 3600_000)), state);
    }
    const name = (e: End) => ('w' in e ? workloads[e.w].name : formatAddr(e.a));
    const portText = ports.length > 3 ? `${ports[0]}-${ports[ports.length - 1]}/tcp` : ports.map((p) => `${p}/${proto === 6 ? 'tcp' : 'udp'}`).join(', ');
    anomalies.push({ kind, description, client: name(client), server: name(server), ports: portText, connections: out.length - before, day });
  };
  if (!options.noAnomalies) {
    const db = PROFILES.postgres;
    inject('dev-to-prod-db', 'a dev app server queries the prod shop database', w('shop-dev-app-1'), w('shop-prod-db-1'), 6, [5432], 2, 14, 40, 'ok', db);
    inject('ssh-not-from-jump', 'SSH between app servers, not from a jump host', w('analytics-prod-app-2'), w('crm-prod-app-1'), 6, [22], 3, 10, 6, 'ok', PROFILES.ssh);
    inject('ssh-not-from-jump', 'SSH from one shop tier to another, not from a jump host', w('shop-prod-app-1'), w('shop-prod-db-1'), 6, [22], 3, 15, 4, 'ok', PROFILES.ssh);
    inject('ssh-not-from-jump', 'SSH from the internet to the dev load balancer subnet, refused', { a: parseAddr('185.220.101.7')! }, w('alb-dev'), 6, [22], 4, 3, 25, 'rejected', PROFILES.ssh);
    const ports = Array.from({ length: 1024 }, (_, i) => i + 1);
    inject('port-scan', 'a web server scans the first 1024 TCP ports of the HR database', w('crm-prod-web-2'), w('hr-prod-db-1'), 6, ports, 4, 22, 1024, 'syn-only', DEFAULT_PROFILE);
  }
  out.sort((a, b) => a.start - b.start || a.end - b.end);
  return { conversations: out, anomalies, start, end: start + days * 86400_000 };
}

// ---------------------------------------------------------------- writers

/** The flow records a unidirectional sensor (VPC, NetFlow) sees for a conversation: client to server, and the answer when there is one. */
export function directionalRecords(c: Conversation, format: 'aws-vpc' | 'netflow9'): FlowRecord[] {
  const icmp = c.proto === 1 || c.proto === 58;
  const tcp = c.proto === 6;
  const aws = format === 'aws-vpc';
  // AWS reports SYN (2), SYN-ACK (18), FIN (1) and RST (4) only; NetFlow ORs every flag of its direction.
  const outFlags = !tcp ? undefined : c.state === 'syn-only' ? 2 : c.state === 'rejected' ? 2 : aws ? 3 : 27;
  const inFlags = !tcp ? undefined : c.state === 'rejected' ? (aws ? 4 : 20) : aws ? 19 : 27;
  const action = c.state === 'rejected' ? ('reject' as const) : aws ? ('accept' as const) : undefined;
  const recs: FlowRecord[] = [
    {
      start: c.start,
      end: c.end,
      src: c.client,
      dst: c.server,
      proto: c.proto,
      srcPort: c.clientPort,
      dstPort: icmp ? (aws ? 0 : c.serverPort) : c.serverPort,
      packets: c.packetsOut,
      bytes: c.bytesOut,
      ...(outFlags !== undefined ? { tcpFlags: outFlags } : {}),
      ...(action ? { action } : {}),
      format,
    },
  ];
  if (c.packetsIn > 0 && !(aws && c.state === 'rejected')) {
    const replyType = c.proto === 1 && c.serverPort >>> 8 === 8 ? 0 : c.proto === 58 && c.serverPort >>> 8 === 128 ? 129 * 256 : -1;
    if (!icmp || replyType >= 0 || aws) {
      recs.push({
        start: c.start,
        end: c.end,
        src: c.server,
        dst: c.client,
        proto: c.proto,
        srcPort: icmp ? 0 : c.serverPort,
        dstPort: icmp ? (aws ? 0 : replyType) : c.clientPort,
        packets: c.packetsIn,
        bytes: c.bytesIn,
        ...(inFlags !== undefined ? { tcpFlags: inFlags } : {}),
        ...(action ? { action } : {}),
        format,
      });
    }
  }
  return recs;
}

/** AWS VPC Flow Logs, default format with its header line, one line per direction (as S3 delivery writes them). */
export function* vpcLines(conversations: Iterable<Conversation>): Generator<string> {
  yield 'version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status';
  for (const c of conversations) {
    if (c.sensor !== 'aws-vpc') continue;
    for (const r of directionalRecords(c, 'aws-vpc')) {
      // The interface is the cloud end's; AWS aggregates into windows of whole seconds.
      const eni = `eni-0${((typeof r.src === 'number' ? r.src : Number(r.src & 0xffffffn)) >>> 0).toString(16).padStart(8, '0')}0000000`;
      const s = Math.floor(r.start / 1000);
      const e = Math.max(s, Math.floor(r.end / 1000));
      yield `2 123456789012 ${eni} ${formatAddr(r.src)} ${formatAddr(r.dst)} ${r.srcPort} ${r.dstPort} ${r.proto} ${r.packets} ${r.bytes} ${s} ${e} ${r.action === 'reject' ? 'REJECT' : 'ACCEPT'} OK`;
    }
  }
}

/** Zeek conn.log, TSV with its header, one line per connection the dc1 sensor saw. */
export function* zeekLines(conversations: Iterable<Conversation>, openTime: number): Generator<string> {
  const stamp = (t: number) => new Date(t).toISOString().slice(0, 19).replace('T', '-').replace(/:/g, '-');
  yield '#separator \\x09';
  yield '#set_separator\t,';
  yield '#empty_field\t(empty)';
  yield '#unset_field\t-';
  yield '#path\tconn';
  yield `#open\t${stamp(openTime)}`;
  yield `#fields\t${ZEEK_CONN_FIELDS.join('\t')}`;
  yield '#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]';
  let n = 0;
  let last = openTime;
  const services: Record<number, string> = { 53: 'dns', 80: 'http', 443: 'ssl', 22: 'ssh', 389: 'ldap', 636: 'ssl', 5432: 'postgresql', 3306: 'mysql', 6379: 'redis', 123: 'ntp', 514: 'syslog' };
  for (const c of conversations) {
    if (c.sensor !== 'zeek') continue;
    n++;
    last = c.end;
    const icmp = c.proto === 1 || c.proto === 58;
    const proto = c.proto === 6 ? 'tcp' : c.proto === 17 ? 'udp' : 'icmp';
    const state = c.state === 'syn-only' ? 'S0' : c.state === 'rejected' ? 'REJ' : c.proto === 6 ? 'SF' : 'SHR';
    const history = c.proto !== 6 ? (c.packetsIn > 0 ? 'Dd' : 'D') : c.state === 'syn-only' ? 'S' : c.state === 'rejected' ? 'Sr' : 'ShADadFf';
    const payloadOut = Math.max(0, c.bytesOut - c.packetsOut * 40);
    const payloadIn = Math.max(0, c.bytesIn - c.packetsIn * 40);
    const uid = `C${(n * 2654435761 >>> 0).toString(36)}${(c.start % 100000).toString(36)}`;
    const f = [
      (c.start / 1000).toFixed(6),
      uid,
      formatAddr(c.client),
      icmp ? String(c.serverPort >>> 8) : String(c.clientPort),
      formatAddr(c.server),
      icmp ? String(c.serverPort & 255) : String(c.serverPort),
      proto,
      services[c.serverPort] ?? '-',
      ((c.end - c.start) / 1000).toFixed(6),
      String(payloadOut),
      String(payloadIn),
      state,
      'T',
      'T',
      '0',
      history,
      String(c.packetsOut),
      String(c.bytesOut),
      String(c.packetsIn),
      String(c.bytesIn),
      '(empty)',
    ];
    yield f.join('\t');
  }
  yield `#close\t${stamp(last)}`;
}

/**
 * NetFlow v9 from the dc2 router (exporter 10.20.0.1, source id 1) to a
 * collector (10.20.0.100:2055), as a pcap capture: the header, then one
 * record per datagram, with the templates every 20 datagrams.
 */
export function* netflowPcap(conversations: Iterable<Conversation>, bootMs: number): Generator<Uint8Array> {
  yield pcapHeader();
  const enc = new NetflowV9Encoder({ domain: 1, bootMs, perDatagram: 24, templateEvery: 20 });
  let pending: FlowRecord[] = [];
  let exportAt = 0;
  const flush = function* (): Generator<Uint8Array> {
    if (pending.length === 0) return;
    for (const d of enc.encode(pending)) yield pcapRecord({ time: exportAt, src: 0x0a140001, dst: 0x0a140064, sport: 50001, dport: 2055, payload: d });
    pending = [];
  };
  for (const c of conversations) {
    if (c.sensor !== 'netflow9') continue;
    for (const r of directionalRecords(c, 'netflow9')) {
      pending.push(r);
      exportAt = Math.max(exportAt, r.end);
    }
    if (pending.length >= 240) yield* flush();
  }
  yield* flush();
}
