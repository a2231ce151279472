/**
 * The IR: the policy with every selector resolved to groups of workloads,
 * every service to a canonical connection set and every IP peer to a
 * canonical address set. Every backend and every analysis reads this, never
 * the YAML.
 *
 * - **Classes** are the equivalence classes of workloads: same labels, same
 *   managed flag, same mode (and, for a workload a rule names by name, the
 *   name). Workloads of one class are indistinguishable to every rule.
 * - **Atoms** partition the address space by every IP set rules use: two
 *   addresses in one atom are in exactly the same IP peers.
 * - **Endpoints** are the (class or none, atom) pairs that occur: everything
 *   the policy can tell apart. Every address maps to one endpoint, by a
 *   longest-prefix match over workload addresses.
 * - **Peer sets** are a bitset of classes plus a bitset of atoms: an endpoint
 *   is in the set when its class or its atom is.
 */
import { Bits, BitsBuilder } from '../netset/bits.js';
import type { ConnSet } from '../netset/connset.js';
import { IpSet, MAX_V4, MAX_V6, prefixRange, type Addr, type Prefix } from '../netset/ip.js';
import { LpmTable } from '../netset/lpm.js';
import { floorIndex } from '../netset/search.js';
import { Diagnostics, q } from '../model/diagnostic.js';
import type { Labels, Selector, SelectorNode } from '../model/selector.js';
import type { Mode, ModeRule, Peer, Policy, Rule, Workload } from '../model/types.js';

/** Workloads that no rule can tell apart. */
export interface WorkloadClass {
  readonly id: number;
  readonly labels: Labels;
  readonly managed: boolean;
  /** The mode of its managed workloads; undefined when unmanaged. */
  readonly mode: Mode | undefined;
  /** Indexes into `Ir.workloads`. */
  readonly members: readonly number[];
  /** Set when a rule names a member by name, which gives it a class of its own. */
  readonly named?: string;
}

/** The endpoints of one side of a rule. */
export interface PeerSet {
  readonly classes: Bits;
  /** The addresses of the rule's IP peers (`iplist`, `cidr`, `any`). */
  readonly ips: IpSet;
  readonly atoms: Bits;
}

/** A rule with resolved peers. `index` is its position in `Ir.rules`. */
export interface IrRule {
  readonly index: number;
  readonly rule: Rule;
  readonly from: PeerSet;
  readonly to: PeerSet;
  readonly conns: ConnSet;
}

/** One (class, atom) pair. `cls` is -1 for addresses that are no workload. */
export interface Endpoint {
  readonly id: number;
  readonly cls: number;
  readonly atom: number;
}

/** The resolved policy. Immutable once built. */
export interface Ir {
  readonly policy: Policy;
  readonly workloads: readonly Workload[];
  readonly classes: readonly WorkloadClass[];
  /** Class id of each workload. */
  readonly classOf: Int32Array;
  readonly rules: readonly IrRule[];
  readonly atoms: readonly IpSet[];
  readonly endpoints: readonly Endpoint[];
  /** Class and atom of each endpoint, as flat arrays for the hot path. */
  readonly endpointClass: Int32Array;
  readonly endpointAtom: Int32Array;
  /** Address to endpoint id. */
  readonly addressMap: AddressMap;
  /** Address to workload index (most specific workload prefix). */
  readonly workloadLookup: LpmTable<number>;
  /** Resolves a selector to the classes it matches (memoized). */
  selectClasses(sel: Selector): Bits;
  /** Timings of the build passes, in milliseconds, for `--timings`. */
  readonly timings: readonly { pass: string; ms: number }[];
}

export interface BuildOptions {
  /** Diagnostics for things only resolution can see (selectors that match nothing, conflicting modes). */
  readonly diagnostics?: Diagnostics;
}

// ---------------------------------------------------------------- address map

/**
 * Sorted disjoint ranges covering the whole address space of each family, each
 * with an endpoint id; a lookup is one binary search.
 */
