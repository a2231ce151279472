/**
 * Runs the analysis commands in-process on a fresh commander program, as
 * src/cli/main.ts will once they are registered there, and captures what
 * they print.
 */
import { Command, CommanderError } from 'commander';
import { EXIT, UsageError, type Io } from '../../src/cli/common.js';
import { register as registerReach } from '../../src/cli/reach.js';
import { register as registerBlast } from '../../src/cli/blast.js';
import { register as registerAssert } from '../../src/cli/assert.js';
import { register as registerDiff } from '../../src/cli/diff.js';

export interface Run {
  code: number;
  out: string;
  err: string;
}

/** `bulkhead <args>` with reach, blast-radius, assert and diff registered. */
export async function bulkhead(...args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (s) => out.push(s), err: (s) => err.push(s), color: false };
  const prog = new Command('bulkhead')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s.replace(/\n$/, '')) });
  for (const register of [registerReach, registerBlast, registerAssert, registerDiff]) register(prog, io);
  let code: number;
  try {
    await prog.parseAsync(['node', 'bulkhead', ...args]);
    code = (prog.getOptionValue('exit') as number | undefined) ?? EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) code = e.code === 'commander.helpDisplayed' || e.code === 'commander.help' ? EXIT.ok : EXIT.usage;
    else if (e instanceof UsageError || (e instanceof Error && /^cannot read/.test(e.message))) {
      io.err(`error: ${e.message}`);
      code = EXIT.usage;
    } else throw e;
  }
  return { code, out: out.join('\n'), err: err.join('\n') };
}
