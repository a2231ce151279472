/**
 * The OpenAPI 3.1 document of `/api/v1`, built from the route table itself
 * (so no route can be missing from it): paths, parameters, who may call each
 * operation, request bodies as JSON Schema from the same Zod schemas that
 * check them, and the responses of docs/API.md.
 */
import { z } from 'zod';
import type { Route } from './http.js';

const ERROR = {
  type: 'object',
  required: ['error'],
  properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} } } },
} as const;

const AUTH_TEXT: Record<string, string> = {
  public: 'no authentication',
  any: 'any valid token',
  read: 'admin, editor, viewer, app-owner',
  draft: 'admin, editor',
  'draft:ruleset': 'admin, editor, app-owner (its own app)',
  provision: 'admin, editor, app-owner',
  rollback: 'admin, editor',
  breakglass: 'admin, editor',
  admin: 'admin',
  agent: 'agent (its own workload only)',
};

/** Query parameters, per operation. */
const QUERY: Record<string, { name: string; description: string; schema: object }[]> = {
  agentPolicy: [
    { name: 'wait', description: 'seconds to hold the request while the ETag matches (0 to 60)', schema: { type: 'integer', minimum: 0, maximum: 60 } },
    { name: 'backend', description: 'the ruleset\'s form: nftables (default) or iptables (ipset + iptables-restore files in one text)', schema: { type: 'string', enum: ['nftables', 'iptables'] } },
  ],
  listViolations: [
    { name: 'since', description: 'ISO 8601 or epoch ms', schema: { type: 'string' } },
    { name: 'until', description: 'ISO 8601 or epoch ms', schema: { type: 'string' } },
    { name: 'app', description: 'only this app', schema: { type: 'string' } },
  ],
  listFlows: [
    { name: 'since', description: 'ISO 8601 or epoch ms', schema: { type: 'string' } },
    { name: 'until', description: 'ISO 8601 or epoch ms', schema: { type: 'string' } },
    { name: 'limit', description: 'at most this many records (1 to 10000, default 1000)', schema: { type: 'integer' } },
  ],
  weeklyReport: [
    { name: 'format', description: '`json` (default) or `markdown`', schema: { type: 'string', enum: ['json', 'markdown'] } },
    { name: 'until', description: 'the end of the week (default now)', schema: { type: 'string' } },
  ],
  listAudit: [
    { name: 'since', description: 'ISO 8601 or epoch ms', schema: { type: 'string' } },
    { name: 'until', description: 'ISO 8601 or epoch ms', schema: { type: 'string' } },
    { name: 'actor', description: 'only entries by this actor', schema: { type: 'string' } },
    { name: 'action', description: 'only this action, such as `version.provision`', schema: { type: 'string' } },
    { name: 'before', description: 'entries before this sequence number (paging)', schema: { type: 'integer' } },
    { name: 'limit', description: '1 to 1000 (default 100)', schema: { type: 'integer' } },
  ],
  listBreakglass: [{ name: 'limit', description: '1 to 1000 (default 100)', schema: { type: 'integer' } }],
};

/** Headers an operation reads. */
const HEADERS: Record<string, { name: string; description: string }[]> = {
  putDraft: [{ name: 'If-Match', description: 'the draft revision read; 412 when it changed' }],
  putDraftSection: [{ name: 'If-Match', description: 'the draft revision read; 412 when it changed' }],
  putDraftRuleset: [{ name: 'If-Match', description: 'the draft revision read; 412 when it changed' }],
  deleteDraftRuleset: [{ name: 'If-Match', description: 'the draft revision read; 412 when it changed' }],
  agentPolicy: [{ name: 'If-None-Match', description: 'the ETag the agent holds' }],
};

/** Extra responses per operation, besides 200 and the errors every call may get. */
const EXTRA: Record<string, Record<string, string>> = {
  provision: { '201': 'provisioned: `{ version, digest, warnings }`', '412': 'the draft is not at `revision`', '422': 'the draft has errors: `details` lists the diagnostics; the active version is unchanged' },
  rollback: { '201': 'rolled back: a new active version', '422': 'the version no longer checks' },
  agentPolicy: { '304': 'not modified: the ETag still holds after `wait` seconds' },
  createToken: { '201': 'the token, shown once' },
  createAgent: { '201': 'the agent id and token, shown once' },
  createBreakglass: { '201': 'the override, live', '409': 'no active version', '422': 'the rule has errors' },
  createSink: { '201': 'the sink' },
  putDraft: { '412': 'the draft changed since `If-Match`' },
  putDraftSection: { '412': 'the draft changed since `If-Match`' },
  putDraftRuleset: { '412': 'the draft changed since `If-Match`' },
  agentFlows: { '403': 'a record has none of the workload\'s addresses: nothing of the batch is stored', '503': 'the store failed: send the batch again' },
};

function bodySchema(s: z.ZodType): unknown {
  try {
    const j = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
    delete j.$schema;
    return j;
  } catch {
    return {};
  }
}

let cached: { routes: readonly Route<unknown>[]; doc: unknown } | undefined;

/** The document for a route table (built once per table). */
export function buildOpenApi<C>(routes: readonly Route<C>[]): unknown {
  if (cached && cached.routes === (routes as readonly Route<unknown>[])) return cached.doc;
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const params = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const query = (QUERY[r.op] ?? []).map((q) => ({ name: q.name, in: 'query', required: false, description: q.description, schema: q.schema }));
    const headers = (HEADERS[r.op] ?? []).map((h) => ({ name: h.name, in: 'header', required: false, description: h.description, schema: { type: 'string' } }));
    const responses: Record<string, unknown> = {
      '200': { description: 'success', content: { 'application/json': { schema: {} } } },
      ...Object.fromEntries(Object.entries(EXTRA[r.op] ?? {}).map(([code, description]) => [code, { description, ...(code.startsWith('2') ? { content: { 'application/json': { schema: {} } } } : code === '304' ? {} : { content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }) }])),
      '400': { description: 'the request is not valid', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
      ...(r.auth === 'public'
        ? {}
        : {
            '401': { description: 'no, malformed, unknown or revoked token', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
            '403': { description: 'the token has no right to this', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
            '429': { description: 'over the rate limit; see Retry-After', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
          }),
      ...(r.body ? { '413': { description: 'the body is over the size limit', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } } } : {}),
    };
    (paths[r.path] ??= {})[r.method.toLowerCase()] = {
      operationId: r.op,
      summary: r.summary,
      description: `Who: ${AUTH_TEXT[r.auth] ?? r.auth}.`,
      'x-bulkhead-auth': r.auth,
      ...(r.auth === 'public' ? { security: [] } : {}),
      ...(params.length + query.length + headers.length > 0 ? { parameters: [...params, ...query, ...headers] } : {}),
      ...(r.body ? { requestBody: { required: r.op !== 'rollback', content: { 'application/json': { schema: bodySchema(r.body) } } } } : {}),
      responses,
    };
  }
  const doc = {
    openapi: '3.1.0',
    info: { title: 'bulkhead control plane', version: '1', description: 'See docs/API.md and docs/SERVER.md.', license: { name: 'Apache-2.0', identifier: 'Apache-2.0' } },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token `bh_<id>_<secret>`' } },
      schemas: { Error: ERROR },
    },
    paths,
  };
  cached = { routes: routes as readonly Route<unknown>[], doc };
  return doc;
}
