/**
 * Helpers of the agent tests: compiled rulesets per host from an inline
 * policy, waiting for a condition, looking into a test namespace, and the
 * root namespace's state (which no test may change).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { HostCompiler } from '../../src/compile/host.js';
import { compileNftables } from '../../src/compile/nftables.js';
import { labHost, labProblems, type Lab } from '../../src/lab/index.js';
import { startServer } from '../../src/server/index.js';
import { api } from '../server/helpers.js';
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

/** A process started inside a lab host's namespace, the tail of its output kept. */
export interface LabProc {
  child: ChildProcess;
  out: string;
}

/** Starts `node --import tsx <args>` inside a lab host's namespace (the server, or an agent, as on a real host). */
export function labProcess(lab: Lab, host: string, args: string[], keepChars = 60_000): LabProc {
  const child = spawn('ip', ['netns', 'exec', labHost(lab, host).ns, process.execPath, '--import', 'tsx', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p: LabProc = { child, out: '' };
  const keep = (b: Buffer) => void (p.out = (p.out + b.toString('utf8')).slice(-keepChars));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return p;
}

/** Stops a lab process with SIGTERM and waits for it to exit. */
export async function stopProcess(p: LabProc | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null) return;
  p.child.kill('SIGTERM');
  await new Promise((res) => p.child.once('exit', res));
}

/**
 * Makes a server state file with a policy version and one agent token per
 * workload (written to `<dir>/token-<workload>`, mode 0600), through the API of
 * a server started on 127.0.0.1 for the purpose and closed again.
 */
export async function seedServerState(o: { state: string; store: string; doc: unknown; workloads: readonly string[]; dir: string }): Promise<void> {
  const seed = await startServer({ state: o.state, host: '127.0.0.1', port: 0, store: o.store });
  try {
    const admin = (m: string, p: string, b?: unknown) => api(seed.url, seed.adminToken, m, p, b);
    assert.equal((await admin('PUT', '/api/v1/draft', o.doc)).status, 200);
    assert.equal((await admin('POST', '/api/v1/versions', { message: 'v1' })).status, 201);
    for (const w of o.workloads) {
      const a = await admin('POST', '/api/v1/agents', { workload: w });
      assert.equal(a.status, 201);
      writeFileSync(join(o.dir, `token-${w}`), `${a.body.token as string}\n`, { mode: 0o600 });
    }
  } finally {
    await seed.close();
  }
}
