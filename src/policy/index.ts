/**
 * The policy pipeline as named passes: load (YAML to the checked model), then
 * resolve (model to IR). Each pass reports into one diagnostics list.
 */
import { Diagnostics } from '../model/diagnostic.js';
import type { Policy } from '../model/types.js';
import { buildIr, type Ir } from './ir.js';
import { loadPolicy, type LoadOptions, type PolicySources } from './load.js';

export interface Compiled {
  readonly policy: Policy;
  readonly ir: Ir;
  readonly diagnostics: Diagnostics;
  readonly timings: readonly { pass: string; ms: number }[];
}

/** Loads, checks and resolves a policy. Problems are in `diagnostics`; the IR is built from what loaded cleanly. */
export function compilePolicy(sources: PolicySources, options: LoadOptions & { diagnostics?: Diagnostics } = {}): Compiled {
  const t0 = performance.now();
  const { policy, diagnostics } = loadPolicy(sources, options);
  const loadMs = performance.now() - t0;
  if (options.diagnostics) diagnostics.items.unshift(...options.diagnostics.items);
  const ir = buildIr(policy, { diagnostics });
  return { policy, ir, diagnostics, timings: [{ pass: 'load', ms: loadMs }, ...ir.timings] };
}

export { buildIr, type Ir } from './ir.js';
export { loadPolicy, type PolicySources } from './load.js';
