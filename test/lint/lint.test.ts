import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lint, type Finding, type LintCode } from '../../src/lint/index.js';
import { checkGolden } from '../helpers/golden.js';
import { policyFromYaml } from '../helpers/policy.js';
import { cli } from '../helpers/cli.js';

const BASE = `
taxonomy:
  role: [web, app, db, jump]
  app: open
  env: [prod, dev]
  loc: [dc1]
workloads:
  - { name: web-1, addresses: [10.0.0.1], labels: { role: web, app: shop, env: prod, loc: dc1 } }
  - { name: app-1, addresses: [10.0.0.2], labels: { role: app, app: shop, env: prod, loc: dc1 } }
  - { name: db-1, addresses: [10.0.0.3], labels: { role: db, app: shop, env: prod, loc: dc1 } }
  - { name: web-2, addresses: [10.0.1.1], labels: { role: web, app: shop, env: dev, loc: dc1 } }
iplists:
  - { name: internet, include: [0.0.0.0/0, "::/0"], exclude: [10.0.0.0/8] }
  - { name: partners, include: [198.51.100.0/24] }
services:
  - { name: https, ports: [443/tcp] }
  - { name: web, ports: [80/tcp, 443/tcp] }
`;

/** Lints BASE plus the given rulesets (YAML text indented under \`rulesets:\`). */
function lintRules(rules: string, extra = ''): Finding[] {
  const c = policyFromYaml(BASE + extra + '\nrulesets:\n' + rules);
  assert.equal(c.diagnostics.errorCount, 0, JSON.stringify(c.diagnostics.items));
  return lint(c.ir);
}

function codes(fs: readonly Finding[], code: LintCode): Finding[] {
  return fs.filter((f) => f.code === code);
}

// A rule set that lints clean: every workload has an allow rule, nothing broad or covered.
const CLEAN = `
  - name: shop
    scope: "app == 'shop'"
    rules:
      - { id: in, from: [{ iplist: internet }], to: ["role == 'web'"], services: [https] }
      - { id: web-app, from: ["role == 'web'"], to: ["role == 'app'"], services: ["8080/tcp"] }
      - { id: app-db, from: ["role == 'app'"], to: ["role == 'db'"], services: ["5432/tcp"] }
`;

test('a tight policy has no findings', () => {
  assert.deepEqual(lintRules(CLEAN), []);
});

test('any to any is broad: an error on every service, a warning on a few', () => {
  const fs = lintRules(`
  - name: r
    rules:
      - { id: all-any, from: [any], to: [any], services: [any] }
      - { id: all-ping, from: [any], to: [{ selector: "all()", global: true }], services: ["8/icmp"] }
`);
  const broad = codes(fs, 'BH1101');
  assert.deepEqual(broad.filter((f) => f.rule === 'all-any').map((f) => [f.severity, f.message]), [
    ['error', 'rule `all-any` allows any source to any destination'],
    ['warning', 'rule `all-any` allows every service'],
  ]);
  assert.deepEqual(broad.filter((f) => f.rule === 'all-ping').map((f) => f.severity), ['warning']);
  assert.equal(broad[0].loc?.file, 'inline.yaml');
  assert.ok(broad[0].help.length > 0);
});

test('an unscoped all() within a narrow scope is not any to any', () => {
  const fs = lintRules(`
  - name: r
    scope: "app == 'shop'"
    rules:
      - { id: inner, from: ["all()"], to: ["all()"], services: [https] }
`);
  assert.deepEqual(codes(fs, 'BH1101'), []);
});

test('a whole env to a whole env is broad, a role within an env is not', () => {
  const fs = lintRules(`
  - name: r
    rules:
      - { id: env-env, from: ["env == 'prod'"], to: ["env == 'prod'"], services: [https] }
      - { id: env-role, from: ["env == 'prod'"], to: ["env == 'prod' && role == 'db'"], services: [https] }
  - name: scoped
    scope: "env == 'dev'"
    rules:
      - { id: scoped-all, from: ["all()"], to: ["all()"], services: ["22/tcp"] }
`);
  assert.deepEqual(codes(fs, 'BH1101').map((f) => [f.rule, f.message]), [
    ['env-env', 'rule `env-env` allows a whole environment to a whole environment'],
    ['scoped-all', 'rule `scoped-all` allows a whole environment to a whole environment'],
  ]);
});

