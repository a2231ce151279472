/** Test helpers for the server: a server on 127.0.0.1 in a temp dir, a JSON client, a small policy document. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/index.js';

/** A server on an ephemeral loopback port, state in a fresh temp dir. */
export async function testServer(o: Partial<ServerOptions> = {}): Promise<RunningServer & { dir: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-server-'));
  const s = await startServer({ state: join(dir, 'state.db'), host: '127.0.0.1', port: 0, commitMs: 20, alertIntervalMs: 50, ...o });
  return Object.assign(s, {
    dir,
    async stop() {
      await s.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

export interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
  text: string;
}

/** Calls the API: JSON in and out. */
export async function api(base: string, token: string | undefined, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const r = await fetch(base + path, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: r.status, body: parsed, headers: r.headers, text };
}

/** A client bound to one token. */
export function client(base: string, token: string | undefined) {
  return (method: string, path: string, body?: unknown, headers?: Record<string, string>) => api(base, token, method, path, body, headers);
}

/** A small estate: shop (web, app, db) and crm (web, db) in prod, a jump host, an unmanaged partner. */
export function smallDoc(): Record<string, unknown> {
  return {
    taxonomy: { role: ['web', 'app', 'db', 'jump'], app: 'open', env: ['prod', 'dev'] },
    workloads: [
      { name: 'shop-web-1', addresses: ['10.1.0.10'], labels: { role: 'web', app: 'shop', env: 'prod' } },
      { name: 'shop-web-2', addresses: ['10.1.0.11'], labels: { role: 'web', app: 'shop', env: 'prod' } },
      { name: 'shop-app-1', addresses: ['10.1.0.20'], labels: { role: 'app', app: 'shop', env: 'prod' } },
      { name: 'shop-db-1', addresses: ['10.1.0.30', '2001:db8::30'], labels: { role: 'db', app: 'shop', env: 'prod' } },
      { name: 'crm-web-1', addresses: ['10.2.0.10'], labels: { role: 'web', app: 'crm', env: 'prod' } },
      { name: 'crm-db-1', addresses: ['10.2.0.30'], labels: { role: 'db', app: 'crm', env: 'prod' } },
      { name: 'jump-1', addresses: ['10.9.0.5'], labels: { role: 'jump', app: 'infra', env: 'prod' } },
      { name: 'partner-1', addresses: ['192.0.2.7'], labels: { app: 'partner' }, managed: false },
    ],
    services: [{ name: 'https', ports: ['443/tcp'] }, { name: 'ssh', ports: ['22/tcp'] }],
    modes: [{ scope: "app == 'crm'", mode: 'test' }],
    rulesets: [
      {
        name: 'shop',
        scope: "app == 'shop' && env == 'prod'",
        rules: [
          { id: 'shop-web-in', from: ['any'], to: ["role == 'web'"], services: ['https'] },
          { id: 'shop-web-app', from: ["role == 'web'"], to: ["role == 'app'"], services: ['8080/tcp'] },
          { id: 'shop-app-db', from: ["role == 'app'"], to: ["role == 'db'"], services: ['5432/tcp'] },
        ],
      },
      {
        name: 'crm',
        scope: "app == 'crm'",
        rules: [{ id: 'crm-web-db', from: ["role == 'web'"], to: ["role == 'db'"], services: ['5432/tcp'] }],
      },
      {
        name: 'admin',
        scope: 'all()',
        rules: [{ id: 'jump-ssh', from: [{ workload: 'jump-1' }], to: ['all()'], services: ['ssh'] }],
      },
    ],
  };
}

/** Polls until `f` is true or `ms` pass. */
export async function until(f: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!(await f())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
