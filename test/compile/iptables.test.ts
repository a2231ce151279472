/**
 * The iptables + ipset backend: golden files, the multiport split, ICMP codes,
 * the modes, fail-closed diagnostics, a semantic check of the output against
 * the engine through a small interpreter, and the real `ipset restore` /
 * `iptables-restore --noflush` (test and apply) in a network namespace made
 * for the test.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { HostCompiler, type HostPolicy } from '../../src/compile/host.js';
import { compileIptables, ipsetNames, iptablesJumpCommands, staleIpsetCommands, IPTABLES_CHAINS, type IptablesArtifact } from '../../src/compile/iptables.js';
import { Evaluator } from '../../src/engine/evaluate.js';
import { generateEstate } from '../../src/generate/index.js';
import { Rng } from '../../src/generate/prng.js';
import { ConnSet } from '../../src/netset/connset.js';
import { parseAddr, type Addr } from '../../src/netset/ip.js';
import type { Compiled } from '../../src/policy/index.js';
import { checkGolden } from '../helpers/golden.js';
import { kernelSkip, sampleEstate } from '../helpers/estate.js';
import { policyFromDoc, policyFromYaml } from '../helpers/policy.js';
import { Chains, tokenize, type Outcome } from './iptables-interp.js';

const FAILSAFE = { managementPrefixes: [{ addr: 0x0a630000, len: 16 }], managementPorts: [{ proto: 6, port: 22 }], controlPlane: [{ addr: 0x0a630005, len: 32 }] };
const skip = kernelSkip(['ip', 'ipset', 'iptables-restore', 'ip6tables-restore', 'iptables-save']);

function hostOf(name: string, c: Compiled = sampleEstate()): HostPolicy {
  const i = c.ir.workloads.findIndex((w) => w.name === name);
  assert.ok(i >= 0, name);
  const h = new HostCompiler(c.ir).host(i);
  assert.ok(h, `${name} is a managed workload`);
  return h;
}

/** The `-A` lines of a chain. */
function chainRules(text: string, chain: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`-A ${chain} `));
}

const GOLDEN = new URL('../fixtures/compile/iptables/', import.meta.url).pathname;

for (const name of ['payments-prod-db-1', 'crm-prod-app-1', 'shop-dev-web-1', 'lb-prod-dc1-1']) {
  test(`golden: ${name}`, () => {
    const a = compileIptables(hostOf(name), { failsafe: FAILSAFE });
    checkGolden(`${GOLDEN}${name}.ipset`, a.ipset);
    checkGolden(`${GOLDEN}${name}.iptables`, a.iptables);
    checkGolden(`${GOLDEN}${name}.ip6tables`, a.ip6tables);
    assert.equal(a.rules, (a.iptables + a.ip6tables).split('\n').filter((l) => l.startsWith('-A ')).length);
    assert.equal(a.setElements, a.ipset.split('\n').filter((l) => l.startsWith('add ')).length);
    assert.deepEqual(a.diagnostics, []);
  });
}

test('only bulkhead\'s chains are declared and filled; the built-in chains are never named', () => {
  const a = compileIptables(hostOf('payments-prod-db-1'), { failsafe: FAILSAFE });
  for (const text of [a.iptables, a.ip6tables]) {
    const declared = text.split('\n').filter((l) => l.startsWith(':'));
    assert.deepEqual(declared, Object.values(IPTABLES_CHAINS).map((c) => `:${c} - [0:0]`));
    for (const l of text.split('\n').filter((x) => x.startsWith('-'))) assert.match(l, /^-A BH-(INPUT|OUTPUT|INGRESS|EGRESS) /);
    assert.doesNotMatch(text, /^-[ADIFXNP] (INPUT|OUTPUT|FORWARD)\b/m);
    assert.equal(text.match(/^\*filter$/gm)?.length, 1);
    assert.match(text, /COMMIT\n$/);
  }
  // Established, loopback, (neighbour discovery,) failsafe, then the jump: in that order.
  const input = chainRules(a.ip6tables, 'BH-INPUT');
  assert.match(input[0], /--ctstate RELATED,ESTABLISHED .* -j ACCEPT$/);
  assert.match(input[1], /^-A BH-INPUT -i lo /);
  assert.deepEqual(input.slice(2, 6).map((l) => /--icmpv6-type (\d+)/.exec(l)?.[1]), ['133', '134', '135', '136']);
  assert.match(input.at(-1)!, /-j BH-INGRESS$/);
  const input4 = chainRules(a.iptables, 'BH-INPUT');
  assert.doesNotMatch(a.iptables, /icmpv6/);
  assert.match(input4[2], /-s 10\.99\.0\.5\/32 .*"failsafe: control plane" -j ACCEPT/);
  assert.match(input4[3], /-s 10\.99\.0\.0\/16 -p tcp -m tcp --dport 22 .*"failsafe: management" -j ACCEPT/);
  assert.match(chainRules(a.iptables, 'BH-OUTPUT')[2], /-d 10\.99\.0\.5\/32 .*-j ACCEPT/);
});

