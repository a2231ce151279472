/** The bundled sample estate, compiled once per test file. */
import { existsSync } from 'node:fs';
import { readPolicyDir } from '../../src/adapters/policy-dir.js';
import { compilePolicy, type Compiled } from '../../src/policy/index.js';
import { HostCompiler, type HostPolicy } from '../../src/compile/host.js';

export const ESTATE_DIR = 'examples/estate/policy';
export const ESTATE_NOW = new Date('2026-11-23T00:00:00Z');

let cached: Compiled | undefined;

export function sampleEstate(): Compiled {
  if (!cached) {
    const read = readPolicyDir(ESTATE_DIR);
    cached = compilePolicy(read.sources, { now: ESTATE_NOW, diagnostics: read.diagnostics });
  }
  return cached;
}

/** Whether tests that need root and nft can run here, and why not. */
export function kernelSkip(tools: string[] = ['nft', 'ip']): string | false {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  for (const t of tools) {
    const found = (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').some((d) => existsSync(`${d}/${t}`));
    if (!found) return `needs \`${t}\` installed`;
  }
  return false;
}

/** The host view of a managed workload of the sample estate, by name. */
export function sampleHost(name: string): HostPolicy {
  const c = sampleEstate();
  const i = c.ir.workloads.findIndex((w) => w.name === name);
  const h = i < 0 ? undefined : new HostCompiler(c.ir).host(i);
  if (!h) throw new Error(`\`${name}\` is no managed workload of the sample estate`);
  return h;
}
