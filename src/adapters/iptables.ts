/**
 * Loading iptables + ipset rulesets, in the order src/compile/iptables.ts
 * documents: `ipset restore`, `iptables-restore --noflush` and
 * `ip6tables-restore --noflush` (which replace only bulkhead's chains), the
 * jumps from INPUT and OUTPUT (inserted once), then destroying bulkhead's sets
 * no rule uses any more. Stops at the first failure. Every call can target a
 * network namespace.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTwoFilesPatch } from 'diff';
import { IPTABLES_CHAINS, iptablesJumpCommands, staleIpsetCommands, type IptablesFiles } from '../compile/iptables.js';
import { formatPrefix, parsePrefix } from '../netset/ip.js';
import { withScratchNetns, type ApplyResult } from './nft.js';

function run(argv: readonly string[], input: string | undefined, netns: string | undefined): { code: number; err: string; out: string } {
  const full = netns ? ['ip', 'netns', 'exec', netns, ...argv] : [...argv];
  const r = spawnSync(full[0], full.slice(1), { input, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.error) return { code: 127, err: `cannot run \`${argv[0]}\`: ${r.error.message}`, out: '' };
  return { code: r.status ?? 1, err: (r.stderr ?? '').trim(), out: r.stdout ?? '' };
}

export type IptablesApplyResult = { readonly ok: true } | { readonly ok: false; readonly step: string; readonly error: string };

/** Applies an artifact (in `netns` when given). */
export function iptablesApply(a: IptablesFiles, options: { netns?: string; live?: LiveSets } = {}): IptablesApplyResult {
  const { netns } = options;
  const steps: [string, readonly string[], string | undefined][] = [
    ['ipset restore', ['ipset', 'restore'], a.ipset],
    ['iptables-restore', ['iptables-restore', '-w', '--noflush'], a.iptables],
    ['ip6tables-restore', ['ip6tables-restore', '-w', '--noflush'], a.ip6tables],
  ];
  // Sets of bulkhead's name that are there already but not as the artifact has them are rebuilt first: `create -exist`
  // fails on other parameters, and `add -exist` never takes a member out.
  const synced = syncSets(a, netns, options.live);
  if (!synced.ok) return synced;
  for (const [step, argv, input] of steps) {
    const r = run(argv, input, netns);
    if (r.code !== 0) return { ok: false, step, error: r.err || `exit ${r.code}` };
  }
  const jumps = ensureJumpsFirst(netns);
  if (!jumps.ok) return jumps;
  const list = run(['ipset', 'list', '-n'], undefined, netns);
  if (list.code === 0) {
    const names = list.out.split('\n').filter((l) => l !== '');
    for (const cmd of staleIpsetCommands(a, names)) run(cmd, undefined, netns);
    // What a rebuild cut short (a crash between its steps) left behind.
    for (const n of names.filter((x) => TMP_SET_RE.test(x))) run(['ipset', 'destroy', n], undefined, netns);
  }
  return { ok: true };
}

/** bulkhead's sets by name: create line and members. */
type LiveSets = Map<string, { create: string; members: string[] }>;

/** bulkhead's sets as loaded (`ipset save`), or why they cannot be read. */
function liveSets(netns: string | undefined): LiveSets | { error: string } {
  const saved = run(['ipset', 'save'], undefined, netns);
  return saved.code === 0 ? setsIn(saved.out) : { error: saved.err || `exit ${saved.code}` };
}

/** The sets an ipset restore file (or `ipset save` output) has, bulkhead's only: create line and members. */
function setsIn(text: string): LiveSets {
  const sets = new Map<string, { create: string; members: string[] }>();
  for (const line of text.split('\n')) {
    const m = /^(create|add) (\S+) (.*?)(?: -exist)?$/.exec(line);
    if (!m || !OUR_SET_RE.test(m[2])) continue;
    let s = sets.get(m[2]);
    if (!s) sets.set(m[2], (s = { create: '', members: [] }));
    if (m[1] === 'create') s.create = line;
    else s.members.push(m[3]);
  }
  return sets;
}

/** A set member in one spelling, whichever way ipset or the compiler wrote it (`::1.2.3.4` and `::102:304`, a /32 or none). */
function memberKey(m: string): string {
  const r = parsePrefix(m);
  return 'error' in r ? m : formatPrefix(r.prefix);
}

/** A set's create line without what `ipset save` adds (bucket size, hash seed) or restore takes (-exist). */
function createKey(line: string): string {
  return line.replace(/ (?:initval 0x[0-9a-f]+|bucketsize \d+|-exist)/g, '');
}

