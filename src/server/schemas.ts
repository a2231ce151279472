/**
 * The API's request bodies as Zod schemas: checked before a handler runs,
 * and exported to the OpenAPI document. Policy items reuse the policy's own
 * schemas (src/policy/schema.ts), as the CLI's loader does.
 */
import { z } from 'zod';
import { PeerSchema, PortEntrySchema, RulesetSchema } from '../policy/schema.js';
import { ROLES } from './auth.js';
import { ApiError } from './http.js';
import { decodeFlowBatch, WIRE_VERDICTS, wireColumns, type WireBatch, type WireColumns } from '../flows/wire.js';
import { V6, v6ToWords } from '../flows/record.js';
import { parseAddr, type Addr } from '../netset/ip.js';

const Name = z.string().min(1).max(200).regex(/^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$/);
const oneOrMany = <T extends z.ZodTypeAny>(t: T) => z.union([z.array(t).min(1).max(1000), t]);

export const DocumentSchema = z.record(z.string(), z.unknown()).describe('a policy document: sections of docs/POLICY.md');

export const RulesetBody = RulesetSchema;

export const ProvisionBody = z.strictObject({
  message: z.string().min(1).max(2000),
  /** Provision only if the draft is still at this revision. */
  revision: z.number().int().nonnegative().optional(),
});

export const RollbackBody = z.strictObject({ message: z.string().max(2000).optional() }).optional();

export const TokenBody = z
  .strictObject({
    name: z.string().min(1).max(200),
    role: z.enum(ROLES.filter((r) => r !== 'agent') as ['admin', 'editor', 'viewer', 'app-owner']),
    app: z.string().min(1).max(200).optional(),
  })
  .refine((t) => (t.role === 'app-owner') === (t.app !== undefined), { message: 'an app owner needs `app`, and only an app owner has one', path: ['app'] });

export const AgentCreateBody = z.strictObject({ workload: Name, name: z.string().max(200).optional() });

const Labels = z.record(z.string().max(200), z.union([z.string().max(500), z.number(), z.boolean()]));

export const RegisterBody = z.strictObject({
  hostname: z.string().min(1).max(255),
  addresses: z.array(z.string().max(64)).max(256),
  labels: Labels.default({}),
  agentVersion: z.string().max(100),
});

export const HeartbeatBody = z.strictObject({
  version: z.number().int().nonnegative().optional(),
  etag: z.string().max(200).optional(),
  stats: z.record(z.string(), z.unknown()).optional(),
});

export const EVENT_KINDS = ['applied', 'apply-failed', 'drift-repaired', 'started'] as const;

export const EventsBody = z.strictObject({
  events: z
    .array(
      z.strictObject({
        kind: z.enum(EVENT_KINDS),
        at: z.union([z.number(), z.string()]),
        version: z.number().int().nonnegative().optional(),
        etag: z.string().max(200).optional(),
        detail: z.union([z.string().max(10000), z.record(z.string(), z.unknown())]).optional(),
      }),
    )
    .max(1000),
});

/** One flow an agent reports. */
export const AgentFlowSchema = z.strictObject({
  start: z.number().int().nonnegative(),
  end: z.number().int().nonnegative(),
  src: z.string().max(64),
  dst: z.string().max(64),
  sport: z.number().int().min(0).max(65535),
  dport: z.number().int().min(0).max(65535),
  proto: z.number().int().min(0).max(255),
  packets: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  initiator: z.enum(['src']).optional(),
  verdict: z.enum(['allowed', 'blocked', 'potentially-blocked']).optional(),
  rule: z.string().max(200).optional(),
});
export type AgentFlow = z.output<typeof AgentFlowSchema>;

/** The most records one batch may hold. */
export const MAX_FLOW_BATCH = 50000;

/** The forms of flow batch this server takes (told to agents at registration). */
export const FLOW_FORMATS = ['records', 'columns', 'binary'] as const;

/** A batch as a list of records. */
export const FlowRecordsBody = z.strictObject({ records: z.array(AgentFlowSchema).max(MAX_FLOW_BATCH) });

const column = <T extends z.ZodTypeAny>(t: T) => z.array(t).max(MAX_FLOW_BATCH);
const optionalColumn = <T extends z.ZodTypeAny>(t: T) => z.array(t.nullable()).max(MAX_FLOW_BATCH).optional();
const F = AgentFlowSchema.shape;

