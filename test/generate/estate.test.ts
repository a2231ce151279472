/**
 * The sample estate in examples/estate: it is sound (names, addresses,
 * references, taxonomy, selectors, modes), it has the shape its README
 * promises, and every flow in expected-flows.yaml gets the expected verdict
 * from a reference evaluator written from docs/POLICY.md alone.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import type { EstateDocument, WorkloadDoc } from '../../src/generate/types.js';
import { checkDocument, Oracle, parseFlowPort } from './check.js';

const ESTATE = fileURLToPath(new URL('../../examples/estate/', import.meta.url));
const EXPECTED = 'expected-flows.yaml';
/** Before the break-glass override expires (2027-06-30). */
const NOW = new Date('2026-06-01T00:00:00Z');

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(name) && relative(ESTATE, p) !== EXPECTED) out.push(p);
  }
  return out;
}

function readCsv(path: string): WorkloadDoc[] {
  const [head, ...rows] = readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const cols = head.split(',');
  return rows.map((line) => {
    const cells = line.split(',');
    assert.equal(cells.length, cols.length, `row ${line}`);
    const rec = Object.fromEntries(cols.map((c, i) => [c, cells[i].trim()]));
    const labels: Record<string, string> = {};
    for (const c of cols) if (!['name', 'addresses', 'kind', 'managed', 'mode'].includes(c) && rec[c] !== '') labels[c] = rec[c];
    const w: WorkloadDoc = { name: rec.name, addresses: rec.addresses.split(/[\s;]+/).filter(Boolean), labels };
    if (rec.kind) w.kind = rec.kind as WorkloadDoc['kind'];
    if (rec.managed) w.managed = rec.managed === 'true';
    if (rec.mode) w.mode = rec.mode as WorkloadDoc['mode'];
    return w;
  });
}

function loadEstate(): EstateDocument {
  const doc: EstateDocument = { taxonomy: {}, settings: {}, workloads: [], iplists: [], services: [], rulesets: [], modes: [], overrides: [] };
  for (const file of yamlFiles(ESTATE)) {
    for (const d of parseAllDocuments(readFileSync(file, 'utf8')) as unknown as Array<{ errors: unknown[]; toJS(): unknown }>) {
      assert.deepEqual(d.errors, [], file);
      const data = d.toJS() as Record<string, unknown> | null;
      if (!data) continue;
      for (const [key, value] of Object.entries(data)) {
        switch (key) {
          case 'taxonomy':
          case 'settings':
            Object.assign(doc[key], value);
            break;
          case 'inventory':
            for (const p of value as string[]) doc.workloads.push(...readCsv(join(dirname(file), p)));
            break;
          case 'workloads':
          case 'iplists':
          case 'services':
          case 'rulesets':
          case 'modes':
          case 'overrides':
            (doc[key] as unknown[]).push(...(value as unknown[]));
            break;
          default:
            assert.fail(`${file}: unknown section ${key}`);
        }
      }
    }
  }
  return doc;
}

interface ExpectedFlow {
  note: string;
  from: string;
  to: string;
  port: string;
  expect: string;
  decidedBy?: string;
}

describe('the sample estate', () => {
  const doc = loadEstate();

  it('is internally consistent', () => {
    assert.deepEqual(checkDocument(doc), []);
  });

  it('has the promised shape', () => {
    const ws = doc.workloads;
    assert.ok(ws.length >= 140 && ws.length <= 160, `${ws.length} workloads`);
    const values = (k: string) => new Set(ws.map((w) => w.labels?.[k]).filter(Boolean));
    assert.deepEqual([...values('env')].sort(), ['dev', 'prod', 'staging']);
    assert.deepEqual([...values('loc')].sort(), ['aws-eu-west-1', 'dc1', 'dc2']);
    for (const app of ['shop', 'crm', 'hr', 'analytics', 'payments', 'ehr']) {
      for (const role of ['web', 'app', 'db']) assert.ok(ws.some((w) => w.labels?.app === app && w.labels?.role === role), `${app} ${role}`);
    }
    for (const role of ['jump', 'dns', 'ntp', 'ldap', 'syslog', 'monitor', 'backup', 'lb', 'k8s-node']) assert.ok(values('role').has(role), role);
    assert.ok(ws.some((w) => w.kind === 'pod' && w.labels?.namespace));
    assert.ok(ws.filter((w) => w.managed === false).length >= 2);
    assert.ok(ws.some((w) => w.addresses.some((a) => a.startsWith('2001:db8:'))));
    assert.ok(ws.every((w) => w.addresses.every((a) => a.startsWith('10.') || a.startsWith('2001:db8:') || w.managed === false)));
    assert.ok(doc.overrides.some((o) => o.expires === '2027-06-30T00:00:00Z'));
    assert.ok(doc.rulesets.some((rs) => rs.rules.some((r) => r.action === 'deny')));
    const modes = new Set(doc.modes.map((m) => m.mode));
    for (const m of ['enforce', 'test', 'visibility', 'idle']) assert.ok(modes.has(m as never), m);
  });

  describe('expected flows', () => {
    const flows = parseYaml(readFileSync(join(ESTATE, EXPECTED), 'utf8')) as ExpectedFlow[];
    const oracle = new Oracle(doc, NOW);
    const addressOf = (s: string): string => {
      const w = doc.workloads.find((x) => x.name === s);
      return w ? w.addresses[0] : s;
    };

    it('lists 15 to 25 flows covering every verdict', () => {
      assert.ok(flows.length >= 15 && flows.length <= 25, `${flows.length} flows`);
      assert.deepEqual([...new Set(flows.map((f) => f.expect))].sort(), ['allowed', 'blocked', 'not-evaluated', 'potentially-blocked']);
    });

    for (const f of flows) {
      it(`${f.expect}: ${f.note}`, () => {
        const { proto, port } = parseFlowPort(f.port);
        const r = oracle.decide(addressOf(f.from), addressOf(f.to), proto, port);
        assert.equal(r.verdict, f.expect, `${f.from} -> ${f.to} ${f.port}: decided by ${r.decidedBy.join(', ')}`);
        if (f.decidedBy !== undefined) assert.ok(r.decidedBy.includes(f.decidedBy), `decided by ${r.decidedBy.join(', ')}, not ${f.decidedBy}`);
      });
    }
  });
});
