/**
 * The cluster model the analyzer reads: namespaces with labels, workloads
 * (pods grouped by owner), NetworkPolicies, AdminNetworkPolicies and the
 * BaselineAdminNetworkPolicy, read from manifest objects with every problem
 * reported as a diagnostic.
 *
 * Workloads follow np-guard's naming (shared/conformance/k8s-netpol/README.md):
 * a Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job
 * or CronJob is one workload named after itself; a Pod belongs to the first
 * owner reference with `controller: true` unless that owner is a Node, and is
 * its own workload otherwise. Pods of one owner are one workload.
 */
import type { Loc } from '../model/diagnostic.js';
import { q } from '../model/diagnostic.js';
import type { Labels } from '../model/selector.js';
import { IpSet, parsePrefix } from '../netset/ip.js';
import type { Path } from '../policy/source.js';
import { K8sDiagnostics } from './diagnostics.js';
import { EVERYTHING, selectorMatches, selectorText, type LabelSelector, type SelectorOperator, type SelectorRequirement } from './labels.js';
import type { ManifestObject } from './manifest.js';

/** A protocol Kubernetes policies name. */
export type K8sProtocol = 'TCP' | 'UDP' | 'SCTP';

/** The protocols of Kubernetes policies, in the order np-guard prints them. */
export const K8S_PROTOCOLS: readonly K8sProtocol[] = ['SCTP', 'TCP', 'UDP'];

/** The label every namespace gets (`kubernetes.io/metadata.name: <name>`). */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

/** A container port of a pod. */
export interface ContainerPort {
  readonly name?: string;
  readonly port: number;
  readonly protocol: K8sProtocol;
}

/** Pods that one owner runs, or one pod without owner: the unit of the connectivity report. */
export interface K8sWorkload {
  readonly namespace: string;
  /** The owner's name (or the pod's name when it has no owner). */
  readonly name: string;
  /** The owner's kind as written (`Deployment`, `ReplicaSet`, …), or `Pod`. */
  readonly kind: string;
  /** The labels of its (first) pod. */
  readonly labels: Labels;
  /** The container ports of its (first) pod, for named ports. */
  readonly ports: readonly ContainerPort[];
  /** Label sets of further pods of the same owner that differ from the first. */
  readonly variants: readonly Labels[];
  readonly loc?: Loc;
}

/** The peer name of a workload in np-guard's report: `ns/name[Kind]`. */
export function workloadId(w: { namespace: string; name: string; kind: string }): string {
  return `${w.namespace}/${w.name}[${w.kind}]`;
}

/** A NetworkPolicy peer: pods by selectors, or an IP block. */
export type NpPeer =
  | { readonly kind: 'pods'; readonly podSelector?: LabelSelector; readonly namespaceSelector?: LabelSelector }
  | { readonly kind: 'ipBlock'; readonly cidr: string; readonly except: readonly string[]; readonly set: IpSet };

/** A NetworkPolicy port: a protocol, and a port number, range or name (no port: every port). */
export interface NpPort {
  readonly protocol: K8sProtocol;
  readonly port?: number | string;
  readonly endPort?: number;
}

/** One ingress or egress rule of a NetworkPolicy. Empty `peers` or `ports` mean every peer or port. */
export interface NpRule {
  readonly peers: readonly NpPeer[];
  readonly ports: readonly NpPort[];
}

/** A `networking.k8s.io/v1` NetworkPolicy. */
export interface NetworkPolicy {
  readonly name: string;
  readonly namespace: string;
  readonly podSelector: LabelSelector;
  /** Whether it isolates its pods for ingress (policyTypes, or by default). */
  readonly ingressIsolation: boolean;
  /** Whether it isolates its pods for egress (policyTypes, or when it has egress rules). */
  readonly egressIsolation: boolean;
  readonly ingress: readonly NpRule[];
  readonly egress: readonly NpRule[];
  readonly loc?: Loc;
}

