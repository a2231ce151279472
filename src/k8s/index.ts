/**
 * Kubernetes: read manifests and analyze their network policies
 * (connectivity as np-guard reports it), and compile bulkhead's IR to
 * Kubernetes NetworkPolicy (with AdminNetworkPolicy and
 * BaselineAdminNetworkPolicy), Calico and Cilium. Pure: callers hand in file
 * texts and get data and diagnostics back.
 */
import type { SourceFile } from '../policy/source.js';
import { Diagnostics } from '../model/diagnostic.js';
import { Analyzer } from './analyze.js';
import { buildCluster, type Cluster, type K8sProtocol } from './cluster.js';
import { PROTOCOL_NUMBER } from './conns.js';
import { connlist, formatConnlist, type ConnLine } from './connlist.js';
import { K8sDiagnostics } from './diagnostics.js';
import { readManifests } from './manifest.js';

/** The outcome of {@link analyzeManifests}. */
export interface Analysis {
  readonly cluster: Cluster;
  readonly analyzer: Analyzer;
  readonly diagnostics: K8sDiagnostics;
}

/** Reads manifests (in the order given) into a cluster model and an analyzer. */
export function analyzeManifests(files: readonly SourceFile[]): Analysis {
  const yamlDiags = new Diagnostics();
  const objects = readManifests(files, yamlDiags);
  const diagnostics = new K8sDiagnostics();
  diagnostics.addAll(yamlDiags.items);
  const cluster = buildCluster(objects, diagnostics);
  return { cluster, analyzer: new Analyzer(cluster), diagnostics };
}

/** The connectivity report of manifests in np-guard's txt format, with the diagnostics of reading them. */
export function connlistText(files: readonly SourceFile[]): { text: string; lines: ConnLine[]; diagnostics: K8sDiagnostics } {
  const a = analyzeManifests(files);
  const lines = connlist(a.cluster, a.analyzer);
  return { text: formatConnlist(lines), lines, diagnostics: a.diagnostics };
}

/**
 * Whether one connection is allowed from the workload `src` to the workload
 * `dst`, each written `<namespace>/<owner name>` (np-guard's eval check).
 * Undefined when either workload does not exist.
 */
export function evalConnection(a: Analysis, src: string, dst: string, protocol: K8sProtocol, port: number): boolean | undefined {
  const find = (s: string) => a.cluster.workloads.find((w) => `${w.namespace}/${w.name}` === s);
  const sw = find(src);
  const dw = find(dst);
  if (!sw || !dw) return undefined;
  return a.analyzer.allowed({ kind: 'workload', workload: sw }, { kind: 'workload', workload: dw }).has(PROTOCOL_NUMBER[protocol], port);
}

export { Analyzer, type AnalysisPeer } from './analyze.js';
export { buildCluster, workloadId, type Cluster, type K8sProtocol, type K8sWorkload } from './cluster.js';
export { connlist, formatConnlist, splitIpv4, type ConnLine } from './connlist.js';
export { formatConns, K8S_ALL } from './conns.js';
export { K8S_CODES, K8sDiagnostics, type K8sCode, type K8sDiagnostic } from './diagnostics.js';
export { readManifests, type ManifestObject } from './manifest.js';