test('port ranges wider than 1000 ports are broad', () => {
  const fs = lintRules(`
  - name: r
    rules:
      - { id: wide, from: ["role == 'web'"], to: ["role == 'app'"], services: ["8000-9000/tcp", "1000-3000/udp"] }
      - { id: ok, from: ["role == 'web'"], to: ["role == 'app'"], services: ["8000-8999/tcp"] }
      - { id: proto, from: ["role == 'web'"], to: ["role == 'db'"], services: [tcp] }
`);
  assert.deepEqual(codes(fs, 'BH1101').map((f) => f.message), [
    'rule `wide` allows udp ports 1000-3000 (2001 ports)',
    'rule `proto` allows every tcp port (65536 ports)',
  ]);
});

test('broad deny rules are fine', () => {
  const fs = lintRules(CLEAN.replace('rules:', 'rules:\n      - { id: no-dev, action: deny, from: [any], to: [any], services: [any] }'));
  assert.deepEqual(codes(fs, 'BH1101'), []);
});

test('a side with no workload and no address is an empty group', () => {
  const fs = lintRules(`
  - name: r
    scope: "env == 'dev'"
    rules:
      - { id: empty-to, from: ["role == 'web'"], to: ["role == 'db'"], services: [https] }
      - { id: fine, from: [{ iplist: partners }], to: ["role == 'web'"], services: [https] }
`);
  assert.deepEqual(codes(fs, 'BH1102').map((f) => [f.rule, f.message]), [
    ['empty-to', 'rule `empty-to` can match nothing: its `to` side holds no workload and no address'],
  ]);
});

test('an allow rule covered by one wider allow rule is redundant', () => {
  const fs = lintRules(`
  - name: r
    rules:
      - { id: wide, from: [{ iplist: internet }, "role == 'jump'"], to: ["role == 'web'"], services: [web] }
      - { id: narrow, from: [{ iplist: partners }], to: ["role == 'web' && env == 'prod'"], services: [https] }
      - { id: wider-port, from: [{ iplist: partners }], to: ["role == 'web'"], services: ["8443/tcp"] }
      - { id: wider-to, from: [{ iplist: partners }], to: ["role in {'web', 'app'}"], services: [https] }
      - { id: twin-a, from: ["role == 'app'"], to: ["role == 'db'"], services: ["5432/tcp"] }
      - { id: twin-b, from: ["role == 'app'"], to: ["role == 'db'"], services: ["5432/tcp"] }
`);
  assert.deepEqual(codes(fs, 'BH1103').map((f) => f.message), [
    'rule `narrow` is redundant: allow rule `wide` already allows everything it allows',
    'rule `twin-b` is redundant: allow rule `twin-a` already allows everything it allows',
  ]);
});

test('rules that only overlap, or are covered by a program-limited service, are not redundant', () => {
  const fs = lintRules(
    `
  - name: r
    rules:
      - { id: a, from: ["role == 'web'"], to: ["role == 'app'"], services: ["8000-8100/tcp"] }
      - { id: b, from: ["role == 'web'"], to: ["role == 'app'"], services: ["8050-8200/tcp"] }
      - { id: c, from: ["role == 'web'"], to: ["role == 'db'"], services: [nginx] }
      - { id: d, from: ["role == 'web'"], to: ["role == 'db'"], services: ["80/tcp"] }
`,
    `  - { name: nginx, ports: [80/tcp, 443/tcp], process: /usr/sbin/nginx }\n`,
  );
  assert.deepEqual(codes(fs, 'BH1103'), []);
});

test('an allow rule wholly matched by a deny rule is dead', () => {
  const fs = lintRules(`
  - name: r
    rules:
      - { id: no-dev-prod, action: deny, from: ["env == 'dev'"], to: ["env == 'prod'"], services: [any] }
      - { id: dev-to-db, from: ["env == 'dev' && role == 'web'"], to: ["role == 'db' && env == 'prod'"], services: ["5432/tcp"] }
      - { id: dev-to-db-or-partner, from: ["env == 'dev' && role == 'web'"], to: ["role == 'db'", { iplist: partners }], services: ["5432/tcp"] }
`);
  assert.deepEqual(codes(fs, 'BH1104').map((f) => [f.rule, f.message]), [
    ['dev-to-db', 'rule `dev-to-db` can never allow anything: deny rule `no-dev-prod` matches everything it matches'],
  ]);
});

test('managed workloads missing a standard label are reported', () => {
  const c = policyFromYaml(`
taxonomy:
  role: [web]
  app: open
  env: [prod]
workloads:
  - { name: w1, addresses: [10.0.0.1], labels: { role: web, app: a, env: prod } }
  - { name: w2, addresses: [10.0.0.2], labels: { role: web } }
  - { name: w3, addresses: [10.0.0.3], labels: {}, managed: false }
rulesets:
  - name: r
    rules:
      - { id: x, from: ["role == 'web'"], to: ["role == 'web'"], services: ["80/tcp"] }
`);
  assert.equal(c.diagnostics.errorCount, 0);
  assert.deepEqual(codes(lint(c.ir), 'BH1105').map((f) => [f.workload, f.message]), [['w2', 'workload `w2` has no `app`, `env` labels']]);
});

