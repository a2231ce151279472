/**
 * The netset layer: pure value types for sets of integers, addresses,
 * connections and indices, and longest-prefix match. No I/O, no imports from
 * other layers.
 */
export { IntervalSetBase, IntervalSet, BigIntervalSet, type IntervalOps, type Bounds, type BoundsBuffer } from './interval.js';
export {
  MAX_V4,
  MAX_V6,
  familyOf,
  isAddr,
  parseAddr,
  formatAddr,
  parsePrefix,
  formatPrefix,
  makePrefix,
  prefixRange,
  IpSet,
  type Addr,
  type Prefix,
  type ParsePrefixResult,
} from './ip.js';
export { PROTOCOLS, ConnSet, hasPorts, isIcmp, protocolName, protocolNumber, type ProtocolName, type ConnEntry } from './connset.js';
export { Bits, BitsBuilder } from './bits.js';
export { LpmTable, type LpmEntry, type LpmOptions } from './lpm.js';
export { floorIndex } from './search.js';
