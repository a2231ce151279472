/**
 * Alert sinks: a webhook (POST of JSON, retried with exponential backoff,
 * from a bounded queue) and syslog (RFC 5424 over UDP). Alerts are
 * fire-and-forget for the caller: a slow or dead sink never holds up ingest.
 */
import { createHmac } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { hostname as osHostname } from 'node:os';
import { isIP } from 'node:net';

/** One alert. */
export interface Alert {
  /** `violation`, `breakglass.created`, `breakglass.ended`, `audit.broken`, `store.failed`, … */
  readonly kind: string;
  /** RFC 5424 severity: 0 emergency … 4 warning, 5 notice, 6 informational. */
  readonly severity: number;
  readonly at: number;
  readonly message: string;
  /** Flat fields (strings or numbers), also the syslog structured data. */
  readonly fields: Readonly<Record<string, string | number>>;
}

/** A configured sink. */
export interface Sink {
  readonly id: string;
  send(a: Alert): void;
  /** Waits until the queue is empty (tests, shutdown), at most `ms`. */
  drain(ms: number): Promise<void>;
  close(): void;
  readonly stats: { sent: number; failed: number; dropped: number; retried: number };
}

export interface WebhookOptions {
  readonly url: string;
  readonly secret?: string;
  /** Queue bound; the oldest alert is dropped beyond it (default 1000). */
  readonly maxQueue?: number;
  /** Attempts per alert (default 5). */
  readonly attempts?: number;
  /** First backoff, doubled each retry (default 500 ms), capped at 30 s. */
  readonly backoffMs?: number;
  readonly timeoutMs?: number;
}

/** POSTs each alert as JSON, one at a time, in order; retries 5xx, 429 and network errors. */
export class WebhookSink implements Sink {
  readonly stats = { sent: 0, failed: 0, dropped: 0, retried: 0 };
  private readonly queue: Alert[] = [];
  private busy = false;
  private closed = false;
  private timer?: ReturnType<typeof setTimeout>;
  private readonly idle: (() => void)[] = [];

  constructor(
    readonly id: string,
    private readonly o: WebhookOptions,
  ) {}

  send(a: Alert): void {
    if (this.closed) return;
    if (this.queue.length >= (this.o.maxQueue ?? 1000)) {
      this.queue.shift();
      this.stats.dropped++;
    }
    this.queue.push(a);
    if (!this.busy) void this.pump();
  }

  private async pump(): Promise<void> {
    this.busy = true;
    while (this.queue.length > 0 && !this.closed) {
      const a = this.queue[0];
      const attempts = this.o.attempts ?? 5;
      let ok = false;
      for (let i = 0; i < attempts && !this.closed; i++) {
        if (i > 0) {
          this.stats.retried++;
          await new Promise<void>((r) => (this.timer = setTimeout(r, Math.min(30000, (this.o.backoffMs ?? 500) * 2 ** (i - 1)))));
        }
        const status = await this.post(a).catch(() => 0);
        if (status >= 200 && status < 300) {
          ok = true;
          break;
        }
        if (status >= 400 && status < 500 && status !== 429 && status !== 408) break; // the receiver refuses it: retrying will not help
      }
      // The head may have been dropped by an overflow meanwhile: remove this alert by identity.
      const at = this.queue.indexOf(a);
      if (at >= 0) this.queue.splice(at, 1);
      if (ok) this.stats.sent++;
      else this.stats.failed++;
    }
    this.busy = false;
    for (const f of this.idle.splice(0)) f();
  }

  private post(a: Alert): Promise<number> {
    const body = Buffer.from(JSON.stringify({ kind: a.kind, severity: a.severity, at: new Date(a.at).toISOString(), message: a.message, ...a.fields }));
    const url = new URL(this.o.url);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(body.length), 'user-agent': 'bulkhead-server' };
    if (this.o.secret) headers['x-bulkhead-signature'] = 'sha256=' + createHmac('sha256', this.o.secret).update(body).digest('hex');
    const req = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const r = req(url, { method: 'POST', headers, timeout: this.o.timeoutMs ?? 10000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      });
      r.on('timeout', () => r.destroy(new Error('timeout')));
      r.on('error', reject);
      r.end(body);
    });
  }

  drain(ms: number): Promise<void> {
    if (!this.busy && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.idle.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const f of this.idle.splice(0)) f();
  }
}

/** Escapes an RFC 5424 SD-PARAM value: `"`, `\` and `]`. */
export function sdEscape(v: string): string {
  return v.replace(/[\\"\]]/g, (c) => '\\' + c);
}

/** RFC 5424 printable-ASCII field (1 to `max` characters), `-` when empty. */
function field(s: string, max: number): string {
  const clean = s.replace(/[^\x21-\x7e]/g, '').slice(0, max);
  return clean === '' ? '-' : clean;
}

/** The IANA private enterprise number used for structured data (32473 is reserved for documentation, RFC 5612). */
export const SD_ENTERPRISE = 32473;

/** Formats an alert as one RFC 5424 message. */
export function syslogMessage(a: Alert, o: { facility: number; hostname?: string; appName?: string; procId?: string }): string {
  const pri = o.facility * 8 + Math.max(0, Math.min(7, a.severity));
  const ts = new Date(a.at).toISOString();
  const params = Object.entries(a.fields)
    .filter(([k]) => /^[\x21-\x7e]+$/.test(k) && !/[= \]"]/.test(k))
    .map(([k, v]) => `${k.slice(0, 32)}="${sdEscape(String(v))}"`)
    .join(' ');
  const sd = `[bulkhead@${SD_ENTERPRISE} kind="${sdEscape(a.kind)}"${params ? ' ' + params : ''}]`;
  return `<${pri}>1 ${ts} ${field(o.hostname ?? osHostname(), 255)} ${field(o.appName ?? 'bulkhead', 48)} ${field(o.procId ?? String(process.pid), 128)} ${field(a.kind, 32)} ${sd} \ufeff${a.message}`;
}

export interface SyslogOptions {
  readonly host: string;
  readonly port: number;
  readonly facility: number;
  readonly hostname?: string;
}

/** Sends each alert as one UDP datagram (RFC 5424 over RFC 5426). */
export class SyslogSink implements Sink {
  readonly stats = { sent: 0, failed: 0, dropped: 0, retried: 0 };
  private readonly socket: Socket;
  private pending = 0;

  constructor(
    readonly id: string,
    private readonly o: SyslogOptions,
  ) {
    this.socket = createSocket(isIP(o.host) === 6 ? 'udp6' : 'udp4');
    this.socket.unref();
    this.socket.on('error', () => this.stats.failed++);
  }

  send(a: Alert): void {
    const msg = Buffer.from(syslogMessage(a, { facility: this.o.facility, hostname: this.o.hostname }));
    // RFC 5426: IPv4 receivers must take 480 bytes, should take 2048; keep within a safe datagram.
    const data = msg.length > 2048 ? msg.subarray(0, 2048) : msg;
    this.pending++;
    this.socket.send(data, this.o.port, this.o.host, (err) => {
      this.pending--;
      if (err) this.stats.failed++;
      else this.stats.sent++;
    });
  }

  async drain(ms: number): Promise<void> {
    const t0 = Date.now();
    while (this.pending > 0 && Date.now() - t0 < ms) await new Promise((r) => setTimeout(r, 5));
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}
