// Hugging Face BERT-family encoders (BERT, MiniLM, DistilBERT) as a model kind: the architecture
// read from a local HF folder's config.json, the weights from its model.safetensors, LoRA adapters on chosen
// projections (Hu et al. 2021, as PEFT places them), mean or [CLS] pooling and a classification
// head. Every parametric piece is one of dp's DP layers (embedding, layerNorm, dense, loraDense),
// so the per-sample clipping engine computes exact per-example gradients for whatever trains; the
// glue (padding mask, attention softmax, residuals, exact GELU, pooling) lives in one
// parameter-free composite layer, like transformer-lora's.
//
// DistilBERT (Sanh et al. 2019, "DistilBERT, a distilled version of BERT") is BERT's post-LN block
// without token-type embeddings (and without the pooler, which this model does not use either), so
// it runs on the same graph: only the names differ (ARCHITECTURES below).
//
// Parameter names mirror HF's module paths (`encoder.layer.0.attention.self.query.kernel`,
// `transformer.layer.0.attention.q_lin.kernel`), so loading the base (hfName) and exporting a PEFT
// adapter (peft.ts) are renames and transposes.
import fs from 'node:fs';
import path from 'node:path';
import { dense, embedding, layerNorm, loraDense, tf, type Layer, type Tensor } from '@tensorguard/dp/tfjs';
import { CheckpointError } from '../checkpoint/errors.js';
import { decodeSafetensors } from '../checkpoint/safetensors.js';
import { modelFromLayers, type ModelDef, type Tf } from './model.js';

/** The config.json `model_type`s this model loads. */
export const HF_MODEL_TYPES = ['bert', 'distilbert'] as const;
export type HfModelType = (typeof HF_MODEL_TYPES)[number];

/**
 * The fields of a HF BERT-family config.json this model uses (HF's names in the comments: BERT's,
 * then DistilBERT's where they differ).
 */
export interface BertConfig {
  modelType: HfModelType; // model_type
  vocabSize: number; // vocab_size
  hiddenSize: number; // hidden_size; dim
  numLayers: number; // num_hidden_layers; n_layers
  numHeads: number; // num_attention_heads; n_heads
  intermediateSize: number; // intermediate_size; hidden_dim
  maxPositions: number; // max_position_embeddings
  typeVocabSize: number; // type_vocab_size; 0 for DistilBERT, which has no token-type embeddings
  layerNormEps: number; // layer_norm_eps; DistilBERT's is fixed at 1e-12 in its modeling code
  padTokenId: number; // pad_token_id
}

