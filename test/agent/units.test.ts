/**
 * The agent's parts that need neither root nor a kernel: ruleset checks and
 * rewrites, counters, drift descriptions, packet parsing, the drop
 * aggregator, the conntrack tracker, the disk buffer, the backoff, the
 * options, and the HTTP client against the stand-in server.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Backoff } from '../../src/agent/backoff.js';
import { FlowBuffer } from '../../src/agent/buffer.js';
import { AgentClient, AgentHttpError, bareEtag, flowColumns, type AgentFlow } from '../../src/agent/client.js';
import { ConntrackTracker } from '../../src/agent/conntrack.js';
import { definesTable, describeDrift, foreignStatement, routeLogsToNflog, ruleCounters } from '../../src/agent/enforce.js';
import { addressesFromIpJson } from '../../src/agent/host.js';
import { DropAggregator, parsePacket, parsePrefix, parseReaderLine } from '../../src/agent/nflog.js';
import { agentOptions, parseLabels } from '../../src/cli/agent.js';
import { UsageError } from '../../src/cli/common.js';
import { StandInServer } from './stand-in-server.js';
import { decodeFlowBatch, encodeFlowBatch, FLOW_WIRE_TYPE } from '../../src/flows/wire.js';

const tmp: string[] = [];
after(() => {
  for (const d of tmp) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bh-agent-unit-'));
  tmp.push(d);
  return d;
}

const RULESET = `# bulkhead ruleset for web (mode enforce)
table inet bulkhead {}
delete table inet bulkhead
table inet bulkhead {
  chain input {
    type filter hook input priority filter; policy accept;
    ct state established,related accept
    jump ingress
  }
  chain ingress {
    tcp dport 22 limit rate 10/second log prefix "bh drop r1 "
    tcp dport 22 counter drop comment "r1"
    limit rate 10/second log prefix "bh drop default "
    counter drop comment "default"
  }
}
`;

describe('rulesets', () => {
  it('accepts a ruleset about bulkhead\'s table only', () => {
    assert.equal(foreignStatement(RULESET), undefined);
    assert.equal(foreignStatement('table inet bulkhead {}\ndelete table inet bulkhead\n# idle: nothing is programmed\n'), undefined);
  });

  it('refuses statements about anything else', () => {
    assert.match(foreignStatement(`flush ruleset; ${RULESET}`) ?? '', /flush ruleset/);
    assert.match(foreignStatement(`${RULESET}table ip filter { chain c { type filter hook input priority 0; policy drop; } }\n`) ?? '', /table ip filter/);
    assert.match(foreignStatement(`${RULESET}delete table inet other\n`) ?? '', /delete table inet other/);
    assert.match(foreignStatement(`${RULESET}include "/etc/x.nft"\n`) ?? '', /include/);
    assert.match(foreignStatement('table inet bulkhead {\n') ?? '', /unbalanced/);
  });

  it('ignores braces and hashes inside strings and comments', () => {
    assert.equal(foreignStatement('table inet bulkhead {\n  chain c { counter comment "a } # b { c" }\n}\n# } flush ruleset\n'), undefined);
  });

  it('routes bulkhead log statements to an NFLOG group, once', () => {
    const r = routeLogsToNflog(RULESET, 7);
    assert.equal((r.match(/ group 7/g) ?? []).length, 2);
    assert.match(r, /log prefix "bh drop r1 " group 7/);
    assert.equal(routeLogsToNflog(r, 7), r);
    assert.equal(routeLogsToNflog('log prefix "other " ', 7), 'log prefix "other " ');
  });

  it('knows when a ruleset leaves the table in place', () => {
    assert.equal(definesTable(RULESET), true);
    assert.equal(definesTable('table inet bulkhead {}\ndelete table inet bulkhead\n'), false);
  });

  it('reads drop counters from a listing', () => {
    const listing = `table inet bulkhead {
\tchain ingress {
\t\ttcp dport 22 limit rate 10/second burst 5 packets log prefix "bh drop r1 " group 7
\t\ttcp dport 22 counter packets 3 bytes 180 drop comment "r1"
\t\ttcp dport 80 limit rate 10/second burst 5 packets log prefix "bh test-drop r2 " group 7
\t\ttcp dport 80 counter packets 4 bytes 240 accept comment "r2"
\t\ttcp dport 443 counter packets 9 bytes 540 accept comment "r3"
\t\tip saddr { 10.0.0.1 } counter packets 1 bytes 60 accept comment "failsafe: control plane"
\t\tcounter packets 2 bytes 120 drop comment "default"
\t}
}`;
    assert.deepEqual(ruleCounters(listing), [
      { rule: 'r1', verdict: 'drop', test: false, packets: 3, bytes: 180 },
      { rule: 'r2', verdict: 'accept', test: true, packets: 4, bytes: 240 },
      { rule: 'default', verdict: 'drop', test: false, packets: 2, bytes: 120 },
    ]);
  });

  it('describes drift', () => {
    assert.equal(describeDrift('a\nb', undefined), 'the table was deleted');
    assert.equal(describeDrift('a\nb', 'b\na'), 'rules were reordered');
    assert.equal(describeDrift('a\nb', 'a\nb\nc'), '1 line added, 0 removed: + c');
    assert.equal(describeDrift('', 'x'), 'a table appeared where none should be');
  });
});

describe('logged packets', () => {
  it('reads bulkhead prefixes', () => {
    assert.deepEqual(parsePrefix('bh drop r1 '), { verdict: 'blocked', rule: 'r1' });
    assert.deepEqual(parsePrefix('bh test-drop web-to-db '), { verdict: 'potentially-blocked', rule: 'web-to-db' });
    assert.deepEqual(parsePrefix('bh drop default '), { verdict: 'blocked', rule: 'default' });
    assert.equal(parsePrefix('other '), undefined);
  });

  it('parses IPv4 TCP, UDP and ICMP headers', () => {
    const syn = Buffer.from('4500003c2d0540004006f91a0a4d00010a4d0002bbd4270f3bcb43b100000000a002faf014cb0000', 'hex');
    assert.deepEqual(parsePacket(syn), { proto: 6, src: '10.77.0.1', dst: '10.77.0.2', sport: 48084, dport: 9999, bytes: 60 });
    const udp = Buffer.from('45000021000040004011000c0a0000010a000002d43100350015abcd', 'hex');
    assert.deepEqual(parsePacket(udp), { proto: 17, src: '10.0.0.1', dst: '10.0.0.2', sport: 54321, dport: 53, bytes: 33 });
    const echo = Buffer.from('45000054000040004001000c0a0000010a0000020800f7ff00010001', 'hex');
    assert.deepEqual(parsePacket(echo), { proto: 1, src: '10.0.0.1', dst: '10.0.0.2', sport: 0, dport: 8 * 256, bytes: 84 });
  });

  it('parses IPv6 with and without extension headers', () => {
    const v6 = (next: number, rest: string) => Buffer.from(`600000000028${next.toString(16).padStart(2, '0')}40` + 'fd000077000000000000000000000001' + 'fd000077000000000000000000000002' + rest, 'hex');
    assert.deepEqual(parsePacket(v6(6, 'c35000500000000000000000a002')), { proto: 6, src: 'fd00:77::1', dst: 'fd00:77::2', sport: 50000, dport: 80, bytes: 80 });
    // hop-by-hop options (8 bytes), then UDP
    assert.deepEqual(parsePacket(v6(0, '1100000000000000' + 'c3500035')), { proto: 17, src: 'fd00:77::1', dst: 'fd00:77::2', sport: 50000, dport: 53, bytes: 80 });
    assert.equal(parsePacket(Buffer.from('60', 'hex')), undefined);
    assert.equal(parsePacket(Buffer.from('00', 'hex')), undefined);
  });

  it('reads the reader\'s lines', () => {
    const line = JSON.stringify({ t: 1700000000.5, f: 2, p: 'bh drop r1 ', h: '4500003c2d0540004006f91a0a4d00010a4d0002bbd4270f3bcb43b1' });
    assert.deepEqual(parseReaderLine(line), { at: 1700000000500, packet: { verdict: 'blocked', rule: 'r1', proto: 6, src: '10.77.0.1', dst: '10.77.0.2', sport: 48084, dport: 9999, bytes: 60 } });
    assert.equal(parseReaderLine('{"ready": true}'), undefined);
    assert.equal(parseReaderLine('not json'), undefined);
  });

  it('folds retries of one blocked connection into one record, and stays bounded', () => {
    const local = new Set(['10.0.0.2']);
    const agg = new DropAggregator((a) => local.has(a), 2);
    const p = { verdict: 'blocked' as const, rule: 'default', proto: 6, src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 22, bytes: 60 };
    agg.add(p, 1000);
    agg.add(p, 2000);
    agg.add({ ...p, sport: 40001 }, 2500);
    agg.add({ ...p, sport: 40002 }, 2600);
    agg.add({ ...p, src: '10.9.9.9', dst: '10.9.9.8' }, 2700);
    const out = agg.drain();
    assert.equal(out.length, 2);
    assert.deepEqual(out[0], { start: 1000, end: 2000, src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 22, proto: 6, packets: 2, bytes: 120, initiator: 'src', verdict: 'blocked', rule: 'default' });
    assert.equal(agg.overflow, 1);
    assert.deepEqual(agg.drain(), []);
  });
});

describe('conntrack tracker', () => {
  const line = (sport: number, packets: number, id = 1) =>
    `ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=${sport} dport=8080 packets=${packets} bytes=${packets * 100} src=10.0.0.2 dst=10.0.0.1 sport=8080 dport=${sport} packets=${packets} bytes=${packets * 100} [ASSURED] mark=0 use=1 id=${id}`;
  const local = (a: string) => a === '10.0.0.2';

  it('reports a connection once, then its new traffic as it ends', () => {
    const t = new ConntrackTracker({ isLocal: local, refreshMs: 60_000 });
    const first = t.snapshot(line(40000, 2), 1000);
    assert.deepEqual(first, [{ start: 1000, end: 1000, src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 8080, proto: 6, packets: 4, bytes: 400, initiator: 'src' }]);
    assert.deepEqual(t.snapshot(line(40000, 5), 2000), [], 'nothing new to report yet');
    const ended = t.snapshot('', 3000);
    assert.deepEqual(ended, [{ start: 1000, end: 3000, src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 8080, proto: 6, packets: 6, bytes: 600, initiator: 'src' }]);
    assert.equal(t.size, 0);
  });

  it('reports long connections every refresh, and a reused tuple as a new connection', () => {
    const t = new ConntrackTracker({ isLocal: local, refreshMs: 1000 });
    t.snapshot(line(40000, 1), 0);
    assert.equal(t.snapshot(line(40000, 3), 1500)[0].packets, 4);
    assert.equal(t.snapshot(`${line(40000, 3)}\n${line(40000, 1, 2)}`, 1600).length, 1, 'the new id is a new connection');
  });

  it('leaves out connections that are not the host\'s, and counts unreadable lines', () => {
    const t = new ConntrackTracker({ isLocal: (a) => a === '10.9.9.9' });
    assert.deepEqual(t.snapshot(`${line(1, 1)}\nipv4 2 tcp 6 garbage`, 0), []);
    assert.equal(t.bad, 1);
  });
});

describe('flow buffer', () => {
  const rec = (i: number): AgentFlow => ({ start: i, end: i, src: '10.0.0.1', dst: '10.0.0.2', sport: 1000 + i, dport: 80, proto: 6, packets: 1, bytes: 60 });

  it('keeps records across restarts and replays them oldest first', async () => {
    const dir = tempDir();
    const b = new FlowBuffer({ dir, segmentRecords: 3 });
    b.append([0, 1, 2, 3, 4].map(rec));
    assert.deepEqual(b.stats(), { segments: 2, records: 5, bytes: b.stats().bytes, dropped: 0, refused: 0 });
    const again = new FlowBuffer({ dir, segmentRecords: 3 });
    assert.equal(again.stats().records, 5);
    const got: number[] = [];
    const send = async (rs: AgentFlow[]) => (got.push(...rs.map((r) => r.start)), { stored: rs.length, refused: 0 });
    assert.equal(await again.drain(send, undefined, 1), 3, 'one segment at a time when asked');
    assert.equal(await again.drain(send), 2);
    assert.deepEqual(got, [0, 1, 2, 3, 4]);
    assert.equal(again.stats().records, 0);
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.jsonl')), []);
  });

  it('stops at a failure and keeps the segment', async () => {
    const b = new FlowBuffer({ dir: tempDir(), segmentRecords: 2 });
    b.append([0, 1, 2].map(rec));
    let calls = 0;
    await assert.rejects(
      b.drain(async () => {
        if (++calls === 2) throw new Error('down');
        return { stored: 1, refused: 0 };
      }),
      /down/,
    );
    assert.equal(b.stats().records, 1);
  });

  it('drops the oldest segments past its cap, and counts them', () => {
    const dir = tempDir();
    const b = new FlowBuffer({ dir, maxBytes: 600, segmentRecords: 2 });
    for (let i = 0; i < 10; i++) b.append([rec(2 * i), rec(2 * i + 1)]);
    const s = b.stats();
    assert.ok(s.bytes <= 600, `${s.bytes} bytes`);
    assert.ok(s.dropped > 0 && s.dropped + s.records === 20, JSON.stringify(s));
    assert.equal(new FlowBuffer({ dir }).stats().dropped, s.dropped, 'the count survives a restart');
  });

  it('counts and removes batches the server refuses for good', async () => {
    const b = new FlowBuffer({ dir: tempDir() });
    b.append([rec(1)]);
    assert.equal(await b.drain(async (rs) => ({ stored: 0, refused: rs.length })), 0);
    assert.equal(b.stats().refused, 1);
    assert.equal(b.stats().records, 0);
  });
});

describe('backoff', () => {
  it('grows exponentially with jitter, up to its cap, and resets', () => {
    const lo = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0 });
    const hi = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.999999 });
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => lo.next()), [50, 100, 200, 400, 500, 500]);
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => hi.next()), [100, 200, 400, 800, 1000, 1000]);
    lo.reset();
    assert.equal(lo.next(), 50);
  });
});

describe('host facts and options', () => {
  it('takes the global addresses from ip -j addr', () => {
    const json = JSON.stringify([
      { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', scope: 'host' }, { family: 'inet6', local: '::1', scope: 'host' }] },
      { ifname: 'eth0', addr_info: [{ family: 'inet', local: '10.1.0.1', scope: 'global' }, { family: 'inet6', local: 'fd00:1::1', scope: 'global' }, { family: 'inet6', local: 'fe80::1', scope: 'link' }] },
    ]);
    assert.deepEqual(addressesFromIpJson(json), ['10.1.0.1', 'fd00:1::1']);
    assert.deepEqual(addressesFromIpJson('nonsense'), []);
  });

  it('parses labels and options, the command line over the config file', () => {
    assert.deepEqual(parseLabels('role=web, env=prod'), { role: 'web', env: 'prod' });
    assert.throws(() => parseLabels('role'), UsageError);
    assert.throws(() => parseLabels('a=1,a=2'), UsageError);
    const io = { out: () => undefined, err: () => undefined, color: false };
    const o = agentOptions({ server: 'http://127.0.0.1:1', token: 't', netns: 'bh-x', labels: 'role=web', flowInterval: '0.5', nflogGroup: '0' }, io, {});
    assert.equal(o.hostname, 'bh-x');
    assert.equal(o.flowSeconds, 0.5);
    assert.equal(o.nflogGroup, false);
    assert.deepEqual(o.labels, { role: 'web' });
    assert.throws(() => agentOptions({ server: 'http://x' }, io, {}), /token is missing/);
    assert.equal(agentOptions({ server: 'http://x' }, io, { BULKHEAD_AGENT_TOKEN: 'e' }).token, 'e');
    assert.throws(() => agentOptions({ token: 't' }, io, {}), /--server/);
    assert.throws(() => agentOptions({ server: 'http://x', token: 't', wait: '0' }, io, {}), /--wait/);
  });
});

describe('client against the stand-in server', () => {
  it('registers, long-polls with ETags, posts flows and events, and reports HTTP errors', async () => {
    const server = new StandInServer();
    server.addAgent('tok', 'web');
    await server.start();
    try {
      const c = new AgentClient({ server: server.url, token: 'tok' });
      const reg = await c.register({ hostname: 'h', addresses: ['10.0.0.2'], labels: {}, agentVersion: 'x' });
      assert.equal(reg.workload, 'web');
      assert.equal(reg.pollSeconds, 30);
      assert.equal(reg.policyAddresses, undefined, 'the stand-in does not say: the agent does not filter');
      assert.equal(await c.policy(undefined, 0), undefined, 'no policy yet: 304');
      const waiting = c.policy(undefined, 5);
      const etag = server.setPolicy('web', RULESET, 1);
      const doc = await waiting;
      assert.equal(doc?.etag, etag);
      assert.equal(doc?.ruleset, RULESET);
      const t0 = Date.now();
      assert.equal(await c.policy(etag, 1), undefined, 'unchanged: held, then 304');
      assert.ok(Date.now() - t0 >= 900);
      assert.equal(await c.flows([{ start: 1, end: 1, src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2, proto: 6, packets: 1, bytes: 1 }]), 1);
      await assert.rejects(c.flows([{ start: 1, end: 1, src: '10.0.0.1', dst: '10.0.0.3', sport: 1, dport: 2, proto: 6, packets: 1, bytes: 1 }]), (e: AgentHttpError) => e.status === 403 && !e.transient);
      const bad = new AgentClient({ server: server.url, token: 'nope' });
      await assert.rejects(bad.heartbeat({}), (e: AgentHttpError) => e.status === 401 && e.code === 'unauthorized');
      c.close();
      bad.close();
    } finally {
      await server.stop();
    }
    const down = new AgentClient({ server: server.url, token: 'tok', timeoutMs: 2000 });
    await assert.rejects(down.heartbeat({}), (e: AgentHttpError) => e.status === 0 && e.transient);
    down.close();
    assert.equal(bareEtag('W/"abc"'), 'abc');
  });
});

describe('client: flow batches in binary', () => {
  const records: AgentFlow[] = [
    { start: 1, end: 2, src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2, proto: 6, packets: 1, bytes: 60 },
    { start: 3, end: 4, src: '2001:db8::2', dst: '10.0.0.9', sport: 5, dport: 22, proto: 6, packets: 2, bytes: 120, initiator: 'src', verdict: 'blocked', rule: 'no-ssh' },
  ];

  it('sends binary to a server that takes it, steps down to columns on a 415 and keeps to them once they pass; a record binary cannot hold goes as columns once', async () => {
    let takesBinary = true;
    let refuseAll = false;
    const got: { type: string; body: Buffer }[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const type = String(req.headers['content-type']);
        const send = (status: number, v: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(v));
        };
        if (req.url === '/api/v1/agent/register') return send(200, { workload: 'web', flowFormats: ['records', 'columns', 'binary'] });
        got.push({ type, body });
        if (refuseAll) return send(400, { error: { code: 'bad-request', message: 'record 0: `end` is before `start`' } });
        if (type === FLOW_WIRE_TYPE) {
          if (!takesBinary) return send(415, { error: { code: 'unsupported-media-type', message: 'send the body as application/json' } });
          const b = decodeFlowBatch(body, 100);
          return send('message' in b ? 400 : 200, 'message' in b ? { error: { code: 'bad-request', message: b.message } } : { accepted: b.length });
        }
        const j = JSON.parse(body.toString()) as { columns?: { start: unknown[] }; records?: unknown[] };
        return send(200, { accepted: j.columns ? j.columns.start.length : j.records!.length });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const c = new AgentClient({ server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' });
    try {
      await c.register({ hostname: 'h', addresses: ['10.0.0.2'], labels: {}, agentVersion: 'x' });
      assert.equal(await c.flows(records), 2);
      const first = got.splice(0);
      assert.equal(first.length, 1);
      assert.equal(first[0].type, FLOW_WIRE_TYPE);
      assert.ok(first[0].body.equals(Buffer.from(encodeFlowBatch(records))), 'the encoded records');
      // A record the binary form cannot hold (a port out of range): this batch as columns, the next in binary again.
      assert.equal(await c.flows([{ ...records[0], dport: 70000 }]), 1);
      assert.deepEqual(got.splice(0).map((g) => g.type), ['application/json']);
      assert.equal(await c.flows(records), 2);
      assert.deepEqual(got.splice(0).map((g) => g.type), [FLOW_WIRE_TYPE]);
      // A batch that every form gets refused (400 each time): an error, and the next batch goes in binary again.
      refuseAll = true;
      await assert.rejects(c.flows(records), (e: AgentHttpError) => e.status === 400);
      assert.equal(got.splice(0).length, 3, 'binary, columns, records');
      refuseAll = false;
      assert.equal(await c.flows(records), 2);
      assert.deepEqual(got.splice(0).map((g) => g.type), [FLOW_WIRE_TYPE]);
      // The server behind the address stops taking binary: columns, and columns from then on.
      takesBinary = false;
      assert.equal(await c.flows(records), 2);
      assert.deepEqual(got.splice(0).map((g) => [g.type, g.type === 'application/json' ? Object.keys(JSON.parse(g.body.toString()))[0] : 'binary']), [[FLOW_WIRE_TYPE, 'binary'], ['application/json', 'columns']]);
      assert.equal(await c.flows(records), 2);
      assert.deepEqual(got.splice(0).map((g) => g.type), ['application/json']);
    } finally {
      c.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('client: flow batches as columns', () => {
  const records: AgentFlow[] = [
    { start: 1, end: 2, src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2, proto: 6, packets: 1, bytes: 60 },
    { start: 3, end: 4, src: '10.0.0.2', dst: '10.0.0.9', sport: 5, dport: 22, proto: 6, packets: 2, bytes: 120, initiator: 'src', verdict: 'blocked', rule: 'no-ssh' },
  ];

  it('writes records as columns, null where a record has no optional field', () => {
    assert.deepEqual(flowColumns(records), {
      start: [1, 3], end: [2, 4], src: ['10.0.0.1', '10.0.0.2'], dst: ['10.0.0.2', '10.0.0.9'], sport: [1, 5], dport: [2, 22], proto: [6, 6], packets: [1, 2], bytes: [60, 120],
      initiator: [null, 'src'], verdict: [null, 'blocked'], rule: [null, 'no-ssh'],
    });
    assert.deepEqual(Object.keys(flowColumns(records.slice(0, 1))), ['start', 'end', 'src', 'dst', 'sport', 'dport', 'proto', 'packets', 'bytes'], 'no optional column when no record has it');
  });

  it('sends columns to a server that says it takes them, records to one that does not, and falls back to records on a 400', async () => {
    let formats: string[] | undefined = ['records', 'columns'];
    let takesColumns = true;
    const bodies: Record<string, unknown>[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>;
        const send = (status: number, v: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(v));
        };
        if (req.url === '/api/v1/agent/register') return send(200, { workload: 'web', ...(formats ? { flowFormats: formats } : {}) });
        bodies.push(body);
        if ('columns' in body && !takesColumns) return send(400, { error: { code: 'bad-request', message: 'unknown field `columns`' } });
        const n = 'columns' in body ? (body.columns as { start: unknown[] }).start.length : (body.records as unknown[]).length;
        return send(200, { accepted: n });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const c = new AgentClient({ server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' });
    try {
      const reg = { hostname: 'h', addresses: ['10.0.0.2'], labels: {}, agentVersion: 'x' };
      assert.deepEqual((await c.register(reg)).flowFormats, ['records', 'columns']);
      assert.equal(await c.flows(records), 2);
      assert.deepEqual(bodies.pop(), { columns: flowColumns(records) });
      // The server behind the address changes to one that takes only records.
      takesColumns = false;
      assert.equal(await c.flows(records), 2);
      assert.deepEqual(bodies.splice(0), [{ columns: flowColumns(records) }, { records }]);
      assert.equal(await c.flows(records), 2);
      assert.deepEqual(bodies.splice(0), [{ records }], 'keeps to records after the fallback');
      // A server that does not say: records.
      formats = undefined;
      takesColumns = true;
      assert.equal((await c.register(reg)).flowFormats, undefined);
      assert.equal(await c.flows(records), 2);
      assert.deepEqual(bodies.splice(0), [{ records }]);
    } finally {
      c.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
