/**
 * Source documents: YAML (and JSON, read by the same YAML parser) text turned
 * into plain data plus a way back from any path in that data to its file,
 * line and column. Pure: callers hand in the text.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, type Document, type Node as YamlNode } from 'yaml';
import type { Diagnostics, Loc } from '../model/diagnostic.js';

/** One file's text as read by an adapter. `path` is what diagnostics print. */
export interface SourceFile {
  readonly path: string;
  readonly text: string;
}

export type Path = readonly (string | number)[];

/**
 * One parsed document: its data and how to locate a path in it. Documents
 * made in memory (a generator, an API request) have no text: `locate` then
 * returns the file name alone, line 0.
 */
export interface SourceDoc {
  readonly file: string;
  readonly data: unknown;
  /** Where the value (or with `key`, the key) at `path` is; the nearest existing ancestor if the path goes further. */
  locate(path: Path, key?: boolean): Loc;
}

/** A document made in memory, with no positions. */
export function memoryDoc(file: string, data: unknown): SourceDoc {
  return { file, data, locate: () => ({ file, line: 0, col: 0 }) };
}

/** Parses every YAML document in a file, reporting syntax errors as BH001 and skipping broken documents. */
export function parseYamlFile(src: SourceFile, diags: Diagnostics): SourceDoc[] {
  const lc = new LineCounter();
  const docs = parseAllDocuments(src.text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const out: SourceDoc[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  for (const doc of list as Document[]) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const p = lc.linePos(e.pos[0]);
        diags.error('BH001', yamlMessage(e.message), { file: src.path, line: p.line, col: p.col }, 'fix the YAML syntax; the rest of this document was skipped');
      }
      continue;
    }
    if (doc.contents === null) continue; // an empty document
    const data = doc.toJS({ maxAliasCount: 1000 });
    out.push({
      file: src.path,
      data,
      locate(path, key = false) {
        const { node, keyNode } = walk(doc, path);
        const target = key && keyNode ? keyNode : node;
        const range = target?.range ?? doc.contents?.range ?? [0, 0, 0];
        const start = lc.linePos(range[0]);
        const end = lc.linePos(range[1]);
        return { file: src.path, line: start.line, col: start.col, endCol: end.line === start.line && range[1] > range[0] ? end.col : undefined };
      },
    });
  }
  return out;
}

function yamlMessage(m: string): string {
  const first = m.split('\n')[0].replace(/ at line \d+, column \d+.*$/, '').replace(/\.$/, '');
  return first.charAt(0).toLowerCase() + first.slice(1);
}

function walk(doc: Document, path: Path): { node: YamlNode | null; keyNode: YamlNode | null } {
  let node = doc.contents as YamlNode | null;
  let keyNode: YamlNode | null = null;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg));
      if (!pair) return { node, keyNode: null };
      keyNode = (pair.key as YamlNode) ?? null;
      node = (pair.value as YamlNode) ?? keyNode;
    } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
      keyNode = null;
      node = node.items[seg] as YamlNode;
    } else {
      return { node, keyNode: null };
    }
  }
  return { node, keyNode };
}

/** Offsets a location inside a quoted or plain scalar by `offset` characters (for errors inside selector strings). */
export function within(loc: Loc, text: string | undefined, offset: number, length = 1): Loc {
  if (loc.line === 0) return loc;
  // A quoted scalar starts one character before its content.
  const quote = text !== undefined && loc.endCol !== undefined && loc.endCol - loc.col === text.length + 2 ? 1 : 0;
  const col = loc.col + quote + offset;
  return { file: loc.file, line: loc.line, col, endCol: col + Math.max(1, length) };
}