/** An (Baseline)AdminNetworkPolicy subject or peer: pods by namespace and pod selectors, or IP networks. */
export type AdminPeer =
  | { readonly kind: 'pods'; readonly namespaceSelector: LabelSelector; readonly podSelector: LabelSelector }
  | { readonly kind: 'networks'; readonly set: IpSet; readonly cidrs: readonly string[] };

/** An (Baseline)AdminNetworkPolicy port. */
export type AdminPort =
  | { readonly kind: 'number'; readonly protocol: K8sProtocol; readonly port: number }
  | { readonly kind: 'range'; readonly protocol: K8sProtocol; readonly start: number; readonly end: number }
  | { readonly kind: 'named'; readonly name: string };

/** The action of an admin rule. */
export type AdminAction = 'Allow' | 'Deny' | 'Pass';

/** One rule of an (Baseline)AdminNetworkPolicy. `ports` undefined: every port. */
export interface AdminRule {
  readonly name: string;
  readonly action: AdminAction;
  readonly peers: readonly AdminPeer[];
  readonly ports?: readonly AdminPort[];
}

/** A `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy or BaselineAdminNetworkPolicy. */
export interface AdminPolicy {
  readonly kind: 'AdminNetworkPolicy' | 'BaselineAdminNetworkPolicy';
  readonly name: string;
  /** The ANP priority (lower first); undefined for the baseline policy. */
  readonly priority?: number;
  readonly subject: AdminPeer & { kind: 'pods' };
  readonly ingress: readonly AdminRule[];
  readonly egress: readonly AdminRule[];
  readonly loc?: Loc;
}

/** Everything the analyzer needs of a cluster. */
export interface Cluster {
  /** Namespace labels by name, each with `kubernetes.io/metadata.name`. */
  readonly namespaces: ReadonlyMap<string, Labels>;
  /** Workloads in the order first seen. */
  readonly workloads: readonly K8sWorkload[];
  readonly networkPolicies: readonly NetworkPolicy[];
  /** AdminNetworkPolicies sorted by priority (stable). */
  readonly adminPolicies: readonly AdminPolicy[];
  readonly baselinePolicy?: AdminPolicy;
}

/** Kinds that stand for pods by their template. */
const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'ReplicationController', 'Job', 'CronJob']);
/** Kinds read and ignored (they do not change connectivity). */
const IGNORED_KINDS = new Set(['Service']);

// ---------------------------------------------------------------- reading helpers

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads fields of one manifest object, reporting shape problems against its location. */
class Reader {
  constructor(
    readonly obj: ManifestObject,
    readonly diags: K8sDiagnostics,
  ) {}

  loc(path: Path): Loc {
    return this.obj.locate(path);
  }

  get(path: Path): unknown {
    let v: unknown = this.obj.data;
    for (const seg of path) {
      if (Array.isArray(v) && typeof seg === 'number') v = v[seg];
      else if (isRecord(v) && typeof seg === 'string') v = v[seg];
      else return undefined;
    }
    return v;
  }

  /** A string field; numbers and booleans are taken as text. */
  str(path: Path): string | undefined {
    const v = this.get(path);
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    this.diags.error('BH003', `\`${path.join('.')}\` must be text`, this.loc(path));
    return undefined;
  }

  int(path: Path): number | undefined {
    const v = this.get(path);
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    this.diags.error('BH003', `\`${path.join('.')}\` must be an integer`, this.loc(path));
    return undefined;
  }

  list(path: Path): unknown[] {
    const v = this.get(path);
    if (v === undefined || v === null) return [];
    if (Array.isArray(v)) return v;
    this.diags.error('BH003', `\`${path.join('.')}\` must be a list`, this.loc(path));
    return [];
  }

  /** Whether a field is present (and not null). */
  has(path: Path): boolean {
    const v = this.get(path);
    return v !== undefined && v !== null;
  }

