/**
 * The HTTP plumbing of the control plane, on node:http alone: a route table
 * with `{param}` segments, bodies read with a size limit, JSON answers and
 * the one error shape of docs/API.md (`{"error": {code, message, details?}}`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';

/** An error answered as `{"error": {code, message, details?}}` with its HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
  }
}

export const badRequest = (message: string, details?: unknown) => new ApiError(400, 'bad-request', message, details);
export const notFound = (message: string) => new ApiError(404, 'not-found', message);
export const forbidden = (message: string) => new ApiError(403, 'forbidden', message);
export const conflict = (message: string, details?: unknown) => new ApiError(409, 'conflict', message, details);

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** One request as a handler sees it. */
export interface Request {
  readonly method: Method;
  readonly path: string;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly headers: IncomingMessage['headers'];
  readonly raw: IncomingMessage;
  readonly res: ServerResponse;
  /** The body parsed as JSON and by the route's schema (undefined when empty); read before the handler runs. */
  readonly body: unknown;
  /** The body as JSON, before the schema's defaults and transforms (what is stored as written). */
  readonly json: unknown;
}

/** What a handler answers: JSON (any value), or a ready response (`raw`) it wrote itself. */
export type Reply =
  | { status?: number; json: unknown; headers?: Record<string, string> }
  | { status?: number; text: string; contentType: string; headers?: Record<string, string> }
  | { raw: true };

/** A route: method, pattern (`/api/v1/versions/{n}`), and what the OpenAPI document and the router need to know. */
export interface Route<Ctx> {
  readonly method: Method;
  readonly path: string;
  /** The operation id in the OpenAPI document. */
  readonly op: string;
  /** Who may call it: a permission of auth.ts, `agent`, or `public`. */
  readonly auth: string;
  readonly summary: string;
  /** The JSON body's schema (validated before the handler runs). */
  readonly body?: z.ZodType;
  /**
   * A faster check of the body that accepts and refuses exactly what `body`
   * does (the agents' flow batches: tested against the schema); throws an ApiError.
   */
  readonly parse?: (json: unknown) => unknown;
  /** A binary body form the route also takes: its media type and its check (throws an ApiError). */
  readonly binary?: { readonly type: string; readonly parse: (body: Buffer) => unknown };
  readonly handler: (req: Request, ctx: Ctx) => Promise<Reply> | Reply;
}

interface Compiled<Ctx> {
  readonly route: Route<Ctx>;
  readonly parts: readonly string[];
}

/** Matches paths against the route table. */
export class Router<Ctx> {
  private readonly compiled: Compiled<Ctx>[];

  constructor(readonly routes: readonly Route<Ctx>[]) {
    this.compiled = routes.map((route) => ({ route, parts: route.path.split('/').slice(1) }));
  }

  /** The route and its parameters for a method and path; `methods` lists what the path allows when only the method is wrong. */
  match(method: string, path: string): { route: Route<Ctx>; params: Record<string, string> } | { methods: string[] } | undefined {
    const segs = path.split('/').slice(1);
    const methods: string[] = [];
    for (const c of this.compiled) {
      if (c.parts.length !== segs.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < segs.length && ok; i++) {
        const p = c.parts[i];
        if (p.startsWith('{')) {
          let v: string;
          try {
            v = decodeURIComponent(segs[i]);
          } catch {
            ok = false;
            break;
          }
          if (v === '') ok = false;
          params[p.slice(1, -1)] = v;
        } else if (p !== segs[i]) ok = false;
      }
      if (!ok) continue;
      if (c.route.method === method) return { route: c.route, params };
      methods.push(c.route.method);
    }
    return methods.length > 0 ? { methods } : undefined;
  }
}

/**
 * Reads a request body up to `max` bytes. A larger declared or actual body is
 * a 413; the rest of it is not read (the connection is closed after the answer).
 */
export function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max) {
    return Promise.reject(new ApiError(413, 'too-large', `the request body is over ${max} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > max) {
        done = true;
        req.pause();
        reject(new ApiError(413, 'too-large', `the request body is over ${max} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.on('error', (e) => {
      if (done) return;
      done = true;
      reject(e);
    });
  });
}

/** Writes a JSON answer. */
export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(body.length), ...headers });
  res.end(body);
}

/** Writes an error answer. */
export function sendError(res: ServerResponse, e: ApiError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, e.status, { error: { code: e.code, message: e.message, ...(e.details !== undefined ? { details: e.details } : {}) } }, { ...(e.headers ?? {}) });
}

/** Turns zod issues into the `details` of a 400. */
export function zodDetails(issues: readonly { path: readonly PropertyKey[]; message: string; code?: string }[]): { path: string; message: string }[] {
  return issues.slice(0, 50).map((i) => ({ path: '/' + i.path.map(String).join('/'), message: i.message }));
}

/** Parses a body with a schema; a 400 with the issues when it does not fit. */
export function parseWith<T extends z.ZodType>(schema: T, value: unknown, what = 'the request body'): z.output<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw badRequest(`${what} is not valid`, zodDetails(r.error.issues));
  return r.data;
}

/** An integer query parameter within bounds (undefined when absent). */
export function intParam(q: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw badRequest(`\`${name}\` must be a whole number from ${min} to ${max}`);
  return n;
}

/** A time query parameter: ISO 8601 or epoch milliseconds (undefined when absent). */
export function timeParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  const t = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(t)) throw badRequest(`\`${name}\` must be an ISO 8601 time or epoch milliseconds, not \`${v}\``);
  return t;
}
