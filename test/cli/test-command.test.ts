/**
 * `bulkhead test` end to end: a small flow store (raw records through the
 * store's ingest path) replayed against draft policy directories. The counts
 * against the reference evaluator deciding each raw record; the exit code of
 * each gate; the time window; rule hits; clear errors; golden table and
 * Markdown outputs (test/fixtures/replay, UPDATE_GOLDEN=1 to rewrite).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommanderError } from 'commander';
import { parseAddr } from '../../src/netset/ip.js';
import { foldPorts, ServerInference } from '../../src/flows/attribute.js';
import { FlowBatch, type FlowRecord } from '../../src/flows/record.js';
import { DuckDbFlowStore } from '../../src/store/flows-duckdb.js';
import { NaiveEvaluator } from '../../src/engine/naive.js';
import { program } from '../../src/cli/main.js';
import { EXIT, loadDir, UsageError, type Io } from '../../src/cli/common.js';
import { register as registerTest } from '../../src/cli/test.js';
import type { CliRun } from '../helpers/cli.js';
import { checkGolden } from '../helpers/golden.js';

/** Runs the CLI in-process with `test` registered, whether or not src/cli/main.ts registers it yet. */
async function run(...args: string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (s) => out.push(s), err: (s) => err.push(s), color: false };
  const prog = program(io);
  if (!prog.commands.some((c) => c.name() === 'test')) registerTest(prog, io);
  let code: number;
  try {
    await prog.parseAsync(['node', 'bulkhead', ...args]);
    code = (prog.getOptionValue('exit') as number | undefined) ?? EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) code = e.code === 'commander.helpDisplayed' ? EXIT.ok : EXIT.usage;
    else if (e instanceof UsageError) {
      err.push(`error: ${e.message}`);
      code = EXIT.usage;
    } else throw e;
  }
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const dir = mkdtempSync(join(tmpdir(), 'bulkhead-cli-test-'));
const store = join(dir, 'flows.duckdb');
const GOLDEN = 'test/fixtures/replay';

const WORKLOADS = `
iplists:
  - { name: internet, include: [0.0.0.0/0], exclude: [10.0.0.0/8] }
workloads:
  - { name: web-1, addresses: [10.0.1.1], labels: { app: shop, env: prod, role: web } }
  - { name: app-1, addresses: [10.0.1.2], labels: { app: shop, env: prod, role: app } }
  - { name: db-1, addresses: [10.0.1.3], labels: { app: shop, env: prod, role: db } }
  - { name: crm-1, addresses: [10.0.2.1], labels: { app: crm, env: prod, role: app }, mode: test }
  - { name: dev-1, addresses: [10.9.0.1], labels: { app: shop, env: dev, role: app } }
  - { name: legacy-1, addresses: [10.0.3.1], labels: { app: legacy, env: prod, role: app }, managed: false }
`;
const SHOP_RULES = `
      - { id: web-in, from: [{ iplist: internet }], to: ["role == 'web'"], services: ["443/tcp"] }
      - { id: web-app, from: ["role == 'web'"], to: ["role == 'app' && app == 'shop'"], services: ["8080/tcp"] }
      - { id: app-db, from: ["role == 'app' && app == 'shop' && env == 'prod'"], to: ["role == 'db'"], services: ["5432/tcp"] }
      - { id: crm-to-app, from: ["app == 'crm'"], to: ["app == 'shop' && role == 'app'"], services: ["9000/tcp"] }
`;
/** The policies under test, one directory each. */
const POLICIES: Record<string, string> = {
  // Blocks dev-1's database queries (a deny rule), web-1 to the database and crm-1's scan (default deny).
  draft: `${WORKLOADS}rulesets:
  - name: shop
    rules:${SHOP_RULES}
      - { id: no-dev-to-prod, action: deny, from: ["env == 'dev'"], to: ["env == 'prod'"], services: [any] }
`,
  // The same with every managed workload in test mode: what was blocked is potentially blocked.
  testmode: `settings: { defaultMode: test }\n${WORKLOADS}rulesets:
  - name: shop
    rules:${SHOP_RULES}
      - { id: no-dev-to-prod, action: deny, from: ["env == 'dev'"], to: ["env == 'prod'"], services: [any] }
`,
  // Allows everything that was seen.
  open: `${WORKLOADS}rulesets:
  - name: shop
    rules:${SHOP_RULES}
      - { id: everything, from: [any], to: [any], services: [any] }
`,
  broken: `${WORKLOADS}rulesets:
  - name: shop
    rules:
      - { id: bad, from: ["role == "], to: ["role == 'db'"], services: ["5432/tcp"] }
`,
};
const policyDir = (name: string) => join(dir, name);