  labels(path: Path): Record<string, string> {
    const v = this.get(path);
    if (v === undefined || v === null) return {};
    if (!isRecord(v)) {
      this.diags.error('BH003', `\`${path.join('.')}\` must be a map of labels`, this.loc(path));
      return {};
    }
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(v)) out[k] = x === null || x === undefined ? '' : String(x);
    return out;
  }

  protocol(path: Path): K8sProtocol {
    const p = this.str(path);
    if (p === undefined || p === '') return 'TCP';
    const u = p.toUpperCase();
    if (u === 'TCP' || u === 'UDP' || u === 'SCTP') return u;
    this.diags.error('BH003', `unknown protocol ${q(p)}`, this.loc(path), 'Kubernetes policies name `TCP`, `UDP` or `SCTP`');
    return 'TCP';
  }

  /** A label selector at `path`; undefined when absent. */
  selector(path: Path): LabelSelector | undefined {
    const v = this.get(path);
    if (v === undefined || v === null) return undefined;
    if (!isRecord(v)) {
      this.diags.error('BH003', `\`${path.join('.')}\` must be a label selector`, this.loc(path));
      return EVERYTHING;
    }
    const matchLabels = this.labels([...path, 'matchLabels']);
    const matchExpressions: SelectorRequirement[] = [];
    this.list([...path, 'matchExpressions']).forEach((_, i) => {
      const p = [...path, 'matchExpressions', i];
      const key = this.str([...p, 'key']) ?? '';
      const op = this.str([...p, 'operator']) ?? '';
      const values = this.list([...p, 'values']).map((x) => String(x));
      if (!['In', 'NotIn', 'Exists', 'DoesNotExist'].includes(op)) {
        this.diags.error('BH601', `unknown selector operator ${q(op)}`, this.loc([...p, 'operator']), 'use `In`, `NotIn`, `Exists` or `DoesNotExist`');
        return;
      }
      if ((op === 'In' || op === 'NotIn') && values.length === 0) this.diags.error('BH601', `operator ${q(op)} needs values`, this.loc(p));
      matchExpressions.push({ key, operator: op as SelectorOperator, values });
    });
    return { matchLabels, matchExpressions };
  }

  /** A CIDR as an IPv4/IPv6 set; undefined (with an error) when invalid. */
  cidr(path: Path): IpSet | undefined {
    const s = this.str(path);
    if (s === undefined) {
      this.diags.error('BH004', `missing \`${path.join('.')}\``, this.loc(path));
      return undefined;
    }
    const r = parsePrefix(s.includes('/') ? s : s.includes(':') ? `${s}/128` : `${s}/32`);
    if ('error' in r) {
      this.diags.error('BH401', `invalid CIDR ${q(s)}: ${r.error}`, this.loc(path));
      return undefined;
    }
    return IpSet.fromPrefixes([r.prefix]);
  }
}

// ---------------------------------------------------------------- building

interface WorkloadAcc {
  namespace: string;
  name: string;
  kind: string;
  labels: Labels;
  ports: ContainerPort[];
  variants: Labels[];
  loc?: Loc;
}

function sameLabels(a: Labels, b: Labels): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

function containerPorts(r: Reader, podSpec: Path): ContainerPort[] {
  const out: ContainerPort[] = [];
  r.list([...podSpec, 'containers']).forEach((_, c) => {
    r.list([...podSpec, 'containers', c, 'ports']).forEach((__, i) => {
      const p = [...podSpec, 'containers', c, 'ports', i];
      const name = r.str([...p, 'name']);
      out.push({ name: name === '' ? undefined : name, port: r.int([...p, 'containerPort']) ?? 0, protocol: r.protocol([...p, 'protocol']) });
    });
  });
  return out;
}

