// The job spec as users write it (YAML or JSON): one zod schema that validates and fills in
// defaults. Its pieces are the run config's (worker-ts/src/run-config/schema.ts: every default is
// stated once, there); only what the driver resolves before a job starts differs here: σ from
// privacy.targetEpsilon, the sampling rate from privacy.expectedBatchSize, the quorum as a fraction
// of workers.count, 'lora' as trainable, the checkpoint folder, evaluation.testPath. Cross-field
// rules (exactly one of…, quorum ≤ count) are in checks.ts, so that they run even when another
// field is bad. Units live in names (…Ms, …Bytes); docs/job-spec.md lists every default. Unknown
// keys are errors (a typo must not silently fall back to a default).
import {
  checkpointEveryRoundsSchema,
  cnnTanhModelSchema,
  coordinatorShape,
  datasetSchema,
  envelopeSchema,
  evaluationEveryRoundsSchema,
  hfBertModelSchema,
  jobNameSchema,
  mlpModelSchema,
  optimizerSchema,
  privacyShape,
  roundTimeoutMsSchema,
  secureAggregationShape,
  THRESHOLD_ALIAS_NOTE,
  transformerLoraModelSchema,
  workersSchema,
} from '@tensorguard/worker/run-config';
import { z } from 'zod';

export { datasetSchema, optimizerSchema, workersSchema };

const positive = z.number().positive();
const posInt = z.number().int().min(1);
const path = z.string().min(1);

/**
 * Which parameters train: 'lora' (the LoRA adapters and the head) or parameter-name substrings.
 * Default: the run config's (transformer-lora: 'lora'; mlp, cnn-tanh: every parameter).
 */
const trainable = z.union([z.literal('lora'), z.array(z.string().min(1)).min(1)], {
  error: "must be 'lora' or a list of parameter-name substrings",
});

export const modelSchema = z.discriminatedUnion('kind', [
  mlpModelSchema.extend({ trainable: trainable.optional() }),
  cnnTanhModelSchema.extend({ trainable: trainable.optional() }),
  transformerLoraModelSchema.extend({ trainable: trainable.optional() }),
  hfBertModelSchema,
]);

export const coordinatorSchema = z.strictObject(coordinatorShape);

export const privacySchema = z.strictObject({
  ...privacyShape,
  /** σ: noise std of the sum is σ·C. Exactly one of noiseMultiplier and targetEpsilon. */
  noiseMultiplier: privacyShape.noiseMultiplier.optional(),
  /** The ε to reach after all rounds; the driver calibrates σ for it. */
  targetEpsilon: positive.optional(),
  /** Poisson sampling rate q of every record per round. Exactly one of this and expectedBatchSize. */
  samplingRate: privacyShape.samplingRate.optional(),
  /** Expected records per round over all workers (q = this / training records). */
  expectedBatchSize: posInt.optional(),
});

/** The quorum when the spec gives none: half the workers, rounded up. */
export const DEFAULT_QUORUM = 0.5;

/** A fraction of workers.count in (0, 1) (rounded up), or an integer count ≥ 1. */
const quorum = z
  .number()
  .positive()
  .refine((t) => t < 1 || Number.isInteger(t), {
    message: 'must be a fraction in (0, 1) or an integer count ≥ 1',
  });

export const secureAggregationSchema = z
  .strictObject({
    ...secureAggregationShape,
    /**
     * The fewest contributors a round's sum may be released with: a fraction of workers.count in
     * (0, 1) (rounded up) or an integer count ≥ 1. Default 0.5. (Not the Shamir threshold, which
     * each round derives from its members.)
     */
    quorum: quorum.optional(),
    threshold: quorum
      .optional()
      .meta({ deprecated: true, description: `${THRESHOLD_ALIAS_NOTE}; write quorum instead` }),
  })
  .transform(({ threshold, ...sa }) => ({ ...sa, quorum: sa.quorum ?? threshold ?? DEFAULT_QUORUM }));

export const jobSpecSchema = z.strictObject({
  /** Job name: lowercase letters, digits and '-', at most 40 characters. */
  name: jobNameSchema,
  model: modelSchema,
  dataset: datasetSchema,
  workers: workersSchema,
  coordinator: coordinatorSchema.prefault({}),
  privacy: privacySchema,
  secureAggregation: secureAggregationSchema.prefault({}),
  optimizer: optimizerSchema,
  /** Training rounds (one secure-aggregated DP-SGD step each). */
  rounds: posInt,
  evaluation: z
    .strictObject({
      everyRounds: evaluationEveryRoundsSchema,
      /** Held-out data; overrides dataset.testPath. */
      testPath: path.optional(),
    })
    .prefault({}),
  checkpoint: z
    .strictObject({
      /** Directory for checkpoints. Default: <repo>/.tensorguard/jobs/<job id>/checkpoints. */
      dir: path.optional(),
      everyRounds: checkpointEveryRoundsSchema,
    })
    .prefault({}),
  envelope: envelopeSchema,
  roundTimeoutMs: roundTimeoutMsSchema,
});

/** The spec as written (optional fields may be left out). */
export type JobSpecInput = z.input<typeof jobSpecSchema>;
/** The validated spec with every default filled in. */
export type JobSpec = z.output<typeof jobSpecSchema>;
