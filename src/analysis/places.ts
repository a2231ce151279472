/**
 * Places: what the analyses need to know about the IR's endpoints beyond the
 * IR itself. Which workloads sit at each endpoint (and at which address),
 * which endpoints have a real address at all, each endpoint's family,
 * managed and enforcing flags, and a name for every IP atom.
 *
 * An endpoint is a (class or none, atom) pair. A workload endpoint is real by
 * construction; the endpoint of addresses that are no workload exists for
 * every atom, but it is only *live* when the atom holds an address that no
 * workload owns (an atom wholly covered by workload prefixes has none).
 */
import { formatAddr, prefixRange, type Addr, type IpSet, type Prefix } from '../netset/ip.js';
import type { Ir } from '../policy/ir.js';

/** A workload's presence at one endpoint: the workload index and one of its addresses there. */
export interface Seat {
  readonly endpoint: number;
  readonly addr: Addr;
}

/** One end of a concrete flow: a workload and its address, or an address that is no workload. */
export interface Place {
  readonly workload?: string;
  readonly addr: Addr;
  /** For addresses that are no workload: the atom's label (`internet`). */
  readonly ip?: string;
}

/** Facts about endpoints, shared by every analysis of one IR. Build once per IR with {@link buildPlaces}. */
export interface Places {
  readonly ir: Ir;
  /** Per endpoint: 1 when the endpoint has a concrete address. */
  readonly live: Uint8Array;
  /** Per endpoint: 4 or 6. */
  readonly family: Uint8Array;
  /** Per endpoint: 1 when its class is managed (never for addresses that are no workload). */
  readonly managed: Uint8Array;
  /** Per endpoint: 1 when its class is managed and in `enforce` mode. */
  readonly enforcing: Uint8Array;
  /** Per endpoint: the workloads with an address there, ascending. Empty for addresses that are no workload. */
  readonly members: readonly (readonly number[])[];
  /** Per workload: the endpoints of its addresses, each with one address there. */
  readonly seats: readonly (readonly Seat[])[];
  /** Per endpoint of addresses that are no workload: one such address, or undefined when not live. */
  readonly sample: readonly (Addr | undefined)[];
  /** Per atom: the names of the rules' IP peers that contain it (IP lists and cidrs), sorted; empty when none does. */
  readonly atomNames: readonly (readonly string[])[];
}

/** The name of an atom for people: its IP peers' names, or `other` (addresses no rule names). */
export function atomLabel(p: Places, atom: number): string {
  const names = p.atomNames[atom];
  return names.length === 0 ? 'other' : names.join('+');
}

/** The address of workload `w` at endpoint `ep`, or undefined when it has none there. */
export function seatAddr(p: Places, w: number, ep: number): Addr | undefined {
  for (const s of p.seats[w]) if (s.endpoint === ep) return s.addr;
  return undefined;
}

