/**
 * An agent in the namespace it protects, the server in another (as on real
 * hosts): a ruleset that would cut the host off from the server (the server
 * advertises an address agents do not reach it at, so the failsafe rules
 * allow the wrong one) is applied, found to cut the host off, and taken
 * back; with the right address, the ruleset is applied and stays.
 *
 * Needs root, `ip`, `nft`, `conntrack` and python3 (skipped otherwise).
 * Safety: the namespaces are `bh-<run id>-…`, removed in `after` whatever
 * happened (with every process in them); nothing runs in, or changes, the
 * machine's own network namespace but a server started on 127.0.0.1 to seed
 * the state file; its links, routes and ruleset are checked unchanged.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { labDown, labHost, labProbe, labUp, type Lab } from '../../src/lab/index.js';
import { agentKernelSkip, labProcess, rootState, seedServerState, stopProcess, tableIn, waitFor, type LabProc } from './helpers.js';

const skip = agentKernelSkip();

const DOC = {
  settings: { defaultMode: 'enforce' },
  workloads: [
    { name: 'host', addresses: ['10.78.0.1'], labels: { role: 'app' } },
    { name: 'cp', addresses: ['10.78.0.2'], managed: false },
  ],
  // No rule: the host may talk to nothing, but for its failsafe rules.
  rulesets: [],
};

describe('the agent takes back a ruleset that cuts its host off from the server', { skip, timeout: 180_000 }, () => {
  let lab: Lab;
  let root = '';
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-cutoff-'));
  const state = join(dir, 'state.db');
  const store = join(dir, 'flows');
  const procs: LabProc[] = [];
  let server: LabProc | undefined;
  let agent: LabProc | undefined;

  /** A process inside a lab host's namespace, its output kept. */
  const inLab = (host: string, args: string[]): LabProc => {
    const p = labProcess(lab, host, args, 40_000);
    procs.push(p);
    return p;
  };
  const startLabServer = (advertise: string) => inLab('cp', ['scripts/bulkhead.ts', 'serve', '--state', state, '--store', store, '--listen', '10.78.0.2:8443', '--advertise', advertise]);
  const stop = stopProcess;
  const reachable = async () => (await labProbe(lab, [{ from: 'host', dst: '10.78.0.2', proto: 'tcp', port: 8443 }], { timeoutMs: 500 }))[0].result;

  before(async () => {
    root = rootState();
    lab = await labUp([
      { name: 'host', addresses: ['10.78.0.1'], tcpPorts: [8080], udpPorts: [] },
      { name: 'cp', addresses: ['10.78.0.2'], tcpPorts: [], udpPorts: [] },
    ]);
    // The state, made through the API of a server on loopback: the policy, and the agent's token.
    await seedServerState({ state, store, doc: DOC, workloads: ['host'], dir });
  });

  after(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    if (lab) await labDown(lab.runId);
    rmSync(dir, { recursive: true, force: true });
    if (root) assert.equal(rootState(), root, "the machine's own network namespace is unchanged");
  });

  it('applies the ruleset, finds the server gone, and loads what it had before (no table)', async () => {
    // The server tells agents it is at 10.78.0.99; the host reaches it at 10.78.0.2.
    server = startLabServer('10.78.0.99');
    await waitFor('the server to listen', async () => (await reachable()) === 'open', 30_000);
    agent = inLab('host', ['test/agent/agent-cli.ts', 'agent', '--server', 'http://10.78.0.2:8443', '--token-file', join(dir, 'token-host'), '--state', join(dir, 'agent'), '--wait', '2', '--heartbeat', '2', '--retry-max', '2', '--no-conntrack', '--nflog-group', '0']);
    await waitFor(`the agent to find itself cut off\n${agent.out}`, () => /cut-off/.test(agent!.out), 60_000);
    assert.match(agent.out, /the server did not answer after version 1 .*the table is removed again, as before/);
    assert.equal(tableIn(labHost(lab, 'host').ns), undefined, 'no bulkhead table');
    assert.equal(await reachable(), 'open', 'the host reaches the server again');
    // It does not load that ruleset again at the next poll.
    await new Promise((res) => setTimeout(res, 5000));
    assert.equal((agent.out.match(/cut-off/g) ?? []).length, 1, 'taken back once, not again and again');
    assert.equal(tableIn(labHost(lab, 'host').ns), undefined);
  });

  it('with the right address advertised, applies the new ruleset and keeps it', async () => {
    await stop(server);
    server = startLabServer('10.78.0.2');
    // The failsafe rules change, so does the ETag: the agent gets the new ruleset, applies it and still reaches the server.
    await waitFor(`the agent to apply a ruleset that keeps the server reachable\n${agent!.out}`, () => /applied version 1/.test(agent!.out), 60_000);
    await new Promise((res) => setTimeout(res, 10_000)); // three checks of 3 s would have failed by now
    assert.equal((agent!.out.match(/cut-off/g) ?? []).length, 1, 'not cut off this time');
    const table = tableIn(labHost(lab, 'host').ns);
    assert.ok(table && /10\.78\.0\.2/.test(table), 'the table is loaded, with the server in its failsafe rules');
    assert.equal(await reachable(), 'open');
    await stop(agent);
    await stop(server);
  });
});
