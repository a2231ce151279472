/**
 * `npm run bench:server`: the control plane under 10,000 agents.
 *
 * The server runs in a child process (so its memory is its own); this
 * process plays the agents, over loopback HTTP with one keep-alive agent:
 *
 * 1. provision a generated estate (10,000 workloads), make one agent per
 *    workload, fetch every ruleset once;
 * 2. hold 10,000 long polls; provision a change to one app's rules and
 *    measure, per affected agent, the time until it holds the new ETag
 *    (p50, p99; target p99 ≤ 2 s); then the same for a break-glass override
 *    on a whole environment. Every affected agent (the server's count,
 *    asked once the new ETags stop coming, as counting costs the server an
 *    ETag per workload) must get one; when the server wrote those answers is
 *    shown too, to tell its share of the latency from the agents';
 * 3. flow ingest: agents post batches (binary, as the agent sends them to
 *    this server; `--flow-form columns|records` for the JSON forms) for a fixed
 *    time; records/s acknowledged (target ≥ 200k/s), then the store's count
 *    must equal what was acknowledged;
 * 4. the server's peak RSS (target ≤ 1 GB), with what V8 held at the
 *    largest sample.
 *
 * Options: --workloads N (10000), --agents N (= workloads), --rules N (1000),
 * --ingest-seconds S (10), --ingest-clients N (32), --batch N (5000),
 * --flow-form binary|columns|records (binary: what agents send when the server takes it).
 * Bounded: every wait has a deadline; the child is killed at the end.
 * Environment: BENCH_LOG=1 prints the server's log; BENCH_CHILD_ARGS adds Node
 * flags to the server child (`--cpu-prof --cpu-prof-dir=DIR` profiles it).
 * File descriptors: each process holds one socket per agent; `ulimit -n`
 * must exceed the agent count (Node cannot raise it; see docs/SERVER.md).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flowColumns, type AgentFlow } from '../src/agent/client.js';
import { encodeFlowBatch, FLOW_WIRE_TYPE } from '../src/flows/wire.js';
import { generateEstate } from '../src/generate/index.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};

// ---------------------------------------------------------------- the server child

if (process.argv.includes('--child')) await child();

async function child(): Promise<void> {
  const dir = process.argv[process.argv.indexOf('--child') + 1];
  const { startServer } = await import('../src/server/index.js');
  const s = await startServer({ state: join(dir, 'state.db'), host: '127.0.0.1', port: 0, rate: 1e9, agentRate: 1e9, commitMs: 250, storeMemory: '256MB', textCacheBytes: 128 << 20, log: process.env.BENCH_LOG ? (l) => console.error(new Date().toISOString(), l) : undefined });
  const peak = () => {
    const st = readFileSync('/proc/self/status', 'utf8');
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  };
  // The largest RSS seen, with what V8 and Node held at that moment (sampled every 100 ms).
  let top = { rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 };
  // The largest RSS per phase of the run (the parent names the phases).
  let phase = 'setup';
  const phases: Record<string, number> = {};
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    phases[phase] = Math.max(phases[phase] ?? 0, m.rss);
    if (m.rss > top.rss) top = { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
  }, 100);
  sampler.unref();
  let snapshot = new Map<string, string>();
  // When the server wrote each answer since the snapshot (epoch ms), to tell its share of the latency from the agents'.
  const answered = new Map<string, number>();
  s.control.agents.onAnswer = (w) => {
    if (!answered.has(w)) answered.set(w, performance.timeOrigin + performance.now());
  };
  process.on('message', async (m: { op: string; workloads?: string[] }) => {
    const cp = s.control;
    if (m.op === 'waiters') process.send!({ op: 'waiters', n: cp.agents.waiters });
    else if (m.op === 'snapshot') {
      const gen = cp.generation();
      snapshot = new Map(m.workloads!.map((w) => [w, gen.entry(w).etag]));
      answered.clear();
      process.send!({ op: 'snapshot' });
    } else if (m.op === 'affected') {
      const gen = cp.generation();
      let n = 0;
      const at: number[] = [];
      for (const [w, e] of snapshot) {
        if (gen.entry(w).etag === e) continue;
        n++;
        const t = answered.get(w);
        if (t !== undefined) at.push(t);
      }
      process.send!({ op: 'affected', n, answeredAt: at, texts: cp.agents.texts.size, compiles: cp.agents.texts.compiles });
    } else if (m.op === 'stored') {
      await cp.ingest.commit();
      const st = await cp.store.stats();
      process.send!({ op: 'stored', acked: cp.ingest.stored, flows: st.flows, commits: cp.ingest.commits, commitMs: cp.ingest.commitTime });
    } else if (m.op === 'mem') process.send!({ op: 'mem', ...peak(), top, phases });
    else if (m.op === 'phase') {
      phase = (m as { name?: string }).name ?? phase;
      process.send!({ op: 'phase' });
    }
    else if (m.op === 'stop') {
      await s.close();
      process.send!({ op: 'stop' }, () => process.exit(0));
    }
  });
  process.send!({ op: 'ready', url: s.url, token: s.adminToken });
}

// ---------------------------------------------------------------- the agents

function ask<T>(child: ChildProcess, op: string, extra: object = {}): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: { op: string }) => {
      if (m.op === op) {
        child.off('message', on);
        resolve(m as T);
      }
    };
    child.on('message', on);
    child.send({ op, ...extra });
  });
}

interface Resp {
  status: number;
  etag?: string;
  body: string;
}

/** Response body bytes received, all calls. */
let received = 0;