/**
 * Makes each set of the artifact that is loaded already hold exactly its
 * members, with its parameters. `ipset restore` with `add -exist` only adds:
 * a member someone else added to a live set of bulkhead's would stay, and
 * widen every rule that names the set; a set made with other parameters makes
 * `create -exist` fail. Such a set is rebuilt under a temporary name and
 * swapped in (`ipset swap` is atomic for the rules naming it). Sets not
 * loaded yet are left to `ipset restore`.
 */
function syncSets(a: IptablesFiles, netns: string | undefined, known?: LiveSets): IptablesApplyResult {
  const want = setsIn(a.ipset);
  if (want.size === 0) return { ok: true };
  let live = known;
  if (!live) {
    const read = liveSets(netns);
    if ('error' in read) return { ok: false, step: 'ipset save', error: read.error };
    live = read;
  }
  for (const [name, w] of want) {
    const l = live.get(name);
    const key = (xs: string[]) => xs.map(memberKey).sort().join(',');
    if (!l || (key(l.members) === key(w.members) && createKey(l.create) === createKey(w.create))) continue;
    const tmp = `bh-tmp-${randomBytes(6).toString('hex')}`;
    const text = [w.create.replace(` ${name} `, ` ${tmp} `), ...w.members.map((m) => `add ${tmp} ${m} -exist`)].join('\n') + '\n';
    const fail = (step: string, r: { code: number; err: string }): IptablesApplyResult => {
      run(['ipset', 'destroy', tmp], undefined, netns);
      return { ok: false, step, error: r.err || `exit ${r.code}` };
    };
    const built = run(['ipset', 'restore'], text, netns);
    if (built.code !== 0) return fail(`rebuild set ${name}`, built);
    const swapped = run(['ipset', 'swap', tmp, name], undefined, netns);
    if (swapped.code === 0) {
      run(['ipset', 'destroy', tmp], undefined, netns);
      continue;
    }
    // Another type (someone's set under bulkhead's name) cannot be swapped: replaced, if no rule names it.
    const gone = run(['ipset', 'destroy', name], undefined, netns);
    if (gone.code !== 0) return fail(`replace set ${name}`, { code: gone.code, err: `${swapped.err}; and it cannot be destroyed: ${gone.err}` });
    const renamed = run(['ipset', 'rename', tmp, name], undefined, netns);
    if (renamed.code !== 0) return fail(`rename ${tmp} to ${name}`, renamed);
  }
  return { ok: true };
}

/** The positions (1-based, among the chain's rules) of the rules `-A <chain> -j <target>`, from `-S <chain>`. */
function jumpPositions(bin: string, chain: string, target: string, netns: string | undefined): number[] | { error: string } {
  const r = run([bin, '-w', '-t', 'filter', '-S', chain], undefined, netns);
  if (r.code !== 0) return { error: r.err || `exit ${r.code}` };
  const rules = r.out.split('\n').filter((l) => l.startsWith(`-A ${chain} `));
  return rules.flatMap((l, i) => (l === `-A ${chain} -j ${target}` ? [i + 1] : []));
}

/**
 * Makes INPUT jump to BH-INPUT and OUTPUT to BH-OUTPUT as their first rule,
 * exactly once, in both families. A jump that a rule of the host's own has
 * come before (so that rule's ACCEPT would bypass the policy) is moved back to
 * the front: the new one is inserted first, then the old one deleted, so the
 * chain is never without it.
 */
function ensureJumpsFirst(netns: string | undefined): IptablesApplyResult {
  for (const j of iptablesJumpCommands()) {
    const bin = j.check[0];
    const at = jumpPositions(bin, j.chain, j.target, netns);
    if (!Array.isArray(at)) return { ok: false, step: `list ${j.chain}`, error: at.error };
    if (at.length === 1 && at[0] === 1) continue;
    if (at[0] !== 1) {
      const i = run(j.insert, undefined, netns);
      if (i.code !== 0) return { ok: false, step: `insert ${j.chain} jump`, error: i.err };
    }
    const now = jumpPositions(bin, j.chain, j.target, netns);
    if (!Array.isArray(now)) return { ok: false, step: `list ${j.chain}`, error: now.error };
    // The extra ones, from the last, so the numbers of the others stay true.
    for (const n of now.slice(1).reverse()) {
      const d = run([bin, '-w', '-t', 'filter', '-D', j.chain, String(n)], undefined, netns);
      if (d.code !== 0) return { ok: false, step: `delete ${j.chain} rule ${n}`, error: d.err };
    }
  }
  return { ok: true };
}

