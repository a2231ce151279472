/**
 * Exponential backoff with jitter, for every retry of the agent (registering,
 * polling, posting flows): the n-th consecutive failure waits a random time
 * between half and all of `min(max, base × 2^n)`, so a fleet of agents that
 * lost the server at the same moment does not come back in step.
 */

/** Options of {@link Backoff}. */
export interface BackoffOptions {
  /** The first delay's ceiling, milliseconds (default 500). */
  readonly baseMs?: number;
  /** The largest delay, milliseconds (default 60 000). */
  readonly maxMs?: number;
  /** A source of numbers in [0, 1) (default Math.random). */
  readonly random?: () => number;
}

/** Consecutive failures and the next delay. */
export class Backoff {
  private n = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = Math.max(1, options.baseMs ?? 500);
    this.maxMs = Math.max(this.baseMs, options.maxMs ?? 60_000);
    this.random = options.random ?? Math.random;
  }

  /** Consecutive failures so far. */
  get failures(): number {
    return this.n;
  }

  /** Records a failure and returns how long to wait before the next try, milliseconds. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.n, 30));
    this.n++;
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  /** Records a success: the next failure starts from the base again. */
  reset(): void {
    this.n = 0;
  }
}

/** Sleeps `ms`, waking early (without throwing) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });
}
