// RunConfig: the resolved run config the coordinator and the workers read. Its schema (every
// default, every cross-field rule) is defined once, in run-config/schema.ts; the driver imports it
// for the config it produces and ray-cluster validates against the JSON schema exported from it.
// This file is the Node programs' entry point: parse with that schema, and report the first bad
// field as a ConfigError naming it.
import fs from 'node:fs';
import { issuesFromZod } from './run-config/issues.js';
import { runConfigSchema, threadBudget, type ResolvedRunConfig } from './run-config/schema.js';

export {
  runConfigSchema,
  runConfigJsonSchema,
  type ResolvedRunConfig,
  type RunConfigInput,
} from './run-config/schema.js';

type Fields<M> = M extends unknown ? Omit<M, 'kind'> : never;
type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void
  ? I
  : never;
/** A discriminated union as one object: its `kind`, and every kind's own fields optional. */
type Flat<U extends { kind: string }> = { kind: U['kind'] } & Partial<UnionToIntersection<Fields<U>>>;

/**
 * The parsed run config as the Node programs read it: `ResolvedRunConfig` (run-config/schema.ts,
 * every default filled by `parseRunConfig`) with the model's and the optimizer's kinds each
 * flattened into one object whose kind-specific fields are optional. Derived, not restated: the
 * schema is the one definition. The quorum is `secureAggregation.quorum` only; the Shamir threshold
 * is not a setting (each round derives it from its members, announcement.ts).
 */
export type RunConfig = Omit<ResolvedRunConfig, 'model' | 'optimizer'> & {
  model: Flat<ResolvedRunConfig['model']>;
  optimizer: Flat<ResolvedRunConfig['optimizer']> & { learningRate: number };
  /** Always absent: parseRunConfig refuses it (reproducible sampling is an in-process test option). */
  testingSamplingSeed?: undefined;
};

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`config field '${field}': ${message}`);
  }
}

/**
 * The clipping step's lanes for a validated config: how many processes, and each one's intra-op
 * threads (⌊cpusPerWorker / lanes⌋, at least 1). `count` 1 means the worker's own process.
 */
export function clippingLanes(workers: RunConfig['workers']): { count: number; threadsPerLane: number } {
  const count = workers.lanes ?? 1;
  return { count, threadsPerLane: Math.max(1, Math.floor(threadBudget(workers.cpusPerWorker) / count)) };
}

/**
 * Validates a parsed config object with run-config/schema.ts and fills every default. Reads two old
 * spellings: `secureAggregation.threshold` (now `quorum`) and `dataset.sharding: 'range'` (now
 * 'contiguous'). Throws ConfigError naming the first bad field.
 */
export function parseRunConfig(raw: unknown): RunConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new ConfigError('(root)', 'must be an object');
  if ('testingSamplingSeed' in raw) {
    // A known seed makes the private Poisson batches predictable to whoever knows it. Tests that
    // need reproducible sampling pass a seeded RandomSource to the round client in-process.
    throw new ConfigError(
      'testingSamplingSeed',
      'is not accepted in a job config: the sampling must be secret; remove the field',
    );
  }
  const doc = readOldNames(raw as Record<string, unknown>);
  const r = runConfigSchema.safeParse(doc);
  if (!r.success) {
    const [first] = issuesFromZod(r.error, doc);
    throw new ConfigError(first?.path || '(root)', first?.message ?? r.error.message);
  }
  return asRunConfig(r.data);
}

/** The parsed config as the Node programs read it (RunConfig's flattened kinds). */
export function asRunConfig(c: ResolvedRunConfig): RunConfig {
  return c as RunConfig;
}

function readOldNames(c: Record<string, unknown>): Record<string, unknown> {
  const dataset = c.dataset as Record<string, unknown> | undefined;
  if (typeof dataset === 'object' && dataset !== null && dataset.sharding === 'range')
    return { ...c, dataset: { ...dataset, sharding: 'contiguous' } };
  return c;
}

/** Reads and validates a JSON config file. */
export function loadRunConfig(file: string): RunConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      '(file)',
      `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('(file)', `${file} is not JSON (${(err as Error).message})`);
  }
  return parseRunConfig(raw);
}