/** Checks an artifact by loading its sets and testing its restore files in a scratch namespace. */
export function iptablesCheck(a: IptablesFiles): { ok: true } | { ok: false; error: string } {
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
const OUR_CHAIN_RE = /^(?::BH-(?:INPUT|OUTPUT|INGRESS|EGRESS) |-A BH-(?:INPUT|OUTPUT|INGRESS|EGRESS) )/;
const OUR_SET_RE = /^bh-[0-9a-f]{16}-[46]$/;
const TMP_SET_RE = /^bh-tmp-[0-9a-f]{12}$/;

/** bulkhead's chains, jumps and sets as loaded: to compare (`state`), to load again (`files`, undefined when there are none), and the sets as read. */
interface Snapshot {
  readonly state: string;
  readonly files: IptablesFiles | undefined;
  readonly sets: LiveSets;
}

/**
 * Reads what of bulkhead's is loaded, and nothing of anyone else's: its
 * chains and their rules (`iptables-save` and `ip6tables-save`), the jumps to
 * them with their places in INPUT and OUTPUT, and its sets with their members
 * (`ipset save`). Throws when a tool fails.
 */
function snapshot(netns: string | undefined): Snapshot {
  const state: string[] = [];
  const restore = { 4: [] as string[], 6: [] as string[] };
  for (const [f, family, bin] of [[4, 'ip', 'iptables-save'], [6, 'ip6', 'ip6tables-save']] as const) {
    const r = run([bin, '-t', 'filter'], undefined, netns);
    if (r.code !== 0) throw new Error(`${bin}: ${r.err || `exit ${r.code}`}`);
    const place = { INPUT: 0, OUTPUT: 0 };
    for (const line of r.out.split('\n')) {
      const builtin = /^-A (INPUT|OUTPUT) /.exec(line);
      if (builtin) {
        const chain = builtin[1] as 'INPUT' | 'OUTPUT';
        place[chain]++;
        if (line === `-A ${chain} -j BH-${chain}`) state.push(`${family} ${line} (rule ${place[chain]} of ${chain})`);
        continue;
      }
      if (!OUR_CHAIN_RE.test(line)) continue;
      const bare = line.replace(/ \[\d+:\d+\]$/, '');
      state.push(`${family} ${bare}`);
      restore[f].push(line.startsWith(':') ? `${bare} [0:0]` : line);
    }
  }
  const sets = liveSets(netns);
  if ('error' in sets) throw new Error(`ipset save: ${sets.error}`);
  const ipset: string[] = [];
  for (const name of [...sets.keys()].sort()) {
    const s = sets.get(name)!;
    // The hash seed and bucket size differ at every creation: no difference, and not part of a set's identity.
    const create = createKey(s.create);
    const members = [...s.members].sort();
    state.push(create, ...members.map((x) => `add ${name} ${x}`));
    ipset.push(`${create} -exist`, ...members.map((x) => `add ${name} ${x} -exist`));
  }
  const text = (f: 4 | 6) => (restore[f].length === 0 ? '' : `*filter\n${restore[f].join('\n')}\nCOMMIT\n`);
  const empty = state.length === 0;
  return { state: empty ? '' : `${state.join('\n')}\n`, files: empty ? undefined : { ipset: ipset.length === 0 ? '' : `${ipset.join('\n')}\n`, iptables: text(4), ip6tables: text(6) }, sets };
}

/**
 * What of bulkhead's is loaded, as text to compare: its chains, their rules
 * and the jumps to them with their places (`iptables-save` and
 * `ip6tables-save`, counters dropped), and its sets with their members,
 * sorted (`ipset save`, without the random hash seed). Nothing of anyone
 * else's is read into it. Throws when a tool fails.
 */
export function iptablesState(options: { netns?: string } = {}): string {
  return snapshot(options.netns).state;
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
    for (const name of list.out.split('\n').filter((n) => OUR_SET_RE.test(n) || TMP_SET_RE.test(n))) run(['ipset', 'destroy', name], undefined, options.netns);
  }
  return { ok: true };
}

/** The last known good files, all three in one file so that they are replaced together. */
const LAST_GOOD = 'last-good.json';

