/**
 * Binary search over sorted range starts, shared by every range table
 * (longest-prefix match, the IR's address map and atoms, the evaluator's
 * segment tables). The per-decision IPv4 lookups keep an inlined copy: they
 * run millions of times a second and must stay monomorphic.
 */

/**
 * The index of the last element of `starts[lo..hi]` that is `<= key`, or `lo`
 * when none is. `starts` must ascend; no allocation.
 */
export function floorIndex<T extends number | bigint>(starts: ArrayLike<T>, key: T, lo = 0, hi = starts.length - 1): number {
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (starts[mid] <= key) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
