/**
 * Runs `bulkhead agent` as its own process for the tests (signals, exit
 * codes, the command line) through the CLI's `register`, the same way
 * src/cli/main.ts wires every command.
 *
 *   node --import tsx test/agent/agent-cli.ts agent --server … --token … --netns …
 */
import { Command } from 'commander';
import { register } from '../../src/cli/agent.js';
import type { Io } from '../../src/cli/common.js';

const io: Io = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n'), color: false };
const prog = new Command('bulkhead').exitOverride();
register(prog, io);
try {
  await prog.parseAsync(process.argv);
  process.exitCode = (prog.getOptionValue('exit') as number | undefined) ?? 0;
} catch (e) {
  io.err(`error: ${(e as Error).message}`);
  process.exitCode = 2;
}
