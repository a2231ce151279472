import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parse } from 'yaml';
import { generateGroundTruth, type GroundTruth } from '../../src/generate/ground-truth.js';
import { compilePolicy } from '../../src/policy/index.js';
import { memoryDoc } from '../../src/policy/source.js';
import { parseAddr, type Addr } from '../../src/netset/ip.js';
import { Evaluator } from '../../src/engine/evaluate.js';
import { recommend, recommendationYaml, type Recommendation } from '../../src/recommend/index.js';
import { agreement } from '../../src/recommend/quality.js';
import type { Edge } from '../../src/flows/map.js';
import type { EstateDocument } from '../../src/generate/types.js';
import { checkGolden } from '../helpers/golden.js';

const compile = (doc: unknown) => {
  const c = compilePolicy({ docs: [memoryDoc('doc', doc)] }, { now: new Date('2026-11-23T00:00:00Z') });
  assert.equal(c.diagnostics.errorCount, 0, c.diagnostics.sorted().map((d) => d.message).join('\n'));
  return c;
};

/** The ground truth's conversations as stored edges (one edge per conversation, scans with one packet). */
function edgesOf(gt: GroundTruth): Edge[] {
  return gt.conversations.map((c, i) => ({ client: c.client, server: c.server, proto: c.proto, port: c.port, flows: 3, packets: 3 * c.packets, bytes: 3000, rejected: 0, first: i, last: i + 1000 }));
}

/** The inventory with the recommended rulesets. */
function withRecommendation(inventory: EstateDocument, rec: Recommendation): EstateDocument {
  return { ...inventory, rulesets: [...(inventory.rulesets ?? []), ...(parse(recommendationYaml(rec)) as { rulesets: EstateDocument['rulesets'] }).rulesets] };
}

const OUTSIDE: Addr[] = [parseAddr('203.0.113.7')!, parseAddr('10.250.0.5')!];

test('recommendation quality on seeded ground-truth estates stays above the floor', () => {
  for (const seed of [1, 2, 3, 4]) {
    const gt = generateGroundTruth({ seed, apps: 8 });
    const inv = compile(gt.inventory);
    const rec = recommend(edgesOf(gt), inv.ir);
    const truth = compile(gt.estate);
    const cand = compile(withRecommendation(gt.inventory, rec));
    const a = agreement(truth.ir, cand.ir, OUTSIDE);
    assert.ok(a.precision >= 0.98, `seed ${seed}: precision ${a.precision}`);
    assert.ok(a.recall >= 0.98, `seed ${seed}: recall ${a.recall}`);
    // The noise is flagged, and nothing legitimate is.
    const noise = new Set(gt.conversations.filter((c) => c.noise).map((c) => `${c.client}>${c.server}:${c.port}`));
    const flagged = new Set(rec.suspicious.map((s) => `${parseAddr(s.client)}>${parseAddr(s.server)}:${parseInt(s.connection, 10)}`));
    const caught = [...noise].filter((k) => flagged.has(k)).length;
    assert.ok(caught / noise.size >= 0.95, `seed ${seed}: ${caught} of ${noise.size} noise edges flagged`);
    const wrong = [...flagged].filter((k) => !noise.has(k)).length;
    assert.ok(wrong <= 0.01 * gt.conversations.length, `seed ${seed}: ${wrong} legitimate edges flagged`);
    // Fewer rules than the ground truth's, or about as many.
    const gtRules = gt.estate.rulesets.reduce((n, r) => n + r.rules.length, 0);
    assert.ok(rec.stats.rules <= gtRules * 1.1, `seed ${seed}: ${rec.stats.rules} rules against the ground truth's ${gtRules}`);
  }
});

test('the agreement measure equals a count over every workload pair', () => {
  const gt = generateGroundTruth({ seed: 9, apps: 3, envs: ['prod', 'dev'] });
  const inv = compile(gt.inventory);
  // A deliberately imperfect candidate: half the edges, so both kinds of error show.
  const rec = recommend(edgesOf(gt).filter((_, i) => i % 2 === 0 && gt.conversations[i].rule !== 'dns'), inv.ir);
  const truth = compile(gt.estate);
  const cand = compile(withRecommendation(gt.inventory, rec));
  const fast = agreement(truth.ir, cand.ir, OUTSIDE);
  const t = new Evaluator(truth.ir, { cacheBits: 0 });
  const c = new Evaluator(cand.ir, { cacheBits: 0 });
  const addrs = truth.ir.workloads.map((w) => ({ addr: w.addresses[0].addr, outside: false }));
  const ends = [...addrs, ...OUTSIDE.map((addr) => ({ addr, outside: true }))];
  const conns = new Set<string>();
  for (const ir of [truth.ir, cand.ir]) for (const r of ir.rules) for (const e of r.conns.entries()) for (const [lo, hi] of e.ranges) for (let p = lo; p <= hi; p++) conns.add(`${e.proto}/${p}`);
  let both = 0;
  let only = 0;
  let missed = 0;
  for (const a of ends)
    for (const b of ends) {
      if (a === b || (a.outside && b.outside)) continue;
      for (const k of conns) {
        const [proto, port] = k.split('/').map(Number);
        const flow = { src: a.addr, dst: b.addr, proto, port };
        const x = t.decide(flow).verdict === 'allowed';
        const y = c.decide(flow).verdict === 'allowed';
        if (x && y) both++;
        else if (y) only++;
        else if (x) missed++;
      }
    }
  assert.deepEqual([fast.both, fast.candidateOnly, fast.truthOnly], [both, only, missed]);
  assert.ok(missed > 0, 'the half-fed candidate misses something');
});

