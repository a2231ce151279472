/**
 * The host agent: registers its host with the control plane, long-polls for
 * its compiled ruleset and enforces it, reports flows, heartbeats, and keeps
 * its table as applied. See docs/AGENT.md.
 *
 * Four loops share one abort signal:
 * - policy: register (once, and again when the host's addresses change),
 *   then `GET /agent/policy?wait=` with the ETag seen last; a new ruleset is
 *   applied atomically and an `applied` or `apply-failed` event reported. A
 *   ruleset that fails stays "seen", so it is not fetched again until the
 *   server has another one; the old ruleset stays loaded.
 * - flows: every few seconds a conntrack snapshot and the NFLOG packets
 *   become flow records, written to the disk buffer, which is then sent
 *   oldest first.
 * - heartbeat: applied version, counters, buffer state; pending events.
 * - drift: the live table against what was applied; repaired and reported.
 *
 * The server being unreachable changes nothing on the host: the table is
 * never flushed for it, flows pile up on disk (bounded) and are replayed
 * when it answers again. Every retry waits with exponential backoff and
 * jitter.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatAddr, IpSet, parseAddr, parsePrefix, type Prefix } from '../netset/ip.js';
import { Backoff, sleep } from './backoff.js';
import { FlowBuffer, type BufferStats, type SendResult } from './buffer.js';
import { AgentClient, AgentHttpError, type AgentEvent, type AgentFlow, type PolicyDocument, type Registered } from './client.js';
import { ConntrackTracker, conntrackSnapshot } from './conntrack.js';
import { Enforcer, readApplied, type Applied, type Enforcement, type RuleCounter } from './enforce.js';
import { iptablesRemove } from '../adapters/iptables.js';
import { listTable, runNft } from '../adapters/nft.js';
import { IptablesEnforcer } from './enforce-iptables.js';
import { findTool, hostAddresses, runIn, targetProblem } from './host.js';
import type { AgentLogger } from './log.js';
import { DEFAULT_NFLOG_GROUP, DropAggregator, NflogReader } from './nflog.js';

/** The agent's version, sent when it registers. */
export const AGENT_VERSION = '0.1.0';

/** The checks that the server answers after an apply, each with this timeout. */
const CUT_OFF_ATTEMPTS = 3;
const CUT_OFF_TIMEOUT_MS = 3000;
/** When a ruleset that cut the host off is tried again. */
const CUT_OFF_RETRY_MS = 5 * 60_000;

/** Options of {@link Agent}. */
export interface AgentOptions {
  /** The control plane's base URL. */
  readonly server: string;
  /** The agent's own token (`bh_<id>_<secret>`). */
  readonly token: string;
  /** PEM certificates to trust for an HTTPS server. */
  readonly ca?: string;
  /** The state directory: last known good ruleset, flow buffer, lock. */
  readonly stateDir: string;
  /** Enforce in this network namespace (the lab, tests); undefined: the agent's own. */
  readonly netns?: string;
  /** The host name registered. */
  readonly hostname: string;
  /** Labels registered. */
  readonly labels?: Readonly<Record<string, string>>;
  /** How long one long poll waits, seconds (default: what the server says when registering, else 30; at most 60). */
  readonly waitSeconds?: number;
  /** Seconds between heartbeats (default 30). */
  readonly heartbeatSeconds?: number;
  /** Seconds between flow snapshots and sends (default 10). */
  readonly flowSeconds?: number;
  /** Seconds between drift checks (default 30). */
  readonly driftSeconds?: number;
  /** The disk buffer's cap, bytes (default 64 MiB). */
  readonly bufferMaxBytes?: number;
  /** The longest wait between retries, seconds (default 60). */
  readonly retryMaxSeconds?: number;
  /** NFLOG group for blocked packets (default 6268); false: do not route logs to NFLOG. */
  readonly nflogGroup?: number | false;
  /** Read connection tracking for flows (default true). */
  readonly conntrack?: boolean;
  /** Turn on conntrack byte and packet accounting in the managed namespace (`nf_conntrack_acct`; default false). */
  readonly conntrackAcct?: boolean;
  /** Where events are logged. */
  readonly logger: AgentLogger;
  /** Numbers in [0, 1) for the backoff's jitter (tests). */
  readonly random?: () => number;
  /**
   * After each apply, check that the server still answers, and go back to
   * the ruleset before if it does not (default: on, unless `netns` is set: an
   * agent managing another namespace talks from outside it).
   */
  readonly verifyControlPlane?: boolean;
  /** What to enforce with (default `auto`: nftables where `nft` is installed, else iptables + ipset). */
  readonly backend?: 'auto' | 'nftables' | 'iptables';
}

