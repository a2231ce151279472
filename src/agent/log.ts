/**
 * The agent's log: one line per notable event on stderr, as text for people
 * or as JSON lines for machines (`--output json`).
 */

/** How log lines are written. */
export type LogFormat = 'text' | 'json';

/** How bad an event is. */
export type LogLevel = 'info' | 'warn' | 'error';

/** Where the agent reports what it does. */
export interface AgentLogger {
  /** One line: `event` is a stable kebab-case name, `message` the human sentence, `fields` extra data for machines. */
  log(level: LogLevel, event: string, message: string, fields?: Readonly<Record<string, unknown>>): void;
}

/**
 * A logger writing one line per call. Text: `<ISO time> <level> <event>: <message>`;
 * JSON: `{"time", "level", "event", "msg", ...fields}`.
 */
export function createLogger(format: LogFormat, write: (line: string) => void = (l) => process.stderr.write(l + '\n'), now: () => Date = () => new Date()): AgentLogger {
  return {
    log(level, event, message, fields = {}) {
      const time = now().toISOString();
      if (format === 'json') write(JSON.stringify({ time, level, event, msg: message, ...fields }));
      else write(`${time} ${level} ${event}: ${message}`);
    },
  };
}

/** A logger that keeps lines in memory (tests). */
export function memoryLogger(): AgentLogger & { readonly lines: { level: LogLevel; event: string; message: string; fields: Readonly<Record<string, unknown>> }[] } {
  const lines: { level: LogLevel; event: string; message: string; fields: Readonly<Record<string, unknown>> }[] = [];
  return {
    lines,
    log(level, event, message, fields = {}) {
      lines.push({ level, event, message, fields });
    },
  };
}
