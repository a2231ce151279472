/**
 * The shape of the policy language (docs/POLICY.md) as Zod schemas. Shape
 * only: addresses, ports, selectors, labels and references are checked by the
 * loader, which can point inside a value and report every problem at once.
 * The same schemas check API input in the server.
 */
import { z } from 'zod';
import { KINDS, MODES } from '../model/types.js';

/** Scalars that YAML may type as numbers or booleans but that we read as text (label values, ports). */
const text = z.union([z.string(), z.number(), z.boolean()]).transform((v) => String(v));

export const Mode = z.enum(MODES);

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$/;
const Name = z.string().min(1).regex(NAME_RE);

const oneOrMany = <T extends z.ZodTypeAny>(t: T) => z.union([z.array(t), t.transform((v) => [v])]);

export const WorkloadSchema = z.strictObject({
  name: Name,
  kind: z.enum(KINDS).default('host'),
  addresses: oneOrMany(z.string()),
  labels: z.record(z.string(), text).default({}),
  managed: z.boolean().default(true),
  mode: Mode.optional(),
  description: z.string().optional(),
});
export type WorkloadInput = z.output<typeof WorkloadSchema>;

export const TaxonomySchema = z.record(z.string(), z.union([z.literal('open'), z.array(text)]));

export const SettingsSchema = z.strictObject({
  defaultMode: Mode.optional(),
});

export const IpListSchema = z.strictObject({
  name: Name,
  include: oneOrMany(z.string()),
  exclude: oneOrMany(z.string()).default([]),
  description: z.string().optional(),
});
export type IpListInput = z.output<typeof IpListSchema>;

export const PortEntrySchema = z.union([
  text,
  z.strictObject({
    proto: z.string(),
    ports: oneOrMany(text).optional(),
    type: z.number().int().optional(),
    code: z.number().int().optional(),
  }),
]);
export type PortEntryInput = z.output<typeof PortEntrySchema>;

export const ServiceSchema = z.strictObject({
  name: Name,
  ports: oneOrMany(PortEntrySchema),
  process: z.string().optional(),
  user: text.optional(),
  description: z.string().optional(),
});
export type ServiceInput = z.output<typeof ServiceSchema>;

export const PeerSchema = z.union([
  z.string(),
  z.strictObject({ selector: z.string(), global: z.boolean().default(false) }),
  z.strictObject({ workload: z.string() }),
  z.strictObject({ iplist: z.string() }),
  z.strictObject({ cidr: z.string() }),
]);
export type PeerInput = z.output<typeof PeerSchema>;

const ruleFields = {
  id: Name.optional(),
  description: z.string().optional(),
  from: oneOrMany(PeerSchema),
  to: oneOrMany(PeerSchema),
  services: oneOrMany(PortEntrySchema),
  action: z.enum(['allow', 'deny']).default('allow'),
};

export const RuleSchema = z.strictObject(ruleFields);
export type RuleInput = z.output<typeof RuleSchema>;

export const RulesetSchema = z.strictObject({
  name: Name,
  scope: z.string().default('all()'),
  description: z.string().optional(),
  // Rules are checked one by one (see the loader), so one bad rule does not hide the others.
  rules: z.array(z.unknown()).default([]),
});
export type RulesetInput = z.output<typeof RulesetSchema>;

export const OverrideSchema = z.strictObject({
  ...ruleFields,
  expires: z.union([z.string(), z.date()]).optional(),
  reason: z.string().optional(),
  owner: z.string().optional(),
});
export type OverrideInput = z.output<typeof OverrideSchema>;

export const ModeEntrySchema = z.strictObject({
  scope: z.string(),
  mode: Mode,
});
export type ModeEntryInput = z.output<typeof ModeEntrySchema>;

/** Each section and the schema of one of its items (`list`) or of the whole section. */
export const SECTIONS = {
  taxonomy: { kind: 'whole', schema: TaxonomySchema },
  settings: { kind: 'whole', schema: SettingsSchema },
  inventory: { kind: 'list', schema: z.string() },
  workloads: { kind: 'list', schema: WorkloadSchema },
  iplists: { kind: 'list', schema: IpListSchema },
  services: { kind: 'list', schema: ServiceSchema },
  modes: { kind: 'list', schema: ModeEntrySchema },
  rulesets: { kind: 'list', schema: RulesetSchema },
  overrides: { kind: 'list', schema: OverrideSchema },
} as const;

export type SectionName = keyof typeof SECTIONS;
