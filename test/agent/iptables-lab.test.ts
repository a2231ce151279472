/**
 * Agents that enforce with iptables + ipset (a host without nftables), each in
 * the lab namespace it protects, the real server in another: they fetch the
 * iptables form of their rulesets, load them, and the kernel's verdicts on
 * real connections are the engine's; a chain flushed or a set widened by
 * someone else is repaired; a stopped agent leaves its rules in force; an
 * agent started again with nftables replaces them.
 *
 * Needs root, `ip`, `iptables`, `ipset`, `conntrack` and python3 (skipped
 * otherwise). Safety: the namespaces are `bh-<run id>-…`, removed in `after`
 * whatever happened (with every process in them); nothing runs in, or
 * changes, the machine's own network namespace but a server started on
 * 127.0.0.1 to seed the state file; its links, routes and ruleset are checked
 * unchanged.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { labDown, labHost, labProbe, labUp, type Lab, type Probe } from '../../src/lab/index.js';
import { compileDoc } from '../../src/server/policy.js';
import { Evaluator } from '../../src/engine/evaluate.js';
import { parseAddr } from '../../src/netset/ip.js';
import { kernelSkip } from '../helpers/estate.js';
import { agentKernelSkip, inNs, labProcess, rootState, seedServerState, stopProcess, tableIn, waitFor, type LabProc } from './helpers.js';
import { iptablesRemove } from '../../src/adapters/iptables.js';

const skip = agentKernelSkip() || kernelSkip(['ip', 'ipset', 'iptables-restore', 'ip6tables-restore', 'iptables-save']);

const DOC = {
  settings: { defaultMode: 'enforce' },
  workloads: [
    { name: 'web', addresses: ['10.79.0.1'], labels: { role: 'web' } },
    { name: 'db', addresses: ['10.79.0.2'], labels: { role: 'db' } },
    { name: 'cp', addresses: ['10.79.0.3'], managed: false },
  ],
  rulesets: [
    {
      name: 'shop',
      scope: 'all()',
      rules: [
        { id: 'web-to-db', action: 'allow', from: ["role == 'web'"], to: ["role == 'db'"], services: ['5432/tcp'] },
        { id: 'no-ssh-to-db', action: 'deny', from: ['all()'], to: ["role == 'db'"], services: ['22/tcp'] },
      ],
    },
  ],
};

describe('agents enforcing with iptables + ipset, served by the real server, in lab namespaces', { skip, timeout: 240_000 }, () => {
  let lab: Lab;
  let root = '';
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-ipt-'));
  const state = join(dir, 'state.db');
  const store = join(dir, 'flows');
  const procs: LabProc[] = [];
  const agents = new Map<string, LabProc>();
  let server: LabProc | undefined;
  const startLabServer = () => (server = inLab('cp', ['scripts/bulkhead.ts', 'serve', '--state', state, '--store', store, '--listen', '10.79.0.3:8443', '--advertise', '10.79.0.3']));

  const inLab = (host: string, args: string[]): LabProc => {
    const p = labProcess(lab, host, args);
    procs.push(p);
    return p;
  };
  const stop = stopProcess;
  const saved = (host: string) => inNs(labHost(lab, host).ns, 'iptables-save', '-t', 'filter').stdout;

  /** Every pair of web and db on the policy's ports and one more, probed for real, against the engine. */
  const probeAll = async () => {
    const ev = new Evaluator(compileDoc(DOC as never).ir);
    const probes: Probe[] = [];
    for (const [from, dst] of [['web', '10.79.0.2'], ['db', '10.79.0.1']] as const) {
      for (const port of [5432, 22, 8080]) probes.push({ from, dst, proto: 'tcp', port });
    }
    const results = await labProbe(lab, probes, { timeoutMs: 400 });
    return probes.map((p, i) => {
      const src = p.from === 'web' ? '10.79.0.1' : '10.79.0.2';
      const verdict = ev.decide({ src: parseAddr(src)!, dst: parseAddr(p.dst)!, proto: 6, port: p.port }).verdict;
      // The lab's listeners answer on every policy port (and refuse the others): allowed means the connection is made or refused by the host, not filtered.
      return { probe: `${p.from} -> ${p.dst}:${p.port}`, engine: verdict, kernel: results[i].result };
    });
  };

  before(async () => {
    root = rootState();
    lab = await labUp([
      { name: 'web', addresses: ['10.79.0.1'], tcpPorts: [5432, 22], udpPorts: [] },
      { name: 'db', addresses: ['10.79.0.2'], tcpPorts: [5432, 22], udpPorts: [] },
      { name: 'cp', addresses: ['10.79.0.3'], tcpPorts: [], udpPorts: [] },
    ]);
    await seedServerState({ state, store, doc: DOC, workloads: ['web', 'db'], dir });
  });

  after(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    if (lab) await labDown(lab.runId);
    rmSync(dir, { recursive: true, force: true });
    if (root) assert.equal(rootState(), root, "the machine's own network namespace is unchanged");
  });

  it('fetches the iptables form, loads it, and the kernel decides every probe as the engine does', async () => {
    startLabServer();
    for (const w of ['web', 'db']) {
      agents.set(w, inLab(w, ['test/agent/agent-cli.ts', 'agent', '--backend', 'iptables', '--server', 'http://10.79.0.3:8443', '--token-file', join(dir, `token-${w}`), '--state', join(dir, `agent-${w}`), '--wait', '2', '--heartbeat', '2', '--drift-interval', '1', '--retry-max', '2', '--no-conntrack']));
    }
    for (const [w, a] of agents) await waitFor(`${w}'s agent to apply version 1\n${a.out}`, () => /applied version 1/.test(a.out), 60_000);
    for (const [w, a] of agents) {
      assert.match(a.out, /enforcing with iptables/, w);
      const s = saved(w);
      assert.match(s, /^-A INPUT -j BH-INPUT$/m, `${w}: the jump is in`);
      assert.match(s, /^-A BH-INPUT -s 10\.79\.0\.3\/32 .*"failsafe: control plane" -j ACCEPT$/m, `${w}: the server stays reachable`);
      assert.match(s, /^-A BH-INGRESS .*--comment default -j DROP$/m, `${w}: enforce mode drops`);
      assert.equal(tableIn(labHost(lab, w).ns), undefined, `${w}: no nftables table of bulkhead's`);
    }
    assert.match(saved('db'), /-m set --match-set bh-[0-9a-f]{16}-4 src -m tcp --dport 5432 .*--comment web-to-db -j ACCEPT/);
    const rows = await probeAll();
    for (const r of rows) {
      const kernelAllowed = r.kernel !== 'filtered';
      assert.equal(kernelAllowed, r.engine === 'allowed', `${r.probe}: engine ${r.engine}, kernel ${r.kernel}`);
    }
    assert.ok(rows.some((r) => r.engine === 'allowed') && rows.some((r) => r.engine !== 'allowed'), 'both verdicts are probed');
  });

  it('repairs a chain flushed by someone else, and reports it', async () => {
    const db = agents.get('db')!;
    assert.equal(inNs(labHost(lab, 'db').ns, 'iptables', '-w', '-F', 'BH-INGRESS').code, 0);
    await waitFor(`the db agent to repair the flushed chain\n${db.out.slice(-2000)}`, () => /drift-repaired|was changed by someone else/.test(db.out), 30_000);
    assert.match(saved('db'), /--comment web-to-db -j ACCEPT/);
    const rows = await probeAll();
    for (const r of rows) assert.equal(r.kernel !== 'filtered', r.engine === 'allowed', `${r.probe} after the repair`);
  });

  it('takes out again an address someone added to one of its sets', async () => {
    const db = agents.get('db')!;
    const allowSet = /--match-set (bh-[0-9a-f]{16}-4) src -m tcp --dport 5432 /.exec(saved('db'))![1];
    const repairs = (db.out.match(/drift-repaired/g) ?? []).length;
    assert.equal(inNs(labHost(lab, 'db').ns, 'ipset', 'add', allowSet, '10.79.0.3').code, 0);
    await waitFor(`the db agent to repair the widened set\n${db.out.slice(-2000)}`, () => (db.out.match(/drift-repaired/g) ?? []).length > repairs, 30_000);
    assert.doesNotMatch(inNs(labHost(lab, 'db').ns, 'ipset', 'list', allowSet).stdout, /10\.79\.0\.3/);
  });

  it('a stopped agent leaves its rules in force', async () => {
    for (const a of agents.values()) await stop(a);
    assert.match(saved('db'), /--comment default -j DROP/);
    const rows = await probeAll();
    for (const r of rows) assert.equal(r.kernel !== 'filtered', r.engine === 'allowed', `${r.probe} with the agents stopped`);
  });

  it('started again with nftables: the iptables rules stay (come back after a reboot) until the nftables ruleset is in, then go', async () => {
    // The server is down and the host has rebooted (its rules are gone): the switch must not leave it open meanwhile.
    await stop(server);
    assert.deepEqual(iptablesRemove({ netns: labHost(lab, 'db').ns }), { ok: true });
    const db = inLab('db', ['test/agent/agent-cli.ts', 'agent', '--backend', 'nftables', '--server', 'http://10.79.0.3:8443', '--token-file', join(dir, 'token-db'), '--state', join(dir, 'agent-db'), '--wait', '2', '--heartbeat', '2', '--drift-interval', '1', '--retry-max', '2', '--no-conntrack']);
    agents.set('db', db);
    await waitFor(`the db agent to bring the iptables rules back\n${db.out.slice(-2000)}`, () => /the iptables rules enforce until the first nftables ruleset is applied/.test(db.out), 30_000);
    assert.match(saved('db'), /--comment web-to-db -j ACCEPT/, 'the iptables rules are back');
    assert.equal(tableIn(labHost(lab, 'db').ns), undefined, 'no nftables table yet');
    for (const r of await probeAll()) assert.equal(r.kernel !== 'filtered', r.engine === 'allowed', `${r.probe} while the server is down`);
    startLabServer();
    await waitFor(`the db agent to switch to nftables\n${db.out.slice(-2000)}`, () => /removed the iptables rules/.test(db.out), 60_000);
    assert.match(db.out, /the host was enforced with iptables and is now with nftables/);
    assert.ok(tableIn(labHost(lab, 'db').ns), 'the nftables table is loaded');
    assert.doesNotMatch(saved('db'), /BH-/, 'no chain or jump of bulkhead\'s is left in iptables');
    assert.equal(inNs(labHost(lab, 'db').ns, 'ipset', 'list', '-n').stdout.trim(), '', 'nor a set');
    const rows = await probeAll();
    for (const r of rows) assert.equal(r.kernel !== 'filtered', r.engine === 'allowed', `${r.probe} enforced with nftables`);
    await stop(db);
    await stop(server);
  });
});
