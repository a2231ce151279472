/**
 * The typed policy model: what the loader makes of the YAML once every name,
 * address, port and selector is checked. Selectors are parsed but not yet
 * resolved to workloads; that is the IR's job (src/engine/ir.ts).
 */
import type { ConnSet } from '../netset/connset.js';
import type { Addr, IpSet, Prefix } from '../netset/ip.js';
import type { Loc } from './diagnostic.js';
import type { Labels, Selector } from './selector.js';

export const MODES = ['idle', 'visibility', 'test', 'enforce'] as const;
/** Enforcement mode of a managed workload (docs/POLICY.md#modes). */
export type Mode = (typeof MODES)[number];

export const KINDS = ['host', 'vm', 'pod', 'cloud'] as const;
export type WorkloadKind = (typeof KINDS)[number];

/** A workload: something with addresses and labels, enforcing policy itself when managed. */
export interface Workload {
  readonly name: string;
  readonly kind: WorkloadKind;
  /** Single addresses are /32 or /128 prefixes. */
  readonly addresses: readonly Prefix[];
  readonly labels: Labels;
  readonly managed: boolean;
  /** Its own mode, when set on the workload itself. */
  readonly mode?: Mode;
  readonly loc?: Loc;
}

/** One label dimension: a closed list of values, or open. */
export interface Dimension {
  readonly name: string;
  readonly open: boolean;
  readonly values: ReadonlySet<string>;
  readonly loc?: Loc;
}

export interface Taxonomy {
  readonly dimensions: ReadonlyMap<string, Dimension>;
}

export interface IpList {
  readonly name: string;
  readonly set: IpSet;
  readonly description?: string;
  readonly loc?: Loc;
}

/** A named set of connections, optionally limited to a program or user on hosts. */
export interface Service {
  readonly name: string;
  readonly conns: ConnSet;
  readonly process?: string;
  readonly user?: string;
  readonly loc?: Loc;
}

/** One side of a rule. Selector peers carry whether the ruleset scope applies. */
export type Peer =
  | { readonly kind: 'selector'; readonly selector: Selector; readonly global: boolean; readonly loc?: Loc }
  | { readonly kind: 'workload'; readonly name: string; readonly loc?: Loc }
  | { readonly kind: 'ips'; readonly set: IpSet; readonly name: string; readonly loc?: Loc }
  | { readonly kind: 'any'; readonly loc?: Loc };

export type Tier = 'override' | 'deny' | 'allow';
export type Action = 'allow' | 'deny';

/** A service a rule uses, resolved: its connections and any host restriction. */
export interface RuleService {
  readonly name: string;
  readonly conns: ConnSet;
  readonly process?: string;
  readonly user?: string;
}

/** A normalized rule of any tier. */
export interface Rule {
  readonly id: string;
  readonly tier: Tier;
  readonly action: Action;
  /** The ruleset's scope (all() for overrides), applied to non-global selector peers. */
  readonly scope: Selector;
  readonly ruleset?: string;
  readonly from: readonly Peer[];
  readonly to: readonly Peer[];
  readonly services: readonly RuleService[];
  /** Union of the services' connections. */
  readonly conns: ConnSet;
  /** Position in the override tier (0 first); -1 for other tiers. */
  readonly order: number;
  readonly expires?: Date;
  readonly reason?: string;
  readonly owner?: string;
  readonly description?: string;
  readonly loc?: Loc;
}

/** Sets the mode of the managed workloads its scope matches. */
export interface ModeRule {
  readonly scope: Selector;
  readonly mode: Mode;
  readonly loc?: Loc;
}

/** The whole checked policy. */
export interface Policy {
  readonly taxonomy?: Taxonomy;
  readonly defaultMode: Mode;
  readonly workloads: readonly Workload[];
  readonly iplists: ReadonlyMap<string, IpList>;
  readonly services: ReadonlyMap<string, Service>;
  /** Every active rule: overrides in order first, then deny and allow rules. Expired overrides are left out. */
  readonly rules: readonly Rule[];
  readonly modes: readonly ModeRule[];
}

/**
 * One aggregated flow edge, as the flow store keeps it: a client talking to a
 * server's port, the client's port folded away, summed over time buckets.
 * The flow layer builds it; analyses (the map, replay, recommendation) read it.
 */
export interface FlowEdge {
  readonly client: Addr;
  readonly server: Addr;
  readonly proto: number;
  /** The server's port (ICMP: `type * 256 + code`; 65535 when the source logs no ICMP type). */
  readonly port: number;
  /** Flow records counted, and their packets and bytes. */
  readonly flows: number;
  readonly packets: number;
  readonly bytes: number;
  /** Records the reporting device recorded as rejected. */
  readonly rejected: number;
  /** First start and last end, epoch milliseconds. */
  readonly first: number;
  readonly last: number;
}
