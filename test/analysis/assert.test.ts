/** `bulkhead assert`: assertions with known counterexamples, on the small shop and the sample estate; diagnostics; exit codes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Diagnostics } from '../../src/model/diagnostic.js';
import { parseYamlFile } from '../../src/policy/source.js';
import { checkAssertions, loadAssertions, type AssertionOutcome } from '../../src/analysis/assert.js';
import { addrText } from '../../src/analysis/places.js';
import { checkGolden } from '../helpers/golden.js';
import { policyFromYaml } from '../helpers/policy.js';
import { bulkhead } from './cli.js';
import { policyDir, SMALL } from './small.js';

const ESTATE = 'examples/estate/policy';
const NOW = '2026-11-23T00:00:00Z';
const FIXTURES = 'test/fixtures/analysis';

/** Checks assertions written inline against the small shop. */
function check(assertions: string, deployed = false): AssertionOutcome[] {
  const c = policyFromYaml(SMALL);
  const diags = new Diagnostics();
  const list = loadAssertions(parseYamlFile({ path: 'inline-assertions.yaml', text: assertions }, diags), c.ir, diags);
  assert.equal(diags.errorCount, 0, JSON.stringify(diags.items));
  return checkAssertions(c.ir, list, { deployed });
}

/** The first counterexample as one line. */
function example(o: AssertionOutcome): string {
  const e = o.examples[0];
  const end = (p: typeof e.from) => `${p.workload ?? p.ip}@${addrText(p.addr)}`;
  return `${end(e.from)} -> ${end(e.to)} ${e.connection} ${e.outcome} [${e.rules.join(' ')}]${e.open ? ' open' : ''}`;
}

test('assert: never, with a known counterexample and the rule behind it', () => {
  const [holds, fails] = check(`
- name: dev never reaches prod
  never: { from: "env == 'dev'", to: "env == 'prod'" }
- name: nothing but the app tier reaches the database
  never: { from: "role != 'app'", to: "compliance == 'pci'", ports: [tcp] }
`);
  assert.equal(holds.holds, true);
  assert.deepEqual(holds.violations, []);
  assert.equal(fails.holds, false);
  assert.deepEqual(fails.violations.map((v) => `${v.from} -> ${v.to} ${v.conns} [${v.rules}]`), ['role=jump,app=infra,env=prod -> role=db,app=shop,env=prod tcp/22 [jump-ssh]']);
  assert.equal(example(fails), 'jump-1@10.0.9.1 -> db-1@10.0.3.1 22/tcp allowed [jump-ssh]');
});

test('assert: only and ringfence count addresses outside the estate too', () => {
  const [only, fence, fenced] = check(`
- name: only jump hosts use SSH
  only: { from: "role == 'jump'", ports: [22/tcp] }
- name: the database is ring-fenced
  ringfence: { group: "compliance == 'pci'", except: ["role == 'app'"] }
- name: the database is ring-fenced, the jump host excepted
  ringfence: { group: "compliance == 'pci'", except: ["role == 'app'", "role == 'jump'"] }
`);
  assert.equal(only.holds, false);
  assert.equal(example(only), 'vpn@10.200.0.0 -> jump-1@10.0.9.1 22/tcp allowed [vpn-jump]');
  assert.equal(fence.holds, false);
  assert.equal(example(fence), 'jump-1@10.0.9.1 -> db-1@10.0.3.1 22/tcp allowed [jump-ssh]');
  assert.equal(fenced.holds, true);
});

test('assert: an IP list as a destination', () => {
  const [none, some] = check(`
- name: nothing reaches the internet
  only: { from: "role == 'proxy'", to: { iplist: internet } }
- name: nothing reaches the load balancer from the internet on SSH
  never: { from: { iplist: internet }, to: "role == 'lb'", ports: [22/tcp] }
`);
  assert.equal(none.holds, true);
  assert.equal(some.holds, true);
  const [lb] = check(`
- name: the internet never reaches the load balancer
  never: { from: { iplist: internet }, to: "role == 'lb'" }
`);
  assert.equal(example(lb), 'internet@0.0.0.0 -> lb-1@10.0.0.5 443/tcp allowed [internet-lb]');
});

test('assert: reaches, with missing ports and the rules that deny them', () => {
  const [dev, tls] = check(`
- name: every web server reaches every app server
  reaches: { from: "role == 'web'", to: "role == 'app'", ports: [8080/tcp] }
- name: prod web reaches prod app on TLS too
  reaches: { from: "role == 'web' && env == 'prod'", to: "role == 'app' && env == 'prod'", ports: [8080/tcp, 8443/tcp] }
`);
  assert.equal(dev.holds, false);
  assert.deepEqual(dev.violations.map((v) => `${v.from} -> ${v.to} missing ${v.conns} [${v.rules}]`), ['web-dev -> app-1 missing tcp/8080 [no-dev-prod]']);
  assert.equal(example(dev), 'web-dev@10.1.1.1 -> app-1@10.0.2.1 8080/tcp denied [no-dev-prod]');
  assert.equal(tls.holds, false);
  assert.deepEqual(tls.violations.map((v) => `${v.from} -> ${v.to} missing ${v.conns} [${v.rules}]`), ['web-1 -> app-1 missing tcp/8443 []', 'web-2 -> app-1 missing tcp/8443 []']);
});