test('the jump commands: check, then insert first in INPUT and OUTPUT, for both families', () => {
  const cmds = iptablesJumpCommands();
  assert.deepEqual(
    cmds.map((c) => [c.check.join(' '), c.insert.join(' ')]),
    [
      ['iptables -w -t filter -C INPUT -j BH-INPUT', 'iptables -w -t filter -I INPUT 1 -j BH-INPUT'],
      ['iptables -w -t filter -C OUTPUT -j BH-OUTPUT', 'iptables -w -t filter -I OUTPUT 1 -j BH-OUTPUT'],
      ['ip6tables -w -t filter -C INPUT -j BH-INPUT', 'ip6tables -w -t filter -I INPUT 1 -j BH-INPUT'],
      ['ip6tables -w -t filter -C OUTPUT -j BH-OUTPUT', 'ip6tables -w -t filter -I OUTPUT 1 -j BH-OUTPUT'],
    ],
  );
});

test('ipsets: content-addressed names, idempotent create and add, no /0, shared between rules', () => {
  const a = compileIptables(hostOf('payments-prod-db-1'));
  const names = ipsetNames(a);
  assert.ok(names.length > 5);
  for (const n of names) assert.match(n, /^bh-[0-9a-f]{16}-[46]$/);
  assert.equal(new Set(names).size, names.length, 'one set per distinct content and family');
  for (const l of a.ipset.split('\n').filter((x) => x && !x.startsWith('#'))) assert.match(l, /^(create \S+ hash:net family inet6? hashsize \d+ maxelem \d+|add \S+ \S+) -exist$/);
  // Every set is named by a rule, and every rule's set is created.
  const used = new Set([...(a.iptables + a.ip6tables).matchAll(/--match-set (\S+) /g)].map((m) => m[1]));
  assert.deepEqual([...used].sort(), [...names].sort());
  // The same content gets the same name on another host: names depend on content only.
  const b = compileIptables(hostOf('payments-prod-db-2'));
  assert.ok(ipsetNames(b).some((n) => names.includes(n)));
  const prefixed = compileIptables(hostOf('payments-prod-db-1'), { setPrefix: 'web1' });
  for (const n of ipsetNames(prefixed)) assert.match(n, /^web1-[0-9a-f]{16}-[46]$/);
  assert.throws(() => compileIptables(hostOf('payments-prod-db-1'), { setPrefix: 'a-prefix-too-long' }), /ipset name prefix `a-prefix-too-long` must be 1-12/);
  assert.throws(() => compileIptables(hostOf('payments-prod-db-1'), { logRate: '10/fortnight' }), /log rate `10\/fortnight` must be/);
  assert.match(compileIptables(hostOf('payments-prod-db-1'), { logRate: '3/minute' }).iptables, /-m limit --limit 3\/minute /);
  // Stale sets: only ours with the same prefix, only those the artifact does not use.
  assert.deepEqual(staleIpsetCommands(a, [...names, 'bh-0123456789abcdef-4', 'other', 'bh-1-4', 'web1-0123456789abcdef-6']), [['ipset', 'destroy', 'bh-0123456789abcdef-4']]);
});

test('modes: enforce logs and drops, test logs and accepts, visibility accepts, idle empties the chains', () => {
  const enforce = compileIptables(hostOf('payments-prod-db-1'));
  assert.deepEqual(chainRules(enforce.iptables, 'BH-INGRESS').slice(-2), [
    '-A BH-INGRESS -m limit --limit 10/second -m comment --comment "default" -j LOG --log-prefix "bh drop default "',
    '-A BH-INGRESS -m comment --comment "default" -j DROP',
  ]);
  const deny = chainRules(enforce.iptables, 'BH-INGRESS').filter((l) => l.includes('"pci-ring-fence"'));
  assert.deepEqual(deny.map((l) => l.replace(/.* -j /, '')), ['LOG --log-prefix "bh drop pci-ring-fence "', 'DROP']);
  assert.equal(deny[0].replace(/ -m limit --limit \S+/, '').replace(/ -j .*/, ''), deny[1].replace(/ -j .*/, ''), 'the LOG rule matches what the DROP rule matches');

  const testMode = compileIptables(hostOf('crm-prod-app-1'));
  assert.deepEqual(chainRules(testMode.iptables, 'BH-EGRESS').slice(-2), [
    '-A BH-EGRESS -m limit --limit 10/second -m comment --comment "default" -j LOG --log-prefix "bh test-drop default "',
    '-A BH-EGRESS -m comment --comment "default" -j ACCEPT',
  ]);
  assert.doesNotMatch(testMode.iptables + testMode.ip6tables, /-j DROP/);
  assert.match(testMode.iptables, /-j LOG --log-prefix "bh test-drop [^"]+ "\n-A BH-(IN|E)GRESS .* -j ACCEPT/);

  const vis = compileIptables(hostOf('shop-dev-web-1'));
  for (const text of [vis.iptables, vis.ip6tables]) {
    assert.deepEqual(chainRules(text, 'BH-INGRESS'), ['-A BH-INGRESS -m comment --comment "visibility" -j ACCEPT']);
    assert.deepEqual(chainRules(text, 'BH-EGRESS'), ['-A BH-EGRESS -m comment --comment "visibility" -j ACCEPT']);
  }
  assert.doesNotMatch(vis.ipset, /^create/m);

  const idle = compileIptables(hostOf('hr-staging-app-1'));
  assert.equal(idle.rules, 0);
  assert.equal(idle.setElements, 0);
  assert.doesNotMatch(idle.iptables + idle.ip6tables, /^-A /m);
  assert.match(idle.iptables, /:BH-INGRESS - \[0:0\]/, 'the chains are still declared, so a previous policy is flushed');
  assert.doesNotMatch(idle.ipset, /^(create|add)/m);
});

