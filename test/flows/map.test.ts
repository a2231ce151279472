/** The map, pure: grouping, unknown and external ends, IP lists, filters, verdicts, and the port names. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddr } from '../../src/netset/ip.js';
import { buildMap, portName, type Edge as MapInputEdge } from '../../src/flows/map.js';
import { mapMermaid, mapTable } from '../../src/flows/map-render.js';
import { policyFromYaml } from '../helpers/policy.js';

const policy = policyFromYaml(`
iplists:
  - { name: partners, include: [198.51.100.0/24] }
workloads:
  - { name: web-1, addresses: [10.0.1.1], labels: { app: shop, env: prod, role: web } }
  - { name: web-2, addresses: [10.0.1.2], labels: { app: shop, env: prod, role: web } }
  - { name: db-1, addresses: [10.0.2.1], labels: { app: shop, env: prod, role: db } }
  - { name: dev-1, addresses: [10.9.0.1], labels: { app: shop, env: dev, role: app } }
rulesets:
  - name: shop
    rules:
      - { id: web-db, from: ["role == 'web'"], to: ["role == 'db'"], services: ["5432/tcp"] }
`);

const T = Date.parse('2026-11-16T08:00:00Z');
function e(client: string, server: string, port: number, flows = 1, proto = 6): MapInputEdge {
  return { client: parseAddr(client)!, server: parseAddr(server)!, proto, port, flows, packets: flows, bytes: flows * 100, rejected: 0, first: T, last: T + flows };
}
const edges = [e('10.0.1.1', '10.0.2.1', 5432, 10), e('10.0.1.2', '10.0.2.1', 5432, 5), e('10.9.0.1', '10.0.2.1', 5432, 2), e('10.0.1.1', '10.77.3.9', 443, 3), e('10.0.1.1', '10.77.3.10', 443, 1), e('8.8.8.8', '10.0.1.1', 443, 4), e('198.51.100.7', '10.0.1.2', 443, 1)];

test('by workload: unknown internal addresses by /24, one external node, IP lists', () => {
  const m = buildMap(edges, policy.ir, { by: 'workload' });
  assert.deepEqual(
    m.nodes.map((n) => `${n.id} ${n.kind}${n.external ? ' external' : ''}${n.unknown ? ' unknown' : ''} ${n.addresses}`),
    ['l:partners iplist external 1', 'u:10.77.3.0/24 unknown unknown 2', 'w:db-1 workload 1', 'w:dev-1 workload 1', 'w:web-1 workload 1', 'w:web-2 workload 1', 'x:external external external unknown 1'],
  );
  const web1db = m.edges.find((x) => x.from === 'w:web-1' && x.to === 'w:db-1')!;
  assert.deepEqual(web1db.verdicts, { allowed: 10 });
  const dev = m.edges.find((x) => x.from === 'w:dev-1')!;
  assert.deepEqual(dev.verdicts, { blocked: 2 });
  assert.deepEqual(dev.denyingRules, ['(default deny)']);
  const unknown = m.edges.find((x) => x.to === 'u:10.77.3.0/24')!;
  assert.equal(unknown.flows, 4);
  assert.equal(m.flows, 26);
});

test('by labels: groups fold workloads; filters by label, port and flows', () => {
  const m = buildMap(edges, policy.ir, { by: ['app', 'env'] });
  const prod = m.edges.find((x) => x.from === 'g:app=shop,env=prod' && x.to === 'g:app=shop,env=prod')!;
  assert.equal(prod.flows, 15);
  assert.equal(m.nodes.find((n) => n.id === 'g:app=shop,env=prod')!.workloads, 3);
  const dev = buildMap(edges, policy.ir, { by: 'workload', labels: { env: ['dev'] } });
  assert.deepEqual(dev.edges.map((x) => `${x.from} ${x.to}`), ['w:dev-1 w:db-1']);
  const https = buildMap(edges, policy.ir, { by: 'workload', ports: [{ proto: 6, port: 443 }], minFlows: 2 });
  assert.deepEqual(https.edges.map((x) => `${x.from} ${x.to}`), ['w:web-1 u:10.77.3.0/24', 'x:external w:web-1']);
  const none = buildMap(edges, policy.ir, { by: 'workload', verdicts: false });
  assert.equal(none.edges[0].verdicts, undefined);
  assert.match(mapTable(buildMap([], policy.ir, { by: 'workload' })), /0 nodes, 0 edges, 0 flows/);
  assert.match(mapMermaid(m), /^flowchart LR\n/);
});

test('port names', () => {
  assert.equal(portName(6, 5432), '5432/tcp');
  assert.equal(portName(17, 53), '53/udp');
  assert.equal(portName(1, 8 * 256), '8/icmp');
  assert.equal(portName(1, 3 * 256 + 4), '3:4/icmp');
  assert.equal(portName(58, 128 * 256), '128/icmpv6');
  assert.equal(portName(1, 65535), 'icmp');
  assert.equal(portName(47, 0), 'proto 47');
});
