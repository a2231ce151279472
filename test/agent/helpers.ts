/**
 * Helpers of the agent tests: compiled rulesets per host from an inline
 * policy, waiting for a condition, looking into a test namespace, and the
 * root namespace's state (which no test may change).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { HostCompiler } from '../../src/compile/host.js';
import { compileNftables } from '../../src/compile/nftables.js';
import { labProblems } from '../../src/lab/index.js';
import type { Compiled } from '../../src/policy/index.js';
import { kernelSkip } from '../helpers/estate.js';

/** Why the namespace tests cannot run here, or false. */
export function agentKernelSkip(): string | false {
  const k = kernelSkip(['nft', 'ip', 'conntrack']);
  if (k) return k;
  const problems = labProblems();
  return problems.length > 0 ? `network-namespace lab unavailable: ${problems.join('; ')}` : false;
}

/** A run id for a lab of this test file (`bh-<run>-…` namespaces): a prefix and random hex, at most 12 characters. */
export function runId(prefix: string): string {
  return `${prefix}${randomBytes(3).toString('hex')}`.slice(0, 12);
}

/** The nftables ruleset of every managed workload of a compiled policy, by workload name. */
export function rulesets(c: Compiled): Map<string, string> {
  const hc = new HostCompiler(c.ir);
  const out = new Map<string, string>();
  c.ir.workloads.forEach((w, i) => {
    const h = hc.host(i);
    if (h) out.set(w.name, compileNftables(h).text);
  });
  return out;
}

/** Polls `f` every 100 ms until it returns a truthy value, or throws after `ms` with `what`. */
export async function waitFor<T>(what: string, f: () => T | Promise<T>, ms = 15_000): Promise<NonNullable<T>> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs a command inside a test namespace (`ip netns exec`). */
export function inNs(ns: string, cmd: string, ...args: string[]): { code: number; stdout: string; stderr: string } {
  if (!ns.startsWith('bh-')) throw new Error(`refusing to act in \`${ns}\`: tests only touch their own bh- namespaces`);
  const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8' });
  return { code: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** bulkhead's table in a test namespace, as nft lists it, or undefined. */
export function tableIn(ns: string): string | undefined {
  const r = inNs(ns, 'nft', 'list', 'table', 'inet', 'bulkhead');
  return r.code === 0 ? r.stdout : undefined;
}

/** The root namespace's links, routes and ruleset: read only, to check that tests leave them alone. */
export function rootState(): string {
  const read = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' }).stdout ?? '';
  return [read('ip', '-o', 'link', 'show'), read('ip', 'route', 'show'), read('ip', '-6', 'route', 'show'), read('nft', 'list', 'ruleset')].join('\n---\n').replace(/\s+link-netns \S+/g, '');
}