const MULTI = `
services:
  - name: many
    ports: [{ proto: tcp, ports: [${Array.from({ length: 20 }, (_, i) => 2 * i + 1).join(', ')}, "100-110", "200-210", 300] }]
  - name: edge
    ports: [{ proto: udp, ports: [${Array.from({ length: 14 }, (_, i) => 2 * i + 1).join(', ')}, "100-110"] }]
  - name: fifteen
    ports: [{ proto: sctp, ports: [${Array.from({ length: 15 }, (_, i) => 2 * i + 1).join(', ')}] }]
  - name: unreachable
    ports: ["3:0/icmp", "3:1/icmp", "3:2/icmp", "3:3/icmp", 11/icmp, "1:4/icmpv6", "1:5/icmpv6"]
workloads:
  - { name: a, addresses: [10.0.0.1, "2001:db8::1"], labels: { role: a } }
  - { name: b, addresses: [10.0.0.2, "2001:db8::2"], labels: { role: b } }
rulesets:
  - name: r
    rules:
      - { id: many-in, from: ["role == 'a'"], to: ["role == 'b'"], services: [many] }
      - { id: edge-in, from: ["role == 'a'"], to: ["role == 'b'"], services: [edge] }
      - { id: fifteen-in, from: ["role == 'a'"], to: ["role == 'b'"], services: [fifteen] }
      - { id: icmp-in, from: ["role == 'a'"], to: ["role == 'b'"], services: [unreachable] }
      - { id: many-deny, action: deny, from: ["role == 'b'"], to: ["role == 'a'"], services: [many] }
`;

/** The port items of a rule's multiport or dport match, and their weight. */
function portsOf(line: string): { items: string[]; weight: number } {
  const m = / --dports? (\S+)/.exec(line);
  assert.ok(m, line);
  const items = m[1].split(',');
  return { items, weight: items.reduce((w, x) => w + (x.includes(':') ? 2 : 1), 0) };
}

test('multiport: at most 15 ports a rule, a range counting two, split in order with one verdict', () => {
  const c = policyFromYaml(MULTI);
  assert.equal(c.diagnostics.errorCount, 0);
  const b = compileIptables(hostOf('b', c));
  const all = [...Array.from({ length: 20 }, (_, i) => `${2 * i + 1}`), '100:110', '200:210', '300'];
  for (const text of [b.iptables, b.ip6tables]) {
    const many = chainRules(text, 'BH-INGRESS').filter((l) => l.includes('"many-in"'));
    assert.equal(many.length, 2);
    assert.deepEqual(many.map((l) => portsOf(l).weight), [15, 10]);
    assert.deepEqual(many.flatMap((l) => portsOf(l).items), all, 'the ports in order, none lost');
    for (const l of many) assert.match(l, /^-A BH-INGRESS -p tcp -m set --match-set \S+ src -m multiport --dports \S+ -m comment --comment "many-in" -j ACCEPT$/);
    // 14 ports and a range weigh 16: the range moves to a rule of its own, with --dport.
    const edge = chainRules(text, 'BH-INGRESS').filter((l) => l.includes('"edge-in"'));
    assert.deepEqual(edge.map((l) => portsOf(l).weight), [14, 2]);
    assert.match(edge[0], /-p udp .* -m multiport --dports 1,3,/);
    assert.match(edge[1], /-p udp .* -m udp --dport 100:110 /);
    // Exactly 15 single ports still fit in one rule.
    const fifteen = chainRules(text, 'BH-INGRESS').filter((l) => l.includes('"fifteen-in"'));
    assert.equal(fifteen.length, 1);
    assert.match(fifteen[0], /-p sctp .* -m multiport --dports 1,3,5,7,9,11,13,15,17,19,21,23,25,27,29 /);
  }
  // A deny splits the same way, each part logged and dropped.
  const a = compileIptables(hostOf('a', c));
  const deny = chainRules(a.iptables, 'BH-INGRESS').filter((l) => l.includes('"many-deny"'));
  assert.deepEqual(deny.map((l) => l.replace(/.* -j (\S+).*/, '$1')), ['LOG', 'DROP', 'LOG', 'DROP']);
  assert.deepEqual(deny.map((l) => portsOf(l).weight), [15, 15, 10, 10]);
});

