/**
 * Differential test: src/model/selector.ts against a line-by-line port of
 * Calico's tokenizer.go (eager: the whole input first), parser.go and the
 * printer of ast.go. The two must agree on which selectors are valid, on the
 * canonical form (Calico's, except that `!!` runs left by `!(!…)` collapse),
 * and on matching.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseSelector, type Labels } from '../../src/model/selector.js';

type Tok = { k: string; v?: string };
type Node =
  | { k: 'all' | 'global' }
  | { k: 'has'; l: string }
  | { k: 'eq' | 'ne' | 'contains' | 'starts' | 'ends'; l: string; v: string }
  | { k: 'in' | 'notin'; l: string; vs: string[] }
  | { k: 'not'; e: Node }
  | { k: 'and' | 'or'; es: Node[] };

const identChar = (c: string | undefined) => c !== undefined && /[A-Za-z0-9_./-]/.test(c);
const trimWs = (s: string) => s.replace(/^[ \t]*/, '');
const isBoundary = (s: string) => s === '' || !identChar(s[0]);

function cutIdentifier(s: string): [string, string] | null {
  let i = 0;
  while (i < s.length && identChar(s[i])) i++;
  if (i === 0 || i > 512) return null;
  return [s.slice(0, i), s.slice(i)];
}

function cutWords(s: string, words: string[]): string | null {
  let rem = s;
  for (const w of words) {
    if (!rem.startsWith(w)) return null;
    rem = trimWs(rem.slice(w.length));
  }
  return isBoundary(rem) ? rem : null;
}

function tokenize(input: string): Tok[] | null {
  const toks: Tok[] = [];
  for (;;) {
    input = trimWs(input);
    if (input === '') {
      toks.push({ k: 'eof' });
      return toks;
    }
    const last = toks.length > 0 ? toks[toks.length - 1].k : 'none';
    const c = input[0];
    const simple: Record<string, string> = { '(': 'lparen', ')': 'rparen', '{': 'lbrace', '}': 'rbrace', ',': 'comma' };
    if (simple[c]) {
      toks.push({ k: simple[c] });
      input = input.slice(1);
    } else if (c === '"' || c === "'") {
      const i = input.indexOf(c, 1);
      if (i < 0) return null;
      toks.push({ k: 'str', v: input.slice(1, i) });
      input = input.slice(i + 1);
    } else if (c === '=' || c === '&' || c === '|') {
      if (input[1] !== c) return null;
      toks.push({ k: c === '=' ? 'eq' : c === '&' ? 'and' : 'or' });
      input = input.slice(2);
    } else if (c === '!') {
      const ne = input[1] === '=';
      toks.push({ k: ne ? 'ne' : 'not' });
      input = input.slice(ne ? 2 : 1);
    } else if (last === 'label') {
      const ops: [string, string[]][] = [
        ['contains', ['contains']],
        ['starts', ['starts', 'with']],
        ['ends', ['ends', 'with']],
        ['notin', ['not', 'in']],
      ];
      let found = false;
      if (input.startsWith('contains') && isBoundary(input.slice(8))) {
        toks.push({ k: 'contains' });
        input = input.slice(8);
        found = true;
      }
      for (const [k, words] of ops.slice(1)) {
        if (found) break;
        const rem = cutWords(input, words);
        if (rem !== null) {
          toks.push({ k });
          input = rem;
          found = true;
        }
      }
      if (!found && input.startsWith('in') && isBoundary(input.slice(2))) {
        toks.push({ k: 'in' });
        input = input.slice(2);
        found = true;
      }
      if (!found) return null;
    } else if (input.startsWith('has(')) {
      const id = cutIdentifier(trimWs(input.slice(4)));
      if (!id) return null;
      const rest = trimWs(id[1]);
      if (!rest.startsWith(')')) return null;
      toks.push({ k: 'has', v: id[0] });
      input = rest.slice(1);
    } else if (input.startsWith('all(') || input.startsWith('global(')) {
      const k = input.startsWith('all(') ? 'all' : 'global';
      const rest = trimWs(input.slice(k.length + 1));
      if (!rest.startsWith(')')) return null;
      toks.push({ k });
      input = rest.slice(1);
    } else {
      const id = cutIdentifier(input);
      if (!id) return null;
      toks.push({ k: 'label', v: id[0] });
      input = id[1];
    }
  }
}

class Fail extends Error {}

