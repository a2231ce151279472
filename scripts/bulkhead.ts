// Runs the CLI from source, without a build: `node --import tsx scripts/bulkhead.ts <command>`.
import { main } from '../src/cli/main.js';

process.exitCode = await main(process.argv);
