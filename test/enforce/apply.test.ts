/**
 * `bulkhead apply` and the iptables apply with a way back, in network
 * namespaces of the test's own (never the machine's): dry run, atomic load of
 * bulkhead's own table or chains only, refusal of what cannot be applied,
 * roll back to the last known good rules.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli.js';
import { ESTATE_DIR, kernelSkip, sampleEstate, sampleHost } from '../helpers/estate.js';
import { HostCompiler } from '../../src/compile/host.js';
import { compileIptables } from '../../src/compile/iptables.js';
import { formatPrefix } from '../../src/netset/ip.js';
import { iptablesApplySafely, iptablesLastKnownGood, iptablesRemove, iptablesState } from '../../src/adapters/iptables.js';

const NOW = '2026-11-23T00:00:00Z';
const nftSkip = kernelSkip(['nft', 'ip']);
const iptSkip = kernelSkip(['ip', 'ipset', 'iptables-restore', 'ip6tables-restore', 'iptables-save']);
const namespaces: string[] = [];
const dirs: string[] = [];
after(() => {
  for (const ns of namespaces) spawnSync('ip', ['netns', 'del', ns]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A namespace of the test's own; with `owner`, it carries that workload's addresses (on its loopback), as its host would. */
function newNs(tag: string, owner?: string): string {
  const ns = `bh-test-apply-${tag}-${process.pid}`;
  spawnSync('ip', ['netns', 'del', ns]);
  assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0, `ip netns add ${ns}`);
  namespaces.push(ns);
  if (owner) {
    const w = sampleEstate().ir.workloads.find((x) => x.name === owner)!;
    for (const p of w.addresses) assert.equal(inNs(ns, ['ip', 'addr', 'add', formatPrefix(p), 'dev', 'lo']).status, 0);
  }
  return ns;
}

function newDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bulkhead-apply-'));
  dirs.push(d);
  return d;
}

