/**
 * A seeded generator of realistic estates: workloads, taxonomy, services, IP
 * lists, rulesets, modes and overrides, in exactly the section shape of
 * docs/POLICY.md. Pure and deterministic: the same options give a deep-equal
 * document; there is no I/O, no clock and no Math.random.
 *
 * The shape follows a real shop: shared services (DNS, NTP, LDAP, syslog,
 * monitoring, backup, jump hosts) per location; load balancers; many apps of
 * uneven size, each with web / app / db (and sometimes cache) tiers across
 * prod, staging and dev; some apps on Kubernetes (pods with a namespace
 * label, plus the cluster's nodes); PCI and PHI apps ring-fenced; partners
 * and NAT pools as unmanaged workloads; environment isolation and
 * jump-host-only admin as deny boundaries.
 *
 * Each phase draws from its own forked stream, so changing the rule count
 * does not change the workloads of a seed.
 */
import { formatAddr, parseAddr } from '../netset/ip.js';
import { Rng } from './prng.js';
import type {
  EstateDocument,
  IpListDoc,
  Mode,
  ModeDoc,
  OverrideDoc,
  PeerDoc,
  PortEntry,
  RuleDoc,
  RulesetDoc,
  ServiceDoc,
  Taxonomy,
  WorkloadDoc,
  WorkloadKind,
} from './types.js';

export interface GenerateEstateOptions {
  seed: number;
  /** Exactly this many workloads. */
  workloads: number;
  /** Exactly this many rules across all rulesets (overrides not counted). Default: the base rules plus two per app. */
  rules?: number;
  /** Number of business apps (besides infra, edge, platform, partner). Default: about one per 40 workloads. */
  apps?: number;
  /** Share of workloads that also get an IPv6 address (default 0.15). */
  ipv6Fraction?: number;
  /** Share of workloads that are unmanaged: appliances, partner servers, NAT pools (default 0.02). */
  unmanagedFraction?: number;
  /** Share of apps that run on Kubernetes (default 0.2). */
  k8sFraction?: number;
  /** Number of overrides (default 2: one break-glass, one admin). */
  overrides?: number;
}

export const LOCATIONS = ['dc1', 'dc2', 'aws-eu-west-1'] as const;
export const ENVIRONMENTS = ['prod', 'staging', 'dev'] as const;
export const ROLES = [
  'web', 'app', 'db', 'cache', 'lb', 'jump', 'mgmt', 'dns', 'ntp', 'ldap', 'syslog', 'monitor', 'backup',
  'k8s-node', 'appliance', 'sftp', 'nat',
] as const;

type Env = (typeof ENVIRONMENTS)[number];
type Loc = (typeof LOCATIONS)[number];
type Role = (typeof ROLES)[number];

/** Names of the non-business apps. */
export const INFRA_APP = 'infra';
export const EDGE_APP = 'edge';
export const PLATFORM_APP = 'platform';
export const PARTNER_APP = 'partner';

const APP_NAMES = [
  'shop', 'crm', 'hr', 'analytics', 'payments', 'ehr', 'billing', 'inventory', 'search', 'auth', 'catalog', 'orders',
  'shipping', 'reporting', 'wiki', 'mail', 'portal', 'ledger', 'claims', 'pricing', 'loyalty', 'fraud', 'docs', 'chat',
  'media', 'iot', 'erp', 'scm', 'cms', 'helpdesk', 'booking', 'quotes', 'risk', 'kyc', 'treasury', 'payroll',
];

/** The expiry of generated break-glass overrides: fixed, so output does not depend on the clock. */
export const BREAK_GLASS_EXPIRY = '2027-06-30T00:00:00Z';

const INTERNET_V4_EXCLUDE = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'];

// ---------------------------------------------------------------- services

