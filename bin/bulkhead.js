#!/usr/bin/env node
// The CLI entry point: runs the compiled CLI from dist/ (built by `npm ci` through the `prepare` script).
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv);