/**
 * A batch as columns: the same fields, each a list with one entry per
 * record (record `i` is entry `i` of every column), so the parser reads a
 * few long lists instead of an object per record. Optional fields are
 * optional columns whose `null` entries mean "absent". Every column has the
 * same length.
 */
export const FlowColumnsBody = z.strictObject({
  columns: z
    .strictObject({
      start: column(F.start),
      end: column(F.end),
      src: column(F.src),
      dst: column(F.dst),
      sport: column(F.sport),
      dport: column(F.dport),
      proto: column(F.proto),
      packets: column(F.packets),
      bytes: column(F.bytes),
      initiator: optionalColumn(F.initiator.unwrap()),
      verdict: optionalColumn(F.verdict.unwrap()),
      rule: optionalColumn(F.rule.unwrap()),
    })
    .refine((c) => Object.values(c).every((col) => col === undefined || col.length === c.start.length), { message: 'every column has one entry per record' })
    .describe('the records as columns: entry i of every column is record i; every column has the same length; in the optional columns, null means the record has no such field'),
});

/** `POST /agent/flows`: records, or the same as columns. */
export const FlowsBody = z.union([FlowRecordsBody, FlowColumnsBody]);

export const BreakGlassBody = z.strictObject({
  from: oneOrMany(PeerSchema),
  to: oneOrMany(PeerSchema),
  services: oneOrMany(PortEntrySchema),
  action: z.enum(['allow', 'deny']).default('allow'),
  reason: z.string().min(3).max(2000),
  ttlSeconds: z.number().int().min(1).max(7 * 86400),
});

export const SinkBody = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('webhook'),
    url: z.url({ protocol: /^https?$/ }),
    /** Signs each body: `x-bulkhead-signature: sha256=<hmac>`. */
    secret: z.string().min(8).max(200).optional(),
  }),
  z.strictObject({
    kind: z.literal('syslog'),
    host: z.string().min(1).max(255),
    port: z.number().int().min(1).max(65535).default(514),
    /** The syslog facility number (default 16, local0). */
    facility: z.number().int().min(0).max(23).default(16),
  }),
]);

export const TestQueryBody = z.strictObject({
  from: z.string().min(1).max(200),
  to: z.string().min(1).max(200),
  port: z.string().min(1).max(50),
});

export const ReachQueryBody = z.strictObject({
  by: z.string().max(200).optional(),
  from: z.string().max(2000).optional(),
  to: z.string().max(2000).optional(),
  port: z.string().max(2000).optional(),
  asDeployed: z.boolean().optional(),
});

export const MapQueryBody = z.strictObject({
  by: z.string().max(200).optional(),
  since: z.union([z.number(), z.string()]).optional(),
  until: z.union([z.number(), z.string()]).optional(),
  minFlows: z.number().int().nonnegative().optional(),
});

const FLOW_KEYS = new Set(['start', 'end', 'src', 'dst', 'sport', 'dport', 'proto', 'packets', 'bytes', 'initiator', 'verdict', 'rule']);
const VERDICTS = new Set(['allowed', 'blocked', 'potentially-blocked']);
const isInt = (v: unknown, lo: number, hi: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
const isStr = (v: unknown, max: number): boolean => typeof v === 'string' && v.length <= max;

/** Why one record does not fit {@link AgentFlowSchema}, or undefined when it does. */
function flowProblem(r: unknown): { path: string; message: string } | undefined {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) return { path: '', message: 'a record is an object' };
  const o = r as Record<string, unknown>;
  for (const k in o) if (!FLOW_KEYS.has(k)) return { path: '/' + k, message: `unknown field \`${k}\`` };
  if (!isInt(o.start, 0, Number.MAX_SAFE_INTEGER)) return { path: '/start', message: 'a whole number of epoch ms' };
  if (!isInt(o.end, 0, Number.MAX_SAFE_INTEGER)) return { path: '/end', message: 'a whole number of epoch ms' };
  if (!isStr(o.src, 64)) return { path: '/src', message: 'an address' };
  if (!isStr(o.dst, 64)) return { path: '/dst', message: 'an address' };
  if (!isInt(o.sport, 0, 65535)) return { path: '/sport', message: 'a port, 0 to 65535' };
  if (!isInt(o.dport, 0, 65535)) return { path: '/dport', message: 'a port, 0 to 65535' };
  if (!isInt(o.proto, 0, 255)) return { path: '/proto', message: 'a protocol number, 0 to 255' };
  if (!isInt(o.packets, 0, Number.MAX_SAFE_INTEGER)) return { path: '/packets', message: 'a whole number' };
  if (!isInt(o.bytes, 0, Number.MAX_SAFE_INTEGER)) return { path: '/bytes', message: 'a whole number' };
  if (o.initiator !== undefined && o.initiator !== 'src') return { path: '/initiator', message: '`src` when given' };
  if (o.verdict !== undefined && !VERDICTS.has(o.verdict as string)) return { path: '/verdict', message: 'allowed, blocked or potentially-blocked' };
  if (o.rule !== undefined && !isStr(o.rule, 200)) return { path: '/rule', message: 'a rule id of at most 200 characters' };
  return undefined;
}