test('ICMP: a type with every code is one rule, a code range one rule per code; ICMPv6 in ip6tables only', () => {
  const b = compileIptables(hostOf('b', policyFromYaml(MULTI)));
  const v4 = chainRules(b.iptables, 'BH-INGRESS').filter((l) => l.includes('"icmp-in"'));
  assert.deepEqual(v4.map((l) => /--icmp-type (\S+)/.exec(l)?.[1]), ['3/0', '3/1', '3/2', '3/3', '11']);
  for (const l of v4) assert.match(l, /^-A BH-INGRESS -p icmp -m set --match-set \S+-4 src -m icmp --icmp-type /);
  const v6 = chainRules(b.ip6tables, 'BH-INGRESS').filter((l) => l.includes('"icmp-in"'));
  assert.deepEqual(v6.map((l) => /--icmpv6-type (\S+)/.exec(l)?.[1]), ['1/4', '1/5']);
  for (const l of v6) assert.match(l, /^-A BH-INGRESS -p ipv6-icmp -m set --match-set \S+-6 src -m icmp6 --icmpv6-type /);
  assert.doesNotMatch(b.iptables, /icmpv6|ipv6-icmp/);
  assert.doesNotMatch(b.ip6tables, /-p icmp /);
});

test('ICMP type 255 (which iptables reads as any type) fails closed', () => {
  const c = policyFromYaml(`
workloads:
  - { name: a, addresses: [10.0.0.1], labels: { role: a } }
  - { name: b, addresses: [10.0.0.2], labels: { role: b } }
rulesets:
  - name: r
    rules:
      - { id: odd-allow, from: ["role == 'a'"], to: ["role == 'b'"], services: ["255/icmp", 443/tcp] }
      - { id: odd-deny, action: deny, from: ["role == 'a'"], to: ["role == 'b'"], services: ["255:3/icmp"] }
`);
  const b = compileIptables(hostOf('b', c));
  const codes = b.diagnostics.map((d) => `${d.code} ${d.severity}`);
  assert.deepEqual(codes, ['BH902 warning', 'BH901 error']);
  assert.match(b.diagnostics[1].message, /^rule `odd-allow` limits a service to ICMP type `255`, which iptables reads as every ICMP type, which iptables cannot match here; the allow is left out for b$/);
  assert.match(b.diagnostics[0].message, /^deny rule `odd-deny` .* it denies more widely on b$/);
  const rules = chainRules(b.iptables, 'BH-INGRESS');
  assert.deepEqual(rules.filter((l) => l.includes('"odd-allow"')).map((l) => / -p (\S+)/.exec(l)?.[1]), ['tcp'], 'the rest of the allow stays');
  assert.deepEqual(rules.filter((l) => l.includes('"odd-deny"')).map((l) => l.replace(/.*-p icmp -m set --match-set \S+ src /, '')), [
    '-m limit --limit 10/second -m comment --comment "odd-deny" -j LOG --log-prefix "bh drop odd-deny "',
    '-m comment --comment "odd-deny" -j DROP',
  ]);
});

test('fail closed: a program restriction drops an allow and keeps a deny broader; a user is matched on egress only', () => {
  const c = policyFromYaml(`
services:
  - { name: web, ports: [443/tcp], process: /usr/sbin/nginx }
  - { name: ssh-as-root, ports: [22/tcp], user: root }
  - { name: mail-as-postfix, ports: [25/tcp], user: postfix }
workloads:
  - { name: a, addresses: [10.0.0.1], labels: { role: a } }
  - { name: b, addresses: [10.0.0.2], labels: { role: b } }
rulesets:
  - name: r
    rules:
      - { id: a-web, from: ["role == 'a'"], to: ["role == 'b'"], services: [web] }
      - { id: no-ssh, action: deny, from: ["role == 'b'"], to: ["role == 'a'"], services: [ssh-as-root] }
      - { id: mail-out, from: ["role == 'b'"], to: ["role == 'a'"], services: [mail-as-postfix] }
`);
  const hc = new HostCompiler(c.ir);
  const b = compileIptables(hc.host(1)!);
  const bh901 = b.diagnostics.find((d) => d.code === 'BH901');
  assert.ok(bh901 && bh901.severity === 'error' && bh901.message.includes('`a-web`') && bh901.message.includes('program `/usr/sbin/nginx`'), 'the allow is reported');
  assert.ok(bh901.loc, 'with the rule\'s position');
  assert.doesNotMatch(b.iptables, /"a-web"/, 'the allow is left out');
  const bOut = chainRules(b.iptables, 'BH-EGRESS');
  assert.ok(bOut.some((l) => /-p tcp -m set --match-set \S+ dst -m tcp --dport 22 -m owner --uid-owner root -m comment --comment "no-ssh" -j DROP$/.test(l)), 'a user restriction on egress is enforced');
  assert.ok(bOut.some((l) => /-m tcp --dport 25 -m owner --uid-owner postfix -m comment --comment "mail-out" -j ACCEPT$/.test(l)));
  const a = compileIptables(hc.host(0)!);
  assert.deepEqual(a.diagnostics.map((d) => d.code), ['BH902', 'BH901', 'BH901'], 'a-web is also on a\'s egress');
  assert.match(a.diagnostics[2].message, /`a-web` limits a service to program /);
  assert.match(a.diagnostics[0].message, /^deny rule `no-ssh` limits a service to user `root` on ingress, which iptables cannot match; it denies for every program on a$/);
  assert.match(a.diagnostics[1].message, /`mail-out` limits a service to user `postfix` on ingress/);
  const aIn = chainRules(a.iptables, 'BH-INGRESS');
  assert.ok(aIn.some((l) => /-p tcp -m set --match-set \S+ src -m tcp --dport 22 -m comment --comment "no-ssh" -j DROP$/.test(l)), 'the deny stays, without the user');
  assert.doesNotMatch(a.iptables + a.ip6tables, /owner/, 'no owner match on ingress');
  assert.doesNotMatch(a.iptables, /"mail-out"/);
});

