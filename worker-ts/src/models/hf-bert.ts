// Hugging Face BERT-family encoders (BERT, MiniLM) as a model kind: the architecture read from a
// local HF folder's config.json, the weights from its model.safetensors, LoRA adapters on chosen
// projections (Hu et al. 2021, as PEFT places them), mean or [CLS] pooling and a classification
// head. Every parametric piece is one of dp's DP layers (embedding, layerNorm, dense, loraDense),
// so the per-sample clipping engine computes exact per-example gradients for whatever trains; the
// glue (padding mask, attention softmax, residuals, exact GELU, pooling) lives in one
// parameter-free composite layer, like transformer-lora's.
//
// Parameter names mirror HF's module paths (`encoder.layer.0.attention.self.query.kernel`), so
// loading the base (hfName) and exporting a PEFT adapter (adapter.ts) are renames and transposes.
import fs from 'node:fs';
import path from 'node:path';
import { dense, embedding, layerNorm, loraDense, tf, type Layer, type Tensor } from '@tensorguard/dp/tfjs';
import { CheckpointError } from '../checkpoint/errors.js';
import { decodeSafetensors } from '../checkpoint/safetensors.js';
import { modelFromLayers, type ModelDef, type Tf } from './model.js';

/** The fields of a HF BERT config.json this model uses (HF's names in the comments). */
export interface BertConfig {
  vocabSize: number; // vocab_size
  hiddenSize: number; // hidden_size
  numLayers: number; // num_hidden_layers
  numHeads: number; // num_attention_heads
  intermediateSize: number; // intermediate_size
  maxPositions: number; // max_position_embeddings
  typeVocabSize: number; // type_vocab_size
  layerNormEps: number; // layer_norm_eps
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
 * Checks a parsed config.json: a BERT-architecture encoder (`model_type` 'bert', exact-erf GELU,
 * absolute positions). Throws HfModelError naming the file and the field.
 */
export function parseBertConfig(raw: unknown, file: string): BertConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new HfModelError(`${file}: config.json is not a JSON object`, file);
  const c = raw as Record<string, unknown>;
  if (c.model_type !== 'bert')
    throw new HfModelError(
      `${file}: model_type is ${JSON.stringify(c.model_type)}; model.kind 'hf-bert' loads BERT-architecture encoders (model_type "bert": BERT, MiniLM)`,
      file,
    );
  const int = (key: string, dflt?: number): number => {
    const v = c[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      throw new HfModelError(
        `${file}: ${key} must be a non-negative integer, got ${JSON.stringify(v)}`,
        file,
      );
    return v;
  };
  const act = c.hidden_act ?? 'gelu';
  if (act !== 'gelu')
    throw new HfModelError(
      `${file}: hidden_act ${JSON.stringify(act)} is not supported (only "gelu", the exact erf form)`,
      file,
    );
  const pos = c.position_embedding_type ?? 'absolute';
  if (pos !== 'absolute')
    throw new HfModelError(
      `${file}: position_embedding_type ${JSON.stringify(pos)} is not supported (only "absolute")`,
      file,
    );
  const eps = c.layer_norm_eps ?? 1e-12;
  if (typeof eps !== 'number' || !(eps > 0))
    throw new HfModelError(`${file}: layer_norm_eps must be a number > 0, got ${JSON.stringify(eps)}`, file);
  const cfg: BertConfig = {
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
  if (cfg.numHeads === 0 || cfg.hiddenSize % cfg.numHeads !== 0)
    throw new HfModelError(
      `${file}: num_attention_heads ${cfg.numHeads} does not divide hidden_size ${cfg.hiddenSize}`,
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

export interface BertLoraOptions {
  /** Adapter rank r (default 8). */
  rank?: number;
  /** Scaling α; adapters add (α/r)·x·A·B (default 8, PEFT's default). */
  alpha?: number;
  /** Targeted modules (default ['query', 'value'], PEFT's default for BERT); 'all-linear' = all four. */
  targetModules?: readonly BertLoraTarget[] | 'all-linear';
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
  targetModules: BertLoraTarget[];
}

export function compileLora(o: BertLoraOptions = {}): CompiledLora {
  const rank = o.rank ?? 8;
  if (!Number.isInteger(rank) || rank < 1)
    throw new RangeError(`model.lora.rank must be an integer ≥ 1, got ${rank}`);
  const alpha = o.alpha ?? 8;
  if (!Number.isFinite(alpha) || alpha <= 0)
    throw new RangeError(`model.lora.alpha must be a number > 0, got ${alpha}`);
  const t = o.targetModules ?? ['query', 'value'];
  const targetModules = t === 'all-linear' ? [...BERT_LORA_TARGETS] : [...new Set(t)];
  for (const m of targetModules)
    if (!BERT_LORA_TARGETS.includes(m))
      throw new RangeError(
        `model.lora.targetModules: unknown module ${JSON.stringify(m)}; use some of ${BERT_LORA_TARGETS.join(', ')} or 'all-linear'`,
      );
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
  /** HF module paths that carry LoRA adapters (`encoder.layer.0.attention.self.query`, ...). */
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
 * A BERT encoder classifier from HF's architecture: embeddings (word + position + token type 0,
 * LayerNorm), post-LN blocks of masked multi-head self-attention and an exact-GELU feed-forward,
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
  const lora = full ? null : compileLora(o.lora);
  const eps = c.layerNormEps;
  const loraModules: string[] = [];
  const linear = (name: string, target: BertLoraTarget, inputDim: number, units: number): Layer => {
    if (lora?.targetModules.includes(target)) {
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

  const word = emb('embeddings.word_embeddings', c.vocabSize);
  const position = emb('embeddings.position_embeddings', c.maxPositions);
  const tokenType = emb('embeddings.token_type_embeddings', c.typeVocabSize);
  const embNorm = norm('embeddings.LayerNorm');
  const blocks = Array.from({ length: c.numLayers }, (_, l) => {
    const p = `encoder.layer.${l}`;
    return {
      query: linear(`${p}.attention.self.query`, 'query', H, H),
      key: linear(`${p}.attention.self.key`, 'key', H, H),
      value: linear(`${p}.attention.self.value`, 'value', H, H),
      attnOut: linear(`${p}.attention.output.dense`, 'dense', H, H),
      attnNorm: norm(`${p}.attention.output.LayerNorm`),
      intermediate: linear(`${p}.intermediate.dense`, 'dense', H, c.intermediateSize),
      output: linear(`${p}.output.dense`, 'dense', c.intermediateSize, H),
      outNorm: norm(`${p}.output.LayerNorm`),
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
    const types = tf.zeros([B, T], 'int32');
    let h = tf.addN([
      word.forward(ids, ctx),
      position.forward(positions, ctx),
      tokenType.forward(types, ctx),
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
    tokenType,
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
 * parameter HF's base has (all but the adapters and the classifier). Accepts the BertModel layout
 * (`embeddings.…`, `encoder.…`) and the `bert.`-prefixed one of HF's task models, and the legacy
 * LayerNorm.gamma/beta names. Throws HfModelError naming the file and the missing or mis-shaped
 * tensor; only F32 tensors are read (a half-precision checkpoint must be converted first).
 */
export function loadHfBertBase(def: ModelDef, dir: string): Record<string, Float32Array> {
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
    return tensors[n] ?? tensors[`bert.${n}`] ?? tensors[legacy] ?? tensors[`bert.${legacy}`];
  };
  const out: Record<string, Float32Array> = {};
  for (const p of def.params) {
    const m = hfName(p.name);
    if (!m) continue;
    const t = lookup(m.hf);
    if (!t)
      throw new HfModelError(
        `${file}: tensor '${m.hf}' is missing: not a BERT checkpoint matching config.json (parameter ${p.name})`,
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