/** A checked flow batch, as columns (what the ingest reads, whichever form was sent). */
export type FlowColumns = WireColumns;

const REQUIRED_COLUMNS = ['start', 'end', 'src', 'dst', 'sport', 'dport', 'proto', 'packets', 'bytes'] as const;
const OPTIONAL_COLUMNS = ['initiator', 'verdict', 'rule'] as const;

/** Why entry `v` of required column `k` does not fit {@link AgentFlowSchema}, or undefined when it does. */
function requiredProblem(k: (typeof REQUIRED_COLUMNS)[number], v: unknown): string | undefined {
  switch (k) {
    case 'start':
    case 'end':
      return isInt(v, 0, Number.MAX_SAFE_INTEGER) ? undefined : 'a whole number of epoch ms';
    case 'src':
    case 'dst':
      return isStr(v, 64) ? undefined : 'an address';
    case 'sport':
    case 'dport':
      return isInt(v, 0, 65535) ? undefined : 'a port, 0 to 65535';
    case 'proto':
      return isInt(v, 0, 255) ? undefined : 'a protocol number, 0 to 255';
    case 'packets':
    case 'bytes':
      return isInt(v, 0, Number.MAX_SAFE_INTEGER) ? undefined : 'a whole number';
  }
}

/** Why entry `v` of optional column `k` does not fit (`null`: absent), or undefined when it does. */
function optionalProblem(k: (typeof OPTIONAL_COLUMNS)[number], v: unknown): string | undefined {
  if (v === null) return undefined;
  switch (k) {
    case 'initiator':
      return v === 'src' ? undefined : '`src`, or null';
    case 'verdict':
      return VERDICTS.has(v as string) ? undefined : 'allowed, blocked or potentially-blocked, or null';
    case 'rule':
      return isStr(v, 200) ? undefined : 'a rule id of at most 200 characters, or null';
  }
}

const COLUMN_KEYS = new Set<string>([...REQUIRED_COLUMNS, ...OPTIONAL_COLUMNS]);

function checkColumns(json: unknown, bad: (path: string, message: string) => ApiError): FlowColumns {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad('/columns', 'expected an object of columns');
  const c = json as Record<string, unknown>;
  for (const k in c) if (!COLUMN_KEYS.has(k)) throw bad('/columns/' + k, `unknown column \`${k}\``);
  let n = -1;
  for (const k of REQUIRED_COLUMNS) {
    const col = c[k];
    if (!Array.isArray(col)) throw bad('/columns/' + k, 'expected a list');
    if (col.length > MAX_FLOW_BATCH) throw bad('/columns/' + k, `at most ${MAX_FLOW_BATCH} records a batch`);
    for (let i = 0; i < col.length; i++) {
      const p = requiredProblem(k, col[i]);
      if (p) throw bad(`/columns/${k}/${i}`, p);
    }
    if (n >= 0 && col.length !== n) throw bad('/columns/' + k, 'every column has one entry per record');
    n = col.length;
  }
  for (const k of OPTIONAL_COLUMNS) {
    const col = c[k];
    if (col === undefined) continue;
    if (!Array.isArray(col)) throw bad('/columns/' + k, 'expected a list');
    if (col.length > MAX_FLOW_BATCH) throw bad('/columns/' + k, `at most ${MAX_FLOW_BATCH} records a batch`);
    for (let i = 0; i < col.length; i++) {
      const p = optionalProblem(k, col[i]);
      if (p) throw bad(`/columns/${k}/${i}`, p);
    }
    if (col.length !== n) throw bad('/columns/' + k, 'every column has one entry per record');
  }
  return c as unknown as FlowColumns;
}


/**
 * Checks a flow batch, records or columns, as {@link FlowsBody} does,
 * without building a copy of every record (the ingest hot path), and hands
 * it on as columns. `test/server/schemas.test.ts` requires it to accept and
 * refuse the same bodies as the schema, and both forms to accept and refuse
 * the same records.
 */
