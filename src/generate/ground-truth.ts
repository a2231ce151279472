/**
 * Estates with a known ground-truth policy, and flows that follow it plus
 * labelled noise: the yardstick of `bulkhead recommend` (its quality test
 * and `npm run bench:recommend`).
 *
 * The ground truth is the policy a careful engineer would write for the
 * estate: per app and environment, the tiers talk to each other on their
 * own ports; a few apps call each other's API; load balancers front the web
 * tiers; shared services (DNS, NTP, syslog, monitoring) serve everyone; admin
 * goes only through the jump hosts; some prod apps call the internet.
 *
 * The conversations cover every group pair the ground truth allows (a few
 * workload pairs each), so a perfect recommender can reach recall 1. The
 * noise is what a reviewer should see and no allow rule should carry:
 * crossings between environments, admin ports from hosts that are no jump
 * host, addresses that are no workload, and scans. Pure and deterministic.
 */
import { formatAddr } from '../netset/ip.js';
import { FlowBatch, formatId, INITIATOR } from '../flows/record.js';
import { Rng } from './prng.js';
import type { EstateDocument, IpListDoc, RuleDoc, RulesetDoc, ServiceDoc, WorkloadDoc } from './types.js';

export interface GroundTruthOptions {
  seed: number;
  /** Business apps (default 12). */
  apps?: number;
  /** Environments (default prod, staging, dev). */
  envs?: readonly string[];
  /** Share of noise conversations among all conversations (default 0.05). */
  noise?: number;
  /** Workload pairs drawn per allowed group pair (default 2). */
  pairsPerGroupPair?: number;
}

/** Why a noise conversation is noise: what the recommender should flag. */
export type NoiseKind = 'cross-env' | 'admin' | 'unknown' | 'scan';

/** One conversation: a client talking to a server's port, repeated by {@link GroundTruthFlows}. */
export interface Conversation {
  readonly client: number;
  readonly server: number;
  readonly proto: number;
  readonly port: number;
  /** The ground-truth rule it follows, or the kind of noise it is. */
  readonly rule?: string;
  readonly noise?: NoiseKind;
  /** Typical packets per flow (scans: 1). */
  readonly packets: number;
}

export interface GroundTruth {
  /** The estate with the ground-truth policy. */
  readonly estate: EstateDocument;
  /** The estate without rulesets: what the recommender starts from. */
  readonly inventory: EstateDocument;
  readonly conversations: readonly Conversation[];
}

const TCP = 6;
const UDP = 17;

const APP_NAMES = ['shop', 'crm', 'hr', 'billing', 'search', 'orders', 'ledger', 'claims', 'wiki', 'portal', 'risk', 'media', 'fraud', 'kyc', 'iot', 'erp', 'cms', 'docs', 'chat', 'scm'];
const APP_PORTS = [8443, 8080, 9000, 50051, 8000];
const DB_PORTS = [5432, 3306, 1433, 27017];

const SERVICES: ServiceDoc[] = [
  { name: 'https', ports: ['443/tcp'] },
  { name: 'dns', ports: ['53/udp', '53/tcp'] },
  { name: 'ntp', ports: ['123/udp'] },
  { name: 'syslog', ports: ['514/udp'] },
  { name: 'node-exporter', ports: ['9100/tcp'] },
  { name: 'ssh', ports: ['22/tcp'] },
  { name: 'redis', ports: ['6379/tcp'] },
];

const quote = (s: string) => `'${s}'`;

