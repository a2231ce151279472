/**
 * Small seeded random estates for the kernel differential tests: a dozen
 * hosts with labels from small domains, rules with mixed selectors, ports,
 * deny rules, overrides, IP lists, modes, IPv6 and unmanaged hosts, so that
 * every combination of tiers and modes appears on real packets.
 */
import { Rng } from '../../src/generate/index.js';

export interface LabEstate {
  /** The policy document (sections as in docs/POLICY.md). */
  readonly doc: Record<string, unknown>;
  /** Addresses that belong to no workload but that rules name (through IP lists), as extra lab hosts. */
  readonly externals: readonly { name: string; addresses: string[] }[];
  readonly tcpPorts: readonly number[];
  readonly udpPorts: readonly number[];
}

const ROLES = ['web', 'app', 'db'];
const ENVS = ['prod', 'dev'];
const TCP = [22, 80, 443, 5432, 8080];
const UDP = [53, 123];

export function randomLabEstate(seed: number, hosts = 10): LabEstate {
  const rng = new Rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)];
  const workloads: Record<string, unknown>[] = [];
  for (let i = 0; i < hosts; i++) {
    const addresses = [`10.77.${seed % 200}.${i + 10}`];
    if (rng.next() < 0.4) addresses.push(`fd77:${seed.toString(16)}::${(i + 10).toString(16)}`);
    const w: Record<string, unknown> = { name: `h${i}`, addresses, labels: { role: pick(ROLES), env: pick(ENVS) } };
    if (i === hosts - 1) w.managed = false;
    else if (rng.next() < 0.25) w.mode = pick(['test', 'visibility', 'enforce']);
    workloads.push(w);
  }
  const externals = [{ name: 'ext0', addresses: [`198.18.${seed % 200}.1`] }, { name: 'ext1', addresses: [`198.19.${seed % 200}.1`] }];
  const sel = (): string => {
    const r = rng.next();
    if (r < 0.4) return `role == '${pick(ROLES)}'`;
    if (r < 0.6) return `env == '${pick(ENVS)}'`;
    if (r < 0.8) return `role == '${pick(ROLES)}' && env == '${pick(ENVS)}'`;
    if (r < 0.9) return `role in {'${pick(ROLES)}', '${pick(ROLES)}'}`;
    return 'all()';
  };
  const service = (): string[] => {
    const r = rng.next();
    if (r < 0.15) return ['any'];
    if (r < 0.3) return [`${pick(UDP)}/udp`];
    if (r < 0.4) return ['8/icmp'];
    if (r < 0.5) return ['5000-8080/tcp'];
    return [`${pick(TCP)}/tcp`, ...(rng.next() < 0.3 ? [`${pick(TCP)}/tcp`] : [])];
  };
  const peer = (): unknown => {
    const r = rng.next();
    if (r < 0.1) return { iplist: 'outside' };
    if (r < 0.15) return 'any';
    if (r < 0.25) return { workload: `h${rng.int(hosts)}` };
    return sel();
  };
  const rules: Record<string, unknown>[] = [];
  const count = rng.range(12, 20);
  for (let i = 0; i < count; i++) {
    const deny = rng.next() < 0.2;
    rules.push({ id: `r${i}`, action: deny ? 'deny' : 'allow', from: [peer()], to: [peer()], services: service() });
  }
  const overrides: Record<string, unknown>[] = [];
  for (let i = 0; i < rng.int(3); i++) overrides.push({ id: `o${i}`, action: rng.next() < 0.5 ? 'allow' : 'deny', from: [peer()], to: [peer()], services: service() });
  const doc = {
    settings: { defaultMode: 'enforce' },
    iplists: [{ name: 'outside', include: [`198.18.0.0/15`] }],
    workloads,
    modes: rng.next() < 0.5 ? [{ scope: `env == 'dev'`, mode: 'test' }] : [],
    rulesets: [{ name: 'random', scope: rng.next() < 0.3 ? `env == '${pick(ENVS)}'` : 'all()', rules }],
    overrides,
  };
  return { doc, externals, tcpPorts: TCP, udpPorts: UDP };
}
