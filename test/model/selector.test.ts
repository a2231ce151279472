import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { formatSelector, parseSelector, Selector, type Labels, type SelectorNode, type Span } from '../../src/model/selector.js';

// ---------------------------------------------------------------- conformance tables

interface Tables {
  matching: { selector: string; labels: Record<string, string>; matches: boolean }[];
  invalid: string[];
  canonical: { selector: string; canonical: string; uniqueId?: string }[];
  prefixVisitor: { description: string; selector: string; prefix: string; output: string }[];
}

// test/model/ -> the repository root (the parent of test/) -> its sibling ../shared.
const repoRoot = new URL('../../', import.meta.url);
const tablesUrl = new URL('../shared/conformance/calico-selectors/selectors.json', repoRoot);
const tables = JSON.parse(readFileSync(tablesUrl, 'utf8')) as Tables;

const UID = /^s:[A-Za-z0-9_-]{38}$/;

function parseOk(source: string): Selector {
  const r = parseSelector(source);
  if (!r.ok) assert.fail(`${JSON.stringify(source)} does not parse: ${r.error.message} at ${r.error.start}..${r.error.end}`);
  return r.selector;
}

function checkSpan(span: Span, source: string, what: string): void {
  assert.ok(Number.isInteger(span[0]) && Number.isInteger(span[1]) && 0 <= span[0] && span[0] <= span[1] && span[1] <= source.length, `${what} span ${span} out of range`);
}

/** The "validate" step: the AST and its spans are consistent with the source text. */
function validate(sel: Selector): void {
  const src = sel.source;
  const checkLabel = (label: string, span: Span) => {
    assert.match(label, /^[A-Za-z0-9_./-]{1,512}$/);
    checkSpan(span, src, 'label');
    assert.equal(src.slice(...span), label);
  };
  const visit = (n: SelectorNode, outer: Span): void => {
    checkSpan(n.span, src, n.kind);
    assert.ok(outer[0] <= n.span[0] && n.span[1] <= outer[1], `${n.kind} span ${n.span} outside its parent ${outer}`);
    switch (n.kind) {
      case 'all':
      case 'global':
        return;
      case 'has':
        checkLabel(n.label, n.labelSpan);
        return;
      case 'eq':
      case 'ne':
      case 'contains':
      case 'startsWith':
      case 'endsWith':
        checkLabel(n.label, n.labelSpan);
        checkSpan(n.valueSpan, src, 'value');
        assert.equal(src.slice(n.valueSpan[0] + 1, n.valueSpan[1] - 1), n.value);
        return;
      case 'in':
      case 'notIn':
        checkLabel(n.label, n.labelSpan);
        assert.deepEqual([...new Set(n.members.map((m) => m.value))].sort(), [...n.values].sort());
        for (const m of n.members) assert.equal(src.slice(m.span[0] + 1, m.span[1] - 1), m.value);
        return;
      case 'not':
        visit(n.expr, n.span);
        return;
      case 'and':
      case 'or':
        assert.ok(n.exprs.length >= 2);
        for (const e of n.exprs) visit(e, n.span);
        return;
    }
  };
  visit(sel.ast, [0, src.length]);
  for (const ref of sel.references()) {
    assert.equal(src.slice(...ref.labelSpan), ref.label);
    for (const v of ref.values) assert.equal(src.slice(v.span[0] + 1, v.span[1] - 1), v.value);
  }
}

/** Runs every row, counting passes; fails the test if any row failed. */
function runTable<T>(name: string, rows: readonly T[], check: (row: T) => void): void {
  const failures: string[] = [];
  for (const [i, row] of rows.entries()) {
    try {
      check(row);
    } catch (e) {
      failures.push(`row ${i} ${JSON.stringify(row)}: ${(e as Error).message}`);
    }
  }
  console.log(`calico-selectors ${name}: ${rows.length - failures.length}/${rows.length} rows passed`);
  assert.deepEqual(failures, []);
}

