/**
 * `bulkhead serve`, as a function: the control plane on node:http or
 * node:https, state in one SQLite file, flows in the DuckDB flow store.
 *
 *   const s = await startServer({ state: 'bulkhead.db', port: 0 });
 *   // s.url, s.adminToken; … await s.close();
 *
 * Requests go: route match → token (401) → rate limit (429) → role (403) →
 * body (413, JSON, schema: 400) → handler. See docs/API.md and docs/SERVER.md.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { parsePrefix, type Prefix } from '../netset/ip.js';
import { WorkerFlowStore } from '../store/worker.js';
import { allows, RateLimiter, type Principal } from './auth.js';
import { ControlPlane, SYSTEM } from './control.js';
import { openState, type Db } from './db.js';
import { ApiError, readBody, Router, sendError, sendJson, zodDetails, type Method, type Reply, type Request } from './http.js';
import { ROUTES, type Ctx } from './routes.js';

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** The SQLite state file (created when missing). */
  readonly state: string;
  /** Listen address (default 127.0.0.1) and port (default 8443 with TLS, else 8080; 0 for any free port). */
  readonly host?: string;
  readonly port?: number;
  /** The flow store: a directory (holding `flows.duckdb`), or a `.duckdb` file; default `<state>.flows.duckdb`. */
  readonly store?: string;
  /** TLS certificate and key (PEM text or file paths); both or neither. */
  readonly tlsCert?: string | Buffer;
  readonly tlsKey?: string | Buffer;
  /** Addresses agents reach the server at: their failsafe rules always allow them. Default: the listen address, or every non-loopback interface address when listening on all. */
  readonly advertise?: readonly string[];
  /** Management networks always allowed in on `mgmtPorts` (failsafe). */
  readonly mgmt?: readonly string[];
  readonly mgmtPorts?: readonly { proto: number; port: number }[];
  /** The largest request body, bytes (default 8 MiB). */
  readonly maxBody?: number;
  /** Requests per second per token (default 50); agents: per agent (default 20). */
  readonly rate?: number;
  readonly agentRate?: number;
  /** How often agents should poll, seconds (told at registration; default 30). */
  readonly pollSeconds?: number;
  /** Group commit interval of agent flows, ms (default 250). */
  readonly commitMs?: number;
  /** How often violation alerts are sent, ms (default 10000). */
  readonly alertIntervalMs?: number;
  /** Bytes of compiled rulesets kept in memory (default 256 MiB). */
  readonly textCacheBytes?: number;
  /** DuckDB memory limit for the flow store (default 256MB: the control plane itself needs about 560 MiB for 10,000 agents). */
  readonly storeMemory?: string;
  /** Days of flows and edges the flow store keeps (set on the store at start; default: what the store has, all at first). */
  readonly flowRetentionDays?: number;
  /** Days of violations kept (default 90). */
  readonly violationRetentionDays?: number;
  /** Where log lines go (default: nowhere). */
  readonly log?: (line: string) => void;
}

/** A running server. */
export interface RunningServer {
  readonly url: string;
  /** The bootstrap admin token (from `<state>.admin-token`); empty when that file is gone. */
  readonly adminToken: string;
  readonly port: number;
  /** The control plane, for tests and the benchmark. */
  readonly control: ControlPlane;
  readonly server: Server;
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY = 8 << 20;

/** Bodies at least this big are parsed one per turn of the event loop (see {@link Turns}). */
const BIG_BODY = 64 << 10;

/**
 * Hands out turns of the event loop, one at a time, in order: work that
 * waits for one runs alone in its turn, and I/O (other requests, the flow
 * store's answers) is handled between turns. A burst of big flow batches
 * then does not hold up a commit waiting for its next statement for the
 * time it takes to parse them all.
 */
class Turns {
  private last: Promise<void> = Promise.resolve();

