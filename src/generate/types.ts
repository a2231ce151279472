/**
 * The policy document in the exact section shape of docs/POLICY.md: what a
 * YAML policy file parses to. The generator produces it and `toYaml` writes
 * it, so the policy loader reads a generated estate as if it were hand-written.
 * Enumerations shared with the model (modes, kinds, protocols) come from it.
 */
import type { Mode, WorkloadKind } from '../model/types.js';
import type { ProtocolName } from '../netset/connset.js';

export type { Mode, WorkloadKind };

/** `open` (any value) or the closed list of allowed values. */
export type Dimension = 'open' | string[];
export type Taxonomy = Record<string, Dimension>;

export interface Settings {
  defaultMode?: Mode;
}

export interface WorkloadDoc {
  name: string;
  kind?: WorkloadKind;
  addresses: string[];
  labels?: Record<string, string>;
  managed?: boolean;
  mode?: Mode;
}

export interface IpListDoc {
  name: string;
  include: string[];
  exclude?: string[];
  description?: string;
}

/** `443/tcp`, `8000-8100/tcp`, `udp`, `8/icmp`, `3:4/icmp`, `any`, or the map form. */
export type PortEntry =
  | string
  | { proto: string; ports?: Array<number | string>; type?: number; code?: number };

export interface ServiceDoc {
  name: string;
  ports: PortEntry[];
  process?: string;
  user?: string;
  description?: string;
}

/** A peer: a selector string, `any`, or one of the map forms. */
export type PeerDoc =
  | string
  | { selector: string; global?: boolean }
  | { workload: string }
  | { iplist: string }
  | { cidr: string };

export interface RuleDoc {
  id?: string;
  action?: 'allow' | 'deny';
  from: PeerDoc[];
  to: PeerDoc[];
  /** Service names or inline port entries. */
  services: Array<string | PortEntry>;
  description?: string;
}

export interface RulesetDoc {
  name: string;
  scope?: string;
  description?: string;
  rules: RuleDoc[];
}

export interface ModeDoc {
  scope: string;
  mode: Mode;
}

export interface OverrideDoc {
  id: string;
  from: PeerDoc[];
  to: PeerDoc[];
  services: Array<string | PortEntry>;
  action: 'allow' | 'deny';
  expires?: string;
  reason?: string;
  owner?: string;
}

/** One policy document: every section as in docs/POLICY.md (inventory files are not generated). */
export interface EstateDocument {
  taxonomy: Taxonomy;
  settings: Settings;
  workloads: WorkloadDoc[];
  iplists: IpListDoc[];
  services: ServiceDoc[];
  rulesets: RulesetDoc[];
  modes: ModeDoc[];
  overrides: OverrideDoc[];
}

/** A protocol the policy language names. */
export type FlowProto = ProtocolName;

/** A flow to evaluate: addresses, protocol and destination port (the ICMP type for icmp/icmpv6). */
export interface GeneratedFlow {
  src: string;
  dst: string;
  proto: FlowProto;
  port: number;
  /** How it was made: by following an allow rule (`rule`), or at random. */
  origin: 'rule' | 'random';
  /** The ICMP code, when the sampled service pins one (e.g. 3:4/icmp); otherwise any code (0). */
  code?: number;
  /** The rule it was sampled from, when origin is `rule`. Not a verdict: deny rules and modes still apply. */
  rule?: string;
}
