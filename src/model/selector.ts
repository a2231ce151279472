/**
 * Calico label selectors: parse, validate, evaluate against labels, print in
 * Calico's canonical form, and compute Calico's unique id.
 *
 * The language is the one of `libcalico-go/lib/selector` (tokenizer.go,
 * parser.go, ast.go), as documented in
 * shared/conformance/calico-selectors/README.md, and this module passes
 * Calico's own test tables (test/model/selector.test.ts). No JavaScript
 * library implements this grammar, so the tokenizer and the recursive-descent
 * parser below are written by hand.
 *
 * One deliberate difference from Calico: a negation of a parenthesised
 * negation, `!(!has(a))`, prints as `has(a)` (runs of `!` collapse by parity
 * across parentheses too). Calico prints `!!has(a)`, which it then re-parses
 * as `has(a)`, so its canonical form is not a fixed point for such input; ours
 * is. Every other selector prints exactly as Calico prints it.
 *
 * Offsets (spans, error positions) are JavaScript string indices (UTF-16 code
 * units), 0-based, with exclusive ends.
 */
import { createHash } from 'node:crypto';

/** A label map: label name to value. Only own properties count as labels. */
export type Labels = Readonly<Record<string, string>>;

/** Source span in the selector text: [start, end) as 0-based character offsets. */
export type Span = readonly [number, number];

/** One member of a set literal as written: its value and the span of its string literal (quotes included). */
export interface SetMember {
  readonly value: string;
  readonly span: Span;
}

/**
 * A parsed selector expression. `span` covers the node's source text; a
 * parenthesised group's node covers its parentheses, and a negation starts at
 * its first `!`. `labelSpan` covers the label name; `valueSpan` and member
 * spans cover the string literal including its quotes.
 *
 * Negation runs collapse while parsing (`!!a == "x"` is the comparison
 * itself), but a parenthesised negation under `!` stays a nested `not`.
 * `and`/`or` nodes have at least two operands and keep the nesting as written.
 */
export type SelectorNode =
  | { readonly kind: 'all'; readonly span: Span }
  | { readonly kind: 'global'; readonly span: Span }
  | { readonly kind: 'has'; readonly label: string; readonly labelSpan: Span; readonly span: Span }
  | {
      readonly kind: 'eq' | 'ne' | 'contains' | 'startsWith' | 'endsWith';
      readonly label: string;
      readonly labelSpan: Span;
      readonly value: string;
      readonly valueSpan: Span;
      readonly span: Span;
    }
  | {
      readonly kind: 'in' | 'notIn';
      readonly label: string;
      readonly labelSpan: Span;
      /** The set: de-duplicated and sorted in byte (code point) order, as Calico prints it. */
      readonly values: readonly string[];
      /** Every member as written, in source order, duplicates included. */
      readonly members: readonly SetMember[];
      readonly span: Span;
    }
  | { readonly kind: 'not'; readonly expr: SelectorNode; readonly span: Span }
  | { readonly kind: 'and' | 'or'; readonly exprs: readonly SelectorNode[]; readonly span: Span };

/**
 * Why a selector does not parse. `message` is lowercase, has no final period
 * and quotes the user's input in backticks; [start, end) is where the problem
 * is (zero-width at the end of the text when the selector ends too early).
 */
export interface SelectorError {
  readonly message: string;
  readonly start: number;
  readonly end: number;
}

/** The outcome of {@link parseSelector}. */
export type ParseSelectorResult = { readonly ok: true; readonly selector: Selector } | { readonly ok: false; readonly error: SelectorError };

/** A label a selector refers to, with the values it compares the label with (none for `has`). */
export interface SelectorReference {
  readonly label: string;
  readonly labelSpan: Span;
  readonly values: readonly SetMember[];
}

/** Calico's longest label name (tokenizer.MaxLabelLength). */
const MAX_LABEL_LENGTH = 512;

// ---------------------------------------------------------------- tokenizer