test('no taxonomy, no unlabeled findings', () => {
  const c = policyFromYaml(`
workloads:
  - { name: w1, addresses: [10.0.0.1], labels: {}, mode: test }
`);
  assert.deepEqual(lint(c.ir), []);
});

test('an enforced workload with no allow rule is cut off; test mode or an address rule is not', () => {
  const fs = lintRules(`
  - name: r
    rules:
      - { id: in, from: [{ iplist: internet }], to: ["role == 'web'"], services: [https] }
      - { id: to-db, from: [{ cidr: 10.0.0.1/32 }], to: [{ cidr: 10.0.0.3/32 }], services: ["5432/tcp"] }
      - { id: deny-app, action: deny, from: ["role == 'app'"], to: [any], services: [any] }
`);
  assert.deepEqual(codes(fs, 'BH1106').map((f) => [f.severity, f.workload, f.message]), [
    ['error', 'app-1', 'workload `app-1` is set to enforce but no allow rule applies to it (app `shop`): all its traffic would be dropped'],
  ]);
  const test = lintRules(`
  - name: r
    rules:
      - { id: in, from: [{ iplist: internet }], to: ["role == 'web'"], services: [https] }
`, `modes:\n  - { scope: "role != 'web'", mode: test }\n`);
  assert.deepEqual(codes(test, 'BH1106'), []);
});

test('the cli lints the sample estate (golden), in text and json', async () => {
  const r = await cli('lint', 'examples/estate/policy', '--now', '2026-11-23T00:00:00Z');
  checkGolden('test/fixtures/lint/estate.txt', `exit ${r.code}\n${r.out}\n${r.err}\n`);
  const j = await cli('lint', 'examples/estate/policy', '--now', '2026-11-23T00:00:00Z', '--output', 'json');
  const parsed = JSON.parse(j.out) as { findings: { code: string; line: number | null }[]; errors: number; warnings: number };
  assert.equal(parsed.findings.length, parsed.errors + parsed.warnings);
  assert.equal(j.code, parsed.errors > 0 ? 1 : 0);
  const strict = await cli('lint', 'examples/estate/policy', '--now', '2026-11-23T00:00:00Z', '--strict');
  assert.equal(strict.code, parsed.findings.length > 0 ? 1 : 0);
});

test('the cli exits 1 on error findings, and on warnings only with --strict', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'bh-lint-'));
  writeFileSync(join(dir, 'p.yaml'), BASE + '\nrulesets:\n' + CLEAN);
  assert.equal((await cli('lint', dir, '--strict')).code, 0);
  writeFileSync(join(dir, 'p.yaml'), BASE + '\nrulesets:\n' + CLEAN + '  - name: wide\n    rules:\n      - { id: env-env, from: ["env == \'prod\'"], to: ["env == \'prod\'"], services: [https] }\n');
  assert.equal((await cli('lint', dir)).code, 0);
  assert.equal((await cli('lint', dir, '--strict')).code, 1);
  writeFileSync(join(dir, 'p.yaml'), BASE + '\nrulesets:\n' + CLEAN.replace('rules:', 'rules:\n      - { id: open, from: [any], to: [any], services: [any] }'));
  const r = await cli('lint', dir);
  assert.equal(r.code, 1);
  assert.match(r.out, /error\[BH1101\]: rule `open` allows any source to any destination/);
  writeFileSync(join(dir, 'p.yaml'), 'rulesets: 3\n');
  assert.equal((await cli('lint', dir)).code, 1);
});