function parse(sel: string): Node | null {
  const toks = tokenize(sel);
  if (!toks) return null;
  if (toks[0].k === 'eof') return { k: 'all' };
  let i = 0;
  const or = (): Node => {
    const es = [and()];
    while (toks[i].k === 'or') {
      i++;
      es.push(and());
    }
    return es.length === 1 ? es[0] : { k: 'or', es };
  };
  const and = (): Node => {
    const es = [op()];
    while (toks[i].k === 'and') {
      i++;
      es.push(op());
    }
    return es.length === 1 ? es[0] : { k: 'and', es };
  };
  const op = (): Node => {
    let neg = false;
    while (toks[i].k === 'not') {
      neg = !neg;
      i++;
    }
    let n: Node;
    const t = toks[i];
    if (t.k === 'has') {
      n = { k: 'has', l: t.v! };
      i++;
    } else if (t.k === 'all' || t.k === 'global') {
      n = { k: t.k };
      i++;
    } else if (t.k === 'label') {
      if (toks.length - i < 3) throw new Fail();
      const o = toks[i + 1].k;
      if (o === 'eq' || o === 'ne' || o === 'contains' || o === 'starts' || o === 'ends') {
        if (toks[i + 2].k !== 'str') throw new Fail();
        n = { k: o, l: t.v!, v: toks[i + 2].v! };
        i += 3;
      } else if (o === 'in' || o === 'notin') {
        if (toks[i + 2].k !== 'lbrace') throw new Fail();
        i += 3;
        const vs: string[] = [];
        while (toks[i].k === 'str') {
          vs.push(toks[i].v!);
          i++;
          if (toks[i].k === 'comma') i++;
          else break;
        }
        if (toks[i].k !== 'rbrace') throw new Fail();
        i++;
        n = { k: o, l: t.v!, vs };
      } else throw new Fail();
    } else if (t.k === 'lparen') {
      i++;
      n = or();
      if (toks[i].k !== 'rparen') throw new Fail();
      i++;
    } else throw new Fail();
    return neg ? { k: 'not', e: n } : n;
  };
  try {
    const n = or();
    return toks.length - i === 1 ? n : null;
  } catch (e) {
    if (e instanceof Fail) return null;
    throw e;
  }
}

const quote = (v: string) => (v.includes('"') ? `'${v}'` : `"${v}"`);
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** ast.go's collectFragments. */
function print(n: Node): string {
  switch (n.k) {
    case 'all':
    case 'global':
      return `${n.k}()`;
    case 'has':
      return `has(${n.l})`;
    case 'eq':
    case 'ne':
    case 'contains':
    case 'starts':
    case 'ends':
      return `${n.l} ${{ eq: '==', ne: '!=', contains: 'contains', starts: 'starts with', ends: 'ends with' }[n.k]} ${quote(n.v)}`;
    case 'in':
    case 'notin':
      return `${n.l} ${n.k === 'in' ? 'in' : 'not in'} {${[...new Set(n.vs)].sort(byteOrder).map(quote).join(', ')}}`;
    case 'not':
      return '!' + print(n.e);
    case 'and':
    case 'or':
      return '(' + n.es.map(print).join(n.k === 'and' ? ' && ' : ' || ') + ')';
  }
}

function evaluate(n: Node, l: Labels): boolean {
  const has = Object.prototype.hasOwnProperty.call(l, 'l' in n ? n.l : '');
  const v = 'l' in n ? l[n.l] : '';
  switch (n.k) {
    case 'all':
    case 'global':
      return true;
    case 'has':
      return has;
    case 'eq':
      return has && v === n.v;
    case 'ne':
      return !has || v !== n.v;
    case 'contains':
      return has && v.includes(n.v);
    case 'starts':
      return has && v.startsWith(n.v);
    case 'ends':
      return has && v.endsWith(n.v);
    case 'in':
      return has && n.vs.includes(v);
    case 'notin':
      return !has || !n.vs.includes(v);
    case 'not':
      return !evaluate(n.e, l);
    case 'and':
      return n.es.every((e) => evaluate(e, l));
    case 'or':
      return n.es.some((e) => evaluate(e, l));
  }
}

const FRAGMENTS = [
  'a', 'b', 'has', 'all', 'global', 'in', 'not', 'notin', 'contains', 'starts', 'ends', 'with', 'startswith', 'x.y/z-_',
  'has(', 'all(', 'global(', 'has(a)', 'all()', 'global()', '"x"', "'y'", '""', '"', "'", '==', '=', '!=', '!', '&&', '&',
  '||', '|', '(', ')', '{', '}', ',', ' ', ' ', ' ', '\t', '%', '\n', 'é',
  ' a == "x" ', ' b in {"x", \'y\'} ', ' b not in {} ', ' a contains "" ', ' && ', ' || ', '!(', '(!',
];

