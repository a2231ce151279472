/**
 * Loading nftables rulesets: check, dry run, atomic apply with a
 * last-known-good copy, and roll back. Every call can target a network
 * namespace (`netns`); tests and the lab only ever use namespaces they made.
 *
 * Atomicity: a compiled ruleset starts with `table inet bulkhead {}` and
 * `delete table inet bulkhead`, so one `nft -f` transaction replaces
 * bulkhead's own table and nothing else; a failing transaction changes
 * nothing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createTwoFilesPatch } from 'diff';

export interface NftTarget {
  /** Network namespace to act in; undefined means this machine's own. */
  readonly netns?: string;
  /** The table bulkhead owns. */
  readonly table?: string;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `nft` (inside `netns` when given) with `input` on stdin. */
export function runNft(args: readonly string[], input: string | undefined, target: NftTarget = {}): RunResult {
  const argv = target.netns ? ['ip', 'netns', 'exec', target.netns, 'nft', ...args] : ['nft', ...args];
  const r = spawnSync(argv[0], argv.slice(1), { input, encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 });
  if (r.error) return { code: 127, stdout: '', stderr: `cannot run \`${argv[0]}\`: ${r.error.message}` };
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

/** Whether `nft` can be run here (installed, and we may use netlink). */
export function nftAvailable(): boolean {
  return runNft(['--version'], undefined).code === 0;
}

/** nft's error text, shortened to its first lines. */
function nftError(r: RunResult): string {
  return r.stderr.trim().split('\n').slice(0, 6).join('\n') || `nft exited with ${r.code}`;
}

/**
 * Checks a ruleset with `nft -c` inside a throwaway namespace, so the check
 * never touches a live ruleset. Needs root.
 */
export function nftCheck(text: string): { ok: true } | { ok: false; error: string } {
  return withScratchNetns((netns) => {
    const r = runNft(['-c', '-f', '-'], text, { netns });
    return r.code === 0 ? { ok: true as const } : { ok: false as const, error: nftError(r) };
  });
}

/** Runs `f` in a fresh network namespace that is deleted afterwards, even on failure. */
export function withScratchNetns<T>(f: (netns: string) => T): T {
  const netns = `bh-scratch-${randomBytes(4).toString('hex')}`;
  const add = spawnSync('ip', ['netns', 'add', netns], { encoding: 'utf8' });
  if (add.status !== 0) throw new Error(`cannot create a scratch network namespace: ${(add.stderr || add.error?.message || '').trim()} (this needs root)`);
  try {
    return f(netns);
  } finally {
    spawnSync('ip', ['netns', 'del', netns]);
  }
}

/** The live listing of bulkhead's table, or undefined when it is not loaded. */
export function listTable(target: NftTarget = {}): string | undefined {
  const r = runNft(['list', 'table', 'inet', target.table ?? 'bulkhead'], undefined, target);
  return r.code === 0 ? r.stdout : undefined;
}

/** Strips counter values, so listings compare by rules rather than traffic. */
export function normalizeListing(listing: string): string {
  return listing.replace(/counter packets \d+ bytes \d+/g, 'counter').replace(/\s+$/gm, '');
}

/**
 * A dry run: the unified diff between what is loaded and what `text` would
 * load, both as nft lists them (the new one is loaded in a scratch namespace
 * to get nft's own normal form). Empty when nothing would change.
 */
export function nftDiff(text: string, target: NftTarget = {}): string {
  const current = normalizeListing(listTable(target) ?? '');
  const next = withScratchNetns((netns) => {
    const r = runNft(['-f', '-'], text, { netns });
    if (r.code !== 0) throw new Error(`the new ruleset does not load: ${nftError(r)}`);
    return normalizeListing(listTable({ netns, table: target.table }) ?? '');
  });
  if (current === next) return '';
  return createTwoFilesPatch('loaded', 'new', current, next, undefined, undefined, { context: 3 });
}

export interface ApplyOptions extends NftTarget {
  /** Where last-known-good rulesets are kept. */
  readonly stateDir: string;
  /** Runs after a successful load; returning false (or throwing) rolls back to the last known good ruleset. */
  readonly verify?: () => boolean;
}

export type ApplyResult =
  | { readonly ok: true; readonly changed: boolean }
  | { readonly ok: false; readonly error: string; readonly rolledBack: boolean };

/**
 * Applies a ruleset atomically. On a load error nothing changes (the
 * transaction fails whole). When `verify` fails after a load, the last known
 * good ruleset is loaded again. A ruleset that loads and verifies becomes the
 * new last known good.
 */
export function nftApply(text: string, options: ApplyOptions): ApplyResult {
  mkdirSync(options.stateDir, { recursive: true });
  const good = join(options.stateDir, 'last-good.nft');
  const before = listTable(options);
  const r = runNft(['-f', '-'], text, options);
  if (r.code !== 0) return { ok: false, error: `the ruleset was rejected, nothing changed: ${nftError(r)}`, rolledBack: false };
  let verified = false;
  let why = 'verification failed';
  try {
    verified = options.verify ? options.verify() : true;
  } catch (e) {
    why = `verification failed: ${(e as Error).message}`;
  }
  if (!verified) {
    const back = existsSync(good) ? runNft(['-f', good], undefined, options) : runNft(['delete', 'table', 'inet', options.table ?? 'bulkhead'], undefined, options);
    return { ok: false, error: `${why}; ${back.code === 0 ? 'rolled back to the last known good ruleset' : `roll back failed too: ${nftError(back)}`}`, rolledBack: back.code === 0 };
  }
  const tmp = `${good}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, good);
  const after = listTable(options);
  return { ok: true, changed: normalizeListing(before ?? '') !== normalizeListing(after ?? '') };
}

/** Whether applying `text` should leave bulkhead's table in place (false for an idle host, whose ruleset only deletes it). */
export function definesTable(text: string, table = 'bulkhead'): boolean {
  return new RegExp(`^\\s*table inet ${table}\\s*\\{\\s*(?:#.*)?$`, 'm').test(text);
}

/** The last known good ruleset kept in `stateDir`, if any. */
export function lastKnownGood(stateDir: string): string | undefined {
  const good = join(stateDir, 'last-good.nft');
  return existsSync(good) ? readFileSync(good, 'utf8') : undefined;
}
