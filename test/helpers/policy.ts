/** Test helpers: policies from inline YAML, flows from names. */
import { Diagnostics } from '../../src/model/diagnostic.js';
import { compilePolicy, type Compiled } from '../../src/policy/index.js';
import { memoryDoc, parseYamlFile } from '../../src/policy/source.js';
import { PROTOCOLS } from '../../src/netset/connset.js';
import { parseAddr } from '../../src/netset/ip.js';
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

/** Compiles a generated estate document (no files, no positions). */
export function policyFromDoc(doc: unknown, now = new Date('2026-11-23T00:00:00Z')): Compiled {
  return compilePolicy({ docs: [memoryDoc('generated', doc)] }, { now });
}

/** A generated flow as the evaluator takes it. */
export function flowFromGenerated(f: { src: string; dst: string; proto: string; port: number; code?: number }): Flow {
  const proto = (PROTOCOLS as Record<string, number>)[f.proto];
  const icmp = f.proto === 'icmp' || f.proto === 'icmpv6';
  return { src: parseAddr(f.src)!, dst: parseAddr(f.dst)!, proto, port: icmp ? f.port * 256 + (f.code ?? 0) : f.port };
}