function standardServices(): ServiceDoc[] {
  return [
    { name: 'http', ports: ['80/tcp'] },
    { name: 'https', ports: ['443/tcp'] },
    { name: 'web', ports: ['80/tcp', '443/tcp'] },
    { name: 'http-alt', ports: ['8080/tcp'] },
    { name: 'app-tls', ports: ['8443/tcp'] },
    { name: 'app-range', ports: ['8000-8100/tcp'] },
    { name: 'grpc', ports: ['50051/tcp'] },
    { name: 'postgres', ports: ['5432/tcp'] },
    { name: 'mysql', ports: ['3306/tcp'] },
    { name: 'mssql', ports: ['1433/tcp'] },
    { name: 'oracle', ports: ['1521/tcp'] },
    { name: 'mongodb', ports: ['27017/tcp'] },
    { name: 'redis', ports: ['6379/tcp'] },
    { name: 'memcached', ports: ['11211/tcp', '11211/udp'] },
    { name: 'kafka', ports: ['9092/tcp', '9093/tcp'] },
    { name: 'rabbitmq', ports: ['5671/tcp', '5672/tcp'] },
    { name: 'elasticsearch', ports: [{ proto: 'tcp', ports: [9200, '9300-9400'] }] },
    { name: 'dns', ports: ['53/udp', '53/tcp'] },
    { name: 'ntp', ports: ['123/udp'] },
    { name: 'ldap', ports: ['389/tcp', '636/tcp'] },
    { name: 'kerberos', ports: ['88/tcp', '88/udp'] },
    { name: 'syslog', ports: ['514/udp', '6514/tcp'] },
    { name: 'snmp', ports: ['161/udp'] },
    { name: 'statsd', ports: ['8125/udp'] },
    { name: 'node-exporter', ports: ['9100/tcp'] },
    { name: 'bacula-fd', ports: ['9102/tcp'] },
    { name: 'ssh', ports: ['22/tcp'] },
    { name: 'rdp', ports: ['3389/tcp'] },
    { name: 'admin', ports: ['22/tcp', '3389/tcp'] },
    { name: 'ping', ports: ['8/icmp', '128/icmpv6'] },
    { name: 'pmtud', ports: [{ proto: 'icmp', type: 3, code: 4 }, '2/icmpv6'] },
    { name: 'smtp-submission', ports: ['587/tcp'] },
    { name: 'sftp', ports: ['22/tcp'] },
    { name: 'diameter', ports: ['3868/sctp'] },
    { name: 'k8s-api', ports: ['6443/tcp'] },
    { name: 'k8s-node', ports: ['10250/tcp', '2379-2380/tcp', '4789/udp', '179/tcp'] },
    { name: 'nodeports', ports: ['30000-32767/tcp'] },
  ];
}

const DB_SERVICES = ['postgres', 'postgres', 'postgres', 'mysql', 'mysql', 'mssql', 'oracle', 'mongodb'];
const APP_SERVICES = ['http-alt', 'http-alt', 'app-tls', 'app-range', 'grpc'];
const CACHE_SERVICES = ['redis', 'redis', 'memcached'];

// ---------------------------------------------------------------- apps

interface AppProfile {
  name: string;
  /** The third group of the app's IPv6 addresses: unique per app. */
  v6Group: number;
  envs: Env[];
  prodLocs: Loc[];
  k8s: boolean;
  compliance?: 'pci' | 'phi';
  cache: boolean;
  appService: string;
  dbService: string;
  cacheService: string;
  weight: number;
  /** Apps whose app tier calls this app's app tier. */
  consumers: string[];
}

function appName(i: number): string {
  const base = APP_NAMES[i % APP_NAMES.length];
  const round = Math.floor(i / APP_NAMES.length);
  return round === 0 ? base : `${base}-${round + 1}`;
}

function makeApps(rng: Rng, count: number, k8sFraction: number): { apps: AppProfile[]; extraServices: ServiceDoc[] } {
  const apps: AppProfile[] = [];
  const extraServices: ServiceDoc[] = [];
  for (let i = 0; i < count; i++) {
    const name = appName(i);
    const envs: Env[] = ['prod'];
    if (rng.chance(0.75)) envs.push('staging');
    if (rng.chance(0.8)) envs.push('dev');
    const r = rng.next();
    const prodLocs: Loc[] = r < 0.5 ? ['dc1', 'dc2'] : r < 0.7 ? ['dc1'] : r < 0.85 ? ['dc2'] : ['aws-eu-west-1'];
    let compliance: 'pci' | 'phi' | undefined;
    if (name.startsWith('payments') || name.startsWith('ledger') || (i >= 6 && rng.chance(0.03))) compliance = 'pci';
    else if (name.startsWith('ehr') || name.startsWith('claims') || (i >= 6 && rng.chance(0.02))) compliance = 'phi';
    let appService = rng.pick(APP_SERVICES);
    if (rng.chance(0.3)) {
      // An app with a port of its own: a single port, a range, or a tcp+udp pair.
      const port = rng.range(9000, 9899);
      const shape = rng.int(3);
      const ports: PortEntry[] =
        shape === 0 ? [`${port}/tcp`] : shape === 1 ? [`${port}-${port + rng.range(2, 20)}/tcp`] : [`${port}/tcp`, `${port}/udp`];
      appService = `${name}-api`;
      extraServices.push({ name: appService, ports });
    }
    apps.push({
      name,
      v6Group: 0x10 + i,
      envs,
      prodLocs,
      k8s: prodLocs[0] !== 'aws-eu-west-1' && rng.chance(k8sFraction),
      ...(compliance ? { compliance } : {}),
      cache: rng.chance(0.4),
      appService,
      dbService: rng.pick(DB_SERVICES),
      cacheService: rng.pick(CACHE_SERVICES),
      weight: Math.pow(rng.next() + 0.05, 2.5) + 0.02,
      consumers: [],
    });
  }
  // Dependencies between apps: each app calls a few others' APIs.
  for (let i = 0; i < apps.length && apps.length > 1; i++) {
    const n = rng.int(3);
    for (let k = 0; k < n; k++) {
      const j = rng.int(apps.length);
      if (j !== i && !apps[j].consumers.includes(apps[i].name)) apps[j].consumers.push(apps[i].name);
    }
  }
  return { apps, extraServices };
}