/** Mostly well-formed selector text from a small grammar, with blanks, `!` runs and parentheses in random places. */
const grammarArb: fc.Arbitrary<string> = fc.letrec<{ expr: string }>((tie) => {
  const b = fc.constantFrom('', ' ', '\t');
  const label = fc.constantFrom('a', 'b', 'in', 'not', 'x.y/z-_');
  const str = fc.constantFrom('"x"', "'y'", '""', '"\'y\'"', `'"'`);
  const atom = fc.oneof(
    fc.tuple(label, b, fc.constantFrom('==', '!=', 'contains', 'starts with', 'endswith', 'ends  with'), b, str).map(([l, b1, o, b2, v]) => `${l}${/^\w/.test(o) ? ' ' : b1}${o}${/^\w/.test(o) ? ' ' : b2}${v}`),
    fc.tuple(label, fc.constantFrom(' in ', ' not in ', ' notin'), b, fc.array(str, { maxLength: 3 }), fc.boolean()).map(([l, o, b1, vs, comma]) => `${l}${o}${b1}{${vs.join(',' + b1)}${comma ? ',' : ''}}`),
    fc.tuple(b, label, b).map(([b1, l, b2]) => `has(${b1}${l}${b2})`),
    fc.constantFrom('all()', 'global()', 'all( )'),
  );
  return {
    expr: fc.oneof(
      { depthSize: 'small' },
      atom,
      fc.tuple(fc.constantFrom('!', '!!', '! !'), b, tie('expr')).map(([n, b1, e]) => `${n}${b1}${e}`),
      fc.tuple(b, tie('expr'), b).map(([b1, e, b2]) => `(${b1}${e}${b2})`),
      fc.tuple(tie('expr'), fc.constantFrom('&&', '||', ' && ', ' || '), tie('expr')).map(([x, o, y]) => `${x}${o}${y}`),
    ),
  };
}).expr;

/** Sometimes deletes or inserts one character, to probe the edges of validity. */
const mutatedArb = fc.tuple(grammarArb, fc.nat(), fc.constantFrom('', '', '', '(', ')', '!', ' ', '"', '{', ',', '&', 'a', '%')).map(([s, at, c]) => {
  const i = s.length === 0 ? 0 : at % s.length;
  return c === '' ? s : c === '%' ? s.slice(0, i) + s.slice(i + 1) : s.slice(0, i) + c + s.slice(i);
});

const textArb = fc.oneof(
  { arbitrary: fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 14 }).map((a) => a.join('')), weight: 3 },
  { arbitrary: mutatedArb, weight: 3 },
  { arbitrary: fc.string({ maxLength: 16 }), weight: 1 },
);
const labelsArb: fc.Arbitrary<Labels> = fc.dictionary(fc.constantFrom('a', 'b', 'x.y/z-_', 'has', 'in'), fc.constantFrom('', 'x', 'y', "'y'", 'xx'), { maxKeys: 4 });

test('differential: agrees with a port of Calico on validity, canonical form and matching', () => {
  let valid = 0;
  let deviations = 0;
  fc.assert(
    fc.property(textArb, fc.array(labelsArb, { maxLength: 6 }), (text, maps) => {
      const want = parse(text);
      const got = parseSelector(text);
      assert.equal(got.ok, want !== null, `${JSON.stringify(text)}: validity (${got.ok ? got.selector.toString() : got.error.message})`);
      if (!got.ok || want === null) return;
      valid++;
      const calico = print(want);
      const ours = got.selector.toString();
      if (ours !== calico) {
        // The one deliberate difference: Calico prints `!!` for `!(!…)`, and re-parsing that collapses it.
        deviations++;
        assert.ok(calico.includes('!!'), `${JSON.stringify(text)}: ${ours} vs Calico ${calico}`);
        assert.equal(print(parse(calico)!), ours, `${JSON.stringify(text)}: Calico's own re-parse`);
      }
      for (const l of maps) assert.equal(got.selector.matches(l), evaluate(want, l), `${JSON.stringify(text)} on ${JSON.stringify(l)}`);
    }),
    { numRuns: 20000 },
  );
  console.log(`differential: ${valid} valid of 20000 samples, ${deviations} with \`!(!…)\``);
  assert.ok(valid > 1000, `only ${valid} valid samples`);
});

test('differential: the conformance-style corner cases', () => {
  const cases = [
    'a not in x', 'a notin{}', 'a not  in {"x",}', 'a in{,}', 'a startswith x', 'a starts with', 'a in', 'has( a )', 'has(a', 'has()',
    'all( )', 'global(  )', 'a !has(b)', '!=', '!!= "x"', 'a ! = "x"', '(((a == "x")))', '((a == "x") && (b == "y")) || c == "z"',
    `${'k'.repeat(512)} == "x"`, `${'k'.repeat(513)} == "x"`, `has(${'k'.repeat(513)})`, '!(!(has(a)))', '!(!has(a) && !!has(b))',
  ];
  for (const text of cases) {
    const want = parse(text);
    const got = parseSelector(text);
    assert.equal(got.ok, want !== null, JSON.stringify(text));
    if (got.ok && want) assert.equal(got.selector.toString(), print(parse(print(want))!), JSON.stringify(text));
  }
});