/** An estate, its ground-truth policy and the conversations over it. */
export function generateGroundTruth(options: GroundTruthOptions): GroundTruth {
  const rng = new Rng(options.seed);
  const envs = options.envs ?? ['prod', 'staging', 'dev'];
  const nApps = Math.min(options.apps ?? 12, APP_NAMES.length * 10);
  const pairsPer = options.pairsPerGroupPair ?? 2;
  const workloads: WorkloadDoc[] = [];
  /** Workload indices by group key `role/app/env`. */
  const groups = new Map<string, number[]>();
  let next = (10 << 24) | (10 << 16) | 10; // 10.10.0.10 on
  const add = (role: string, app: string, env: string) => {
    const i = workloads.length;
    const addr = next++;
    if ((next & 255) === 250) next += 16; // stay clear of .250-.255 and .0-.9
    workloads.push({ name: `${app}-${role}-${env}-${(groups.get(`${role}/${app}/${env}`)?.length ?? 0) + 1}`, addresses: [formatAddr(addr)], labels: { role, app, env, loc: rng.pick(['dc1', 'dc2']) } });
    const key = `${role}/${app}/${env}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(i);
  };
  const apps = Array.from({ length: nApps }, (_, i) => ({
    name: i < APP_NAMES.length ? APP_NAMES[i] : `${APP_NAMES[i % APP_NAMES.length]}${Math.floor(i / APP_NAMES.length) + 1}`,
    appPort: rng.pick(APP_PORTS),
    dbPort: rng.pick(DB_PORTS),
    cache: rng.chance(0.4),
    internet: rng.chance(0.3),
  }));
  for (const a of apps) {
    for (const env of envs) {
      const scale = env === 'prod' ? 2 : 1;
      for (let k = rng.range(1, 2 * scale); k > 0; k--) add('web', a.name, env);
      for (let k = rng.range(1, 2 * scale); k > 0; k--) add('app', a.name, env);
      for (let k = rng.range(1, scale); k > 0; k--) add('db', a.name, env);
      if (a.cache) add('cache', a.name, env);
    }
  }
  for (const env of envs) add('lb', 'edge', env);
  for (const role of ['dns', 'dns', 'ntp', 'syslog', 'monitor', 'jump', 'jump']) add(role, 'infra', 'shared');

  const iplists: IpListDoc[] = [
    { name: 'internet', include: ['0.0.0.0/0'], exclude: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16'] },
    { name: 'corp-vpn', include: ['10.250.0.0/16'] },
  ];

  // ---- the ground-truth policy, and the group pairs each rule allows
  const rulesets: RulesetDoc[] = [];
  type End = { groups: string[] } | { iplist: 'internet' | 'corp-vpn' };
  const gtRules: { id: string; from: End; to: End; proto: number; port: number }[] = [];
  const allGroups = [...groups.keys()];
  const parsed = allGroups.map((g) => [g, ...g.split('/')] as [string, string, string, string]);
  const groupsWhere = (f: (role: string, app: string, env: string) => boolean) => parsed.filter(([, r, a, e]) => f(r, a, e)).map(([g]) => g);
  const rule = (rs: RulesetDoc, r: RuleDoc, from: End, to: End, conns: [number, number][]) => {
    rs.rules.push(r);
    for (const [proto, port] of conns) gtRules.push({ id: r.id!, from, to, proto, port });
  };
  for (const a of apps) {
    for (const env of envs) {
      const rs: RulesetDoc = { name: `${a.name}-${env}`, scope: `app == ${quote(a.name)} && env == ${quote(env)}`, rules: [] };
      const g = (role: string) => groupsWhere((r, ap, e) => r === role && ap === a.name && e === env);
      rule(rs, { id: `${a.name}-${env}-web-app`, from: ["role == 'web'"], to: ["role == 'app'"], services: [`${a.appPort}/tcp`] }, { groups: g('web') }, { groups: g('app') }, [[TCP, a.appPort]]);
      rule(rs, { id: `${a.name}-${env}-app-db`, from: ["role == 'app'"], to: ["role == 'db'"], services: [`${a.dbPort}/tcp`] }, { groups: g('app') }, { groups: g('db') }, [[TCP, a.dbPort]]);
      if (a.cache) rule(rs, { id: `${a.name}-${env}-app-cache`, from: ["role == 'app'"], to: ["role == 'cache'"], services: ['redis'] }, { groups: g('app') }, { groups: g('cache') }, [[TCP, 6379]]);
      rulesets.push(rs);
    }
  }
  // A few apps call another app's API, in the same environment.
  const edge: RulesetDoc = { name: 'edge', rules: [] };
  for (let k = 0; k < Math.floor(nApps / 3); k++) {
    const [caller, callee] = rng.sample(apps, 2);
    if (!callee) break;
    for (const env of envs) {
      const id = `${caller.name}-calls-${callee.name}-${env}`;
      if (gtRules.some((r) => r.id === id)) continue;
      const rs: RulesetDoc = { name: `api-${env}`, scope: `env == ${quote(env)}`, rules: [] };
      let existing = rulesets.find((r) => r.name === rs.name);
      if (!existing) rulesets.push((existing = rs));
      const from = groupsWhere((r, ap, e) => r === 'app' && ap === caller.name && e === env);
      const to = groupsWhere((r, ap, e) => r === 'app' && ap === callee.name && e === env);
      rule(existing, { id, from: [`role == 'app' && app == ${quote(caller.name)}`], to: [`role == 'app' && app == ${quote(callee.name)}`], services: [`${callee.appPort}/tcp`] }, { groups: from }, { groups: to }, [[TCP, callee.appPort]]);
    }
  }
  for (const env of envs) {
    const lb = groupsWhere((r, _a, e) => r === 'lb' && e === env);
    const web = groupsWhere((r, _a, e) => r === 'web' && e === env);
    rule(edge, { id: `lb-web-${env}`, from: [`role == 'lb' && env == ${quote(env)}`], to: [`role == 'web' && env == ${quote(env)}`], services: ['https'] }, { groups: lb }, { groups: web }, [[TCP, 443]]);
  }
  rule(edge, { id: 'internet-lb', from: [{ iplist: 'internet' }], to: ["role == 'lb' && env == 'prod'"], services: ['https'] }, { iplist: 'internet' }, { groups: groupsWhere((r, _a, e) => r === 'lb' && e === 'prod') }, [[TCP, 443]]);
  const egressApps = apps.filter((a) => a.internet).map((a) => a.name);
  if (egressApps.length > 0) {
    rule(edge, { id: 'apps-internet', from: [`role == 'app' && env == 'prod' && app in {${egressApps.map(quote).join(', ')}}`], to: [{ iplist: 'internet' }], services: ['https'] }, { groups: groupsWhere((r, a, e) => r === 'app' && e === 'prod' && egressApps.includes(a)) }, { iplist: 'internet' }, [[TCP, 443]]);
  }
  rulesets.push(edge);
  const shared: RulesetDoc = { name: 'shared-services', rules: [] };
  const everyone = { groups: allGroups };
  const role = (r: string) => ({ groups: groupsWhere((x) => x === r) });
  rule(shared, { id: 'dns', from: ['all()'], to: ["role == 'dns'"], services: ['dns'] }, everyone, role('dns'), [[UDP, 53], [TCP, 53]]);
  rule(shared, { id: 'ntp', from: ['all()'], to: ["role == 'ntp'"], services: ['ntp'] }, everyone, role('ntp'), [[UDP, 123]]);
  rule(shared, { id: 'syslog', from: ['all()'], to: ["role == 'syslog'"], services: ['syslog'] }, everyone, role('syslog'), [[UDP, 514]]);
  rule(shared, { id: 'monitoring', from: ["role == 'monitor'"], to: ['all()'], services: ['node-exporter'] }, role('monitor'), everyone, [[TCP, 9100]]);
  rule(shared, { id: 'vpn-jump', from: [{ iplist: 'corp-vpn' }], to: ["role == 'jump'"], services: ['ssh'] }, { iplist: 'corp-vpn' }, role('jump'), [[TCP, 22]]);
  rule(shared, { id: 'jump-admin', from: ["role == 'jump'"], to: ['all()'], services: ['ssh'] }, role('jump'), everyone, [[TCP, 22]]);
  rulesets.push(shared);

  // ---- conversations: a few workload pairs per allowed group pair
  const conversations: Conversation[] = [];
  const v4 = (i: number) => ipv4(workloads[i].addresses[0]);
  const internetAddr = () => ((rng.range(11, 99) << 24) | (rng.int(256) << 16) | (rng.int(256) << 8) | rng.range(1, 254)) >>> 0;
  const vpnAddr = () => ((10 << 24) | (250 << 16) | (rng.int(4) << 8) | rng.range(2, 254)) >>> 0;
  const endAddrs = (e: End, count: number): number[][] => {
    if ('iplist' in e) return [Array.from({ length: count * 3 }, () => (e.iplist === 'internet' ? internetAddr() : vpnAddr()))];
    return e.groups.map((g) => groups.get(g)!.map(v4));
  };
  for (const r of gtRules) {
    const froms = endAddrs(r.from, pairsPer);
    const tos = endAddrs(r.to, pairsPer);
    for (const fs of froms) {
      for (const ts of tos) {
        for (let k = 0; k < pairsPer; k++) {
          const client = rng.pick(fs);
          let server = rng.pick(ts);
          if (server === client) server = ts.find((t) => t !== client) ?? server;
          if (server === client) continue; // a group of one talking to itself
          conversations.push({ client, server, proto: r.proto, port: r.port, rule: r.id, packets: rng.range(4, 40) });
        }
      }
    }
  }
  // ---- noise
  const legit = conversations.length;
  const noiseShare = options.noise ?? 0.05;
  const noiseCount = Math.round((legit * noiseShare) / (1 - noiseShare));
  const byRole = (r: string) => groupsWhere((x) => x === r).flatMap((g) => groups.get(g)!);
  const jumps = new Set(byRole('jump'));
  const nonJump = workloads.map((_, i) => i).filter((i) => !jumps.has(i) && workloads[i].labels!.app !== 'infra');
  const envOf = (i: number) => workloads[i].labels!.env;
  let scans = 0;
  while (conversations.length - legit < noiseCount) {
    const kind = rng.weighted([4, 3, 2, 1]);
    if (kind === 0) {
      // A workload reaching into another environment on a service port.
      const a = rng.pick(nonJump);
      const b = rng.pick(nonJump);
      if (envOf(a) === envOf(b) || envOf(a) === 'shared' || envOf(b) === 'shared') continue;
      const role = workloads[b].labels!.role;
      const port = role === 'db' ? 5432 : role === 'app' ? rng.pick(APP_PORTS) : 443;
      conversations.push({ client: v4(a), server: v4(b), proto: TCP, port, noise: 'cross-env', packets: rng.range(4, 30) });
    } else if (kind === 1) {
      // SSH or RDP between ordinary hosts, not through a jump host.
      const a = rng.pick(nonJump);
      const b = rng.pick(nonJump);
      if (a === b || envOf(a) !== envOf(b)) continue;
      conversations.push({ client: v4(a), server: v4(b), proto: TCP, port: rng.pick([22, 3389, 5985, 5986]), noise: 'admin', packets: rng.range(10, 60) });
    } else if (kind === 2) {
      // An address that is no workload, inside the private ranges, either way.
      const stranger = ((10 << 24) | (99 << 16) | (rng.int(256) << 8) | rng.range(1, 254)) >>> 0;
      const w = v4(rng.pick(nonJump));
      if (rng.chance(0.5)) conversations.push({ client: stranger, server: w, proto: TCP, port: rng.pick([443, 8080, 5432]), noise: 'unknown', packets: rng.range(4, 30) });
      else conversations.push({ client: w, server: stranger, proto: TCP, port: rng.pick([443, 4444, 8080]), noise: 'unknown', packets: rng.range(4, 30) });
    } else {
      // A scan: one compromised host sweeping many hosts and ports, one packet each.
      const a = v4(rng.pick(nonJump));
      const targets = rng.sample(nonJump, Math.min(40, nonJump.length));
      for (const t of targets) {
        if (v4(t) === a) continue;
        for (const port of rng.sample([21, 23, 25, 80, 110, 135, 139, 445, 1433, 3306, 5432, 5900, 6379, 8080, 9200, 11211, 27017], 6)) conversations.push({ client: a, server: v4(t), proto: TCP, port, noise: 'scan', packets: 1 });
      }
      scans++;
    }
  }
  void scans;
  const inventory: EstateDocument = {
    taxonomy: { role: 'open', app: 'open', env: [...envs, 'shared'], loc: ['dc1', 'dc2'] },
    settings: {},
    workloads,
    iplists,
    services: SERVICES,
    rulesets: [],
    modes: [],
    overrides: [],
  };
  return { estate: { ...inventory, rulesets }, inventory, conversations };
}

function ipv4(text: string): number {
  const p = text.split('.').map(Number);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

/**
 * Flow records over the conversations, in columnar batches: each record is
 * one conversation (legit ones weighted by a long tail, noise ones once or a
 * few times) at a random time in the window, from an ephemeral client port.
 * The server side is known, so callers can hand the store the orientation.
 */
export class GroundTruthFlows {
  private readonly rng: Rng;
  private readonly weights: Float64Array;
  private readonly total: number;
  private readonly format = formatId('csv');

  constructor(
    private readonly conversations: readonly Conversation[],
    seed: number,
    private readonly window: { start: number; ms: number },
  ) {
    this.rng = new Rng(seed);
    this.weights = new Float64Array(conversations.length);
    let t = 0;
    conversations.forEach((c, i) => {
      // Legit conversations repeat (a heavy tail); noise is rare.
      t += c.noise ? 0.2 : 1 + 20 * this.rng.next() ** 3;
      this.weights[i] = t;
    });
    this.total = t;
  }

  /** The conversation of the next record: every conversation first once, in order, then weighted draws. */
  private pick(n: number): number {
    if (n < this.conversations.length) return n;
    const x = this.rng.next() * this.total;
    let lo = 0;
    let hi = this.weights.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.weights[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Fills `batch` with up to its capacity of records, numbered from `first`,
   * and `server` with the orientation (1: the destination is the server) and
   * `port` with the server port. Returns the number of rows.
   */
  fill(batch: FlowBatch, first: number, count: number, server: Uint8Array, port: Uint16Array): number {
    const n = Math.min(count, batch.capacity);
    const rng = this.rng;
    for (let i = 0; i < n; i++) {
      const c = this.conversations[this.pick(first + i)];
      const start = this.window.start + Math.floor(rng.next() * this.window.ms);
      batch.start[i] = start;
      batch.end[i] = start + 1000 + rng.int(60_000);
      batch.v6[i] = 0;
      batch.src4[i] = c.client;
      batch.dst4[i] = c.server;
      batch.proto[i] = c.proto;
      batch.srcPort[i] = 32768 + rng.int(28232);
      batch.dstPort[i] = c.port;
      const packets = c.packets === 1 ? 1 : c.packets + rng.int(c.packets);
      batch.packets[i] = packets;
      batch.bytes[i] = packets * (60 + rng.int(1200));
      batch.action[i] = 0;
      batch.tcpFlags[i] = -1;
      batch.initiator[i] = INITIATOR.src;
      batch.format[i] = this.format;
      server[i] = 1;
      port[i] = c.port;
    }
    batch.length = n;
    return n;
  }
}
