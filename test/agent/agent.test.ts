/**
 * The agent in network namespaces the test makes (needs root, `ip`, `nft`,
 * `conntrack`, python3; skipped otherwise): three lab hosts, one agent each,
 * running in this process but enforcing inside its host's namespace
 * (`netns`), served by the STAND-IN control plane of stand-in-server.ts on
 * 127.0.0.1 (the end-to-end test uses the real server).
 *
 * Safety: every namespace is `bh-<run id>-…` and is removed in `after`,
 * whatever happened; traffic goes only between the lab's namespaces and to
 * 127.0.0.1; the root namespace's links, routes and ruleset are compared
 * before and after.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent } from '../../src/agent/agent.js';
import { normalizeListing } from '../../src/adapters/nft.js';
import type { AgentFlow } from '../../src/agent/client.js';
import { memoryLogger } from '../../src/agent/log.js';
import { compareWithEngine, labDown, labHost, labHostsFromIr, labProbe, labUp, type Lab, type Probe } from '../../src/lab/index.js';
import { policyFromYaml } from '../helpers/policy.js';
import { cmdline, pidsInNamespaces } from '../../src/lab/sys.js';
import { StandInServer } from './stand-in-server.js';
import { agentKernelSkip, inNs, rootState, rulesets, runId, tableIn, waitFor } from './helpers.js';

const skip = agentKernelSkip();

const POLICY = `
settings: { defaultMode: enforce }
workloads:
  - { name: web, addresses: [10.88.0.1, "fd00:88::1"], labels: { role: web } }
  - { name: app, addresses: [10.88.0.2, "fd00:88::2"], labels: { role: app } }
  - { name: db, addresses: [10.88.0.3], labels: { role: db } }
rulesets:
  - name: shop
    scope: all()
    rules:
      - { id: web-to-app, action: allow, from: ["role == 'web'"], to: ["role == 'app'"], services: [8080/tcp] }
      - { id: app-to-db, action: allow, from: ["role == 'app'"], to: ["role == 'db'"], services: [5432/tcp] }
      - { id: no-ssh-to-db, action: deny, from: [all()], to: ["role == 'db'"], services: [22/tcp] }
`;

const NAMES = ['web', 'app', 'db'] as const;
type Name = (typeof NAMES)[number];

describe('the agent in network namespaces', { skip, timeout: 300_000 }, () => {
  const run = runId('agt');
  const compiled = skip ? undefined : policyFromYaml(POLICY);
  const texts = compiled ? rulesets(compiled) : new Map<string, string>();
  const server = new StandInServer();
  const agents = new Map<Name, Agent>();
  const logs = new Map<Name, ReturnType<typeof memoryLogger>>();
  const dirs: string[] = [];
  let lab: Lab;
  let root = '';

  const ns = (n: Name) => labHost(lab, n).ns;
  const stateDir = (n: Name) => join(dirs[0], n);
  const startAgent = async (n: Name, extra: Partial<ConstructorParameters<typeof Agent>[0]> = {}) => {
    const logger = memoryLogger();
    const a = new Agent({ server: server.url, token: `tok-${n}`, stateDir: stateDir(n), netns: ns(n), hostname: n, labels: { role: n }, waitSeconds: 2, heartbeatSeconds: 1, flowSeconds: 0.5, driftSeconds: 0.5, retryMaxSeconds: 1, conntrackAcct: true, logger, ...extra });
    await a.start();
    agents.set(n, a);
    logs.set(n, logger);
    return a;
  };
  const events = (n: Name, kind: string) => server.agent(n).events.filter((e) => e.kind === kind);
  const probes: Probe[] = [
    { from: 'web', dst: '10.88.0.2', proto: 'tcp', port: 8080 },
    { from: 'web', dst: 'fd00:88::2', proto: 'tcp', port: 8080 },
    { from: 'web', dst: '10.88.0.3', proto: 'tcp', port: 5432 },
    { from: 'app', dst: '10.88.0.3', proto: 'tcp', port: 5432 },
    { from: 'app', dst: '10.88.0.3', proto: 'tcp', port: 22 },
    { from: 'db', dst: '10.88.0.1', proto: 'tcp', port: 9999 },
  ];
  const probeAndCompare = async () => {
    const results = await labProbe(lab, probes, { timeoutMs: 300 });
    const cmp = compareWithEngine(compiled!.ir, results);
    assert.deepEqual(cmp.mismatches, [], 'the kernel does what the engine decides');
    return results;
  };

  before(async () => {
    root = rootState();
    dirs.push(mkdtempSync(join(tmpdir(), 'bh-agent-test-')));
    const hosts = labHostsFromIr(compiled!.ir, { extraTcp: [22, 9999] });
    lab = await labUp(hosts, { runId: run, stateDir: join(dirs[0], 'lab') });
    for (const n of NAMES) server.addAgent(`tok-${n}`, n);
    await server.start();
    for (const n of NAMES) await startAgent(n);
  });

  after(async () => {
    for (const a of agents.values()) await a.stop().catch(() => undefined);
    await server.stop();
    await labDown(run, { stateDir: join(dirs[0], 'lab') });
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    assert.equal(rootState(), root, 'the root namespace is unchanged');
  });

  it('registers each host with its addresses and labels', async () => {
    await waitFor('registrations', () => NAMES.every((n) => server.agent(n).registration));
    assert.deepEqual(server.agent('web').registration?.addresses, ['10.88.0.1', 'fd00:88::1']);
    assert.deepEqual(server.agent('db').registration?.labels, { role: 'db' });
    assert.equal(server.agent('app').registration?.hostname, 'app');
    assert.ok(NAMES.every((n) => events(n, 'started').length === 1));
    const second = new Agent({ server: server.url, token: 'tok-web', stateDir: stateDir('web'), netns: ns('web'), hostname: 'web', logger: memoryLogger() });
    await assert.rejects(second.start(), /another agent \(pid \d+\) uses the state directory/, 'one agent per state directory');
  });

  it('applies the ruleset it is served, and the kernel enforces it', async () => {
    for (const n of NAMES) server.setPolicy(n, texts.get(n)!, 1);
    await waitFor('every agent applied version 1', () => NAMES.every((n) => agents.get(n)!.status().applied?.version === 1));
    for (const n of NAMES) {
      const t = tableIn(ns(n));
      assert.ok(t, `the table is loaded in ${n}`);
      assert.match(t, /log prefix "bh drop default " group 6268/, 'drops are logged to NFLOG');
    }
    await waitFor('applied events', () => NAMES.every((n) => events(n, 'applied').some((e) => e.version === 1)));
    const results = await probeAndCompare();
    assert.deepEqual(results.map((r) => r.result), ['open', 'open', 'filtered', 'open', 'filtered', 'filtered']);
  });

  it('reports flows from real connections: allowed ones from conntrack, blocked ones from NFLOG', async () => {
    await probeAndCompare();
    const has = (n: Name, f: (r: AgentFlow) => boolean) => server.agent(n).flows.some(f);
    await waitFor('the allowed connection web -> app:8080, at both ends', () =>
      has('web', (r) => r.src === '10.88.0.1' && r.dst === '10.88.0.2' && r.dport === 8080 && r.proto === 6 && r.verdict === undefined) &&
      has('app', (r) => r.src === '10.88.0.1' && r.dst === '10.88.0.2' && r.dport === 8080 && r.packets > 0) &&
      has('app', (r) => r.src === 'fd00:88::1' && r.dst === 'fd00:88::2' && r.dport === 8080),
    );
    await waitFor('web -> db:5432 blocked by web\'s default deny', () => has('web', (r) => r.dst === '10.88.0.3' && r.dport === 5432 && r.verdict === 'blocked' && r.rule === 'default'));
    await waitFor('app -> db:22 blocked by the deny rule', () => has('app', (r) => r.dst === '10.88.0.3' && r.dport === 22 && r.verdict === 'blocked' && r.rule === 'no-ssh-to-db'));
    assert.ok(!server.agent('db').flows.some((r) => r.dport === 22), 'a packet dropped at the source never reaches db');
    const hb = await waitFor('a heartbeat with drop counters', () => (server.agent('app').heartbeats as { version?: number; stats?: { drops?: { rule: string }[] } }[]).find((h) => h.stats?.drops?.some((d) => d.rule === 'no-ssh-to-db')));
    assert.equal(hb.version, 1);
  });

  it('starts its NFLOG reader again when it dies', async () => {
    // The reader is this process's grandchild (ip netns exec execs python3), found in app's namespace by its program text.
    const reader = pidsInNamespaces([ns('app')]).find((pid) => (cmdline(pid) ?? []).some((a) => a.includes('AF_NETLINK')));
    assert.ok(reader, 'the NFLOG reader runs in app\'s namespace');
    process.kill(reader, 'SIGKILL');
    await waitFor('the reader runs again', () => logs.get('app')!.lines.some((l) => l.event === 'nflog' && /runs again/.test(l.message)));
    const blocked = () => server.agent('app').flows.filter((r) => r.rule === 'no-ssh-to-db').reduce((n, r) => n + r.packets, 0);
    const before = blocked();
    await labProbe(lab, [{ from: 'app', dst: '10.88.0.3', proto: 'tcp', port: 22 }], { timeoutMs: 300 });
    await waitFor('blocked packets reported again', () => blocked() > before);
  });

  it('reports a ruleset that does not load, and keeps the one it had', async () => {
    const before = normalizeListing(tableIn(ns('app'))!);
    server.setPolicy('app', texts.get('app')!.replace('chain ingress {', 'chain ingress {\n    tcp dport 99999 accept'), 2);
    await waitFor('apply-failed for version 2', () => events('app', 'apply-failed').find((e) => e.version === 2));
    assert.equal(agents.get('app')!.status().applied?.version, 1);
    assert.equal(normalizeListing(tableIn(ns('app'))!), before, 'the table is as it was');
    assert.match(events('app', 'apply-failed')[0].detail ?? '', /rejected/);
    server.setPolicy('app', `flush ruleset\n${texts.get('app')!}`, 3);
    await waitFor('apply-failed for version 3', () => events('app', 'apply-failed').find((e) => e.version === 3));
    assert.match(events('app', 'apply-failed').find((e) => e.version === 3)!.detail ?? '', /refused.*flush ruleset/);
    assert.equal(normalizeListing(tableIn(ns('app'))!), before);
    await probeAndCompare();
    // A good ruleset after the bad ones is applied.
    server.setPolicy('app', texts.get('app')!, 4);
    await waitFor('version 4 applied', () => agents.get('app')!.status().applied?.version === 4);
  });

  it('repairs its table when someone else changes it, and reports it', async () => {
    const want = normalizeListing(tableIn(ns('db'))!);
    const r = inNs(ns('db'), 'nft', 'insert', 'rule', 'inet', 'bulkhead', 'ingress', 'tcp', 'dport', '22', 'accept');
    assert.equal(r.code, 0, r.stderr);
    await waitFor('drift-repaired', () => events('db', 'drift-repaired').length >= 1);
    assert.match(events('db', 'drift-repaired')[0].detail ?? '', /1 line added.*tcp dport 22 accept/);
    assert.equal(normalizeListing(tableIn(ns('db'))!), want);
    assert.equal(inNs(ns('db'), 'nft', 'delete', 'table', 'inet', 'bulkhead').code, 0);
    await waitFor('the deleted table repaired', () => events('db', 'drift-repaired').length >= 2);
    assert.equal(events('db', 'drift-repaired')[1].detail, 'the table was deleted');
    assert.equal(normalizeListing(tableIn(ns('db'))!), want);
    assert.equal(events('web', 'drift-repaired').length + events('app', 'drift-repaired').length, 0, 'no drift where nobody changed anything');
    await probeAndCompare();
  });

  it('keeps enforcing and buffers flows on disk while the server is down, and replays them when it is back', async () => {
    const web = agents.get('web')!;
    const sentBefore = server.agent('web').flows.length;
    await server.stop();
    await waitFor('web notices the server is down', () => !web.status().reachable);
    const downAt = Date.now();
    await probeAndCompare();
    const buffered = await waitFor('flows buffered on disk', () => web.status().buffer.records || undefined);
    assert.ok(tableIn(ns('web')), 'the table stays loaded');
    assert.ok(logs.get('web')!.lines.some((l) => l.event === 'server-unreachable'));
    await server.start();
    await waitFor('the buffer replayed', () => web.status().buffer.records === 0 && server.agent('web').flows.length >= sentBefore + buffered, 20_000);
    assert.ok(server.agent('web').flows.some((r) => r.start >= downAt - 1000 && r.dst === '10.88.0.2' && r.dport === 8080), 'the connection made while the server was down is reported');
    await waitFor('the server is reachable again', () => web.status().reachable);
    assert.ok(logs.get('web')!.lines.some((l) => l.event === 'flows-replayed'));
  });

  it('loads the last known good ruleset again at start, without a server', async () => {
    await agents.get('web')!.stop();
    agents.delete('web');
    assert.ok(tableIn(ns('web')), 'stopping leaves the table loaded');
    assert.equal(inNs(ns('web'), 'nft', 'delete', 'table', 'inet', 'bulkhead').code, 0);
    const offline = new Agent({ server: 'http://127.0.0.1:9', token: 'tok-web', stateDir: stateDir('web'), netns: ns('web'), hostname: 'web', waitSeconds: 2, retryMaxSeconds: 1, logger: memoryLogger() });
    await offline.start();
    try {
      assert.ok(tableIn(ns('web')), 'the last known good ruleset is loaded again');
      assert.equal(offline.status().applied?.version, 1);
      await probeAndCompare();
    } finally {
      await offline.stop();
    }
    await startAgent('web');
  });

  it('runs from the command line and stops cleanly on SIGTERM, leaving the ruleset loaded', async () => {
    await agents.get('web')!.stop();
    agents.delete('web');
    const tokenFile = join(dirs[0], 'web.token');
    writeFileSync(tokenFile, 'tok-web\n', { mode: 0o600 });
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/agent/agent-cli.ts', 'agent', '--server', server.url, '--token-file', tokenFile, '--netns', ns('web'), '--state', stateDir('web'), '--labels', 'role=web', '--wait', '2', '--output', 'json'], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.end();
    const lines: { event?: string }[] = [];
    let err = '';
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString('utf8');
      for (const l of b.toString('utf8').split('\n')) {
        try {
          lines.push(JSON.parse(l) as { event?: string });
        } catch {
          // not a log line
        }
      }
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor('the agent registered', () => lines.some((l) => l.event === 'registered') || child.exitCode !== null, 30_000);
      assert.equal(child.exitCode, null, 'the agent runs');
    } catch (e) {
      child.kill('SIGKILL');
      throw new Error(`${(e as Error).message}\n${err}`);
    }
    child.kill('SIGTERM');
    const t0 = Date.now();
    assert.equal(await exited, 0, err);
    assert.ok(Date.now() - t0 < 5000, 'it stops promptly');
    assert.ok(lines.some((l) => l.event === 'stopped'));
    assert.ok(tableIn(ns('web')), 'the table stays loaded');
    await startAgent('web');
  });
});
