/** The Kubernetes analyzer: manifest reading, workloads, the policy layers, the report format, diagnostics. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnSet } from '../../src/netset/connset.js';
import { analyzeManifests, connlistText, formatConns, K8S_ALL, splitIpv4 } from '../../src/k8s/index.js';
import { IpSet, parsePrefix } from '../../src/netset/ip.js';

const ns = (name: string, labels: Record<string, string> = {}) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n  labels: ${JSON.stringify(labels)}\n`;
const deploy = (n: string, namespace: string, labels: Record<string, string>, ports = '[]') =>
  `apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: ${n}, namespace: ${namespace} }\nspec:\n  replicas: 2\n  template:\n    metadata: { labels: ${JSON.stringify(labels)} }\n    spec: { containers: [{ name: c, ports: ${ports} }] }\n`;

/** The report of manifests given as documents. */
function report(...docs: string[]): string {
  const r = connlistText([{ path: 'm.yaml', text: docs.join('---\n') }]);
  assert.deepEqual(r.diagnostics.items.filter((d) => d.severity === 'error'), []);
  return r.text;
}

const lines = (text: string) => text.split('\n').filter((l) => l !== '');

test('no policy: everything is allowed both ways, external included, never a workload with itself', () => {
  assert.deepEqual(lines(report(deploy('a', 'x', { app: 'a' }), deploy('b', 'x', { app: 'b' }))), [
    '0.0.0.0-255.255.255.255[External] => x/a[Deployment] : All Connections',
    '0.0.0.0-255.255.255.255[External] => x/b[Deployment] : All Connections',
    'x/a[Deployment] => 0.0.0.0-255.255.255.255[External] : All Connections',
    'x/a[Deployment] => x/b[Deployment] : All Connections',
    'x/b[Deployment] => 0.0.0.0-255.255.255.255[External] : All Connections',
    'x/b[Deployment] => x/a[Deployment] : All Connections',
  ]);
});

test('isolation is per direction: an ingress policy leaves egress open', () => {
  const np = `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: p, namespace: x }\nspec:\n  podSelector: { matchLabels: { app: b } }\n  ingress:\n    - from: [{ podSelector: { matchLabels: { app: a } } }]\n      ports: [{ port: 80 }, { protocol: UDP, port: 53, endPort: 54 }]\n`;
  const out = lines(report(deploy('a', 'x', { app: 'a' }), deploy('b', 'x', { app: 'b' }), np));
  assert.ok(out.includes('x/a[Deployment] => x/b[Deployment] : TCP 80,UDP 53-54'));
  assert.ok(out.includes('x/b[Deployment] => x/a[Deployment] : All Connections'), 'b can still send');
  assert.ok(!out.some((l) => l.startsWith('0.0.0.0-255.255.255.255[External] => x/b')), 'nothing from outside reaches b');
});

test('a podSelector alone means the policy namespace; with a namespaceSelector both must match', () => {
  const np = (peer: string) => `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: p, namespace: x }\nspec:\n  podSelector: { matchLabels: { app: b } }\n  policyTypes: [Ingress]\n  ingress: [{ from: [${peer}] }]\n`;
  const docs = [ns('x'), ns('y', { team: 'red' }), deploy('a', 'x', { app: 'a' }), deploy('a', 'y', { app: 'a' }), deploy('b', 'x', { app: 'b' })];
  const same = lines(report(...docs, np('{ podSelector: { matchLabels: { app: a } } }'))).filter((l) => l.endsWith('x/b[Deployment] : All Connections'));
  assert.deepEqual(same, ['x/a[Deployment] => x/b[Deployment] : All Connections']);
  const both = lines(report(...docs, np('{ namespaceSelector: { matchExpressions: [{ key: team, operator: In, values: [red] }] }, podSelector: { matchLabels: { app: a } } }'))).filter((l) =>
    l.endsWith('x/b[Deployment] : All Connections'),
  );
  assert.deepEqual(both, ['y/a[Deployment] => x/b[Deployment] : All Connections']);
});