test('comments and log prefixes fit the kernel\'s limits and cannot break out of their quotes', () => {
  const h = hostOf('b', policyFromYaml(MULTI));
  const odd = 'x"y\\z\u00e9-and-a-very-long-rule-identifier-'.padEnd(300, 'q');
  const deny = { ...h, mode: 'enforce' as const, ingress: h.ingress.map((r) => ({ ...r, action: 'deny' as const, rule: { ...r.rule, id: r.rule.id === 'many-in' ? odd : r.rule.id } })) };
  const a = compileIptables(deny);
  const lines = chainRules(a.iptables, 'BH-INGRESS');
  for (const l of lines) {
    const t = tokenize(l);
    const comment = t[t.indexOf('--comment') + 1];
    assert.ok(Buffer.byteLength(comment) <= 255, comment);
    assert.doesNotMatch(comment, /["\\]|[^\x20-\x7e]/);
    const lp = t.indexOf('--log-prefix');
    if (lp >= 0) assert.ok(Buffer.byteLength(t[lp + 1]) <= 29, t[lp + 1]);
  }
  const prefixes = lines.filter((l) => l.includes('LOG')).map((l) => tokenize(l).at(-1)!);
  assert.ok(prefixes.includes('bh drop x_y_z_-and-a-very-~0 '), prefixes.join('|'));
  assert.ok(prefixes.includes('bh drop edge-in '));
  const testMode = compileIptables({ ...deny, mode: 'test' });
  const tp = chainRules(testMode.iptables, 'BH-INGRESS').filter((l) => l.includes('LOG')).map((l) => tokenize(l).at(-1)!);
  assert.ok(tp.includes('bh test-drop x_y_z_-and-a-~0 '), tp.join('|'));
  assert.ok(tp.includes('bh test-drop fifteen-in '));
  assert.ok(tp.every((p) => p.length <= 29));
});

// --- semantics: the output, interpreted, against the engine ---------------------------------------

/** Addresses at the edges of a set's first `max` ranges per family: inside, and just outside when `outside`. */
function samplesOf(set: { v4: { bounds: ArrayLike<number> }; v6: { bounds: ArrayLike<bigint> } }, max = 3, outside = true): Addr[] {
  const out: Addr[] = [];
  const b4 = set.v4.bounds;
  for (let i = 0; i < Math.min(b4.length, 2 * max); i += 2) {
    for (const a of outside ? [b4[i] - 1, b4[i], b4[i + 1], b4[i + 1] + 1] : [b4[i], b4[i + 1]]) if (a >= 0 && a <= 0xffffffff) out.push(a);
  }
  const b6 = set.v6.bounds;
  for (let i = 0; i < Math.min(b6.length, 2 * max); i += 2) {
    for (const a of outside ? [b6[i] - 1n, b6[i], b6[i + 1], b6[i + 1] + 1n] : [b6[i], b6[i + 1]]) if (a >= 0n && a < 1n << 128n) out.push(a);
  }
  return out;
}

/** What the host's chains must do with a flow, from the engine's side decision. */
function expected(mode: string, side: { action: string; rule: string | null }): Outcome & { logHead?: string } {
  if (mode === 'idle') return { target: 'RETURN', logs: [] };
  if (mode === 'visibility') return { target: 'ACCEPT', comment: 'visibility', logs: [] };
  const comment = side.rule ?? 'default';
  if (side.action === 'allow') return { target: 'ACCEPT', comment, logs: [] };
  if (mode === 'enforce') return { target: 'DROP', comment, logs: ['x'], logHead: 'bh drop ' };
  return { target: 'ACCEPT', comment, logs: ['x'], logHead: 'bh test-drop ' };
}

/**
 * Compiles every managed host, interprets its output over sampled flows to and
 * from it, and compares with the engine's decision for that host's side.
 * Returns how many flows were checked, by outcome.
 */
function semanticCheck(c: Compiled, seed: number, perHost: number, options = {}): Map<string, number> {
  const ir = c.ir;
  const ev = new Evaluator(ir, { cacheBits: 0 });
  const hc = new HostCompiler(ir);
  const rng = new Rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)];
  const extern = ['8.8.8.8', '198.51.100.20', '203.0.113.9', '10.99.0.5', '10.99.1.1', '2001:db8:ffff::1', '2606:4700::1111'].map((s) => parseAddr(s)!);
  const pool: Addr[] = [...extern];
  for (const w of ir.workloads) for (const p of w.addresses) pool.push(p.addr);
  const conns: { proto: number; port: number }[] = [];
  const key = (k: number) => conns.push({ proto: Math.floor(k / 65536), port: k % 65536 });
  for (const r of ir.rules) {
    const b = r.conns.keys.bounds;
    for (let i = 0; i < b.length; i += 2) for (const k of [b[i] - 1, b[i], b[i + 1], b[i + 1] + 1]) if (k >= 0 && k <= ConnSet.MAX_KEY) key(k);
  }
  for (const [proto, port] of [[6, 22], [6, 443], [17, 53], [1, 8 * 256], [58, 128 * 256], [58, 135 * 256], [58, 136 * 256], [47, 0], [132, 9]]) conns.push({ proto, port });
  const stats = new Map<string, number>();
  const failures: string[] = [];
  ir.workloads.forEach((w, i) => {
    const h = hc.host(i);
    if (!h) return;
    const a = compileIptables(h, options);
    const chains = { 4: new Chains(a.iptables, a.ipset, 4), 6: new Chains(a.ip6tables, a.ipset, 6) };
    const own = samplesOf(h.addresses, 8, false);
    const peers = [...pool, ...h.ingress.flatMap((r) => samplesOf(r.peer)), ...h.egress.flatMap((r) => samplesOf(r.peer))].filter((p) => !h.addresses.has(p));
    for (let n = 0; n < perHost; n++) {
      const me = pick(own);
      const f = typeof me === 'number' ? 4 : 6;
      const famPeers = peers.filter((p) => typeof p === typeof me);
      if (famPeers.length === 0) continue;
      const peer = pick(famPeers);
      const conn = pick(conns);
      // ICMP and ICMPv6 belong to one family each.
      if ((f === 4 && conn.proto === 58) || (f === 6 && conn.proto === 1)) continue;
      const ingress = rng.chance(0.5);
      const flow = ingress ? { src: peer, dst: me, ...conn } : { src: me, dst: peer, ...conn };
      const got = chains[f].run(ingress ? IPTABLES_CHAINS.input : IPTABLES_CHAINS.output, flow);
      const d = ev.decide(flow);
      const side = ingress ? d.ingress : d.egress;
      assert.ok(side, 'a managed end has a side decision');
      let want: Outcome & { logHead?: string } = expected(h.mode, side);
      const cp = options && 'failsafe' in options && h.mode !== 'idle' && peer === 0x0a630005;
      const mgmt = options && 'failsafe' in options && h.mode !== 'idle' && ingress && typeof peer === 'number' && peer >>> 16 === 0x0a63 && conn.proto === 6 && conn.port === 22;
      if (h.mode !== 'idle' && conn.proto === 58 && [133, 134, 135, 136].includes(conn.port >> 8)) want = { target: 'ACCEPT', comment: 'neighbour discovery', logs: [] };
      else if (cp) want = { target: 'ACCEPT', comment: 'failsafe: control plane', logs: [] };
      else if (mgmt) want = { target: 'ACCEPT', comment: 'failsafe: management', logs: [] };
      const ok = got.target === want.target && got.comment === want.comment && got.logs.length === want.logs.length && (!want.logHead || got.logs[0].startsWith(want.logHead));
      if (!ok && failures.length < 5) failures.push(`${w.name} ${ingress ? 'ingress' : 'egress'} ${JSON.stringify(flow, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}: chains say ${JSON.stringify(got)}, engine ${JSON.stringify(want)}`);
      const label = `${h.mode} ${want.target} ${want.comment === side.rule ? (side.action === 'allow' ? 'allow-rule' : 'deny-rule') : want.comment}`;
      stats.set(label, (stats.get(label) ?? 0) + 1);
    }
  });
  assert.deepEqual(failures, []);
  return stats;
}

