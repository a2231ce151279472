/**
 * Every route of `/api/v1`, with who may call it and the schema of its body
 * (docs/API.md). Handlers check finer rights (an app owner's app, an agent's
 * own workload) themselves, and audit what they change.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { PROTOCOLS } from '../netset/connset.js';
import { formatAddr, formatPrefix, parseAddr, type Addr } from '../netset/ip.js';
import { parseSelector } from '../model/selector.js';
import { parsePortText } from '../policy/ports.js';
import { SECTIONS, type SectionName } from '../policy/schema.js';
import { Connectivity } from '../analysis/connectivity.js';
import { buildUnits, GroupMatrix, labelGrouping, workloadGrouping } from '../analysis/matrix.js';
import { buildMap } from '../flows/map.js';
import type { Principal } from './auth.js';
import type { ControlPlane, BreakGlassRow } from './control.js';
import { ApiError, badRequest, conflict, forbidden, intParam, notFound, timeParam, type Reply, type Request, type Route } from './http.js';
import { buildOpenApi } from './openapi.js';
import { apiDiagnostic, checkAppOwnerRuleset, checkSection, checkShape, compileDoc, ifMatchRevision, PreconditionFailed, SECTION_NAMES, type PolicyDoc } from './policy.js';
import { acceptsGzip, bareEtag, isCurrent } from './rulesets.js';
import { FLOW_WIRE_TYPE, type WireBatch } from '../flows/wire.js';
import {
  AgentCreateBody,
  BreakGlassBody,
  DocumentSchema,
  EventsBody,
  FLOW_FORMATS,
  FlowsBody,
  HeartbeatBody,
  flowsBinaryBatch,
  flowsBodyBatch,
  MapQueryBody,
  ProvisionBody,
  ReachQueryBody,
  RegisterBody,
  RollbackBody,
  RulesetBody,
  SinkBody,
  TestQueryBody,
  TokenBody,
} from './schemas.js';
import { violationsReport } from './telemetry.js';
import { weeklyMarkdown, weeklyReport } from './report.js';

/** What a handler gets besides the request. */
export interface Ctx {
  readonly cp: ControlPlane;
  readonly who: Principal;
  /** Set for the OpenAPI document: the routes themselves. */
  readonly routes: readonly Route<Ctx>[];
}

const json = (value: unknown, status = 200, headers?: Record<string, string>): Reply => ({ status, json: value, ...(headers ? { headers } : {}) });

function sectionName(s: string): SectionName {
  if (!(SECTION_NAMES as string[]).includes(s)) throw notFound(`no section \`${s}\`; sections are ${SECTION_NAMES.join(', ')}`);
  return s as SectionName;
}

/** A draft summary after a change: its revision and what the loader says of it. */
function draftAnswer(doc: PolicyDoc, revision: number): Reply {
  const c = compileDoc(doc, { now: Date.now() });
  const items = c.diagnostics.items.map(apiDiagnostic);
  return json({ revision, errors: c.diagnostics.errorCount, warnings: c.diagnostics.warningCount, diagnostics: items.slice(0, 200) }, 200, { etag: `"${revision}"` });
}

/** Replaces the draft with `next(doc)`, checking `If-Match`, and audits it. */
function editDraft(req: Request, ctx: Ctx, action: string, target: string, next: (doc: PolicyDoc) => PolicyDoc, detail: unknown): Reply {
  const ifMatch = ifMatchRevision(req.headers['if-match']);
  const { cp, who } = ctx;
  let revision: number;
  let doc: PolicyDoc;
  try {
    [revision, doc] = cp.tx(() => {
      const cur = cp.policy.draft();
      const d = next(cur.doc);
      const r = cp.policy.setDraft(d, who.name, ifMatch);
      cp.record(who, action, target, { revision: r, ...(detail as object) });
      return [r, d] as const;
    });
  } catch (e) {
    if (e instanceof PreconditionFailed) throw new ApiError(412, 'draft-changed', `the draft changed: it is at revision ${e.current}, not ${ifMatch}; read it again`, { revision: e.current });
    throw e;
  }
  return draftAnswer(doc, revision);
}

function rulesetsOf(doc: PolicyDoc): Record<string, unknown>[] {
  return Array.isArray(doc.rulesets) ? (doc.rulesets as Record<string, unknown>[]) : [];
}

/** Resolves an end of a test query: an address or a workload name of the active policy. */
function resolveEnd(text: string, ctx: Ctx, gen: ReturnType<ControlPlane['generation']>): Addr {
  const a = parseAddr(text);
  if (a !== null) return a;
  const i = gen.workloadIndex(text);
  if (i !== undefined) {
    const w = gen.compiled!.ir.workloads[i];
    if (w.addresses.length > 0) return w.addresses[0].addr;
  }
  throw badRequest(`\`${text}\` is neither an address nor a workload of the active version`);
}

