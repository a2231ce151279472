/** The combining function against its truth table, written out independently as data. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { combine, Side, VERDICTS } from '../../src/engine/combine.js';

const N = Side.None, V = Side.NotEvaluated, A = Side.Allow, T = Side.DenyTest, E = Side.DenyEnforce;
const sides = [N, V, A, T, E];
// rows: egress; columns: ingress (N, V, A, T, E). Cell: verdict initial + deciding side (-, E, I).
const table = [
  /* N */ ['n-', 'n-', 'aI', 'pI', 'bI'],
  /* V */ ['n-', 'n-', 'aI', 'pI', 'bI'],
  /* A */ ['aE', 'aE', 'aI', 'pI', 'bI'],
  /* T */ ['pE', 'pE', 'pE', 'pE', 'bI'],
  /* E */ ['bE', 'bE', 'bE', 'bE', 'bE'],
];
const verdictOf: Record<string, string> = { a: 'allowed', b: 'blocked', p: 'potentially-blocked', n: 'not-evaluated' };
const sideOf: Record<string, number> = { '-': 0, E: 1, I: 2 };

test('combine matches the truth table in every one of the 25 cells', () => {
  let cells = 0;
  for (let e = 0; e < 5; e++) {
    for (let i = 0; i < 5; i++) {
      const v = combine(sides[e], sides[i]);
      const want = table[e][i];
      assert.equal(VERDICTS[v & 3], verdictOf[want[0]], `egress ${Side[sides[e]]} ingress ${Side[sides[i]]}: verdict`);
      assert.equal(v >> 2, sideOf[want[1]], `egress ${Side[sides[e]]} ingress ${Side[sides[i]]}: deciding side`);
      cells++;
    }
  }
  assert.equal(cells, 25);
});

test('an enforcing denial always blocks, and nothing else does', () => {
  for (const e of sides) for (const i of sides) assert.equal(VERDICTS[combine(e, i) & 3] === 'blocked', e === E || i === E);
});