/** Lower bound in a sorted array. */
function lowerBound<T extends number | bigint>(a: ArrayLike<T>, x: T): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Builds the places of an IR. Linear in workloads and endpoints. */
export function buildPlaces(ir: Ir): Places {
  const ne = ir.endpoints.length;
  const live = new Uint8Array(ne);
  const family = new Uint8Array(ne);
  const managed = new Uint8Array(ne);
  const enforcing = new Uint8Array(ne);
  for (const e of ir.endpoints) {
    family[e.id] = ir.atoms[e.atom].v4.isEmpty() ? 6 : 4;
    if (e.cls >= 0) {
      const c = ir.classes[e.cls];
      live[e.id] = 1;
      managed[e.id] = c.managed ? 1 : 0;
      enforcing[e.id] = c.managed && c.mode === 'enforce' ? 1 : 0;
    }
  }

  // Cut points for workloads whose address is a prefix: where atoms and other workload prefixes begin and end.
  const isPrefix = (p: Prefix) => p.len < (typeof p.addr === 'number' ? 32 : 128);
  const prefix4 = ir.workloads.some((w) => w.addresses.some((p) => typeof p.addr === 'number' && isPrefix(p)));
  const prefix6 = ir.workloads.some((w) => w.addresses.some((p) => typeof p.addr === 'bigint' && isPrefix(p)));
  let cuts4: Float64Array = new Float64Array(0);
  let cuts6: bigint[] = [];
  if (prefix4) {
    const c4: number[] = [];
    for (const a of ir.atoms) for (const [lo, hi] of a.v4.intervals()) c4.push(lo, hi + 1);
    for (const w of ir.workloads) {
      for (const p of w.addresses) {
        if (typeof p.addr !== 'number') continue;
        c4.push(p.addr, p.addr + 2 ** (32 - p.len));
      }
    }
    cuts4 = Float64Array.from(c4).sort();
  }
  if (prefix6) {
    const c6: bigint[] = [];
    for (const a of ir.atoms) for (const [lo, hi] of a.v6.intervals()) c6.push(lo, hi + 1n);
    for (const w of ir.workloads) {
      for (const p of w.addresses) {
        if (typeof p.addr !== 'bigint') continue;
        const [lo, hi] = prefixRange(p);
        c6.push(lo as bigint, (hi as bigint) + 1n);
      }
    }
    cuts6 = [...new Set(c6)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  const membersB: number[][] = Array.from({ length: ne }, () => []);
  const seats: Seat[][] = new Array(ir.workloads.length);
  const classOf = ir.classOf;
  const endpointClass = ir.endpointClass;
  const map = ir.addressMap;
  for (let wi = 0; wi < ir.workloads.length; wi++) {
    const out: Seat[] = [];
    // A single address always belongs to its workload (two workloads never claim one address); a prefix's piece may belong to a nested workload.
    const add = (addr: Addr, checkOwner: boolean) => {
      const ep = map.lookup(addr);
      if (endpointClass[ep] !== classOf[wi]) return;
      for (const s of out) if (s.endpoint === ep) return;
      if (checkOwner && ir.workloadLookup.lookup(addr) !== wi) return;
      out.push({ endpoint: ep, addr });
    };
    for (const p of ir.workloads[wi].addresses) {
      if (!isPrefix(p)) {
        add(p.addr, false);
        continue;
      }
      // A prefix may span several endpoints: look at the start of every segment inside it.
      const [lo, hi] = prefixRange(p);
      add(lo, true);
      if (typeof lo === 'number') {
        for (let i = lowerBound(cuts4, lo + 1); i < cuts4.length && cuts4[i] <= (hi as number); i++) add(cuts4[i], true);
      } else {
        for (let i = lowerBound(cuts6, lo + 1n); i < cuts6.length && cuts6[i] <= (hi as bigint); i++) add(cuts6[i], true);
      }
    }
    for (const s of out) membersB[s.endpoint].push(wi);
    seats[wi] = out;
  }

  // Addresses that are no workload: find one per atom.
  const sample: (Addr | undefined)[] = new Array(ne).fill(undefined);
  for (const e of ir.endpoints) {
    if (e.cls >= 0) continue;
    const a = freeAddressIn(ir, ir.atoms[e.atom]);
    // The address must map back to this endpoint (it does, unless a workload prefix shadows it).
    if (a !== undefined && ir.addressMap.lookup(a) === e.id) {
      sample[e.id] = a;
      live[e.id] = 1;
    }
  }

  // Atom names: the IP peers of the rules that contain each atom (atoms never straddle a rule's IP set).
  const peerSets = new Map<string, { set: IpSet }>();
  for (const r of ir.rules) {
    for (const p of [...r.rule.from, ...r.rule.to]) if (p.kind === 'ips' && !peerSets.has(p.name)) peerSets.set(p.name, { set: p.set });
  }
  const atomNames = ir.atoms.map((a) => {
    const names: string[] = [];
    for (const [name, { set }] of peerSets) if (!a.isEmpty() && a.isSubset(set)) names.push(name);
    return names.sort();
  });

  return { ir, live, family, managed, enforcing, members: membersB, seats, sample, atomNames };
}

/**
 * The first address of `set` that no workload owns, or undefined (also when
 * the search gives up after stepping over 100,000 workload prefixes).
 */
export function freeAddressIn(ir: Ir, set: IpSet): Addr | undefined {
  const containing = (w: number, a: Addr): [Addr, Addr] | undefined => {
    for (const p of ir.workloads[w].addresses) {
      const [lo, hi] = prefixRange(p);
      if (typeof lo === typeof a && lo <= a && a <= hi) return [lo, hi];
    }
    return undefined;
  };
  let budget = 100000;
  const search = <T extends number | bigint>(intervals: [T, T][]): T | undefined => {
    for (const [lo, hi] of intervals) {
      let a = lo;
      while (a <= hi && budget-- > 0) {
        const w = ir.workloadLookup.lookup(a);
        if (w === undefined) return a;
        const r = containing(w, a);
        if (!r) return undefined;
        a = (typeof r[1] === 'number' ? r[1] + 1 : r[1] + 1n) as T;
      }
    }
    return undefined;
  };
  return search(set.v4.intervals()) ?? search(set.v6.intervals());
}

/** A concrete address for an endpoint: the sample for addresses that are no workload, else the first member's. */
export function endpointAddr(p: Places, ep: number, workload?: number): Addr | undefined {
  if (p.ir.endpointClass[ep] < 0) return p.sample[ep];
  const w = workload ?? p.members[ep][0];
  return w === undefined ? undefined : seatAddr(p, w, ep);
}

/** The place of workload `w` (or, when undefined, of the endpoint's addresses that are no workload) at endpoint `ep`. */
export function placeOf(p: Places, ep: number, w: number | undefined, addr?: Addr): Place {
  if (w === undefined) return { addr: addr ?? p.sample[ep]!, ip: atomLabel(p, p.ir.endpointAtom[ep]) };
  return { workload: p.ir.workloads[w].name, addr: addr ?? seatAddr(p, w, ep)! };
}

/** The text form of an address for reports. */
export function addrText(a: Addr): string {
  return formatAddr(a);
}