test('ipBlock with except splits the external sources as np-guard does', () => {
  const np = `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: p, namespace: x }\nspec:\n  podSelector: {}\n  ingress: [{ from: [{ ipBlock: { cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.10.0.0/16] } }] }]\n`;
  const out = lines(report(deploy('b', 'x', { app: 'b' }), np));
  assert.deepEqual(
    out.filter((l) => l.includes('[External] =>')),
    ['10.0.0.0-10.0.255.255[External] => x/b[Deployment] : All Connections', '10.11.0.0-10.255.255.255[External] => x/b[Deployment] : All Connections', '10.2.0.0-10.9.255.255[External] => x/b[Deployment] : All Connections'],
  );
  const P = (s: string) => {
    const r = parsePrefix(s);
    if ('error' in r) throw new Error(r.error);
    return IpSet.fromPrefixes([r.prefix]);
  };
  assert.equal(splitIpv4([P('10.0.0.0/8').subtract(P('10.1.0.0/16')).subtract(P('10.10.0.0/16'))]).length, 7);
});

test('named ports resolve on the destination pod, protocol and all', () => {
  const np = `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: p, namespace: x }\nspec:\n  podSelector: { matchLabels: { app: b } }\n  ingress: [{ ports: [{ port: web }, { port: dns, protocol: TCP }] }]\n`;
  const out = lines(report(deploy('a', 'x', { app: 'a' }), deploy('b', 'x', { app: 'b' }, '[{ name: web, containerPort: 8080 }, { name: dns, containerPort: 53, protocol: UDP }]'), np));
  assert.ok(out.includes('x/a[Deployment] => x/b[Deployment] : TCP 8080'), 'the UDP named port does not match a TCP rule');
});

test('admin policies: priorities, Pass to NetworkPolicy, baseline deny where no NetworkPolicy isolates', () => {
  const anp = `apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: { name: first }\nspec:\n  priority: 5\n  subject: { namespaces: {} }\n  ingress:\n    - { name: pass-web, action: Pass, from: [{ namespaces: {} }], ports: [{ portNumber: { protocol: TCP, port: 80 } }] }\n    - { name: deny-rest, action: Deny, from: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: a } } } }], ports: [{ portRange: { protocol: TCP, start: 1, end: 1000 } }] }\n`;
  const later = `apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: { name: later }\nspec:\n  priority: 9\n  subject: { namespaces: {} }\n  ingress: [{ name: allow-all-80, action: Allow, from: [{ namespaces: {} }], ports: [{ portNumber: { protocol: TCP, port: 80 } }] }]\n`;
  const banp = `apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: { name: default }\nspec:\n  subject: { namespaces: {} }\n  ingress: [{ action: Deny, from: [{ namespaces: {} }], ports: [{ portNumber: { protocol: UDP, port: 53 } }] }]\n`;
  const np = `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: c-only, namespace: x }\nspec:\n  podSelector: { matchLabels: { app: c } }\n  ingress: [{ from: [{ podSelector: { matchLabels: { app: b } } }] }]\n`;
  const out = lines(report(deploy('a', 'x', { app: 'a' }), deploy('b', 'x', { app: 'b' }), deploy('c', 'x', { app: 'c' }), anp, later, banp, np));
  // a -> b: port 80 passed, then no NetworkPolicy isolates b: the baseline; 1-79, 81-1000 denied; UDP 53 denied by the baseline.
  assert.ok(out.includes('x/a[Deployment] => x/b[Deployment] : SCTP 1-65535,TCP 80,1001-65535,UDP 1-52,54-65535'));
  // a -> c: port 80 passed to c's NetworkPolicy, which allows only b; a later ANP allow never sees passed traffic.
  assert.ok(!out.some((l) => l.startsWith('x/a[Deployment] => x/c[Deployment]')), 'c allows only b');
  assert.ok(out.includes('x/b[Deployment] => x/c[Deployment] : All Connections'));
});

