/**
 * Compiles bulkhead's IR to cluster policy: Kubernetes NetworkPolicy with
 * AdminNetworkPolicy (`k8s`), Calico v3 (`calico`) or Cilium (`cilium`).
 * Pure: `compile(ir, options)` returns the manifests and diagnostics.
 *
 * Only pods are enforced by these targets (see estate.ts for what a pod is);
 * hosts and VMs appear as addresses. What a target cannot express is reported
 * as an error that names the rule, and then no manifest is returned at all
 * (fail closed: a half-compiled policy could allow what a deny rule forbids).
 * With `dropUnsupportedAllows`, what an allow rule asks for and the target
 * cannot say is left out instead (which only narrows access) and reported as a
 * warning.
 */
import { stringify } from 'yaml';
import type { Ir } from '../policy/ir.js';
import { Ctx, type CompileOptions, type CompileResult, type Manifest } from './plan.js';
import { compileCalico } from './target-calico.js';
import { compileCilium } from './target-cilium.js';
import { compileK8s } from './target-k8s.js';

/** Compiles the IR for a cluster target. On any error, `artifacts` is empty. */
export function compile(ir: Ir, options: CompileOptions): CompileResult {
  const ctx = new Ctx(ir, options);
  const artifacts = options.target === 'k8s' ? compileK8s(ctx) : options.target === 'calico' ? compileCalico(ctx) : compileCilium(ctx);
  return { artifacts: ctx.failed ? [] : artifacts, diagnostics: ctx.diags.items };
}

/** Manifests as one multi-document YAML text (`---` between documents). */
export function manifestsYaml(manifests: readonly Manifest[]): string {
  return manifests.map((m) => stringify(m, { lineWidth: 0, aliasDuplicateObjects: false })).join('---\n');
}

export { TARGETS, type CompileOptions, type CompileResult, type Manifest, type Target } from './plan.js';
