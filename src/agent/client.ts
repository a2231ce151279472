/**
 * The agent's side of the control plane protocol (docs/API.md, "Agents"):
 * register, long-poll for the compiled ruleset, post flows, events and
 * heartbeats. JSON over HTTP or HTTPS (with a pinned CA, `--ca`), one
 * keep-alive connection pool, every request abortable.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { gunzipSync } from 'node:zlib';
import { encodeFlowBatch, FLOW_WIRE_TYPE, wireColumns, type WireColumns, type WireFlow } from '../flows/wire.js';

/** One flow as the agent reports it (`AgentFlow` of docs/API.md). */
export type AgentFlow = WireFlow;

/** An agent event (docs/API.md). */
export interface AgentEvent {
  readonly kind: 'applied' | 'apply-failed' | 'drift-repaired' | 'started';
  /** Epoch milliseconds. */
  readonly at: number;
  readonly version?: number;
  /** The ETag of the ruleset the event is about. */
  readonly etag?: string;
  readonly detail?: string;
}

/** What `POST /agent/register` sends. */
export interface Registration {
  readonly hostname: string;
  readonly addresses: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  readonly agentVersion: string;
}

/** The server's answer to a registration. */
export interface Registered {
  readonly workload: string;
  readonly pollSeconds?: number;
  /** Whether the active version has the workload (when the server says). */
  readonly inPolicy?: boolean;
  /** The workload's addresses in the active version, as prefixes (when the server says): flows must touch one. */
  readonly policyAddresses?: readonly string[];
  /** The forms of flow batch the server takes (when it says): `records`, `columns`, `binary`. */
  readonly flowFormats?: readonly string[];
}

/** A flow batch as columns (docs/API.md). */
export type FlowColumns = WireColumns;

/** Records as columns. */
export const flowColumns = wireColumns;

/** A compiled ruleset as the server sends it. */
export interface PolicyDocument {
  /** The ETag, without quotes. */
  readonly etag: string;
  readonly version: number;
  readonly workload: string;
  readonly mode: string;
  readonly format: string;
  readonly ruleset: string;
}

/** A heartbeat. */
export interface Heartbeat {
  readonly version?: number;
  readonly etag?: string;
  readonly stats?: Readonly<Record<string, unknown>>;
}

/**
 * A failed request: `status` 0 when the server could not be reached (refused,
 * reset, timed out, TLS), else the HTTP status, with the server's error code
 * and message when it sent the documented error shape.
 */