test('conformance: matching table', () => {
  assert.equal(tables.matching.length, 98);
  runTable('matching', tables.matching, (row) => {
    const sel = parseOk(row.selector);
    validate(sel);
    assert.equal(sel.matches(row.labels), row.matches, 'match result');
    const canon = sel.toString();
    const again = parseOk(canon);
    validate(again);
    assert.equal(again.toString(), canon, 'canonical form is stable');
    assert.equal(again.uniqueId(), sel.uniqueId(), 'uid after re-parsing the canonical form');
    assert.equal(again.matches(row.labels), row.matches, 'match result after re-parsing the canonical form');
    assert.match(sel.uniqueId(), UID);
    assert.equal(sel.uniqueId(), sel.uniqueId(), 'uid is stable');
  });
});

test('conformance: invalid table', () => {
  assert.equal(tables.invalid.length, 26);
  runTable('invalid', tables.invalid, (source) => {
    const r = parseSelector(source);
    assert.equal(r.ok, false, 'should not parse');
    if (r.ok) return;
    const { message, start, end } = r.error;
    assert.ok(0 <= start && start <= end && end <= source.length, `error span ${start}..${end}`);
    assert.match(message, /^[^A-Z].*[^.]$/, 'lowercase, no final period');
  });
});

test('conformance: canonical table', () => {
  assert.equal(tables.canonical.length, 17);
  runTable('canonical', tables.canonical, (row) => {
    const sel = parseOk(row.selector);
    validate(sel);
    assert.equal(sel.toString(), row.canonical);
    const again = parseOk(row.canonical);
    assert.equal(again.toString(), row.canonical, 'round trip');
    if (row.uniqueId !== undefined) assert.equal(sel.uniqueId(), row.uniqueId);
    assert.equal(again.uniqueId(), sel.uniqueId(), 'uid after the round trip');
  });
});

test('conformance: prefixVisitor table', () => {
  assert.equal(tables.prefixVisitor.length, 11);
  runTable('prefixVisitor', tables.prefixVisitor, (row) => {
    const sel = parseOk(row.selector);
    const prefixed = sel.withPrefix(row.prefix);
    assert.equal(prefixed.toString(), row.output, row.description);
    assert.equal(prefixed.source, row.output);
    validate(prefixed);
    assert.equal(sel.toString(), parseOk(row.selector).toString(), 'the original is unchanged');
  });
});

// ---------------------------------------------------------------- errors

function parseErr(source: string): { message: string; span: [number, number] } {
  const r = parseSelector(source);
  if (r.ok) assert.fail(`${JSON.stringify(source)} should not parse, got ${r.selector.toString()}`);
  return { message: r.error.message, span: [r.error.start, r.error.end] };
}

test('errors: a single `=`', () => {
  assert.deepEqual(parseErr("env = 'prod'"), { message: 'expected `==`, found `=`', span: [4, 5] });
});

test('errors: an unquoted value', () => {
  assert.deepEqual(parseErr('env == prod'), { message: 'expected a string after `==`, found `prod`', span: [7, 11] });
  assert.deepEqual(parseErr('env =='), { message: 'expected a string after `==`', span: [6, 6] });
  assert.deepEqual(parseErr('env starts  with x'), { message: 'expected a string after `starts  with`, found `x`', span: [17, 18] });
  assert.deepEqual(parseErr('env in "a"'), { message: 'expected `{` after `in`, found `"a"`', span: [7, 10] });
  assert.deepEqual(parseErr("env in {'a' 'b'}"), { message: 'expected `,` or `}` in the set, found `\'b\'`', span: [12, 15] });
});