type TokenKind =
  | 'label'
  | 'string'
  | 'lbrace'
  | 'rbrace'
  | 'comma'
  | 'eq'
  | 'ne'
  | 'in'
  | 'not'
  | 'notIn'
  | 'contains'
  | 'startsWith'
  | 'endsWith'
  | 'all'
  | 'has'
  | 'lparen'
  | 'rparen'
  | 'and'
  | 'or'
  | 'global'
  | 'eof';

interface Token {
  readonly kind: TokenKind;
  readonly start: number;
  readonly end: number;
  /** A label's name, a string literal's content, or the label inside `has(…)`. */
  readonly value: string;
  /** For `has(…)`: where its label is. */
  readonly valueStart: number;
}

/** Thrown inside the parser only; parseSelector turns it into a result. */
class SelectorSyntaxError {
  constructor(readonly error: SelectorError) {}
}

function fail(message: string, start: number, end: number): never {
  throw new SelectorSyntaxError({ message, start, end });
}

/** Whether `c` (a UTF-16 code unit) may appear in a label name: `[A-Za-z0-9_./-]`. */
function isLabelChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 46 || c === 47 || c === 45;
}

/** Whether `s` is a valid label name: 1 to 512 characters from `[A-Za-z0-9_./-]`. */
function isLabel(s: string): boolean {
  if (s.length === 0 || s.length > MAX_LABEL_LENGTH) return false;
  for (let i = 0; i < s.length; i++) if (!isLabelChar(s.charCodeAt(i))) return false;
  return true;
}

const CONTROL_NAMES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Shows user text in a message: control characters escaped, long text cut. */
function show(text: string): string {
  const cut = text.length > 40 ? text.slice(0, 37) + '…' : text;
  // eslint-disable-next-line no-control-regex
  return '`' + cut.replace(/[\u0000-\u001f\u007f]/g, (c) => CONTROL_NAMES[c] ?? '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')) + '`';
}

/** Operator words after a label, in Calico's order of trying. */
const OPERATOR_WORDS: readonly [TokenKind, readonly string[]][] = [
  ['contains', ['contains']],
  ['startsWith', ['starts', 'with']],
  ['endsWith', ['ends', 'with']],
  ['notIn', ['not', 'in']],
  ['in', ['in']],
];

/**
 * Calico's tokenizer, run lazily: the parser pulls one token at a time. The
 * token stream is the same as Calico's (the only context is whether the
 * previous token was a label), so a selector is valid here exactly when it is
 * valid in Calico; reading lazily just reports the first problem from the left.
 */
class Lexer {
  private pos = 0;
  private lastKind: TokenKind | undefined;
  /** The value of the last token. */
  private lastValue = '';

  constructor(private readonly src: string) {}

  private skipBlanks(): void {
    const s = this.src;
    while (this.pos < s.length) {
      const c = s.charCodeAt(this.pos);
      if (c !== 32 && c !== 9) break;
      this.pos++;
    }
  }

  /** End of the label characters starting at `from`. */
  private labelEnd(from: number): number {
    let i = from;
    while (i < this.src.length && isLabelChar(this.src.charCodeAt(i))) i++;
    return i;
  }

  /** The end of the label starting at `from`; an error when it is too long. */
  private label(from: number): number {
    const end = this.labelEnd(from);
    if (end - from > MAX_LABEL_LENGTH) fail(`label ${show(this.src.slice(from, end))} is longer than ${MAX_LABEL_LENGTH} characters`, from, end);
    return end;
  }

  private charLength(at: number): number {
    const cp = this.src.codePointAt(at) ?? 0;
    return cp > 0xffff ? 2 : 1;
  }

  /** What is at `at`, for "found …": a word, one character, or the end. */
  private describe(at: number): string {
    if (at >= this.src.length) return 'the end of the selector';
    const end = this.labelEnd(at);
    return show(this.src.slice(at, end > at ? end : at + this.charLength(at)));
  }

