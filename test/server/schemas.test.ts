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
