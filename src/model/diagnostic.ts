/**
 * Diagnostics are data (Cedar, OPA, Zod): parsers and validators collect them
 * and keep going; nothing throws on the first problem.
 *
 * Messages follow Cedar's style guide: lowercase, no final period, the user's
 * input in backticks, domain words rather than type names, one line.
 */

/** A place in a source file. Lines and columns are 1-based. */
export interface Loc {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** Where the offending text ends (exclusive column), when known and on the same line. */
  readonly endCol?: number;
}

export type Severity = 'error' | 'warning';

/**
 * The stable diagnostic codes. A code never changes meaning once released;
 * tools and CI jobs may match on it.
 */
export const CODES = {
  BH001: 'yaml syntax error',
  BH002: 'unknown section',
  BH003: 'wrong shape',
  BH004: 'missing field',
  BH005: 'unknown field',
  BH101: 'unknown label key',
  BH102: 'unknown label value',
  BH201: 'duplicate name',
  BH301: 'unresolved reference',
  BH302: 'unreadable file',
  BH401: 'invalid address',
  BH402: 'host bits set',
  BH403: 'address claimed twice',
  BH501: 'invalid service entry',
  BH601: 'invalid selector',
  BH602: 'selector matches nothing',
  BH701: 'expired override',
  BH702: 'conflicting modes',
  BH703: 'invalid date',
  BH801: 'invalid inventory row',
  BH901: 'target cannot express',
  BH902: 'restriction not enforced',
  BH903: 'unsupported kubernetes object or field',
  BH904: 'ambiguous kubernetes workload',
  BH1101: 'overly broad rule',
  BH1102: 'rule over an empty group',
  BH1103: 'shadowed allow rule',
  BH1104: 'allow rule made dead by a deny rule',
  BH1105: 'unlabeled workload',
  BH1106: 'enforced workload with no allow rules',
} as const;

export type Code = keyof typeof CODES;

/** One problem found in the user's input. */
export interface Diagnostic {
  readonly code: Code;
  readonly severity: Severity;
  readonly message: string;
  readonly loc?: Loc;
  readonly help?: string;
}

/** Collects diagnostics in the order found. */
export class Diagnostics {
  readonly items: Diagnostic[] = [];

  error(code: Code, message: string, loc?: Loc, help?: string): void {
    this.items.push({ code, severity: 'error', message, loc, help });
  }

  warning(code: Code, message: string, loc?: Loc, help?: string): void {
    this.items.push({ code, severity: 'warning', message, loc, help });
  }

  get errorCount(): number {
    return this.items.filter((d) => d.severity === 'error').length;
  }

  get warningCount(): number {
    return this.items.filter((d) => d.severity === 'warning').length;
  }

  hasErrors(): boolean {
    return this.items.some((d) => d.severity === 'error');
  }

  /** Diagnostics sorted by file, line and column (unlocated ones first), stable otherwise. */
  sorted(): Diagnostic[] {
    return this.items
      .map((d, i) => ({ d, i }))
      .sort((a, b) => compareLoc(a.d.loc, b.d.loc) || a.i - b.i)
      .map((x) => x.d);
  }
}

function compareLoc(a: Loc | undefined, b: Loc | undefined): number {
  if (!a || !b) return a ? 1 : b ? -1 : 0;
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return a.line - b.line || a.col - b.col;
}

/** Quotes user input for a message: `value`. */
export function q(s: string | number): string {
  return '`' + String(s) + '`';
}

/** A list of quoted values, shortened after `max` items: `a`, `b`, `c` and 4 more. */
export function qList(items: readonly string[], max = 8): string {
  const shown = items.slice(0, max).map(q).join(', ');
  return items.length > max ? `${shown} and ${items.length - max} more` : shown;
}

/** The closest candidate by edit distance, for "did you mean" help lines. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}