test('assert: as deployed, ends that do not enforce let everything through', () => {
  const text = `
- name: the dev web server never uses SSH
  never: { from: "role == 'web' && env == 'dev'", to: "env == 'dev'", ports: [22/tcp] }
`;
  assert.equal(check(text)[0].holds, true);
  const [deployed] = check(text, true);
  assert.equal(deployed.holds, false);
  assert.equal(example(deployed), 'web-dev@10.1.1.1 -> app-dev@10.1.2.1 22/tcp allowed [] open');
});

test('assert: the sample estate, with the counterexamples its authors expect', async () => {
  const r = await bulkhead('assert', ESTATE, `${FIXTURES}/estate-assertions.yaml`, '--now', NOW, '--output', 'json');
  assert.equal(r.code, 5, r.err);
  const j = JSON.parse(r.out);
  const by = new Map<string, { holds: boolean; counterexamples: { from: { workload?: string; ip?: string }; to: { workload?: string }; connection: string; rules: { id: string; location: { file: string } | null }[] }[] }>(j.assertions.map((a: { name: string }) => [a.name, a]));
  const status = Object.fromEntries([...by].map(([k, v]) => [k, v.holds]));
  assert.deepEqual(status, {
    'prod never reaches dev': true,
    'dev never reaches prod': true,
    'only jump hosts administer': true,
    'only jump hosts reach anything on SSH or RDP': false,
    'payments is ring-fenced': false,
    'health records are ring-fenced': true,
    'only known egress reaches the internet': false,
    "the shop's web tier reaches its app tier": true,
    "the shop's web tier reaches its database": false,
  });
  const fence = by.get('payments is ring-fenced')!.counterexamples[0];
  assert.equal(`${fence.from.workload} -> ${fence.to.workload} ${fence.connection} ${fence.rules.map((x) => x.id)}`, 'analytics-prod-app-1 -> payments-prod-db-1 5432/tcp bg-inc-4711');
  assert.equal(fence.rules[0].location?.file, 'examples/estate/policy/overrides.yaml');
  const egress = by.get('only known egress reaches the internet')!.counterexamples.map((e) => `${e.from.workload} -> ${e.to.workload} ${e.rules[0].id}`);
  assert.deepEqual(egress, ['hr-prod-app-1 -> partner-sftp-acme hr-payroll-export', 'ansible-1 -> partner-sftp-acme adm-ansible-ssh']);
  const ssh = by.get('only jump hosts reach anything on SSH or RDP')!.counterexamples[0];
  assert.equal(`${ssh.from.ip} -> ${ssh.to.workload} ${ssh.connection} ${ssh.rules[0].id}`, 'corp-vpn -> jump-dc1-1 22/tcp vpn-to-jump');

  const text = await bulkhead('assert', ESTATE, `${FIXTURES}/estate-assertions.yaml`, '--now', NOW);
  assert.equal(text.code, 5);
  checkGolden(`${FIXTURES}/estate-assertions.txt`, text.out + '\n');
});

test('assert: every assertion holds, exit 0', async () => {
  const dir = policyDir(SMALL);
  const file = join(dir, '..', 'holds.yaml');
  writeFileSync(file, `- name: dev never reaches prod\n  never: { from: "env == 'dev'", to: "env == 'prod'" }\n`);
  const r = await bulkhead('assert', dir, file);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, 'ok    dev never reaches prod\n1 assertion: 1 holds, 0 fail');
});

test('assert: problems in the assertions file are diagnostics with places, exit 1', async () => {
  const r = await bulkhead('assert', ESTATE, `${FIXTURES}/broken-assertions.yaml`, '--now', NOW);
  assert.equal(r.code, 1);
  checkGolden(`${FIXTURES}/broken-assertions.txt`, r.err + '\n');
  const j = JSON.parse((await bulkhead('assert', ESTATE, `${FIXTURES}/broken-assertions.yaml`, '--now', NOW, '--output', 'json')).out);
  assert.equal(j.ok, false);
  assert.deepEqual([...new Set(j.diagnostics.map((d: { code: string }) => d.code))].sort(), ['BH003', 'BH004', 'BH005', 'BH102', 'BH201', 'BH301', 'BH401', 'BH501', 'BH601', 'BH602']);
});

test('assert: usage errors exit 2', async () => {
  assert.equal((await bulkhead('assert', ESTATE, 'no/such/file.yaml')).code, 2);
  assert.equal((await bulkhead('assert', ESTATE, `${FIXTURES}/estate-assertions.yaml`, '--examples', '-1')).code, 2);
  assert.equal((await bulkhead('assert', ESTATE)).code, 2);
});