export class AddressMap {
  /**
   * For IPv4, the first range index of each /16 (65,537 entries): a lookup
   * reads one slot and binary-searches the few ranges of its /16 only.
   */
  private readonly v4Bucket: Int32Array;

  private constructor(
    private readonly v4Starts: Float64Array,
    private readonly v4Values: Int32Array,
    private readonly v6Starts: readonly bigint[],
    private readonly v6Values: Int32Array,
  ) {
    const bucket = new Int32Array(65537);
    let r = 0;
    for (let b = 0; b < 65536; b++) {
      // The range holding the first address of /16 number b.
      const base = b * 65536;
      while (r + 1 < v4Starts.length && v4Starts[r + 1] <= base) r++;
      bucket[b] = r;
    }
    bucket[65536] = v4Starts.length - 1;
    this.v4Bucket = bucket;
  }

  /** Builds from the sorted cut points of each family and a function giving the value of the segment starting at each. */
  static build(v4Cuts: readonly number[], v6Cuts: readonly bigint[], valueAt: (a: Addr) => number): AddressMap {
    const v4s: number[] = [];
    const v4v: number[] = [];
    for (const c of v4Cuts) {
      const v = valueAt(c);
      if (v4v.length === 0 || v4v[v4v.length - 1] !== v) {
        v4s.push(c);
        v4v.push(v);
      }
    }
    const v6s: bigint[] = [];
    const v6v: number[] = [];
    for (const c of v6Cuts) {
      const v = valueAt(c);
      if (v6v.length === 0 || v6v[v6v.length - 1] !== v) {
        v6s.push(c);
        v6v.push(v);
      }
    }
    return new AddressMap(Float64Array.from(v4s), Int32Array.from(v4v), v6s, Int32Array.from(v6v));
  }

  /** The endpoint of an IPv4 address held as a number. */
  lookupV4(a: number): number {
    const s = this.v4Starts;
    const b = (a / 65536) | 0;
    // INVARIANT: s[0] === 0, so the answer is the last start <= a, found between the buckets of a's /16 and the next.
    let lo = this.v4Bucket[b];
    let hi = this.v4Bucket[b + 1];
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (s[mid] <= a) lo = mid;
      else hi = mid - 1;
    }
    return this.v4Values[lo];
  }

  lookupV6(a: bigint): number {
    return this.v6Values[floorIndex(this.v6Starts, a)];
  }

  lookup(a: Addr): number {
    return typeof a === 'number' ? this.lookupV4(a) : this.lookupV6(a);
  }

  /** Every range as [lo, hi, endpoint]: IPv4 ranges (numbers) first, then IPv6 (bigints). */
  *segments(): Generator<readonly [number, number, number] | readonly [bigint, bigint, number]> {
    const s4 = this.v4Starts;
    for (let i = 0; i < s4.length; i++) yield [s4[i], i + 1 < s4.length ? s4[i + 1] - 1 : MAX_V4, this.v4Values[i]] as const;
    const s6 = this.v6Starts;
    for (let i = 0; i < s6.length; i++) yield [s6[i], i + 1 < s6.length ? s6[i + 1] - 1n : MAX_V6, this.v6Values[i]] as const;
  }

  get rangeCount(): number {
    return this.v4Starts.length + this.v6Starts.length;
  }
}

// ---------------------------------------------------------------- rule applicability

/** For each class and each atom, the indexes of the rules whose side holds it, ascending. */
export interface Applicability {
  /** Rules whose `from` holds it: they apply to its egress. */
  readonly egress: { readonly byClass: readonly (readonly number[] | undefined)[]; readonly byAtom: readonly (readonly number[] | undefined)[] };
  /** Rules whose `to` holds it: they apply to its ingress. */
  readonly ingress: { readonly byClass: readonly (readonly number[] | undefined)[]; readonly byAtom: readonly (readonly number[] | undefined)[] };
}

const APPLICABILITY = new WeakMap<Ir, Applicability>();