test('no rule allows a group pair that was not observed (property)', () => {
  const gt = generateGroundTruth({ seed: 5, apps: 3, envs: ['prod'] });
  const inv = compile(gt.inventory);
  const ws = inv.ir.workloads;
  const groupOf = (i: number) => ['role', 'app', 'env'].map((k) => ws[i].labels[k]).join('/');
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(ws.length - 1), fc.nat(ws.length - 1), fc.constantFrom(443, 5432, 8080, 9100)), { minLength: 1, maxLength: 60 }), (pairs) => {
      const edges: Edge[] = pairs
        .filter(([a, b]) => a !== b)
        .map(([a, b, port]) => ({ client: ws[a].addresses[0].addr, server: ws[b].addresses[0].addr, proto: 6, port, flows: 5, packets: 50, bytes: 5000, rejected: 0, first: 0, last: 1 }));
      const rec = recommend(edges, inv.ir);
      const seen = new Set(edges.map((e) => `${groupOf(inv.ir.workloadLookup.lookup(e.client)!)}>${groupOf(inv.ir.workloadLookup.lookup(e.server)!)}:${e.port}`));
      const cand = compile(withRecommendation(gt.inventory, rec));
      const ev = new Evaluator(cand.ir, { cacheBits: 0 });
      for (let a = 0; a < ws.length; a++)
        for (let b = 0; b < ws.length; b++) {
          if (a === b) continue;
          for (const port of [443, 5432, 8080, 9100]) {
            if (ev.decide({ src: ws[a].addresses[0].addr, dst: ws[b].addresses[0].addr, proto: 6, port }).verdict !== 'allowed') continue;
            assert.ok(seen.has(`${groupOf(a)}>${groupOf(b)}:${port}`), `${ws[a].name} → ${ws[b].name} ${port}/tcp is allowed but its groups never talked`);
          }
        }
      // And everything observed is allowed.
      for (const e of edges) assert.equal(ev.decide({ src: e.client, dst: e.server, proto: 6, port: e.port }).verdict, 'allowed');
    }),
    { numRuns: 25, seed: 42 },
  );
});

test('incremental mode adds only what the current policy does not allow', () => {
  const gt = generateGroundTruth({ seed: 3, apps: 4 });
  // The current policy lacks the shared services.
  const current: EstateDocument = { ...gt.estate, rulesets: gt.estate.rulesets.filter((r) => r.name !== 'shared-services') };
  const cur = compile(current);
  const edges = edgesOf(gt);
  const rec = recommend(edges, cur.ir, { incremental: true });
  assert.ok(rec.stats.alreadyAllowed > 0);
  const evCur = new Evaluator(cur.ir);
  for (const e of rec.covered) assert.notEqual(evCur.decide({ src: e.client, dst: e.server, proto: e.proto, port: e.port }).verdict, 'allowed');
  assert.ok(rec.rulesets.every((rs) => rs.name.startsWith('rec-')));
  // Together they allow every legitimate conversation.
  const merged = compile(withRecommendation(current, rec));
  const ev = new Evaluator(merged.ir);
  for (const c of gt.conversations.filter((x) => !x.noise)) assert.equal(ev.decide({ src: c.client, dst: c.server, proto: c.proto, port: c.port }).verdict, 'allowed', `${c.rule}`);
  // The new rules are about the shared services only: DNS, NTP, syslog, monitoring, SSH.
  const ports = new Set(rec.covered.map((e) => e.port));
  for (const p of ports) assert.ok([53, 123, 514, 9100, 22].includes(p), `unexpected port ${p}`);
});