  /**
   * Matches operator words at `from`: the words may be separated by any
   * blanks (so `notin` is `not in`), and a label character may not follow.
   * Returns where the operator ends, or -1.
   */
  private operator(from: number, words: readonly string[]): number {
    const s = this.src;
    let i = from;
    for (let w = 0; w < words.length; w++) {
      if (w > 0) while (i < s.length && (s.charCodeAt(i) === 32 || s.charCodeAt(i) === 9)) i++;
      if (!s.startsWith(words[w], i)) return -1;
      i += words[w].length;
    }
    return i < s.length && isLabelChar(s.charCodeAt(i)) ? -1 : i;
  }

  /** Expects `)` after optional blanks, `what` being the text before it (for the message). */
  private closeParen(what: string): void {
    this.skipBlanks();
    const at = this.pos;
    if (this.src.charCodeAt(at) !== 41) fail(`expected \`)\` after ${show(what)}, found ${this.describe(at)}`, at, at < this.src.length ? at + this.charLength(at) : at);
    this.pos++;
  }

  private token(kind: TokenKind, start: number, value: string, valueStart: number): Token {
    this.lastKind = kind;
    this.lastValue = value;
    return { kind, start, end: this.pos, value, valueStart };
  }

  private simple(kind: TokenKind, start: number, length: number): Token {
    this.pos = start + length;
    return this.token(kind, start, '', start);
  }

  /** The next token. The end of input is an `eof` token, returned again on every later call. */
  next(): Token {
    this.skipBlanks();
    const s = this.src;
    const start = this.pos;
    if (start >= s.length) return this.token('eof', start, '', start);
    const c = s.charCodeAt(start);
    const c2 = s.charCodeAt(start + 1);
    switch (c) {
      case 40: // (
        return this.simple('lparen', start, 1);
      case 41: // )
        return this.simple('rparen', start, 1);
      case 123: // {
        return this.simple('lbrace', start, 1);
      case 125: // }
        return this.simple('rbrace', start, 1);
      case 44: // ,
        return this.simple('comma', start, 1);
      case 34: // "
      case 39: {
        // '"' or "'": no escapes, the literal runs to the next quote of the same kind.
        const close = s.indexOf(c === 34 ? '"' : "'", start + 1);
        if (close < 0) fail('unterminated string literal', start, s.length);
        this.pos = close + 1;
        return this.token('string', start, s.slice(start + 1, close), start + 1);
      }
      case 61: // =
        if (c2 === 61) return this.simple('eq', start, 2);
        return fail('expected `==`, found `=`', start, start + 1);
      case 33: // !
        return c2 === 61 ? this.simple('ne', start, 2) : this.simple('not', start, 1);
      case 38: // &
        if (c2 === 38) return this.simple('and', start, 2);
        return fail('expected `&&`, found `&`', start, start + 1);
      case 124: // |
        if (c2 === 124) return this.simple('or', start, 2);
        return fail('expected `||`, found `|`', start, start + 1);
    }
    if (this.lastKind === 'label') {
      // Right after a label only an operator word may follow.
      for (const [kind, words] of OPERATOR_WORDS) {
        const end = this.operator(start, words);
        if (end >= 0) {
          this.pos = end;
          return this.token(kind, start, '', start);
        }
      }
      const end = this.labelEnd(start);
      return fail(`expected an operator after label ${show(this.lastValue)}, found ${this.describe(start)}`, start, end > start ? end : start + this.charLength(start));
    }
    if (s.startsWith('has(', start)) {
      this.pos = start + 4;
      this.skipBlanks();
      const labelStart = this.pos;
      const labelEnd = this.label(labelStart);
      if (labelEnd === labelStart) fail(`expected a label after \`has(\`, found ${this.describe(labelStart)}`, labelStart, labelStart < s.length ? labelStart + this.charLength(labelStart) : labelStart);
      this.pos = labelEnd;
      const label = s.slice(labelStart, labelEnd);
      this.closeParen(`has(${label}`);
      return this.token('has', start, label, labelStart);
    }
    for (const kind of ['all', 'global'] as const) {
      if (s.startsWith(kind, start) && s.charCodeAt(start + kind.length) === 40) {
        this.pos = start + kind.length + 1;
        this.closeParen(`${kind}(`);
        return this.token(kind, start, '', start);
      }
    }
    if (isLabelChar(c)) {
      const end = this.label(start);
      this.pos = end;
      return this.token('label', start, s.slice(start, end), start);
    }
    return fail(`unexpected character ${show(String.fromCodePoint(s.codePointAt(start) ?? c))}`, start, start + this.charLength(start));
  }
}

