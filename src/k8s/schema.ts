/**
 * Offline schemas (Zod) of every object the cluster compilers emit, written
 * from the upstream API definitions for the fields we use:
 * networking.k8s.io/v1 NetworkPolicy, policy.networking.k8s.io/v1alpha1
 * AdminNetworkPolicy, projectcalico.org/v3 Tier and (Staged)(Global)
 * NetworkPolicy, cilium.io/v2 Cilium(Clusterwide)NetworkPolicy. Objects are
 * strict: a field we do not know is a problem, so a typo cannot slip through.
 * The test suite also checks NetworkPolicy against `kubernetes-models`.
 */
import { z } from 'zod';
import { parsePrefix } from '../netset/ip.js';
import { parseSelector } from '../model/selector.js';
import type { Manifest } from './plan.js';

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const name = z.string().min(1).max(253).regex(DNS_SUBDOMAIN, 'must be a DNS subdomain');
const cidr = z.string().refine((s) => {
  if (!s.includes('/')) return false;
  const r = parsePrefix(s);
  return !('error' in r) && !r.hostBitsSet;
}, 'must be a CIDR without host bits');
const port = z.number().int().min(1).max(65535);
const protocol = z.enum(['TCP', 'UDP', 'SCTP']);

const metadata = (namespaced: boolean) =>
  z.strictObject({
    name,
    ...(namespaced ? { namespace: z.string().regex(DNS_LABEL, 'must be a DNS label').max(63) } : {}),
    labels: z.record(z.string(), z.string().max(63)).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  });

const labelSelector = z.strictObject({
  matchLabels: z.record(z.string(), z.string()).optional(),
  matchExpressions: z
    .array(
      z.union([
        z.strictObject({ key: z.string().min(1), operator: z.enum(['In', 'NotIn']), values: z.array(z.string()).min(1) }),
        z.strictObject({ key: z.string().min(1), operator: z.enum(['Exists', 'DoesNotExist']) }),
      ]),
    )
    .optional(),
});

// ---------------------------------------------------------------- Kubernetes

const npPeer = z.union([
  z.strictObject({ namespaceSelector: labelSelector.optional(), podSelector: labelSelector.optional() }).refine((p) => p.namespaceSelector !== undefined || p.podSelector !== undefined, 'a peer needs a selector'),
  z.strictObject({ ipBlock: z.strictObject({ cidr, except: z.array(cidr).optional() }) }),
]);
const npPort = z
  .strictObject({ protocol: protocol.optional(), port: z.union([port, z.string()]).optional(), endPort: port.optional() })
  .refine((p) => p.endPort === undefined || (typeof p.port === 'number' && p.endPort >= p.port), '`endPort` needs a numeric `port` no greater than it');

/** networking.k8s.io/v1 NetworkPolicy. */
export const NetworkPolicySchema = z.strictObject({
  apiVersion: z.literal('networking.k8s.io/v1'),
  kind: z.literal('NetworkPolicy'),
  metadata: metadata(true),
  spec: z.strictObject({
    podSelector: labelSelector,
    policyTypes: z.array(z.enum(['Ingress', 'Egress'])).optional(),
    ingress: z.array(z.strictObject({ from: z.array(npPeer).optional(), ports: z.array(npPort).optional() })).optional(),
    egress: z.array(z.strictObject({ to: z.array(npPeer).optional(), ports: z.array(npPort).optional() })).optional(),
  }),
});

const namespacedPod = z.strictObject({ namespaceSelector: labelSelector, podSelector: labelSelector });
const anpPort = z.union([
  z.strictObject({ portNumber: z.strictObject({ protocol, port }) }),
  z.strictObject({ portRange: z.strictObject({ protocol, start: port, end: port }).refine((r) => r.start <= r.end, 'start must not exceed end') }),
  z.strictObject({ namedPort: z.string().min(1) }),
]);
const anpRuleBase = { name: z.string().max(100).optional(), action: z.enum(['Allow', 'Deny', 'Pass']), ports: z.array(anpPort).min(1).max(100).optional() };

/** policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy (Allow, Deny, Pass; priority 0–1000). */
export const AdminNetworkPolicySchema = z.strictObject({
  apiVersion: z.literal('policy.networking.k8s.io/v1alpha1'),
  kind: z.literal('AdminNetworkPolicy'),
  metadata: metadata(false),
  spec: z.strictObject({
    priority: z.number().int().min(0).max(1000),
    subject: z.union([z.strictObject({ namespaces: labelSelector }), z.strictObject({ pods: namespacedPod })]),
    ingress: z
      .array(z.strictObject({ ...anpRuleBase, from: z.array(z.union([z.strictObject({ namespaces: labelSelector }), z.strictObject({ pods: namespacedPod })])).min(1).max(100) }))
      .max(100)
      .optional(),
    egress: z
      .array(
        z.strictObject({
          ...anpRuleBase,
          to: z.array(z.union([z.strictObject({ namespaces: labelSelector }), z.strictObject({ pods: namespacedPod }), z.strictObject({ networks: z.array(cidr).min(1).max(25) })])).min(1).max(100),
        }),
      )
      .max(100)
      .optional(),
  }),
});

// ---------------------------------------------------------------- Calico

