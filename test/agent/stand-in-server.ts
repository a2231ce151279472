/**
 * A STAND-IN for the control plane, for the agent's unit and namespace tests
 * only: a small HTTP server on 127.0.0.1 that follows the agent endpoints of
 * docs/API.md ("Agents"): register, long-polled policy with ETags, flows,
 * events, heartbeats, bearer tokens. It is not the real server
 * (src/server, `startServer`); it holds one agent per token, serves the
 * ruleset a test sets, and records everything sent, so tests can control
 * and observe the protocol exactly (stop it, start it again on the same
 * port, hand out a corrupt ruleset). The end-to-end test
 * (e2e-lab.test.ts) uses the real server.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AgentEvent, AgentFlow, Registration } from '../../src/agent/client.js';

/** One agent the stand-in knows: its token, workload and what it is served. */
interface StandInAgent {
  readonly token: string;
  readonly workload: string;
  policy: { etag: string; version: number; mode: string; ruleset: string } | undefined;
  registration: Registration | undefined;
  readonly flows: AgentFlow[];
  readonly events: AgentEvent[];
  readonly heartbeats: unknown[];
  waiters: (() => void)[];
}

/** The stand-in control plane. */
export class StandInServer {
  private server: Server | undefined;
  private readonly agents = new Map<string, StandInAgent>();
  /** Requests seen, by path (for assertions on the protocol). */
  readonly requests: { method: string; path: string; status: number }[] = [];
  port = 0;

  /** Adds an agent with its token and workload. */
  addAgent(token: string, workload: string): void {
    this.agents.set(token, { token, workload, policy: undefined, registration: undefined, flows: [], events: [], heartbeats: [], waiters: [] });
  }

  /** Sets the ruleset served to a workload's agent; its long poll answers at once. */
  setPolicy(workload: string, ruleset: string, version: number, mode = 'enforce'): string {
    const a = this.byWorkload(workload);
    const etag = createHash('sha256').update(`${version}\n${ruleset}`).digest('hex').slice(0, 32);
    a.policy = { etag, version, mode, ruleset };
    const w = a.waiters;
    a.waiters = [];
    for (const f of w) f();
    return etag;
  }

  /** What a workload's agent sent. */
  agent(workload: string): Readonly<StandInAgent> {
    return this.byWorkload(workload);
  }

  /** The base URL. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Listens on 127.0.0.1 (the given port, or the one it had, or a free one). */
  async start(port = this.port): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and cuts every open connection (held long polls too), like a crashed server. */
  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    for (const a of this.agents.values()) a.waiters = [];
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  private byWorkload(workload: string): StandInAgent {
    for (const a of this.agents.values()) if (a.workload === workload) return a;
    throw new Error(`the stand-in knows no agent for ${workload}`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
      this.requests.push({ method: req.method ?? '', path: url.pathname, status });
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(body === undefined ? '' : JSON.stringify(body));
    };
    const fail = (status: number, code: string, message: string) => send(status, { error: { code, message } });
    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    const agent = auth ? this.agents.get(auth[1]) : undefined;
    if (!agent) return fail(401, 'unauthorized', 'unknown token');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body: Record<string, unknown> = {};
    if (chunks.length > 0) {
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        return fail(400, 'bad-request', 'not JSON');
      }
    }
    const route = `${req.method} ${url.pathname}`;
    if (route === 'POST /api/v1/agent/register') {
      agent.registration = body as unknown as Registration;
      return send(200, { workload: agent.workload, pollSeconds: 30 });
    }
    if (route === 'GET /api/v1/agent/policy') {
      const wait = Math.min(60, Number(url.searchParams.get('wait') ?? '0'));
      const inm = (req.headers['if-none-match'] ?? '').replace(/^"(.*)"$/, '$1');
      const answer = () => {
        const p = agent.policy;
        if (p && p.etag !== inm) send(200, { etag: p.etag, version: p.version, workload: agent.workload, mode: p.mode, format: 'nftables', ruleset: p.ruleset }, { etag: `"${p.etag}"` });
        else send(304);
      };
      if ((agent.policy && agent.policy.etag !== inm) || wait <= 0) return answer();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait * 1000);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        agent.waiters.push(done);
        req.on('close', done);
      });
      return answer();
    }
    if (route === 'POST /api/v1/agent/flows') {
      const records = (body.records ?? []) as AgentFlow[];
      const own = new Set(agent.registration?.addresses ?? []);
      if (!records.every((r) => own.has(r.src) || own.has(r.dst))) return fail(403, 'forbidden', 'a record names none of the workload\'s addresses');
      agent.flows.push(...records);
      return send(200, { accepted: records.length });
    }
    if (route === 'POST /api/v1/agent/events') {
      agent.events.push(...((body.events ?? []) as AgentEvent[]));
      return send(200, {});
    }
    if (route === 'POST /api/v1/agent/heartbeat') {
      agent.heartbeats.push(body);
      return send(200, {});
    }
    return fail(404, 'not-found', route);
  }
}