test('errors: unbalanced parentheses', () => {
  assert.deepEqual(parseErr('(a == "x"'), { message: 'unclosed `(`', span: [0, 1] });
  assert.deepEqual(parseErr('((a == "x") && has(b)'), { message: 'unclosed `(`', span: [0, 1] });
  assert.deepEqual(parseErr('a == "x")'), { message: 'unexpected `)`', span: [8, 9] });
  assert.deepEqual(parseErr(')'), { message: 'unexpected `)`', span: [0, 1] });
  assert.deepEqual(parseErr('()'), { message: 'expected an expression after `(`, found `)`', span: [1, 2] });
  assert.deepEqual(parseErr('(a == "x" b == "y")'), { message: 'expected `&&`, `||` or `)`, found `b`', span: [10, 11] });
});

test('errors: a space between a function name and `(`', () => {
  assert.deepEqual(parseErr('has (a)'), { message: 'no space is allowed between `has` and `(`', span: [3, 4] });
  assert.deepEqual(parseErr('all\t()'), { message: 'no space is allowed between `all` and `(`', span: [3, 4] });
  assert.deepEqual(parseErr('has()'), { message: 'expected a label after `has(`, found `)`', span: [4, 5] });
  assert.deepEqual(parseErr('has(a b)'), { message: 'expected `)` after `has(a`, found `b`', span: [6, 7] });
  assert.deepEqual(parseErr('all(x)'), { message: 'expected `)` after `all(`, found `x`', span: [4, 5] });
});

test('errors: strings, operators, characters, endings', () => {
  assert.deepEqual(parseErr("a == 'x"), { message: 'unterminated string literal', span: [5, 7] });
  assert.deepEqual(parseErr('a b'), { message: 'expected an operator after label `a`, found `b`', span: [2, 3] });
  assert.deepEqual(parseErr('a startsx "y"'), { message: 'expected an operator after label `a`, found `startsx`', span: [2, 9] });
  assert.deepEqual(parseErr('a'), { message: 'expected an operator after label `a`', span: [0, 1] });
  assert.deepEqual(parseErr("'b1' == b"), { message: "a comparison must start with a label, found the string `'b1'`", span: [0, 4] });
  assert.deepEqual(parseErr('has(a) &&'), { message: 'expected an expression after `&&`', span: [9, 9] });
  assert.deepEqual(parseErr('has(a) & has(b)'), { message: 'expected `&&`, found `&`', span: [7, 8] });
  assert.deepEqual(parseErr('has(a) has(b)'), { message: 'expected `&&` or `||`, found `has(b)`', span: [7, 13] });
  assert.deepEqual(parseErr('has(a) &&\nhas(b)'), { message: 'unexpected character `\\n`', span: [9, 10] });
  assert.deepEqual(parseErr('a == "😀" || 😀'), { message: 'unexpected character `😀`', span: [13, 15] });
  const long = 'x'.repeat(513);
  assert.deepEqual(parseErr(`${long} == "v"`), { message: `label \`${'x'.repeat(37)}…\` is longer than 512 characters`, span: [0, 513] });
  assert.equal(parseSelector(`${'x'.repeat(512)} == "v"`).ok, true);
});

// ---------------------------------------------------------------- behaviour

test('spans and references', () => {
  const src = "env in {'prod', \"dev\", 'prod'} && !has(team) || role == 'web'";
  const sel = parseOk(src);
  assert.equal(sel.toString(), '((env in {"dev", "prod"} && !has(team)) || role == "web")');
  assert.deepEqual(sel.references(), [
    {
      label: 'env',
      labelSpan: [0, 3],
      values: [
        { value: 'prod', span: [8, 14] },
        { value: 'dev', span: [16, 21] },
        { value: 'prod', span: [23, 29] },
      ],
    },
    { label: 'team', labelSpan: [39, 43], values: [] },
    { label: 'role', labelSpan: [48, 52], values: [{ value: 'web', span: [56, 61] }] },
  ]);
  const ast = sel.ast;
  assert.equal(ast.kind, 'or');
  assert.deepEqual(ast.span, [0, src.length]);
  if (ast.kind === 'or') {
    assert.deepEqual(ast.exprs[0].span, [0, 44]);
    assert.deepEqual(ast.exprs[0].kind === 'and' && ast.exprs[0].exprs[1].span, [34, 44]);
  }
  assert.ok(Object.isFrozen(ast));
  assert.deepEqual(parseOk(' ( has(a) ) ').ast, { kind: 'has', label: 'a', labelSpan: [7, 8], span: [1, 11] });
  assert.deepEqual(parseOk('  ').ast, { kind: 'all', span: [0, 2] });
});