// ---------------------------------------------------------------- addresses

function ipv4(text: string): number {
  const a = parseAddr(text);
  if (typeof a !== 'number') throw new Error(`not an IPv4 address: ${text}`);
  return a;
}

/** Sequential IPv4 allocation inside a range, skipping .0 and .255 host octets. */
class V4Pool {
  private next: number;
  constructor(
    start: string,
    private readonly limit: number,
    private readonly what: string,
  ) {
    this.next = ipv4(start);
  }
  alignTo(size: number): void {
    this.next = Math.ceil(this.next / size) * size;
  }
  take(): string {
    while ((this.next & 255) === 0 || (this.next & 255) === 255) this.next++;
    if (this.next >= this.limit) throw new Error(`address pool exhausted: ${this.what}`);
    return formatAddr(this.next++);
  }
  /** An aligned block, as a prefix. */
  takePrefix(len: number): string {
    const size = 2 ** (32 - len);
    this.alignTo(size);
    if (this.next + size > this.limit) throw new Error(`address pool exhausted: ${this.what}`);
    const base = this.next;
    this.next += size;
    return `${formatAddr(base)}/${len}`;
  }
}

const V6_INFRA = 1;
const V6_EDGE = 2;
const V6_PLATFORM = 3;

/** Our IPv6 allocation, 2001:db8::/32: the third group is the app's, the last two count its hosts. */
const V6_BASE = 0x20010db8n << 96n;

class V6Alloc {
  private readonly counters = new Map<number, number>();
  take(group: number): string {
    let n = (this.counters.get(group) ?? 0) + 1;
    if (n % 65536 === 0) n++; // never a zero last group: ...::0 reads like a network address
    this.counters.set(group, n);
    return formatAddr(V6_BASE | (BigInt(group & 0xffff) << 80n) | BigInt(n % 2 ** 32));
  }
}

// ---------------------------------------------------------------- workloads

interface Builder {
  rng: Rng;
  out: WorkloadDoc[];
  limit: number;
  names: Map<string, number>;
  v6: V6Alloc;
  ipv6Fraction: number;
}

function uniqueName(b: Builder, stem: string): string {
  const n = (b.names.get(stem) ?? 0) + 1;
  b.names.set(stem, n);
  return `${stem}-${n}`;
}

function push(
  b: Builder,
  stem: string,
  kind: WorkloadKind,
  v4: string,
  v6Group: number | undefined,
  labels: Record<string, string>,
  extra: Partial<WorkloadDoc> = {},
): boolean {
  if (b.out.length >= b.limit) return false;
  const addresses = [v4];
  if (v6Group !== undefined && b.rng.chance(b.ipv6Fraction)) addresses.push(b.v6.take(v6Group));
  b.out.push({ name: uniqueName(b, stem), kind, addresses, labels, ...extra });
  return true;
}

function kindFor(loc: Loc, role: Role, rng: Rng): WorkloadKind {
  if (loc === 'aws-eu-west-1') return 'cloud';
  if (role === 'db' || role === 'lb' || role === 'backup') return 'host';
  return rng.chance(0.8) ? 'vm' : 'host';
}

/** Largest-remainder split of `total` by weights: sums exactly to total. */
function split(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const out: number[] = [];
  let acc = 0;
  let given = 0;
  for (const w of weights) {
    acc += w;
    const upTo = sum > 0 ? Math.round((acc / sum) * total) : 0;
    out.push(upTo - given);
    given = upTo;
  }
  if (out.length > 0) out[out.length - 1] += total - given;
  return out;
}

interface Partner {
  name: string;
  prefix: string;
  sftp: string;
}

function makePartners(count: number): Partner[] {
  const out: Partner[] = [];
  for (let k = 0; k < count; k++) {
    // The documentation ranges first, then synthetic public /24s.
    const base = k === 0 ? '198.51.100.0' : k === 1 ? '203.0.113.0' : `${100 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}.0`;
    const prefix = `${base}/24`;
    const sftp = `${base.slice(0, base.lastIndexOf('.'))}.20`;
    out.push({ name: `partner-${k + 1}`, prefix, sftp });
  }
  return out;
}

// ---------------------------------------------------------------- rules

class RuleSink {
  readonly rulesets = new Map<string, RulesetDoc>();
  count = 0;
  constructor(readonly target: number) {}
  full(): boolean {
    return this.count >= this.target;
  }
  ruleset(name: string, scope?: string, description?: string): RulesetDoc {
    let rs = this.rulesets.get(name);
    if (!rs) {
      rs = { name, ...(scope !== undefined ? { scope } : {}), ...(description ? { description } : {}), rules: [] };
      this.rulesets.set(name, rs);
    }
    return rs;
  }
  add(rs: RulesetDoc, rule: RuleDoc): boolean {
    if (this.full()) return false;
    rs.rules.push(rule);
    this.count++;
    return true;
  }
}