/** Which rules apply to which classes and atoms (managed classes only), computed once per IR. */
export function applicability(ir: Ir): Applicability {
  const known = APPLICABILITY.get(ir);
  if (known) return known;
  const nc = ir.classes.length;
  const na = ir.atoms.length;
  const make = () => ({ byClass: new Array<number[] | undefined>(nc), byAtom: new Array<number[] | undefined>(na) });
  const egress = make();
  const ingress = make();
  const add = (arr: (number[] | undefined)[], i: number, r: number) => (arr[i] ??= []).push(r);
  for (const r of ir.rules) {
    for (const c of r.from.classes.indices()) if (ir.classes[c].managed) add(egress.byClass, c, r.index);
    for (const c of r.to.classes.indices()) if (ir.classes[c].managed) add(ingress.byClass, c, r.index);
    for (const a of r.from.atoms.indices()) add(egress.byAtom, a, r.index);
    for (const a of r.to.atoms.indices()) add(ingress.byAtom, a, r.index);
  }
  const out = { egress, ingress };
  APPLICABILITY.set(ir, out);
  return out;
}

// ---------------------------------------------------------------- build

function labelsKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  let s = '';
  for (const k of keys) s += k + '\u0000' + labels[k] + '\u0001';
  return s;
}

function timed<T>(timings: { pass: string; ms: number }[], pass: string, f: () => T): T {
  const t0 = performance.now();
  const r = f();
  timings.push({ pass, ms: performance.now() - t0 });
  return r;
}