function parseConnection(text: string): { proto: number; port: number } {
  const m = /^(\d+)(?::(\d+))?\/([a-z0-9]+)$/i.exec(text.trim());
  const proto = m ? (PROTOCOLS as Record<string, number>)[m[3].toLowerCase()] : undefined;
  if (!m || proto === undefined) throw badRequest(`invalid port \`${text}\`: write <port>/<protocol> such as 5432/tcp, or <type>[:<code>]/icmp`);
  const a = Number(m[1]);
  if (proto === PROTOCOLS.icmp || proto === PROTOCOLS.icmpv6) {
    const code = m[2] === undefined ? 0 : Number(m[2]);
    if (a > 255 || code > 255) throw badRequest(`invalid port \`${text}\`: ICMP type and code are 0 to 255`);
    return { proto, port: a * 256 + code };
  }
  if (m[2] !== undefined || a > 65535) throw badRequest(`invalid port \`${text}\`: ports are 0 to 65535`);
  return { proto, port: a };
}

function activeCompiled(ctx: Ctx) {
  const gen = ctx.cp.generation();
  if (!gen.compiled) throw new ApiError(409, 'no-active-version', 'there is no active version yet: provision the draft first');
  return { gen, compiled: gen.compiled };
}

function bgView(r: BreakGlassRow, now = Date.now()) {
  const state = r.ended_at !== null ? (r.end_reason === 'expired' ? 'expired' : 'ended') : r.expires_at <= now ? 'expired' : 'live';
  return {
    id: r.id,
    ...(JSON.parse(r.rule) as object),
    reason: r.reason,
    createdBy: r.created_by,
    createdAt: new Date(r.created_at).toISOString(),
    expiresAt: new Date(r.expires_at).toISOString(),
    state,
    ...(r.ended_at !== null ? { endedAt: new Date(r.ended_at).toISOString(), endedBy: r.ended_by } : {}),
  };
}

interface AgentRow {
  id: string;
  workload: string;
  token_id: string;
  created_at: number;
  created_by: string;
  revoked_at: number | null;
  hostname: string | null;
  addresses: string | null;
  labels: string | null;
  agent_version: string | null;
  registered_at: number | null;
  last_seen: number | null;
  applied_version: number | null;
  applied_etag: string | null;
  state: string;
  stats: string | null;
}

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