/** The last known good artifact kept in `stateDir`, if any. */
export function iptablesLastKnownGood(stateDir: string): IptablesFiles | undefined {
  try {
    const j = JSON.parse(readFileSync(join(stateDir, LAST_GOOD), 'utf8')) as Partial<IptablesFiles>;
    return typeof j.ipset === 'string' && typeof j.iptables === 'string' && typeof j.ip6tables === 'string' ? { ipset: j.ipset, iptables: j.iptables, ip6tables: j.ip6tables } : undefined;
  } catch {
    return undefined;
  }
}

/** Forgets the last known good artifact (nothing of bulkhead's is loaded any more). */
export function iptablesForgetLastKnownGood(stateDir: string): void {
  rmSync(join(stateDir, LAST_GOOD), { force: true });
}

/** What {@link iptablesApplySafely} did. */
export type IptablesSafeResult = ApplyResult | { readonly ok: false; readonly error: string; readonly rolledBack: false; readonly rollbackFailed: true };

/**
 * Applies an artifact with a way back. iptables has no transaction across
 * `ipset restore`, `iptables-restore` and `ip6tables-restore`, so first
 * bulkhead's chains, jumps and sets as loaded are read; when a step fails, or
 * `verify` (default: bulkhead's four chains are there in both families, each
 * jumped to first) says no afterwards, exactly that is loaded again (or
 * `rollbackTo`, the files an agent applied last: then what someone changed
 * since is not kept), or, when there was nothing of bulkhead's, its chains,
 * jumps and sets are removed.
 * If that fails too, the result says so (`rollbackFailed`). An artifact that
 * applies and verifies becomes the last known good in `stateDir` (what an
 * agent loads again at start).
 */
export function iptablesApplySafely(a: IptablesFiles, options: SafeOptions): IptablesSafeResult {
  return iptablesApplyAndRead(a, options).result;
}

type SafeOptions = { netns?: string; stateDir: string; verify?: () => boolean; rollbackTo?: IptablesFiles };

/** {@link iptablesApplySafely}, and {@link iptablesState} afterwards (read once, for both the result and the caller). */
export function iptablesApplyAndRead(a: IptablesFiles, options: SafeOptions): { result: IptablesSafeResult; state: string } {
  mkdirSync(options.stateDir, { recursive: true });
  const before = snapshot(options.netns);
  // The sets were just read: the sync step need not read them again.
  const r = iptablesApply(a, { netns: options.netns, live: before.sets });
  let why = r.ok ? '' : `${r.step} failed: ${r.error}`;
  if (r.ok) {
    try {
      if (!(options.verify ? options.verify() : chainsInPlace(options.netns))) why = 'verification failed';
    } catch (e) {
      why = `verification failed: ${(e as Error).message}`;
    }
  }
  if (why !== '') {
    const to = options.rollbackTo ?? before.files;
    const back = to ? iptablesApply(to, { netns: options.netns }) : iptablesRemove(options);
    const result: IptablesSafeResult = !back.ok
      ? { ok: false, error: `${why}; rolling back failed too (${back.step}: ${back.error}): bulkhead's rules may be half loaded`, rolledBack: false, rollbackFailed: true }
      : { ok: false, error: `${why}; ${options.rollbackTo ? 'rolled back to the rules applied before' : before.files ? 'rolled back to the rules loaded before' : 'nothing of bulkhead\'s was loaded before: removed its chains and sets again'}`, rolledBack: true };
    // Read again only after a roll back that went through: a failed one leaves nothing to rely on.
    return { result, state: back.ok ? snapshot(options.netns).state : before.state };
  }
  const file = join(options.stateDir, LAST_GOOD);
  writeFileSync(`${file}.tmp`, JSON.stringify({ ipset: a.ipset, iptables: a.iptables, ip6tables: a.ip6tables }));
  renameSync(`${file}.tmp`, file);
  const state = snapshot(options.netns).state;
  return { result: { ok: true, changed: state !== before.state }, state };
}

/** Whether bulkhead's four chains are loaded in both families and INPUT and OUTPUT jump to them first. */
function chainsInPlace(netns: string | undefined): boolean {
  for (const bin of ['iptables', 'ip6tables']) {
    for (const chain of OUR_CHAINS) if (run([bin, '-w', '-t', 'filter', '-S', chain], undefined, netns).code !== 0) return false;
  }
  return iptablesJumpCommands().every((j) => {
    const at = jumpPositions(j.check[0], j.chain, j.target, netns);
    return Array.isArray(at) && at.length === 1 && at[0] === 1;
  });
}
