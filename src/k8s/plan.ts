/**
 * What the cluster compilers share: options, the resolved rules, the
 * compilation context with its diagnostics, and object naming.
 */
import { q } from '../model/diagnostic.js';
import type { Mode } from '../model/types.js';
import type { ConnSet } from '../netset/connset.js';
import type { Ir, IrRule } from '../policy/ir.js';
import { K8sDiagnostics, type K8sDiagnostic } from './diagnostics.js';
import { estateView, podGroups, ruleSide, type EstatePod, type EstateView, type GroupsResult, type RuleSide } from './estate.js';

/** A compilation target. */
export type Target = 'k8s' | 'calico' | 'cilium';

/** The targets, for option parsing and help. */
export const TARGETS: readonly Target[] = ['k8s', 'calico', 'cilium'];

/** Options of {@link compile}. */
export interface CompileOptions {
  readonly target: Target;
  /** Leave out (with a warning) what allow rules ask for and the target cannot say, instead of failing. */
  readonly dropUnsupportedAllows?: boolean;
  /** Calico: log denied connections (a `Log` rule before each `Deny`, and before the default deny). */
  readonly logDenied?: boolean;
  /** Calico: the tier of the policies (default `bulkhead`). */
  readonly tier?: string;
  /** Calico: the order of the tier (default 100). */
  readonly tierOrder?: number;
  /** k8s: the AdminNetworkPolicy priority of the first override (default 10); later ones count up. */
  readonly priorityBase?: number;
}

/** A Kubernetes object as plain data. */
export type Manifest = Record<string, unknown>;

/** The outcome of {@link compile}. */
export interface CompileResult {
  /** The manifests, in a stable order; empty when there are errors. */
  readonly artifacts: Manifest[];
  readonly diagnostics: K8sDiagnostic[];
}

/** A rule resolved for the cluster targets. */
export interface RulePlan {
  readonly rule: IrRule;
  readonly id: string;
  readonly from: RuleSide;
  readonly to: RuleSide;
  /** The connections the target will say (the rule's, less what was dropped). */
  conns: ConnSet;
}

/** The annotation holding the bulkhead rule id(s) a manifest comes from. */
export const RULE_ANNOTATION = 'bulkhead.io/rule';

/** What every target shares: the pod view, options and diagnostics. */
export class Ctx {
  readonly view: EstateView;
  readonly diags = new K8sDiagnostics();
  /** Set when an error makes the output unusable. */
  failed = false;
  /** Messages already reported, so a rule's problem is said once. */
  private readonly reported = new Set<string>();

  constructor(
    readonly ir: Ir,
    readonly options: CompileOptions,
  ) {
    this.view = estateView(ir);
  }

  /**
   * Reports what the target cannot say for a rule. Returns true when the
   * part may be left out (an allow rule with `dropUnsupportedAllows`), false
   * when the compilation fails.
   */
  cannot(plan: RulePlan | readonly RulePlan[], message: string, help?: string): boolean {
    const plans = Array.isArray(plan) ? (plan as readonly RulePlan[]) : [plan as RulePlan];
    const drop = this.options.dropUnsupportedAllows === true && plans.length > 0 && plans.every((p) => p.rule.rule.action === 'allow');
    const ids = plans.map((p) => p.id);
    const text = plans.length === 0 ? `default deny: ${message}` : `${plans.length === 1 ? 'rule' : 'rules'} ${ids.map(q).join(', ')}: ${message}`;
    if (!drop) this.failed = true;
    if (this.reported.has(text)) return drop;
    this.reported.add(text);
    const loc = plans[0]?.rule.rule.loc;
    if (drop) this.diags.warning('BH901', text, loc, help ? `${help}; left out, which narrows access` : 'left out, which narrows access', ids);
    else this.diags.error('BH901', text, loc, help, ids);
    return drop;
  }

  /** Pods of a side in the given modes (managed only). */
  subjects(side: RuleSide, modes: readonly Mode[]): EstatePod[] {
    return side.pods.filter((p) => p.managed && p.mode !== undefined && modes.includes(p.mode));
  }

  /** Pod groups for pods, failing the rule when no selector can tell them apart. */
  groups(plan: RulePlan | readonly RulePlan[], pods: readonly EstatePod[], which?: 'from' | 'to'): GroupsResult | undefined {
    const p = Array.isArray(plan) ? undefined : (plan as RulePlan);
    // Without one rule's side (the default deny, pods grouped across rules), start from every pod and narrow.
    const hint = p && which ? { peers: p.rule.rule[which], scope: p.rule.rule.scope.ast } : ALL_PODS;
    const r = podGroups(this.view, pods, hint);
    if (!r) {
      const names = pods.slice(0, 3).map((x) => q(x.workload.name)).join(', ');
      this.cannot(plan, `no label selector selects exactly the pods ${names}${pods.length > 3 ? ` and ${pods.length - 3} more` : ''}`, 'another pod with the same namespace and labels is treated differently (its mode, managed flag or addresses); give the pods distinguishing labels');
    }
    return r;
  }

  /** Resolves every rule that concerns a pod of the estate, checking what no cluster target can say. */
  plans(): RulePlan[] {
    const out: RulePlan[] = [];
    for (const rule of this.ir.rules) {
      const from = ruleSide(this.view, rule, 'from');
      const to = ruleSide(this.view, rule, 'to');
      const plan: RulePlan = { rule, id: rule.rule.id, from, to, conns: rule.conns };
      const touches = (s: RuleSide) => s.pods.some((p) => p.managed) || s.partial.some((p) => p.managed);
      if (!touches(from) && !touches(to)) continue;
      const partial = [...from.partial, ...to.partial];
      if (partial.length > 0) {
        this.cannot(plan, `pod ${q(partial[0].workload.name)} has addresses both inside and outside the rule's addresses`, 'a pod is one policy subject; make the IP peer cover all of its addresses or none');
        continue;
      }
      const restricted = rule.rule.services.filter((s) => s.process !== undefined || s.user !== undefined);
      if (restricted.length > 0 && (this.subjects(from, ['enforce', 'test']).length > 0 || this.subjects(to, ['enforce', 'test']).length > 0)) {
        this.cannot(plan, `service ${q(restricted[0].name)} is limited to a process or user, which pod policies cannot say`, 'process and user limits apply to hosts only');
        continue;
      }
      out.push(plan);
    }
    return out;
  }
}

/** The hint `any`: every pod, to be narrowed. */
const ALL_PODS = { peers: [{ kind: 'any' as const }], scope: { kind: 'all' as const, span: [0, 0] as const } };

/** A Kubernetes object name from free text: lowercase letters, digits, `-` and `.`, with a short hash when it had to change. */
export function objectName(text: string): string {
  let s = text.toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  if (s === '') s = 'rule';
  if (s !== text || s.length > 200) {
    let h = 0x811c9dc5;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
    s = `${s.slice(0, 190)}-${(h >>> 0).toString(16).padStart(8, '0').slice(0, 6)}`;
  }
  return s;
}

/** Adds `-2`, `-3`, … to names that repeat within one namespace (`''` for cluster-wide objects). */
export class NameSet {
  private readonly used = new Set<string>();
  /** A fresh name based on `base` in namespace `ns`. */
  take(base: string, ns = ''): string {
    let name = base;
    for (let i = 2; this.used.has(`${ns}/${name}`); i++) name = `${base}-${i}`;
    this.used.add(`${ns}/${name}`);
    return name;
  }
}

