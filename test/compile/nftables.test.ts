/**
 * The nftables backend: golden files, `nft -c` on every host of the sample
 * estate, the fail-closed rules, and atomic apply / dry run / roll back in a
 * network namespace made for the test.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostCompiler } from '../../src/compile/host.js';
import { compileNftables } from '../../src/compile/nftables.js';
import { listTable as rawList, nftApply, nftCheck, nftDiff, normalizeListing, runNft, type NftTarget } from '../../src/adapters/nft.js';

const listTable = (t: NftTarget) => normalizeListing(rawList(t) ?? '');
import { checkGolden } from '../helpers/golden.js';
import { kernelSkip, sampleEstate } from '../helpers/estate.js';
import { policyFromDoc, policyFromYaml } from '../helpers/policy.js';

const FAILSAFE = { managementPrefixes: [{ addr: 0x0a630000, len: 16 }], managementPorts: [{ proto: 6, port: 22 }], controlPlane: [{ addr: 0x0a630005, len: 32 }] };
const skip = kernelSkip();

function hostOf(name: string) {
  const c = sampleEstate();
  const i = c.ir.workloads.findIndex((w) => w.name === name);
  assert.ok(i >= 0, name);
  return new HostCompiler(c.ir).host(i);
}

for (const name of ['payments-prod-db-1', 'crm-prod-app-1', 'shop-dev-web-1', 'hr-staging-app-1', 'lb-prod-dc1-1']) {
  test(`golden: ${name}`, () => {
    const h = hostOf(name);
    assert.ok(h, 'a managed workload');
    const a = compileNftables(h, { failsafe: FAILSAFE });
    checkGolden(new URL(`../fixtures/compile/nftables/${name}.nft`, import.meta.url).pathname, a.text);
  });
}

test('modes shape the verdicts: enforce drops, test logs and accepts, visibility accepts, idle programs nothing', () => {
  const enforce = compileNftables(hostOf('payments-prod-db-1')!).text;
  assert.match(enforce, /counter drop comment "default"/);
  const testMode = compileNftables(hostOf('crm-prod-app-1')!).text;
  assert.match(testMode, /log prefix "bh test-drop default "/);
  assert.doesNotMatch(testMode, / drop comment/);
  const vis = compileNftables(hostOf('shop-dev-web-1')!).text;
  assert.match(vis, /chain ingress \{\n\s+counter accept comment "visibility"\n\s+\}/);
  const idle = compileNftables(hostOf('hr-staging-app-1')!);
  assert.equal(idle.rules, 0);
  assert.doesNotMatch(idle.text, /chain/);
});

test('rule count grows with rules, not with workloads', () => {
  const c = sampleEstate();
  const lb = compileNftables(hostOf('lb-prod-dc1-1')!);
  // The load balancer reaches many web workloads, yet through sets: no rule per address.
  assert.ok(lb.setElements > lb.rules, `${lb.setElements} set elements, ${lb.rules} rules`);
  const maxRules = Math.max(...c.ir.workloads.map((_, i) => new HostCompiler(c.ir).host(i)).filter((h) => h !== undefined).map((h) => h!.ingress.length + h!.egress.length));
  assert.ok(maxRules <= c.ir.rules.length * 2, 'at most one host rule per policy rule and side');
});

test('fail closed: a program restriction drops an allow, and keeps a deny broader', () => {
  const c = policyFromYaml(`
services:
  - { name: web, ports: [443/tcp], process: /usr/sbin/nginx }
  - { name: ssh-as-root, ports: [22/tcp], user: root }
workloads:
  - { name: a, addresses: [10.0.0.1], labels: { role: a } }
  - { name: b, addresses: [10.0.0.2], labels: { role: b } }
rulesets:
  - name: r
    rules:
      - { id: a-web, from: ["role == 'a'"], to: ["role == 'b'"], services: [web] }
      - { id: no-ssh, action: deny, from: ["role == 'b'"], to: ["role == 'a'"], services: [ssh-as-root] }
`);
  const hc = new HostCompiler(c.ir);
  const b = compileNftables(hc.host(1)!);
  assert.ok(b.diagnostics.some((d) => d.code === 'BH901' && d.message.includes('a-web')), 'the allow is reported');
  assert.doesNotMatch(b.text, /comment "a-web"/, 'the allow is left out');
  const bOut = b.text.slice(b.text.indexOf('chain egress'));
  assert.match(bOut, /meta skuid "root" counter drop comment "no-ssh"/, 'a user restriction on egress is enforced');
  const a = compileNftables(hc.host(0)!);
  assert.ok(a.diagnostics.some((d) => d.code === 'BH902' && d.message.includes('no-ssh')), 'the deny without its restriction is reported');
  assert.match(a.text.slice(a.text.indexOf('chain ingress')), /tcp dport 22 counter drop comment "no-ssh"/);
});

test('nft -c accepts the ruleset of every managed workload of the sample estate', { skip }, () => {
  const c = sampleEstate();
  const hc = new HostCompiler(c.ir);
  let n = 0;
  c.ir.workloads.forEach((w, i) => {
    const h = hc.host(i);
    if (!h) return;
    const r = nftCheck(compileNftables(h, { failsafe: FAILSAFE }).text);
    assert.ok(r.ok, `${w.name}: ${r.ok ? '' : r.error}`);
    n++;
  });
  assert.ok(n > 100);
});

const ns = `bh-test-nft-${process.pid}`;
const state = mkdtempSync(join(tmpdir(), 'bulkhead-nft-'));
after(() => {
  spawnSync('ip', ['netns', 'del', ns]);
  rmSync(state, { recursive: true, force: true });
});

test('apply: atomic replace of our table only, rejection keeps the old ruleset, failed verification rolls back', { skip }, () => {
  assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  const target = { netns: ns, stateDir: state };
  // Someone else's table must survive everything we do.
  assert.equal(runNft(['add', 'table', 'inet', 'other'], undefined, target).code, 0);
  const a = compileNftables(hostOf('payments-prod-db-1')!).text;
  const b = compileNftables(hostOf('crm-prod-app-1')!).text;

  const first = nftApply(a, target);
  assert.deepEqual(first, { ok: true, changed: true });
  assert.match(listTable(target), /comment "default"/);
  assert.equal(nftApply(a, target).ok, true);

  const diff = nftDiff(b, target);
  assert.match(diff, /^-.*counter drop comment "default"/m, 'the dry run shows what would go');
  assert.match(diff, /^\+.*log prefix "bh test-drop default "/m, 'and what would come');
  assert.match(listTable(target), /counter drop comment "default"/, 'a dry run changes nothing');
  assert.equal(nftDiff(a, target), '', 'no difference against itself');

  const broken = b.replace('counter accept comment "default"', 'counter acept comment "default"');
  const rejected = nftApply(broken, target);
  assert.equal(rejected.ok, false);
  assert.match((rejected as { error: string }).error, /rejected, nothing changed/);
  assert.match(listTable(target), /counter drop comment "default"/, 'the good ruleset stays');

  const rolled = nftApply(b, { ...target, verify: () => false });
  assert.deepEqual({ ok: rolled.ok, rolledBack: (rolled as { rolledBack: boolean }).rolledBack }, { ok: false, rolledBack: true });
  assert.match(listTable(target), /counter drop comment "default"/, 'rolled back to the last known good');

  assert.equal(nftApply(b, target).ok, true);
  assert.match(listTable(target), /bh test-drop default/);
  assert.equal(runNft(['list', 'table', 'inet', 'other'], undefined, target).code, 0, 'the other table is untouched');
});

test('neighbouring workloads of one class each get their rules (address-map ranges merge them)', () => {
  const c = policyFromYaml(`
workloads:
  - { name: w1, addresses: [10.0.0.1], labels: { role: web } }
  - { name: w2, addresses: [10.0.0.2], labels: { role: web } }
  - { name: db, addresses: [10.0.0.3], labels: { role: db } }
rulesets:
  - name: r
    rules:
      - { id: web-db, from: ["role == 'web'"], to: ["role == 'db'"], services: ["5432/tcp"] }
`);
  const hc = new HostCompiler(c.ir);
  for (const i of [0, 1]) {
    const h = hc.host(i)!;
    assert.deepEqual(h.egress.map((r) => r.rule.id), ['web-db'], h.workload);
    assert.equal(h.addresses.toString(), `10.0.0.${i + 1}`);
  }
});

test('port dispatch: a verdict map into per-port chains, each ending in the default; nft -c accepts it', { skip }, () => {
  const c = sampleEstate();
  const hc = new HostCompiler(c.ir);
  let dispatched = 0;
  c.ir.workloads.forEach((w, i) => {
    const h = hc.host(i);
    if (!h || h.mode === 'idle' || h.mode === 'visibility') return;
    const text = compileNftables(h, { failsafe: FAILSAFE, dispatchMin: 1 }).text;
    if (!/dport vmap \{/.test(text)) return;
    dispatched++;
    // Every jump target exists and ends with the side's default verdict, so a jump never falls back.
    for (const m of text.matchAll(/jump ((?:ingress|egress)_(?:tcp|udp)_[0-9_]+)/g)) {
      const body = new RegExp(`chain ${m[1]} \\{\\n([\\s\\S]*?)\\n  \\}`).exec(text);
      assert.ok(body, `${w.name}: chain ${m[1]} is defined`);
      const last = body[1].trim().split('\n').pop()!.trim();
      assert.match(last, /counter (drop|accept) comment "default"/, `${w.name}: ${m[1]} ends with the default`);
    }
    if (dispatched <= 20) {
      const r = nftCheck(text);
      assert.ok(r.ok, `${w.name}: ${r.ok ? '' : r.error}`);
    }
  });
  assert.ok(dispatched > 50, `${dispatched} hosts dispatched`);
});

test('the pieces of a ruleset make its text, and hosts with the same peer group share the long piece', () => {
  const c = sampleEstate();
  const hc = new HostCompiler(c.ir);
  const arts = c.ir.workloads.map((_, i) => hc.host(i)).filter((h) => h !== undefined).map((h) => compileNftables(h!));
  for (const a of arts) assert.equal(a.chunks.join(''), a.text);
  // Some element list longer than a few addresses is the very same string in two hosts' pieces.
  const seen = new Map<string, number>();
  for (const a of arts) for (const ch of new Set(a.chunks.filter((x) => x.length > 64 && !x.includes('\n')))) seen.set(ch, (seen.get(ch) ?? 0) + 1);
  assert.ok([...seen.values()].some((n) => n > 1), 'a shared element list');
});

test('big hash sets carry a size hint that nft accepts', { skip }, async () => {
  const { generateEstate } = await import('../../src/generate/index.js');
  const c = policyFromDoc(generateEstate({ seed: 5, workloads: 6000, rules: 600 }));
  const hc = new HostCompiler(c.ir);
  let checked = 0;
  for (let i = 0; i < c.ir.workloads.length && checked < 2; i++) {
    const h = hc.host(i);
    if (!h) continue;
    const text = compileNftables(h).text;
    const m = / {4}size (\d+)\n {4}elements = \{ ([^}]*) \}/.exec(text);
    if (!m) continue;
    assert.equal(Number(m[1]), m[2].split(', ').length, 'the hint is the element count');
    const r = nftCheck(text);
    assert.ok(r.ok, r.ok ? '' : r.error);
    checked++;
  }
  assert.equal(checked, 2, 'hosts with a big hash set');
});