test('semantics: the interpreted chains of every managed host of the sample estate agree with the engine', () => {
  const stats = semanticCheck(sampleEstate(), 1, 400, { failsafe: FAILSAFE });
  const total = [...stats.values()].reduce((a, b) => a + b, 0);
  assert.ok(total > 20000, `${total} flows`);
  for (const label of ['enforce ACCEPT allow-rule', 'enforce DROP deny-rule', 'enforce DROP default', 'test ACCEPT deny-rule', 'test ACCEPT default', 'visibility ACCEPT visibility', 'idle RETURN undefined', 'enforce ACCEPT failsafe: control plane', 'enforce ACCEPT neighbour discovery']) {
    assert.ok((stats.get(label) ?? 0) > 0, `the sample exercises ${label}: ${JSON.stringify([...stats])}`);
  }
});

test('semantics: own-address qualifiers, multiport splits and ICMP codes agree with the engine', () => {
  const c = policyFromYaml(`${MULTI}
  - name: own
    rules:
      - { id: own-two, from: ["role == 'a'"], to: [{ cidr: 10.0.1.0/30 }], services: [443/tcp] }
      - { id: own-one, action: deny, from: [{ cidr: 10.0.5.0/24 }], to: [{ cidr: 10.0.1.2/32 }], services: [any] }
      - { id: own-b, from: [any], to: [{ cidr: 10.0.1.2/31 }], services: [22/tcp] }
`.replace('workloads:', 'workloads:\n  - { name: c, addresses: [10.0.1.1, 10.0.1.2, 10.0.1.3, 10.0.1.9], labels: { role: c } }'));
  assert.equal(c.diagnostics.errorCount, 0, JSON.stringify(c.diagnostics.items));
  const h = hostOf('c', c);
  assert.ok(h.ingress.some((r) => r.own), 'the policy exercises own-address qualifiers');
  const a = compileIptables(h);
  assert.match(a.iptables, /-m set --match-set \S+ dst .*"own-two"/, 'several own addresses go through a set');
  assert.match(a.iptables, /-A BH-INGRESS -d 10\.0\.1\.2\/32 -m set --match-set \S+ src .*"own-one"/, 'a single own prefix is inline');
  semanticCheck(c, 2, 3000);
});

