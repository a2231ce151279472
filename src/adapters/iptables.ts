/**
 * Loading iptables + ipset rulesets, in the order src/compile/iptables.ts
 * documents: `ipset restore`, `iptables-restore --noflush` and
 * `ip6tables-restore --noflush` (which replace only bulkhead's chains), the
 * jumps from INPUT and OUTPUT (inserted once), then destroying bulkhead's sets
 * no rule uses any more. Stops at the first failure. Every call can target a
 * network namespace.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTwoFilesPatch } from 'diff';
import { IPTABLES_CHAINS, iptablesJumpCommands, staleIpsetCommands, type IptablesArtifact } from '../compile/iptables.js';
import { withScratchNetns, type ApplyResult } from './nft.js';

function run(argv: readonly string[], input: string | undefined, netns: string | undefined): { code: number; err: string; out: string } {
  const full = netns ? ['ip', 'netns', 'exec', netns, ...argv] : [...argv];
  const r = spawnSync(full[0], full.slice(1), { input, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.error) return { code: 127, err: `cannot run \`${argv[0]}\`: ${r.error.message}`, out: '' };
  return { code: r.status ?? 1, err: (r.stderr ?? '').trim(), out: r.stdout ?? '' };
}

/** The three restore files of an artifact: all that loading it needs. */
export type IptablesFiles = Pick<IptablesArtifact, 'ipset' | 'iptables' | 'ip6tables'>;

export type IptablesApplyResult = { readonly ok: true } | { readonly ok: false; readonly step: string; readonly error: string };

/** Applies an artifact (in `netns` when given). */
export function iptablesApply(a: IptablesFiles, options: { netns?: string } = {}): IptablesApplyResult {
  const { netns } = options;
  const steps: [string, readonly string[], string | undefined][] = [
    ['ipset restore', ['ipset', 'restore'], a.ipset],
    ['iptables-restore', ['iptables-restore', '-w', '--noflush'], a.iptables],
    ['ip6tables-restore', ['ip6tables-restore', '-w', '--noflush'], a.ip6tables],
  ];
  for (const [step, argv, input] of steps) {
    const r = run(argv, input, netns);
    if (r.code !== 0) return { ok: false, step, error: r.err || `exit ${r.code}` };
  }
  for (const j of iptablesJumpCommands()) {
    const c = run(j.check, undefined, netns);
    if (c.code === 0) continue;
    if (c.code !== 1) return { ok: false, step: `check ${j.chain} jump`, error: c.err };
    const i = run(j.insert, undefined, netns);
    if (i.code !== 0) return { ok: false, step: `insert ${j.chain} jump`, error: i.err };
  }
  const list = run(['ipset', 'list', '-n'], undefined, netns);
  if (list.code === 0) {
    for (const cmd of staleIpsetCommands(a, list.out.split('\n').filter((l) => l !== ''))) run(cmd, undefined, netns);
  }
  return { ok: true };
}

/** Checks an artifact by loading its sets and testing its restore files in a scratch namespace. */
export function iptablesCheck(a: IptablesArtifact): { ok: true } | { ok: false; error: string } {
  return withScratchNetns((netns) => {
    for (const [argv, input] of [
      [['ipset', 'restore'], a.ipset],
      [['iptables-restore', '--noflush', '--test'], a.iptables],
      [['ip6tables-restore', '--noflush', '--test'], a.ip6tables],
    ] as const) {
      const r = run(argv, input, netns);
      if (r.code !== 0) return { ok: false as const, error: `${argv[0]}: ${r.err}` };
    }
    return { ok: true as const };
  });
}

const OUR_CHAINS: readonly string[] = Object.values(IPTABLES_CHAINS);
const OUR_CHAIN_RE = /^(?::BH-(?:INPUT|OUTPUT|INGRESS|EGRESS) |-A BH-(?:INPUT|OUTPUT|INGRESS|EGRESS) |-A (?:INPUT|OUTPUT) -j BH-(?:INPUT|OUTPUT)$)/;

function ourSetRe(prefix = 'bh'): RegExp {
  return new RegExp(`^${prefix.replace(/[.]/g, '\\.')}-[0-9a-f]{16}-[46]$`);
}

/**
 * What of bulkhead's is loaded, as text to compare: its chains, their rules
 * and the jumps to them (`iptables-save` and `ip6tables-save`, counters
 * dropped), and its sets with their members, sorted (`ipset save`).
 * Nothing of anyone else's is read into it.
 */