function inNs(ns: string, argv: string[], input?: string) {
  const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], { input, encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

const FAILSAFE = ['--mgmt', '10.99.0.0/16', '--control-plane', '10.99.0.5'];

test('apply (nftables): dry run changes nothing, apply loads only our table, again is no change, json says what changed', { skip: nftSkip }, async () => {
  const ns = newNs('nft', 'payments-prod-db-1');
  const state = newDir();
  assert.equal(inNs(ns, ['nft', 'add', 'table', 'inet', 'other']).status, 0);
  const base = ['apply', ESTATE_DIR, '--netns', ns, '--state', state, '--now', NOW, ...FAILSAFE];

  const dry = await cli(...base, '-w', 'payments-prod-db-1', '--dry-run');
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, /^\+\s+chain input \{/m, 'the dry run shows the table to come');
  assert.match(dry.err, /dry run: the diff above .* nothing was changed/);
  assert.notEqual(inNs(ns, ['nft', 'list', 'table', 'inet', 'bulkhead']).status, 0, 'a dry run loads nothing');

  const applied = await cli(...base, '-w', 'payments-prod-db-1');
  assert.equal(applied.code, 0, applied.err);
  assert.match(applied.err, /applied payments-prod-db-1's nftables ruleset \(mode enforce; \d+ rules, \d+ set elements\)/);
  const listed = inNs(ns, ['nft', 'list', 'table', 'inet', 'bulkhead']);
  assert.equal(listed.status, 0);
  assert.match(listed.out, /counter packets \d+ bytes \d+ drop comment "default"/);
  assert.match(listed.out, /ip saddr 10\.99\.0\.5 counter packets \d+ bytes \d+ accept comment "failsafe: control plane"/, 'the failsafe is in');

  const again = await cli(...base, '-w', 'payments-prod-db-1', '--dry-run');
  assert.equal(again.code, 0);
  assert.equal(again.out, '');
  assert.match(again.err, /already has this ruleset.*nothing would change/);
  const reapplied = await cli(...base, '-w', 'payments-prod-db-1', '--output', 'json');
  assert.equal(reapplied.code, 0);
  assert.equal(JSON.parse(reapplied.out).changed, false);

  const other = await cli(...base, '-w', 'crm-prod-app-1', '--dry-run', '--output', 'json');
  assert.equal(other.code, 0);
  const j = JSON.parse(other.out) as { changed: boolean; diff: string; dryRun: boolean };
  assert.equal(j.dryRun, true);
  assert.equal(j.changed, true);
  assert.match(j.diff, /^-.*counter drop comment "default"/m, 'what would go');
  assert.match(j.diff, /^\+.*log prefix "bh test-drop default "/m, 'what would come');
  assert.match(inNs(ns, ['nft', 'list', 'table', 'inet', 'bulkhead']).out, /drop comment "default"/, 'still the applied one');
  assert.match(other.err, /warning: network namespace \S+ has none of crm-prod-app-1's addresses/);

  // Another workload's ruleset is not applied here unless forced.
  const wrong = await cli(...base, '-w', 'crm-prod-app-1');
  assert.equal(wrong.code, 2);
  assert.match(wrong.err, /has none of crm-prod-app-1's addresses \(10\.\d+\.\d+\.\d+\/32.*\): its ruleset would enforce another workload's policy here/);
  assert.match(inNs(ns, ['nft', 'list', 'table', 'inet', 'bulkhead']).out, /drop comment "default"/, 'still the applied one');
  const forced = await cli(...base, '-w', 'crm-prod-app-1', '--force');
  assert.equal(forced.code, 0, forced.err);
  assert.match(inNs(ns, ['nft', 'list', 'table', 'inet', 'bulkhead']).out, /log prefix "bh test-drop default "/);

  // Taking bulkhead off the host: what would go, then gone; the other table stays.
  const rm = ['apply', '--remove', '--netns', ns, '--state', state];
  const wouldGo = await cli(...rm, '--dry-run');
  assert.equal(wouldGo.code, 0, wouldGo.err);
  assert.match(wouldGo.out, /^-\s+chain input \{/m);
  assert.doesNotMatch(wouldGo.out, /^\+(?!\+\+)/m, 'nothing would come');
  assert.equal(inNs(ns, ['nft', 'list', 'table', 'inet', 'bulkhead']).status, 0, 'a dry run removes nothing');
  const removed = await cli(...rm);
  assert.equal(removed.code, 0, removed.err);
  assert.match(removed.err, /removed the table inet bulkhead from network namespace/);
  assert.notEqual(inNs(ns, ['nft', 'list', 'table', 'inet', 'bulkhead']).status, 0);
  assert.match((await cli(...rm)).err, /nothing of bulkhead's \(nftables\) is loaded/);
  assert.equal(inNs(ns, ['nft', 'list', 'table', 'inet', 'other']).status, 0, 'the other table is untouched');
  assert.equal((await cli('apply', ESTATE_DIR, '--remove')).code, 2, '--remove takes no policy');
});

test('apply: usage errors change nothing and say why', { skip: nftSkip }, async () => {
  const state = newDir();
  const unknown = await cli('apply', ESTATE_DIR, '-w', 'no-such-host', '--state', state, '--now', NOW);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown workload `no-such-host`/);
  const c = sampleEstate();
  const hc = new HostCompiler(c.ir);
  const unmanaged = c.ir.workloads.find((_, i) => hc.host(i) === undefined);
  assert.ok(unmanaged, 'the sample estate has an unmanaged workload');
  const r = await cli('apply', ESTATE_DIR, '-w', unmanaged.name, '--state', state, '--now', NOW);
  assert.equal(r.code, 2);
  assert.match(r.err, /is unmanaged/);
  const noNs = await cli('apply', ESTATE_DIR, '-w', 'payments-prod-db-1', '--netns', `bh-test-apply-missing-${process.pid}`, '--dry-run', '--now', NOW);
  assert.equal(noNs.code, 2);
  assert.match(noNs.err, /no network namespace `bh-test-apply-missing-\d+`/);
  const noWorkload = await cli('apply', ESTATE_DIR, '--now', NOW);
  assert.equal(noWorkload.code, 2);
  assert.match(noWorkload.err, /--workload/);
});

test('apply: without root, says so before anything else (both backends)', { skip: nftSkip }, (t) => {
  // As the user nobody, where it can read this checkout (a CI clone in a private directory cannot).
  const asNobody = (argv: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bulkhead.ts', ...argv], { encoding: 'utf8', uid: 65534, gid: 65534, env: { ...process.env, HOME: '/tmp' } });
  const probe = asNobody(['--version']);
  if (probe.status !== 0) {
    t.skip(`the user nobody cannot run this checkout here: ${probe.stderr.slice(0, 200)}`);
    return;
  }
  for (const target of ['nftables', 'iptables']) {
    const r = asNobody(['apply', ESTATE_DIR, '-w', 'payments-prod-db-1', '--target', target, '--dry-run', '--now', NOW]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`error: loading (an nftables ruleset|iptables rules) needs root`));
  }
});

test('apply (iptables): dry run, apply, only our chains and sets, the host\'s own left alone', { skip: iptSkip }, async () => {
  const ns = newNs('ipt', 'payments-prod-db-1');
  const state = newDir();
  assert.equal(inNs(ns, ['iptables', '-w', '-N', 'OTHER']).status, 0);
  assert.equal(inNs(ns, ['iptables', '-w', '-A', 'INPUT', '-j', 'OTHER']).status, 0);
  assert.equal(inNs(ns, ['ipset', 'create', 'other-set', 'hash:ip']).status, 0);
  const base = ['apply', ESTATE_DIR, '--target', 'iptables', '--netns', ns, '--state', state, '--now', NOW, ...FAILSAFE];

  const dry = await cli(...base, '-w', 'payments-prod-db-1', '--dry-run');
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, /^\+ip :BH-INGRESS -$/m);
  assert.match(dry.out, /^\+ip -A INPUT -j BH-INPUT \(rule 1 of INPUT\)$/m);
  assert.match(dry.out, /^\+create bh-[0-9a-f]{16}-4 hash:net/m);
  assert.equal(iptablesState({ netns: ns }), '', 'a dry run loads nothing');

  const applied = await cli(...base, '-w', 'payments-prod-db-1');
  assert.equal(applied.code, 0, applied.err);
  const loaded = iptablesState({ netns: ns });
  assert.match(loaded, /^ip -A BH-INGRESS .* -j DROP$/m, 'enforce mode drops');
  assert.match(loaded, /^ip6 -A INPUT -j BH-INPUT \(rule 1 of INPUT\)$/m);
  assert.ok(iptablesLastKnownGood(join(state, 'iptables')), 'the last known good rules are kept');

  const again = await cli(...base, '-w', 'payments-prod-db-1', '--dry-run');
  assert.equal(again.code, 0);
  assert.equal(again.out, '', again.out.slice(0, 400));

  const next = await cli(...base, '-w', 'crm-prod-app-1', '--dry-run');
  assert.match(next.out, /^-ip -A BH-INGRESS .*--comment default -j DROP$/m);
  assert.match(next.out, /^\+ip -A BH-INGRESS .*--comment default -j ACCEPT$/m);
  assert.equal(iptablesState({ netns: ns }), loaded, 'the dry run changed nothing');

  // A rule the host put before our jump would bypass the policy: the dry run says so, apply puts the jump first again.
  assert.equal(inNs(ns, ['iptables', '-w', '-I', 'INPUT', '1', '-p', 'tcp', '--dport', '9', '-j', 'ACCEPT']).status, 0);
  const moved = await cli(...base, '-w', 'payments-prod-db-1', '--dry-run');
  assert.match(moved.out, /^-ip -A INPUT -j BH-INPUT \(rule 2 of INPUT\)$/m);
  assert.match(moved.out, /^\+ip -A INPUT -j BH-INPUT \(rule 1 of INPUT\)$/m);
  const fixed = await cli(...base, '-w', 'payments-prod-db-1');
  assert.equal(fixed.code, 0, fixed.err);
  assert.equal(iptablesState({ netns: ns }), loaded, 'the jump is first again, once');
  const save = inNs(ns, ['iptables-save', '-t', 'filter']).out;
  const input = save.split('\n').filter((l) => l.startsWith('-A INPUT '));
  assert.deepEqual(input, ['-A INPUT -j BH-INPUT', '-A INPUT -p tcp -m tcp --dport 9 -j ACCEPT', '-A INPUT -j OTHER'], 'the host\'s own rules stay, after ours');

  // A load that fails: exit 6, said in JSON, nothing changed.
  const setName = [...compileIptables(sampleHost('crm-prod-app-1')).ipset.matchAll(/^create (bh-[0-9a-f]{16}-4) /gm)].map((m) => m[1]).find((n) => !loaded.includes(n));
  assert.ok(setName, 'a set only crm-prod-app-1 has');
  // Someone's set under that name, of another type, and in use by a rule of theirs: it can be neither swapped nor replaced.
  assert.equal(inNs(ns, ['ipset', 'create', setName, 'hash:ip']).status, 0);
  assert.equal(inNs(ns, ['iptables', '-w', '-A', 'OTHER', '-m', 'set', '--match-set', setName, 'src', '-j', 'ACCEPT']).status, 0);
  const pre = iptablesState({ netns: ns });
  const failed = await cli(...base, '-w', 'crm-prod-app-1', '--force', '--output', 'json');
  assert.equal(failed.code, 6, failed.err);
  const fj = JSON.parse(failed.out) as { ok: boolean; error: string; rolledBack: boolean };
  assert.equal(fj.ok, false);
  assert.match(fj.error, /^replace set bh-[0-9a-f]{16}-4 failed: .*cannot be swapped.*cannot be destroyed.*rolled back to the rules loaded before/s);
  assert.equal(iptablesState({ netns: ns }), pre, 'as before, the set in the way too');

  // Taking bulkhead off: its chains, jumps and sets go; the host's own stay (the set in the way goes too, once no rule names it).
  assert.equal(inNs(ns, ['iptables', '-w', '-F', 'OTHER']).status, 0);
  const removed = await cli('apply', '--remove', '--target', 'iptables', '--netns', ns, '--state', state, '--output', 'json');
  assert.equal(removed.code, 0, removed.err);
  assert.equal(JSON.parse(removed.out).changed, true);
  assert.equal(iptablesState({ netns: ns }), '');
  assert.equal(iptablesLastKnownGood(join(state, 'iptables')), undefined, 'nothing to go back to');
  const left = inNs(ns, ['iptables-save', '-t', 'filter']).out.split('\n').filter((l) => l.startsWith('-A INPUT '));
  assert.deepEqual(left, ['-A INPUT -p tcp -m tcp --dport 9 -j ACCEPT', '-A INPUT -j OTHER']);
  assert.equal(inNs(ns, ['ipset', 'list', '-n']).out.split('\n').filter((n) => n === 'other-set').length, 1, 'the host\'s own set stays');
});

test('iptables apply with a way back: a failing step loads again what was loaded before, or removes ours when there was nothing', { skip: iptSkip }, () => {
  const ns = newNs('rb');
  const state = newDir();
  const of = (name: string) => compileIptables(sampleHost(name));
  const a = of('payments-prod-db-1');
  const b = of('crm-prod-app-1');
  assert.equal(inNs(ns, ['iptables', '-w', '-N', 'OTHER']).status, 0);

  // With no last known good rules, a failure part way (ipset and iptables loaded, ip6tables refused) removes ours.
  const broken = { ...b, ip6tables: b.ip6tables.replace('-A BH-INGRESS ', '-A BH-INGRESS --no-such-option ') };
  assert.notEqual(broken.ip6tables, b.ip6tables);
  const first = iptablesApplySafely(broken, { netns: ns, stateDir: state });
  assert.equal(first.ok, false);
  assert.match((first as { error: string }).error, /ip6tables-restore failed: .*nothing of bulkhead's was loaded before: removed its chains and sets again/s);
  assert.equal(iptablesState({ netns: ns }), '', 'nothing of ours is left half way');
  assert.equal(inNs(ns, ['iptables', '-w', '-S', 'OTHER']).status, 0, 'the host\'s own chain stays');

  const good = iptablesApplySafely(a, { netns: ns, stateDir: state });
  assert.deepEqual(good, { ok: true, changed: true });
  const loaded = iptablesState({ netns: ns });

  // Now a failure part way goes back to a exactly: chains, rules, jumps and sets.
  const failed = iptablesApplySafely(broken, { netns: ns, stateDir: state });
  assert.equal(failed.ok, false);
  assert.equal((failed as { rolledBack: boolean }).rolledBack, true);
  assert.match((failed as { error: string }).error, /rolled back to the rules loaded before/);
  assert.equal(iptablesState({ netns: ns }), loaded, 'rolled back exactly');

  // A verification that says no rolls back too.
  const refused = iptablesApplySafely(b, { netns: ns, stateDir: state, verify: () => false });
  assert.equal(refused.ok, false);
  assert.equal(iptablesState({ netns: ns }), loaded);

  // What goes back is what was loaded, not this state directory's last known good: here another's rules.
  const elsewhere = newDir();
  const fromElsewhere = iptablesApplySafely(broken, { netns: ns, stateDir: elsewhere });
  assert.equal(fromElsewhere.ok, false);
  assert.equal(iptablesState({ netns: ns }), loaded, 'loaded from another state directory, still rolled back to it');
  assert.equal(iptablesLastKnownGood(elsewhere), undefined, 'a failure is no last known good');

  // A failure at the first step (a set of bulkhead's name but not its kind is in the way, and a rule of the host's
  // names it, so it can be neither swapped nor replaced) changes nothing either.
  const setName = [...b.ipset.matchAll(/^create (bh-[0-9a-f]{16}-4) /gm)].map((m) => m[1]).find((n) => !loaded.includes(n));
  assert.ok(setName, 'a set only b has');
  assert.equal(inNs(ns, ['ipset', 'create', setName, 'hash:ip']).status, 0);
  assert.equal(inNs(ns, ['iptables', '-w', '-A', 'OTHER', '-m', 'set', '--match-set', setName, 'src', '-j', 'ACCEPT']).status, 0);
  const pre = iptablesState({ netns: ns });
  const blocked = iptablesApplySafely(b, { netns: ns, stateDir: state });
  assert.equal(blocked.ok, false);
  assert.match((blocked as { error: string }).error, /^replace set \S+ failed: /);
  assert.equal(iptablesState({ netns: ns }), pre, 'as before: the sets b made before the failure are gone again');

  // Named by no rule, the set in the way is replaced and the load goes through.
  assert.equal(inNs(ns, ['iptables', '-w', '-F', 'OTHER']).status, 0);
  assert.deepEqual(iptablesApplySafely(b, { netns: ns, stateDir: state }), { ok: true, changed: true });
  assert.match(inNs(ns, ['ipset', 'list', setName]).out, /^Type: hash:net$/m);
  assert.notEqual(iptablesState({ netns: ns }), loaded);
  assert.deepEqual(iptablesRemove({ netns: ns }), { ok: true });
  assert.equal(iptablesState({ netns: ns }), '');
  assert.equal(inNs(ns, ['iptables', '-w', '-S', 'OTHER']).status, 0);
});
