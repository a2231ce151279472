/**
 * A small Calico selector reader, enough for the generator to sample flows
 * that follow the rules it wrote (and for its tests to check what it wrote).
 * It is not the policy layer's parser: it only needs to agree with it on the
 * documented grammar: `==`, `!=`, `in {…}`, `not in {…}`, `has(k)`, `!`,
 * `&&`, `||`, parentheses, `contains`, `starts with`, `ends with`, `all()`.
 *
 * Calico semantics on a missing label: `==`, `in`, `contains`, `starts with`
 * and `ends with` are false; `!=` and `not in` are true.
 */

export type Labels = Readonly<Record<string, string>>;

export type SelectorAst =
  | { op: 'all' }
  | { op: 'has'; key: string }
  | { op: 'eq' | 'ne' | 'contains' | 'starts' | 'ends'; key: string; value: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: 'not'; arg: SelectorAst }
  | { op: 'and' | 'or'; args: SelectorAst[] };

type Token =
  | { t: 'str'; v: string }
  | { t: 'id'; v: string }
  | { t: 'sym'; v: string };

const SYMBOLS = ['==', '!=', '&&', '||', '!', '(', ')', '{', '}', ','];

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (c === "'" || c === '"') {
      const end = src.indexOf(c, i + 1);
      if (end < 0) throw new SyntaxError(`unterminated string in selector: ${src}`);
      out.push({ t: 'str', v: src.slice(i + 1, end) });
      i = end + 1;
      continue;
    }
    const sym = SYMBOLS.find((s) => src.startsWith(s, i));
    if (sym) {
      out.push({ t: 'sym', v: sym });
      i += sym.length;
      continue;
    }
    const m = /^[A-Za-z0-9_./-]+/.exec(src.slice(i));
    if (!m) throw new SyntaxError(`unexpected '${c}' at ${i} in selector: ${src}`);
    out.push({ t: 'id', v: m[0] });
    i += m[0].length;
  }
  return out;
}

export function parseSelector(src: string): SelectorAst {
  const toks = tokenize(src);
  let p = 0;
  const peek = (): Token | undefined => toks[p];
  const isSym = (v: string): boolean => {
    const t = toks[p];
    return t !== undefined && t.t === 'sym' && t.v === v;
  };
  const isId = (v: string): boolean => {
    const t = toks[p];
    return t !== undefined && t.t === 'id' && t.v === v;
  };
  const expectSym = (v: string): void => {
    if (!isSym(v)) throw new SyntaxError(`expected '${v}' in selector: ${src}`);
    p++;
  };
  const str = (): string => {
    const t = toks[p];
    if (!t || t.t !== 'str') throw new SyntaxError(`expected a quoted string in selector: ${src}`);
    p++;
    return t.v;
  };
  const set = (): string[] => {
    expectSym('{');
    const values: string[] = [];
    if (!isSym('}')) {
      values.push(str());
      while (isSym(',')) {
        p++;
        values.push(str());
      }
    }
    expectSym('}');
    return values;
  };

  const primary = (): SelectorAst => {
    const t = peek();
    if (!t) throw new SyntaxError(`unexpected end of selector: ${src}`);
    if (t.t === 'sym' && t.v === '(') {
      p++;
      const e = or();
      expectSym(')');
      return e;
    }
    if (t.t !== 'id') throw new SyntaxError(`unexpected '${t.v}' in selector: ${src}`);
    if ((t.v === 'all' || t.v === 'has' || t.v === 'global') && toks[p + 1]?.t === 'sym' && toks[p + 1]?.v === '(') {
      p += 2;
      if (t.v === 'has') {
        const k = toks[p];
        if (!k || k.t !== 'id') throw new SyntaxError(`expected a label key in has() in selector: ${src}`);
        p++;
        expectSym(')');
        return { op: 'has', key: k.v };
      }
      expectSym(')');
      return { op: 'all' };
    }
    const key = t.v;
    p++;
    if (isSym('==')) {
      p++;
      return { op: 'eq', key, value: str() };
    }
    if (isSym('!=')) {
      p++;
      return { op: 'ne', key, value: str() };
    }
    if (isId('in')) {
      p++;
      return { op: 'in', key, values: set() };
    }
    if (isId('not') && toks[p + 1]?.t === 'id' && toks[p + 1]?.v === 'in') {
      p += 2;
      return { op: 'notin', key, values: set() };
    }
    if (isId('contains')) {
      p++;
      return { op: 'contains', key, value: str() };
    }
    if ((isId('starts') || isId('ends')) && toks[p + 1]?.t === 'id' && toks[p + 1]?.v === 'with') {
      const op = toks[p].v === 'starts' ? 'starts' : 'ends';
      p += 2;
      return { op, key, value: str() };
    }
    throw new SyntaxError(`expected an operator after '${key}' in selector: ${src}`);
  };
  const unary = (): SelectorAst => {
    if (isSym('!')) {
      p++;
      return { op: 'not', arg: unary() };
    }
    return primary();
  };
  const and = (): SelectorAst => {
    const args = [unary()];
    while (isSym('&&')) {
      p++;
      args.push(unary());
    }
    return args.length === 1 ? args[0] : { op: 'and', args };
  };
  const or = (): SelectorAst => {
    const args = [and()];
    while (isSym('||')) {
      p++;
      args.push(and());
    }
    return args.length === 1 ? args[0] : { op: 'or', args };
  };

  if (toks.length === 0) return { op: 'all' };
  const ast = or();
  if (p !== toks.length) throw new SyntaxError(`trailing input in selector: ${src}`);
  return ast;
}