const calicoSelector = z.string().refine((s) => parseSelector(s).ok, 'must be a Calico selector');
const calicoPort = z.union([port, z.string().regex(/^\d+:\d+$/, 'must be `lo:hi`')]);
const entity = z.strictObject({
  selector: calicoSelector.optional(),
  namespaceSelector: calicoSelector.optional(),
  nets: z.array(cidr).optional(),
  notNets: z.array(cidr).optional(),
  ports: z.array(calicoPort).optional(),
});
const calicoRule = z.strictObject({
  action: z.enum(['Allow', 'Deny', 'Log', 'Pass']),
  protocol: z.union([z.enum(['TCP', 'UDP', 'SCTP', 'ICMP', 'ICMPv6', 'UDPLite']), z.number().int().min(0).max(255)]).optional(),
  icmp: z.strictObject({ type: z.number().int().min(0).max(255), code: z.number().int().min(0).max(255).optional() }).optional(),
  source: entity.optional(),
  destination: entity.optional(),
});
const calicoSpec = (staged: boolean) =>
  z.strictObject({
    ...(staged ? { stagedAction: z.enum(['Set', 'Delete', 'Learn', 'Ignore']) } : {}),
    tier: z.string().regex(DNS_LABEL),
    order: z.number(),
    selector: calicoSelector,
    types: z.array(z.enum(['Ingress', 'Egress'])).min(1),
    ingress: z.array(calicoRule).optional(),
    egress: z.array(calicoRule).optional(),
  });

/** projectcalico.org/v3 Tier. */
export const CalicoTierSchema = z.strictObject({
  apiVersion: z.literal('projectcalico.org/v3'),
  kind: z.literal('Tier'),
  metadata: metadata(false),
  spec: z.strictObject({ order: z.number() }),
});

const calicoPolicy = (kind: string, namespaced: boolean, staged: boolean) =>
  z
    .strictObject({ apiVersion: z.literal('projectcalico.org/v3'), kind: z.literal(kind), metadata: metadata(namespaced), spec: calicoSpec(staged) })
    .refine((p) => p.metadata.name.startsWith(`${p.spec.tier}.`), 'a tiered policy name starts with `<tier>.`');

/** projectcalico.org/v3 policies, by kind. */
export const CalicoPolicySchemas = {
  NetworkPolicy: calicoPolicy('NetworkPolicy', true, false),
  GlobalNetworkPolicy: calicoPolicy('GlobalNetworkPolicy', false, false),
  StagedNetworkPolicy: calicoPolicy('StagedNetworkPolicy', true, true),
  StagedGlobalNetworkPolicy: calicoPolicy('StagedGlobalNetworkPolicy', false, true),
};

// ---------------------------------------------------------------- Cilium

const ciliumPorts = z.strictObject({
  ports: z.array(z.strictObject({ port: z.string().regex(/^\d+$/), endPort: port.optional(), protocol: z.enum(['TCP', 'UDP', 'SCTP', 'ANY']) })).max(40),
});
const icmps = z.strictObject({ fields: z.array(z.strictObject({ type: z.number().int().min(0).max(255), family: z.enum(['IPv4', 'IPv6']) })).min(1).max(40) });
const cidrRule = z.strictObject({ cidr, except: z.array(cidr).optional() });
const ciliumRule = (dir: 'from' | 'to') =>
  z.strictObject({
    [`${dir}Endpoints`]: z.array(labelSelector).optional(),
    [`${dir}CIDRSet`]: z.array(cidrRule).optional(),
    toPorts: z.array(ciliumPorts).optional(),
    icmps: z.array(icmps).optional(),
  });
const ciliumSpec = z.strictObject({
  endpointSelector: labelSelector,
  ingress: z.array(ciliumRule('from')).optional(),
  egress: z.array(ciliumRule('to')).optional(),
  ingressDeny: z.array(ciliumRule('from')).optional(),
  egressDeny: z.array(ciliumRule('to')).optional(),
});

/** cilium.io/v2 policies, by kind. */
export const CiliumPolicySchemas = {
  CiliumNetworkPolicy: z.strictObject({ apiVersion: z.literal('cilium.io/v2'), kind: z.literal('CiliumNetworkPolicy'), metadata: metadata(true), spec: ciliumSpec }),
  CiliumClusterwideNetworkPolicy: z.strictObject({ apiVersion: z.literal('cilium.io/v2'), kind: z.literal('CiliumClusterwideNetworkPolicy'), metadata: metadata(false), spec: ciliumSpec }),
};

const SCHEMAS: Record<string, z.ZodType> = {
  NetworkPolicy: NetworkPolicySchema,
  AdminNetworkPolicy: AdminNetworkPolicySchema,
  Tier: CalicoTierSchema,
  ...CiliumPolicySchemas,
};

/** One object that does not fit its schema. */
export interface SchemaProblem {
  /** Position in the list checked. */
  readonly index: number;
  readonly kind: string;
  readonly name: string;
  /** `path: message` lines. */
  readonly problems: readonly string[];
}

/** Checks emitted manifests against the schemas; returns the objects that do not fit (an unknown kind is a problem too). */
export function validateManifests(manifests: readonly Manifest[]): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  manifests.forEach((m, index) => {
    const kind = String(m.kind);
    const apiVersion = String(m.apiVersion);
    const schema = apiVersion === 'projectcalico.org/v3' && kind !== 'Tier' ? (CalicoPolicySchemas as Record<string, z.ZodType>)[kind] : SCHEMAS[kind];
    const nm = String((m.metadata as { name?: unknown } | undefined)?.name ?? '');
    if (!schema) {
      out.push({ index, kind, name: nm, problems: [`no schema for ${apiVersion} ${kind}`] });
      return;
    }
    const r = schema.safeParse(m);
    if (!r.success) out.push({ index, kind, name: nm, problems: r.error.issues.map((i) => `${i.path.join('.') || '(object)'}: ${i.message}`) });
  });
  return out;
}