// ---------------------------------------------------------------- parser

const COMPARISONS: Partial<Record<TokenKind, 'eq' | 'ne' | 'contains' | 'startsWith' | 'endsWith'>> = {
  eq: 'eq',
  ne: 'ne',
  contains: 'contains',
  startsWith: 'startsWith',
  endsWith: 'endsWith',
};

/** Recursive descent over the grammar of parser.go: or := and {`||` and}; and := unary {`&&` unary}; unary := {`!`} primary. */
class Parser {
  private readonly lexer: Lexer;
  private ahead: Token | undefined;
  /** The last token consumed. */
  private prev: Token | undefined;

  constructor(private readonly src: string) {
    this.lexer = new Lexer(src);
  }

  private peek(): Token {
    return (this.ahead ??= this.lexer.next());
  }

  private next(): Token {
    const t = this.peek();
    this.ahead = undefined;
    this.prev = t;
    return t;
  }

  private text(t: Token): string {
    return show(this.src.slice(t.start, t.end));
  }

  private found(t: Token): string {
    return t.kind === 'eof' ? 'the end of the selector' : this.text(t);
  }

  parse(): SelectorNode {
    if (this.peek().kind === 'eof') return { kind: 'all', span: [0, this.src.length] };
    const node = this.or();
    const t = this.next();
    if (t.kind === 'eof') return node;
    if (t.kind === 'rparen') fail('unexpected `)`', t.start, t.end);
    return fail(`expected \`&&\` or \`||\`, found ${this.found(t)}`, t.start, t.end);
  }

  private or(): SelectorNode {
    return this.nary('or', () => this.and());
  }

  private and(): SelectorNode {
    return this.nary('and', () => this.unary());
  }

  /** One n-ary node of `kind` over operands read by `operand`, or the single operand when there is no operator. */
  private nary(kind: 'and' | 'or', operand: () => SelectorNode): SelectorNode {
    const start = this.peek().start;
    const first = operand();
    if (this.peek().kind !== kind) return first;
    const exprs = [first];
    while (this.peek().kind === kind) {
      this.next();
      exprs.push(operand());
    }
    return { kind, exprs, span: [start, this.prev!.end] };
  }

  private unary(): SelectorNode {
    const start = this.peek().start;
    let negated = false;
    while (this.peek().kind === 'not') {
      this.next();
      negated = !negated;
    }
    const expr = this.primary();
    return negated ? { kind: 'not', expr, span: [start, expr.span[1]] } : expr;
  }

  private primary(): SelectorNode {
    const before = this.prev;
    const t = this.next();
    switch (t.kind) {
      case 'has':
        return { kind: 'has', label: t.value, labelSpan: [t.valueStart, t.valueStart + t.value.length], span: [t.start, t.end] };
      case 'all':
        return { kind: 'all', span: [t.start, t.end] };
      case 'global':
        return { kind: 'global', span: [t.start, t.end] };
      case 'label':
        return this.comparison(t);
      case 'lparen': {
        const inner = this.or();
        const close = this.next();
        if (close.kind === 'eof') fail('unclosed `(`', t.start, t.end);
        if (close.kind !== 'rparen') fail(`expected \`&&\`, \`||\` or \`)\`, found ${this.found(close)}`, close.start, close.end);
        return { ...inner, span: [t.start, close.end] };
      }
      case 'string':
        return fail(`a comparison must start with a label, found the string ${this.text(t)}`, t.start, t.end);
      case 'eof':
        return fail(`expected an expression after ${this.text(before!)}`, t.start, t.end);
      default:
        if (before === undefined) fail(`unexpected ${this.text(t)}`, t.start, t.end);
        return fail(`expected an expression after ${this.text(before)}, found ${this.text(t)}`, t.start, t.end);
    }
  }

