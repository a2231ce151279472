/** The fast check of agents' flow batches accepts and refuses exactly what the Zod schema does. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FlowsBody, parseFlowsBody } from '../../src/server/schemas.js';

const good = { start: 1, end: 2, src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 443, proto: 6, packets: 1, bytes: 60 };

test('flow batches: the fast check and the schema agree', () => {
  const value = fc.oneof(fc.integer({ min: -2, max: 70000 }), fc.double(), fc.string({ maxLength: 3 }), fc.constant(undefined), fc.constant(null), fc.constantFrom('src', 'dst', 'blocked', 'allowed', 'potentially-blocked'), fc.boolean());
  const record = fc.record({
    start: value, end: value, src: fc.oneof(fc.string({ maxLength: 70 }), value), dst: value, sport: value, dport: value, proto: value, packets: value, bytes: value,
    initiator: value, verdict: value, rule: fc.oneof(fc.string({ maxLength: 210 }), value), extra: value,
  }, { requiredKeys: [] });
  const mixed = fc.record({ ...Object.fromEntries(Object.entries(good).map(([k, v]) => [k, fc.oneof(fc.constant(v), value)])) as Record<string, fc.Arbitrary<unknown>>, verdict: fc.oneof(fc.constant(undefined), value) }, { requiredKeys: [] });
  const body = fc.oneof(fc.record({ records: fc.array(fc.oneof(record, mixed, fc.constant(good)), { maxLength: 4 }) }), value, fc.record({ records: value }), fc.record({ records: fc.array(fc.constant(good)), other: value }));
  fc.assert(
    fc.property(body, (b) => {
      const z = FlowsBody.safeParse(b).success;
      let fast = true;
      try {
        parseFlowsBody(b);
      } catch {
        fast = false;
      }
      assert.equal(fast, z, JSON.stringify(b));
    }),
    { numRuns: 3000 },
  );
  assert.doesNotThrow(() => parseFlowsBody({ records: [good, { ...good, initiator: 'src', verdict: 'blocked', rule: 'r' }] }));
});

const REQUIRED = ['start', 'end', 'src', 'dst', 'sport', 'dport', 'proto', 'packets', 'bytes'];
const OPTIONAL = ['initiator', 'verdict', 'rule'];

/**
 * A list of records as the columns form writes it (a field a record lacks:
 * `null`), or undefined when it cannot be written so: a record that is not
 * an object, or an optional field given as `null` (in columns, `null` is
 * "absent"). The records form must refuse those.
 */
function toColumns(records: unknown[]): { columns: Record<string, unknown[]> } | undefined {
  const keys = new Set(REQUIRED);
  for (const r of records) {
    if (r === null || typeof r !== 'object' || Array.isArray(r)) return undefined;
    for (const [k, v] of Object.entries(r)) {
      if (OPTIONAL.includes(k) && v === null) return undefined;
      keys.add(k);
    }
  }
  const columns: Record<string, unknown[]> = {};
  for (const k of keys) columns[k] = records.map((r) => (r as Record<string, unknown>)[k] ?? null);
  return { columns };
}

/** The records a columns body holds (null entries of optional columns: absent). */
function fromColumns(c: Record<string, readonly unknown[] | undefined>): Record<string, unknown>[] {
  return (c.start ?? []).map((_, i) => Object.fromEntries(Object.entries(c).flatMap(([k, col]) => (col === undefined || (OPTIONAL.includes(k) && col[i] === null) ? [] : [[k, col[i]]]))));
}

const accepts = (f: () => unknown) => {
  try {
    f();
    return true;
  } catch {
    return false;
  }
};