for (const seed of [11, 12]) {
  test(`semantics: a generated estate agrees with the engine (seed ${seed})`, () => {
    const c = policyFromDoc(generateEstate({ seed, workloads: 250, rules: 90 }));
    assert.equal(c.diagnostics.errorCount, 0);
    const stats = semanticCheck(c, seed, 60);
    assert.ok((stats.get('enforce DROP default') ?? 0) + (stats.get('enforce DROP deny-rule') ?? 0) > 0);
  });
}

// --- the kernel: restore in a network namespace of our own -----------------------------------------

const ns = `bhchk-${randomBytes(4).toString('hex')}`;
let nsMade = false;
after(() => {
  if (nsMade) spawnSync('ip', ['netns', 'del', ns]);
});

function inNs(argv: readonly string[], input?: string): { status: number | null; out: string; err: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], { input, encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

function makeNs(): void {
  const r = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  nsMade = true;
}

function dropNs(): void {
  if (nsMade) spawnSync('ip', ['netns', 'del', ns]);
  nsMade = false;
}

/** Loads the sets, then checks both rule files with `--test` (nothing is committed). */
function restoreTest(a: IptablesArtifact): void {
  const s = inNs(['ipset', 'restore'], a.ipset);
  assert.equal(s.status, 0, `${a.workload}: ipset restore: ${s.err}`);
  const v4 = inNs(['iptables-restore', '--noflush', '--test'], a.iptables);
  assert.equal(v4.status, 0, `${a.workload}: iptables-restore --test: ${v4.err}`);
  const v6 = inNs(['ip6tables-restore', '--noflush', '--test'], a.ip6tables);
  assert.equal(v6.status, 0, `${a.workload}: ip6tables-restore --test: ${v6.err}`);
}

/** Applies an artifact the way the adapter will: sets, rules, jumps. */
function apply(a: IptablesArtifact): void {
  assert.equal(inNs(['ipset', 'restore'], a.ipset).status, 0);
  const v4 = inNs(['iptables-restore', '--noflush'], a.iptables);
  assert.equal(v4.status, 0, v4.err);
  const v6 = inNs(['ip6tables-restore', '--noflush'], a.ip6tables);
  assert.equal(v6.status, 0, v6.err);
  for (const j of iptablesJumpCommands()) {
    const check = inNs(j.check);
    assert.ok(check.status === 0 || check.status === 1, check.err);
    if (check.status === 1) assert.equal(inNs(j.insert).status, 0);
  }
}

function saved(bin: 'iptables-save' | 'ip6tables-save'): string[] {
  const r = inNs([bin, '-t', 'filter']);
  assert.equal(r.status, 0, r.err);
  return r.out.split('\n');
}

function loadedSets(): string[] {
  const r = inNs(['ipset', 'list', '-n']);
  assert.equal(r.status, 0, r.err);
  return r.out.split('\n').filter(Boolean);
}

test('kernel: ipset restore and iptables-restore --test accept every managed host of the sample estate', { skip }, () => {
  makeNs();
  try {
    const c = sampleEstate();
    const hc = new HostCompiler(c.ir);
    let n = 0;
    c.ir.workloads.forEach((_, i) => {
      const h = hc.host(i);
      if (!h) return;
      const a = compileIptables(h, { failsafe: FAILSAFE });
      restoreTest(a);
      // Restoring the sets again changes nothing and fails nothing.
      if (n % 25 === 0) assert.equal(inNs(['ipset', 'restore'], a.ipset).status, 0);
      n++;
    });
    assert.ok(n > 100, `${n} hosts`);
    for (const h of [hostOf('a', policyFromYaml(MULTI)), hostOf('b', policyFromYaml(MULTI))]) restoreTest(compileIptables(h));
    // The check has teeth: what the kernel cannot take is refused.
    const b = compileIptables(hostOf('b', policyFromYaml(MULTI)));
    const sixteen = b.iptables.replace('--dports 1,3,', '--dports 999,1,3,');
    assert.notEqual(inNs(['iptables-restore', '--noflush', '--test'], sixteen).status, 0, 'a 16-port multiport is refused');
    const missing = b.iptables.replace(/--match-set bh-[0-9a-f]+-4/, '--match-set bh-0000000000000000-4');
    assert.notEqual(inNs(['iptables-restore', '--noflush', '--test'], missing).status, 0, 'a missing set is refused');
    assert.notEqual(inNs(['ipset', 'restore'], 'create bh-x-4 hash:net family inet -exist\nadd bh-x-4 0.0.0.0/0 -exist\n').status, 0, 'hash:net refuses a /0');
  } finally {
    dropNs();
  }
});

test('kernel: apply is repeatable, jumps once, replaces only our chains, and cleans up stale sets safely', { skip }, () => {
  makeNs();
  try {
    // Someone else's chain, jump and set must survive everything we do.
    assert.equal(inNs(['iptables', '-w', '-N', 'OTHER']).status, 0);
    assert.equal(inNs(['iptables', '-w', '-A', 'OTHER', '-p', 'tcp', '--dport', '8', '-j', 'ACCEPT']).status, 0);
    assert.equal(inNs(['iptables', '-w', '-A', 'INPUT', '-j', 'OTHER']).status, 0);
    assert.equal(inNs(['ipset', 'create', 'other-set', 'hash:ip']).status, 0);

    const a = compileIptables(hostOf('payments-prod-db-1'), { failsafe: FAILSAFE });
    const b = compileIptables(hostOf('crm-prod-app-1'), { failsafe: FAILSAFE });
    apply(a);
    apply(a);
    const ours = (lines: string[]) => lines.filter((l) => /^-A BH-/.test(l));
    const jumps = (lines: string[], chain: string, target: string) => lines.filter((l) => l === `-A ${chain} -j ${target}`).length;
    let v4 = saved('iptables-save');
    let v6 = saved('ip6tables-save');
    assert.equal(ours(v4).length + ours(v6).length, a.rules, 'applied twice, the rules are there once');
    assert.equal(jumps(v4, 'INPUT', 'BH-INPUT'), 1);
    assert.equal(jumps(v4, 'OUTPUT', 'BH-OUTPUT'), 1);
    assert.equal(jumps(v6, 'INPUT', 'BH-INPUT'), 1);
    assert.equal(v4.findIndex((l) => l.startsWith('-A INPUT ')), v4.indexOf('-A INPUT -j BH-INPUT'), 'our jump comes first');
    assert.deepEqual(loadedSets().filter((n) => n.startsWith('bh-')).sort(), ipsetNames(a).sort());

    // Destroying a's sets while a's rules still name them is refused by the kernel: nothing breaks.
    const early = staleIpsetCommands(b, loadedSets());
    assert.ok(early.length > 0);
    assert.ok(early.some((cmd) => inNs(cmd).status !== 0), 'sets in use cannot be destroyed');
    assert.equal(ours(saved('iptables-save')).length + ours(saved('ip6tables-save')).length, a.rules);

    // Switch to b, then clean up: only b's sets remain (and the other set).
    apply(b);
    for (const cmd of staleIpsetCommands(b, loadedSets())) assert.equal(inNs(cmd).status, 0, cmd.join(' '));
    assert.deepEqual(loadedSets().filter((n) => n.startsWith('bh-')).sort(), ipsetNames(b).sort());
    v4 = saved('iptables-save');
    v6 = saved('ip6tables-save');
    assert.equal(ours(v4).length + ours(v6).length, b.rules);
    assert.ok(v4.some((l) => l.includes('--log-prefix "bh test-drop default "')));
    assert.ok(!v4.some((l) => / -j DROP$/.test(l) && l.startsWith('-A BH-')), 'b is in test mode: nothing of a is left');
    assert.equal(jumps(v4, 'INPUT', 'BH-INPUT'), 1);

    // Idle empties our chains and leaves the jumps: nothing is programmed.
    apply(compileIptables(hostOf('hr-staging-app-1')));
    v4 = saved('iptables-save');
    assert.equal(ours(v4).length + ours(saved('ip6tables-save')).length, 0);
    assert.equal(jumps(v4, 'INPUT', 'BH-INPUT'), 1);

    assert.ok(v4.includes('-A INPUT -j OTHER'), 'the other jump is untouched');
    assert.ok(v4.some((l) => l.startsWith('-A OTHER -p tcp')), 'the other chain is untouched');
    assert.ok(loadedSets().includes('other-set'), 'the other set is untouched');
  } finally {
    dropNs();
  }
});