  private comparison(label: Token): SelectorNode {
    const labelSpan: Span = [label.start, label.end];
    const op = this.next();
    const kind = COMPARISONS[op.kind];
    if (kind !== undefined) {
      const v = this.next();
      if (v.kind !== 'string') {
        if (v.kind === 'eof') fail(`expected a string after ${this.text(op)}`, v.start, v.end);
        fail(`expected a string after ${this.text(op)}, found ${this.text(v)}`, v.start, v.end);
      }
      return { kind, label: label.value, labelSpan, value: v.value, valueSpan: [v.start, v.end], span: [label.start, v.end] };
    }
    if (op.kind === 'in' || op.kind === 'notIn') {
      const open = this.next();
      if (open.kind !== 'lbrace') fail(`expected \`{\` after ${this.text(op)}, found ${this.found(open)}`, open.start, open.end);
      const members: SetMember[] = [];
      for (;;) {
        const m = this.next();
        if (m.kind === 'rbrace') break;
        if (m.kind !== 'string') fail(`expected a string or \`}\` in the set, found ${this.found(m)}`, m.start, m.end);
        members.push({ value: m.value, span: [m.start, m.end] });
        const sep = this.next();
        if (sep.kind === 'rbrace') break;
        if (sep.kind !== 'comma') fail(`expected \`,\` or \`}\` in the set, found ${this.found(sep)}`, sep.start, sep.end);
      }
      const values = sortedUnique(members.map((m) => m.value));
      return { kind: op.kind, label: label.value, labelSpan, values, members, span: [label.start, this.prev!.end] };
    }
    if (op.kind === 'eof') fail(`expected an operator after label ${this.text(label)}`, label.start, label.end);
    if (op.kind === 'lparen' && (label.value === 'has' || label.value === 'all' || label.value === 'global')) {
      fail(`no space is allowed between ${this.text(label)} and \`(\``, label.end, op.start);
    }
    return fail(`expected an operator after label ${this.text(label)}, found ${this.text(op)}`, op.start, op.end);
  }
}