export class HfModelError extends Error {
  override name = 'HfModelError';
  constructor(
    message: string,
    /** The file or folder at fault. */
    readonly file: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * Checks a parsed config.json: a BERT-architecture encoder, `model_type` "bert" (BERT, MiniLM) or
 * "distilbert" (DistilBERT), with exact-erf GELU and learned absolute positions. Throws
 * HfModelError naming the file and the field.
 */
export function parseBertConfig(raw: unknown, file: string): BertConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new HfModelError(`${file}: config.json is not a JSON object`, file);
  const c = raw as Record<string, unknown>;
  const int = (key: string, dflt?: number): number => {
    const v = c[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      throw new HfModelError(
        `${file}: ${key} must be a non-negative integer, got ${JSON.stringify(v)}`,
        file,
      );
    return v;
  };
  const gelu = (key: string) => {
    const act = c[key] ?? 'gelu';
    if (act !== 'gelu')
      throw new HfModelError(
        `${file}: ${key} ${JSON.stringify(act)} is not supported (only "gelu", the exact erf form)`,
        file,
      );
  };
  let cfg: BertConfig;
  let heads: [string, string];
  if (c.model_type === 'bert') {
    gelu('hidden_act');
    const pos = c.position_embedding_type ?? 'absolute';
    if (pos !== 'absolute')
      throw new HfModelError(
        `${file}: position_embedding_type ${JSON.stringify(pos)} is not supported (only "absolute")`,
        file,
      );
    const eps = c.layer_norm_eps ?? 1e-12;
    if (typeof eps !== 'number' || !(eps > 0))
      throw new HfModelError(
        `${file}: layer_norm_eps must be a number > 0, got ${JSON.stringify(eps)}`,
        file,
      );
    cfg = {
      modelType: 'bert',
      vocabSize: int('vocab_size'),
      hiddenSize: int('hidden_size'),
      numLayers: int('num_hidden_layers'),
      numHeads: int('num_attention_heads'),
      intermediateSize: int('intermediate_size'),
      maxPositions: int('max_position_embeddings', 512),
      typeVocabSize: int('type_vocab_size', 2),
      layerNormEps: eps,
      padTokenId: int('pad_token_id', 0),
    };
    heads = ['num_attention_heads', 'hidden_size'];
  } else if (c.model_type === 'distilbert') {
    gelu('activation');
    // Sinusoidal positions are fixed (not trained) in HF's DistilBERT; no released checkpoint
    // uses them, so they are refused rather than silently trained in model.train 'full'.
    if ((c.sinusoidal_pos_embds ?? false) !== false)
      throw new HfModelError(
        `${file}: sinusoidal_pos_embds ${JSON.stringify(c.sinusoidal_pos_embds)} is not supported (only false: learned position embeddings, as distilbert-base-*)`,
        file,
      );
    cfg = {
      modelType: 'distilbert',
      vocabSize: int('vocab_size'),
      hiddenSize: int('dim'),
      numLayers: int('n_layers'),
      numHeads: int('n_heads'),
      intermediateSize: int('hidden_dim'),
      maxPositions: int('max_position_embeddings', 512),
      typeVocabSize: 0,
      // modeling_distilbert.py builds every LayerNorm with eps=1e-12; the config has no field.
      layerNormEps: 1e-12,
      padTokenId: int('pad_token_id', 0),
    };
    heads = ['n_heads', 'dim'];
  } else
    throw new HfModelError(
      `${file}: model_type is ${JSON.stringify(c.model_type)}; model.kind 'hf-bert' loads BERT-architecture encoders: model_type "bert" (BERT, MiniLM) or "distilbert" (DistilBERT)`,
      file,
    );
  if (cfg.numHeads === 0 || cfg.hiddenSize % cfg.numHeads !== 0)
    throw new HfModelError(
      `${file}: ${heads[0]} ${cfg.numHeads} does not divide ${heads[1]} ${cfg.hiddenSize}`,
      file,
    );
  return cfg;
}

/** Reads and checks `<dir>/config.json`. */
export function readBertConfig(dir: string): BertConfig {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new HfModelError(
      `${file}: cannot read the model's config.json (${(err as NodeJS.ErrnoException).code}): model.path must be a Hugging Face model folder`,
      file,
      { cause: err },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new HfModelError(`${file}: config.json is not JSON (${(err as Error).message})`, file, {
      cause: err,
    });
  }
  return parseBertConfig(raw, file);
}

/**
 * The linear modules LoRA can target, by PEFT's module names for BERT: `query`, `key`, `value`
 * (self-attention) and `dense` (the attention output, intermediate and output projections of every
 * layer; not the pooler, which this model does not use).
 */
export const BERT_LORA_TARGETS = ['query', 'key', 'value', 'dense'] as const;
export type BertLoraTarget = (typeof BERT_LORA_TARGETS)[number];

/**
 * DistilBERT's linear modules, by its own module names: `q_lin`, `k_lin`, `v_lin`, `out_lin`
 * (self-attention and its output) and `lin1`, `lin2` (the feed-forward network).
 */
export const DISTILBERT_LORA_TARGETS = ['q_lin', 'k_lin', 'v_lin', 'out_lin', 'lin1', 'lin2'] as const;
export type DistilBertLoraTarget = (typeof DISTILBERT_LORA_TARGETS)[number];

/** A LoRA target in either model's vocabulary (model.lora.targetModules). */
export type HfLoraTarget = BertLoraTarget | DistilBertLoraTarget;

/** The block's modules, in the order the graph applies them. */
type BlockModule = 'query' | 'key' | 'value' | 'attnOut' | 'attnNorm' | 'intermediate' | 'output' | 'outNorm';

/**
 * What differs between the BERT-family architectures that share this graph: HF's module paths, the
 * prefix of their task models' checkpoints, and the LoRA targets' vocabulary.
 */
interface Architecture {
  /** For messages. */
  label: string;
  /** The prefix a task model (…ForSequenceClassification) puts before the base's tensor names. */
  checkpointPrefix: string;
  word: string;
  position: string;
  /** null: no token-type embeddings. */
  tokenType: string | null;
  embNorm: string;
  /** Layer l's path. */
  layer: (l: number) => string;
  /** Each block module's path below the layer, and the LoRA target that adapts it (linear ones). */
  block: Record<BlockModule, { path: string; target?: HfLoraTarget }>;
  targets: readonly HfLoraTarget[];
  /** PEFT's default (BERT) or its counterpart (DistilBERT, for which PEFT has none). */
  defaultTargets: readonly HfLoraTarget[];
  /** Other names accepted in model.lora.targetModules, and the targets each stands for. */
  aliases: Partial<Record<HfLoraTarget, readonly HfLoraTarget[]>>;
}

const ARCHITECTURES: Record<HfModelType, Architecture> = {
  bert: {
    label: 'BERT',
    checkpointPrefix: 'bert.',
    word: 'embeddings.word_embeddings',
    position: 'embeddings.position_embeddings',
    tokenType: 'embeddings.token_type_embeddings',
    embNorm: 'embeddings.LayerNorm',
    layer: (l) => `encoder.layer.${l}`,
    block: {
      query: { path: 'attention.self.query', target: 'query' },
      key: { path: 'attention.self.key', target: 'key' },
      value: { path: 'attention.self.value', target: 'value' },
      attnOut: { path: 'attention.output.dense', target: 'dense' },
      attnNorm: { path: 'attention.output.LayerNorm' },
      intermediate: { path: 'intermediate.dense', target: 'dense' },
      output: { path: 'output.dense', target: 'dense' },
      outNorm: { path: 'output.LayerNorm' },
    },
    targets: BERT_LORA_TARGETS,
    defaultTargets: ['query', 'value'],
    aliases: {},
  },
  distilbert: {
    label: 'DistilBERT',
    checkpointPrefix: 'distilbert.',
    word: 'embeddings.word_embeddings',
    position: 'embeddings.position_embeddings',
    tokenType: null,
    embNorm: 'embeddings.LayerNorm',
    layer: (l) => `transformer.layer.${l}`,
    block: {
      query: { path: 'attention.q_lin', target: 'q_lin' },
      key: { path: 'attention.k_lin', target: 'k_lin' },
      value: { path: 'attention.v_lin', target: 'v_lin' },
      attnOut: { path: 'attention.out_lin', target: 'out_lin' },
      attnNorm: { path: 'sa_layer_norm' },
      intermediate: { path: 'ffn.lin1', target: 'lin1' },
      output: { path: 'ffn.lin2', target: 'lin2' },
      outNorm: { path: 'output_layer_norm' },
    },
    targets: DISTILBERT_LORA_TARGETS,
    // PEFT 0.21 has no default for DistilBERT (LoraConfig without target_modules fails on it);
    // q_lin/v_lin are the same projections as BERT's default, and what HF's DistilBERT LoRA
    // examples use.
    defaultTargets: ['q_lin', 'v_lin'],
    // BERT's names are accepted for the same projections, so that one job file (and the run
    // config's default ['query', 'value']) works for either family and means the same thing; they
    // are translated here, and everything downstream (parameter names, the PEFT adapter's
    // target_modules) uses DistilBERT's own names, which are what PEFT needs.
    aliases: {
      query: ['q_lin'],
      key: ['k_lin'],
      value: ['v_lin'],
      dense: ['out_lin', 'lin1', 'lin2'],
    },
  },
};

export interface BertLoraOptions {
  /** Adapter rank r (default 8). */
  rank?: number;
  /** Scaling α; adapters add (α/r)·x·A·B (default 8, PEFT's default). */
  alpha?: number;
  /**
   * Targeted modules in the model's own vocabulary (BERT_LORA_TARGETS, DISTILBERT_LORA_TARGETS;
   * DistilBERT also takes BERT's names for the same projections); 'all-linear' = every one.
   * Default: ['query', 'value'] for BERT (PEFT's default), ['q_lin', 'v_lin'] for DistilBERT.
   */
  targetModules?: readonly HfLoraTarget[] | 'all-linear';
}

export type BertPooling = 'mean' | 'cls';

export interface HfBertOptions {
  config: BertConfig;
  /** Tokens per record (padded with pad_token_id); at most max_position_embeddings. */
  seqLen: number;
  numClasses: number;
  /** 'mean' (default: masked mean over tokens, as sentence-transformers) or 'cls' (the first token). */
  pooling?: BertPooling;
  /**
   * 'lora' (default): the base is frozen, the adapters and the classifier train. 'full': no
   * adapters, every parameter trains (small models and the per-sample rules' tests).
   */
  train?: 'lora' | 'full';
  lora?: BertLoraOptions;
}

export interface CompiledLora {
  rank: number;
  alpha: number;
  /** In the model's own vocabulary (aliases resolved), without repeats. */
  targetModules: HfLoraTarget[];
}

/**
 * Checks the LoRA options against the architecture (default 'bert') and resolves its defaults and
 * aliases. Throws RangeError naming the field.
 */
export function compileLora(o: BertLoraOptions = {}, modelType: HfModelType = 'bert'): CompiledLora {
  const arch = ARCHITECTURES[modelType];
  const rank = o.rank ?? 8;
  if (!Number.isInteger(rank) || rank < 1)
    throw new RangeError(`model.lora.rank must be an integer ≥ 1, got ${rank}`);
  const alpha = o.alpha ?? 8;
  if (!Number.isFinite(alpha) || alpha <= 0)
    throw new RangeError(`model.lora.alpha must be a number > 0, got ${alpha}`);
  const t = o.targetModules ?? arch.defaultTargets;
  const named = t === 'all-linear' ? arch.targets : t;
  const targetModules: HfLoraTarget[] = [];
  for (const m of named) {
    const resolved = arch.targets.includes(m) ? [m] : arch.aliases[m];
    if (!resolved)
      throw new RangeError(
        `model.lora.targetModules: unknown module ${JSON.stringify(m)} for a ${arch.label} model (model_type "${modelType}"); use some of ${arch.targets.join(', ')}${Object.keys(arch.aliases).length ? ` (or BERT's ${Object.keys(arch.aliases).join(', ')})` : ''} or 'all-linear'`,
      );
    for (const r of resolved) if (!targetModules.includes(r)) targetModules.push(r);
  }
  if (targetModules.length === 0)
    throw new RangeError('model.lora.targetModules must name at least one module');
  return { rank, alpha, targetModules };
}

/** Tokens (examples × seqLen) per clipping chunk and evaluation batch. */
const TOKENS_PER_CHUNK = 1024;

export interface HfBertModelDef extends ModelDef {
  config: BertConfig;
  pooling: BertPooling;
  /** The adapters' settings; null when training the full model. */
  lora: CompiledLora | null;
  /**
   * HF module paths that carry LoRA adapters (`encoder.layer.0.attention.self.query`,
   * `transformer.layer.0.attention.q_lin`, ...).
   */
  loraModules: string[];
  /** Pooled embeddings [B, hidden] (before the classifier) from token ids [B, seqLen]. */
  pooled(tf: Tf, p: Record<string, Tensor>, x: Tensor): Tensor;
}

/**
 * GELU, exact form (HF's "gelu"): 0.5·x·(1 + erf(x/√2)), with its gradient written out,
 * dy·(Φ(x) + x·φ(x)). dp's gelu is the tanh approximation, which differs by up to ~1e-3: too much
 * for parity with transformers.
 */
const geluErf: (x: Tensor) => Tensor = tf.customGrad(((x: Tensor, save: (t: Tensor[]) => void) => {
  const cdf = tf.mul(tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1), 0.5);
  save([x, cdf]);
  return {
    value: tf.mul(x, cdf),
    gradFunc: (dy: Tensor, [xs, c]: Tensor[]) => {
      const pdf = tf.mul(tf.exp(tf.mul(tf.square(xs!), -0.5)), 1 / Math.sqrt(2 * Math.PI));
      return tf.mul(dy, tf.add(c!, tf.mul(xs!, pdf)));
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: Tensor) => Tensor;

/**
 * A BERT encoder classifier from HF's architecture: embeddings (word + position + token type 0
 * (BERT; DistilBERT has none), LayerNorm), post-LN blocks of masked multi-head self-attention and an exact-GELU feed-forward,
 * pooling (masked mean or [CLS]) and a dense classifier. Input: int32 token ids [B, seqLen], padded
 * with pad_token_id; the attention mask is ids ≠ pad_token_id (a WordPiece vocabulary never emits
 * [PAD] inside a text), applied to the keys and to the mean. Dropout is not applied (DP-SGD's noise
 * is the regulariser; HF's eval mode). With LoRA (default) the base is frozen: its tensors are
 * read, never copied per example, and the adapters (A ~ N(0, 1/(3·Din)), the variance of PEFT's
 * Kaiming-uniform; B = 0) and the classifier train.
 */
export function hfBert(o: HfBertOptions): HfBertModelDef {
  const c = o.config;
  const H = c.hiddenSize;
  const T = o.seqLen;
  if (!Number.isInteger(T) || T < 1 || T > c.maxPositions)
    throw new RangeError(
      `sequence length ${T} must be an integer in [1, max_position_embeddings = ${c.maxPositions}]`,
    );
  const pooling = o.pooling ?? 'mean';
  const full = (o.train ?? 'lora') === 'full';
  const lora = full ? null : compileLora(o.lora, c.modelType);
  const arch = ARCHITECTURES[c.modelType];
  const eps = c.layerNormEps;
  const loraModules: string[] = [];
  const linear = (name: string, target: HfLoraTarget | undefined, inputDim: number, units: number): Layer => {
    if (target && lora?.targetModules.includes(target)) {
      loraModules.push(name);
      return loraDense(name, {
        inputDim,
        units,
        rank: lora.rank,
        alpha: lora.alpha,
        initStddev: 1 / Math.sqrt(3 * inputDim),
      });
    }
    return dense(name, { inputDim, units, trainable: full });
  };
  const norm = (name: string) => layerNorm(name, { dim: H, epsilon: eps, trainable: full });
  const emb = (name: string, rows: number) => embedding(name, { vocabSize: rows, dim: H, trainable: full });

  const word = emb(arch.word, c.vocabSize);
  const position = emb(arch.position, c.maxPositions);
  const tokenType = arch.tokenType === null ? null : emb(arch.tokenType, c.typeVocabSize);
  const embNorm = norm(arch.embNorm);
  const blocks = Array.from({ length: c.numLayers }, (_, l) => {
    const m = (k: BlockModule) => `${arch.layer(l)}.${arch.block[k].path}`;
    const lin = (k: BlockModule, inputDim: number, units: number) =>
      linear(m(k), arch.block[k].target, inputDim, units);
    return {
      query: lin('query', H, H),
      key: lin('key', H, H),
      value: lin('value', H, H),
      attnOut: lin('attnOut', H, H),
      attnNorm: norm(m('attnNorm')),
      intermediate: lin('intermediate', H, c.intermediateSize),
      output: lin('output', c.intermediateSize, H),
      outNorm: norm(m('outNorm')),
    };
  });
  const classifier = dense('classifier', { inputDim: H, units: o.numClasses });
  const heads = c.numHeads;
  const dh = H / heads;

  // Input [B, L] with L ≤ seqLen: a batch cut to its longest record (length-grouped micro-batches,
  // length-groups.ts) gives each record the same outputs and gradients as padding to seqLen.
  const pooled = (x: Tensor, ctx: Parameters<Layer['forward']>[1]): Tensor => {
    const B = x.shape[0]!;
    const T = x.shape[1] ?? o.seqLen;
    if (x.shape.length !== 2 || T < 1 || T > o.seqLen)
      throw new RangeError(
        `hf-bert input must be token ids [batch, length] with 1 ≤ length ≤ ${o.seqLen}, got [${x.shape.join(', ')}]`,
      );
    const ids = tf.cast(x, 'int32');
    const mask = tf.cast(tf.notEqual(ids, c.padTokenId), 'float32'); // [B, T]
    const positions = tf.tile(tf.reshape(tf.range(0, T, 1, 'int32'), [1, T]), [B, 1]);
    let h = tf.addN([
      word.forward(ids, ctx),
      position.forward(positions, ctx),
      ...(tokenType ? [tokenType.forward(tf.zeros([B, T], 'int32'), ctx)] : []),
    ]);
    h = embNorm.forward(h, ctx);
    // Additive key mask: −1e9 on padded keys, so they get exactly zero attention weight.
    const keyMask = tf.reshape(tf.mul(tf.sub(1, mask), -1e9), [B, 1, 1, T]);
    const split = (t: Tensor) => tf.transpose(tf.reshape(t, [B, T, heads, dh]), [0, 2, 1, 3]);
    for (const b of blocks) {
      // (q/√dh)·kᵀ: the scale touches [B, T, H], not [B, heads, T, T].
      const q = split(tf.mul(b.query.forward(h, ctx), 1 / Math.sqrt(dh)));
      const k = split(b.key.forward(h, ctx));
      const v = split(b.value.forward(h, ctx));
      const scores = tf.add(tf.matMul(q, k, false, true), keyMask);
      const mixed = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores, -1), v), [0, 2, 1, 3]), [B, T, H]);
      h = b.attnNorm.forward(tf.add(b.attnOut.forward(mixed, ctx), h), ctx);
      const inner = geluErf(b.intermediate.forward(h, ctx));
      h = b.outNorm.forward(tf.add(b.output.forward(inner, ctx), h), ctx);
    }
    if (pooling === 'cls') return tf.reshape(tf.slice(h, [0, 0, 0], [B, 1, H]), [B, H]);
    const summed = tf.sum(tf.mul(h, tf.expandDims(mask, 2)), 1);
    return tf.div(summed, tf.maximum(tf.sum(mask, 1, true), 1e-9));
  };

  const children: Layer[] = [
    word,
    position,
    ...(tokenType ? [tokenType] : []),
    embNorm,
    ...blocks.flatMap((b) => Object.values(b)),
    classifier,
  ];
  const encoder: Layer = {
    kind: 'hfBertEncoder',
    name: 'bert',
    params: [],
    children,
    forward(x, ctx) {
      return classifier.forward(pooled(x, ctx), ctx);
    },
  };
  const def = modelFromLayers({
    kind: 'hf-bert',
    inputShape: [T],
    inputDtype: 'int32',
    numClasses: o.numClasses,
    layers: [encoder],
  });
  return {
    ...def,
    // ~1024 tokens per chunk: a chunk's traced activations (≈ 0.7 MB per token for MiniLM: every
    // intermediate of the forward lives until the chunk's backward) stay under ~1 GB.
    maxChunkSize: Math.max(1, Math.floor(TOKENS_PER_CHUNK / T)),
    tokensPerChunk: TOKENS_PER_CHUNK,
    sequenceLengths: (ids, batch) => recordLengths(ids, batch, T, c.padTokenId),
    config: c,
    pooling,
    lora,
    loraModules,
    pooled(_tf, p, x) {
      const ctx = {
        param: (n: string) => {
          const t = p[n];
          if (!t) throw new RangeError(`parameter '${n}' has no value`);
          return t;
        },
        site: (_l: Layer, _s: unknown, z: Tensor) => z,
      };
      return pooled(x, ctx);
    },
  };
}

/**
 * The HF tensor name of one of this model's base parameters, and whether it is stored transposed
 * (torch's Linear keeps [out, in]; dp's dense kernel is [in, out]). Null for the parameters HF's
 * base model does not have (adapters, classifier).
 */
export function hfName(name: string): { hf: string; transpose: boolean } | null {
  if (name.includes('.lora_') || name.startsWith('classifier.')) return null;
  const dot = name.lastIndexOf('.');
  const [module, local] = [name.slice(0, dot), name.slice(dot + 1)];
  switch (local) {
    case 'kernel':
      return { hf: `${module}.weight`, transpose: true };
    case 'bias':
      return { hf: `${module}.bias`, transpose: false };
    case 'gamma':
      return { hf: `${module}.weight`, transpose: false };
    case 'beta':
      return { hf: `${module}.bias`, transpose: false };
    case 'embeddings':
      return { hf: `${module}.weight`, transpose: false };
    default:
      return null;
  }
}

/**
 * Each record's length in token ids [batch, seqLen] (row-major): its last non-padding position + 1
 * (at least 1). Padding only ever follows the text (encodeTextRecords), so the positions past a
 * record's length are padding, which the attention mask and the mean pool ignore.
 */
export function recordLengths(
  ids: ArrayLike<number>,
  batch: number,
  seqLen: number,
  padId: number,
): Int32Array {
  if (ids.length !== batch * seqLen)
    throw new RangeError(`token ids hold ${ids.length} values, not ${batch} records × ${seqLen}`);
  const out = new Int32Array(batch);
  for (let r = 0; r < batch; r++) {
    let L = seqLen;
    while (L > 1 && ids[r * seqLen + L - 1] === padId) L--;
    out[r] = L;
  }
  return out;
}

export function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = src[i * cols + j]!;
  return out;
}

/**
 * The base model's tensors from `<dir>/model.safetensors`, by this model's parameter names: every
 * parameter HF's base has (all but the adapters and the classifier). Accepts the base model's layout
 * (BertModel: `embeddings.…`, `encoder.…`; DistilBertModel: `embeddings.…`, `transformer.…`) and
 * the `bert.`- or `distilbert.`-prefixed one of HF's task models, and the legacy
 * LayerNorm.gamma/beta names. Throws HfModelError naming the file and the missing or mis-shaped
 * tensor; only F32 tensors are read (a half-precision checkpoint must be converted first).
 */
export function loadHfBertBase(def: HfBertModelDef, dir: string): Record<string, Float32Array> {
  const arch = ARCHITECTURES[def.config.modelType];
  const file = path.join(dir, 'model.safetensors');
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new HfModelError(
      `${file}: cannot read the model's weights (${(err as NodeJS.ErrnoException).code}): the folder needs model.safetensors (convert a pytorch_model.bin with transformers' save_pretrained(..., safe_serialization=True))`,
      file,
      { cause: err },
    );
  }
  let tensors;
  try {
    tensors = decodeSafetensors(bytes, file).tensors;
  } catch (err) {
    if (err instanceof CheckpointError) throw new HfModelError(err.message, file, { cause: err });
    throw err;
  }
  const lookup = (n: string) => {
    const legacy = n
      .replace(/LayerNorm\.weight$/, 'LayerNorm.gamma')
      .replace(/LayerNorm\.bias$/, 'LayerNorm.beta');
    const pre = arch.checkpointPrefix;
    return tensors[n] ?? tensors[`${pre}${n}`] ?? tensors[legacy] ?? tensors[`${pre}${legacy}`];
  };
  const out: Record<string, Float32Array> = {};
  for (const p of def.params) {
    const m = hfName(p.name);
    if (!m) continue;
    const t = lookup(m.hf);
    if (!t)
      throw new HfModelError(
        `${file}: tensor '${m.hf}' is missing: not a ${arch.label} checkpoint matching config.json (parameter ${p.name})`,
        file,
      );
    const shape = m.transpose ? [p.shape[1]!, p.shape[0]!] : p.shape;
    if (t.dtype !== 'F32' || t.shape.join(',') !== shape.join(','))
      throw new HfModelError(
        `${file}: tensor '${m.hf}' is ${t.dtype}[${t.shape.join(', ')}], the model needs F32[${shape.join(', ')}] (config.json and the weights disagree, or a half-precision checkpoint: save it as float32)`,
        file,
      );
    const data = t.data as Float32Array;
    out[p.name] = m.transpose ? transpose2d(data, shape[0]!, shape[1]!) : Float32Array.from(data);
  }
  return out;
}
