/**
 * Loading rulesets into one lab host's namespace: nftables text through
 * `nft -f -` (one atomic transaction), or an ipset + iptables + ip6tables
 * artifact through their restore programs. Only the host's own namespace is
 * touched (`ip netns exec <ns> …`).
 */
import { labHost, type Lab } from './lab.js';
import { LabError, labProblems, labTools, mustRun, run } from './sys.js';

/** A ruleset for one host, as the compilers emit it. */
export type LabArtifact =
  | { kind: 'nftables'; text: string }
  | { kind: 'iptables'; ipset: string; iptables: string; ip6tables: string };

/** Options of {@link labLoad}. */
export interface LabLoadOptions {
  /**
   * Replace whatever the host had loaded (default true): nftables text is
   * loaded after `flush ruleset` in the same transaction; an iptables artifact
   * after the host's ruleset and ipsets are flushed. With false the artifact
   * is added to what is there.
   */
  replace?: boolean;
  /**
   * Forget the host's tracked connections afterwards (default true), so a
   * flow seen before the load cannot pass as `established` under the new
   * ruleset. Needs `conntrack`; skipped when it is not installed.
   */
  flushConntrack?: boolean;
}

const TIMEOUT_MS = 60_000;

/**
 * Loads a ruleset inside one host's namespace. A rejected ruleset throws a
 * {@link LabError} whose message carries the tool's own error (nft's
 * `Error: … ^^^` lines); nftables text is all or nothing.
 */
export async function labLoad(lab: Lab, host: string, artifact: LabArtifact, options: LabLoadOptions = {}): Promise<void> {
  const h = labHost(lab, host);
  const tools = labTools();
  const replace = options.replace ?? true;
  const exec = (tool: string, ...args: string[]) => ['netns', 'exec', h.ns, tool, ...args];
  if (artifact.kind === 'nftables') {
    if (!tools.nft) throw new LabError('`nft` not found: apt-get install nftables');
    // On the same line as the ruleset's first line, so nft's line numbers stay true.
    const text = replace ? `flush ruleset; ${artifact.text}` : artifact.text;
    await mustRun(`loading the nftables ruleset into ${host} (${h.ns})`, tools.ip, exec(tools.nft, '-f', '-'), { input: text, timeoutMs: TIMEOUT_MS });
  } else if (artifact.kind === 'iptables') {
    const problems = labProblems({ needIptables: true });
    if (problems.length > 0) throw new LabError(`cannot load an iptables artifact:\n  - ${problems.join('\n  - ')}`);
    if (replace) await flush(tools.ip, tools.nft, tools.ipset, h.ns, host);
    if (artifact.ipset.trim() !== '') await mustRun(`ipset restore in ${host} (${h.ns})`, tools.ip, exec(tools.ipset!, 'restore', '-exist'), { input: artifact.ipset, timeoutMs: TIMEOUT_MS });
    if (artifact.iptables.trim() !== '') await mustRun(`iptables-restore in ${host} (${h.ns})`, tools.ip, exec(tools.iptablesRestore!), { input: artifact.iptables, timeoutMs: TIMEOUT_MS });
    if (artifact.ip6tables.trim() !== '') await mustRun(`ip6tables-restore in ${host} (${h.ns})`, tools.ip, exec(tools.ip6tablesRestore!), { input: artifact.ip6tables, timeoutMs: TIMEOUT_MS });
  } else {
    throw new LabError(`unknown artifact kind \`${(artifact as { kind: string }).kind}\``);
  }
  if ((options.flushConntrack ?? true) && tools.conntrack) await flushConntrack(tools.ip, tools.conntrack, h.ns);
}

/**
 * Removes every ruleset and ipset from one host's namespace (nftables, and
 * iptables on its nf_tables backend) and forgets its tracked connections.
 */
export async function labFlush(lab: Lab, host: string): Promise<void> {
  const h = labHost(lab, host);
  const tools = labTools();
  await flush(tools.ip, tools.nft, tools.ipset, h.ns, host);
  if (tools.conntrack) await flushConntrack(tools.ip, tools.conntrack, h.ns);
}

async function flush(ip: string, nft: string | undefined, ipset: string | undefined, ns: string, host: string): Promise<void> {
  // Rules first: a set still referenced by a rule cannot be destroyed.
  if (nft) await mustRun(`flushing the ruleset of ${host} (${ns})`, ip, ['netns', 'exec', ns, nft, 'flush', 'ruleset'], { timeoutMs: TIMEOUT_MS });
  if (ipset) await mustRun(`destroying the ipsets of ${host} (${ns})`, ip, ['netns', 'exec', ns, ipset, 'destroy'], { timeoutMs: TIMEOUT_MS });
}

async function flushConntrack(ip: string, conntrack: string, ns: string): Promise<void> {
  // Fails harmlessly when connection tracking was never used in the namespace.
  await run(ip, ['netns', 'exec', ns, conntrack, '-F'], { timeoutMs: TIMEOUT_MS });
}