test('operator spellings and keywords as labels', () => {
  assert.equal(parseOk('a startswith"x"').toString(), 'a starts with "x"');
  assert.equal(parseOk('a ends\t\twith "x"').toString(), 'a ends with "x"');
  assert.equal(parseOk("a notin{'x',}").toString(), 'a not in {"x"}');
  assert.equal(parseOk('a in {}').toString(), 'a in {}');
  assert.equal(parseOk('contains contains "x"').toString(), 'contains contains "x"');
  assert.equal(parseOk('in in {"x"} && not not in {"y"}').toString(), '(in in {"x"} && not not in {"y"})');
  assert.equal(parseOk('has == "x" && all != "y" && global(\t)').toString(), '(has == "x" && all != "y" && global())');
  assert.equal(parseOk('!(a=="1"||b=="2")&&c=="3"').toString(), '(!(a == "1" || b == "2") && c == "3")');
  assert.equal(parseOk('a in {"é", "😀", "\uffff", "z", "A"}').toString(), 'a in {"A", "z", "é", "\uffff", "😀"}');
});

test('nested negations collapse by parity (Calico prints `!!has(a)` here, which is not a fixed point)', () => {
  const sel = parseOk('!(!has(a))');
  assert.equal(sel.toString(), 'has(a)');
  assert.equal(sel.uniqueId(), parseOk('has(a)').uniqueId());
  assert.equal(sel.ast.kind, 'not');
  assert.equal(sel.matches({ a: '' }), true);
  assert.equal(parseOk('!(!(!(a == "x" && b == "y")))').toString(), '!(a == "x" && b == "y")');
});

test('matching uses own labels only', () => {
  assert.equal(parseOk('has(constructor)').matches({}), false);
  assert.equal(parseOk('toString != "x"').matches({}), true);
  assert.equal(parseOk('__proto__ == "x"').matches(JSON.parse('{"__proto__": "x"}') as Labels), true);
  const bare = Object.assign(Object.create(null) as Record<string, string>, { a: 'xyz' });
  assert.equal(parseOk('a contains "y" && a starts with "x" && a ends with "z" && a not in {"q"}').matches(bare), true);
  assert.equal(parseOk('has(a)').matches({ a: '' }), true);
});

test('Selector.ALL', () => {
  assert.equal(Selector.ALL.toString(), 'all()');
  assert.equal(Selector.ALL.uniqueId(), 's:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug');
  assert.equal(Selector.ALL.matches({}), true);
  assert.equal(parseOk('').uniqueId(), Selector.ALL.uniqueId());
});

test('withPrefix rejects prefixes that make invalid labels', () => {
  assert.throws(() => parseOk('has(a)').withPrefix('bad prefix/'), RangeError);
  assert.throws(() => parseOk('has(a)').withPrefix('x'.repeat(512)), RangeError);
  assert.equal(parseOk('all()').withPrefix('p/').toString(), 'all()');
  assert.equal(parseOk('!(!has(a))').withPrefix('').toString(), 'has(a)');
});

// ---------------------------------------------------------------- properties

const LABELS = ['a', 'b', 'app', 'k8s.io/name', 'x-y_z', 'in', 'not', 'contains', 'starts', 'has', 'all', 'global'];
const VALUES = ['', 'a', 'b', 'prod', "it's", 'say "hi"', 'a b', 'é', '😀', '\uE000', 'line\nbreak', '&&', ')'];

