/**
 * Kubernetes manifests as text to plain objects: multi-document YAML, JSON,
 * and list wrappers (`kind: List`, and typed lists such as `PodList` whose
 * items leave out `kind`). Pure: the caller hands in the file texts.
 */
import { Diagnostics, type Loc } from '../model/diagnostic.js';
import { parseYamlFile, type Path, type SourceFile } from '../policy/source.js';

/** One Kubernetes object read from a manifest, with a way to locate any path inside it. */
export interface ManifestObject {
  /** The object's kind; for list items without one, the list's kind less `List`. */
  readonly kind: string;
  readonly apiVersion: string;
  readonly data: Readonly<Record<string, unknown>>;
  /** The file it came from. */
  readonly file: string;
  /** Where the value at `path` (relative to this object) is. */
  locate(path?: Path): Loc;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads every object in the files, in the order given (sort the files first
 * for a stable result). YAML syntax errors are reported as BH001 and skip
 * their document; documents that are empty or only comments are skipped;
 * anything that is not an object with a `kind` is reported (BH003).
 */
export function readManifests(files: readonly SourceFile[], diags: Diagnostics = new Diagnostics()): ManifestObject[] {
  const out: ManifestObject[] = [];
  for (const f of files) {
    for (const doc of parseYamlFile(f, diags)) {
      const visit = (value: unknown, path: Path, inheritedKind: string | undefined) => {
        if (value === null || value === undefined) return;
        if (Array.isArray(value)) {
          value.forEach((v, i) => visit(v, [...path, i], inheritedKind));
          return;
        }
        if (!isRecord(value)) {
          diags.error('BH003', 'a manifest document must be a Kubernetes object (a map with `kind`)', doc.locate(path));
          return;
        }
        const kind = typeof value.kind === 'string' && value.kind !== '' ? value.kind : inheritedKind;
        if (kind === undefined) {
          diags.error('BH004', 'a Kubernetes object needs `kind`', doc.locate(path), 'write the object kind, such as `kind: Pod`');
          return;
        }
        if (kind.endsWith('List') && Array.isArray(value.items)) {
          const itemKind = kind === 'List' ? undefined : kind.slice(0, -'List'.length);
          value.items.forEach((v, i) => visit(v, [...path, 'items', i], itemKind));
          return;
        }
        const base = path;
        out.push({
          kind,
          apiVersion: typeof value.apiVersion === 'string' ? value.apiVersion : '',
          data: value,
          file: doc.file,
          locate: (p: Path = []) => doc.locate([...base, ...p]),
        });
      };
      visit(doc.data, [], undefined);
    }
  }
  return out;
}
