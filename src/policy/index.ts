/**
 * The policy pipeline as named passes: load (YAML to the checked model), then
 * resolve (model to IR). Each pass reports into one diagnostics list.
 */
import { Diagnostics } from '../model/diagnostic.js';
import type { Policy } from '../model/types.js';
import { buildIr, type Ir } from './ir.js';
import { loadPolicy, type LoadOptions, type LoadResult, type PolicySources } from './load.js';

export interface Compiled {
  readonly policy: Policy;
  readonly ir: Ir;
  readonly diagnostics: Diagnostics;
  readonly timings: readonly { pass: string; ms: number }[];
  /** What the load pass gave, before the IR's diagnostics: a base for {@link extendPolicy}. */
  readonly loaded: LoadResult;
}

/** Loads, checks and resolves a policy. Problems are in `diagnostics`; the IR is built from what loaded cleanly. */
export function compilePolicy(sources: PolicySources, options: LoadOptions & { diagnostics?: Diagnostics } = {}): Compiled {
  const t0 = performance.now();
  const loaded = loadPolicy(sources, options);
  const loadMs = performance.now() - t0;
  if (options.diagnostics) loaded.diagnostics.items.unshift(...options.diagnostics.items);
  return compileLoaded(loaded, loadMs);
}

/** Resolves a loaded policy to IR; the IR's diagnostics go to a copy of the load's list. */
export function compileLoaded(loaded: LoadResult, loadMs = 0): Compiled {
  const diagnostics = new Diagnostics();
  diagnostics.items.push(...loaded.diagnostics.items);
  const ir = buildIr(loaded.policy, { diagnostics });
  return { policy: loaded.policy, ir, diagnostics, timings: [{ pass: 'load', ms: loadMs }, ...ir.timings], loaded };
}

export { buildIr, type Ir } from './ir.js';
export { extendPolicy, loadPolicy, type LoadResult, type PolicySources } from './load.js';
