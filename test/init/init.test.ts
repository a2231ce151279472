import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readPolicyDir } from '../../src/adapters/policy-dir.js';
import { compilePolicy } from '../../src/policy/index.js';
import { lint } from '../../src/lint/index.js';
import { TEMPLATES } from '../../src/templates/index.js';
import { cli } from '../helpers/cli.js';

// A minimal estate whose labels every template's selectors match.
const ESTATE = `
taxonomy:
  role: [web, app, db, jump, dns, ntp, ldap, syslog, monitor]
  app: open
  env: [prod, dev]
  loc: [dc1]
  compliance: [pci]
workloads:
  - { name: web-prod, addresses: [10.0.0.1], labels: { role: web, app: shop, env: prod, loc: dc1 } }
  - { name: app-prod, addresses: [10.0.0.2], labels: { role: app, app: shop, env: prod, loc: dc1 } }
  - { name: db-prod, addresses: [10.0.0.3], labels: { role: db, app: shop, env: prod, loc: dc1 } }
  - { name: web-dev, addresses: [10.0.1.1], labels: { role: web, app: shop, env: dev, loc: dc1 } }
  - { name: pay-web, addresses: [10.0.2.1], labels: { role: web, app: pay, env: prod, loc: dc1, compliance: pci } }
  - { name: pay-app, addresses: [10.0.2.2], labels: { role: app, app: pay, env: prod, loc: dc1, compliance: pci } }
  - { name: pay-db, addresses: [10.0.2.3], labels: { role: db, app: pay, env: prod, loc: dc1, compliance: pci } }
  - { name: jump-1, addresses: [10.0.3.1], labels: { role: jump, app: admin, env: prod, loc: dc1 } }
  - { name: dns-1, addresses: [10.0.4.1], labels: { role: dns, app: infra, env: prod, loc: dc1 } }
  - { name: ntp-1, addresses: [10.0.4.2], labels: { role: ntp, app: infra, env: prod, loc: dc1 } }
  - { name: ldap-1, addresses: [10.0.4.3], labels: { role: ldap, app: infra, env: prod, loc: dc1 } }
  - { name: syslog-1, addresses: [10.0.4.4], labels: { role: syslog, app: infra, env: prod, loc: dc1 } }
  - { name: monitor-1, addresses: [10.0.4.5], labels: { role: monitor, app: infra, env: prod, loc: dc1 } }
settings:
  defaultMode: test
`;

function loadWith(files: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'bh-init-'));
  writeFileSync(join(dir, 'estate.yaml'), ESTATE);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const read = readPolicyDir(dir);
  return compilePolicy(read.sources, { diagnostics: read.diagnostics });
}

for (const t of TEMPLATES) {
  test(`template ${t.name} loads clean, with rules, comments and no lint errors`, () => {
    const c = loadWith(t.files);
    assert.deepEqual(c.diagnostics.items, []);
    assert.ok(c.policy.rules.length > 0);
    for (const text of Object.values(t.files)) assert.match(text, /^# /);
    assert.deepEqual(lint(c.ir).filter((f) => f.severity === 'error'), []);
  });
}

test('all templates load together in one directory', () => {
  const all = Object.assign({}, ...TEMPLATES.map((t) => t.files)) as Record<string, string>;
  assert.deepEqual(loadWith(all).diagnostics.items, []);
});

test('init --list lists every template', async () => {
  const r = await cli('init', '--list');
  assert.equal(r.code, 0);
  for (const t of TEMPLATES) assert.match(r.out, new RegExp(`^${t.name} `, 'm'));
});

test('init writes a template and refuses to overwrite without --force', async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'bh-init-')), 'policy');
  const first = await cli('init', '--template', 'shared-services', '--out', out);
  assert.equal(first.code, 0, first.err);
  const file = join(out, 'shared-services.yaml');
  assert.equal(readFileSync(file, 'utf8'), TEMPLATES.find((t) => t.name === 'shared-services')!.files['shared-services.yaml']);
  writeFileSync(file, 'mine\n');
  const again = await cli('init', '--template', 'shared-services', '--out', out);
  assert.equal(again.code, 1);
  assert.match(again.err, /already exists; pass --force to overwrite/);
  assert.equal(readFileSync(file, 'utf8'), 'mine\n');
  const forced = await cli('init', '--template', 'shared-services', '--out', out, '--force');
  assert.equal(forced.code, 0);
  assert.notEqual(readFileSync(file, 'utf8'), 'mine\n');
});

test('init rejects an unknown or missing template', async () => {
  const out = mkdtempSync(join(tmpdir(), 'bh-init-'));
  const unknown = await cli('init', '--template', 'nope', '--out', out);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown template `nope`/);
  const missing = await cli('init', '--out', out);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /give a template/);
  assert.equal(existsSync(join(out, 'nope.yaml')), false);
});