const day = (d: number, h: number, m = 0) => Date.parse(`2026-11-${String(d).padStart(2, '0')}T${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:00Z`);
function rec(src: string, dst: string, dport: number, start: number, more: Partial<FlowRecord> = {}): FlowRecord {
  return { start, end: start + 30_000, src: parseAddr(src)!, dst: parseAddr(dst)!, proto: 6, srcPort: 40000 + (start / 1000) % 20000, dstPort: dport, packets: 10, bytes: 1500, initiator: 'src', format: 'zeek', ...more };
}

/** Day 16: ordinary traffic and crm-1's SSH (potentially blocked); day 18: the same plus what the draft blocks. */
const RECORDS: FlowRecord[] = [];
for (const d of [16, 18]) {
  for (let i = 0; i < 6; i++) RECORDS.push(rec('203.0.113.5', '10.0.1.1', 443, day(d, 9, i)));
  for (let i = 0; i < 4; i++) RECORDS.push(rec('10.0.1.1', '10.0.1.2', 8080, day(d, 9, 10 + i)));
  for (let i = 0; i < 3; i++) RECORDS.push(rec('10.0.1.2', '10.0.1.3', 5432, day(d, 10, i)));
}
RECORDS.push(rec('10.0.2.1', '10.0.3.1', 22, day(16, 11)), rec('10.0.2.1', '10.0.3.1', 22, day(16, 12)));
RECORDS.push(rec('10.9.0.1', '10.0.1.3', 5432, day(18, 14)), rec('10.9.0.1', '10.0.1.3', 5432, day(18, 15)), rec('10.9.0.1', '10.0.1.3', 5432, day(18, 15, 30), { action: 'reject' }));
RECORDS.push(rec('10.0.1.1', '10.0.1.3', 5432, day(18, 16)));
for (let p = 1; p <= 40; p++) RECORDS.push(rec('10.0.2.1', '10.0.1.3', p, day(18, 20, 0) + p * 1000, { tcpFlags: 2, packets: 1, bytes: 60 }));
// Rejected at the edge: never gated, listed apart.
RECORDS.push(rec('198.51.100.7', '10.0.1.1', 22, day(18, 3), { action: 'reject' }), rec('198.51.100.7', '10.0.1.1', 22, day(18, 4), { action: 'reject' }));

