/**
 * Runs the CLI in-process with the flow commands registered (ingest, map,
 * collect, generate-flows), whether or not src/cli/main.ts registers them yet.
 */
import { CommanderError } from 'commander';
import { program } from '../../src/cli/main.js';
import { EXIT, UsageError, type Io } from '../../src/cli/common.js';
import { register as registerIngest } from '../../src/cli/ingest.js';
import { register as registerMap } from '../../src/cli/map.js';
import { register as registerCollect } from '../../src/cli/collect.js';
import { register as registerGenerateFlows } from '../../src/cli/generate-flows.js';
import type { CliRun } from '../helpers/cli.js';

export async function flowsCli(...args: string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (s) => out.push(s), err: (s) => err.push(s), color: false };
  const prog = program(io);
  const have = new Set(prog.commands.map((c) => c.name()));
  if (!have.has('ingest')) registerIngest(prog, io);
  if (!have.has('map')) registerMap(prog, io);
  if (!have.has('collect')) registerCollect(prog, io);
  if (!have.has('generate-flows')) registerGenerateFlows(prog, io);
  let code: number;
  try {
    await prog.parseAsync(['node', 'bulkhead', ...args]);
    code = (prog.getOptionValue('exit') as number | undefined) ?? EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) code = e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? EXIT.ok : EXIT.usage;
    else if (e instanceof UsageError) {
      err.push(`error: ${e.message}`);
      code = EXIT.usage;
    } else throw e;
  }
  return { code, out: out.join('\n'), err: err.join('\n') };
}