export function iptablesState(options: { netns?: string } = {}): string {
  const out: string[] = [];
  for (const [family, bin] of [['ip', 'iptables-save'], ['ip6', 'ip6tables-save']] as const) {
    const r = run([bin, '-t', 'filter'], undefined, options.netns);
    if (r.code !== 0) throw new Error(`${bin}: ${r.err || `exit ${r.code}`}`);
    for (const line of r.out.split('\n')) {
      if (OUR_CHAIN_RE.test(line)) out.push(`${family} ${line.replace(/ \[\d+:\d+\]$/, '')}`);
    }
  }
  const saved = run(['ipset', 'save'], undefined, options.netns);
  if (saved.code !== 0) throw new Error(`ipset save: ${saved.err || `exit ${saved.code}`}`);
  const ours = ourSetRe();
  const sets = new Map<string, { create: string; members: string[] }>();
  for (const line of saved.out.split('\n')) {
    const m = /^(create|add) (\S+) (.*)$/.exec(line);
    if (!m || !ours.test(m[2])) continue;
    let s = sets.get(m[2]);
    if (!s) sets.set(m[2], (s = { create: '', members: [] }));
    // The hash seed differs at every creation: it is no difference.
    if (m[1] === 'create') s.create = line.replace(/ initval 0x[0-9a-f]+/, '');
    else s.members.push(m[3]);
  }
  for (const name of [...sets.keys()].sort()) {
    const s = sets.get(name)!;
    out.push(s.create, ...s.members.sort().map((x) => `add ${name} ${x}`));
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

/**
 * A dry run: the unified diff between bulkhead's loaded chains and sets and
 * what `a` would make of them (loaded in a scratch namespace to read them the
 * way the kernel gives them back). Empty when nothing would change.
 */
export function iptablesDiff(a: IptablesFiles, options: { netns?: string } = {}): string {
  const current = iptablesState(options);
  const next = withScratchNetns((netns) => {
    const r = iptablesApply(a, { netns });
    if (!r.ok) throw new Error(`the new rules do not load: ${r.step}: ${r.error}`);
    return iptablesState({ netns });
  });
  if (current === next) return '';
  return createTwoFilesPatch('loaded', 'new', current, next, undefined, undefined, { context: 3 });
}

/**
 * Removes everything of bulkhead's: the jumps from INPUT and OUTPUT, its
 * chains and its sets, in both families. What is not there is skipped.
 */
export function iptablesRemove(options: { netns?: string } = {}): IptablesApplyResult {
  for (const j of iptablesJumpCommands()) {
    // -D removes one jump a call; a jump inserted twice by hand goes too.
    for (let n = 0; n < 16 && run(j.check, undefined, options.netns).code === 0; n++) {
      const d = run([j.check[0], '-w', '-t', 'filter', '-D', j.chain, '-j', j.target], undefined, options.netns);
      if (d.code !== 0) return { ok: false, step: `delete ${j.chain} jump`, error: d.err };
    }
  }
  for (const bin of ['iptables', 'ip6tables']) {
    // Flush all first: a chain still jumped to by another of ours cannot be deleted.
    for (const verb of ['-F', '-X']) {
      for (const chain of OUR_CHAINS) {
        const r = run([bin, '-w', '-t', 'filter', verb, chain], undefined, options.netns);
        if (r.code !== 0 && !/No chain|does not exist/i.test(r.err)) return { ok: false, step: `${bin} ${verb} ${chain}`, error: r.err };
      }
    }
  }
  const list = run(['ipset', 'list', '-n'], undefined, options.netns);
  if (list.code === 0) {
    const ours = ourSetRe();
    for (const name of list.out.split('\n').filter((n) => ours.test(n))) run(['ipset', 'destroy', name], undefined, options.netns);
  }
  return { ok: true };
}

const LAST_GOOD_PARTS = ['ipset', 'iptables', 'ip6tables'] as const;

/** The last known good artifact kept in `stateDir`, if any. */
export function iptablesLastKnownGood(stateDir: string): IptablesFiles | undefined {
  const files = LAST_GOOD_PARTS.map((p) => join(stateDir, `last-good.${p}`));
  if (!files.every((f) => existsSync(f))) return undefined;
  const [ipset, iptables, ip6tables] = files.map((f) => readFileSync(f, 'utf8'));
  return { ipset, iptables, ip6tables };
}

/**
 * Applies an artifact with a way back. iptables has no transaction across
 * `ipset restore`, `iptables-restore` and `ip6tables-restore`, so when a step
 * fails, or `verify` (default: bulkhead's chains and jumps are all there)
 * says no afterwards, the last known good artifact in `stateDir` is applied
 * again, or, with none, bulkhead's chains, jumps and sets are removed: the
 * host is left as it was before bulkhead, never half way. An artifact that
 * applies and verifies becomes the new last known good.
 */
export function iptablesApplySafely(a: IptablesFiles, options: { netns?: string; stateDir: string; verify?: () => boolean }): ApplyResult {
  mkdirSync(options.stateDir, { recursive: true });
  const before = iptablesState(options);
  const r = iptablesApply(a, options);
  let why = r.ok ? '' : `${r.step} failed: ${r.error}`;
  if (r.ok) {
    try {
      if (!(options.verify ? options.verify() : chainsPresent(options.netns))) why = 'verification failed';
    } catch (e) {
      why = `verification failed: ${(e as Error).message}`;
    }
  }
  if (why !== '') {
    const good = iptablesLastKnownGood(options.stateDir);
    const back = good ? iptablesApply(good, options) : iptablesRemove(options);
    const how = good ? 'rolled back to the last known good rules' : 'no last known good rules: removed bulkhead\'s chains and sets';
    return { ok: false, error: `${why}; ${back.ok ? how : `roll back failed too: ${back.step}: ${back.error}`}`, rolledBack: back.ok };
  }
  for (const p of LAST_GOOD_PARTS) {
    const f = join(options.stateDir, `last-good.${p}`);
    writeFileSync(`${f}.tmp`, a[p]);
    renameSync(`${f}.tmp`, f);
  }
  return { ok: true, changed: iptablesState(options) !== before };
}

/** Whether bulkhead's four chains and its two jumps are loaded, in both families. */
function chainsPresent(netns: string | undefined): boolean {
  for (const bin of ['iptables', 'ip6tables']) {
    for (const chain of OUR_CHAINS) if (run([bin, '-w', '-t', 'filter', '-S', chain], undefined, netns).code !== 0) return false;
  }
  return iptablesJumpCommands().every((j) => run(j.check, undefined, netns).code === 0);
}
