/** `bulkhead generate`: a seeded synthetic estate written as a policy directory. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateEstate, toYaml } from '../generate/index.js';
import { EXIT, UsageError, type Io } from './common.js';

function count(s: string, flag: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be a whole number, not \`${s}\``);
  return n;
}

export function runGenerate(opts: { out: string; workloads: string; rules?: string; seed: string }, io: Io): number {
  const workloads = count(opts.workloads, '--workloads');
  const rules = opts.rules === undefined ? Math.max(10, Math.round(workloads / 10)) : count(opts.rules, '--rules');
  const seed = count(opts.seed, '--seed');
  const doc = generateEstate({ seed, workloads, rules });
  mkdirSync(opts.out, { recursive: true });
  const file = join(opts.out, 'estate.yaml');
  writeFileSync(file, toYaml(doc));
  io.out(`wrote ${file}: ${workloads} workloads, about ${rules} rules (seed ${seed})`);
  return EXIT.ok;
}
