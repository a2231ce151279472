/** Test helpers: policies from inline YAML, flows from names. */
import { Diagnostics } from '../../src/model/diagnostic.js';
import { compilePolicy, type Compiled } from '../../src/policy/index.js';
import { parseYamlFile } from '../../src/policy/source.js';
import { parseConnection, resolveEnd } from '../../src/cli/eval.js';
import type { Flow } from '../../src/engine/evaluate.js';

/** Compiles a policy written inline as YAML text. */
export function policyFromYaml(text: string, opts: { file?: string; now?: Date } = {}): Compiled {
  const diags = new Diagnostics();
  const docs = parseYamlFile({ path: opts.file ?? 'inline.yaml', text }, diags);
  return compilePolicy({ docs }, { now: opts.now, diagnostics: diags });
}

/** A flow from workload names or addresses and `5432/tcp`. */
export function flowOf(c: Compiled, from: string, to: string, port: string): Flow {
  return { src: resolveEnd(from, c.policy, 'from'), dst: resolveEnd(to, c.policy, 'to'), ...parseConnection(port) };
}