const labelArb = fc.constantFrom(...LABELS);
const valueArb = fc.oneof(
  fc.constantFrom(...VALUES),
  fc.string({ maxLength: 4, unit: 'grapheme' }).filter((s) => !(s.includes('"') && s.includes("'"))),
);
const span: Span = [0, 0];

const astArb: fc.Arbitrary<SelectorNode> = fc.letrec<{ node: SelectorNode }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom<SelectorNode>({ kind: 'all', span }, { kind: 'global', span }),
    labelArb.map((label): SelectorNode => ({ kind: 'has', label, labelSpan: span, span })),
    fc
      .record({ kind: fc.constantFrom('eq', 'ne', 'contains', 'startsWith', 'endsWith' as const), label: labelArb, value: valueArb })
      .map((r): SelectorNode => ({ ...r, labelSpan: span, valueSpan: span, span })),
    fc
      .record({ kind: fc.constantFrom('in', 'notIn' as const), label: labelArb, values: fc.array(valueArb, { maxLength: 4 }) })
      .map((r): SelectorNode => ({ ...r, labelSpan: span, members: r.values.map((value) => ({ value, span })), span })),
    tie('node').map((expr): SelectorNode => ({ kind: 'not', expr, span })),
    fc
      .record({ kind: fc.constantFrom('and', 'or' as const), exprs: fc.array(tie('node'), { minLength: 2, maxLength: 4 }) })
      .map((r): SelectorNode => ({ ...r, span })),
  ),
})).node;

const labelsArb: fc.Arbitrary<Labels> = fc.dictionary(labelArb, fc.oneof(fc.constantFrom(...VALUES), fc.string({ maxLength: 3 })), { maxKeys: 5 });

/** The evaluation table of the README, straight. */
function evaluate(n: SelectorNode, l: Labels): boolean {
  const has = (k: string) => Object.prototype.hasOwnProperty.call(l, k);
  switch (n.kind) {
    case 'all':
    case 'global':
      return true;
    case 'has':
      return has(n.label);
    case 'eq':
      return has(n.label) && l[n.label] === n.value;
    case 'ne':
      return !has(n.label) || l[n.label] !== n.value;
    case 'contains':
      return has(n.label) && l[n.label].includes(n.value);
    case 'startsWith':
      return has(n.label) && l[n.label].startsWith(n.value);
    case 'endsWith':
      return has(n.label) && l[n.label].endsWith(n.value);
    case 'in':
      return has(n.label) && n.values.includes(l[n.label]);
    case 'notIn':
      return !has(n.label) || !n.values.includes(l[n.label]);
    case 'not':
      return !evaluate(n.expr, l);
    case 'and':
      return n.exprs.every((e) => evaluate(e, l));
    case 'or':
      return n.exprs.some((e) => evaluate(e, l));
  }
}

test('property: printing a random AST, then parsing, keeps the canonical form and the matches', () => {
  fc.assert(
    fc.property(astArb, fc.array(labelsArb, { minLength: 1, maxLength: 8 }), (ast, maps) => {
      const text = formatSelector(ast);
      const sel = parseOk(text);
      validate(sel);
      assert.equal(sel.toString(), text);
      const again = parseOk(sel.toString());
      assert.equal(again.toString(), text);
      assert.equal(again.uniqueId(), sel.uniqueId());
      for (const l of maps) {
        const want = evaluate(ast, l);
        assert.equal(sel.matches(l), want);
        assert.equal(again.matches(l), want);
      }
    }),
    { numRuns: 2000 },
  );
});