test('pods are grouped by their controller owner; Node owners and missing kinds are handled', () => {
  const pod = (name: string, owner: string) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: x\n  labels: { app: p }\n  ownerReferences: [${owner}]\nspec: { containers: [{ name: c }] }\n`;
  const out = lines(
    report(
      pod('rs-1', '{ kind: ReplicaSet, name: web-5d8, controller: true }'),
      pod('rs-2', '{ kind: ReplicaSet, name: web-5d8, controller: true }'),
      pod('static-1', '{ kind: Node, name: node-1, controller: true }'),
      pod('orphan-1', '{ name: keeper, controller: true }'),
      pod('free-1', '{ kind: ReplicaSet, name: not-controller }'),
    ),
  );
  const peers = [...new Set(out.flatMap((l) => l.split(' : ')[0].split(' => ')))].filter((p) => !p.includes('External')).sort();
  assert.deepEqual(peers, ['x/free-1[Pod]', 'x/keeper[Pod]', 'x/static-1[Pod]', 'x/web-5d8[ReplicaSet]']);
});

test('list wrappers, JSON files, empty documents and CRLF line ends', () => {
  const json = JSON.stringify({ apiVersion: 'v1', kind: 'PodList', items: [{ apiVersion: 'v1', metadata: { name: 'p1', namespace: 'j', labels: { a: '1' } }, spec: { containers: [] } }] });
  const yaml = 'apiVersion: v1\r\nkind: List\r\nitems:\r\n  - apiVersion: v1\r\n    kind: Namespace\r\n    metadata: { name: j }\r\n---\r\n# only a comment\r\n---\r\n';
  const r = connlistText([
    { path: 'a.json', text: json },
    { path: 'b.yaml', text: yaml },
  ]);
  assert.deepEqual(r.diagnostics.items, []);
  assert.equal(r.text, '0.0.0.0-255.255.255.255[External] => j/p1[Pod] : All Connections\nj/p1[Pod] => 0.0.0.0-255.255.255.255[External] : All Connections\n');
});

test('connection text: All Connections, protocols in SCTP TCP UDP order, merged ranges', () => {
  assert.equal(formatConns(K8S_ALL), 'All Connections');
  assert.equal(formatConns(ConnSet.ANY), 'All Connections');
  const c = ConnSet.ports('udp', 80, 80).union(ConnSet.ports('udp', 5000, 6000)).union(ConnSet.ports('tcp', 8080, 8080)).union(ConnSet.ports('tcp', 8081, 8081));
  assert.equal(formatConns(c), 'TCP 8080-8081,UDP 80,5000-6000');
  assert.equal(formatConns(K8S_ALL.subtract(ConnSet.ports('udp', 5353, 5353))), 'SCTP 1-65535,TCP 1-65535,UDP 1-5352,5354-65535');
  assert.equal(formatConns(ConnSet.EMPTY), 'No Connections');
});

test('problems are diagnostics with places: YAML syntax, missing kind, bad CIDR, unknown kind, bad operator', () => {
  const a = analyzeManifests([
    { path: 'bad.yaml', text: 'kind: [unclosed\n' },
    { path: 'nokind.yaml', text: 'metadata: { name: x }\n' },
    {
      path: 'np.yaml',
      text: 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: p }\nspec:\n  podSelector: { matchExpressions: [{ key: a, operator: Equals, values: [x] }] }\n  ingress: [{ from: [{ ipBlock: { cidr: 10.0.0.300/8 } }] }]\n',
    },
    { path: 'ing.yaml', text: 'apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: { name: i }\n' },
  ]);
  const got = a.diagnostics.items.map((d) => `${d.severity} ${d.code} ${d.loc?.file}:${d.loc?.line} ${d.message}`);
  assert.deepEqual(got, [
    'error BH001 bad.yaml:2 flow sequence in block collection must be sufficiently indented and end with a ]',
    'error BH004 nokind.yaml:1 a Kubernetes object needs `kind`',
    'error BH401 np.yaml:6 invalid CIDR `10.0.0.300/8`: not an IPv4 or IPv6 address',
    'error BH601 np.yaml:5 unknown selector operator `Equals`',
    'warning BH903 ing.yaml:2 kind `Ingress` is not read',
  ]);
});

test('pods of one owner with different labels that a selector tells apart are reported', () => {
  const pod = (name: string, tier: string) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: x\n  labels: { app: p, tier: ${tier} }\n  ownerReferences: [{ kind: ReplicaSet, name: rs, controller: true }]\n`;
  const np = `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: p, namespace: x }\nspec:\n  podSelector: { matchLabels: { tier: front } }\n`;
  const a = analyzeManifests([{ path: 'm.yaml', text: [pod('a', 'front'), pod('b', 'back'), np].join('---\n') }]);
  assert.deepEqual(
    a.diagnostics.items.map((d) => d.code),
    ['BH904'],
  );
});