const http = new Agent({ keepAlive: true, maxSockets: 20000, maxFreeSockets: 20000 });

function call(url: string, token: string, method: string, path: string, o: { body?: string | Uint8Array; headers?: Record<string, string>; keepBody?: boolean; onHead?: (status: number, etag?: string) => void; timeoutMs?: number } = {}): Promise<Resp> {
  return new Promise((resolve, reject) => {
    const r = request(url + path, { method, agent: http, headers: { authorization: `Bearer ${token}`, ...(o.body ? { 'content-type': typeof o.body === 'string' ? 'application/json' : FLOW_WIRE_TYPE, 'content-length': String(Buffer.byteLength(o.body)) } : {}), ...(o.headers ?? {}) }, timeout: o.timeoutMs ?? 120000 }, (res) => {
      const etag = res.headers.etag?.replace(/"/g, '');
      o.onHead?.(res.statusCode!, etag);
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        received += c.length;
        if (o.keepBody) chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode!, etag, body: o.keepBody ? Buffer.concat(chunks).toString() : '' }));
      res.on('error', reject);
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', reject);
    r.end(o.body);
  });
}

async function pool<T>(items: readonly T[], width: number, f: (x: T) => Promise<void>): Promise<void> {
  let k = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (k < items.length) await f(items[k++]);
  }));
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * p))] : NaN;
};

