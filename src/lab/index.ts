/**
 * The network-namespace lab (an adapter: it runs programs and touches the file
 * system; the pure core never imports it). See docs/LAB.md.
 */
export { labUp, labDown, labDownSync, labStatus, labOpen, withLab, labHost, defaultStateDir, runPrefix, canonicalAddress } from './lab.js';
export type { Lab, LabHost, LabHostState, LabUpOptions, LabDownOptions, LabDownReport, LabStatusEntry } from './lab.js';
export { labLoad, labFlush } from './load.js';
export type { LabArtifact, LabLoadOptions } from './load.js';
export { labProbe, labTcpRate } from './probe.js';
export type { Probe, ProbeResult, LabProbeOptions, TcpRate } from './probe.js';
export { LabError, labProblems } from './sys.js';
export { compareWithEngine, expectedResult, labHostsFromIr, loadPolicy, probePlan, type Backend, type Comparison } from './verify.js';