export function matchAst(ast: SelectorAst, labels: Labels): boolean {
  switch (ast.op) {
    case 'all':
      return true;
    case 'has':
      return Object.prototype.hasOwnProperty.call(labels, ast.key);
    case 'eq':
      return labels[ast.key] === ast.value;
    case 'ne':
      return labels[ast.key] !== ast.value;
    case 'contains': {
      const v = labels[ast.key];
      return v !== undefined && v.includes(ast.value);
    }
    case 'starts': {
      const v = labels[ast.key];
      return v !== undefined && v.startsWith(ast.value);
    }
    case 'ends': {
      const v = labels[ast.key];
      return v !== undefined && v.endsWith(ast.value);
    }
    case 'in': {
      const v = labels[ast.key];
      return v !== undefined && ast.values.includes(v);
    }
    case 'notin': {
      const v = labels[ast.key];
      return v === undefined || !ast.values.includes(v);
    }
    case 'not':
      return !matchAst(ast.arg, labels);
    case 'and':
      return ast.args.every((a) => matchAst(a, labels));
    case 'or':
      return ast.args.some((a) => matchAst(a, labels));
  }
}

/** Every (key, value) pair the selector names, for taxonomy checks. */
export function selectorLabels(ast: SelectorAst, out: Array<[string, string | undefined]> = []): Array<[string, string | undefined]> {
  switch (ast.op) {
    case 'all':
      break;
    case 'has':
      out.push([ast.key, undefined]);
      break;
    case 'eq':
    case 'ne':
      out.push([ast.key, ast.value]);
      break;
    case 'contains':
    case 'starts':
    case 'ends':
      out.push([ast.key, undefined]);
      break;
    case 'in':
    case 'notin':
      for (const v of ast.values) out.push([ast.key, v]);
      if (ast.values.length === 0) out.push([ast.key, undefined]);
      break;
    case 'not':
      selectorLabels(ast.arg, out);
      break;
    case 'and':
    case 'or':
      for (const a of ast.args) selectorLabels(a, out);
      break;
  }
  return out;
}

const cache = new Map<string, SelectorAst>();

/** A matcher for the selector (parsed once per distinct string). */
export function compileSelector(src: string): (labels: Labels) => boolean {
  let ast = cache.get(src);
  if (!ast) {
    ast = parseSelector(src);
    if (cache.size > 10_000) cache.clear();
    cache.set(src, ast);
  }
  const a = ast;
  return (labels) => matchAst(a, labels);
}
