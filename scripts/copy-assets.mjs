// Copies the non-TypeScript files the built CLI needs (the lab's Python agent and prober) into dist/.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

for (const dir of ['lab']) {
  mkdirSync(join('dist', dir), { recursive: true });
  for (const f of readdirSync(join('src', dir))) if (f.endsWith('.py')) copyFileSync(join('src', dir, f), join('dist', dir, f));
}
