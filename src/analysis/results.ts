/**
 * Interned connectivity results. A result is what the policy lets through
 * between two places: a connection set, the rules that allow it, the rules
 * that cut something an allow rule offered, and whether part of it passes
 * only because no end enforces. Results are interned to small integers, so
 * the analyses store and compare numbers and memoize unions by id pair.
 */
import { ConnSet } from '../netset/connset.js';

/** What passes between two places, and why. */
export interface Result {
  /** The connections that pass. */
  readonly conns: ConnSet;
  /** Indexes into `Ir.rules` of the rules that allow some of `conns`, ascending. */
  readonly rules: readonly number[];
  /** Indexes of deny rules (and deny overrides) that cut connections an allow rule offered, ascending. */
  readonly denies: readonly number[];
  /** Set when some of `conns` passes only because no end of the flow enforces policy (`--as-deployed`). */
  readonly open: boolean;
}

/** The id of the empty result: nothing passes, no rule says anything. */
export const NONE = 0;

/** Union of two ascending lists without duplicates. */
export function mergeAsc(a: readonly number[], b: readonly number[]): number[] {
  if (a.length === 0) return b as number[];
  if (b.length === 0) return a as number[];
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i] <= b[j]) ? a[i++] : b[j++];
    if (out.length === 0 || out[out.length - 1] !== x) out.push(x);
  }
  return out;
}

/** The canonical text of a connection set's keys, for interning. */
function connsKey(c: ConnSet): string {
  return c.boundaries().join(',');
}

/**
 * A table of interned results with memoized unions. Ids are dense from 0
 * ({@link NONE}); equal results have equal ids.
 */
export class ResultTable {
  private readonly list: Result[] = [];
  private readonly byKey = new Map<string, number>();
  private readonly connsByKey = new Map<string, ConnSet>();
  private readonly unions = new Map<number, number>();

  constructor() {
    this.intern(ConnSet.EMPTY, [], [], false);
  }

  /** The result with this id. */
  get(id: number): Result {
    return this.list[id];
  }

  /** The number of distinct results. */
  get size(): number {
    return this.list.length;
  }

  /** Whether the result lets any connection through. */
  passes(id: number): boolean {
    return !this.list[id].conns.isEmpty();
  }

  /** The id of a result, interning it when new. The rule lists must be ascending. */
  intern(conns: ConnSet, rules: readonly number[], denies: readonly number[], open: boolean): number {
    const ck = connsKey(conns);
    const key = `${ck}|${rules.join(',')}|${denies.join(',')}|${open ? 1 : 0}`;
    let id = this.byKey.get(key);
    if (id === undefined) {
      // Share connection set objects between results, so equal sets are often the same object.
      let c = this.connsByKey.get(ck);
      if (!c) this.connsByKey.set(ck, (c = conns));
      id = this.list.length;
      this.list.push({ conns: c, rules, denies, open });
      this.byKey.set(key, id);
    }
    return id;
  }

  /** The union of two results: connections, rules and denies united; open if either is. Memoized. */
  union(a: number, b: number): number {
    if (a === b || b === NONE) return a;
    if (a === NONE) return b;
    const lo = a < b ? a : b;
    const hi = a < b ? b : a;
    // INVARIANT: fewer than 2^22 distinct results, so the key is exact.
    const key = hi * 4194304 + lo;
    let u = this.unions.get(key);
    if (u === undefined) {
      const x = this.list[lo];
      const y = this.list[hi];
      u = this.intern(x.conns.union(y.conns), mergeAsc(x.rules, y.rules), mergeAsc(x.denies, y.denies), x.open || y.open);
      this.unions.set(key, u);
    }
    return u;
  }
}