/** A small hand-made inventory for the reason and golden tests. */
const SMALL = {
  taxonomy: { role: 'open', app: 'open', env: 'open', host: 'open', site: 'open' },
  iplists: [{ name: 'internet', include: ['0.0.0.0/0'], exclude: ['10.0.0.0/8'] }, { name: 'partners', include: ['198.51.100.0/24'] }],
  services: [{ name: 'https', ports: ['443/tcp'] }, { name: 'postgres', ports: ['5432/tcp'] }],
  workloads: [
    { name: 'web-1', addresses: ['10.0.0.1'], labels: { role: 'web', app: 'shop', env: 'prod', host: 'h1', site: 'x' } },
    { name: 'web-2', addresses: ['10.0.0.2'], labels: { role: 'web', app: 'shop', env: 'prod', host: 'h2', site: 'x' } },
    { name: 'db-1', addresses: ['10.0.0.3'], labels: { role: 'db', app: 'shop', env: 'prod', host: 'h3', site: 'x' } },
    { name: 'web-dev', addresses: ['10.0.1.1'], labels: { role: 'web', app: 'shop', env: 'dev', host: 'h4', site: 'x' } },
    { name: 'db-dev', addresses: ['10.0.1.3'], labels: { role: 'db', app: 'shop', env: 'dev', host: 'h5', site: 'x' } },
    { name: 'jump-1', addresses: ['10.0.9.1'], labels: { role: 'jump', app: 'infra', env: 'prod', host: 'h6', site: 'x' } },
    { name: 'box', addresses: ['10.0.9.9'] },
    { name: 'h7', addresses: ['10.0.9.10'], labels: { host: 'h7', site: 'x' } },
    { name: 'h8', addresses: ['10.0.9.11'], labels: { host: 'h8', site: 'x' } },
    { name: 'h9', addresses: ['10.0.9.12'], labels: { host: 'h9', site: 'x' } },
  ],
};

const edge = (client: string, server: string, port: number, extra: Partial<Edge> = {}): Edge => ({
  client: parseAddr(client)!,
  server: parseAddr(server)!,
  proto: 6,
  port,
  flows: 10,
  packets: 100,
  bytes: 12345,
  rejected: 0,
  first: Date.UTC(2026, 10, 20),
  last: Date.UTC(2026, 10, 21),
  ...extra,
});

test('each kind of suspicious flow is flagged with its reason, and gets no rule', () => {
  const inv = compile(SMALL);
  const scan = Array.from({ length: 20 }, (_, i) => edge('10.0.0.2', '10.0.0.3', 1000 + i, { flows: 1, packets: 1 }));
  const rec = recommend(
    [
      edge('10.0.0.1', '10.0.0.3', 5432),
      edge('10.0.1.1', '10.0.0.3', 5432), // dev web to prod db
      edge('10.0.0.1', '10.0.0.3', 22), // ssh not from the jump host
      edge('10.0.9.1', '10.0.0.3', 22), // ssh from the jump host: fine
      edge('10.0.0.1', '10.7.7.7', 443), // no workload, in no IP list
      edge('10.0.0.1', '10.0.0.3', 47, { proto: 47 }), // GRE
      edge('10.0.0.1', '10.0.0.3', 6379, { rejected: 10 }),
      ...scan,
    ],
    inv.ir,
  );
  const reasons = (client: string, port: number) => rec.suspicious.find((s) => (s.clientWorkload ?? s.client) === client && parseInt(s.connection, 10) === port)?.reasons ?? [];
  assert.deepEqual(reasons('web-dev', 5432), ['cross-env']);
  assert.deepEqual(reasons('web-1', 22), ['admin-port']);
  assert.deepEqual(reasons('web-1', 443), ['unknown-address']);
  assert.deepEqual(reasons('web-1', 6379), ['rejected']);
  assert.ok(rec.suspicious.some((s) => s.reasons.includes('protocol')));
  assert.equal(rec.suspicious.filter((s) => s.reasons.includes('scan')).length, 20);
  assert.equal(reasons('jump-1', 22).length, 0);
  const services = rec.rulesets.flatMap((rs) => rs.rules.flatMap((r) => r.services));
  assert.deepEqual(services.sort(), ['22/tcp', 'postgres']);
});

test('labels without identity are ignored, unlabeled workloads are named, IP lists are most specific; the YAML is golden', () => {
  const inv = compile(SMALL);
  const rec = recommend(
    [
      edge('10.0.0.1', '10.0.0.3', 5432),
      edge('10.0.0.2', '10.0.0.3', 5432),
      edge('10.0.1.1', '10.0.1.3', 5432),
      edge('198.51.100.9', '10.0.0.1', 443),
      edge('203.0.113.5', '10.0.0.2', 443),
      edge('10.0.9.9', '10.0.0.3', 5432),
      edge('10.0.9.1', '10.0.9.9', 22),
    ],
    inv.ir,
    { by: ['role', 'app', 'env', 'host', 'site'] },
  );
  assert.deepEqual(
    rec.ignoredKeys.map((k) => k.key),
    ['host', 'site'],
  );
  const yaml = recommendationYaml(rec);
  checkGolden(fileURLToPath(new URL('../fixtures/recommend/small.yaml', import.meta.url)), yaml);
  const doc = parse(yaml) as { rulesets: { rules: { from: unknown[]; to: unknown[] }[] }[] };
  const peers = JSON.stringify(doc.rulesets.flatMap((rs) => rs.rules.flatMap((r) => [...r.from, ...r.to])));
  assert.match(peers, /"workload":"box"/);
  assert.match(peers, /"iplist":"partners"/);
  assert.match(peers, /"iplist":"internet"/);
  compile(withRecommendation(SMALL as unknown as EstateDocument, rec));
});