function npRules(r: Reader, dir: 'ingress' | 'egress'): NpRule[] {
  const peersKey = dir === 'ingress' ? 'from' : 'to';
  return r.list(['spec', dir]).map((_, i) => {
    const base = ['spec', dir, i];
    const peers: NpPeer[] = [];
    r.list([...base, peersKey]).forEach((__, j) => {
      const p = [...base, peersKey, j];
      const hasPods = r.has([...p, 'podSelector']) || r.has([...p, 'namespaceSelector']);
      const hasIp = r.has([...p, 'ipBlock']);
      if (hasPods && hasIp) {
        r.diags.error('BH003', 'a peer may set `ipBlock` or selectors, not both', r.loc(p));
        return;
      }
      if (hasIp) {
        const cidr = r.str([...p, 'ipBlock', 'cidr']) ?? '';
        let set = r.cidr([...p, 'ipBlock', 'cidr']);
        const except: string[] = [];
        r.list([...p, 'ipBlock', 'except']).forEach((x, k) => {
          const e = r.cidr([...p, 'ipBlock', 'except', k]);
          except.push(String(x));
          if (e && set) set = set.subtract(e);
        });
        if (set) peers.push({ kind: 'ipBlock', cidr, except, set });
        return;
      }
      if (!hasPods) {
        r.diags.error('BH004', 'a peer needs `podSelector`, `namespaceSelector` or `ipBlock`', r.loc(p));
        return;
      }
      peers.push({ kind: 'pods', podSelector: r.selector([...p, 'podSelector']), namespaceSelector: r.selector([...p, 'namespaceSelector']) });
    });
    const ports: NpPort[] = r.list([...base, 'ports']).map((__, j) => {
      const p = [...base, 'ports', j];
      const raw = r.get([...p, 'port']);
      const port = raw === undefined || raw === null ? undefined : typeof raw === 'number' ? raw : String(raw);
      return { protocol: r.protocol([...p, 'protocol']), port, endPort: r.int([...p, 'endPort']) };
    });
    if (dir === 'egress' && peers.some((x) => x.kind === 'ipBlock')) {
      for (const x of ports) {
        if (typeof x.port === 'string') r.diags.warning('BH903', `named port ${q(x.port)} does not apply to \`ipBlock\` peers`, r.loc([...base, 'ports']), 'named ports are resolved on pods only; write the port number for addresses');
      }
    }
    return { peers, ports };
  });
}

function adminPeer(r: Reader, p: Path, allowNetworks: boolean): AdminPeer | undefined {
  const fields = ['namespaces', 'pods', 'nodes', 'networks'].filter((f) => r.has([...p, f]));
  if (fields.length !== 1) {
    r.diags.error('BH003', `a peer must set exactly one of \`namespaces\`, \`pods\`${allowNetworks ? ', `nodes`, `networks`' : ''}`, r.loc(p));
    return undefined;
  }
  switch (fields[0]) {
    case 'namespaces':
      return { kind: 'pods', namespaceSelector: r.selector([...p, 'namespaces']) ?? EVERYTHING, podSelector: EVERYTHING };
    case 'pods':
      return { kind: 'pods', namespaceSelector: r.selector([...p, 'pods', 'namespaceSelector']) ?? EVERYTHING, podSelector: r.selector([...p, 'pods', 'podSelector']) ?? EVERYTHING };
    case 'networks': {
      if (!allowNetworks) break;
      let set = IpSet.EMPTY;
      const cidrs: string[] = [];
      r.list([...p, 'networks']).forEach((x, k) => {
        const s = r.cidr([...p, 'networks', k]);
        if (!s) return;
        if (s.v4.isEmpty()) {
          r.diags.warning('BH903', `IPv6 network ${q(String(x))} is ignored`, r.loc([...p, 'networks', k]), 'the analyzer reports IPv4 connectivity only');
          return;
        }
        cidrs.push(String(x));
        set = set.union(s);
      });
      return { kind: 'networks', set, cidrs };
    }
    case 'nodes':
      if (!allowNetworks) break;
      r.diags.warning('BH903', 'a `nodes` peer is not supported and is ignored', r.loc([...p, 'nodes']), 'node addresses are not known from manifests');
      return undefined;
  }
  r.diags.error('BH003', `\`${fields[0]}\` is not allowed here`, r.loc([...p, fields[0]]));
  return undefined;
}

