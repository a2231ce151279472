/**
 * The agent's iptables backend, without the kernel: the text the server sends
 * (iptablesDocument) read back, and refused when it touches anything but
 * bulkhead's chains and sets; the NFLOG rewrite; counters from
 * `iptables-save -c`; the choice of backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HostCompiler } from '../../src/compile/host.js';
import { compileIptables, foreignRule, iptablesDocument, parseIptablesDocument } from '../../src/compile/iptables.js';
import { iptablesCounters, routeIptablesLogsToNflog } from '../../src/agent/enforce-iptables.js';
import { chooseBackend } from '../../src/agent/agent.js';
import { sampleEstate, sampleHost } from '../helpers/estate.js';

function artifact(name: string) {
  const host = sampleHost(name);
  return { a: compileIptables(host, { failsafe: { managementPrefixes: [], managementPorts: [], controlPlane: [] } }), mode: host.mode };
}

/** A restore file as the agent loads it: its comment and blank lines dropped. */
const checked = (s: string) => s.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#')).join('\n') + '\n';

test('the document: one header line naming the workload, then the three files, read back as they were (without comments)', () => {
  for (const name of ['payments-prod-db-1', 'crm-prod-app-1', 'hr-staging-app-1']) {
    const { a, mode } = artifact(name);
    const doc = iptablesDocument(a, mode);
    assert.equal(doc.split('\n')[0], `# bulkhead iptables rules for ${name} (mode ${mode})`);
    assert.equal(doc.split(name).length - 1, 1, 'the name is in the first line only: the rest is shared by hosts with the same rules');
    const p = parseIptablesDocument(doc);
    assert.ok(p.ok, p.ok ? '' : p.error);
    assert.equal(p.files.ipset, a.ipset.includes('\ncreate ') ? checked(a.ipset) : '');
    assert.equal(p.files.iptables, checked(a.iptables));
    assert.equal(p.files.ip6tables, checked(a.ip6tables));
  }
});

test('every ruleset the compiler writes passes the check, also with its logs routed to NFLOG (no false refusals)', () => {
  const c = sampleEstate();
  const hc = new HostCompiler(c.ir);
  let n = 0;
  c.ir.workloads.forEach((w, i) => {
    const h = hc.host(i);
    if (!h) return;
    const a = compileIptables(h, { failsafe: { managementPrefixes: [{ addr: 0x0a630000, len: 16 }], managementPorts: [{ proto: 6, port: 22 }], controlPlane: [{ addr: 0x0a630005, len: 32 }] } });
    const p = parseIptablesDocument(iptablesDocument(a, h.mode));
    assert.ok(p.ok, `${w.name}: ${p.ok ? '' : p.error}`);
    const routed = routeIptablesLogsToNflog(p.files, 6268);
    for (const line of (routed.iptables + routed.ip6tables).split('\n').filter((l) => l.startsWith('-A '))) assert.equal(foreignRule(line), undefined, `${w.name}: ${line}`);
    n++;
  });
  assert.ok(n > 100, `${n} hosts`);
  // A rule id with spaces and option-like words is quoted: it is a comment, not an option.
  assert.equal(foreignRule('-A BH-INGRESS -p tcp -m tcp --dport 22 -m comment --comment "a -j DROP --goto x" -j ACCEPT'), undefined);
});