/** The whole route table. */
export const ROUTES: readonly Route<Ctx>[] = [
  {
    method: 'GET',
    path: '/api/v1/openapi.json',
    op: 'getOpenApi',
    auth: 'public',
    summary: 'the OpenAPI 3.1 document of this API',
    handler: (_req, ctx) => json(buildOpenApi(ctx.routes)),
  },
  {
    method: 'GET',
    path: '/api/v1/health',
    op: 'getHealth',
    auth: 'public',
    summary: 'liveness: the server answers (200) and knows its active version; `store` is `ok`, or why the flow store failed (policies are still served)',
    handler: (_req, ctx) => {
      const failure = ctx.cp.store.failure;
      return json({ ok: true, activeVersion: ctx.cp.policy.activeVersion(), store: failure ? failure.message : 'ok' });
    },
  },
  {
    method: 'GET',
    path: '/api/v1/whoami',
    op: 'whoAmI',
    auth: 'any',
    summary: "the caller's token: name, role, app or workload",
    handler: (_req, ctx) => json({ id: ctx.who.tokenId, name: ctx.who.name, role: ctx.who.role, ...(ctx.who.app ? { app: ctx.who.app } : {}), ...(ctx.who.workload ? { workload: ctx.who.workload } : {}) }),
  },
  // ---------------------------------------------------------------- tokens
  {
    method: 'GET',
    path: '/api/v1/tokens',
    op: 'listTokens',
    auth: 'admin',
    summary: 'the API tokens (not the agents), without secrets',
    handler: (_req, ctx) => json({ tokens: ctx.cp.tokens.list() }),
  },
  {
    method: 'POST',
    path: '/api/v1/tokens',
    op: 'createToken',
    auth: 'admin',
    summary: 'makes a token for a person or a tool; the token is shown once',
    body: TokenBody,
    handler: (req, ctx) => {
      const b = req.body as z.output<typeof TokenBody>;
      const t = ctx.cp.tx(() => {
        const t = ctx.cp.tokens.create({ name: b.name, role: b.role, app: b.app, by: ctx.who.name });
        ctx.cp.record(ctx.who, 'token.create', `token/${t.id}`, { name: b.name, role: b.role, ...(b.app ? { app: b.app } : {}) });
        return t;
      });
      return json({ id: t.id, token: t.token, name: b.name, role: b.role, ...(b.app ? { app: b.app } : {}) }, 201);
    },
  },
  {
    method: 'DELETE',
    path: '/api/v1/tokens/{id}',
    op: 'revokeToken',
    auth: 'admin',
    summary: 'revokes a token at once',
    handler: (req, ctx) => {
      const id = req.params.id;
      const row = ctx.cp.db.prepare('SELECT role, revoked_at FROM tokens WHERE id = ?').get(id) as { role: string; revoked_at: number | null } | undefined;
      if (!row || row.revoked_at !== null) throw notFound(`no live token \`${id}\``);
      if (row.role === 'agent') throw conflict('this is an agent token: revoke the agent with DELETE /api/v1/agents/{id}');
      if (row.role === 'admin') {
        const admins = ctx.cp.db.prepare("SELECT COUNT(*) AS n FROM tokens WHERE role = 'admin' AND revoked_at IS NULL").get() as { n: number };
        if (admins.n <= 1) throw conflict('this is the last admin token: make another admin token first');
      }
      ctx.cp.tx(() => {
        ctx.cp.tokens.revoke(id);
        ctx.cp.record(ctx.who, 'token.revoke', `token/${id}`, { role: row.role });
      });
      return json({ id, revoked: true });
    },
  },
  // ---------------------------------------------------------------- draft
  {
    method: 'GET',
    path: '/api/v1/draft',
    op: 'getDraft',
    auth: 'read',
    summary: 'the draft document and its revision (also the ETag)',
    handler: (_req, ctx) => {
      const d = ctx.cp.policy.draft();
      return json({ revision: d.revision, updatedAt: d.updatedAt, updatedBy: d.updatedBy, document: d.doc }, 200, { etag: `"${d.revision}"` });
    },
  },
  {
    method: 'PUT',
    path: '/api/v1/draft',
    op: 'putDraft',
    auth: 'draft',
    summary: 'replaces the whole draft (If-Match: the revision read); answers the loader diagnostics',
    body: DocumentSchema,
    handler: (req, ctx) => {
      const doc = checkShape(req.body);
      return editDraft(req, ctx, 'draft.replace', 'draft', () => doc, { sections: Object.keys(doc) });
    },
  },
  {
    method: 'GET',
    path: '/api/v1/draft/diagnostics',
    op: 'checkDraft',
    auth: 'read',
    summary: "the loader's diagnostics of the draft, as provisioning would see them",
    handler: (_req, ctx) => {
      const d = ctx.cp.policy.draft();
      const c = compileDoc(d.doc, { now: Date.now() });
      return json({ revision: d.revision, ok: !c.diagnostics.hasErrors(), errors: c.diagnostics.errorCount, warnings: c.diagnostics.warningCount, diagnostics: c.diagnostics.items.map(apiDiagnostic) });
    },
  },
  {
    method: 'GET',
    path: '/api/v1/draft/{section}',
    op: 'getDraftSection',
    auth: 'read',
    summary: 'one section of the draft (taxonomy, settings, workloads, iplists, services, modes, rulesets, overrides)',
    handler: (req, ctx) => {
      const name = sectionName(req.params.section);
      const d = ctx.cp.policy.draft();
      return json({ revision: d.revision, section: name, value: d.doc[name] ?? (SECTIONS[name].kind === 'list' ? [] : {}) }, 200, { etag: `"${d.revision}"` });
    },
  },
  {
    method: 'PUT',
    path: '/api/v1/draft/{section}',
    op: 'putDraftSection',
    auth: 'draft',
    summary: 'replaces one section of the draft (modes per app, env or workload are the `modes` section)',
    body: z.unknown(),
    handler: (req, ctx) => {
      const name = sectionName(req.params.section);
      checkSection(name, req.body);
      return editDraft(req, ctx, 'draft.section', `draft/${name}`, (doc) => ({ ...doc, [name]: req.body }), { section: name });
    },
  },
  {
    method: 'GET',
    path: '/api/v1/draft/rulesets/{name}',
    op: 'getDraftRuleset',
    auth: 'read',
    summary: 'one ruleset of the draft',
    handler: (req, ctx) => {
      const d = ctx.cp.policy.draft();
      const rs = rulesetsOf(d.doc).find((r) => r?.name === req.params.name);
      if (!rs) throw notFound(`no ruleset \`${req.params.name}\` in the draft`);
      return json({ revision: d.revision, ruleset: rs }, 200, { etag: `"${d.revision}"` });
    },
  },
  {
    method: 'PUT',
    path: '/api/v1/draft/rulesets/{name}',
    op: 'putDraftRuleset',
    auth: 'draft:ruleset',
    summary: "adds or replaces one ruleset (app owners: only rulesets scoped to their app, letting traffic only into it)",
    body: RulesetBody,
    handler: (req, ctx) => {
      const name = req.params.name;
      const body = req.body as Record<string, unknown>;
      if (body.name !== name) throw badRequest(`the ruleset's name \`${String(body.name)}\` is not the one in the path, \`${name}\``);
      const raw = req.json;
      return editDraft(
        req,
        ctx,
        'draft.ruleset',
        `draft/rulesets/${name}`,
        (doc) => {
          const list = rulesetsOf(doc);
          const at = list.findIndex((r) => r?.name === name);
          if (ctx.who.role === 'app-owner') {
            if (at >= 0) checkAppOwnerRuleset(list[at], ctx.who.app!, Array.isArray(doc.workloads) ? doc.workloads : []);
            checkAppOwnerRuleset(raw, ctx.who.app!, Array.isArray(doc.workloads) ? doc.workloads : []);
          }
          const next = [...list];
          if (at >= 0) next[at] = raw as Record<string, unknown>;
          else next.push(raw as Record<string, unknown>);
          return { ...doc, rulesets: next };
        },
        { ruleset: name },
      );
    },
  },
  {
    method: 'DELETE',
    path: '/api/v1/draft/rulesets/{name}',
    op: 'deleteDraftRuleset',
    auth: 'draft:ruleset',
    summary: 'removes one ruleset from the draft (app owners: only their own)',
    handler: (req, ctx) => {
      const name = req.params.name;
      return editDraft(
        req,
        ctx,
        'draft.ruleset.delete',
        `draft/rulesets/${name}`,
        (doc) => {
          const list = rulesetsOf(doc);
          const at = list.findIndex((r) => r?.name === name);
          if (at < 0) throw notFound(`no ruleset \`${name}\` in the draft`);
          if (ctx.who.role === 'app-owner') checkAppOwnerRuleset(list[at], ctx.who.app!, []);
          return { ...doc, rulesets: list.filter((_, i) => i !== at) };
        },
        { ruleset: name },
      );
    },
  },
  // ---------------------------------------------------------------- versions
  {
    method: 'GET',
    path: '/api/v1/versions',
    op: 'listVersions',
    auth: 'read',
    summary: 'every version, newest first; the newest is active',
    handler: (_req, ctx) => json({ active: ctx.cp.policy.activeVersion(), versions: ctx.cp.policy.list() }),
  },
  {
    method: 'POST',
    path: '/api/v1/versions',
    op: 'provision',
    auth: 'provision',
    summary: 'provisions the draft: checked by the loader (422 with the diagnostics, nothing changes), then the new active version',
    body: ProvisionBody,
    handler: (req, ctx) => {
      const b = req.body as z.output<typeof ProvisionBody>;
      const d = ctx.cp.policy.draft();
      if (b.revision !== undefined && b.revision !== d.revision) throw new ApiError(412, 'draft-changed', `the draft is at revision ${d.revision}, not ${b.revision}`, { revision: d.revision });
      const r = ctx.cp.provision(ctx.who, d.doc, { message: b.message, draftRevision: d.revision, action: 'version.provision' });
      return json({ version: r.version, digest: r.digest, warnings: r.warnings }, 201);
    },
  },
  {
    method: 'GET',
    path: '/api/v1/versions/{n}',
    op: 'getVersion',
    auth: 'read',
    summary: 'one version with its document',
    handler: (req, ctx) => {
      const n = Number(req.params.n);
      const v = Number.isInteger(n) ? ctx.cp.policy.get(n) : undefined;
      if (!v) throw notFound(`no version \`${req.params.n}\``);
      const { doc, ...info } = v;
      return json({ ...info, active: n === ctx.cp.policy.activeVersion(), document: doc });
    },
  },
  {
    method: 'POST',
    path: '/api/v1/versions/{n}/rollback',
    op: 'rollback',
    auth: 'rollback',
    summary: "makes a new active version with version n's content",
    body: RollbackBody,
    handler: (req, ctx) => {
      const n = Number(req.params.n);
      const v = Number.isInteger(n) ? ctx.cp.policy.get(n) : undefined;
      if (!v) throw notFound(`no version \`${req.params.n}\``);
      const b = (req.body ?? {}) as { message?: string };
      const r = ctx.cp.provision(ctx.who, v.doc, { message: b.message ?? `rollback to version ${n}`, rollbackOf: n, action: 'version.rollback' });
      return json({ version: r.version, digest: r.digest, rollbackOf: n, warnings: r.warnings }, 201);
    },
  },
  {
    method: 'GET',
    path: '/api/v1/workloads',
    op: 'listWorkloads',
    auth: 'read',
    summary: 'the workloads of the active version with their effective mode and agents',
    handler: (_req, ctx) => {
      const gen = ctx.cp.generation();
      if (!gen.compiled) return json({ version: 0, workloads: [] });
      const ir = gen.compiled.ir;
      const agents = new Map<string, number>();
      for (const r of ctx.cp.db.prepare('SELECT workload, COUNT(*) AS n FROM agents WHERE revoked_at IS NULL GROUP BY workload').all() as { workload: string; n: number }[]) agents.set(r.workload, r.n);
      return json({
        version: gen.version,
        workloads: ir.workloads.map((w, i) => ({
          name: w.name,
          kind: w.kind,
          addresses: w.addresses.map(formatPrefix),
          labels: w.labels,
          managed: w.managed,
          mode: ir.classes[ir.classOf[i]].mode ?? null,
          agents: agents.get(w.name) ?? 0,
        })),
      });
    },
  },
  // ---------------------------------------------------------------- agents (admin)
  {
    method: 'GET',
    path: '/api/v1/agents',
    op: 'listAgents',
    auth: 'read',
    summary: 'agents with their last heartbeat, applied version, state, and whether they hold their current ruleset',
    handler: (_req, ctx) => {
      const gen = ctx.cp.generation();
      const rows = ctx.cp.db.prepare('SELECT * FROM agents ORDER BY created_at, id').all() as AgentRow[];
      return json({
        agents: rows.map((r) => ({
          id: r.id,
          workload: r.workload,
          state: r.revoked_at !== null ? 'revoked' : r.state,
          hostname: r.hostname,
          addresses: r.addresses ? JSON.parse(r.addresses) : [],
          labels: r.labels ? JSON.parse(r.labels) : {},
          agentVersion: r.agent_version,
          createdAt: iso(r.created_at),
          createdBy: r.created_by,
          registeredAt: iso(r.registered_at),
          lastSeen: iso(r.last_seen),
          appliedVersion: r.applied_version,
          appliedEtag: r.applied_etag,
          current: r.revoked_at === null && isCurrent(gen.entry(r.workload), r.applied_etag),
          ...(r.stats ? { stats: JSON.parse(r.stats) } : {}),
          ...(r.revoked_at !== null ? { revokedAt: iso(r.revoked_at) } : {}),
        })),
      });
    },
  },
  {
    method: 'POST',
    path: '/api/v1/agents',
    op: 'createAgent',
    auth: 'admin',
    summary: "makes an agent credential bound to one workload; the token is shown once",
    body: AgentCreateBody,
    handler: (req, ctx) => {
      const b = req.body as z.output<typeof AgentCreateBody>;
      const t = ctx.cp.tx(() => {
        const t = ctx.cp.tokens.create({ name: b.name ?? `agent ${b.workload}`, role: 'agent', workload: b.workload, by: ctx.who.name });
        ctx.cp.db.prepare('INSERT INTO agents (id, workload, token_id, created_at, created_by) VALUES (?, ?, ?, ?, ?)').run(t.id, b.workload, t.id, Date.now(), ctx.who.name);
        ctx.cp.record(ctx.who, 'agent.create', `agent/${t.id}`, { workload: b.workload });
        return t;
      });
      const inPolicy = ctx.cp.generation().workloadIndex(b.workload) !== undefined;
      return json({ id: t.id, token: t.token, workload: b.workload, inPolicy }, 201);
    },
  },
  {
    method: 'DELETE',
    path: '/api/v1/agents/{id}',
    op: 'revokeAgent',
    auth: 'admin',
    summary: 'revokes an agent: its token stops working at once and its waiting poll is closed',
    handler: (req, ctx) => {
      const id = req.params.id;
      const row = ctx.cp.db.prepare('SELECT * FROM agents WHERE id = ?').get(id) as AgentRow | undefined;
      if (!row || row.revoked_at !== null) throw notFound(`no live agent \`${id}\``);
      ctx.cp.tx(() => {
        ctx.cp.db.prepare('UPDATE agents SET revoked_at = ? WHERE id = ?').run(Date.now(), id);
        ctx.cp.tokens.revoke(row.token_id);
        ctx.cp.record(ctx.who, 'agent.revoke', `agent/${id}`, { workload: row.workload });
      });
      ctx.cp.agents.closeAgent(id);
      return json({ id, revoked: true });
    },
  },
  // ---------------------------------------------------------------- the agent protocol
  {
    method: 'POST',
    path: '/api/v1/agent/register',
    op: 'agentRegister',
    auth: 'agent',
    summary: 'the agent says who it is: hostname, addresses, labels, version',
    body: RegisterBody,
    handler: (req, ctx) => {
      const b = req.body as z.output<typeof RegisterBody>;
      const id = ctx.who.tokenId;
      const workload = ctx.who.workload!;
      const gen = ctx.cp.generation();
      ctx.cp.tx(() => {
        ctx.cp.db
          .prepare("UPDATE agents SET hostname = ?, addresses = ?, labels = ?, agent_version = ?, registered_at = ?, last_seen = ?, state = 'registered' WHERE id = ?")
          .run(b.hostname, JSON.stringify(b.addresses), JSON.stringify(b.labels), b.agentVersion, Date.now(), Date.now(), id);
        ctx.cp.record(ctx.who, 'agent.register', `agent/${id}`, { workload, hostname: b.hostname, addresses: b.addresses, agentVersion: b.agentVersion });
      });
      const i = gen.workloadIndex(workload);
      const policyAddresses = i === undefined ? [] : gen.compiled!.ir.workloads[i].addresses.map(formatPrefix);
      return json({ workload, pollSeconds: ctx.cp.o.pollSeconds, inPolicy: i !== undefined, policyAddresses, flowFormats: FLOW_FORMATS });
    },
  },
  {
    method: 'GET',
    path: '/api/v1/agent/policy',
    op: 'agentPolicy',
    auth: 'agent',
    summary: "the agent's compiled ruleset (`backend=nftables`, the default, or `iptables`); with If-None-Match, held until it changes or `wait` seconds pass (304)",
    handler: (req, ctx) => {
      const wait = intParam(req.query, 'wait', 0, 60) ?? 0;
      const backend = req.query.get('backend') ?? 'nftables';
      if (backend !== 'nftables' && backend !== 'iptables') throw badRequest(`backend must be nftables or iptables, not \`${backend.slice(0, 40)}\``);
      ctx.cp.generation(); // expire what is due first
      ctx.cp.agents.handle({ workload: ctx.who.workload!, agentId: ctx.who.tokenId, etag: bareEtag(req.headers['if-none-match']), waitMs: wait * 1000, res: req.res, gzip: acceptsGzip(req.headers['accept-encoding']), backend });
      return { raw: true };
    },
  },
  {
    method: 'POST',
    path: '/api/v1/agent/flows',
    op: 'agentFlows',
    auth: 'agent',
    summary: `flow records of the agent's own workload, as \`records\` or as \`columns\`, or binary (${FLOW_WIRE_TYPE}); 403 for the whole batch if one is not; 200 once stored`,
    body: FlowsBody,
    parse: flowsBodyBatch,
    binary: { type: FLOW_WIRE_TYPE, parse: flowsBinaryBatch },
    handler: async (req, ctx) => {
      const b = req.body as WireBatch;
      const gen = ctx.cp.generation();
      const workload = ctx.who.workload!;
      const i = gen.workloadIndex(workload);
      if (i === undefined) throw forbidden(`workload \`${workload}\` is not in the active version: its flows cannot be checked`);
      const app = gen.compiled!.ir.workloads[i].labels.app ?? 'unlabeled';
      const accepted = await ctx.cp.ingest.ingest(b, { workload, app, addresses: ctx.cp.addresses(gen, workload) });
      return json({ accepted });
    },
  },
  {
    method: 'POST',
    path: '/api/v1/agent/events',
    op: 'agentEvents',
    auth: 'agent',
    summary: 'what the agent did: applied, apply-failed, drift-repaired, started',
    body: EventsBody,
    handler: (req, ctx) => {
      const b = req.body as z.output<typeof EventsBody>;
      const id = ctx.who.tokenId;
      const now = Date.now();
      const ins = ctx.cp.db.prepare('INSERT INTO agent_events (agent_id, at, kind, version, detail) VALUES (?, ?, ?, ?, ?)');
      ctx.cp.tx(() => {
        for (const e of b.events) {
          const at = typeof e.at === 'number' ? e.at : Date.parse(e.at);
          ins.run(id, Number.isFinite(at) ? at : now, e.kind, e.version ?? null, e.detail === undefined ? null : JSON.stringify(e.detail));
          if (e.kind === 'applied') ctx.cp.db.prepare("UPDATE agents SET state = 'enforcing', applied_version = COALESCE(?, applied_version), applied_etag = COALESCE(?, applied_etag), last_seen = ? WHERE id = ?").run(e.version ?? null, e.etag ?? null, now, id);
          else if (e.kind === 'apply-failed') ctx.cp.db.prepare("UPDATE agents SET state = 'apply-failed', last_seen = ? WHERE id = ?").run(now, id);
          else ctx.cp.db.prepare('UPDATE agents SET last_seen = ? WHERE id = ?').run(now, id);
        }
        ctx.cp.record(ctx.who, 'agent.events', `agent/${id}`, { workload: ctx.who.workload, events: b.events.map((e) => ({ kind: e.kind, version: e.version })) });
      });
      for (const e of b.events) {
        if (e.kind === 'apply-failed' || e.kind === 'drift-repaired') {
          ctx.cp.alert({ kind: `agent.${e.kind}`, severity: e.kind === 'apply-failed' ? 3 : 5, at: now, message: `agent ${id} on ${ctx.who.workload}: ${e.kind}${typeof e.detail === 'string' ? `: ${e.detail}` : ''}`, fields: { agent: id, workload: ctx.who.workload! } });
        }
      }
      return json({ accepted: b.events.length });
    },
  },
  {
    method: 'POST',
    path: '/api/v1/agent/heartbeat',
    op: 'agentHeartbeat',
    auth: 'agent',
    summary: 'the agent is alive: the version and ETag it enforces, and its counters',
    body: HeartbeatBody,
    handler: (req, ctx) => {
      const b = req.body as z.output<typeof HeartbeatBody>;
      ctx.cp.db
        .prepare('UPDATE agents SET last_seen = ?, applied_version = COALESCE(?, applied_version), applied_etag = COALESCE(?, applied_etag), stats = COALESCE(?, stats) WHERE id = ?')
        .run(Date.now(), b.version ?? null, b.etag === undefined ? null : bareEtag(b.etag) ?? null, b.stats === undefined ? null : JSON.stringify(b.stats), ctx.who.tokenId);
      const gen = ctx.cp.generation();
      return json({ ok: true, etag: gen.entry(ctx.who.workload!).etag, version: gen.version });
    },
  },
  // ---------------------------------------------------------------- break-glass
  {
    method: 'GET',
    path: '/api/v1/breakglass',
    op: 'listBreakglass',
    auth: 'read',
    summary: 'break-glass overrides, live and past (newest first)',
    handler: (req, ctx) => {
      const now = Date.now();
      ctx.cp.generation(now);
      const limit = intParam(req.query, 'limit', 1, 1000) ?? 100;
      const rows = ctx.cp.db.prepare('SELECT * FROM breakglass ORDER BY created_at DESC, id LIMIT ?').all(limit) as BreakGlassRow[];
      return json({ breakglass: rows.map((r) => bgView(r, now)) });
    },
  },
  {
    method: 'POST',
    path: '/api/v1/breakglass',
    op: 'createBreakglass',
    auth: 'breakglass',
    summary: 'an override rule that applies at once to the active version and expires by itself',
    body: BreakGlassBody,
    handler: (req, ctx) => {
      const b = req.body as z.output<typeof BreakGlassBody>;
      const raw = req.json as Record<string, unknown>;
      const row = ctx.cp.createBreakglass(ctx.who, { from: raw.from, to: raw.to, services: raw.services, action: b.action, reason: b.reason, ttlSeconds: b.ttlSeconds });
      return json(bgView(row), 201);
    },
  },
  {
    method: 'DELETE',
    path: '/api/v1/breakglass/{id}',
    op: 'endBreakglass',
    auth: 'breakglass',
    summary: 'ends a break-glass override early',
    handler: (req, ctx) => json(bgView(ctx.cp.endBreakglass(ctx.who, req.params.id))),
  },
  // ---------------------------------------------------------------- violations, flows, reports
  {
    method: 'GET',
    path: '/api/v1/violations',
    op: 'listViolations',
    auth: 'read',
    summary: 'blocked and potentially blocked flows reported by agents, per app and rule (since, until, app)',
    handler: (req, ctx) => {
      const since = timeParam(req.query, 'since');
      const until = timeParam(req.query, 'until');
      const app = req.query.get('app') ?? undefined;
      return json({ since: since === undefined ? null : new Date(since).toISOString(), until: until === undefined ? null : new Date(until).toISOString(), violations: violationsReport(ctx.cp.db, { since, until, app }) });
    },
  },
  {
    method: 'GET',
    path: '/api/v1/flows',
    op: 'listFlows',
    auth: 'read',
    summary: 'raw flow records from the flow store, in time order (since, until, limit ≤ 10000)',
    handler: async (req, ctx) => {
      const since = timeParam(req.query, 'since');
      const until = timeParam(req.query, 'until');
      const limit = intParam(req.query, 'limit', 1, 10000) ?? 1000;
      const flows = await ctx.cp.store.flows({ since, until, limit });
      return json({ flows: flows.map((f) => ({ ...f, src: formatAddr(f.src), dst: formatAddr(f.dst) })) });
    },
  },
  {
    method: 'GET',
    path: '/api/v1/reports/weekly',
    op: 'weeklyReport',
    auth: 'read',
    summary: 'the weekly review: changes, break-glass, violations, agents, audit (format=json|markdown, until)',
    handler: async (req, ctx) => {
      const format = req.query.get('format') ?? 'json';
      if (format !== 'json' && format !== 'markdown') throw badRequest('`format` is `json` or `markdown`');
      const r = await weeklyReport(ctx.cp, timeParam(req.query, 'until') ?? Date.now());
      return format === 'json' ? json(r) : { text: weeklyMarkdown(r), contentType: 'text/markdown; charset=utf-8' };
    },
  },
  // ---------------------------------------------------------------- audit
  {
    method: 'GET',
    path: '/api/v1/audit',
    op: 'listAudit',
    auth: 'admin',
    summary: 'audit entries, newest first (since, until, actor, action, before, limit ≤ 1000)',
    handler: (req, ctx) =>
      json({
        entries: ctx.cp.audit.list({
          since: timeParam(req.query, 'since'),
          until: timeParam(req.query, 'until'),
          actor: req.query.get('actor') ?? undefined,
          action: req.query.get('action') ?? undefined,
          before: intParam(req.query, 'before', 1, Number.MAX_SAFE_INTEGER),
          limit: intParam(req.query, 'limit', 1, 1000) ?? 100,
        }),
      }),
  },
  {
    method: 'GET',
    path: '/api/v1/audit/verify',
    op: 'verifyAudit',
    auth: 'admin',
    summary: 'recomputes the hash chain: { ok, entries, brokenAt?, reason?, head }',
    handler: (_req, ctx) => json(ctx.cp.audit.verify()),
  },
  // ---------------------------------------------------------------- queries
  {
    method: 'POST',
    path: '/api/v1/query/test',
    op: 'queryTest',
    auth: 'read',
    summary: 'decides one flow against the active version (with break-glass) and explains the verdict',
    body: TestQueryBody,
    handler: (req, ctx) => {
      const b = req.body as z.output<typeof TestQueryBody>;
      const { gen } = activeCompiled(ctx);
      const d = ctx.cp.evaluator(gen).decide({ src: resolveEnd(b.from, ctx, gen), dst: resolveEnd(b.to, ctx, gen), ...parseConnection(b.port) });
      return json({ version: gen.version, ...d });
    },
  },
  {
    method: 'POST',
    path: '/api/v1/query/reach',
    op: 'queryReach',
    auth: 'read',
    summary: 'the reachability matrix of the active version by label groups or workloads (as `bulkhead reach`)',
    body: ReachQueryBody,
    handler: (req, ctx) => {
      const b = req.body as z.output<typeof ReachQueryBody>;
      const { gen, compiled } = activeCompiled(ctx);
      const sel = (s: string | undefined, what: string) => {
        if (s === undefined) return undefined;
        const r = parseSelector(s);
        if (!r.ok) throw badRequest(`invalid ${what} selector \`${s}\`: ${r.error.message}`);
        return compiled.ir.selectClasses(r.selector);
      };
      let ports;
      if (b.port !== undefined) {
        for (const part of b.port.split(',')) {
          if (part.trim() === '') continue;
          const r = parsePortText(part);
          if (!r.ok) throw badRequest(`invalid port \`${part.trim()}\`: ${r.message}`);
          ports = ports ? ports.union(r.conns) : r.conns;
        }
      }
      const by = b.by?.trim();
      if (by !== undefined && by !== 'workload' && !/^[A-Za-z0-9_./-]+(,[A-Za-z0-9_./-]+)*$/.test(by)) throw badRequest('`by` is `workload` or label keys such as `app,env`');
      const grouping = by === 'workload' ? workloadGrouping : labelGrouping(by ? by.split(',') : ['role', 'app', 'env']);
      const conn = new Connectivity(compiled.ir, { ports, deployed: b.asDeployed === true });
      const units = buildUnits(conn.places, grouping);
      const m = new GroupMatrix(conn, units, { fromClasses: sel(b.from, 'from'), toClasses: sel(b.to, 'to') });
      const pairs = [];
      for (const cell of m.cells()) {
        const r = conn.results.get(cell.result);
        pairs.push({ from: units.groups[cell.from], to: units.groups[cell.to], ports: r.conns.toString(), rules: r.rules.map((k) => compiled.ir.rules[k].rule.id), ...(r.open ? { notEnforced: true } : {}) });
      }
      return json({ version: gen.version, by: grouping.name, mode: b.asDeployed ? 'deployed' : 'enforced', ports: conn.ports.toString(), pairs });
    },
  },
  {
    method: 'POST',
    path: '/api/v1/query/map',
    op: 'queryMap',
    auth: 'read',
    summary: 'the dependency map of the stored flows, judged against the active version (as `bulkhead map --format json`)',
    body: MapQueryBody,
    handler: async (req, ctx) => {
      const b = req.body as z.output<typeof MapQueryBody>;
      const { gen, compiled } = activeCompiled(ctx);
      const t = (v: number | string | undefined, what: string) => {
        if (v === undefined) return undefined;
        const n = typeof v === 'number' ? v : Date.parse(v);
        if (!Number.isFinite(n)) throw badRequest(`invalid \`${what}\` time`);
        return n;
      };
      const edges = await ctx.cp.store.edges({ since: t(b.since, 'since'), until: t(b.until, 'until') });
      const by = b.by?.trim() === 'workload' || b.by === undefined ? 'workload' : b.by.split(',').map((k) => k.trim());
      const map = buildMap(edges, compiled.ir, { by, minFlows: b.minFlows });
      return json({ version: gen.version, ...map });
    },
  },
  // ---------------------------------------------------------------- alert sinks
  {
    method: 'GET',
    path: '/api/v1/alerts/sinks',
    op: 'listSinks',
    auth: 'admin',
    summary: 'the alert sinks, with their counters (secrets are not shown)',
    handler: (_req, ctx) => {
      const rows = ctx.cp.db.prepare('SELECT id, kind, config, created_at, created_by FROM sinks ORDER BY created_at').all() as { id: string; kind: string; config: string; created_at: number; created_by: string }[];
      return json({
        sinks: rows.map((r) => {
          const c = JSON.parse(r.config) as Record<string, unknown>;
          delete c.secret;
          return { id: r.id, kind: r.kind, ...c, createdAt: iso(r.created_at), createdBy: r.created_by, stats: ctx.cp.sinks.get(r.id)?.stats ?? null };
        }),
      });
    },
  },
  {
    method: 'POST',
    path: '/api/v1/alerts/sinks',
    op: 'createSink',
    auth: 'admin',
    summary: 'adds a webhook (POST JSON, retried with backoff) or syslog (RFC 5424 over UDP) sink',
    body: SinkBody,
    handler: (req, ctx) => {
      const b = req.body as z.output<typeof SinkBody>;
      const id = 'sink-' + randomBytes(4).toString('hex');
      const { kind, ...config } = b;
      ctx.cp.tx(() => {
        ctx.cp.db.prepare('INSERT INTO sinks (id, kind, config, created_at, created_by) VALUES (?, ?, ?, ?, ?)').run(id, kind, JSON.stringify(config), Date.now(), ctx.who.name);
        ctx.cp.record(ctx.who, 'sink.create', `sink/${id}`, { kind, ...(kind === 'webhook' ? { url: b.url } : { host: b.host, port: b.port }) });
      });
      ctx.cp.openSink(id, kind, config);
      return json({ id, kind }, 201);
    },
  },
  {
    method: 'DELETE',
    path: '/api/v1/alerts/sinks/{id}',
    op: 'deleteSink',
    auth: 'admin',
    summary: 'removes an alert sink',
    handler: (req, ctx) => {
      const id = req.params.id;
      const r = ctx.cp.tx(() => {
        const r = ctx.cp.db.prepare('DELETE FROM sinks WHERE id = ?').run(id);
        if (r.changes > 0) ctx.cp.record(ctx.who, 'sink.delete', `sink/${id}`);
        return r;
      });
      if (r.changes === 0) throw notFound(`no sink \`${id}\``);
      ctx.cp.closeSink(id);
      return json({ id, deleted: true });
    },
  },
];
