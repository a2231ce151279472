/** What every command shares: exit codes, output streams, loading a policy directory. */
import { readPolicyDir } from '../adapters/policy-dir.js';
import type { Diagnostic } from '../model/diagnostic.js';
import { compilePolicy } from '../policy/index.js';
import { renderDiagnostic } from './render.js';

/** Exit codes, documented in `--help` and docs/CLI.md. */
export const EXIT = {
  ok: 0,
  policyErrors: 1,
  usage: 2,
  blocked: 3,
  potentiallyBlocked: 4,
  /** apply: the load failed (nothing changed, or rolled back). 5 is assert's. */
  applyFailed: 6,
} as const;

/** Thrown for a problem with the command line itself; exits with EXIT.usage. */
export class UsageError extends Error {}

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  color: boolean;
}

export function parseNow(s: string | undefined): Date | undefined {
  if (s === undefined) return undefined;
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new UsageError(`invalid time \`${s}\` for --now: write ISO 8601, such as 2026-12-01T00:00:00Z`);
  return d;
}

/** Prints diagnostics as text to stderr (warnings too), sorted by place. */
export function printDiagnostics(items: readonly Diagnostic[], texts: ReadonlyMap<string, string>, io: Io): void {
  for (const d of items) io.err(renderDiagnostic(d, texts, { color: io.color }) + '\n');
}

/** Loads a policy directory; the shared first step of most commands. */
export function loadDir(dir: string, now?: Date) {
  const read = readPolicyDir(dir);
  const compiled = compilePolicy(read.sources, { now, diagnostics: read.diagnostics });
  return { ...compiled, texts: read.texts };
}