test('the document is refused when it touches anything but bulkhead\'s chains and sets', () => {
  const { a, mode } = artifact('payments-prod-db-1');
  const doc = iptablesDocument(a, mode);
  assert.ok(parseIptablesDocument(doc).ok);
  const bad: [string, string, RegExp][] = [
    ['another table', doc.replace('*filter', '*nat'), /names a table other than filter/],
    ['a built-in chain declared', doc.replace(':BH-INPUT - [0:0]', ':INPUT ACCEPT [0:0]'), /is not about bulkhead's chains/],
    ['a rule in a built-in chain', doc.replace('COMMIT', '-A INPUT -j ACCEPT\nCOMMIT'), /is not a rule appended to one of bulkhead's chains/],
    ['a jump to a host chain', doc.replace(/^(-A BH-INGRESS .*) -j DROP$/m, '$1 -j DOCKER'), /jumps to `DOCKER`/],
    ['a goto', doc.replace(/^(-A BH-INGRESS .*) -j DROP$/m, '$1 -g OTHER'), /has `-g`, which bulkhead never writes/],
    ['two targets', doc.replace(/^(-A BH-INGRESS .*) -j DROP$/m, '$1 -j ACCEPT -j DROP'), /more than one target/],
    ['a delete hidden in a rule', doc.replace(/^-A BH-INGRESS /m, '-A BH-INGRESS -D INPUT '), /has `-D`/],
    // What a regex over the raw line would miss: long option names, decoys in quotes, tabs.
    ['--jump behind a decoy in a comment', doc.replace(/^(-A BH-INGRESS .*) -j DROP$/m, '$1 -m comment --comment "a -j DROP b" --jump SET --add-set hostallow src'), /has `--jump`/],
    ['--goto', doc.replace(/^(-A BH-INGRESS .*) -j DROP$/m, '$1 --goto HOSTCHAIN'), /has `--goto`/],
    ['a tab before the target', doc.replace(/^(-A BH-INGRESS .*) -j DROP$/m, '$1 -j\tSET --del-set f2b-sshd src'), /a control or non-ASCII character/],
    // The tools read long lines in pieces and run each piece: a comment or a rule that long could carry a command.
    ['a long comment line with a command past iptables-restore\'s buffer', doc.replace('*filter', `#${'x'.repeat(10238)}-I FORWARD 1 -j ACCEPT\n*filter`), /longer than 1000 bytes/],
    ['a long comment line in the ipset part', doc.replace('### iptables', `#${'x'.repeat(1022)}create evil hash:ip\n### iptables`), /longer than 1000 bytes/],
    ['a long rule line', doc.replace(/^(-A BH-INGRESS .*) -j DROP$/m, `$1 -j DROP${' '.repeat(10000)}-m comment --comment "abc-I INPUT 1 -j ACCEPT"`), /longer than 1000 bytes/],
    ['a NUL in a comment', doc.replace(/--comment "([^"]*)"/, '--comment "$1\u0000 -j ACCEPT"'), /a control or non-ASCII character/],
    ['a name where an address goes', doc.replace(/^-A BH-INGRESS /m, '-A BH-INGRESS -s cafe '), /has `-s cafe`/],
    ['an IPv4 shorthand', doc.replace(/^(add bh-[0-9a-f]{16}-4 )\S+ -exist$/m, '$110.1 -exist'), /not an address/],
    ['a set asking for a huge hash', doc.replace(/^(create bh-[0-9a-f]{16}-4 hash:net family inet hashsize )\d+/m, '$1999999999'), /hashsize or maxelem bulkhead would not give/],
    ['a host set matched', doc.replace(/--match-set bh-[0-9a-f]{16}-4 src/, '--match-set f2b-sshd src'), /matches set `f2b-sshd`, which the text does not create/],
    ['a set of bulkhead\'s shape the text does not create', doc.replace(/--match-set bh-[0-9a-f]{16}-4 src/, '--match-set bh-0123456789abcdef-4 src'), /which the text does not create/],
    ['an IPv6 set in the IPv4 file', doc.replace(/(### iptables[\s\S]*?)--match-set bh-[0-9a-f]{16}-4 /, `$1--match-set ${/^create (bh-[0-9a-f]{16}-6) /m.exec(doc)![1]} `), /of the other family/],
    // The shape of a restore file: without the declarations, new rules would go behind the old ones.
    ['rules without their chain declared', doc.replace(':BH-INGRESS - [0:0]\n', ''), /before all four of bulkhead's chains are declared/],
    ['an empty iptables part', doc.replace(/### iptables\n[\s\S]*?### ip6tables/, '### iptables\n### ip6tables'), /the iptables part does not end with COMMIT/],
    ['a second filter block', doc.replace(/(### ip6tables)/, '*filter\n:BH-INPUT - [0:0]\nCOMMIT\n$1'), /comes after COMMIT/],
    ['sections out of order', doc.replace('### iptables', '### ipsetX').replace('### ip6tables', '### iptables').replace('### ipsetX', '### ip6tables'), /unexpected section/],
    ['NFLOG from the server', doc.replace(/-j LOG --log-prefix "([^"]*)"/, '-j NFLOG --nflog-group 1 --nflog-prefix "$1"'), /NFLOG, which only the agent writes/],
    ['a port with a leading zero (octal to iptables)', doc.replace(/--dport (\d+)/, '--dport 0$1'), /has `--dport 0\d+`/],
    ['another match module', doc.replace(/^(-A BH-INGRESS .*) -j DROP$/m, '$1 -m recent --name X --remove -j DROP'), /has `-m recent`/],
    ['a quote that runs into a word', doc.replace(/--comment "([^"]*)"/, '--comment "$1"x'), /quoted word/],
    ['a set whose members are not its name', doc.replace(/^(add bh-[0-9a-f]{16}-4 )\S+ -exist$/m, '$16.6.6.6 -exist'), /does not hold the members its name is the hash of/],
    ['a set created twice', doc.replace(/^(create bh-[0-9a-f]{16}-4 .*)$/m, '$1\n$1'), /creates the set a second time/],
    ['another set created', doc.replace(/^create bh-[0-9a-f]{16}-4 /m, 'create docker-4 '), /creates a set that is not bulkhead's/],
    ['a set flushed', doc.replace('### iptables', 'flush other-set\n### iptables'), /is not `create` or `add`/],
    ['a set destroyed', doc.replace('### iptables', 'destroy\n### iptables'), /is not `create` or `add`/],
    ['added to another set', doc.replace(/^add bh-[0-9a-f]{16}-4 /m, 'add docker-set '), /adds to a set that is not bulkhead's/],
    ['added to a set not created here', doc.replace(/^add bh-[0-9a-f]{16}-4 /m, 'add bh-0123456789abcdef-4 '), /not created above/],
    ['a section missing', doc.replace(/### ip6tables[\s\S]*$/, ''), /no `### ip6tables` section/],
    ['a section twice', `${doc}### ipset\n`, /unexpected section/],
    ['text before any section', `-A BH-INPUT -j ACCEPT\n${doc}`, /comes before any section/],
  ];
  for (const [what, text, why] of bad) {
    assert.notEqual(text, doc, `${what}: the test changes the document`);
    const p = parseIptablesDocument(text);
    assert.equal(p.ok, false, what);
    assert.match((p as { error: string }).error, why, what);
    assert.match((p as { error: string }).error, /^(line \d+|no `|the ip6?tables part)/, `${what}: says where`);
  }
});

test('NFLOG: log rules become NFLOG rules of the group, with the whole rule id where it fits', () => {
  const files = {
    ipset: '',
    iptables: [
      '-A BH-INGRESS -m set --match-set bh-0000000000000000-4 src -m limit --limit 10/second -m comment --comment "env-prod-to-nonprod" -j LOG --log-prefix "bh test-drop env-prod-to-~11 "',
      '-A BH-INGRESS -m limit --limit 10/second -m comment --comment "default" -j LOG --log-prefix "bh drop default "',
      '-A BH-INGRESS -m comment --comment "default" -j DROP',
      '',
    ].join('\n'),
    ip6tables: `-A BH-EGRESS -m comment --comment "${'x'.repeat(70)}" -j LOG --log-prefix "bh drop xxxxxxxxxxxxxxxxxx~3 "\n`,
  };
  const r = routeIptablesLogsToNflog(files, 6268);
  const lines = r.iptables.split('\n');
  assert.equal(lines[0], '-A BH-INGRESS -m set --match-set bh-0000000000000000-4 src -m limit --limit 10/second -m comment --comment "env-prod-to-nonprod" -j NFLOG --nflog-group 6268 --nflog-prefix "bh test-drop env-prod-to-nonprod "');
  assert.equal(lines[1], '-A BH-INGRESS -m limit --limit 10/second -m comment --comment "default" -j NFLOG --nflog-group 6268 --nflog-prefix "bh drop default "');
  assert.equal(lines[2], files.iptables.split('\n')[2], 'a drop rule is left alone');
  assert.match(r.ip6tables, /-j NFLOG --nflog-group 6268 --nflog-prefix "bh drop x{18}~3 "$/m, 'an id too long for 63 bytes keeps the short prefix');
  // And the kernel-ready artifact of a real host: every LOG rule is routed, nothing else changes.
  const { a } = artifact('payments-prod-db-1');
  const routed = routeIptablesLogsToNflog(a, 7);
  assert.doesNotMatch(routed.iptables, / -j LOG /);
  assert.equal(routed.iptables.split('\n').length, a.iptables.split('\n').length);
  assert.equal((routed.iptables.match(/-j NFLOG --nflog-group 7 /g) ?? []).length, (a.iptables.match(/ -j LOG /g) ?? []).length);
});

test('counters: drops, and test-mode accepts after a test-drop log, from iptables-save -c', () => {
  const saved = [
    '*filter',
    ':BH-INGRESS - [0:0]',
    '[5:300] -A BH-INPUT -m comment --comment "failsafe: control plane" -j ACCEPT',
    '[1:60] -A BH-INGRESS -m set --match-set bh-1-4 src -m limit --limit 10/sec -m comment --comment env-prod-to-nonprod -j NFLOG --nflog-prefix "bh test-drop env-prod-to-nonprod " --nflog-group 1',
    '[2:120] -A BH-INGRESS -m set --match-set bh-1-4 src -m comment --comment env-prod-to-nonprod -j ACCEPT',
    '[9:900] -A BH-INGRESS -p tcp -m tcp --dport 22 -m comment --comment "no ssh" -j DROP',
    '[4:400] -A BH-INGRESS -p tcp -m tcp --dport 80 -m comment --comment web -j ACCEPT',
    '[0:0] -A BH-EGRESS -m comment --comment default -j DROP',
    'COMMIT',
  ].join('\n');
  assert.deepEqual(iptablesCounters(saved), [
    { rule: 'env-prod-to-nonprod', verdict: 'accept', test: true, packets: 2, bytes: 120 },
    { rule: 'no ssh', verdict: 'drop', test: false, packets: 9, bytes: 900 },
    { rule: 'default', verdict: 'drop', test: false, packets: 0, bytes: 0 },
  ]);
});

test('the backend: as asked, or nftables where nft is, else iptables; a clear error without the tools', () => {
  const all = () => true;
  const noNft = (t: string) => t !== 'nft';
  const none = () => false;
  assert.equal(chooseBackend('auto', all), 'nftables');
  assert.equal(chooseBackend('auto', noNft), 'iptables');
  assert.equal(chooseBackend('iptables', all), 'iptables');
  assert.throws(() => chooseBackend('nftables', noNft), /`nft` not found/);
  assert.throws(() => chooseBackend('iptables', (t) => t !== 'ipset'), /`ipset` not found: apt-get install iptables ipset/);
  assert.throws(() => chooseBackend('auto', none), /neither nftables nor iptables \+ ipset is installed/);
});
