/**
 * The network-namespace lab in the real kernel (needs root, `ip`, `nft`,
 * python3; skipped otherwise). Every lab gets a run id registered before it is
 * built, and the `after` hook takes every registered run down, whatever
 * happened; the tests only ever remove their own runs, never other `bh-`
 * namespaces on the machine.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  LabError,
  labDown,
  labDownSync,
  labFlush,
  labLoad,
  labOpen,
  labProbe,
  labProblems,
  labStatus,
  labTcpRate,
  labUp,
  runPrefix,
  withLab,
  type Lab,
  type LabHost,
  type Probe,
  type ProbeResult,
} from '../../src/lab/index.js';
import { alive, listNamespaces } from '../../src/lab/sys.js';

const problems = labProblems();
const skip = problems.length > 0 ? `network-namespace lab unavailable: ${problems.join('; ')}` : false;
const iptablesProblems = labProblems({ needIptables: true });
const skipIptables = skip || (iptablesProblems.length > 0 ? `iptables backend unavailable: ${iptablesProblems.join('; ')}` : false);

const HOSTS: LabHost[] = [
  { name: 'a', addresses: ['10.77.0.1', 'fd00:77::1'], tcpPorts: [80, 443], udpPorts: [53] },
  { name: 'b', addresses: ['10.77.0.2', 'fd00:77::2'], tcpPorts: [22, 80], udpPorts: [53, 123] },
  { name: 'c', addresses: ['10.77.0.3'], tcpPorts: [8080], udpPorts: [5353] },
  { name: 'd', addresses: ['fd00:77::4'], tcpPorts: [80], udpPorts: [53] },
];
const NOBODY4 = '10.77.0.99';
const NOBODY6 = 'fd00:77::99';

/** Probes, with the results expected of an empty firewall. */
const MATRIX: [Probe, ProbeResult['result']][] = [
  [{ from: 'a', dst: '10.77.0.2', proto: 'tcp', port: 80 }, 'open'],
  [{ from: 'a', dst: '10.77.0.2', proto: 'tcp', port: 22 }, 'open'],
  [{ from: 'a', dst: '10.77.0.2', proto: 'tcp', port: 81 }, 'closed'],
  [{ from: 'a', dst: NOBODY4, proto: 'tcp', port: 80 }, 'filtered'],
  [{ from: 'a', dst: 'fd00:77::2', proto: 'tcp', port: 80 }, 'open'],
  [{ from: 'a', dst: 'fd00:77::2', proto: 'tcp', port: 22 }, 'open'],
  [{ from: 'a', dst: 'fd00:77::2', proto: 'tcp', port: 23 }, 'closed'],
  [{ from: 'a', dst: NOBODY6, proto: 'tcp', port: 80 }, 'filtered'],
  [{ from: 'c', dst: '10.77.0.2', proto: 'tcp', port: 80 }, 'open'],
  [{ from: 'd', dst: 'fd00:77::2', proto: 'tcp', port: 80 }, 'open'],
  [{ from: 'b', dst: '10.77.0.3', proto: 'tcp', port: 8080 }, 'open'],
  [{ from: 'a', dst: '10.77.0.1', proto: 'tcp', port: 443 }, 'open'],
  [{ from: 'a', dst: '10.77.0.2', proto: 'udp', port: 53 }, 'open'],
  [{ from: 'a', dst: '10.77.0.2', proto: 'udp', port: 54 }, 'closed'],
  [{ from: 'a', dst: NOBODY4, proto: 'udp', port: 53 }, 'filtered'],
  [{ from: 'a', dst: 'fd00:77::2', proto: 'udp', port: 123 }, 'open'],
  [{ from: 'a', dst: 'fd00:77::2', proto: 'udp', port: 124 }, 'closed'],
  [{ from: 'c', dst: '10.77.0.2', proto: 'udp', port: 53 }, 'open'],
  [{ from: 'b', dst: '10.77.0.3', proto: 'udp', port: 5353 }, 'open'],
  [{ from: 'a', dst: '10.77.0.2', proto: 'icmp', port: 8 }, 'open'],
  [{ from: 'a', dst: NOBODY4, proto: 'icmp', port: 8 }, 'filtered'],
  [{ from: 'a', dst: 'fd00:77::2', proto: 'icmpv6', port: 128 }, 'open'],
  [{ from: 'd', dst: 'fd00:77::1', proto: 'icmpv6', port: 128 }, 'open'],
  [{ from: 'a', dst: NOBODY6, proto: 'icmpv6', port: 128 }, 'filtered'],
];
const PROBES = MATRIX.map(([p]) => p);

