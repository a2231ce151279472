/**
 * Workers that run a module of this package. Built code (`.js`) loads
 * directly; when the module runs as TypeScript (tests, benchmarks under tsx),
 * the worker first registers tsx's loader, which Node 20 does not carry into
 * workers.
 */
import { Worker } from 'node:worker_threads';

/** A worker running the module at `moduleUrl` (its `import.meta.url`), with `workerData`. */
export function spawnModule(moduleUrl: string, workerData: unknown): Worker {
  if (!moduleUrl.endsWith('.ts')) return new Worker(new URL(moduleUrl), { workerData });
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(moduleUrl)}); });`;
  return new Worker(code, { eval: true, workerData });
}