/** Builds the IR from a checked policy. */
export function buildIr(policy: Policy, options: BuildOptions = {}): Ir {
  const diags = options.diagnostics ?? new Diagnostics();
  const timings: { pass: string; ms: number }[] = [];
  const workloads = policy.workloads;

  const named = new Set<string>();
  for (const r of policy.rules) for (const p of [...r.from, ...r.to]) if (p.kind === 'workload') named.add(p.name);

  // Workloads with the same labels get the same mode from `modes`: resolve the mode scopes once per label set, with bitsets.
  const { groupOf, groupMode } = timed(timings, 'modes', () => {
    const byKey = new Map<string, number>();
    const groups: { labels: Labels; needsMode?: Workload }[] = [];
    const groupOf = new Int32Array(workloads.length);
    workloads.forEach((w, i) => {
      const lk = labelsKey(w.labels);
      let g = byKey.get(lk);
      if (g === undefined) {
        g = groups.length;
        byKey.set(lk, g);
        groups.push({ labels: w.labels });
      }
      groupOf[i] = g;
      if (w.managed && w.mode === undefined) groups[g].needsMode ??= w;
    });
    const selectGroups = selectorResolver(groups);
    const groupMode: (Mode | undefined)[] = new Array(groups.length);
    const setBy: ModeRule[] = new Array(groups.length);
    for (const m of policy.modes) {
      for (const g of selectGroups(m.scope).indices()) {
        if (groupMode[g] === undefined) {
          groupMode[g] = m.mode;
          setBy[g] = m;
        } else if (groupMode[g] !== m.mode && groups[g].needsMode) {
          diags.error('BH702', `workload ${q(groups[g].needsMode!.name)} gets two modes: ${q(groupMode[g]!)} and ${q(m.mode)}`, m.loc, `the scope ${q(setBy[g].scope.source)} also matches it; set \`mode\` on the workload or narrow one scope`);
        }
      }
    }
    return { groupOf, groupMode };
  });

  const { classes, classOf } = timed(timings, 'classes', () => {
    const classByKey = new Map<string, number>();
    const classes: { id: number; labels: Labels; managed: boolean; mode: Mode | undefined; members: number[]; named?: string }[] = [];
    const classOf = new Int32Array(workloads.length);
    workloads.forEach((w, i) => {
      const mode = w.managed ? (w.mode ?? groupMode[groupOf[i]] ?? policy.defaultMode) : undefined;
      const name = named.has(w.name) ? w.name : undefined;
      const key = `${w.managed ? 'm' : 'u'}|${mode ?? ''}|${name ?? ''}|${groupOf[i]}`;
      let id = classByKey.get(key);
      if (id === undefined) {
        id = classes.length;
        classByKey.set(key, id);
        classes.push({ id, labels: w.labels, managed: w.managed, mode, members: [], named: name });
      }
      classes[id].members.push(i);
      classOf[i] = id;
    });
    return { classes, classOf };
  });

  const selectClasses = timed(timings, 'label-index', () => selectorResolver(classes));

  // Pass 2: peers. Selector peers to class bitsets; IP peers to address sets.
  const nClasses = classes.length;
  const classOfWorkload = new Map<string, number>();
  workloads.forEach((w, i) => classOfWorkload.set(w.name, classOf[i]));
  const reportedEmpty = new Set<string>();
  const sideCache = new Map<string, { classes: Bits; ips: IpSet }>();
  const resolved = timed(timings, 'resolve-peers', () =>
    policy.rules.map((rule) => {
      const side = (peers: readonly Peer[]) => {
        // Many rules share a side (`all()`, a shared-services group): resolve each distinct one once.
        let key = '';
        let scoped = false;
        for (const p of peers) {
          key += p.kind === 'selector' ? `s${p.global ? 'g' : ''}:${p.selector.toString()}\u0000` : p.kind === 'workload' ? `w:${p.name}\u0000` : p.kind === 'ips' ? `i:${p.name}\u0000` : '*\u0000';
          if (p.kind === 'selector' && !p.global) scoped = true;
        }
        if (scoped) key += `@${rule.scope.toString()}`;
        let known = sideCache.get(key);
        if (!known) sideCache.set(key, (known = resolveSide(peers)));
        return known;
      };
      const resolveSide = (peers: readonly Peer[]) => {
        const cls = new BitsBuilder(nClasses);
        let ips = IpSet.EMPTY;
        for (const p of peers) {
          switch (p.kind) {
            case 'selector': {
              let b = selectClasses(p.selector);
              if (b.isEmpty() && !reportedEmpty.has(p.selector.toString())) {
                reportedEmpty.add(p.selector.toString());
                diags.warning('BH602', `selector ${q(p.selector.source)} matches no workload`, p.loc, 'check the label values, or remove the peer');
              }
              if (!p.global) b = b.intersect(selectClasses(rule.scope));
              cls.or(b);
              break;
            }
            case 'workload':
              cls.set(classOfWorkload.get(p.name)!);
              break;
            case 'ips':
              ips = ips.union(p.set);
              break;
            case 'any':
              ips = IpSet.ALL;
              break;
          }
        }
        return { classes: cls.freeze(), ips };
      };
      return { rule, from: side(rule.from), to: side(rule.to) };
    }),
  );
  if (policy.rules.some((r) => r.scope.toString() !== 'all()')) {
    const seen = new Set<string>();
    for (const r of policy.rules) {
      const key = r.scope.toString();
      if (seen.has(key)) continue;
      seen.add(key);
      if (selectClasses(r.scope).isEmpty()) diags.warning('BH602', `scope ${q(r.scope.source)} of ruleset ${q(r.ruleset ?? '')} matches no workload`, r.loc, 'its rules can match no workload');
    }
  }

  // Pass 3: atoms, the partition of the address space by every IP set used.
  const { atoms, atomOfV4, atomOfV6, v4Cuts, v6Cuts } = timed(timings, 'atoms', () => {
    const sets: IpSet[] = [];
    const seen = new Set<string>();
    for (const r of resolved) {
      for (const s of [r.from.ips, r.to.ips]) {
        if (s.isEmpty()) continue;
        const k = s.toString();
        if (!seen.has(k)) {
          seen.add(k);
          sets.push(s);
        }
      }
    }
    return partition(sets);
  });

  const irRules: IrRule[] = timed(timings, 'atom-bits', () =>
    resolved.map((r, index) => {
      // INVARIANT: each atom lies wholly inside or wholly outside every IP set a rule uses.
      const atomBits = (ips: IpSet) => {
        const b = new BitsBuilder(atoms.length);
        if (!ips.isEmpty()) atoms.forEach((a, i) => !a.intersect(ips).isEmpty() && b.set(i));
        return b.freeze();
      };
      return {
        index,
        rule: r.rule,
        from: { classes: r.from.classes, ips: r.from.ips, atoms: atomBits(r.from.ips) },
        to: { classes: r.to.classes, ips: r.to.ips, atoms: atomBits(r.to.ips) },
        conns: r.rule.conns,
      };
    }),
  );

  // Pass 4: endpoints and the address map.
  const { workloadLookup, endpoints, addressMap } = timed(timings, 'address-map', () => {
    const entries: { prefix: Prefix; value: number }[] = [];
    workloads.forEach((w, i) => {
      for (const p of w.addresses) entries.push({ prefix: p, value: i });
    });
    const workloadLookup = LpmTable.build(entries);
    const wCuts4: number[] = [...v4Cuts];
    const wCuts6: bigint[] = [...v6Cuts];
    for (const e of entries) {
      const [lo, hi] = prefixRange(e.prefix);
      if (typeof lo === 'number') {
        wCuts4.push(lo);
        if ((hi as number) < 0xffffffff) wCuts4.push((hi as number) + 1);
      } else {
        wCuts6.push(lo);
        if ((hi as bigint) < (1n << 128n) - 1n) wCuts6.push((hi as bigint) + 1n);
      }
    }
    const cuts4 = [...new Set(wCuts4)].sort((a, b) => a - b);
    const cuts6 = [...new Set(wCuts6)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const endpoints: Endpoint[] = [];
    const byKey = new Map<number, number>();
    const nAtoms = atoms.length;
    const endpointOf = (cls: number, atom: number) => {
      const key = (cls + 1) * nAtoms + atom;
      let id = byKey.get(key);
      if (id === undefined) {
        id = endpoints.length;
        byKey.set(key, id);
        endpoints.push({ id, cls, atom });
      }
      return id;
    };
    // Addresses that are no workload get endpoints too, one per atom, whether or not flows will use them.
    for (let a = 0; a < nAtoms; a++) endpointOf(-1, a);
    const addressMap = AddressMap.build(cuts4, cuts6, (addr) => {
      const w = workloadLookup.lookup(addr);
      const atom = typeof addr === 'number' ? atomOfV4(addr) : atomOfV6(addr);
      return endpointOf(w === undefined ? -1 : classOf[w], atom);
    });
    return { workloadLookup, endpoints, addressMap };
  });

  return {
    policy,
    workloads,
    classes,
    classOf,
    rules: irRules,
    atoms,
    endpoints,
    endpointClass: Int32Array.from(endpoints, (e) => e.cls),
    endpointAtom: Int32Array.from(endpoints, (e) => e.atom),
    addressMap,
    workloadLookup,
    selectClasses,
    timings,
  };
}

// ---------------------------------------------------------------- selectors over classes

/**
 * Resolves selectors to class bitsets through an inverted index of label
 * values: a selector costs a few bitset operations, whatever the class count.
 */
function selectorResolver(items: readonly { readonly labels: Labels }[]): (sel: Selector) => Bits {
  const n = items.length;
  const index = new Map<string, Map<string, BitsBuilder>>();
  items.forEach((c, id) => {
    for (const [k, v] of Object.entries(c.labels)) {
      let byValue = index.get(k);
      if (!byValue) index.set(k, (byValue = new Map()));
      let b = byValue.get(v);
      if (!b) byValue.set(v, (b = new BitsBuilder(n)));
      b.set(id);
    }
  });
  const frozen = new Map<string, Map<string, Bits>>();
  for (const [k, m] of index) frozen.set(k, new Map([...m].map(([v, b]) => [v, b.freeze()])));
  const empty = Bits.empty(n);
  const full = Bits.full(n);
  const hasCache = new Map<string, Bits>();
  const has = (k: string) => {
    let b = hasCache.get(k);
    if (!b) {
      b = empty;
      for (const v of frozen.get(k)?.values() ?? []) b = b.union(v);
      hasCache.set(k, b);
    }
    return b;
  };
  const eq = (k: string, v: string) => frozen.get(k)?.get(v) ?? empty;
  const where = (k: string, pred: (v: string) => boolean) => {
    let b = empty;
    for (const [v, bits] of frozen.get(k) ?? []) if (pred(v)) b = b.union(bits);
    return b;
  };
  const evalNode = (node: SelectorNode): Bits => {
    switch (node.kind) {
      case 'all':
      case 'global':
        return full;
      case 'has':
        return has(node.label);
      case 'eq':
        return eq(node.label, node.value);
      case 'ne':
        return eq(node.label, node.value).not();
      case 'contains':
        return where(node.label, (v) => v.includes(node.value));
      case 'startsWith':
        return where(node.label, (v) => v.startsWith(node.value));
      case 'endsWith':
        return where(node.label, (v) => v.endsWith(node.value));
      case 'in':
        return node.values.reduce((b, v) => b.union(eq(node.label, v)), empty);
      case 'notIn':
        return node.values.reduce((b, v) => b.union(eq(node.label, v)), empty).not();
      case 'not':
        return evalNode(node.expr).not();
      case 'and':
        return node.exprs.reduce((b, e) => b.intersect(evalNode(e)), full);
      case 'or':
        return node.exprs.reduce((b, e) => b.union(evalNode(e)), empty);
    }
  };
  const cache = new Map<string, Bits>();
  return (sel: Selector) => {
    const key = sel.toString();
    let b = cache.get(key);
    if (!b) cache.set(key, (b = evalNode(sel.ast)));
    return b;
  };
}

// ---------------------------------------------------------------- atoms

/**
 * Partitions the address space by `sets`: the elementary segments between all
 * their boundaries, merged by which sets contain them.
 */
function partition(sets: readonly IpSet[]): {
  atoms: IpSet[];
  atomOfV4: (a: number) => number;
  atomOfV6: (a: bigint) => number;
  v4Cuts: number[];
  v6Cuts: bigint[];
} {
  const cuts4 = new Set<number>([0]);
  const cuts6 = new Set<bigint>([0n]);
  for (const s of sets) {
    for (const [lo, hi] of s.v4.intervals()) {
      cuts4.add(lo);
      if (hi < 0xffffffff) cuts4.add(hi + 1);
    }
    for (const [lo, hi] of s.v6.intervals()) {
      cuts6.add(lo);
      if (hi < (1n << 128n) - 1n) cuts6.add(hi + 1n);
    }
  }
  const v4Cuts = [...cuts4].sort((a, b) => a - b);
  const v6Cuts = [...cuts6].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const bySig = new Map<string, number>();
  const members: { v4: [number, number][]; v6: [bigint, bigint][] }[] = [];
  const sig = (a: Addr) => sets.map((s) => (s.has(a) ? '1' : '0')).join('');
  const atomIdOf = (a: Addr) => {
    const k = `${typeof a === 'number' ? 4 : 6}:${sig(a)}`;
    let id = bySig.get(k);
    if (id === undefined) {
      id = members.length;
      bySig.set(k, id);
      members.push({ v4: [], v6: [] });
    }
    return id;
  };
  const v4Atom = v4Cuts.map((c, i) => {
    const id = atomIdOf(c);
    members[id].v4.push([c, i + 1 < v4Cuts.length ? v4Cuts[i + 1] - 1 : 0xffffffff]);
    return id;
  });
  const v6Atom = v6Cuts.map((c, i) => {
    const id = atomIdOf(c);
    members[id].v6.push([c, i + 1 < v6Cuts.length ? v6Cuts[i + 1] - 1n : (1n << 128n) - 1n]);
    return id;
  });
  const atoms = members.map((m) => IpSet.fromRanges(m.v4, m.v6));
  const search = <T extends number | bigint>(cuts: readonly T[], ids: readonly number[]) => (a: T) => ids[floorIndex(cuts, a)];
  return { atoms, atomOfV4: search(v4Cuts, v4Atom), atomOfV6: search(v6Cuts, v6Atom), v4Cuts, v6Cuts };
}