test('a rule covered only by several rules together is redundant; mutual covers leave one standing', () => {
  const fs = lintRules(`
  - name: r
    rules:
      - { id: both-ports, from: ["role == 'web'"], to: ["role == 'app'"], services: [web] }
      - { id: port-80, from: ["role == 'web'"], to: ["role == 'app'"], services: ["80/tcp"] }
      - { id: port-443, from: ["role == 'web' && env == 'prod'", "role == 'web' && env == 'dev'"], to: ["role == 'app'"], services: [https] }
      - { id: split-a, from: ["role == 'app'"], to: ["role == 'db'"], services: ["5000-5100/tcp"] }
      - { id: split-b, from: ["role == 'app'"], to: ["role == 'db'"], services: ["5050-5200/tcp"] }
      - { id: split-c, from: ["role == 'app'"], to: ["role == 'db'"], services: ["5000-5200/tcp"] }
`);
  assert.deepEqual(codes(fs, 'BH1103').map((f) => f.message), [
    'rule `port-80` is redundant: allow rule `both-ports` already allows everything it allows',
    'rule `port-443` is redundant: allow rule `both-ports` already allows everything it allows',
    'rule `split-a` is redundant: allow rule `split-c` already allows everything it allows',
    'rule `split-b` is redundant: allow rule `split-c` already allows everything it allows',
  ]);
  // Only a union covers `wide`: neither `web-80` nor `web-443` is inside it, nor it inside either.
  const fs2 = lintRules(`
  - name: r
    rules:
      - { id: wide, from: ["role == 'web'"], to: ["role == 'db'"], services: [web] }
      - { id: web-80, from: ["role == 'web'"], to: ["role == 'db'"], services: ["80/tcp", "8080/tcp"] }
      - { id: web-443, from: ["role in {'web', 'app'}"], to: ["role == 'db'"], services: [https] }
      - { id: x, from: ["role == 'app'"], to: ["role == 'db'"], services: ["22/tcp", "2222/tcp"] }
      - { id: y, from: ["role == 'app'"], to: ["role == 'db'"], services: ["22/tcp", "3333/tcp"] }
      - { id: z, from: ["role == 'app'"], to: ["role == 'db'"], services: ["2222/tcp", "3333/tcp"] }
`);
  // x, y and z each lie inside the other two; only the last is reported, so removing what is reported changes nothing.
  assert.deepEqual(codes(fs2, 'BH1103').map((f) => f.message), [
    'rule `wide` is redundant: allow rules `web-80`, `web-443` together already allow everything it allows',
    'rule `z` is redundant: allow rules `x`, `y` together already allow everything it allows',
  ]);
});

test('an allow rule matched only by several deny rules together is dead', () => {
  const fs = lintRules(`
  - name: r
    rules:
      - { id: no-dev-web, action: deny, from: ["env == 'dev' && role == 'web'"], to: ["env == 'prod'"], services: ["80/tcp"] }
      - { id: no-dev-tls, action: deny, from: ["env == 'dev'"], to: ["role == 'db'"], services: [https] }
      - { id: dev-web-db, from: ["env == 'dev' && role == 'web'"], to: ["role == 'db' && env == 'prod'"], services: [web] }
      - { id: dev-web-app, from: ["env == 'dev' && role == 'web'"], to: ["role == 'app' && env == 'prod'"], services: [web] }
`);
  assert.deepEqual(codes(fs, 'BH1104').map((f) => f.message), ['rule `dev-web-db` can never allow anything: deny rules `no-dev-web`, `no-dev-tls` together match everything it matches']);
});

test('removing every rule reported redundant or dead changes no verdict (random estates)', async () => {
  const { randomLabEstate } = await import('../helpers/random-policy.js');
  const { policyFromDoc } = await import('../helpers/policy.js');
  const { Evaluator } = await import('../../src/engine/evaluate.js');
  const { parseAddr } = await import('../../src/netset/ip.js');
  let removed = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const estate = randomLabEstate(seed);
    const full = policyFromDoc(estate.doc);
    const gone = new Set(lint(full.ir).filter((f) => f.code === 'BH1103' || f.code === 'BH1104').map((f) => f.rule));
    if (gone.size === 0) continue;
    removed += gone.size;
    const doc = structuredClone(estate.doc) as { rulesets: { rules: { id: string }[] }[] };
    for (const rs of doc.rulesets) rs.rules = rs.rules.filter((r) => !gone.has(r.id));
    const pruned = policyFromDoc(doc);
    const a = new Evaluator(full.ir, { cacheBits: 0 });
    const b = new Evaluator(pruned.ir, { cacheBits: 0 });
    const addrs = [...full.ir.workloads.flatMap((w) => w.addresses.map((p) => p.addr)), ...estate.externals.flatMap((e) => e.addresses.map((x) => parseAddr(x)!))];
    const conns = [...[22, 80, 443, 5432, 5000, 6000, 8080, 9999].map((port) => [6, port]), [17, 53], [17, 123], [1, 8 * 256]];
    for (const src of addrs)
      for (const dst of addrs) {
        if (src === dst || typeof src !== typeof dst) continue;
        for (const [proto, port] of conns) {
          const flow = { src, dst, proto, port };
          assert.equal(b.decide(flow).verdict, a.decide(flow).verdict, `seed ${seed}: removing ${[...gone].join(', ')} changed ${JSON.stringify({ ...flow, src: String(src), dst: String(dst) })}`);
        }
      }
  }
  assert.ok(removed > 10, `${removed} rules removed over the seeds`);
});
