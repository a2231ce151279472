/** The seeded estate and flow generator: pure, deterministic, no I/O. */
export { generateEstate, BREAK_GLASS_EXPIRY, ENVIRONMENTS, LOCATIONS, ROLES, type GenerateEstateOptions } from './estate.js';
export { generateFlows, type GenerateFlowsOptions } from './flows.js';
export { toYaml, toYamlFiles } from './yaml.js';
export { Rng } from './prng.js';
export type * from './types.js';
