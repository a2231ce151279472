/**
 * How the two ends of a flow combine into one verdict. This is the only place
 * that decides it; the evaluator, the naive reference evaluator and every
 * report call it.
 */

/** What one end of a flow says about it. */
export enum Side {
  /** The end is no managed workload (unmanaged, or an address that is no workload): it constrains nothing. */
  None = 0,
  /** A managed workload in `idle` or `visibility` mode: nothing is evaluated there. */
  NotEvaluated = 1,
  /** Evaluated (test or enforce mode) and allowed. */
  Allow = 2,
  /** Evaluated in `test` mode and denied: logged, let through. */
  DenyTest = 3,
  /** Evaluated in `enforce` mode and denied: dropped. */
  DenyEnforce = 4,
}

export type Verdict = 'allowed' | 'blocked' | 'potentially-blocked' | 'not-evaluated';
export const VERDICTS: readonly Verdict[] = ['allowed', 'blocked', 'potentially-blocked', 'not-evaluated'];

/** Which end's policy decided: the source's egress or the destination's ingress. */
export type DecidingSide = 'egress' | 'ingress' | null;

export enum VerdictCode {
  Allowed = 0,
  Blocked = 1,
  PotentiallyBlocked = 2,
  NotEvaluated = 3,
}

/** Deciding side codes, packed next to the verdict: 0 none, 1 egress, 2 ingress. */
export const SIDE_NONE = 0;
export const SIDE_EGRESS = 1;
export const SIDE_INGRESS = 2;

/**
 * Combines the source's egress and the destination's ingress into a verdict
 * and the side that decided it, packed as `verdict | side << 2`.
 *
 * Truth table (rows: egress at the source, columns: ingress at the destination;
 * each cell: verdict, deciding side):
 *
 * | egress \ ingress | None      | NotEval   | Allow     | DenyTest  | DenyEnforce |
 * |------------------|-----------|-----------|-----------|-----------|-------------|
 * | None             | noteval - | noteval - | allowed I | potent. I | blocked I   |
 * | NotEvaluated     | noteval - | noteval - | allowed I | potent. I | blocked I   |
 * | Allow            | allowed E | allowed E | allowed I | potent. I | blocked I   |
 * | DenyTest         | potent. E | potent. E | potent. E | potent. E | blocked I   |
 * | DenyEnforce      | blocked E | blocked E | blocked E | blocked E | blocked E   |
 *
 * Read: an enforcing denial blocks (the source's first, as its packets never
 * leave); otherwise a test-mode denial makes the flow potentially blocked;
 * otherwise the flow is allowed when some end evaluated it, and reported as
 * allowed by the destination when both did; with no evaluating end it is not
 * evaluated.
 */
export function combine(egress: Side, ingress: Side): number {
  if (egress === Side.DenyEnforce) return VerdictCode.Blocked | (SIDE_EGRESS << 2);
  if (ingress === Side.DenyEnforce) return VerdictCode.Blocked | (SIDE_INGRESS << 2);
  if (egress === Side.DenyTest) return VerdictCode.PotentiallyBlocked | (SIDE_EGRESS << 2);
  if (ingress === Side.DenyTest) return VerdictCode.PotentiallyBlocked | (SIDE_INGRESS << 2);
  if (ingress === Side.Allow) return VerdictCode.Allowed | (SIDE_INGRESS << 2);
  if (egress === Side.Allow) return VerdictCode.Allowed | (SIDE_EGRESS << 2);
  return VerdictCode.NotEvaluated | (SIDE_NONE << 2);
}

/**
 * One end's own decision, from its rules in tier order: the first matching
 * override, else any matching deny, else any matching allow, else the default
 * deny. The evaluators find the first match of each tier; this names the order.
 */
export const TIER_ORDER = ['override', 'deny', 'allow'] as const;