function adminRules(r: Reader, dir: 'ingress' | 'egress', baseline: boolean): AdminRule[] {
  const peersKey = dir === 'ingress' ? 'from' : 'to';
  const out: AdminRule[] = [];
  r.list(['spec', dir]).forEach((_, i) => {
    const base = ['spec', dir, i];
    const action = r.str([...base, 'action']) ?? '';
    const allowed = baseline ? ['Allow', 'Deny'] : ['Allow', 'Deny', 'Pass'];
    if (!allowed.includes(action)) {
      r.diags.error('BH003', `unknown rule action ${q(action)}`, r.loc([...base, 'action']), `use ${allowed.map((a) => q(a)).join(', ')}`);
      return;
    }
    const rawPeers = r.list([...base, peersKey]);
    if (rawPeers.length === 0) r.diags.error('BH004', `a rule needs at least one \`${peersKey}\` peer`, r.loc(base));
    const peers: AdminPeer[] = [];
    rawPeers.forEach((__, j) => {
      const p = adminPeer(r, [...base, peersKey, j], dir === 'egress');
      if (p) peers.push(p);
    });
    let ports: AdminPort[] | undefined;
    if (r.has([...base, 'ports'])) {
      ports = [];
      r.list([...base, 'ports']).forEach((__, j) => {
        const p = [...base, 'ports', j];
        const set = ['portNumber', 'portRange', 'namedPort'].filter((f) => r.has([...p, f]));
        if (set.length !== 1) {
          r.diags.error('BH003', 'a port must set exactly one of `portNumber`, `portRange`, `namedPort`', r.loc(p));
          return;
        }
        if (set[0] === 'portNumber') ports!.push({ kind: 'number', protocol: r.protocol([...p, 'portNumber', 'protocol']), port: r.int([...p, 'portNumber', 'port']) ?? 0 });
        else if (set[0] === 'portRange') ports!.push({ kind: 'range', protocol: r.protocol([...p, 'portRange', 'protocol']), start: r.int([...p, 'portRange', 'start']) ?? 0, end: r.int([...p, 'portRange', 'end']) ?? 0 });
        else ports!.push({ kind: 'named', name: r.str([...p, 'namedPort']) ?? '' });
      });
    }
    if (ports && peers.some((x) => x.kind === 'networks')) {
      for (const x of ports) {
        if (x.kind === 'named') r.diags.warning('BH903', `named port ${q(x.name)} does not apply to \`networks\` peers`, r.loc([...base, 'ports']), 'named ports are resolved on pods only; write the port number for addresses');
      }
    }
    out.push({ name: r.str([...base, 'name']) ?? '', action: action as AdminAction, peers, ports });
  });
  return out;
}

function adminPolicy(r: Reader, baseline: boolean): AdminPolicy | undefined {
  const name = r.str(['metadata', 'name']) ?? '';
  const subject = adminPeer(r, ['spec', 'subject'], false);
  if (!subject || subject.kind !== 'pods') return undefined;
  let priority: number | undefined;
  if (!baseline) {
    priority = r.int(['spec', 'priority']);
    if (priority === undefined) {
      r.diags.error('BH004', `admin network policy ${q(name)} needs \`spec.priority\``, r.loc(['spec']));
      return undefined;
    }
    if (priority < 0 || priority > 1000) r.diags.warning('BH003', `priority ${priority} is outside 0-1000`, r.loc(['spec', 'priority']));
  }
  return {
    kind: baseline ? 'BaselineAdminNetworkPolicy' : 'AdminNetworkPolicy',
    name,
    priority,
    subject,
    ingress: adminRules(r, 'ingress', baseline),
    egress: adminRules(r, 'egress', baseline),
    loc: r.loc([]),
  };
}

