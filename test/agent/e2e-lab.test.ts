/**
 * End to end, in the lab (issue 8): the real control plane (`startServer`)
 * on 127.0.0.1, a small estate built as network namespaces with src/lab, and
 * one `bulkhead agent` process per managed workload, each enforcing inside its
 * workload's namespace (`--netns`). A policy is provisioned through the API;
 * every agent applies it; real connections between the namespaces agree with
 * the engine's verdicts; flows and violations show up in the server. A
 * corrupt policy is rejected and the old one stays. The server is killed:
 * the agents keep enforcing. It comes back: the flows buffered meanwhile are
 * replayed.
 *
 * Needs root, `ip`, `nft`, `conntrack` and python3 (skipped otherwise).
 * Safety: the namespaces are `bh-<run id>-…`, removed in `after` whatever
 * happened; traffic only between them and to 127.0.0.1; the root namespace's
 * links, routes and ruleset are checked unchanged.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compareWithEngine, labDown, labHost, labHostsFromIr, labProbe, labUp, probePlan, type Lab, type LabHost } from '../../src/lab/index.js';
import { startServer } from '../../src/server/index.js';
import { policyFromDoc } from '../helpers/policy.js';
import { agentKernelSkip, rootState, runId, tableIn, waitFor } from './helpers.js';

const skip = agentKernelSkip();

type RunningServer = Awaited<ReturnType<typeof startServer>>;

/** The small estate: a shop with two web servers (one in test mode), an app server, a database, and an unmanaged partner host. */
const ESTATE = {
  settings: { defaultMode: 'enforce' },
  workloads: [
    { name: 'web-1', addresses: ['10.89.0.11', 'fd00:89::11'], labels: { role: 'web', app: 'shop', env: 'prod' } },
    { name: 'web-2', addresses: ['10.89.0.12'], labels: { role: 'web', app: 'shop', env: 'prod' }, mode: 'test' },
    { name: 'app-1', addresses: ['10.89.0.21', 'fd00:89::21'], labels: { role: 'app', app: 'shop', env: 'prod' } },
    { name: 'db-1', addresses: ['10.89.0.31'], labels: { role: 'db', app: 'shop', env: 'prod' } },
    { name: 'partner', addresses: ['10.89.0.41'], labels: { role: 'partner' }, managed: false },
  ],
  rulesets: [
    {
      name: 'shop',
      scope: "app == 'shop'",
      rules: [
        { id: 'web-to-app', action: 'allow', from: ["role == 'web'"], to: ["role == 'app'"], services: ['8080/tcp'] },
        { id: 'app-to-db', action: 'allow', from: ["role == 'app'"], to: ["role == 'db'"], services: ['5432/tcp'] },
        { id: 'no-ssh-to-db', action: 'deny', from: ['all()'], to: ["role == 'db'"], services: ['22/tcp'] },
      ],
    },
  ],
};

/** The same estate with a rule the loader rejects (an unknown label in a selector, a port out of range). */
const CORRUPT = { ...ESTATE, rulesets: [{ ...ESTATE.rulesets[0], rules: [...ESTATE.rulesets[0].rules, { id: 'broken', action: 'allow', from: ["role == "], to: ["role == 'db'"], services: ['99999/tcp'] }] }] };

const MANAGED = ['web-1', 'web-2', 'app-1', 'db-1'];

interface AgentProc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly lines: { event?: string; version?: number; [k: string]: unknown }[];
  stderr: string;
}