const key = (p: Probe) => `${p.from}->${p.dst} ${p.proto}/${p.port}`;

/** The probes whose result differs between two runs of the same plan. */
function changed(before: ProbeResult[], after: ProbeResult[]): string[] {
  return after.filter((r, i) => r.result !== before[i].result).map((r) => `${key(r)} ${r.result}`);
}

function rootSnapshot(): string {
  const out = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' }).stdout;
  return [out('ip', ['-br', 'link']), out('ip', ['route']), out('ip', ['-6', 'route']), out('nft', ['list', 'ruleset'])].join('\n---\n');
}

describe('network-namespace lab', { skip, timeout: 120_000 }, () => {
  const stateDir = skip ? '' : mkdtempSync(join(tmpdir(), 'bh-lab-test-'));
  /** Every run id this file uses, taken down in `after` whatever happened. */
  const runs = new Set<string>();
  const newRunId = () => {
    const id = `t${randomBytes(4).toString('hex')}`;
    runs.add(id);
    return id;
  };
  const onExit = () => {
    for (const r of runs) labDownSync(r, { stateDir });
  };
  let lab: Lab;
  let root: string;
  let baseline: ProbeResult[];

  before(async () => {
    process.on('exit', onExit);
    root = rootSnapshot();
    lab = await labUp(HOSTS, { runId: newRunId(), stateDir });
  });

  after(async () => {
    try {
      for (const r of runs) await labDown(r, { stateDir });
    } finally {
      process.off('exit', onExit);
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('builds one namespace per host and a bridge namespace, and records the lab', () => {
    const mine = listNamespaces().filter((n) => n.startsWith(runPrefix(lab.runId)));
    assert.equal(mine.length, HOSTS.length + 1);
    assert.ok(mine.includes(lab.bridgeNs));
    assert.equal(lab.neighbors, 'dynamic');
    for (const h of lab.hosts) assert.ok(alive(h.pid), `agent of ${h.name} runs`);
    const st = labStatus({ stateDir }).find((s) => s.runId === lab.runId);
    assert.deepEqual(st && { status: st.status, hosts: st.hosts, namespaces: st.namespaces, agentsAlive: st.agentsAlive }, { status: 'up', hosts: 4, namespaces: 5, agentsAlive: 4 });
    assert.deepEqual(labOpen(lab.runId, { stateDir }), lab);
  });

  it('probes tcp, udp, icmp and icmpv6: open, closed and filtered', async () => {
    const t = performance.now();
    baseline = await labProbe(lab, PROBES);
    const ms = performance.now() - t;
    assert.deepEqual(baseline.map((r) => `${key(r)} ${r.result}`), MATRIX.map(([p, r]) => `${key(p)} ${r}`));
    assert.equal(baseline[0].src, '10.77.0.1');
    assert.equal(baseline[4].src, 'fd00:77::1');
    assert.ok(ms < 5000, `${PROBES.length} probes took ${ms} ms`);
  });

  it('binds the source address it is given, and refuses probes it cannot make', async () => {
    const [r] = await labProbe(lab, [{ from: 'b', src: '10.77.0.2', dst: '10.77.0.3', proto: 'tcp', port: 8080 }]);
    assert.equal(r.result, 'open');
    await assert.rejects(labProbe(lab, [{ from: 'c', dst: 'fd00:77::2', proto: 'tcp', port: 80 }]), /no IPv6 address/);
    await assert.rejects(labProbe(lab, [{ from: 'a', src: '10.77.0.2', dst: '10.77.0.3', proto: 'tcp', port: 80 }]), /not an address of `a`/);
    await assert.rejects(labProbe(lab, [{ from: 'a', dst: '10.77.0.2', proto: 'icmp', port: 13 }]), /only ICMP echo request/);
    await assert.rejects(labProbe(lab, [{ from: 'zz', dst: '10.77.0.2', proto: 'tcp', port: 80 }]), LabError);
  });

  it('an nftables ruleset in one host filters exactly the probe it drops', async () => {
    const ruleset = [
      'table inet bulkhead {',
      '  chain input {',
      '    type filter hook input priority 0; policy accept;',
      '    ip saddr 10.77.0.1 tcp dport 80 drop',
      '  }',
      '}',
    ].join('\n');
    try {
      await labLoad(lab, 'b', { kind: 'nftables', text: ruleset });
      const now = await labProbe(lab, PROBES);
      assert.deepEqual(changed(baseline, now), ['a->10.77.0.2 tcp/80 filtered']);
      assert.equal(now[0].detail, 'timeout');
      // Loading again replaces (no duplicate rule, no error).
      await labLoad(lab, 'b', { kind: 'nftables', text: ruleset });
    } finally {
      await labFlush(lab, 'b');
    }
    assert.deepEqual(changed(baseline, await labProbe(lab, PROBES)), []);
  });

  it('an egress rule drops on the way out', async () => {
    try {
      await labLoad(lab, 'c', { kind: 'nftables', text: 'table inet bulkhead {\n  chain output {\n    type filter hook output priority 0; policy accept;\n    ip daddr 10.77.0.2 udp dport 53 drop\n  }\n}\n' });
      const now = await labProbe(lab, PROBES);
      assert.deepEqual(changed(baseline, now), ['c->10.77.0.2 udp/53 filtered']);
      assert.equal(now[PROBES.findIndex((p) => p.from === 'c' && p.proto === 'udp')].detail, 'local-drop');
    } finally {
      await labFlush(lab, 'c');
    }
  });

  it('a rejected nftables ruleset throws with nft\'s message and loads nothing', async () => {
    const bad = 'table inet bulkhead {\n  chain input {\n    type filter hook input priority 0; policy drop;\n    tcp dport nosuchport drop\n  }\n}\n';
    const err = await labLoad(lab, 'a', { kind: 'nftables', text: bad }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof LabError);
    assert.match(err.message, /Error: [\s\S]*nosuchport/);
    assert.match(err.message, /stdin:4:/, 'line numbers are those of the ruleset');
    // All or nothing: the policy-drop chain did not arrive.
    assert.deepEqual(changed(baseline, await labProbe(lab, PROBES)), []);
  });

  it('an iptables + ipset artifact filters exactly the probes it drops', { skip: skipIptables }, async () => {
    const artifact = {
      kind: 'iptables' as const,
      ipset: 'create bh-a4 hash:ip family inet\nadd bh-a4 10.77.0.1\ncreate bh-a6 hash:ip family inet6\nadd bh-a6 fd00:77::1\n',
      iptables: '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p udp --dport 53 -m set --match-set bh-a4 src -j DROP\nCOMMIT\n',
      ip6tables: '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -m set --match-set bh-a6 src -j DROP\nCOMMIT\n',
    };
    try {
      await labLoad(lab, 'b', artifact);
      const now = await labProbe(lab, PROBES);
      assert.deepEqual(changed(baseline, now).sort(), ['a->10.77.0.2 udp/53 filtered', 'a->fd00:77::2 tcp/22 filtered']);
      // Loading again replaces the sets and rules.
      await labLoad(lab, 'b', artifact);
      assert.deepEqual(changed(baseline, await labProbe(lab, PROBES)).length, 2);
      await assert.rejects(labLoad(lab, 'b', { ...artifact, iptables: '*filter\n-A INPUT -j NOSUCHTARGET\nCOMMIT\n' }), /iptables-restore/);
    } finally {
      await labFlush(lab, 'b');
    }
    assert.deepEqual(changed(baseline, await labProbe(lab, PROBES)), []);
  });

  it('measures a TCP connection rate', async () => {
    const r = await labTcpRate(lab, 'a', 'b', 80, 0.5);
    assert.ok(r.connections > 100, `only ${r.connections} connections`);
    assert.equal(r.failures, 0);
  });

  it('removes a lab whose work throws midway, and a lab that fails while being built', async () => {
    const runId = newRunId();
    const hosts: LabHost[] = [
      { name: 'x', addresses: ['10.79.0.1', 'fd00:79::1'], tcpPorts: [80], udpPorts: [] },
      { name: 'y', addresses: ['10.79.0.2', 'fd00:79::2'], tcpPorts: [80], udpPorts: [] },
    ];
    await assert.rejects(
      withLab(hosts, async (l) => {
        const rs = await labProbe(l, [{ from: 'x', dst: '10.79.0.2', proto: 'tcp', port: 80 }, { from: 'x', dst: 'fd00:79::2', proto: 'tcp', port: 80 }]);
        assert.deepEqual(rs.map((r) => r.result), ['open', 'open'], 'static neighbours work');
        throw new Error('boom');
      }, { runId, stateDir, neighbors: 'static' }),
      /boom/,
    );
    assert.deepEqual(listNamespaces().filter((n) => n.startsWith(runPrefix(runId))), []);

    const broken = newRunId();
    await assert.rejects(labUp(hosts, { runId: broken, stateDir, python: '/bin/false' }), LabError);
    assert.deepEqual(listNamespaces().filter((n) => n.startsWith(runPrefix(broken))), []);
    assert.ok(!existsSync(join(stateDir, `${broken}.json`)));
  });

  it('takes down a lab left behind by a crashed process, from another process', async () => {
    const runId = newRunId();
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'crash-child.ts'), stateDir, runId], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the child did not build its lab in 30 s')), 30_000);
        child.stdout.on('data', (b: Buffer) => {
          if (b.toString().includes('up')) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.on('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`the child exited with ${code}`));
        });
      });
    } finally {
      child.kill('SIGKILL');
    }
    const orphan = labOpen(runId, { stateDir });
    assert.ok(alive(orphan.hosts[0].pid), 'the agent outlives its parent');
    const report = await labDown(runId, { stateDir });
    assert.equal(report.namespaces.length, 2);
    assert.ok(report.killed.includes(orphan.hosts[0].pid));
    assert.ok(!alive(orphan.hosts[0].pid));
    assert.deepEqual(listNamespaces().filter((n) => n.startsWith(runPrefix(runId))), []);
  });

  it('labDown removes every namespace and process of the run, and is idempotent', async () => {
    const pids = lab.hosts.map((h) => h.pid);
    const report = await labDown(lab.runId, { stateDir });
    assert.equal(report.namespaces.length, HOSTS.length + 1);
    for (const pid of pids) assert.ok(report.killed.includes(pid) && !alive(pid));
    assert.deepEqual(listNamespaces().filter((n) => n.startsWith(runPrefix(lab.runId))), []);
    assert.ok(!existsSync(lab.stateFile));
    assert.equal(labStatus({ stateDir }).find((s) => s.runId === lab.runId), undefined);
    assert.deepEqual(await labDown(lab.runId, { stateDir }), { namespaces: [], killed: [], stateFiles: [] });
  });

  it('left the machine\'s own network namespace as it was', () => {
    assert.equal(rootSnapshot(), root);
  });
});