/** Prints an AST the way a person might write it: extra blanks, `!!`, redundant parentheses, other spellings. */
function noisyArb(ast: SelectorNode): fc.Arbitrary<string> {
  const blank = fc.constantFrom('', ' ', '\t', '  ');
  const q = (v: string) => fc.constantFrom(...(v.includes('"') ? ["'"] : v.includes("'") ? ['"'] : ['"', "'"])).map((c) => c + v + c);
  const ops = { eq: ['=='], ne: ['!='], contains: [' contains '], startsWith: [' starts with ', ' startswith ', ' starts\twith'], endsWith: [' ends with ', ' endswith '] };
  const go = (n: SelectorNode): fc.Arbitrary<string> => {
    let inner: fc.Arbitrary<string>;
    switch (n.kind) {
      case 'all':
      case 'global':
        inner = blank.map((b) => `${n.kind}(${b})`);
        break;
      case 'has':
        inner = fc.tuple(blank, blank).map(([b1, b2]) => `has(${b1}${n.label}${b2})`);
        break;
      case 'eq':
      case 'ne':
      case 'contains':
      case 'startsWith':
      case 'endsWith':
        inner = fc.tuple(blank, fc.constantFrom(...ops[n.kind]), blank, q(n.value)).map(([b1, op, b2, v]) => `${n.label}${b1}${op}${b2}${v}`);
        break;
      case 'in':
      case 'notIn':
        inner = fc
          .tuple(fc.constantFrom(...(n.kind === 'in' ? [' in '] : [' not in ', ' notin ', ' not\tin'])), fc.tuple(...n.values.map(q)), blank, fc.boolean())
          .map(([op, vs, b, comma]) => `${n.label}${op}${b}{${vs.join(`,${b}`)}${comma && vs.length > 0 ? ',' : ''}}`);
        break;
      case 'not':
        inner = go(n.expr).map((e) => `!${e}`);
        break;
      case 'and':
      case 'or':
        inner = fc.tuple(...n.exprs.map(go), blank).map(([...parts]) => {
          const b = parts.pop()!;
          return `(${parts.join(`${b}${n.kind === 'and' ? '&&' : '||'}${b}`)})`;
        });
        break;
    }
    return fc.tuple(inner, fc.constantFrom('', '!!', '! !'), fc.boolean(), blank).map(([s, bangs, paren, b]) => {
      const body = paren ? `(${b}${s}${b})` : s;
      return `${b}${bangs}${body}`;
    });
  };
  return go(ast);
}

test('property: noisy spellings of a random AST parse to its canonical form', () => {
  fc.assert(
    fc.property(
      astArb.chain((ast) => fc.tuple(fc.constant(ast), noisyArb(ast))),
      ([ast, text]) => {
        const sel = parseOk(text);
        validate(sel);
        assert.equal(sel.toString(), formatSelector(ast));
      },
    ),
    { numRuns: 1000 },
  );
});

test('property: any text either parses to a fixed point or gives an error in range, and never throws', () => {
  const fragments = ['a', 'b', 'has', 'in', 'not', 'notin', 'contains', 'starts', 'with', 'has(', 'all(', 'global(', 'has(a)', 'all()', '"x"', "'y'", '"', "'", '==', '=', '!=', '!', '&&', '&', '||', '|', '(', ')', '{', '}', ',', ' ', '\t', '%', '\n', ' a == "x" ', ' b in {"x", \'y\'} ', ' && ', ' || '];
  const textArb = fc.oneof(fc.string({ maxLength: 20 }), fc.array(fc.constantFrom(...fragments), { maxLength: 12 }).map((a) => a.join('')));
  let valid = 0;
  fc.assert(
    fc.property(textArb, fc.array(labelsArb, { maxLength: 4 }), (text, maps) => {
      const r = parseSelector(text);
      if (!r.ok) {
        const { message, start, end } = r.error;
        assert.ok(0 <= start && start <= end && end <= text.length, `${JSON.stringify(text)}: span ${start}..${end}`);
        assert.match(message, /^[^A-Z].*[^.]$/);
        return;
      }
      valid++;
      validate(r.selector);
      const again = parseOk(r.selector.toString());
      assert.equal(again.toString(), r.selector.toString());
      assert.equal(again.uniqueId(), r.selector.uniqueId());
      for (const l of maps) assert.equal(again.matches(l), r.selector.matches(l));
    }),
    { numRuns: 5000 },
  );
  assert.ok(valid > 100, `only ${valid} valid samples`);
});
