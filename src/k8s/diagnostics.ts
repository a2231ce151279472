/**
 * Diagnostics of the Kubernetes importer and compilers, as data, in the style
 * of src/model/diagnostic.ts (lowercase, no final period, input in
 * backticks).
 *
 * Its codes are the model's (src/model/diagnostic.ts `CODES`): BH901 target
 * cannot express, BH903 unsupported object or field, BH904 ambiguous
 * workload; a {@link K8sDiagnostic} adds the rule ids it is about.
 */
import type { Code, Diagnostic, Loc, Severity } from '../model/diagnostic.js';

/** The codes the Kubernetes importer and compilers use, with their meaning. */
export const K8S_CODES = {
  BH903: 'unsupported kubernetes object or field',
  BH901: 'target cannot express a rule',
  BH904: 'ambiguous kubernetes workload',
} as const;

/** A Kubernetes-specific code. */
export type K8sCode = keyof typeof K8S_CODES;

/** A diagnostic whose code is a model code or a Kubernetes-specific one. */
export interface K8sDiagnostic {
  readonly code: Code | K8sCode;
  readonly severity: Severity;
  readonly message: string;
  readonly loc?: Loc;
  readonly help?: string;
  /** The ids of the bulkhead rules the diagnostic is about, when it is about rules. */
  readonly rules?: readonly string[];
}

/** Collects diagnostics in the order found, like the model's `Diagnostics`. */
export class K8sDiagnostics {
  /** Every diagnostic, in the order found. */
  readonly items: K8sDiagnostic[] = [];

  /** Records an error. */
  error(code: Code | K8sCode, message: string, loc?: Loc, help?: string, rules?: readonly string[]): void {
    this.items.push({ code, severity: 'error', message, loc, help, ...(rules ? { rules } : {}) });
  }

  /** Records a warning. */
  warning(code: Code | K8sCode, message: string, loc?: Loc, help?: string, rules?: readonly string[]): void {
    this.items.push({ code, severity: 'warning', message, loc, help, ...(rules ? { rules } : {}) });
  }

  /** Adds diagnostics found by another collector (the YAML reader's). */
  addAll(items: readonly (Diagnostic | K8sDiagnostic)[]): void {
    this.items.push(...items);
  }

  /** Whether any diagnostic is an error. */
  hasErrors(): boolean {
    return this.items.some((d) => d.severity === 'error');
  }

  /** How many errors. */
  get errorCount(): number {
    return this.items.filter((d) => d.severity === 'error').length;
  }

  /** How many warnings. */
  get warningCount(): number {
    return this.items.filter((d) => d.severity === 'warning').length;
  }
}