const value = fc.oneof(fc.integer({ min: -2, max: 70000 }), fc.double(), fc.string({ maxLength: 3 }), fc.constant(undefined), fc.constant(null), fc.constantFrom('src', 'dst', 'blocked', 'allowed', 'potentially-blocked'), fc.boolean());
const anyRecord = fc.oneof(
  fc.record({ start: value, end: value, src: fc.oneof(fc.string({ maxLength: 70 }), value), dst: value, sport: value, dport: value, proto: value, packets: value, bytes: value, initiator: value, verdict: value, rule: fc.oneof(fc.string({ maxLength: 210 }), value), extra: value }, { requiredKeys: [] }),
  fc.record({ ...Object.fromEntries(Object.entries(good).map(([k, v]) => [k, fc.oneof(fc.constant(v), fc.constant(v), value)])) as Record<string, fc.Arbitrary<unknown>>, initiator: fc.oneof(fc.constant(undefined), fc.constant('src'), value), verdict: fc.oneof(fc.constant(undefined), fc.constantFrom('allowed', 'blocked'), value), rule: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 210 })) }, { requiredKeys: [] }),
  fc.constant(good),
  fc.constant({ ...good, initiator: 'src', verdict: 'potentially-blocked', rule: 'r-1' }),
  value,
);

test('flow batches: records and columns accept and refuse the same records, and carry the same ones', () => {
  fc.assert(
    fc.property(fc.array(anyRecord, { maxLength: 5 }), (records) => {
      const asRecords = { records };
      const asColumns = toColumns(records);
      const fast = accepts(() => parseFlowsBody(asRecords));
      assert.equal(fast, FlowsBody.safeParse(asRecords).success, JSON.stringify(asRecords));
      if (asColumns === undefined) {
        assert.equal(fast, false, `not writable as columns, so refused as records: ${JSON.stringify(records)}`);
        return;
      }
      assert.equal(accepts(() => parseFlowsBody(asColumns)), fast, `${JSON.stringify(asRecords)} vs ${JSON.stringify(asColumns)}`);
      assert.equal(FlowsBody.safeParse(asColumns).success, fast, JSON.stringify(asColumns));
      if (fast) {
        const want = records.map((r) => Object.fromEntries(Object.entries(r as object).filter(([, v]) => v !== undefined)));
        assert.deepEqual(fromColumns(parseFlowsBody(asRecords) as unknown as Record<string, unknown[]>), want);
        assert.deepEqual(fromColumns(parseFlowsBody(asColumns) as unknown as Record<string, unknown[]>), want);
      }
    }),
    { numRuns: 3000 },
  );
});

test('flow batches as columns: the fast check and the schema agree on any shape', () => {
  const col = fc.oneof(fc.array(value, { maxLength: 3 }), fc.array(fc.constant(1), { minLength: 1, maxLength: 3 }), fc.array(fc.constant('10.0.0.1'), { maxLength: 3 }), fc.array(fc.constantFrom(null, 'src', 'blocked'), { maxLength: 3 }), value);
  const columns = fc.oneof(
    fc.record({ start: col, end: col, src: col, dst: col, sport: col, dport: col, proto: col, packets: col, bytes: col, initiator: col, verdict: col, rule: col, other: col }, { requiredKeys: [] }),
    fc.record({ ...Object.fromEntries(REQUIRED.map((k) => [k, fc.oneof(fc.constant([(good as Record<string, unknown>)[k]]), col)])), initiator: fc.oneof(fc.constant(undefined), fc.constant([null]), fc.constant(['src']), col) }, { requiredKeys: [] }),
    value,
  );
  const body = fc.oneof(fc.record({ columns }), fc.record({ columns, records: fc.constant([]) }), fc.record({ columns, other: value }));
  fc.assert(
    fc.property(body, (b) => {
      assert.equal(accepts(() => parseFlowsBody(b)), FlowsBody.safeParse(b).success, JSON.stringify(b));
    }),
    { numRuns: 3000 },
  );
  assert.deepEqual(fromColumns(parseFlowsBody({ columns: { ...Object.fromEntries(REQUIRED.map((k) => [k, [(good as Record<string, unknown>)[k]]])), verdict: [null] } }) as unknown as Record<string, unknown[]>), [good]);
});
