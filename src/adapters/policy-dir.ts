/**
 * Reads a policy directory from disk: every `*.yaml` / `*.yml` under it (sorted
 * by path, so the order is the same on every machine) and the inventory files
 * those documents name. The pure loader does the rest.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Diagnostics } from '../model/diagnostic.js';
import { inventoryRefs, type PolicySources } from '../policy/load.js';
import { parseYamlFile, type SourceFile } from '../policy/source.js';

/** A policy directory read from disk, with the text of every file for rendering diagnostics. */
export interface ReadPolicy {
  readonly sources: PolicySources;
  /** Diagnostics from reading and YAML parsing. */
  readonly diagnostics: Diagnostics;
  /** File texts by the path diagnostics print. */
  readonly texts: Map<string, string>;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.') || name === 'node_modules') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (/\.ya?ml$/i.test(name)) out.push(p);
  }
  return out;
}

/**
 * Reads `path` (a directory, or a single YAML file). Paths in diagnostics are
 * relative to the working directory when the policy lies under it.
 */
export function readPolicyDir(path: string, cwd = process.cwd()): ReadPolicy {
  const diagnostics = new Diagnostics();
  const texts = new Map<string, string>();
  const show = (p: string) => {
    const r = relative(cwd, p);
    return r.startsWith('..') ? p : r;
  };
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new Error(`cannot read policy \`${path}\`: no such file or directory`);
  }
  const files = st.isDirectory() ? walk(path) : [path];
  const docs = [];
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    const file: SourceFile = { path: show(f), text };
    texts.set(file.path, text);
    docs.push(...parseYamlFile(file, diagnostics));
  }
  const inventory = new Map<string, SourceFile | { error: string }>();
  for (const ref of inventoryRefs(docs)) {
    if (inventory.has(ref.path)) continue;
    try {
      const text = readFileSync(ref.path, 'utf8');
      texts.set(ref.path, text);
      inventory.set(ref.path, { path: ref.path, text });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') inventory.set(ref.path, { error: code === 'EISDIR' ? 'it is a directory' : String((e as Error).message) });
    }
  }
  return { sources: { docs, files: inventory }, diagnostics, texts };
}