export class AgentHttpError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'AgentHttpError';
  }

  /** True for failures worth retrying as they are: unreachable, timeouts, 408, 429 and 5xx. */
  get transient(): boolean {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** Options of {@link AgentClient}. */
export interface AgentClientOptions {
  /** The server's base URL, `http(s)://host:port` (a path prefix is kept). */
  readonly server: string;
  /** The agent's bearer token. */
  readonly token: string;
  /** PEM certificates to trust for HTTPS instead of the system's. */
  readonly ca?: string;
  /** Time limit of a request other than the long poll, milliseconds (default 15 000). */
  readonly timeoutMs?: number;
}

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** The largest answer the agent reads (a ruleset for a host of a very large estate fits easily). */
const MAX_REPLY = 64 * 1024 * 1024;

/** Strips `W/` and quotes from an ETag. */
export function bareEtag(etag: string): string {
  return etag.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

/** A client of the agent endpoints of one server. */
export class AgentClient {
  private readonly base: URL;
  private readonly agent: HttpAgent;
  private readonly timeoutMs: number;
  /** The best flow batch form the server said at registration that it takes. */
  private form: 'binary' | 'columns' | 'records' = 'records';

  constructor(private readonly options: AgentClientOptions) {
    let url: URL;
    try {
      url = new URL(options.server);
    } catch {
      throw new Error(`\`${options.server}\` is not a URL: write http://host:port or https://host:port`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`\`${options.server}\`: the server URL must start with http:// or https://`);
    this.base = new URL(url.href.endsWith('/') ? url.href : url.href + '/');
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.agent = url.protocol === 'https:' ? new HttpsAgent({ keepAlive: true, maxSockets: 4, ca: options.ca }) : new HttpAgent({ keepAlive: true, maxSockets: 4 });
  }

  /** The server URL as given. */
  get server(): string {
    return this.options.server;
  }

  /** Registers the host: `POST /api/v1/agent/register`. */
  async register(body: Registration, signal?: AbortSignal): Promise<Registered> {
    const r = await this.json('POST', 'api/v1/agent/register', body, { signal });
    const { workload, pollSeconds: poll, inPolicy, policyAddresses: pa, flowFormats: ff } = r as { workload?: unknown; pollSeconds?: unknown; inPolicy?: unknown; policyAddresses?: unknown; flowFormats?: unknown };
    if (typeof workload !== 'string') throw new AgentHttpError('the server answered the registration without a workload', 502);
    const flowFormats = Array.isArray(ff) && ff.every((f) => typeof f === 'string') ? (ff as string[]) : undefined;
    this.form = flowFormats?.includes('binary') ? 'binary' : flowFormats?.includes('columns') ? 'columns' : 'records';
    return {
      workload,
      pollSeconds: typeof poll === 'number' && poll > 0 ? poll : undefined,
      inPolicy: typeof inPolicy === 'boolean' ? inPolicy : undefined,
      policyAddresses: Array.isArray(pa) && pa.every((a) => typeof a === 'string') ? (pa as string[]) : undefined,
      flowFormats,
    };
  }

  /**
   * Long-polls for the ruleset: `GET /api/v1/agent/policy?wait=` with
   * `If-None-Match` (and `&backend=iptables` for the iptables form).
   * Undefined when it did not change within `waitSeconds` (304).
   */
  async policy(etag: string | undefined, waitSeconds: number, signal?: AbortSignal, backend: 'nftables' | 'iptables' = 'nftables'): Promise<PolicyDocument | undefined> {
    const wait = Math.max(0, Math.min(60, Math.round(waitSeconds)));
    const headers: Record<string, string> = etag !== undefined ? { 'if-none-match': `"${etag}"` } : {};
    const query = backend === 'nftables' ? `wait=${wait}` : `wait=${wait}&backend=${backend}`;
    const r = await this.request('GET', `api/v1/agent/policy?${query}`, undefined, { signal, headers, timeoutMs: wait * 1000 + this.timeoutMs });
    if (r.status === 304) return undefined;
    const doc = parseJson(r) as Partial<PolicyDocument> & { etag?: unknown };
    const header = typeof r.headers.etag === 'string' ? r.headers.etag : undefined;
    const tag = typeof doc.etag === 'string' ? doc.etag : header;
    if (tag === undefined || typeof doc.ruleset !== 'string') throw new AgentHttpError('the server sent a policy without an etag or a ruleset', 502);
    return {
      etag: bareEtag(tag),
      version: typeof doc.version === 'number' ? doc.version : 0,
      workload: typeof doc.workload === 'string' ? doc.workload : '',
      mode: typeof doc.mode === 'string' ? doc.mode : '',
      format: typeof doc.format === 'string' ? doc.format : 'nftables',
      ruleset: doc.ruleset,
    };
  }

  /**
   * Posts flow records: `POST /api/v1/agent/flows`; the number the server
   * accepted. As columns when the server said at registration that it takes
   * them, else as records.
   */
  async flows(records: readonly AgentFlow[], signal?: AbortSignal): Promise<number> {
    const accepted = (r: unknown) => {
      const n = (r as { accepted?: unknown }).accepted;
      return typeof n === 'number' ? n : records.length;
    };
    const send = (form: typeof this.form) => {
      if (form === 'binary') {
        let body: Uint8Array | undefined;
        try {
          body = encodeFlowBatch(records);
        } catch {
          // A record the binary form cannot hold: this batch goes as columns, for the server to say what is wrong with it.
        }
        if (body) return this.request('POST', 'api/v1/agent/flows', undefined, { signal, raw: { type: FLOW_WIRE_TYPE, body } }).then(parseJson);
      }
      return this.json('POST', 'api/v1/agent/flows', form === 'records' ? { records } : { columns: flowColumns(records) }, { signal });
    };
    // Perhaps another server behind the same address, one that takes only simpler forms: on 400 or 415, the next form
    // down, and that form from then on only if it passes (a batch every form refuses changes nothing).
    let form = this.form;
    for (;;) {
      try {
        const n = accepted(await send(form));
        this.form = form;
        return n;
      } catch (e) {
        if (form === 'records' || !(e instanceof AgentHttpError) || (e.status !== 400 && e.status !== 415)) throw e;
        form = form === 'binary' ? 'columns' : 'records';
      }
    }
  }

  /** Whether the server answers at all (`GET /api/v1/health`, any HTTP status) within `timeoutMs`. */
  async answers(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.request('GET', 'api/v1/health', undefined, { signal, timeoutMs });
      return true;
    } catch (e) {
      return e instanceof AgentHttpError && e.status > 0;
    }
  }

  /** Posts events: `POST /api/v1/agent/events`. */
  async events(events: readonly AgentEvent[], signal?: AbortSignal): Promise<void> {
    await this.json('POST', 'api/v1/agent/events', { events }, { signal });
  }

  /** Posts a heartbeat: `POST /api/v1/agent/heartbeat`. */
  async heartbeat(body: Heartbeat, signal?: AbortSignal): Promise<void> {
    await this.json('POST', 'api/v1/agent/heartbeat', body, { signal });
  }

  /** Closes idle connections. */
  close(): void {
    this.agent.destroy();
  }

  private async json(method: string, path: string, body: unknown, opts: { signal?: AbortSignal }): Promise<unknown> {
    return parseJson(await this.request(method, path, body, opts));
  }

  private request(method: string, path: string, body: unknown, opts: { signal?: AbortSignal; headers?: Record<string, string>; timeoutMs?: number; raw?: { type: string; body: Uint8Array } }): Promise<Reply> {
    const url = new URL(path, this.base);
    const payload = opts.raw ? opts.raw.body : body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {
      accept: 'application/json',
      // Rulesets come gzipped: addresses shrink several times over.
      'accept-encoding': 'gzip',
      authorization: `Bearer ${this.options.token}`,
      ...(payload ? { 'content-type': opts.raw?.type ?? 'application/json', 'content-length': String(payload.length) } : {}),
      ...opts.headers,
    };
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const what = `${method} ${url.pathname}`;
    return new Promise<Reply>((resolve, reject) => {
      if (opts.signal?.aborted) return reject(new AgentHttpError(`${what}: stopped`, 0, 'aborted'));
      const req = send(url, { method, headers, agent: this.agent, signal: opts.signal }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_REPLY) req.destroy(new Error(`the answer is larger than ${MAX_REPLY} bytes`));
          else chunks.push(c);
        });
        res.on('error', (e) => reject(new AgentHttpError(`${what}: ${e.message}`, 0)));
        res.on('end', () => {
          clearTimeout(timer);
          let raw = Buffer.concat(chunks);
          if (res.headers['content-encoding'] === 'gzip') {
            try {
              raw = gunzipSync(raw, { maxOutputLength: MAX_REPLY });
            } catch (e) {
              return reject(new AgentHttpError(`${what}: the gzipped answer could not be read: ${(e as Error).message}`, 502));
            }
          } else if (res.headers['content-encoding'] !== undefined && res.headers['content-encoding'] !== 'identity') {
            return reject(new AgentHttpError(`${what}: the answer has an encoding this agent does not read: ${res.headers['content-encoding']}`, 502));
          }
          const reply = { status: res.statusCode ?? 0, headers: res.headers, body: raw.toString('utf8') };
          if (reply.status >= 200 && reply.status < 300) return resolve(reply);
          if (reply.status === 304) return resolve(reply);
          reject(errorOf(what, reply));
        });
      });
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${Math.round((opts.timeoutMs ?? this.timeoutMs) / 1000)} s`)), opts.timeoutMs ?? this.timeoutMs);
      req.on('error', (e: Error & { code?: string }) => {
        clearTimeout(timer);
        reject(new AgentHttpError(`${what}: ${e.name === 'AbortError' ? 'stopped' : e.code ? `${e.code} ${e.message.replace(/^[A-Z_]+:?\s*/, '')}` : e.message}`, 0, e.name === 'AbortError' ? 'aborted' : e.code));
      });
      req.end(payload);
    });
  }
}

function parseJson(r: Reply): unknown {
  if (r.body === '') return {};
  try {
    return JSON.parse(r.body) as unknown;
  } catch {
    throw new AgentHttpError(`the server sent something that is not JSON (HTTP ${r.status})`, 502);
  }
}

function errorOf(what: string, r: Reply): AgentHttpError {
  let code: string | undefined;
  let message = '';
  try {
    const e = (JSON.parse(r.body) as { error?: { code?: unknown; message?: unknown } }).error;
    if (typeof e?.code === 'string') code = e.code;
    if (typeof e?.message === 'string') message = e.message;
  } catch {
    message = r.body.slice(0, 200);
  }
  const ra = r.headers['retry-after'];
  const retryAfterMs = typeof ra === 'string' && /^\d+$/.test(ra) ? Number(ra) * 1000 : undefined;
  return new AgentHttpError(`${what}: HTTP ${r.status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`, r.status, code, retryAfterMs);
}