async function main(): Promise<void> {
  const nWorkloads = arg('workloads', 10000);
  const nRules = arg('rules', 1000);
  const ingestSeconds = arg('ingest-seconds', 10);
  const ingestClients = arg('ingest-clients', 32);
  const batch = arg('batch', 5000);
  const formIdx = process.argv.indexOf('--flow-form');
  const flowForm = formIdx >= 0 ? process.argv[formIdx + 1] : 'binary';
  if (flowForm !== 'binary' && flowForm !== 'columns' && flowForm !== 'records') throw new Error('--flow-form is binary, columns or records');
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-bench-server-'));
  const child = fork(new URL(import.meta.url).pathname, ['--child', dir], { execArgv: ['--import', 'tsx', ...(process.env.BENCH_CHILD_ARGS ? process.env.BENCH_CHILD_ARGS.split(' ') : [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const deadline = setTimeout(() => {
    console.error('bench: over the time bound (15 min), stopping');
    child.kill('SIGKILL');
    process.exit(2);
  }, 15 * 60000);
  try {
    const ready = await ask<{ url: string; token: string }>(child, 'ready');
    const { url, token } = ready;
    const admin = (method: string, path: string, body?: unknown) => call(url, token, method, path, { body: body === undefined ? undefined : JSON.stringify(body), keepBody: true });

    // 1. the estate, the agents, the first fetch
    const doc = generateEstate({ seed: 1, workloads: nWorkloads, rules: nRules }) as unknown as { workloads: { name: string; addresses: string[]; managed?: boolean; labels?: Record<string, string> }[]; rulesets: { name: string; scope: string; rules: unknown[] }[]; overrides?: unknown[] };
    let t0 = performance.now();
    let r = await admin('PUT', '/api/v1/draft', doc);
    if (r.status !== 200) throw new Error(`draft: ${r.status} ${r.body.slice(0, 300)}`);
    r = await admin('POST', '/api/v1/versions', { message: 'estate' });
    if (r.status !== 201) throw new Error(`provision: ${r.status} ${r.body.slice(0, 300)}`);
    const provisionMs = performance.now() - t0;
    const nAgents = Math.min(arg('agents', nWorkloads), doc.workloads.length);
    const workloads = doc.workloads.slice(0, nAgents);
    const agents: { w: (typeof workloads)[number]; token: string; etag?: string }[] = [];
    t0 = performance.now();
    await pool(workloads, 16, async (w) => {
      const a = await admin('POST', '/api/v1/agents', { workload: w.name });
      agents.push({ w, token: JSON.parse(a.body).token });
    });
    const createMs = performance.now() - t0;
    t0 = performance.now();
    let firstBytes = 0;
    await pool(agents, 64, async (a) => {
      const p = await call(url, a.token, 'GET', '/api/v1/agent/policy', { keepBody: false, onHead: () => {} });
      a.etag = p.etag;
      firstBytes += 0;
    });
    const firstFetchMs = performance.now() - t0;
    console.log(`estate: ${nWorkloads} workloads, ${nRules} rules; provisioned in ${(provisionMs / 1000).toFixed(1)} s; ${agents.length} agents made in ${(createMs / 1000).toFixed(1)} s; first fetch of every ruleset in ${(firstFetchMs / 1000).toFixed(1)} s`);
    void firstBytes;

    await ask(child, 'phase', { name: 'changes' });
    // 2. long polls (one loop per agent for the whole run) and two changes
    let stopping = false;
    let current: { start: number; got: Map<number, number> } | undefined;
    const _loops = agents.map(async (a, i) => {
      while (!stopping) {
        const sent = a.etag;
        try {
          const p = await call(url, a.token, 'GET', '/api/v1/agent/policy?wait=60', {
            // As the agent asks: gzip (a simulated agent reads the ETag and counts the bytes; it neither inflates nor applies).
            headers: { 'if-none-match': `"${sent}"`, 'accept-encoding': 'gzip' },
            onHead: (status, etag) => {
              if (status === 200 && etag !== sent && current && !current.got.has(i)) current.got.set(i, performance.now() - current.start);
            },
          });
          if (p.status === 200) a.etag = p.etag;
        } catch {
          if (!stopping) await new Promise((res) => setTimeout(res, 100));
        }
      }
    });
    const measure = async (what: string, change: () => Promise<void>) => {
      await ask(child, 'snapshot', { workloads: agents.map((a) => a.w.name) });
      const tw = performance.now();
      while ((await ask<{ n: number }>(child, 'waiters')).n < agents.length && performance.now() - tw < 60000) await new Promise((res) => setTimeout(res, 200));
      const waiting = (await ask<{ n: number }>(child, 'waiters')).n;
      const m = { start: performance.now(), got: new Map<number, number>() };
      const startEpoch = performance.timeOrigin + m.start;
      const bytes0 = received;
      current = m;
      await change();
      const changeMs = performance.now() - m.start;
      // The server counts the affected agents by computing every workload's ETag (about a second of its one thread for
      // 10,000 workloads), so it is asked once the new ETags have stopped coming (none for 2 s; 5 s before the first),
      // not while it is answering the agents; then every affected agent must have got one.
      const td = performance.now();
      let seen = m.got.size;
      let seenAt = performance.now();
      while (performance.now() - seenAt < (seen > 0 ? 2000 : 5000) && performance.now() - td < 30000) {
        await new Promise((res) => setTimeout(res, 50));
        if (m.got.size !== seen) [seen, seenAt] = [m.got.size, performance.now()];
      }
      const { n: affected, answeredAt, texts, compiles } = await ask<{ n: number; answeredAt: number[]; texts: { entries: number; bytes: number; shared: number; sharedBytes: number }; compiles: number }>(child, 'affected');
      const written = answeredAt.map((t) => t - startEpoch);
      while (m.got.size < affected && performance.now() - td < 30000) await new Promise((res) => setTimeout(res, 50));
      await new Promise((res) => setTimeout(res, 300));
      current = undefined;
      const lat = [...m.got.values()];
      console.log(
        `${what}: ${waiting} polls waiting; the change took ${changeMs.toFixed(0)} ms to answer; ${affected} agents affected, ${m.got.size} got the new ETag: ` +
          `p50 ${pct(lat, 0.5).toFixed(0)} ms, p99 ${pct(lat, 0.99).toFixed(0)} ms, max ${Math.max(...lat).toFixed(0)} ms (target p99 ≤ 2000 ms: ${pct(lat, 0.99) <= 2000 ? 'met' : 'NOT met'}, ratio ${(pct(lat, 0.99) / 2000).toFixed(2)}); ` +
          `the server wrote those answers at p50 ${pct(written, 0.5).toFixed(0)} ms, p99 ${pct(written, 0.99).toFixed(0)} ms; ` +
          `${((received - bytes0) / 1048576).toFixed(0)} MiB of rulesets received (gzip); ruleset cache ${texts.entries} texts, ${(texts.bytes / 1048576).toFixed(0)} MiB (${texts.shared} shared pieces, ${(texts.sharedBytes / 1048576).toFixed(0)} MiB), ${compiles} compiles so far`,
      );
    };
    const app = doc.rulesets.find((rs) => /app ==/.test(rs.scope) && rs.rules.length > 0)!;
    app.rules.push({ id: 'bench-new-rule', from: [{ cidr: '198.51.100.0/24' }], to: ['all()'], services: ['9443/tcp'] });
    const d = await admin('PUT', '/api/v1/draft', doc);
    if (d.status !== 200) throw new Error(`draft: ${d.status}`);
    await measure(`provision (one rule added to ruleset ${app.name}; timed from POST /versions)`, async () => {
      const v = await admin('POST', '/api/v1/versions', { message: 'bench change' });
      if (v.status !== 201) throw new Error(`provision: ${v.status} ${v.body.slice(0, 200)}`);
    });
    await measure("break-glass (an override into env == 'staging')", async () => {
      const b = await admin('POST', '/api/v1/breakglass', { from: [{ cidr: '198.51.100.7/32' }], to: ["env == 'staging'"], services: ['22/tcp'], reason: 'bench', ttlSeconds: 3600 });
      if (b.status !== 201) throw new Error(`break-glass: ${b.status} ${b.body.slice(0, 200)}`);
    });
    stopping = true;

    await ask(child, 'phase', { name: 'ingest' });
    // 3. flow ingest
    const senders = agents.filter((a) => a.w.managed !== false && a.w.addresses.some((x) => !x.includes(':') && !x.includes('/'))).slice(0, ingestClients);
    const now = Date.now();
    const bodies = senders.map((a, k) => {
      const own = a.w.addresses.find((x) => !x.includes(':') && !x.includes('/'))!;
      const recs: AgentFlow[] = [];
      for (let i = 0; i < batch; i++) {
        const peer = `10.${200 + (k % 50)}.${(i >> 8) & 255}.${i & 255}`;
        const out = i % 3 === 0;
        recs.push({ start: now - 60000 + i, end: now - 59000 + i, src: out ? own : peer, dst: out ? peer : own, sport: out ? 40000 + (i % 20000) : 50000 + (i % 10000), dport: out ? 443 : 8080, proto: 6, packets: 4, bytes: 800, initiator: 'src', ...(i % 1000 === 0 ? { verdict: 'blocked', rule: 'default' } : {}) });
      }
      if (flowForm === 'records') return JSON.stringify({ records: recs });
      // As the agent's client sends them to this server (it says it takes binary).
      if (flowForm === 'binary') return encodeFlowBatch(recs);
      // As columns, as the agent's client sends them to a server that takes them.
      return JSON.stringify({ columns: flowColumns(recs) });
    });
    let acked = 0;
    let failed = 0;
    const ti = performance.now();
    const ingestEnd = ti + ingestSeconds * 1000;
    await Promise.all(
      senders.map(async (a, k) => {
        while (performance.now() < ingestEnd) {
          const res = await call(url, a.token, 'POST', '/api/v1/agent/flows', { body: bodies[k], keepBody: true }).catch(() => ({ status: 0, body: '' }) as Resp);
          if (res.status === 200) acked += JSON.parse(res.body).accepted as number;
          else failed++;
        }
      }),
    );
    const ingestSecs = (performance.now() - ti) / 1000;
    const stored = await ask<{ acked: number; flows: number; commits: number; commitMs: number }>(child, 'stored');
    const rate = acked / ingestSecs;
    console.log(
      `ingest: ${ingestClients} agents posting ${batch}-record batches (as ${flowForm}, ${(Buffer.byteLength(bodies[0]) / 1048576).toFixed(2)} MiB each) for ${ingestSecs.toFixed(1)} s: ${acked.toLocaleString('en-US')} records acknowledged, ${Math.round(rate).toLocaleString('en-US')} records/s ` +
        `(target ≥ 200,000: ${rate >= 200000 ? 'met' : 'NOT met'}, ratio ${(rate / 200000).toFixed(2)}); ${failed} failed requests; ` +
        `the store holds ${stored.flows.toLocaleString('en-US')} records: ${stored.flows >= acked ? 'none lost' : `${acked - stored.flows} LOST`}; ` +
        `${stored.commits} commits of ${Math.round(stored.acked / Math.max(1, stored.commits)).toLocaleString('en-US')} records on average, ${(stored.commitMs / Math.max(1, stored.commits)).toFixed(0)} ms each`,
    );

    // 4. memory
    const mem = await ask<{ rss: number; hwm: number; top: { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number }; phases: Record<string, number> }>(child, 'mem');
    const mib = (b: number) => (b / 1048576).toFixed(0);
    console.log(
      `server memory: RSS ${mib(mem.rss)} MiB now, peak ${mib(mem.hwm)} MiB (target ≤ 1024 MiB: ${mem.hwm <= 1 << 30 ? 'met' : 'NOT met'}, ratio ${(mem.hwm / (1 << 30)).toFixed(2)}); ` +
        `largest sample RSS ${mib(mem.top.rss)} MiB: V8 heap ${mib(mem.top.heapUsed)} of ${mib(mem.top.heapTotal)} MiB, external ${mib(mem.top.external)} MiB (array buffers ${mib(mem.top.arrayBuffers)} MiB), the rest native (DuckDB, sockets, code); ` +
        `largest RSS by phase: ${Object.entries(mem.phases).map(([k, v]) => `${k} ${mib(v)} MiB`).join(', ')}`,
    );
    const t = performance.now();
    const stopped = await Promise.race([ask(child, 'stop').then(() => true), new Promise<boolean>((res) => setTimeout(() => res(false), 15000))]);
    console.log(stopped ? `server stopped cleanly in ${((performance.now() - t) / 1000).toFixed(1)} s` : 'server did not stop within 15 s: killed');
  } finally {
    clearTimeout(deadline);
    http.destroy();
    if (child.exitCode === null && process.env.BENCH_CHILD_ARGS) await new Promise((res) => { child.once('exit', res); setTimeout(res, 20000); });
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}

if (!process.argv.includes('--child')) await main();
