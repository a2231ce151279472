/**
 * Loading iptables + ipset rulesets, in the order src/compile/iptables.ts
 * documents: `ipset restore`, `iptables-restore --noflush` and
 * `ip6tables-restore --noflush` (which replace only bulkhead's chains), the
 * jumps from INPUT and OUTPUT (inserted once), then destroying bulkhead's sets
 * no rule uses any more. Stops at the first failure. Every call can target a
 * network namespace.
 */
import { spawnSync } from 'node:child_process';
import { iptablesJumpCommands, staleIpsetCommands, type IptablesArtifact } from '../compile/iptables.js';
import { withScratchNetns } from './nft.js';

function run(argv: readonly string[], input: string | undefined, netns: string | undefined): { code: number; err: string; out: string } {
  const full = netns ? ['ip', 'netns', 'exec', netns, ...argv] : [...argv];
  const r = spawnSync(full[0], full.slice(1), { input, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.error) return { code: 127, err: `cannot run \`${argv[0]}\`: ${r.error.message}`, out: '' };
  return { code: r.status ?? 1, err: (r.stderr ?? '').trim(), out: r.stdout ?? '' };
}

export type IptablesApplyResult = { readonly ok: true } | { readonly ok: false; readonly step: string; readonly error: string };

/** Applies an artifact (in `netns` when given). */
export function iptablesApply(a: IptablesArtifact, options: { netns?: string } = {}): IptablesApplyResult {
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