  next(): Promise<void> {
    const p = this.last.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
    this.last = p;
    return p;
  }
}

function pem(v: string | Buffer): string | Buffer {
  if (Buffer.isBuffer(v) || v.includes('-----BEGIN')) return v;
  return readFileSync(v);
}

/** The addresses agents reach the server at, when not given. */
export function defaultAdvertise(host: string): string[] {
  if (host !== '0.0.0.0' && host !== '::' && host !== '') return [host];
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (!a.internal) out.push(a.address.replace(/%.*$/, ''));
  return out.length > 0 ? out : ['127.0.0.1'];
}

function prefixes(list: readonly string[], what: string): Prefix[] {
  return list.map((s) => {
    const r = parsePrefix(s.replace(/^\[|\]$/g, ''));
    if ('error' in r) throw new Error(`invalid ${what} \`${s}\`: ${r.error}`);
    return r.prefix;
  });
}

/** The path of the bootstrap admin token file. */
export const adminTokenPath = (state: string) => `${state}.admin-token`;

/** Starts the control plane. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const log = options.log ?? (() => {});
  const host = options.host ?? '127.0.0.1';
  const tls = options.tlsCert !== undefined || options.tlsKey !== undefined;
  if (tls && (options.tlsCert === undefined || options.tlsKey === undefined)) throw new Error('TLS needs both a certificate and a key');
  const advertise = prefixes(options.advertise && options.advertise.length > 0 ? options.advertise : defaultAdvertise(host), 'advertise address');
  const mgmt = prefixes(options.mgmt ?? [], 'management network');

  const db: Db = openState(options.state);
  let storePath = options.store ?? `${options.state}.flows.duckdb`;
  if (!/\.duckdb$/i.test(storePath)) {
    mkdirSync(storePath, { recursive: true });
    storePath = join(storePath, 'flows.duckdb');
  } else mkdirSync(dirname(storePath), { recursive: true });
  let store: WorkerFlowStore;
  try {
    // In a thread of its own: DuckDB's synchronous calls never hold up the API.
    store = await WorkerFlowStore.open(storePath, { memoryLimit: options.storeMemory ?? '256MB' });
  } catch (e) {
    db.close();
    throw e;
  }
  // Whatever fails from here on, the store's thread and the state file are closed: the process can exit.
  try {
    return await serve(options, { log, host, tls, advertise, mgmt, db, store, storePath });
  } catch (e) {
    await store.close().catch(() => undefined);
    db.close();
    throw e;
  }
}

/** The rest of {@link startServer}, once the state and the flow store are open. */
async function serve(
  options: ServerOptions,
  o: { log: (line: string) => void; host: string; tls: boolean; advertise: Prefix[]; mgmt: Prefix[]; db: Db; store: WorkerFlowStore; storePath: string },
): Promise<RunningServer> {
  const { log, host, tls, advertise, mgmt, db, store, storePath } = o;
  const cp = new ControlPlane(db, store, {
    failsafe: { controlPlane: advertise, managementPrefixes: mgmt, managementPorts: options.mgmtPorts ?? [{ proto: 6, port: 22 }] },
    pollSeconds: options.pollSeconds ?? 30,
    commitMs: options.commitMs ?? 250,
    alertIntervalMs: options.alertIntervalMs ?? 10000,
    textCacheBytes: options.textCacheBytes ?? 256 << 20,
    violationRetentionDays: options.violationRetentionDays ?? 90,
    log,
  });
  try {
    return await listenWith(options, { log, host, tls, db, store, storePath, cp });
  } catch (e) {
    await cp.close().catch(() => undefined);
    throw e;
  }
}

/** The rest of {@link serve}, once the control plane is made. */
async function listenWith(
  options: ServerOptions,
  o: { log: (line: string) => void; host: string; tls: boolean; db: Db; store: WorkerFlowStore; storePath: string; cp: ControlPlane },
): Promise<RunningServer> {
  const { log, host, tls, db, store, storePath, cp } = o;
  if (options.flowRetentionDays !== undefined) await store.setRetentionDays(options.flowRetentionDays);

  // The store's thread dying is the one failure the server cannot mend itself: every flow batch gets 503 from then on.
  store.onDeath = (e) => {
    log(`${e.message}: flows cannot be stored until the server is restarted`);
    cp.alert({ kind: 'store.failed', severity: 2, at: Date.now(), message: `${e.message}: agents' flows are refused (503) until the server is restarted`, fields: {} });
  };

  // First start: an admin token, written once to a file only the owner reads.
  const tokenFile = adminTokenPath(options.state);
  if (cp.tokens.isEmpty()) {
    const t = cp.tx(() => {
      const t = cp.tokens.create({ name: 'bootstrap admin', role: 'admin', by: 'system' });
      cp.record(SYSTEM, 'token.bootstrap', `token/${t.id}`, { file: tokenFile });
      return t;
    });
    writeFileSync(tokenFile, t.token + '\n', { mode: 0o600 });
    chmodSync(tokenFile, 0o600);
    log(`wrote the bootstrap admin token to ${tokenFile}`);
  }
  const adminToken = existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : '';

  const router = new Router<Ctx>(ROUTES);
  const turns = new Turns();
  const limiter = new RateLimiter();
  const maxBody = options.maxBody ?? DEFAULT_MAX_BODY;
  const rate = options.rate ?? 50;
  const agentRate = options.agentRate ?? 20;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = (req.method ?? 'GET').toUpperCase();
    const m = router.match(method, url.pathname);
    if (!m) throw new ApiError(404, 'not-found', `no such endpoint: ${method} ${url.pathname}`);
    if ('methods' in m) throw new ApiError(405, 'method-not-allowed', `${method} is not allowed on ${url.pathname}`, undefined, { allow: m.methods.join(', ') });
    const route = m.route;
    let who: Principal = { tokenId: '-', name: 'anonymous', role: 'viewer' };
    if (route.auth !== 'public') {
      try {
        who = cp.tokens.authenticate(req.headers.authorization);
      } catch (e) {
        // Failed attempts are limited per client address, so guessing is slow.
        const wait = limiter.take('ip:' + (req.socket.remoteAddress ?? '?'), rate);
        if (wait > 0) throw new ApiError(429, 'rate-limited', 'too many failed requests', undefined, { 'retry-after': String(wait) });
        throw e;
      }
      const isAgent = who.role === 'agent';
      const wait = limiter.take((isAgent ? 'agent:' : 'token:') + who.tokenId, isAgent ? agentRate : rate);
      if (wait > 0) throw new ApiError(429, 'rate-limited', `over ${isAgent ? agentRate : rate} requests a second`, undefined, { 'retry-after': String(wait) });
      const permitted = route.auth === 'any' || (route.auth === 'agent' ? isAgent : allows(who.role, route.auth));
      if (!permitted) {
        if (method !== 'GET') {
          try {
            cp.tx(() => cp.record(who, 'denied', `${method} ${url.pathname}`, { needs: route.auth }));
          } catch {
            // the denial is answered even if it cannot be recorded
          }
        }
        throw new ApiError(403, 'forbidden', route.auth === 'agent' ? 'only an agent token may call the agent endpoints' : isAgent ? 'an agent token may only call the agent endpoints' : `a ${who.role} may not do this`);
      }
    }
    let body: unknown;
    let json: unknown;
    let binary = false;
    if (method === 'POST' || method === 'PUT' || method === 'DELETE') {
      const buf = await readBody(req, maxBody);
      if (buf.length >= BIG_BODY) await turns.next();
      if (buf.length > 0) {
        const ct = String(req.headers['content-type'] ?? 'application/json');
        if (route.binary && ct.split(';')[0].trim().toLowerCase() === route.binary.type) {
          body = route.binary.parse(buf);
          binary = true;
        } else if (!/^application\/(?:[\w.+-]*\+)?json\b/i.test(ct)) {
          throw new ApiError(415, 'unsupported-media-type', `send the body as application/json${route.binary ? ` or ${route.binary.type}` : ''}`);
        } else {
          try {
            json = JSON.parse(buf.toString('utf8'));
          } catch (e) {
            throw new ApiError(400, 'bad-json', `the body is not JSON: ${(e as Error).message}`);
          }
        }
      }
    }
    if (binary) {
      // checked by route.binary.parse
    } else if (route.parse) body = route.parse(json);
    else if (route.body) {
      const r = route.body.safeParse(json);
      if (!r.success) throw new ApiError(400, 'bad-request', 'the request body is not valid', zodDetails(r.error.issues));
      body = r.data;
    } else body = json;
    const request: Request = { method: method as Method, path: url.pathname, params: m.params, query: url.searchParams, headers: req.headers, raw: req, res, body, json };
    const reply: Reply = await route.handler(request, { cp, who, routes: ROUTES });
    if ('raw' in reply) return;
    if ('text' in reply) {
      const b = Buffer.from(reply.text);
      res.writeHead(reply.status ?? 200, { 'content-type': reply.contentType, 'content-length': String(b.length), ...(reply.headers ?? {}) });
      res.end(b);
      return;
    }
    sendJson(res, reply.status ?? 200, reply.json, reply.headers);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((e: unknown) => {
      if (e instanceof ApiError) {
        // A body that was not read makes the connection unusable: close it after the answer.
        if (e.status === 413) res.setHeader('connection', 'close');
        sendError(res, e);
        if (e.status === 413) res.on('finish', () => req.socket.destroy());
        return;
      }
      log(`error: ${req.method} ${req.url}: ${(e as Error).stack ?? String(e)}`);
      sendError(res, new ApiError(500, 'internal', 'the server failed on this request; see its log'));
    });
  };

  const server: Server = tls ? createHttpsServer({ cert: pem(options.tlsCert!), key: pem(options.tlsKey!) }, onRequest) : createHttpServer(onRequest);
  server.keepAliveTimeout = 65000;
  server.headersTimeout = 70000;
  server.requestTimeout = 120000;
  server.maxHeadersCount = 100;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? (tls ? 8443 : 8080), host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log(`listening on ${url} (state ${options.state}, flows ${storePath})`);

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const stopped = new Promise<void>((r) => server.close(() => r()));
      log('stopping: answering waiting polls, storing waiting flows');
      await cp.close(); // answers waiting polls, stores waiting flows, drains the sinks
      log('closing connections');
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), 3000);
      await stopped;
      clearTimeout(force);
      log('closing the flow store');
      await store.close();
      db.close();
      log('stopped');
    })());
  return { url, adminToken, port, control: cp, server, close };
}

export type { ControlPlane } from './control.js';
export type { Principal, Role } from './auth.js';
