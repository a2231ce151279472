/** Attribution of ends (workload, IP list, unknown, external) and the server side of flows. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddr, type Addr } from '../../src/netset/ip.js';
import { Attributor, fold, ServerInference, SERVER, SERVER_REASONS } from '../../src/flows/attribute.js';
import { FlowBatch, type FlowRecord } from '../../src/flows/record.js';
import { sampleEstate } from '../helpers/estate.js';

const a = (s: string): Addr => parseAddr(s)!;

test('ends: workloads by longest prefix, IP lists, unknown and external', () => {
  const c = sampleEstate();
  const at = new Attributor(c.ir);
  const name = (s: string) => {
    const e = at.end(a(s));
    return e.kind === 'workload' ? c.ir.workloads[e.workload!].name : `${e.kind}:${e.iplists.join('+')}${e.external ? ' (external)' : ''}`;
  };
  assert.equal(name('10.10.1.41'), 'shop-prod-db-1');
  assert.equal(name('2001:db8:10:5::11'), 'payments-prod-web-1');
  assert.equal(name('10.100.250.77'), 'alb-dev', 'a /24 workload');
  assert.equal(name('198.51.100.20'), 'partner-sftp-acme', 'a workload wins over its IP list');
  assert.deepEqual(at.end(a('198.51.100.20')).iplists, ['internet', 'partners']);
  assert.equal(name('93.184.216.34'), 'iplist:internet (external)');
  assert.equal(name('198.51.100.99'), 'iplist:internet+partners (external)');
  assert.equal(name('10.200.3.4'), 'iplist:corp-vpn');
  assert.equal(name('10.99.9.9'), 'unknown:');
  assert.equal(name('172.16.5.5'), 'unknown:');
  assert.equal(name('::1'), 'iplist:internet', 'loopback is in the internet list as written, but internal');
  const extra = new Attributor(c.ir, { internal: [{ addr: a('203.0.113.0') as number, len: 24 }] });
  assert.equal(extra.end(a('203.0.113.200')).external, false);
});

const T = Date.parse('2026-11-16T08:00:00Z');
function rec(src: string, sp: number, dst: string, dp: number, extra: Partial<FlowRecord> = {}): FlowRecord {
  return { start: T, end: T, src: a(src), dst: a(dst), proto: 6, srcPort: sp, dstPort: dp, packets: 1, bytes: 1, format: 'netflow9', ...extra };
}

test('server side: what the source says, then TCP flags', () => {
  const s = new ServerInference(sampleEstate().policy);
  assert.equal(s.serverSide(rec('10.0.0.1', 80, '10.0.0.2', 50000, { initiator: 'src' })), 'dst', 'the initiator is the client, whatever the ports');
  assert.equal(s.serverSide(rec('10.0.0.1', 50000, '10.0.0.2', 80, { initiator: 'dst' })), 'src');
  assert.equal(s.serverSide(rec('10.0.0.1', 443, '10.0.0.2', 50001, { tcpFlags: 2 })), 'dst', 'SYN without ACK comes from the client');
  assert.equal(s.serverSide(rec('10.0.0.1', 50002, '10.0.0.2', 443, { tcpFlags: 18, format: 'aws-vpc' })), 'src', "AWS's SYN-ACK comes from the server");
  assert.equal(s.serverSide(rec('10.0.0.1', 50003, '10.0.0.2', 443, { tcpFlags: 27 })), 'dst', 'NetFlow flags OR both: the ports decide');
});

test('server side: policy service ports, well-known and common ports, registered, ephemeral, then the lower port', () => {
  const s = new ServerInference(sampleEstate().policy);
  assert.equal(s.portClass(6, 2575), 4, 'hl7 is a service of the policy');
  assert.equal(s.portClass(6, 40050), 4, 'inside the spark executor range of the policy');
  assert.equal(s.portClass(6, 31000), 1, 'nodeports are too wide a range to count');
  assert.equal(s.portClass(6, 443), 4, 'https is a service of the policy');
  assert.equal(s.portClass(6, 25), 3, 'well-known');
  assert.equal(s.portClass(6, 27017), 3, 'a common registered service port');
  assert.equal(s.portClass(6, 20000), 1);
  assert.equal(s.portClass(6, 50000), 3);
  assert.equal(s.portClass(6, 50001), 0);
  assert.equal(s.serverSide(rec('10.0.0.1', 5432, '10.0.0.2', 49152)), 'src');
  assert.equal(s.serverSide(rec('10.0.0.3', 49153, '10.0.0.4', 2575)), 'dst');
  assert.equal(s.serverSide(rec('10.0.0.5', 40050, '10.0.0.6', 3000)), 'src', 'a policy port beats a common one');
  assert.equal(s.serverSide(rec('10.0.0.7', 20001, '10.0.0.8', 20002)), 'src', 'a tie goes to the lower port');
  assert.equal(s.serverSide(rec('10.0.0.9', 123, '10.0.0.10', 123, { proto: 17 })), 'dst', 'equal ports: the destination');
});

test('server side: listening evidence, a port many peers talk to, beats the port numbers', () => {
  const s = new ServerInference();
  // A gRPC service on 50051; clients use ports below it from the ephemeral range.
  const first = s.serverSide(rec('10.1.0.1', 40001, '10.9.0.9', 50051));
  assert.equal(first, 'src', 'with no evidence yet, the lower port looks like the server');
  for (let k = 2; k <= 4; k++) s.serverSide(rec(`10.1.0.${k}`, 40000 + k, '10.9.0.9', 50051));
  assert.equal(s.serverSide(rec('10.1.0.9', 40009, '10.9.0.9', 50051)), 'dst');
  assert.equal(s.serverSide(rec('10.9.0.9', 50051, '10.1.0.10', 40010)), 'src', 'the reply direction too');
  assert.ok(s.reasons[SERVER_REASONS.indexOf('listener')] >= 2);
});

test('server side: ICMP replies and other protocols; folding ports away', () => {
  const s = new ServerInference();
  const reply = rec('10.0.0.2', 0, '10.0.0.1', 0 * 256, { proto: 1 });
  assert.equal(s.serverSide(reply), 'src');
  assert.deepEqual(fold(reply, 'src'), { client: a('10.0.0.1'), server: a('10.0.0.2'), proto: 1, port: 8 * 256 });
  assert.equal(s.serverSide(rec('10.0.0.1', 0, '10.0.0.2', 8 * 256, { proto: 1 })), 'dst');
  assert.equal(s.serverSide(rec('10.0.0.1', 0, '10.0.0.2', 0, { proto: 47 })), 'dst');
  const f = fold(rec('10.0.0.2', 5432, '10.0.0.1', 49152), 'src');
  assert.deepEqual(f, { client: a('10.0.0.1'), server: a('10.0.0.2'), proto: 6, port: 5432 });
});

test('server side: a batch, IPv6 rows and all', () => {
  const s = new ServerInference();
  const b = new FlowBatch(4);
  const rows = [rec('10.0.0.1', 49152, '10.0.0.2', 443), rec('2001:db8::1', 443, '2001:db8::2', 55555), rec('10.0.0.1', 22, '2001:db8::2', 60000), rec('10.0.0.3', 60001, '10.0.0.4', 8080)];
  rows.forEach((r, i) => b.set(i, r));
  b.length = rows.length;
  const out = new Uint8Array(4);
  s.orient(b, out);
  assert.deepEqual([...out], [SERVER.dst, SERVER.src, SERVER.src, SERVER.dst]);
});