describe('end to end in the lab: the server, agents in namespaces, real connections', { skip, timeout: 420_000 }, () => {
  const run = runId('e2e');
  const compiled = skip ? undefined : policyFromDoc(ESTATE);
  const dir = skip ? '' : mkdtempSync(join(tmpdir(), 'bh-e2e-'));
  const state = join(dir, 'state.db');
  const procs: AgentProc[] = [];
  let server: RunningServer | undefined;
  let port = 0;
  let lab: Lab;
  let hosts: LabHost[];
  let root = '';

  const api = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const r = await fetch(`${server!.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${server!.adminToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  };
  const provision = async (doc: unknown, message: string) => {
    const draft = await api('GET', '/api/v1/draft');
    const put = await api('PUT', '/api/v1/draft', doc, { 'if-match': `"${draft.body.revision as number}"` });
    assert.ok(put.status === 200 || put.status === 201, `PUT /draft: ${put.status} ${JSON.stringify(put.body)}`);
    return api('POST', '/api/v1/versions', { message });
  };
  const probeAndCompare = async (what: string) => {
    const results = await labProbe(lab, probePlan(hosts), { timeoutMs: 300 });
    const cmp = compareWithEngine(compiled!.ir, results);
    assert.deepEqual(cmp.mismatches, [], `${what}: the kernel does what the engine decides`);
    assert.ok((cmp.verdicts.get('blocked') ?? 0) > 0 && (cmp.verdicts.get('allowed') ?? 0) > 0, `${what}: both outcomes are exercised`);
    return cmp;
  };
  const startAgent = (name: string, token: string): AgentProc => {
    const tokenFile = join(dir, `${name}.token`);
    writeFileSync(tokenFile, token + '\n', { mode: 0o600 });
    const args = ['--import', 'tsx', 'test/agent/agent-cli.ts', 'agent', '--server', server!.url, '--token-file', tokenFile, '--netns', labHost(lab, name).ns, '--state', join(dir, 'agents', name), '--labels', `host=${name}`];
    args.push('--wait', '5', '--heartbeat', '1', '--flow-interval', '1', '--drift-interval', '2', '--retry-max', '1', '--conntrack-acct', '--output', 'json');
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const p: AgentProc = { name, child, lines: [], stderr: '' };
    let buf = '';
    child.stderr!.on('data', (b: Buffer) => {
      p.stderr = (p.stderr + b.toString('utf8')).slice(-20_000);
      buf += b.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          p.lines.push(JSON.parse(line) as AgentProc['lines'][number]);
        } catch {
          // not a log line
        }
      }
    });
    procs.push(p);
    return p;
  };
  const logsOf = () => procs.map((p) => `--- ${p.name}\n${p.stderr.split('\n').slice(-15).join('\n')}`).join('\n');

  before(async () => {
    root = rootState();
    hosts = labHostsFromIr(compiled!.ir, { extraTcp: [22] });
    lab = await labUp(hosts, { runId: run, stateDir: join(dir, 'lab') });
    server = await startServer({ state, port: 0, store: join(dir, 'flows'), advertise: ['127.0.0.1'] });
    port = server.port;
  });

  after(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => (p.child.exitCode === null && p.child.signalCode === null ? new Promise((r) => p.child.once('exit', r)) : undefined)));
    await server?.close();
    await labDown(run, { stateDir: join(dir, 'lab') });
    rmSync(dir, { recursive: true, force: true });
    assert.equal(rootState(), root, 'the root namespace is unchanged');
  });

  it('provisions a policy through the API and every agent applies it', async () => {
    const v = await provision(ESTATE, 'the shop, first cut');
    assert.equal(v.status, 201, JSON.stringify(v.body));
    assert.equal(v.body.version, 1);
    for (const w of MANAGED) {
      const a = await api('POST', '/api/v1/agents', { workload: w });
      assert.equal(a.status, 201, JSON.stringify(a.body));
      startAgent(w, a.body.token as string);
    }
    try {
      await waitFor('every agent applied version 1', () => procs.every((p) => p.lines.some((l) => l.event === 'applied' && l.version === 1)), 60_000);
      await waitFor('the server sees every agent enforcing its current ruleset', async () => {
        const agents = (await api('GET', '/api/v1/agents')).body.agents as { workload: string; appliedVersion: number | null; current: boolean; state: string }[];
        return MANAGED.every((w) => agents.some((a) => a.workload === w && a.appliedVersion === 1 && a.current));
      }, 30_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${logsOf()}`);
    }
    for (const w of MANAGED) assert.ok(tableIn(labHost(lab, w).ns), `${w} holds its table`);
  });

  it('real connections between the namespaces agree with the engine', async () => {
    const cmp = await probeAndCompare('version 1');
    assert.ok((cmp.verdicts.get('potentially-blocked') ?? 0) > 0, 'the test-mode web server has would-be drops');
  });

  it('flows and violations reach the server', async () => {
    await probeAndCompare('again, for the flows');
    try {
      await waitFor('the allowed web -> app flows in the flow store', async () => {
        const flows = (await api('GET', '/api/v1/flows?limit=10000')).body.flows as { src: string; dst: string; dstPort: number; proto: number }[];
        return flows.some((f) => f.src === '10.89.0.11' && f.dst === '10.89.0.21' && f.dstPort === 8080 && f.proto === 6) && flows.some((f) => f.src === 'fd00:89::11' && f.dst === 'fd00:89::21' && f.dstPort === 8080);
      }, 30_000);
      const v = await waitFor('violations: the deny rule, the default deny, and would-be drops', async () => {
        const vs = (await api('GET', '/api/v1/violations')).body.violations as { app: string; rule: string; verdict: string; count: number }[];
        const has = (rule: string, verdict: string) => vs.some((x) => x.rule === rule && x.verdict === verdict && x.count > 0);
        return has('no-ssh-to-db', 'blocked') && has('default', 'blocked') && has('default', 'potentially-blocked') ? vs : undefined;
      }, 30_000);
      assert.ok(v.every((x) => x.app === 'shop'), JSON.stringify(v));
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${logsOf()}`);
    }
  });

  it('a break-glass override reaches the agents within seconds, and so does its end', async () => {
    const probe = { from: 'web-1', dst: '10.89.0.31', proto: 'tcp' as const, port: 5432 };
    const applied = (name: string) => procs.find((p) => p.name === name)!.lines.filter((l) => l.event === 'applied').length;
    assert.equal((await labProbe(lab, [probe]))[0].result, 'filtered', 'web-1 may not reach the database');
    let before = [applied('web-1'), applied('db-1')];
    const t0 = Date.now();
    const bg = await api('POST', '/api/v1/breakglass', { from: [{ workload: 'web-1' }], to: [{ workload: 'db-1' }], services: ['5432/tcp'], reason: 'INC-1 the app server is down', ttlSeconds: 300 });
    assert.equal(bg.status, 201, JSON.stringify(bg.body));
    await waitFor('web-1 and db-1 apply the override', () => applied('web-1') > before[0] && applied('db-1') > before[1], 15_000);
    const ms = Date.now() - t0;
    assert.ok(ms < 5000, `applied in ${ms} ms`);
    assert.equal((await labProbe(lab, [probe]))[0].result, 'open', 'the override lets web-1 in');
    before = [applied('web-1'), applied('db-1')];
    assert.equal((await api('DELETE', `/api/v1/breakglass/${bg.body.id as string}`)).status, 200);
    await waitFor('web-1 and db-1 drop the override', () => applied('web-1') > before[0] && applied('db-1') > before[1], 15_000);
    assert.equal((await labProbe(lab, [probe]))[0].result, 'filtered', 'closed again');
    await probeAndCompare('after the break-glass');
  });

  it('rejects a corrupt policy, and the old one stays', async () => {
    const before = procs.map((p) => p.lines.filter((l) => l.event === 'applied' || l.event === 'apply-failed').length);
    const r = await provision(CORRUPT, 'a broken rule');
    assert.equal(r.status, 422, JSON.stringify(r.body));
    const versions = await api('GET', '/api/v1/versions');
    assert.equal(versions.body.active, 1);
    await new Promise((res) => setTimeout(res, 3000));
    assert.deepEqual(procs.map((p) => p.lines.filter((l) => l.event === 'applied' || l.event === 'apply-failed').length), before, 'no agent was sent anything');
    await probeAndCompare('after the corrupt policy');
  });

  it('with the server killed, the agents keep enforcing', async () => {
    await server!.close();
    server = undefined;
    const downAt = Date.now();
    await waitFor('every agent notices', () => procs.every((p) => p.lines.some((l) => l.event === 'server-unreachable')), 30_000);
    await probeAndCompare('with the server down');
    await new Promise((res) => setTimeout(res, 2500));
    await probeAndCompare('still, a few drift checks later');
    for (const w of MANAGED) assert.ok(tableIn(labHost(lab, w).ns), `${w} still holds its table`);
    assert.ok(procs.every((p) => p.child.exitCode === null), 'the agents run on');
    assert.ok(!procs.some((p) => p.lines.some((l) => l.event === 'drift-repaired')), 'nothing drifted');

    // The server comes back on the same port with the same state: the flows made meanwhile are replayed.
    server = await startServer({ state, port, store: join(dir, 'flows'), advertise: ['127.0.0.1'] });
    try {
      await waitFor('every agent replayed its buffer', () => procs.every((p) => p.lines.some((l) => l.event === 'server-reachable')), 30_000);
      await waitFor('flows from the downtime in the store', async () => {
        const flows = (await api('GET', `/api/v1/flows?since=${downAt}&limit=10000`)).body.flows as { src: string; dst: string; dstPort: number }[] | undefined;
        return flows?.some((f) => f.src === '10.89.0.21' && f.dst === '10.89.0.31' && f.dstPort === 5432);
      }, 30_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${logsOf()}`);
    }
  });

  it('the agents stop cleanly on SIGTERM, leaving their rulesets loaded', async () => {
    for (const p of procs) p.child.kill('SIGTERM');
    const codes = await Promise.all(procs.map((p) => (p.child.exitCode !== null ? p.child.exitCode : new Promise<number | null>((r) => p.child.once('exit', (c) => r(c))))));
    assert.deepEqual(codes, MANAGED.map(() => 0), logsOf());
    await probeAndCompare('with no agent running');
  });
});
