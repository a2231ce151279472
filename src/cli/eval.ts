/** `bulkhead eval`: one flow, its verdict and why. */
import { PROTOCOLS } from '../netset/connset.js';
import { formatPrefix, parseAddr, type Addr } from '../netset/ip.js';
import { closest, type Loc } from '../model/diagnostic.js';
import type { Policy } from '../model/types.js';
import { Evaluator, type Decision, type SideDecision } from '../engine/evaluate.js';
import { EXIT, loadDir, parseNow, printDiagnostics, UsageError, type Io } from './common.js';
import { summary } from './render.js';

/** Resolves `--from` / `--to`: an address, or a workload name (its first address). */
export function resolveEnd(text: string, policy: Policy, flag: string): Addr {
  const a = parseAddr(text);
  if (a !== null) return a;
  const w = policy.workloads.find((x) => x.name === text);
  if (w && w.addresses.length > 0) return w.addresses[0].addr;
  const guess = closest(text, policy.workloads.map((x) => x.name));
  throw new UsageError(`${flag} \`${text}\` is neither an address nor a workload${guess ? `; did you mean \`${guess}\`?` : ''}`);
}

/** Parses `5432/tcp`, `53/udp`, `8/icmp`, `3:4/icmpv6` into a protocol number and port key. */
export function parseConnection(text: string): { proto: number; port: number } {
  const m = /^(\d+)(?::(\d+))?\/([a-z0-9]+)$/i.exec(text.trim());
  const proto = m ? (PROTOCOLS as Record<string, number>)[m[3].toLowerCase()] : undefined;
  if (!m || proto === undefined) throw new UsageError(`invalid --port \`${text}\`: write <port>/<protocol> such as 5432/tcp or 53/udp, or <type>[:<code>]/icmp`);
  const a = Number(m[1]);
  const icmp = proto === PROTOCOLS.icmp || proto === PROTOCOLS.icmpv6;
  if (icmp) {
    const code = m[2] === undefined ? 0 : Number(m[2]);
    if (a > 255 || code > 255) throw new UsageError(`invalid --port \`${text}\`: ICMP type and code are 0 to 255`);
    return { proto, port: a * 256 + code };
  }
  if (m[2] !== undefined || a > 65535) throw new UsageError(`invalid --port \`${text}\`: ports are 0 to 65535`);
  return { proto, port: a };
}

function locText(loc: Loc | undefined): string {
  return loc && loc.line > 0 ? ` (${loc.file}:${loc.line}:${loc.col})` : '';
}

function end(e: Decision['src']): string {
  return e.workload ? `${e.address} (${e.workload})` : e.address;
}

function sideLine(name: string, s: SideDecision | null, ruleLoc: (id: string | null) => string): string {
  if (!s) return `  ${name.padEnd(8)} no managed workload: constrains nothing`;
  const what = s.rule ? `${s.action} by ${s.tier} rule \`${s.rule}\`${ruleLoc(s.rule)}` : 'deny by default (no rule allows it)';
  const mode = s.evaluated ? s.mode : `${s.mode}, not evaluated; would be`;
  return `  ${name.padEnd(8)} ${s.workload} [${mode}] ${what}`;
}

/** Text explanation of a decision. */
export function explain(d: Decision, conn: string, ruleLoc: (id: string | null) => string): string {
  const lines = [`${d.verdict}: ${end(d.src)} -> ${end(d.dst)} on ${conn}`];
  const side = d.decidedBy === 'egress' ? "the source's egress" : d.decidedBy === 'ingress' ? "the destination's ingress" : null;
  if (side) lines.push(`  decided by ${side}: ${d.rule ? `${d.tier} rule \`${d.rule}\`${ruleLoc(d.rule)}` : 'the default deny'}`);
  else lines.push('  decided by nothing: no end of this flow evaluates policy');
  lines.push(sideLine('egress', d.egress, ruleLoc));
  lines.push(sideLine('ingress', d.ingress, ruleLoc));
  return lines.join('\n');
}

export function runEval(dir: string, opts: { from: string; to: string; port: string; output: string; now?: string }, io: Io): number {
  const c = loadDir(dir, parseNow(opts.now));
  if (c.diagnostics.hasErrors()) {
    printDiagnostics(c.diagnostics.sorted().filter((d) => d.severity === 'error'), c.texts, io);
    io.err(`cannot evaluate: the policy has problems (${summary(c.diagnostics.errorCount, c.diagnostics.warningCount)}); run \`bulkhead validate ${dir}\``);
    return EXIT.policyErrors;
  }
  const src = resolveEnd(opts.from, c.policy, '--from');
  const dst = resolveEnd(opts.to, c.policy, '--to');
  const conn = parseConnection(opts.port);
  const d = new Evaluator(c.ir).decide({ src, dst, ...conn });
  const rules = new Map(c.policy.rules.map((r) => [r.id, r]));
  if (opts.output === 'json') {
    const loc = (id: string | null) => {
      const l = id ? rules.get(id)?.loc : undefined;
      return l && l.line > 0 ? { file: l.file, line: l.line, column: l.col } : null;
    };
    io.out(JSON.stringify({ flow: { from: formatPrefix({ addr: src, len: typeof src === 'number' ? 32 : 128 }), to: d.dst.address, connection: opts.port }, ...d, ruleLocation: loc(d.rule) }, null, 2));
  } else {
    io.out(explain(d, opts.port, (id) => locText(id ? rules.get(id)?.loc : undefined)));
  }
  return d.verdict === 'blocked' ? EXIT.blocked : d.verdict === 'potentially-blocked' ? EXIT.potentiallyBlocked : EXIT.ok;
}