before(async () => {
  for (const [name, text] of Object.entries(POLICIES)) {
    mkdirSync(policyDir(name), { recursive: true });
    writeFileSync(join(policyDir(name), 'policy.yaml'), text);
  }
  const s = await DuckDbFlowStore.open(store);
  const r = await s.beginIngest('test');
  const b = new FlowBatch(RECORDS.length);
  RECORDS.forEach((x, i) => b.set(i, x));
  b.length = RECORDS.length;
  const server = new Uint8Array(RECORDS.length);
  const port = new Uint16Array(RECORDS.length);
  new ServerInference().orient(b, server);
  foldPorts(b, server, port);
  r.append(b, server, port);
  await r.finish();
  await s.close();
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Output with the temporary directory replaced, for golden files. */
const stable = (s: string) => s.replaceAll(dir, '$TMP') + '\n';
const json = async (...args: string[]) => {
  const r = await run('test', ...args, '--output', 'json', '--quiet');
  return { ...r, report: JSON.parse(r.out) };
};

test('the counts equal the reference evaluator deciding every raw record; rejected records apart', async () => {
  const c = loadDir(policyDir('draft'));
  assert.equal(c.diagnostics.errorCount, 0);
  const naive = new NaiveEvaluator(c.policy);
  const want = { flows: 0, allowed: 0, potentiallyBlocked: 0, blocked: 0, blockedByRule: 0, blockedByDefault: 0, notEvaluated: 0, unjudged: 0, rejected: 0 };
  for (const x of RECORDS) {
    if (x.action === 'reject') {
      want.rejected++;
      continue;
    }
    const d = naive.decide({ src: x.src, dst: x.dst, proto: x.proto, port: x.dstPort });
    want.flows++;
    if (d.verdict === 'allowed') want.allowed++;
    else if (d.verdict === 'potentially-blocked') want.potentiallyBlocked++;
    else if (d.verdict === 'not-evaluated') want.notEvaluated++;
    else {
      want.blocked++;
      if (d.rule) want.blockedByRule++;
      else want.blockedByDefault++;
    }
  }
  const { code, report } = await json(policyDir('draft'), '--store', store);
  assert.equal(code, EXIT.blocked);
  assert.deepEqual(report.totals, want);
  assert.ok(want.blockedByRule > 0 && want.blockedByDefault > 0 && want.potentiallyBlocked > 0 && want.rejected > 0, 'every outcome is exercised');
  assert.deepEqual(Object.keys(report), ['policy', 'store', 'window', 'by', 'edges', 'totals', 'gate', 'groups', 'potentiallyBlocked', 'blockedByRule', 'blockedByDefault', 'rejected', 'rules', 'rulesWithNoHits']);
  assert.deepEqual(report.gate, { failOn: 'potentially-blocked', result: 'blocked', exitCode: 3 });
  assert.equal(report.blockedByRule.items[0].rule, 'no-dev-to-prod');
  assert.equal(report.blockedByRule.items[0].flows, 2);
  assert.deepEqual(report.blockedByRule.items[0].ports, [{ proto: 6, port: 5432, name: '5432/tcp', flows: 2 }]);
  assert.equal(report.blockedByRule.items[0].first, '2026-11-18T14:00:00.000Z');
  assert.equal(report.blockedByRule.items[0].last, '2026-11-18T15:30:30.000Z');
  const scan = report.blockedByDefault.items.find((f: { client: { name: string } }) => f.client.name === 'crm-1');
  assert.equal(scan.ports.length, 40);
  assert.equal(scan.decidedBy, 'ingress');
  assert.deepEqual(
    report.rejected.items.map((f: { client: { name: string }; server: { name: string }; flows: number; outcome: string }) => `${f.client.name} ${f.server.name} ${f.flows} ${f.outcome}`),
    ['ip:internet web-1 2 blocked-by-default', 'dev-1 db-1 1 blocked-by-rule'],
  );
  const shop = report.groups.find((g: { name: string }) => g.name === 'app=shop,env=prod');
  assert.equal(shop.total.flows, want.flows - 2 /* crm-1 -> legacy-1 */);
});

test('the gate: exit 3 when blocked, 4 when only potentially blocked, 0 otherwise; --fail-on relaxes it', async () => {
  const draft = policyDir('draft');
  const testmode = policyDir('testmode');
  assert.equal((await run('test', draft, '--store', store, '--quiet')).code, EXIT.blocked);
  assert.equal((await run('test', draft, '--store', store, '--quiet', '--fail-on', 'blocked')).code, EXIT.blocked);
  assert.equal((await run('test', draft, '--store', store, '--quiet', '--fail-on', 'never')).code, EXIT.ok);
  const t = await json(testmode, '--store', store);
  assert.equal(t.code, EXIT.potentiallyBlocked);
  assert.equal(t.report.totals.blocked, 0);
  assert.ok(t.report.totals.potentiallyBlocked > 0);
  assert.equal((await run('test', testmode, '--store', store, '--quiet', '--fail-on', 'blocked')).code, EXIT.ok);
  // Everything seen is allowed; the flows rejected at the edge would be too, and never count.
  const o = await json(policyDir('open'), '--store', store);
  assert.equal(o.code, EXIT.ok);
  assert.equal(o.report.totals.flows, o.report.totals.allowed + o.report.totals.notEvaluated);
  assert.equal(o.report.gate.result, 'pass');
  assert.equal(o.report.rejected.items[0].outcome, 'allowed');
});

test('rule hits and rules with no hits', async () => {
  const { report } = await json(policyDir('draft'), '--store', store);
  const hits = Object.fromEntries(report.rules.map((r: { id: string; hits: number; egress: number; ingress: number }) => [r.id, [r.hits, r.egress, r.ingress]]));
  // web-in: 12 accepted records, 2 rejected SSH do not match; no-dev-to-prod at both ends, the rejected record too.
  assert.deepEqual(hits, { 'web-in': [12, 0, 12], 'web-app': [8, 8, 8], 'app-db': [6, 6, 6], 'crm-to-app': [0, 0, 0], 'no-dev-to-prod': [3, 3, 3] });
  assert.deepEqual(report.rulesWithNoHits, ['crm-to-app']);
  const noHit = report.rules.find((r: { id: string }) => r.id === 'crm-to-app');
  assert.equal(noHit.first, null);
  assert.match(noHit.file, /draft\/policy\.yaml$/);
  assert.equal(typeof noHit.line, 'number');
  const open = await json(policyDir('open'), '--store', store);
  assert.deepEqual(open.report.rulesWithNoHits, ['crm-to-app']);
  assert.equal(open.report.rules.find((r: { id: string }) => r.id === 'everything').hits, 2 + 3 + 1 + 40 + 2 /* crm-1 ssh, dev-1 (a rejected record too), web-1 to db-1, the scan, the rejected ssh */);
});

test('the time window: ISO 8601 and durations before the latest flow', async () => {
  const draft = policyDir('draft');
  const early = await json(draft, '--store', store, '--until', '2026-11-17T00:00:00Z');
  assert.equal(early.code, EXIT.potentiallyBlocked, early.err);
  assert.equal(early.report.totals.blocked, 0);
  assert.equal(early.report.totals.potentiallyBlocked, 2);
  assert.equal(early.report.totals.allowed, 13);
  assert.equal(early.report.window.until, '2026-11-17T00:00:00.000Z');
  assert.equal(early.report.window.last, '2026-11-16T12:00:30.000Z');
  const late = await json(draft, '--store', store, '--since', '2026-11-18T00:00:00Z');
  assert.equal(late.code, EXIT.blocked);
  assert.equal(late.report.totals.potentiallyBlocked, 0);
  assert.equal(late.report.totals.allowed, 13);
  const whole = await json(draft, '--store', store);
  assert.equal(whole.report.totals.allowed, 26);
  // The latest flow ends on the 18th at 20:01; a day before it is still the 18th.
  const recent = await json(draft, '--store', store, '--since', '1d');
  assert.deepEqual(recent.report.totals, late.report.totals);
});

test('clear errors: no store, an empty store or window, a policy with errors, bad options', async () => {
  const missing = await run('test', policyDir('draft'), '--store', join(dir, 'none.duckdb'));
  assert.equal(missing.code, EXIT.usage);
  assert.match(missing.err, /no flow store at `.*none\.duckdb`/);
  const emptyPath = join(dir, 'empty.duckdb');
  await (await DuckDbFlowStore.open(emptyPath)).close();
  const empty = await run('test', policyDir('draft'), '--store', emptyPath);
  assert.equal(empty.code, EXIT.usage);
  assert.match(empty.err, /holds no flows/);
  const window = await run('test', policyDir('draft'), '--store', store, '--since', '2027-01-01T00:00:00Z');
  assert.equal(window.code, EXIT.usage);
  assert.match(window.err, /no flows in the window \(from 2027-01-01T00:00:00\.000Z\); the store holds flows from 2026-11-16T09:00:00\.000Z to 2026-11-18T20:01:10\.000Z/);
  const broken = await run('test', policyDir('broken'), '--store', store);
  assert.equal(broken.code, EXIT.policyErrors);
  assert.match(broken.err, /error\[BH\d+\]/);
  assert.match(broken.err, /cannot test: the policy has problems \(1 error/);
  assert.equal(broken.out, '');
  assert.equal((await run('test', policyDir('draft'), '--store', store, '--since', 'yesterday')).code, EXIT.usage);
  assert.equal((await run('test', policyDir('draft'), '--store', store, '--limit', '-1')).code, EXIT.usage);
  assert.equal((await run('test', policyDir('draft'), '--store', store, '--fail-on', 'sometimes')).code, EXIT.usage);
  assert.equal((await run('test', policyDir('draft'), '--store', store, '--by', 'workload')).code, EXIT.usage);
  const inverted = await run('test', policyDir('draft'), '--store', store, '--since', '2026-11-18T00:00:00Z', '--until', '2026-11-17T00:00:00Z');
  assert.equal(inverted.code, EXIT.usage);
  assert.match(inverted.err, /must be before/);
});

test('timing on stderr unless --quiet; the result line there for JSON and Markdown', async () => {
  const loud = await run('test', policyDir('draft'), '--store', store, '--output', 'markdown');
  assert.match(loud.err, /read \d+ edges from .* in \d+\.\d s; replayed against .* in \d+\.\d s/);
  assert.match(loud.err, /^FAIL \(--fail-on potentially-blocked\): 43 legitimate flows would be blocked \(2 by deny rules, 41 by the default deny\), 2 potentially blocked, 26 allowed, 0 not evaluated, 3 rejected by the network \(not gated\)$/m);
  const quiet = await run('test', policyDir('draft'), '--store', store, '--quiet');
  assert.equal(quiet.err, '');
});

test('golden: table and Markdown', async () => {
  const t = await run('test', policyDir('draft'), '--store', store, '--quiet');
  checkGolden(`${GOLDEN}/draft.table.txt`, stable(t.out));
  const m = await run('test', policyDir('draft'), '--store', store, '--quiet', '--output', 'markdown');
  checkGolden(`${GOLDEN}/draft.md`, stable(m.out));
  const limited = await run('test', policyDir('testmode'), '--store', store, '--quiet', '--limit', '1', '--by', 'app');
  checkGolden(`${GOLDEN}/testmode-limit-1.table.txt`, stable(limited.out));
  assert.match(limited.out, /… and \d+ more/);
  const open = await run('test', policyDir('open'), '--store', store, '--quiet', '--output', 'markdown');
  checkGolden(`${GOLDEN}/open.md`, stable(open.out));
  assert.match(open.out, /^\*\*PASS\*\*/m);
});

test('ports and ends as the lists show them', async () => {
  const { portsText, endText } = await import('../../src/cli/test.js');
  const p = (proto: number, port: number, flows = 1) => ({ proto, port, flows });
  assert.equal(portsText([p(6, 5432, 9), p(6, 22, 3), p(1, 8 * 256)]), '5432/tcp, 22/tcp, 8/icmp');
  assert.equal(portsText([p(6, 1), p(6, 2), p(6, 3), p(6, 5), p(17, 53), p(17, 54), p(1, 3 * 256 + 4)]), '3:4/icmp, 1-3/tcp, 5/tcp, 53-54/udp');
  assert.equal(portsText([p(6, 10), p(6, 20), p(6, 30), p(6, 40), p(6, 50), p(6, 60)]), '10/tcp, 20/tcp, 30/tcp, 40/tcp +2');
  assert.equal(endText({ name: 'db-1', kind: 'workload', group: 'app=shop', addressCount: 1, addresses: ['10.0.1.3'] }), 'db-1');
  assert.equal(endText({ name: 'external', kind: 'external', group: 'external', addressCount: 1, addresses: ['192.0.2.9'] }), 'external 192.0.2.9');
  assert.equal(endText({ name: 'ip:internet', kind: 'iplist', group: 'ip:internet', addressCount: 1200, addresses: ['1.1.1.1'] }), 'ip:internet (1,200 addresses)');
});
