/**
 * Turns Zod's schema issues into diagnostics in Cedar's message style, located
 * in the YAML source.
 */
import type { z } from 'zod';
import { closest, q, qList, type Diagnostics } from '../model/diagnostic.js';
import type { Path, SourceDoc } from './source.js';

/** What an item is called in messages: `workload`, `rule`, … */
export type ItemKind = string;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `the text ${q(v)}`;
  return `${typeof v} ${q(String(v))}`;
}

function expectedWord(e: string): string {
  switch (e) {
    case 'array':
      return 'a list';
    case 'object':
    case 'record':
      return 'a map';
    case 'string':
      return 'text';
    default:
      return `a ${e}`;
  }
}

function get(data: unknown, path: readonly PropertyKey[]): unknown {
  let v = data;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k as string];
  }
  return v;
}

const PEER_HELP = "a peer is a selector such as `role == 'web'`, `any`, or a map with one of `selector`, `workload`, `iplist`, `cidr`";

/**
 * Reports each issue of a failed parse of `data` (found at `base` in `doc`).
 * `knownFields` lists the fields allowed at each path for "did you mean" help.
 */
export function reportIssues(issues: readonly z.core.$ZodIssue[], ctx: { doc: SourceDoc; base: Path; data: unknown; what: ItemKind; schema: z.ZodType }, diags: Diagnostics): void {
  const { doc, base, data, what, schema } = ctx;
  for (const issue of issues) {
    const rel = issue.path.filter((k): k is string | number => typeof k !== 'symbol');
    const path = [...base, ...rel];
    const field = rel.filter((k) => typeof k === 'string').at(-1);
    const where = field ? ` for ${q(field)}` : '';
    const value = get(data, rel);
    if (value === undefined && field !== undefined && (issue.code === 'invalid_type' || issue.code === 'invalid_union')) {
      diags.error('BH004', `missing field ${q(field)} in ${what}`, doc.locate(path.slice(0, -1)), `add \`${field}:\``);
      continue;
    }
    switch (issue.code) {
      case 'invalid_type':
        diags.error('BH003', `expected ${expectedWord(issue.expected)}${where}, found ${describe(value)}`, doc.locate(path));
        break;
      case 'unrecognized_keys': {
        const parent = get(data, rel);
        const known = parent && typeof parent === 'object' ? Object.keys(parent) : [];
        const allowed = fieldsAt(schema, rel);
        for (const key of issue.keys) {
          const guess = closest(key, allowed.filter((k) => !known.includes(k)));
          diags.error('BH005', `unknown field ${q(key)} in ${what}`, doc.locate([...path, key], true), guess ? `did you mean ${q(guess)}?` : allowed.length ? `fields are ${qList(allowed, 12)}` : undefined);
        }
        break;
      }
      case 'invalid_value':
        diags.error('BH003', `${q(String(value))} is not a valid ${field ?? 'value'}`, doc.locate(path), `expected one of ${qList(issue.values.map(String))}`);
        break;
      case 'too_small':
        if (issue.origin === 'string') diags.error('BH003', `${q(field ?? 'value')} is empty`, doc.locate(path));
        else diags.error('BH003', `${q(field ?? 'value')} is empty`, doc.locate(path), 'give at least one item');
        break;
      case 'invalid_format':
        diags.error('BH003', `${q(String(value))} is not a valid ${field ?? 'name'}`, doc.locate(path), 'names start with a letter or digit and use letters, digits and `_ . : / @ -`');
        break;
      case 'invalid_union': {
        // A list where one item or a list was allowed: report the list's own item problems.
        const listBranch = Array.isArray(value) ? issue.errors.find((errs) => errs.length > 0 && errs.every((e) => typeof e.path[0] === 'number')) : undefined;
        if (listBranch) {
          reportIssues(
            listBranch.map((e) => ({ ...e, path: [...rel, ...e.path] })),
            ctx,
            diags,
          );
          break;
        }
        const isPeer = rel.some((k) => k === 'from' || k === 'to');
        const isPort = rel.some((k) => k === 'services' || k === 'ports');
        const keys = value && typeof value === 'object' && !Array.isArray(value) ? Object.keys(value) : [];
        const kinds = ['selector', 'workload', 'iplist', 'cidr'];
        const odd = keys.filter((k) => k !== 'global' && !kinds.includes(k));
        if (isPeer && odd.length > 0) {
          for (const k of odd) {
            const guess = closest(k, kinds);
            diags.error('BH005', `unknown peer field ${q(k)}`, doc.locate([...path, k], true), guess ? `did you mean ${q(guess)}?` : PEER_HELP);
          }
        } else if (isPeer) diags.error('BH003', `expected a peer, found ${describe(value)}`, doc.locate(path), PEER_HELP);
        else if (isPort) diags.error('BH501', `expected a service entry, found ${describe(value)}`, doc.locate(path), 'write a service name, `443/tcp`, `8000-8100/tcp`, `8/icmp`, `any`, or a map with `proto` and `ports`');
        else diags.error('BH003', `unexpected ${describe(value)}${where}`, doc.locate(path));
        break;
      }
      default:
        diags.error('BH003', `${issue.message.charAt(0).toLowerCase()}${issue.message.slice(1)}${where}`, doc.locate(path));
    }
  }
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  innerType?: z.ZodType;
  in?: z.ZodType;
  options?: z.ZodType[];
}

function defOf(t: z.ZodType): Def {
  return (t as unknown as { _zod: { def: Def } })._zod.def;
}

/** The field names an object schema at `path` allows (Zod's issue does not carry them). */
function fieldsAt(schema: z.ZodType, path: readonly (string | number)[]): string[] {
  let t: z.ZodType | undefined = schema;
  let i = 0;
  while (t) {
    const d = defOf(t);
    if (d.type === 'optional' || d.type === 'default' || d.type === 'nullable' || d.type === 'prefault') t = d.innerType;
    else if (d.type === 'pipe') t = d.in;
    else if (d.type === 'union') t = d.options?.find((o) => ['object', 'array'].includes(defOf(o).type) && (i < path.length ? (typeof path[i] === 'number') === (defOf(o).type === 'array') : defOf(o).type === 'object'));
    else if (i === path.length) return d.type === 'object' && d.shape ? Object.keys(d.shape) : [];
    else if (d.type === 'object') t = d.shape?.[path[i++] as string];
    else if (d.type === 'array') {
      i++;
      t = d.element;
    } else return [];
  }
  return [];
}