export function parseFlowsBody(json: unknown): FlowColumns {
  const bad = (path: string, message: string) => new ApiError(400, 'bad-request', 'the request body is not valid', [{ path, message }]);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad('/', 'expected an object with `records` or `columns`');
  const o = json as Record<string, unknown>;
  let form: 'records' | 'columns' | undefined;
  for (const k in o) {
    if ((k !== 'records' && k !== 'columns') || form !== undefined) throw bad('/' + k, `unknown field \`${k}\`: a batch has \`records\` or \`columns\``);
    form = k;
  }
  if (form === 'columns') return checkColumns(o.columns, bad);
  const records = o.records;
  if (!Array.isArray(records)) throw bad('/records', 'expected a list of records');
  if (records.length > MAX_FLOW_BATCH) throw bad('/records', `at most ${MAX_FLOW_BATCH} records a batch`);
  for (let i = 0; i < records.length; i++) {
    const p = flowProblem(records[i]);
    if (p) throw bad(`/records/${i}${p.path}`, p.message);
  }
  return wireColumns(records as AgentFlow[]);
}

/** A checked JSON batch (records or columns) as the ingest reads it: columns of numbers, addresses parsed (400 if one is not an address). */
export function flowsBodyBatch(json: unknown): WireBatch {
  const c = parseFlowsBody(json);
  const n = c.start.length;
  const f64 = (col: readonly number[]) => Float64Array.from(col);
  const src4 = new Uint32Array(n);
  const dst4 = new Uint32Array(n);
  const family = new Uint8Array(n);
  let src6 = new Uint32Array(0);
  let dst6 = new Uint32Array(0);
  // Agents repeat their own address in every record: parsed once a run.
  const parse = (text: string, i: number, last: { text?: string; addr: Addr | null }): Addr => {
    if (text !== last.text) [last.text, last.addr] = [text, parseAddr(text)];
    if (last.addr === null) throw new ApiError(400, 'bad-request', `record ${i}: \`${text}\` is not an IP address`);
    return last.addr;
  };
  const ls = { addr: null };
  const ld = { addr: null };
  for (let i = 0; i < n; i++) {
    const s = parse(c.src[i], i, ls);
    const d = parse(c.dst[i], i, ld);
    for (const [a, col4, bit] of [[s, src4, V6.src], [d, dst4, V6.dst]] as const) {
      if (typeof a === 'number') col4[i] = a;
      else {
        if (src6.length === 0) [src6, dst6] = [new Uint32Array(4 * n), new Uint32Array(4 * n)];
        v6ToWords(a, bit === V6.src ? src6 : dst6, i * 4);
        family[i] |= bit;
      }
    }
  }
  const rules: string[] = [];
  const index = new Map<string, number>();
  const rule = new Uint16Array(n);
  if (c.rule) {
    for (let i = 0; i < n; i++) {
      const r = c.rule[i];
      if (r === null) continue;
      let k = index.get(r);
      if (k === undefined) index.set(r, (k = rules.push(r)));
      if (k > 65535) throw new ApiError(400, 'bad-request', 'at most 65,535 distinct rules a batch');
      rule[i] = k;
    }
  }
  const verdict = new Uint8Array(n);
  if (c.verdict) for (let i = 0; i < n; i++) verdict[i] = c.verdict[i] === null ? 0 : WIRE_VERDICTS.indexOf(c.verdict[i]!);
  const initiator = new Uint8Array(n);
  if (c.initiator) for (let i = 0; i < n; i++) initiator[i] = c.initiator[i] === 'src' ? 1 : 0;
  return {
    length: n,
    start: f64(c.start),
    end: f64(c.end),
    packets: f64(c.packets),
    bytes: f64(c.bytes),
    src4,
    dst4,
    src6,
    dst6,
    sport: Uint16Array.from(c.sport),
    dport: Uint16Array.from(c.dport),
    rule,
    family,
    proto: Uint8Array.from(c.proto),
    initiator,
    verdict,
    rules,
  };
}

/** A binary batch (`application/vnd.bulkhead.flows.v1`) decoded and checked; 400 naming the column and record otherwise. */
export function flowsBinaryBatch(body: Buffer): WireBatch {
  const r = decodeFlowBatch(body, MAX_FLOW_BATCH);
  if ('message' in r) throw new ApiError(400, 'bad-request', 'the flow batch is not valid', [r]);
  return r;
}