/**
 * Builds the cluster model from manifest objects (in file order). Unknown
 * kinds are reported (BH903) and skipped; Service objects are read and
 * ignored, as they do not change connectivity.
 */
export function buildCluster(objects: readonly ManifestObject[], diags: K8sDiagnostics = new K8sDiagnostics()): Cluster {
  const namespaces = new Map<string, Labels>();
  const workloads = new Map<string, WorkloadAcc>();
  const networkPolicies: NetworkPolicy[] = [];
  const anps: AdminPolicy[] = [];
  let baselinePolicy: AdminPolicy | undefined;

  const addWorkload = (w: WorkloadAcc) => {
    const id = workloadId(w);
    const known = workloads.get(id);
    if (!known) workloads.set(id, w);
    else if (!sameLabels(known.labels, w.labels) && !known.variants.some((v) => sameLabels(v, w.labels))) known.variants.push(w.labels);
  };

  for (const obj of objects) {
    const r = new Reader(obj, diags);
    const ns = r.str(['metadata', 'namespace']) || 'default';
    const name = r.str(['metadata', 'name']) ?? '';
    if (obj.kind === 'Namespace') {
      const labels = r.labels(['metadata', 'labels']);
      namespaces.set(name, { ...labels, [NAMESPACE_NAME_LABEL]: labels[NAMESPACE_NAME_LABEL] ?? name });
    } else if (obj.kind === 'Pod') {
      let ownerName = name;
      let ownerKind = 'Pod';
      for (const [i, ref] of r.list(['metadata', 'ownerReferences']).entries()) {
        if (!isRecord(ref) || ref.controller !== true) continue;
        if (r.str(['metadata', 'ownerReferences', i, 'kind']) !== 'Node') {
          ownerName = r.str(['metadata', 'ownerReferences', i, 'name']) ?? name;
          ownerKind = r.str(['metadata', 'ownerReferences', i, 'kind']) || 'Pod';
        }
        break;
      }
      addWorkload({ namespace: ns, name: ownerName, kind: ownerKind, labels: r.labels(['metadata', 'labels']), ports: containerPorts(r, ['spec']), variants: [], loc: r.loc([]) });
    } else if (WORKLOAD_KINDS.has(obj.kind)) {
      const tmpl = obj.kind === 'CronJob' ? ['spec', 'jobTemplate', 'spec', 'template'] : ['spec', 'template'];
      addWorkload({ namespace: ns, name, kind: obj.kind, labels: r.labels([...tmpl, 'metadata', 'labels']), ports: containerPorts(r, [...tmpl, 'spec']), variants: [], loc: r.loc([]) });
    } else if (obj.kind === 'NetworkPolicy') {
      const types = r.list(['spec', 'policyTypes']).map((t) => String(t));
      const ingress = npRules(r, 'ingress');
      const egress = npRules(r, 'egress');
      for (const t of types) if (t !== 'Ingress' && t !== 'Egress') diags.error('BH003', `unknown policy type ${q(t)}`, r.loc(['spec', 'policyTypes']), 'use `Ingress` or `Egress`');
      networkPolicies.push({
        name,
        namespace: ns,
        podSelector: r.selector(['spec', 'podSelector']) ?? EVERYTHING,
        ingressIsolation: types.length > 0 ? types.includes('Ingress') : true,
        egressIsolation: types.length > 0 ? types.includes('Egress') : egress.length > 0,
        ingress,
        egress,
        loc: r.loc([]),
      });
    } else if (obj.kind === 'AdminNetworkPolicy') {
      const p = adminPolicy(r, false);
      if (p) anps.push(p);
    } else if (obj.kind === 'BaselineAdminNetworkPolicy') {
      const p = adminPolicy(r, true);
      if (!p) continue;
      if (baselinePolicy) diags.error('BH201', `a second baseline admin network policy ${q(p.name)}: a cluster has only one`, p.loc, `the first one, ${q(baselinePolicy.name)}, is used`);
      else baselinePolicy = p;
    } else if (!IGNORED_KINDS.has(obj.kind)) {
      diags.warning('BH903', `kind ${q(obj.kind)} is not read`, obj.locate(['kind']), 'the analyzer reads namespaces, pods, workloads, services and network policies');
    }
  }

  for (const w of workloads.values()) if (!namespaces.has(w.namespace)) namespaces.set(w.namespace, { [NAMESPACE_NAME_LABEL]: w.namespace });
  for (const p of networkPolicies) if (!namespaces.has(p.namespace)) namespaces.set(p.namespace, { [NAMESPACE_NAME_LABEL]: p.namespace });

  // Named ports that no container declares allow nothing (np-guard warns about them too).
  const portNames = new Set<string>();
  for (const w of workloads.values()) for (const c of w.ports) if (c.name) portNames.add(c.name);
  const unknownPort = (name: string, policy: string, loc: Loc | undefined) =>
    diags.warning('BH903', `named port ${q(name)} of ${policy} matches no container port`, loc, 'no pod declares a container port of that name, so the port allows nothing');
  for (const np of networkPolicies) {
    const names = new Set<string>();
    for (const rule of [...np.ingress, ...np.egress]) for (const x of rule.ports) if (typeof x.port === 'string' && !portNames.has(x.port)) names.add(x.port);
    for (const n of names) unknownPort(n, `network policy ${q(`${np.namespace}/${np.name}`)}`, np.loc);
  }
  for (const p of [...anps, ...(baselinePolicy ? [baselinePolicy] : [])]) {
    const names = new Set<string>();
    for (const rule of [...p.ingress, ...p.egress]) for (const x of rule.ports ?? []) if (x.kind === 'named' && !portNames.has(x.name)) names.add(x.name);
    for (const n of names) unknownPort(n, `${p.kind === 'AdminNetworkPolicy' ? 'admin' : 'baseline admin'} network policy ${q(p.name)}`, p.loc);
  }

  // Pods of one owner with different labels are one workload; say so when a policy tells them apart.
  const podSelectors: LabelSelector[] = [];
  for (const np of networkPolicies) {
    podSelectors.push(np.podSelector);
    for (const rule of [...np.ingress, ...np.egress]) for (const x of rule.peers) if (x.kind === 'pods' && x.podSelector) podSelectors.push(x.podSelector);
  }
  for (const p of [...anps, ...(baselinePolicy ? [baselinePolicy] : [])]) {
    podSelectors.push(p.subject.podSelector);
    for (const rule of [...p.ingress, ...p.egress]) for (const x of rule.peers) if (x.kind === 'pods') podSelectors.push(x.podSelector);
  }
  for (const w of workloads.values()) {
    const split = w.variants.length > 0 && podSelectors.find((sel) => w.variants.some((v) => selectorMatches(sel, v) !== selectorMatches(sel, w.labels)));
    if (split) diags.warning('BH904', `pods of workload ${q(workloadId(w))} have different labels, and the selector ${q(selectorText(split))} tells them apart`, w.loc, 'the report uses the labels of its first pod');
  }

  const sorted = anps.map((p, i) => ({ p, i })).sort((a, b) => a.p.priority! - b.p.priority! || a.i - b.i);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].p.priority === sorted[i - 1].p.priority) {
      diags.warning('BH904', `admin network policies ${q(sorted[i - 1].p.name)} and ${q(sorted[i].p.name)} have the same priority ${sorted[i].p.priority}`, sorted[i].p.loc, 'their order is undefined in Kubernetes; the analyzer takes them in file order');
    }
  }
  return { namespaces, workloads: [...workloads.values()], networkPolicies, adminPolicies: sorted.map((x) => x.p), baselinePolicy };
}