/** Compares strings in UTF-8 byte order (= code point order), as Go's sort.Strings does. */
function compareBytes(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // UTF-16 order differs from code point order only between surrogates and U+E000..U+FFFF.
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

function sortedUnique(values: string[]): string[] {
  const sorted = [...values].sort(compareBytes);
  return sorted.filter((v, i) => i === 0 || v !== sorted[i - 1]);
}

// ---------------------------------------------------------------- printing

function quote(value: string): string {
  return value.includes('"') ? `'${value}'` : `"${value}"`;
}

const OPERATOR_TEXT = { eq: ' == ', ne: ' != ', contains: ' contains ', startsWith: ' starts with ', endsWith: ' ends with ' } as const;

/**
 * Prints a selector AST in Calico's canonical form (Selector.String()):
 * `and`/`or` nodes always in parentheses and never flattened, operators with
 * one space either side, values in `"` unless they hold `"`, set members
 * sorted and de-duplicated, and nested negations collapsed by parity.
 * Spans are ignored. Label names and values are not checked: a hand-built
 * AST with an invalid label, or a value holding both kinds of quote, prints
 * as text that does not parse.
 */
export function formatSelector(node: SelectorNode): string {
  switch (node.kind) {
    case 'all':
      return 'all()';
    case 'global':
      return 'global()';
    case 'has':
      return `has(${node.label})`;
    case 'eq':
    case 'ne':
    case 'contains':
    case 'startsWith':
    case 'endsWith':
      return node.label + OPERATOR_TEXT[node.kind] + quote(node.value);
    case 'in':
    case 'notIn':
      return `${node.label} ${node.kind === 'in' ? 'in' : 'not in'} {${sortedUnique([...node.values]).map(quote).join(', ')}}`;
    case 'not': {
      let negated = true;
      let expr = node.expr;
      while (expr.kind === 'not') {
        negated = !negated;
        expr = expr.expr;
      }
      return (negated ? '!' : '') + formatSelector(expr);
    }
    case 'and':
    case 'or':
      return '(' + node.exprs.map(formatSelector).join(node.kind === 'and' ? ' && ' : ' || ') + ')';
  }
}

// ---------------------------------------------------------------- evaluation

type Matcher = (labels: Labels) => boolean;

const hasOwn = Object.hasOwn;
const always: Matcher = () => true;

/** Compiles a node to a closure tree once, so that matching allocates nothing. */
function compile(node: SelectorNode): Matcher {
  switch (node.kind) {
    case 'all':
    case 'global':
      return always;
    case 'has': {
      const k = node.label;
      return (l) => hasOwn(l, k);
    }
    case 'eq': {
      const { label: k, value: v } = node;
      return (l) => hasOwn(l, k) && l[k] === v;
    }
    case 'ne': {
      const { label: k, value: v } = node;
      return (l) => !hasOwn(l, k) || l[k] !== v;
    }
    case 'contains': {
      const { label: k, value: v } = node;
      return (l) => hasOwn(l, k) && l[k].includes(v);
    }
    case 'startsWith': {
      const { label: k, value: v } = node;
      return (l) => hasOwn(l, k) && l[k].startsWith(v);
    }
    case 'endsWith': {
      const { label: k, value: v } = node;
      return (l) => hasOwn(l, k) && l[k].endsWith(v);
    }
    case 'in': {
      const k = node.label;
      const set = new Set(node.values);
      return (l) => hasOwn(l, k) && set.has(l[k]);
    }
    case 'notIn': {
      const k = node.label;
      const set = new Set(node.values);
      return (l) => !hasOwn(l, k) || !set.has(l[k]);
    }
    case 'not': {
      let negated = true;
      let expr = node.expr;
      while (expr.kind === 'not') {
        negated = !negated;
        expr = expr.expr;
      }
      const inner = compile(expr);
      return negated ? (l) => !inner(l) : inner;
    }
    case 'and': {
      const ms = node.exprs.map(compile);
      if (ms.length === 2) {
        const [a, b] = ms;
        return (l) => a(l) && b(l);
      }
      return (l) => {
        for (let i = 0; i < ms.length; i++) if (!ms[i](l)) return false;
        return true;
      };
    }
    case 'or': {
      const ms = node.exprs.map(compile);
      if (ms.length === 2) {
        const [a, b] = ms;
        return (l) => a(l) || b(l);
      }
      return (l) => {
        for (let i = 0; i < ms.length; i++) if (ms[i](l)) return true;
        return false;
      };
    }
  }
}

function deepFreeze(node: SelectorNode): SelectorNode {
  Object.freeze(node.span);
  switch (node.kind) {
    case 'has':
      Object.freeze(node.labelSpan);
      break;
    case 'eq':
    case 'ne':
    case 'contains':
    case 'startsWith':
    case 'endsWith':
      Object.freeze(node.labelSpan);
      Object.freeze(node.valueSpan);
      break;
    case 'in':
    case 'notIn':
      Object.freeze(node.labelSpan);
      Object.freeze(node.values);
      for (const m of node.members) Object.freeze(Object.freeze(m).span);
      Object.freeze(node.members);
      break;
    case 'not':
      deepFreeze(node.expr);
      break;
    case 'and':
    case 'or':
      node.exprs.forEach(deepFreeze);
      Object.freeze(node.exprs);
      break;
  }
  return Object.freeze(node);
}

function prefixLabels(node: SelectorNode, prefix: string): SelectorNode {
  switch (node.kind) {
    case 'all':
    case 'global':
      return node;
    case 'has':
    case 'eq':
    case 'ne':
    case 'contains':
    case 'startsWith':
    case 'endsWith':
    case 'in':
    case 'notIn':
      return { ...node, label: prefix + node.label };
    case 'not':
      return { ...node, expr: prefixLabels(node.expr, prefix) };
    case 'and':
    case 'or':
      return { ...node, exprs: node.exprs.map((e) => prefixLabels(e, prefix)) };
  }
}

function collectReferences(node: SelectorNode, out: SelectorReference[]): void {
  switch (node.kind) {
    case 'all':
    case 'global':
      return;
    case 'has':
      out.push({ label: node.label, labelSpan: node.labelSpan, values: [] });
      return;
    case 'eq':
    case 'ne':
    case 'contains':
    case 'startsWith':
    case 'endsWith':
      out.push({ label: node.label, labelSpan: node.labelSpan, values: [{ value: node.value, span: node.valueSpan }] });
      return;
    case 'in':
    case 'notIn':
      out.push({ label: node.label, labelSpan: node.labelSpan, values: node.members });
      return;
    case 'not':
      collectReferences(node.expr, out);
      return;
    case 'and':
    case 'or':
      for (const e of node.exprs) collectReferences(e, out);
      return;
  }
}

// ---------------------------------------------------------------- API

let makeSelector: (source: string, ast: SelectorNode) => Selector;

/**
 * A parsed, valid Calico selector. Obtain one from {@link parseSelector} (or
 * {@link Selector.ALL}); it is immutable.
 */
export class Selector {
  /** The selector text as written. */
  readonly source: string;
  /** The syntax tree, with spans into `source`. Frozen. */
  readonly ast: SelectorNode;
  readonly #match: Matcher;
  #canonical: string | undefined;
  #uid: string | undefined;

  private constructor(source: string, ast: SelectorNode) {
    this.source = source;
    this.ast = deepFreeze(ast);
    this.#match = compile(ast);
  }

  static {
    makeSelector = (source, ast) => new Selector(source, ast);
  }

  /** The selector `all()`, which matches everything. */
  static readonly ALL: Selector = new Selector('all()', { kind: 'all', span: [0, 5] });

  /** Whether the labels match the selector, by Calico's rules (a missing label makes `!=` and `not in` true). Allocates nothing. */
  matches(labels: Labels): boolean {
    return this.#match(labels);
  }

  /** The canonical form, as Calico's Selector.String() prints it (see {@link formatSelector}). */
  toString(): string {
    return (this.#canonical ??= formatSelector(this.ast));
  }

  /** Calico's unique id: `s:` + base64url without padding of SHA-224(`s:` + canonical form). */
  uniqueId(): string {
    return (this.#uid ??= 's:' + createHash('sha224').update('s:' + this.toString(), 'utf8').digest('base64url'));
  }

  /** Every label reference with its value(s) and spans, in source order, for checking against a label taxonomy. */
  references(): SelectorReference[] {
    const out: SelectorReference[] = [];
    collectReferences(this.ast, out);
    return out;
  }

  /**
   * A new selector with `prefix` put before every label name (Calico's
   * PrefixVisitor). Its source is its canonical form, so its spans point
   * into that. Throws a RangeError when a prefixed name would not be a valid
   * label (the prefix must use only `[A-Za-z0-9_./-]`, and a name may have at
   * most 512 characters).
   */
  withPrefix(prefix: string): Selector {
    const text = formatSelector(prefixLabels(this.ast, prefix));
    const r = parseSelector(text);
    if (!r.ok || (prefix !== '' && !isLabel(prefix))) throw new RangeError(`cannot prefix the labels of ${show(this.source)} with ${show(prefix)}`);
    return r.selector;
  }
}

/**
 * Parses (and thereby validates) a Calico selector. An empty or blank
 * selector is `all()`. Never throws.
 */
export function parseSelector(source: string): ParseSelectorResult {
  try {
    return { ok: true, selector: makeSelector(source, new Parser(source).parse()) };
  } catch (e) {
    if (e instanceof SelectorSyntaxError) return { ok: false, error: e.error };
    throw e;
  }
}
