/** `bulkhead init`: writes a policy template for a common zone into a directory. */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { findTemplate, TEMPLATES } from '../templates/index.js';
import { EXIT, UsageError, type Io } from './common.js';
import { table } from './render.js';

/** The options of `bulkhead init`. */
export interface InitOptions {
  template?: string;
  out?: string;
  force?: boolean;
  list?: boolean;
}

/** Runs `bulkhead init`; returns the exit code. */
export function runInit(opts: InitOptions, io: Io): number {
  if (opts.list) {
    io.out(table(TEMPLATES.map((t) => [t.name, t.summary])));
    return EXIT.ok;
  }
  if (opts.template === undefined) throw new UsageError('give a template with --template <name> (see `bulkhead init --list`)');
  const t = findTemplate(opts.template);
  if (!t) throw new UsageError(`unknown template \`${opts.template}\`: choose one of ${TEMPLATES.map((x) => `\`${x.name}\``).join(', ')}`);
  const out = opts.out ?? '.';
  const files = Object.entries(t.files).map(([name, text]) => ({ path: join(out, name), text }));
  const existing = files.filter((f) => existsSync(f.path)).map((f) => f.path);
  if (existing.length > 0 && opts.force !== true) {
    io.err(`error: ${existing.map((p) => `\`${p}\``).join(', ')} already ${existing.length === 1 ? 'exists' : 'exist'}; pass --force to overwrite`);
    return EXIT.policyErrors;
  }
  mkdirSync(out, { recursive: true });
  for (const f of files) writeFileSync(f.path, f.text);
  io.err(`wrote template \`${t.name}\` to ${files.map((f) => f.path).join(', ')}`);
  return EXIT.ok;
}

/** Adds `init` to the program. */
export function register(prog: Command, io: Io): void {
  prog
    .command('init')
    .description('write a policy template for a common zone (environment isolation, tier isolation, PCI ring-fence, jump-host admin, shared services)')
    .option('-t, --template <name>', 'the template (see --list)')
    .option('--out <dir>', 'directory to write the template to (created if missing)', '.')
    .option('--force', 'overwrite files that exist')
    .option('--list', 'list the templates')
    .addHelpText('after', '\nExamples:\n  bulkhead init --list\n  bulkhead init --template shared-services --out policy/\n\nThe templates name the labels role, app, env and compliance: add them to your taxonomy.')
    .action((opts: InitOptions) => {
      prog.setOptionValue('exit', runInit(opts, io));
    });
}
