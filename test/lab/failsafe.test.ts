/**
 * The failsafe in the kernel: a host quarantined by its policy (deny
 * everything, both ways, in the override tier) still reaches the control
 * plane and is still reachable from it, and its management network still
 * gets in on the management port; nothing else passes. For both backends.
 * Lab namespaces only (needs root); removed afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labDown, labProbe, labProblems, labUp, type Probe } from '../../src/lab/index.js';
import { loadPolicy } from '../../src/lab/verify.js';
import { parsePrefix, type Prefix } from '../../src/netset/ip.js';
import { policyFromYaml } from '../helpers/policy.js';

const problems = process.getuid?.() === 0 ? labProblems({ needIptables: true }) : ['needs root (network namespaces)'];
const skip = problems.length > 0 ? problems.join('; ') : false;

const POLICY = `
settings: { defaultMode: enforce }
workloads:
  - { name: host, addresses: [10.77.0.1], labels: { role: app } }
  - { name: cp, addresses: [10.77.0.2], managed: false }
  - { name: mgmt, addresses: [10.77.0.3], managed: false }
  - { name: peer, addresses: [10.77.0.4], labels: { role: web } }
rulesets:
  - name: app
    scope: all()
    rules:
      - { id: web-to-app, action: allow, from: ["role == 'web'"], to: ["role == 'app'"], services: [8080/tcp] }
overrides:
  - { id: quarantine-in, action: deny, from: [any], to: [{ workload: host }], services: [any], reason: quarantined }
  - { id: quarantine-out, action: deny, from: [{ workload: host }], to: [any], services: [any], reason: quarantined }
`;

const prefix = (s: string) => (parsePrefix(s) as { prefix: Prefix }).prefix;

for (const backend of ['nftables', 'iptables'] as const) {
  test(`failsafe: a quarantined host keeps its control plane and management access, nothing else (${backend})`, { skip, timeout: 120_000 }, async () => {
    const c = policyFromYaml(POLICY);
    assert.equal(c.diagnostics.errorCount, 0);
    const hosts = [
      { name: 'host', addresses: ['10.77.0.1'], tcpPorts: [22, 8080], udpPorts: [] },
      { name: 'cp', addresses: ['10.77.0.2'], tcpPorts: [8443], udpPorts: [] },
      { name: 'mgmt', addresses: ['10.77.0.3'], tcpPorts: [], udpPorts: [] },
      { name: 'peer', addresses: ['10.77.0.4'], tcpPorts: [8080], udpPorts: [] },
    ];
    const lab = await labUp(hosts);
    try {
      // Only `host` and `peer` are managed; `peer` gets its own (allowing) ruleset too.
      const loaded = await loadPolicy(lab, c.ir, backend, { failsafe: { controlPlane: [prefix('10.77.0.2')], managementPrefixes: [prefix('10.77.0.3')], managementPorts: [{ proto: 6, port: 22 }] } });
      assert.equal(loaded, 2);
      const expect: [Probe, 'open' | 'filtered'][] = [
        [{ from: 'host', dst: '10.77.0.2', proto: 'tcp', port: 8443 }, 'open'], // host -> control plane
        [{ from: 'cp', dst: '10.77.0.1', proto: 'tcp', port: 8080 }, 'open'], // control plane -> host, any port
        [{ from: 'mgmt', dst: '10.77.0.1', proto: 'tcp', port: 22 }, 'open'], // management network, management port
        [{ from: 'mgmt', dst: '10.77.0.1', proto: 'tcp', port: 8080 }, 'filtered'], // management network, another port
        [{ from: 'peer', dst: '10.77.0.1', proto: 'tcp', port: 8080 }, 'filtered'], // the quarantine beats the allow rule
        [{ from: 'peer', dst: '10.77.0.1', proto: 'tcp', port: 22 }, 'filtered'],
        [{ from: 'host', dst: '10.77.0.4', proto: 'tcp', port: 8080 }, 'filtered'],
        [{ from: 'host', dst: '10.77.0.3', proto: 'icmp', port: 8 }, 'filtered'],
      ];
      const results = await labProbe(lab, expect.map(([p]) => p), { timeoutMs: 500 });
      assert.deepEqual(
        results.map((r) => `${r.from} -> ${r.dst} ${r.proto}/${r.port}: ${r.result}`),
        expect.map(([p, want]) => `${p.from} -> ${p.dst} ${p.proto}/${p.port}: ${want}`),
      );
    } finally {
      await labDown(lab.runId);
    }
  });
}
