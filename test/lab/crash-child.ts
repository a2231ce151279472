/**
 * Not a test: a child process for lab.test.ts. Builds a lab, says `up` and
 * waits to be killed, leaving the lab behind as a crash would.
 *
 *   node --import tsx test/lab/crash-child.ts <stateDir> <runId>
 */
import { labUp } from '../../src/lab/index.js';

const [stateDir, runId] = process.argv.slice(2);
await labUp([{ name: 'orphan', addresses: ['10.78.0.1', 'fd00:78::1'], tcpPorts: [80], udpPorts: [53] }], { stateDir, runId });
process.stdout.write('up\n');
setInterval(() => undefined, 60_000);