const q = (s: string): string => `'${s}'`;
const setOf = (values: readonly string[]): string => `{${values.map(q).join(', ')}}`;
const glob = (selector: string): PeerDoc => ({ selector, global: true });

// ---------------------------------------------------------------- the generator

export function generateEstate(options: GenerateEstateOptions): EstateDocument {
  const total = Math.max(0, Math.floor(options.workloads));
  const ipv6Fraction = options.ipv6Fraction ?? 0.15;
  const unmanagedFraction = options.unmanagedFraction ?? 0.02;
  const appCount = Math.max(1, Math.floor(options.apps ?? Math.min(5000, Math.max(3, Math.round(total / 40)))));
  if (appCount > 60000) throw new Error('generateEstate: at most 60000 apps');

  const root = new Rng(options.seed);
  const rngApps = root.fork();
  const rngWork = root.fork();
  const rngRules = root.fork();
  const rngModes = root.fork();
  const rngOver = root.fork();

  const { apps, extraServices } = makeApps(rngApps, appCount, options.k8sFraction ?? 0.2);
  const anyK8s = apps.some((a) => a.k8s);
  const partners = makePartners(Math.max(2, Math.min(500, Math.round(appCount / 8))));

  // ---- workloads
  const b: Builder = { rng: rngWork, out: [], limit: total, names: new Map(), v6: new V6Alloc(), ipv6Fraction };
  const infraPool = new V4Pool('10.0.0.10', ipv4('10.1.0.0'), 'infra 10.0.0.0/16');
  const hostPool = new V4Pool('10.1.0.0', ipv4('10.128.0.0'), 'hosts 10.1.0.0-10.127.255.255');
  const podPool = new V4Pool('10.128.0.0', ipv4('10.200.0.0'), 'pods 10.128.0.0-10.199.255.255');
  const natPool = new V4Pool('10.250.0.0', ipv4('10.251.0.0'), 'NAT pools 10.250.0.0/16');

  const scale = 1 + Math.floor(total / 20000);
  const sharedRoles: Array<[Role, number]> = [
    ['dns', 2], ['ntp', 1], ['ldap', 1], ['syslog', 1], ['monitor', 1], ['backup', 1], ['jump', 1],
  ];
  // Shared services, location by location; the first location also gets the config-management host.
  for (const loc of LOCATIONS) {
    for (const [role, n] of sharedRoles) {
      for (let i = 0; i < n * scale; i++) {
        push(b, `${role}-${loc}`, kindFor(loc, role, rngWork), infraPool.take(), V6_INFRA, { role, app: INFRA_APP, env: 'prod', loc });
      }
    }
    if (loc === 'dc1') push(b, 'ansible', 'vm', infraPool.take(), V6_INFRA, { role: 'mgmt', app: INFRA_APP, env: 'prod', loc });
  }
  // Load balancers: prod in every location, one per non-prod env.
  for (const loc of LOCATIONS) {
    for (let i = 0; i < 2 * scale; i++) push(b, `lb-prod-${loc}`, kindFor(loc, 'lb', rngWork), infraPool.take(), V6_EDGE, { role: 'lb', app: EDGE_APP, env: 'prod', loc });
  }
  push(b, 'lb-staging', 'vm', infraPool.take(), V6_EDGE, { role: 'lb', app: EDGE_APP, env: 'staging', loc: 'dc2' });
  push(b, 'lb-dev', 'cloud', infraPool.take(), V6_EDGE, { role: 'lb', app: EDGE_APP, env: 'dev', loc: 'aws-eu-west-1' });
  // Kubernetes nodes.
  if (anyK8s) {
    const nodes = Math.max(3, Math.ceil(total * 0.004));
    for (let i = 0; i < nodes; i++) push(b, 'k8s-node', 'vm', infraPool.take(), V6_PLATFORM, { role: 'k8s-node', app: PLATFORM_APP, env: 'prod', loc: 'dc1' });
  }
  // Unmanaged: partners' SFTP servers and NAT pools (prefixes).
  for (const p of partners.slice(0, Math.max(1, Math.round(total * unmanagedFraction * 0.3)))) {
    if (b.out.length >= total) break;
    b.out.push({ name: `${p.name}-sftp`, kind: 'host', addresses: [p.sftp], labels: { role: 'sftp', app: PARTNER_APP }, managed: false });
  }
  const natCount = Math.round(total * unmanagedFraction * 0.2);
  const natPrefixes: string[] = [];
  for (let i = 0; i < natCount && b.out.length < total; i++) {
    const prefix = natPool.takePrefix(28);
    natPrefixes.push(prefix);
    const loc = LOCATIONS[i % LOCATIONS.length];
    b.out.push({ name: `nat-pool-${loc}-${i + 1}`, kind: loc === 'aws-eu-west-1' ? 'cloud' : 'host', addresses: [prefix], labels: { role: 'nat', app: EDGE_APP, env: 'prod', loc }, managed: false });
  }

  // Business apps share what is left, unevenly.
  // Every app gets at least a prod web, app and db when there is room for it.
  const remaining = total - b.out.length;
  const minEach = remaining >= 3 * apps.length ? 3 : 0;
  const sizes = split(remaining - minEach * apps.length, apps.map((a) => a.weight)).map((n) => n + minEach);
  // What each app ended up with: roles, env/role and loc/role, so rules only name groups that exist.
  const present = new Map<string, Set<string>>(apps.map((a) => [a.name, new Set<string>()]));
  const appliancePerApp = unmanagedFraction * 0.5;
  for (let i = 0; i < apps.length; i++) {
    const app = apps[i];
    hostPool.alignTo(256);
    const seq: Array<[Env, Role]> = [];
    for (let k = 0; k < sizes[i]; k++) {
      if (k < 3) {
        seq.push(['prod', (['web', 'app', 'db'] as const)[k]]);
        continue;
      }
      const env = app.envs[rngWork.weighted(app.envs.map((e) => (e === 'prod' ? 6 : 2)))];
      const role: Role = (['web', 'app', 'db', 'cache'] as const)[rngWork.weighted([3, 4, 2, app.cache ? 1 : 0])];
      seq.push([env, role]);
    }
    let prodTurn = 0;
    for (const [env, role] of seq) {
      const loc: Loc = env === 'prod' ? app.prodLocs[prodTurn++ % app.prodLocs.length] : env === 'staging' ? (app.prodLocs[0] === 'aws-eu-west-1' ? 'aws-eu-west-1' : 'dc2') : 'aws-eu-west-1';
      const labels: Record<string, string> = { role, app: app.name, env, loc };
      if (app.compliance && env === 'prod') labels.compliance = app.compliance;
      const pod = app.k8s && env === 'prod' && role !== 'db';
      const extra: Partial<WorkloadDoc> = {};
      if (pod) {
        labels.loc = 'dc1';
        labels.namespace = app.name;
      } else if (role === 'db' && rngWork.chance(appliancePerApp)) {
        labels.role = 'appliance';
        extra.managed = false;
      } else if (rngWork.chance(0.003)) {
        extra.mode = 'test';
      }
      if (push(b, `${app.name}-${env}-${role}`, pod ? 'pod' : kindFor(loc, role, rngWork), pod ? podPool.take() : hostPool.take(), app.v6Group, labels, extra)) {
        const set = present.get(app.name)!;
        set.add(labels.role);
        set.add(`${env}/${labels.role}`);
        set.add(`${labels.loc}/${labels.role}`);
      }
    }
  }
  const workloads = b.out;

  // ---- taxonomy
  const appNames = [INFRA_APP, EDGE_APP, PLATFORM_APP, PARTNER_APP, ...apps.map((a) => a.name)];
  const taxonomy: Taxonomy = {
    role: [...ROLES],
    app: appNames,
    env: [...ENVIRONMENTS],
    loc: [...LOCATIONS],
    compliance: ['pci', 'phi'],
    namespace: 'open',
  };

  // ---- IP lists
  const iplists: IpListDoc[] = [
    {
      name: 'internet',
      include: ['0.0.0.0/0', '::/0'],
      exclude: [...INTERNET_V4_EXCLUDE, 'fc00::/7', '2001:db8::/32'],
      description: 'everything that is not ours (our own IPv6 allocation is 2001:db8::/32)',
    },
    { name: 'rfc1918', include: [...INTERNET_V4_EXCLUDE] },
    { name: 'corp-vpn', include: ['10.200.0.0/16', '2001:db8:ffff::/48'], description: 'remote-access VPN pool' },
    { name: 'monitoring-saas', include: ['192.0.2.0/25'], description: 'hosted monitoring intake' },
    { name: 'payment-processor', include: ['192.0.2.128/26'], description: 'card acquirer endpoints' },
    ...partners.map((p) => ({ name: p.name, include: [p.prefix] })),
    { name: 'partners', include: partners.map((p) => p.prefix), description: 'every partner network' },
  ];

  // ---- services
  const services = [...standardServices(), ...extraServices];

  // ---- rules
  // Without a rule count: every base rule plus two extra rules per app.
  const sink = new RuleSink(options.rules === undefined ? Number.POSITIVE_INFINITY : Math.max(0, Math.floor(options.rules)));
  const extrasWhenDefault = options.rules === undefined ? apps.length * 2 : Number.POSITIVE_INFINITY;
  const rr = rngRules;

  const bounds = sink.ruleset('boundaries', undefined, 'deny boundaries: environment isolation, ring-fences, admin only from jump hosts');
  const deny = (id: string, from: PeerDoc[], to: PeerDoc[], svc: string[], description: string): boolean =>
    sink.add(bounds, { id, action: 'deny', from, to, services: svc, description });
  const notInfra = `app != ${q(INFRA_APP)}`;
  deny('env-nonprod-to-prod', ["env in {'dev', 'staging'}"], [`env == 'prod' && ${notInfra}`], ['any'], 'dev and staging never reach prod (shared services excepted)');
  deny('env-prod-to-nonprod', [`env == 'prod' && ${notInfra}`], ["env in {'dev', 'staging'}"], ['any'], 'prod apps never reach non-prod');
  deny('env-dev-to-staging', ["env == 'dev'"], ["env == 'staging'"], ['any'], 'dev never reaches staging');
  deny('env-staging-to-dev', ["env == 'staging'"], ["env == 'dev'"], ['any'], 'staging never reaches dev');
  for (const c of ['pci', 'phi'] as const) {
    const fenced = apps.filter((a) => a.compliance === c);
    if (fenced.length === 0) continue;
    const consumers = [...new Set(fenced.flatMap((a) => a.consumers))].filter((n) => !fenced.some((f) => f.name === n));
    const exempt = [INFRA_APP, EDGE_APP, ...fenced.map((a) => a.name)];
    const from = consumers.length > 0 ? `app not in ${setOf(exempt)} && !(app in ${setOf(consumers)} && role == 'app')` : `app not in ${setOf(exempt)}`;
    deny(`${c}-ring-fence`, [from], [`compliance == ${q(c)}`], ['any'], `nothing reaches ${c.toUpperCase()} workloads but their own app, shared services and listed consumers`);
  }
  deny('admin-jump-only', ["role != 'jump'"], [`app != ${q(PARTNER_APP)}`], ['admin'], 'SSH and RDP to our workloads only from jump hosts');

  const shared = sink.ruleset('shared-services', `app == ${q(INFRA_APP)}`, 'DNS, NTP, LDAP, syslog, monitoring and backup for everyone');
  const sadd = (id: string, from: PeerDoc[], to: PeerDoc[], svc: Array<string | PortEntry>): boolean => sink.add(shared, { id, from, to, services: svc });
  sadd('dns-clients', [glob('all()'), { iplist: 'corp-vpn' }], ["role == 'dns'"], ['dns']);
  sadd('dns-upstream', ["role == 'dns'"], [{ iplist: 'internet' }], ['dns']);
  sadd('ntp-clients', [glob('all()')], ["role == 'ntp'"], ['ntp']);
  sadd('ntp-upstream', ["role == 'ntp'"], [{ iplist: 'internet' }], ['ntp']);
  sadd('ldap-clients', [glob('has(env) && !has(namespace)')], ["role == 'ldap'"], ['ldap', 'kerberos']);
  sadd('ldap-replication', ["role == 'ldap'"], ["role == 'ldap'"], ['ldap']);
  sadd('syslog-clients', [glob('all()')], ["role == 'syslog'"], ['syslog']);
  sadd('monitor-scrape', ["role == 'monitor'"], [glob('all()')], ['node-exporter', 'ping', 'snmp']);
  sadd('monitor-saas', ["role == 'monitor'"], [{ iplist: 'monitoring-saas' }], ['https']);
  sadd('backup-clients', ["role == 'backup'"], [glob("role in {'web', 'app', 'db', 'ldap'} && !has(namespace)")], ['bacula-fd']);
  sadd('pmtud', ['any'], [glob('all()')], ['pmtud']);

  const admin = sink.ruleset('admin', `app == ${q(INFRA_APP)}`, 'administration through the jump hosts');
  sink.add(admin, { id: 'vpn-to-jump', from: [{ iplist: 'corp-vpn' }], to: ["role == 'jump'"], services: ['admin'] });
  sink.add(admin, { id: 'jump-admin', from: ["role == 'jump'"], to: [glob('all()')], services: ['admin'] });

  const edge = sink.ruleset('edge', `app == ${q(EDGE_APP)}`, 'load balancers');
  sink.add(edge, { id: 'edge-internet-in', from: [{ iplist: 'internet' }], to: ["role == 'lb' && env == 'prod'"], services: ['web'] });
  sink.add(edge, { id: 'edge-vpn-in', from: [{ iplist: 'corp-vpn' }], to: ["role == 'lb'"], services: ['https'] });
  if (natPrefixes.length > 0) {
    sink.add(edge, { id: 'edge-nat-out', from: [{ cidr: natPrefixes[0] }], to: [{ iplist: 'internet' }], services: ['https'] });
  }

  if (anyK8s) {
    const plat = sink.ruleset('k8s-platform', `app == ${q(PLATFORM_APP)}`, 'the Kubernetes cluster');
    sink.add(plat, { id: 'k8s-node-mesh', from: ["role == 'k8s-node'"], to: ["role == 'k8s-node'"], services: ['k8s-node', 'k8s-api'] });
    sink.add(plat, { id: 'k8s-api-admin', from: [glob("role == 'jump'"), { iplist: 'corp-vpn' }], to: ["role == 'k8s-node'"], services: ['k8s-api'] });
    sink.add(plat, { id: 'k8s-kubelet-probes', from: ["role == 'k8s-node'"], to: [glob('has(namespace)')], services: ['tcp'] });
    sink.add(plat, { id: 'k8s-nodeports', from: [glob("role == 'lb' && app == 'edge'")], to: ["role == 'k8s-node'"], services: ['nodeports'] });
  }

  // Tier rules, app by app in rounds, so a small rule budget spreads evenly.
  const appRs = (a: AppProfile): RulesetDoc => sink.ruleset(a.name, `app == ${q(a.name)}`);
  const has = (a: AppProfile, ...keys: string[]): boolean => keys.every((k) => present.get(a.name)!.has(k));
  const hasAny = (a: AppProfile, ...keys: string[]): boolean => keys.some((k) => present.get(a.name)!.has(k));
  const tierRounds: Array<(a: AppProfile) => RuleDoc | undefined> = [
    (a) => (has(a, 'web') ? { id: `${a.name}-lb-web`, from: [glob("role == 'lb' && app == 'edge'")], to: ["role == 'web'"], services: [rr.chance(0.7) ? 'https' : 'web'] } : undefined),
    (a) => (has(a, 'web', 'app') ? { id: `${a.name}-web-app`, from: ["role == 'web'"], to: ["role == 'app'"], services: [a.appService] } : undefined),
    (a) => (has(a, 'app', 'db') ? { id: `${a.name}-app-db`, from: ["role == 'app'"], to: ["role == 'db'"], services: [a.dbService] } : undefined),
    (a) => (has(a, 'app', 'cache') ? { id: `${a.name}-app-cache`, from: ["role == 'app'"], to: ["role == 'cache'"], services: [a.cacheService] } : undefined),
    (a) => (has(a, 'db') ? { id: `${a.name}-db-replication`, from: ["role == 'db'"], to: ["role == 'db'"], services: [a.dbService] } : undefined),
    (a) => {
      const callers = a.consumers.filter((c) => present.get(c)?.has('app'));
      return callers.length > 0 && has(a, 'app')
        ? { id: `${a.name}-api-consumers`, from: [glob(`app in ${setOf(callers)} && role == 'app'`)], to: ["role == 'app'"], services: [a.appService] }
        : undefined;
    },
  ];
  for (const round of tierRounds) {
    for (const a of apps) {
      if (sink.full()) break;
      const rule = round(a);
      if (rule) sink.add(appRs(a), rule);
    }
  }

  // Extra rules, as many as asked for: egress, cross-app calls, UDP and ICMP,
  // ranges, mixed selectors, app-level denies. A draw whose groups do not exist
  // in this estate is drawn again; after too many misses a baseline rule fills in.
  const extraCounter = new Map<string, number>();
  const baseline = (): RulesetDoc => sink.ruleset('baseline', undefined, 'estate-wide odds and ends');
  let extras = 0;
  let misses = 0;
  while (!sink.full() && extras < extrasWhenDefault && apps.length > 0) {
    const a = rr.pick(apps);
    const other = rr.pick(apps);
    const partner = rr.pick(partners);
    const kind = rr.int(12);
    const id = `${a.name}-x${(extraCounter.get(a.name) ?? 0) + 1}`;
    let rule: RuleDoc | undefined;
    switch (kind) {
      case 0:
        if (has(a, 'prod/app')) rule = { id, from: ["role == 'app' && env == 'prod'"], to: [{ iplist: 'internet' }], services: [rr.pick(['https', 'smtp-submission'])] };
        break;
      case 1:
        if (has(a, 'app')) rule = { id, from: ["role == 'app'"], to: [{ iplist: partner.name }], services: [rr.pick(['https', 'sftp'])] };
        break;
      case 2:
        if (hasAny(a, 'prod/web', 'prod/app')) rule = { id, from: [{ iplist: partner.name }], to: ["role in {'web', 'app'} && env == 'prod'"], services: [rr.pick(['https', 'app-tls', `${rr.range(2000, 2999)}/tcp`])] };
        break;
      case 3:
        if (has(a, 'app') && has(other, 'app')) rule = { id, from: ["role == 'app'"], to: [glob(`app == ${q(other.name)} && role == 'app'`)], services: [other.appService] };
        break;
      case 4:
        if (hasAny(a, 'web', 'app')) rule = { id, from: ["role in {'web', 'app'}"], to: ["role in {'web', 'app'}"], services: ['statsd', { proto: 'udp', ports: [`${rr.range(5000, 5900)}-${rr.range(5901, 5999)}`] }] };
        break;
      case 5:
        if (hasAny(a, 'prod/web', 'prod/app', 'staging/web', 'staging/app') && hasAny(a, 'db', 'cache')) {
          rule = { id, from: ["(role == 'web' || role == 'app') && env != 'dev'"], to: ["role == 'db' || role == 'cache'"], services: ['ping'] };
        }
        break;
      case 6: {
        const third = rr.pick(apps);
        if (has(a, 'web') && (hasAny(other, 'web', 'app', 'cache') || hasAny(third, 'web', 'app', 'cache'))) {
          rule = { id, from: [glob(`app in ${setOf([...new Set([other.name, third.name])])} && role != 'db'`)], to: ["role == 'web'"], services: ['https'] };
        }
        break;
      }
      case 7:
        if (hasAny(a, 'dc1/app', 'dc2/app')) rule = { id, from: ["role == 'app' && loc in {'dc1', 'dc2'}"], to: [glob("app == 'infra' && role == 'syslog'")], services: [`${rr.range(10000, 10999)}/tcp`] };
        break;
      case 8:
        if (has(a, 'web', 'db')) rule = { id, action: 'deny', from: ["role == 'web'"], to: ["role == 'db'"], services: ['any'], description: 'no tier skipping' };
        break;
      case 9:
        if (has(a, 'db') && hasAny(a, 'prod/web', 'prod/app', 'prod/db', 'prod/cache')) rule = { id, from: ["has(compliance) || env == 'prod'"], to: ["role == 'db' && !has(namespace)"], services: [a.dbService] };
        break;
      case 10:
        if (has(a, 'app') && workloads.length > 0) rule = { id, from: [{ workload: rr.pick(workloads).name }], to: ["role == 'app'"], services: [`${rr.range(20000, 29999)}-${rr.range(30000, 30999)}/tcp`] };
        break;
      default:
        if (hasAny(a, 'staging/web', 'dev/web')) rule = { id, from: [{ cidr: `10.200.${rr.int(256)}.0/24` }], to: ["role == 'web' && env != 'prod'"], services: ['web', 'diameter'] };
        break;
    }
    if (rule) {
      extraCounter.set(a.name, (extraCounter.get(a.name) ?? 0) + 1);
      sink.add(appRs(a), rule);
    } else if (++misses % 20 === 0) {
      const rs = baseline();
      rule = { id: `baseline-${rs.rules.length + 1}`, from: [{ iplist: 'corp-vpn' }], to: ['all()'], services: ['ping'] };
      sink.add(rs, rule);
    } else {
      continue;
    }
    extras++;
  }

  // ---- modes: dev in visibility; prod apps mostly enforce, some in test, a few idle.
  const modes: ModeDoc[] = [{ scope: "env == 'dev'", mode: 'visibility' }];
  for (const a of apps) {
    const r = rngModes.next();
    let mode: Mode | undefined;
    if (a.compliance === 'pci') mode = 'enforce';
    else if (r < 0.25) mode = 'test';
    else if (r < 0.3) mode = 'idle';
    else if (r < 0.4) mode = 'enforce';
    if (mode) modes.push({ scope: `app == ${q(a.name)} && env != 'dev'`, mode });
  }

  // ---- overrides: break-glass first, then admin, then alternating quarantines and break-glass.
  const overrides: OverrideDoc[] = [];
  const overrideCount = workloads.length === 0 ? 0 : Math.max(0, Math.floor(options.overrides ?? 2));
  const managed = workloads.filter((w) => w.managed !== false && w.labels?.app !== INFRA_APP);
  const mgmtHost = (workloads.find((w) => w.labels?.role === 'mgmt') ?? workloads[0])?.name;
  const withDb = apps.filter((a) => present.get(a.name)!.has('prod/db'));
  const target = withDb.find((a) => a.compliance === 'pci') ?? withDb[0];
  for (let i = 0; i < overrideCount; i++) {
    const who = rngOver.pick(managed.length > 0 ? managed : workloads).name;
    if (i === 1) {
      overrides.push({ id: 'adm-config-mgmt-ssh', from: [{ workload: mgmtHost }], to: ['all()'], services: ['ssh'], action: 'allow', reason: 'configuration management over SSH', owner: 'platform-team' });
    } else if (i % 3 === 2 || !target) {
      overrides.push({ id: `adm-quarantine-${i}`, from: [{ workload: who }], to: ['any'], services: ['any'], action: 'deny', reason: 'quarantined by the SOC pending investigation', owner: 'soc' });
    } else {
      const t = i === 0 ? target : rngOver.pick(withDb);
      overrides.push({
        id: `bg-inc-${4700 + i}`,
        from: [{ workload: who }],
        to: [`app == ${q(t.name)} && role == 'db' && env == 'prod'`],
        services: [t.dbService],
        action: 'allow',
        expires: BREAK_GLASS_EXPIRY,
        reason: `INC-${4700 + i}: data recovery`,
        owner: 'oncall',
      });
    }
  }

  return {
    taxonomy,
    settings: { defaultMode: 'enforce' },
    workloads,
    iplists,
    services,
    rulesets: [...sink.rulesets.values()],
    modes,
    overrides,
  };
}
