/**
 * The host agent (`bulkhead agent`): enforces the control plane's policy on
 * one host and reports its flows. An adapter layer: it runs `nft`, `ip`,
 * `conntrack` and a small NFLOG reader, and talks HTTP. See docs/AGENT.md.
 */
export { Agent, AGENT_VERSION, type AgentOptions, type AgentStatus } from './agent.js';
export { AgentClient, AgentHttpError, bareEtag, type AgentEvent, type AgentFlow, type PolicyDocument, type Registration } from './client.js';
export { createLogger, memoryLogger, type AgentLogger, type LogFormat } from './log.js';
export { Backoff } from './backoff.js';
export { FlowBuffer, type BufferStats } from './buffer.js';
export { ConntrackTracker } from './conntrack.js';
export { DropAggregator, DEFAULT_NFLOG_GROUP, parsePacket, parsePrefix } from './nflog.js';
export { Enforcer, TABLE, foreignStatement, routeLogsToNflog, ruleCounters, describeDrift } from './enforce.js';
export { addressesFromIpJson, hostAddresses } from './host.js';