/**
 * The backend to enforce with: as asked, or with `auto` nftables where `nft`
 * is installed, else iptables + ipset. Throws when the tools are missing.
 */
export function chooseBackend(asked: 'auto' | 'nftables' | 'iptables', has: (tool: string) => boolean = (t) => findTool(t) !== undefined): 'nftables' | 'iptables' {
  const iptablesTools = ['ipset', 'iptables-restore', 'ip6tables-restore', 'iptables-save', 'ip6tables-save'];
  const nftOk = has('nft');
  const missing = iptablesTools.filter((t) => !has(t));
  if (asked === 'nftables' || (asked === 'auto' && nftOk)) {
    if (!nftOk) throw new Error('`nft` not found: apt-get install nftables');
    return 'nftables';
  }
  if (missing.length > 0) throw new Error(asked === 'auto' ? `neither nftables nor iptables + ipset is installed: apt-get install nftables (or iptables ipset)` : `${missing.map((t) => `\`${t}\``).join(', ')} not found: apt-get install iptables ipset`);
  return 'iptables';
}

/** The backend named in the `stale-backend` file, if any. */
function readStaleBackend(file: string): 'nftables' | 'iptables' | undefined {
  try {
    const s = readFileSync(file, 'utf8').trim();
    return s === 'nftables' || s === 'iptables' ? s : undefined;
  } catch {
    return undefined;
  }
}

/** What the agent is doing, for tests and `stats`. */
export interface AgentStatus {
  readonly workload: string | undefined;
  readonly applied: Applied | undefined;
  /** The last ETag received (applied or not). */
  readonly seenEtag: string | undefined;
  readonly reachable: boolean;
  readonly addresses: readonly string[];
  readonly flowsSent: number;
  readonly driftRepairs: number;
  readonly applyFailures: number;
  readonly buffer: BufferStats;
  readonly nflog: boolean;
}

const MAX_EVENTS = 1000;

/** Buffer segments (of up to 2,000 records) sent per flow interval at most. */
const MAX_SEGMENTS_PER_SEND = 100;

/** Canonical spelling of an address string (as bulkhead formats them), or the input. */
function canonical(a: string): string {
  const p = parseAddr(a);
  return p === null ? a : formatAddr(p);
}

/** The set of the server's `policyAddresses` (prefixes), or undefined when it did not say. */
function acceptSetOf(prefixes: readonly string[] | undefined): IpSet | undefined {
  if (prefixes === undefined) return undefined;
  const ps: Prefix[] = [];
  for (const p of prefixes) {
    const r = parsePrefix(p);
    if ('error' in r) return undefined;
    ps.push(r.prefix);
  }
  return IpSet.fromPrefixes(ps);
}

function inSet(set: IpSet, addr: string): boolean {
  const a = parseAddr(addr);
  return a !== null && set.has(a);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** One host agent. `start()` it, `stop()` it; `done` settles when it has stopped. */
export class Agent {
  private readonly client: AgentClient;
  // Made in start(), after the checks, so an agent that cannot run leaves no state directory behind.
  private enforcer!: Enforcement;
  /** What the host enforces with, decided at start. */
  private backend: 'nftables' | 'iptables' = 'nftables';
  private buffer!: FlowBuffer;
  private readonly tracker: ConntrackTracker;
  private readonly drops: DropAggregator;
  private readonly nflogReader: NflogReader | undefined;
  private readonly ctl = new AbortController();
  private readonly log: AgentLogger;
  private readonly events: AgentEvent[] = [];
  private readonly lockFile: string;
  private addresses: string[] = [];
  private local = new Set<string>();
  private registered: Registered | undefined;
  private seenEtag: string | undefined;
  /** A ruleset that cut the host off from the server: not applied again before `until`. */
  private cutOff?: { readonly etag: string; readonly until: number };
  /** The backend the host was enforced with before, when it differs: its rules go once this one has applied. */
  private staleBackend?: 'nftables' | 'iptables';

  /** Where {@link staleBackend} is kept across restarts. */
  private get staleFile(): string {
    return join(this.options.stateDir, 'stale-backend');
  }
  private reachable = true;
  private downSince = 0;
  private unauthorized = false;
  private flowsSent = 0;
  private driftRepairs = 0;
  private applyFailures = 0;
  private eventsDropped = 0;
  private acctOn = false;
  private conntrackBroken = false;
  private conntrackFailing = false;
  private sendingEvents: Promise<void> | undefined;
  private loops: Promise<unknown> | undefined;
  private startedAt = 0;
  private readonly nflogBackoff = new Backoff({ baseMs: 5000, maxMs: 600_000 });
  private nflogRetryAt = 0;
  /** The workload's addresses in the active version, as the server told at registration: flows must touch one. */
  private acceptSet: IpSet | undefined;
  private forbiddenStreak = 0;
  private registeredOnce = false;
  private registering: Promise<void> | undefined;
  /** Register again at the next heartbeat (the policy changed, the workload's addresses may have). */
  private refreshRegistration = false;

  constructor(private readonly options: AgentOptions) {
    this.log = options.logger;
    this.client = new AgentClient({ server: options.server, token: options.token, ca: options.ca });
    this.lockFile = join(options.stateDir, 'agent.pid');
    const group = options.nflogGroup === false ? undefined : (options.nflogGroup ?? DEFAULT_NFLOG_GROUP);
    const isLocal = (a: string) => this.local.has(a) || this.local.has(canonical(a));
    this.tracker = new ConntrackTracker({ isLocal });
    this.drops = new DropAggregator(isLocal);
    if (group !== undefined) {
      this.nflogReader = new NflogReader({
        target: { netns: options.netns },
        group,
        onPacket: (p, at) => this.drops.add(p, at),
        onProblem: (m) => this.log.log('warn', 'nflog', m),
      });
    }
  }

  /** Settles when the agent has stopped. */
  get done(): Promise<unknown> {
    return this.loops ?? Promise.resolve();
  }

  /** What the agent is doing. */
  status(): AgentStatus {
    if (!this.buffer) throw new Error('the agent has not started');
    return {
      workload: this.registered?.workload,
      applied: this.enforcer.applied,
      seenEtag: this.seenEtag,
      reachable: this.reachable,
      addresses: [...this.addresses],
      flowsSent: this.flowsSent,
      driftRepairs: this.driftRepairs,
      applyFailures: this.applyFailures,
      buffer: this.buffer.stats(),
      nflog: this.enforcer.nflog && (this.nflogReader?.running ?? false),
    };
  }

  /**
   * Starts: takes the state directory's lock, restores the last known good
   * ruleset if the table lost it, starts the NFLOG reader and the loops.
   * Throws when the agent cannot run (namespace missing, state directory in
   * use, nft missing).
   */
  async start(): Promise<void> {
    const problem = targetProblem({ netns: this.options.netns });
    if (problem) throw new Error(problem);
    this.backend = chooseBackend(this.options.backend ?? 'auto');
    mkdirSync(this.options.stateDir, { recursive: true, mode: 0o700 });
    this.lock();
    try {
      const group = this.options.nflogGroup === false ? undefined : (this.options.nflogGroup ?? DEFAULT_NFLOG_GROUP);
      const eo = { netns: this.options.netns, stateDir: this.options.stateDir, nflogGroup: group };
      // Another backend than last time: its rules stay in force (both filter: nothing is widened) until this one has
      // applied, then go. Kept on disk, so a restart in between (a reboot) still knows, and brings them back meanwhile.
      const before = readApplied(join(this.options.stateDir, 'applied.json'));
      const beforeBackend = before ? (before.backend ?? 'nftables') : undefined;
      const marked = readStaleBackend(this.staleFile);
      // Whichever of the two is not this backend: the file may name this one (switched back), applied.json the other.
      const stale = [beforeBackend, marked].find((b) => b !== undefined && b !== this.backend);
      if (stale !== undefined) {
        this.staleBackend = stale;
        writeFileSync(this.staleFile, `${stale}\n`, { mode: 0o600 });
        this.log.log('warn', 'backend-changed', `the host was enforced with ${stale} and is now with ${this.backend}: the ${stale} rules stay until the first ${this.backend} ruleset is applied, then go`, { was: stale, now: this.backend });
      } else if (marked !== undefined) rmSync(this.staleFile, { force: true });
      this.enforcer = this.backend === 'iptables' ? new IptablesEnforcer(eo) : new Enforcer(eo);
      this.buffer = new FlowBuffer({ dir: join(this.options.stateDir, 'flows'), maxBytes: this.options.bufferMaxBytes });
      this.startedAt = Date.now();
      const where = this.options.netns ? `network namespace ${this.options.netns}` : 'its own network namespace';
      this.log.log('info', 'starting', `agent ${AGENT_VERSION} for ${where}, enforcing with ${this.backend}, server ${this.options.server}, state ${this.options.stateDir}`, { version: AGENT_VERSION, netns: this.options.netns ?? null, server: this.options.server, backend: this.backend });
      try {
        await this.refreshAddresses();
      } catch (e) {
        this.log.log('warn', 'addresses', errorText(e));
      }
      let r = this.enforcer.restore();
      // This backend's rules are in force again: the old one's can go now, not only after the next new ruleset.
      if ((r.action === 'kept' || r.action === 'reloaded') && this.staleBackend) this.removeStaleBackend();
      let applied = this.enforcer.applied;
      if (r.action === 'none' && this.staleBackend) {
        // Nothing of this backend's yet: what the old one enforced comes back (after a reboot) until then.
        const old = this.staleBackend === 'iptables' ? new IptablesEnforcer(eo) : new Enforcer(eo);
        r = old.restore();
        applied = old.applied;
        if (r.action !== 'none') this.log.log('info', 'backend-changed', `the ${this.staleBackend} rules enforce until the first ${this.backend} ruleset is applied`);
      }
      let detail = `agent ${AGENT_VERSION} on ${this.options.hostname}`;
      if (r.action === 'none') this.log.log('info', 'no-policy', 'no ruleset applied yet: nothing is enforced until the server sends one');
      else if (r.action === 'kept') {
        this.log.log('info', 'restored', `the table still holds version ${applied!.version}: enforcing it`, { version: applied!.version });
        detail += `; enforcing version ${applied!.version}`;
      } else if (r.action === 'reloaded') {
        this.log.log('info', 'restored', `loaded the last known good ruleset again (version ${applied!.version})`, { version: applied!.version });
        detail += `; reloaded the last known good version ${applied!.version}`;
      } else {
        this.log.log('error', 'restore-failed', `cannot load the last known good ruleset: ${r.detail}`);
        detail += `; reloading the last known good ruleset failed: ${r.detail}`;
      }
      // This backend's ETag: during a switch there is none yet, so the server answers the first poll at once.
      this.seenEtag = this.enforcer.applied?.etag;
      this.queueEvent({ kind: 'started', at: Date.now(), version: this.enforcer.applied?.version, etag: this.enforcer.applied?.etag, detail });
      if (this.options.conntrackAcct) await this.enableAcct();
      if (this.nflogReader) {
        if (await this.nflogReader.start()) this.log.log('info', 'nflog', `reading blocked packets from NFLOG group ${this.options.nflogGroup === undefined ? DEFAULT_NFLOG_GROUP : this.options.nflogGroup}`);
        else this.nflogRetryAt = Date.now() + this.nflogBackoff.next();
      }
    } catch (e) {
      this.unlock();
      throw e;
    }
    this.loops = Promise.all([this.policyLoop(), this.flowLoop(), this.heartbeatLoop(), this.driftLoop()]).finally(() => this.unlock());
  }

  /**
   * Stops: ends the loops and the NFLOG reader, keeps what was collected in
   * the disk buffer, and leaves the table as it is (enforcement goes on).
   */
  async stop(): Promise<void> {
    if (this.ctl.signal.aborted) return this.done.then(() => undefined);
    this.ctl.abort();
    if (!this.loops) return;
    this.log.log('info', 'stopping', 'stopping; the ruleset stays loaded');
    this.nflogReader?.stop();
    await this.done;
    const rest = this.drops.drain();
    if (rest.length > 0) this.buffer.append(rest);
    this.client.close();
    this.log.log('info', 'stopped', `stopped; ${this.buffer.stats().records} flow records kept in the buffer`);
  }

  // ------------------------------------------------------------------ loops

  private get stopped(): boolean {
    return this.ctl.signal.aborted;
  }

  private backoff(): Backoff {
    return new Backoff({ baseMs: 500, maxMs: (this.options.retryMaxSeconds ?? 60) * 1000, random: this.options.random });
  }

  private async policyLoop(): Promise<void> {
    const backoff = this.backoff();
    while (!this.stopped) {
      try {
        if (!this.registered) await this.register();
        const wait = this.options.waitSeconds ?? this.registered?.pollSeconds ?? 30;
        if (this.cutOff && Date.now() >= this.cutOff.until) {
          // Time to try that ruleset again (the server may have been down, not cut off): ask for it afresh.
          this.cutOff = undefined;
          this.seenEtag = undefined;
        }
        const doc = await this.client.policy(this.seenEtag, wait, this.ctl.signal, this.backend);
        this.markReachable();
        backoff.reset();
        if (doc) await this.handlePolicy(doc);
      } catch (e) {
        if (this.stopped) break;
        const delay = Math.max(backoff.next(), e instanceof AgentHttpError ? (e.retryAfterMs ?? 0) : 0);
        this.markFailure(e, delay);
        await sleep(delay, this.ctl.signal);
      }
    }
  }

  private async flowLoop(): Promise<void> {
    const period = (this.options.flowSeconds ?? 10) * 1000;
    const backoff = this.backoff();
    let nextSend = 0;
    let backlog = 0;
    while (!this.stopped) {
      await sleep(period, this.ctl.signal);
      if (this.stopped) break;
      await this.collectFlows();
      if (Date.now() < nextSend) continue;
      if (!this.registered) {
        try {
          await this.register();
        } catch (e) {
          if (this.stopped) break;
          nextSend = Date.now() + backoff.next();
          this.markFailure(e, nextSend - Date.now());
          continue;
        }
      }
      // A workload the active version does not have: its flows cannot be checked yet, keep them.
      if (this.registered?.inPolicy === false) continue;
      const pending = this.buffer.stats().records;
      if (pending === 0) continue;
      try {
        // A long backlog goes over several intervals, so snapshots keep their pace.
        const sent = await this.buffer.drain((records) => this.sendFlows(records), this.ctl.signal, MAX_SEGMENTS_PER_SEND);
        this.flowsSent += sent;
        backoff.reset();
        if (backlog > 0 && this.buffer.stats().records === 0) {
          this.log.log('info', 'flows-replayed', `sent ${backlog} buffered flow records`, { records: backlog });
          backlog = 0;
        }
      } catch (e) {
        if (this.stopped) break;
        backlog = Math.max(backlog, this.buffer.stats().records);
        nextSend = Date.now() + Math.max(backoff.next(), e instanceof AgentHttpError ? (e.retryAfterMs ?? 0) : 0);
        this.markFailure(e, nextSend - Date.now());
      }
    }
  }

  private async heartbeatLoop(): Promise<void> {
    const period = (this.options.heartbeatSeconds ?? 30) * 1000;
    while (!this.stopped) {
      await sleep(period, this.ctl.signal);
      if (this.stopped) break;
      try {
        const before = this.addresses.join(',');
        await this.refreshAddresses();
        if (this.registered && this.addresses.join(',') !== before) {
          this.log.log('info', 'addresses-changed', `the host's addresses changed to ${this.addresses.join(', ') || 'none'}: registering again`);
          await this.register();
        } else if (this.registered && this.refreshRegistration) {
          this.refreshRegistration = false;
          await this.register();
        }
        if (!this.registered) continue;
        const a = this.enforcer.applied;
        await this.client.heartbeat({ version: a?.version, etag: a?.etag, stats: this.stats() }, this.ctl.signal);
        this.markReachable();
        await this.sendEvents();
      } catch (e) {
        if (this.stopped) break;
        this.markFailure(e, period);
      }
    }
  }

  private async driftLoop(): Promise<void> {
    const period = (this.options.driftSeconds ?? 30) * 1000;
    while (!this.stopped) {
      await sleep(period, this.ctl.signal);
      if (this.stopped) break;
      this.checkDrift();
    }
  }

  // ------------------------------------------------------------------ steps

  /** Checks the table once (also used by tests); true when it had drifted. */
  checkDrift(): boolean {
    let d;
    try {
      d = this.enforcer.checkDrift();
    } catch (e) {
      this.log.log('error', 'drift-check', `cannot check the table: ${errorText(e)}`);
      return false;
    }
    if (!d.drifted) return false;
    const version = this.enforcer.applied?.version;
    if (d.repaired) {
      this.driftRepairs++;
      this.log.log('warn', 'drift-repaired', `the table was changed by someone else (${d.detail}); applied version ${version} again`, { version, detail: d.detail });
      this.queueEvent({ kind: 'drift-repaired', at: Date.now(), version, etag: this.enforcer.applied?.etag, detail: d.detail });
      void this.sendEvents().catch(() => undefined);
    } else {
      this.log.log('error', 'drift-repair-failed', `the table was changed by someone else (${d.detail}) and loading version ${version} again failed: ${d.error}`, { version, detail: d.detail });
    }
    return true;
  }

  /** Registers (once at a time: the loops share one request). */
  private register(): Promise<void> {
    this.registering ??= this.doRegister().finally(() => {
      this.registering = undefined;
    });
    return this.registering;
  }

  private async doRegister(): Promise<void> {
    const r = await this.client.register({ hostname: this.options.hostname, addresses: this.addresses, labels: this.options.labels ?? {}, agentVersion: AGENT_VERSION }, this.ctl.signal);
    const again = this.registered !== undefined || this.registeredOnce;
    this.registered = r;
    this.registeredOnce = true;
    this.acceptSet = acceptSetOf(r.policyAddresses);
    this.unauthorized = false;
    this.markReachable();
    // Registering again after a policy change is routine: said only the first time, and when the workload is not in the policy.
    if (!again || r.inPolicy === false) {
      const inPolicy = r.inPolicy === false ? '; the active version does not have it yet: flows are kept until it does' : '';
      this.log.log('info', 'registered', `registered as workload ${r.workload} with ${this.addresses.length} address${this.addresses.length === 1 ? '' : 'es'}${inPolicy}`, { workload: r.workload, addresses: this.addresses, inPolicy: r.inPolicy ?? null });
    }
    await this.sendEvents().catch(() => undefined);
  }

  private async handlePolicy(doc: PolicyDocument): Promise<void> {
    this.seenEtag = doc.etag;
    // The server has a new ruleset: the workload may have entered the policy, or its addresses changed.
    if (this.registered?.inPolicy === false) await this.register().catch(() => undefined);
    else if (this.registered?.policyAddresses) this.refreshRegistration = true;
    const current = this.enforcer.applied;
    if (current?.etag === doc.etag) return;
    if (this.cutOff?.etag === doc.etag) return;
    const meta = { etag: doc.etag, version: doc.version, mode: doc.mode };
    const outcome =
      doc.format !== this.backend
        ? { ok: false as const, error: `unsupported ruleset format \`${doc.format}\` (this agent loads ${this.backend})`, rolledBack: false }
        : this.enforcer.apply(doc.ruleset, meta);
    if (outcome.ok && !(await this.controlPlaneAfterApply(doc, current))) return;
    if (outcome.ok && this.staleBackend) this.removeStaleBackend();
    if (outcome.ok) {
      const short = (e: string) => (e.length > 12 ? `${e.slice(0, 12)}…` : e);
      const was = current ? ` (was version ${current.version}, ${short(current.etag)})` : '';
      this.log.log('info', 'applied', `applied version ${doc.version} (${short(doc.etag)}), mode ${doc.mode || 'unknown'}, in ${outcome.ms} ms${was}${outcome.nflog ? '' : '; blocked packets are not logged to NFLOG'}`, { version: doc.version, etag: doc.etag, mode: doc.mode, ms: outcome.ms, changed: outcome.changed });
      this.queueEvent({ kind: 'applied', at: Date.now(), version: doc.version, etag: doc.etag, detail: `etag ${doc.etag}, ${outcome.ms} ms${outcome.changed ? '' : ', no change'}` });
      if (this.options.conntrackAcct && !this.acctOn) await this.enableAcct();
    } else {
      this.applyFailures++;
      const kept = current ? `version ${current.version} stays` : 'nothing was loaded';
      this.log.log('error', 'apply-failed', `version ${doc.version} was not applied, ${kept}: ${outcome.error}`, { version: doc.version, etag: doc.etag, rolledBack: outcome.rolledBack });
      this.queueEvent({ kind: 'apply-failed', at: Date.now(), version: doc.version, etag: doc.etag, detail: outcome.error.slice(0, 2000) });
    }
    await this.sendEvents().catch(() => undefined);
  }

  /** Takes out the rules of the backend the host was enforced with before, now that this one's are in force; tried again after the next apply if it fails. */
  private removeStaleBackend(): void {
    const stale = this.staleBackend!;
    const target = { netns: this.options.netns };
    let error: string | undefined;
    if (stale === 'nftables') {
      if (listTable({ ...target, table: 'bulkhead' }) !== undefined) {
        const r = runNft(['delete', 'table', 'inet', 'bulkhead'], undefined, target);
        if (r.code !== 0) error = r.stderr.trim();
      }
      if (!error) rmSync(join(this.options.stateDir, 'nft'), { recursive: true, force: true });
    } else {
      const r = iptablesRemove(target);
      if (!r.ok) error = `${r.step}: ${r.error}`;
      else rmSync(join(this.options.stateDir, 'iptables'), { recursive: true, force: true });
    }
    if (error) {
      this.log.log('error', 'backend-changed', `removing the ${stale} rules failed: ${error}; tried again after the next apply (or: bulkhead apply --remove --target ${stale})`, { was: stale });
      return;
    }
    this.staleBackend = undefined;
    rmSync(this.staleFile, { force: true });
    this.log.log('info', 'backend-changed', `removed the ${stale} rules: the host is enforced with ${this.backend} only`, { was: stale });
  }

  /**
   * After an apply: whether the server still answers. If it does not, the
   * ruleset before is loaded again, the failure reported, and this ruleset
   * not applied again for five minutes. The failsafe rules should make this
   * impossible; this catches what they cannot know (a server reached through
   * an address it was not told to advertise, a proxy, NAT).
   */
  private async controlPlaneAfterApply(doc: PolicyDocument, before: Applied | undefined): Promise<boolean> {
    if (!(this.options.verifyControlPlane ?? this.options.netns === undefined)) return true;
    for (let attempt = 0; attempt < CUT_OFF_ATTEMPTS; attempt++) {
      if (await this.client.answers(CUT_OFF_TIMEOUT_MS, this.ctl.signal)) return true;
      if (this.stopped) return true;
      await sleep(500, this.ctl.signal);
    }
    const r = this.enforcer.revert();
    const back = r.ok ? (r.applied ? `version ${r.applied.version} is loaded again` : 'the table is removed again, as before') : `and going back failed: ${r.error}`;
    const detail = `the server did not answer after version ${doc.version} (${doc.etag}) was applied: ${back}; the ruleset may not let this host reach the control plane (check the server's --advertise addresses)`;
    this.applyFailures++;
    this.cutOff = { etag: doc.etag, until: Date.now() + CUT_OFF_RETRY_MS };
    this.log.log('error', 'cut-off', detail, { version: doc.version, etag: doc.etag, was: before?.etag, reverted: r.ok });
    this.queueEvent({ kind: 'apply-failed', at: Date.now(), version: doc.version, etag: doc.etag, detail });
    await this.sendEvents().catch(() => undefined);
    return false;
  }

  private async collectFlows(): Promise<void> {
    const records: AgentFlow[] = [];
    if (this.nflogReader && !this.nflogReader.running && Date.now() >= this.nflogRetryAt) {
      // The reader died or could not start: try again, less and less often.
      this.nflogRetryAt = Date.now() + this.nflogBackoff.next();
      if (await this.nflogReader.start()) {
        this.nflogBackoff.reset();
        this.log.log('info', 'nflog', 'the NFLOG reader runs again');
      }
    }
    if (this.options.conntrack !== false && !this.conntrackBroken) {
      try {
        records.push(...this.tracker.snapshot(await conntrackSnapshot({ netns: this.options.netns }), Date.now()));
        if (this.conntrackFailing) this.log.log('info', 'conntrack', 'conntrack snapshots work again');
        this.conntrackFailing = false;
      } catch (e) {
        this.conntrackBroken = !findTool('conntrack');
        // Said once, not every interval.
        if (!this.conntrackFailing) this.log.log('warn', 'conntrack', `${errorText(e)}${this.conntrackBroken ? ' (conntrack is not installed: apt-get install conntrack; flows come from NFLOG only)' : ''}`);
        this.conntrackFailing = true;
      }
    }
    records.push(...this.drops.drain());
    if (records.length === 0) return;
    const dropped = this.buffer.append(records);
    if (dropped > 0) this.log.log('warn', 'buffer-full', `the flow buffer is full: dropped the ${dropped} oldest records (${this.buffer.stats().dropped} so far)`, { dropped });
  }

  private async sendFlows(records: AgentFlow[]): Promise<SendResult> {
    // Records the server will not take (none of the workload's addresses in the policy) are left out, counted.
    const accept = this.acceptSet;
    const ok = accept ? records.filter((r) => inSet(accept, r.src) || inSet(accept, r.dst)) : records;
    const refused = records.length - ok.length;
    if (ok.length === 0) return { stored: 0, refused };
    try {
      await this.client.flows(ok, this.ctl.signal);
      this.markReachable();
      this.forbiddenStreak = 0;
      return { stored: ok.length, refused };
    } catch (e) {
      if (!(e instanceof AgentHttpError) || e.transient || e.status === 401 || e.status === 0) throw e;
      if (e.status === 403 && ++this.forbiddenStreak < 5) {
        // Perhaps the policy changed the workload's addresses, or no longer has it: ask again before giving up on the batch.
        this.registered = undefined;
        throw e;
      }
      // A batch the server refuses as such (a bad record, an address not ours) would block the queue for ever.
      this.forbiddenStreak = 0;
      this.log.log('warn', 'flows-refused', `the server refused ${ok.length} flow records: ${e.message}`, { records: ok.length, status: e.status });
      return { stored: 0, refused: records.length };
    }
  }

  private queueEvent(e: AgentEvent): void {
    this.events.push(e);
    if (this.events.length > MAX_EVENTS) {
      this.events.shift();
      this.eventsDropped++;
    }
  }

  private async sendEvents(): Promise<void> {
    if (this.sendingEvents) return this.sendingEvents;
    if (!this.registered || this.events.length === 0) return;
    const batch = this.events.slice();
    this.sendingEvents = this.client
      .events(batch, this.ctl.signal)
      .then(() => {
        this.events.splice(0, batch.length);
      })
      .finally(() => {
        this.sendingEvents = undefined;
      });
    return this.sendingEvents;
  }

  private async refreshAddresses(): Promise<void> {
    const a = await hostAddresses({ netns: this.options.netns });
    this.addresses = a;
    this.local = new Set(a.map(canonical));
  }

  private async enableAcct(): Promise<void> {
    const file = '/proc/sys/net/netfilter/nf_conntrack_acct';
    const r = await runIn({ netns: this.options.netns }, 'sh', ['-c', `echo 1 > ${file}`]);
    this.acctOn = r.code === 0;
    if (!this.acctOn) this.log.log('warn', 'conntrack-acct', `cannot turn on conntrack accounting (flows will carry no packet and byte counts yet): ${r.stderr.trim()}`);
  }

  private stats(): Record<string, unknown> {
    // One rule is several in the kernel (per family, per match clause): summed per rule, verdict and mode.
    const byRule = new Map<string, RuleCounter>();
    for (const c of this.enforcer.counters()) {
      if (c.packets === 0) continue;
      const k = `${c.rule}\0${c.verdict}\0${c.test}`;
      const had = byRule.get(k);
      byRule.set(k, had ? { ...had, packets: had.packets + c.packets, bytes: had.bytes + c.bytes } : c);
    }
    const counters = [...byRule.values()].sort((a, b) => b.packets - a.packets);
    return {
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      addresses: this.addresses,
      flows: { sent: this.flowsSent, ...this.buffer.stats() },
      conntrack: { tracked: this.tracker.size, unreadable: this.tracker.bad },
      nflog: { on: this.status().nflog, lost: this.nflogReader?.lost ?? 0, overflow: this.drops.overflow },
      drops: counters.slice(0, 100).map((c) => ({ rule: c.rule, test: c.test, packets: c.packets, bytes: c.bytes })),
      driftRepairs: this.driftRepairs,
      applyFailures: this.applyFailures,
      eventsDropped: this.eventsDropped,
    };
  }

  // ---------------------------------------------------------- reachability

  private markReachable(): void {
    if (this.reachable) return;
    this.reachable = true;
    const down = Math.round((Date.now() - this.downSince) / 1000);
    this.log.log('info', 'server-reachable', `the server answers again after ${down} s`, { downSeconds: down });
  }

  private markFailure(e: unknown, retryMs: number): void {
    const retry = `retrying in ${(retryMs / 1000).toFixed(1)} s`;
    if (e instanceof AgentHttpError && e.status === 401) {
      if (!this.unauthorized) {
        this.unauthorized = true;
        this.log.log('error', 'unauthorized', `the server refused the agent's token (${e.message}); enforcing the last good ruleset, ${retry}`, { status: e.status });
      }
      return;
    }
    if (e instanceof AgentHttpError && e.status === 0) {
      if (this.reachable) {
        this.reachable = false;
        this.downSince = Date.now();
        const v = this.enforcer.applied;
        this.log.log('warn', 'server-unreachable', `${e.message}; ${v ? `enforcing version ${v.version}` : 'nothing applied yet'}, buffering flows, ${retry}`, { version: v?.version ?? null });
      }
      return;
    }
    this.log.log('warn', 'request-failed', `${errorText(e)}; ${retry}`);
  }

  // ------------------------------------------------------------------ lock

  private lock(): void {
    try {
      const pid = Number(readFileSync(this.lockFile, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) throw new Error(`another agent (pid ${pid}) uses the state directory ${this.options.stateDir}`);
    } catch (e) {
      if (e instanceof Error && e.message.startsWith('another agent')) throw e;
    }
    writeFileSync(this.lockFile, `${process.pid}\n`, { mode: 0o600 });
  }

  private unlock(): void {
    try {
      if (readFileSync(this.lockFile, 'utf8').trim() === String(process.pid)) rmSync(this.lockFile, { force: true });
    } catch {
      // already gone
    }
  }
}

/** Whether `pid` is a live agent (a stale lock's pid may belong to another program by now). */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('agent');
  } catch {
    return false;
  }
}
