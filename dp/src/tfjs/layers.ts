// Layer constructors. Parametric layers (dense, conv2d, embedding, layerNorm, groupNorm,
// loraDense) report their linear pieces as sites; the rest are parameter-free and need no rule.
// Every parameter is `<layer name>.<local name>`; names must be unique within a model.
import tf, {
  type Tensor,
  type Tensor4D,
  geluKernel,
  layerNormKernel,
  maxPool2d,
  sigmoidGrad,
  tanh,
} from './tf.js';
import type { ForwardContext, Layer, LoraBlock, ParamInit, ParamSpec } from './layer.js';

const glorot = (fanIn: number, fanOut: number): ParamInit => ({ uniform: Math.sqrt(6 / (fanIn + fanOut)) });

const spec = (name: string, shape: number[], trainable: boolean, init: ParamInit): ParamSpec => ({
  name,
  shape,
  trainable,
  init,
});

/** x [B, ..., Din] · W [Din, Dout] without materialising a broadcast weight. */
function matMulLast(x: Tensor, w: Tensor): Tensor {
  if (x.rank === 2) return tf.matMul(x, w);
  const din = x.shape[x.rank - 1]!;
  const out = tf.matMul(tf.reshape(x, [-1, din]), w);
  return tf.reshape(out, [...x.shape.slice(0, -1), w.shape[1]!]);
}

export interface DenseOptions {
  inputDim: number;
  units: number;
  /** Adds a bias (default true). */
  useBias?: boolean;
  /** Whether the kernel and bias train (default true). */
  trainable?: boolean;
}

/** z = x·W + b on the last axis; x is [B, Din] or a sequence [B, T, Din]. */
export function dense(name: string, o: DenseOptions): Layer {
  const w = `${name}.kernel`;
  const b = o.useBias === false ? null : `${name}.bias`;
  const trainable = o.trainable ?? true;
  const params = [spec(w, [o.inputDim, o.units], trainable, glorot(o.inputDim, o.units))];
  if (b) params.push(spec(b, [o.units], trainable, 'zeros'));
  return {
    kind: 'dense',
    name,
    params,
    children: [],
    forward(x, ctx) {
      let z = matMulLast(x, ctx.param(w));
      if (b) z = tf.add(z, ctx.param(b));
      return ctx.site(this, { rule: 'linear', input: x, weight: w, bias: b }, z);
    },
  };
}

export interface Conv2DOptions {
  inChannels: number;
  filters: number;
  kernelSize: number | [number, number];
  /** Default 1. */
  strides?: number | [number, number];
  /** Default 'valid'. */
  padding?: 'same' | 'valid';
  /** Default true. */
  useBias?: boolean;
  /** Default true. */
  trainable?: boolean;
}

type SaveFn = (tensors: Tensor[]) => void;
type CustomGradFn = Parameters<typeof tf.customGrad>[0];

const pair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);

/** 2-D convolution, NHWC input, kernel [kh, kw, Cin, Cout]. */
export function conv2d(name: string, o: Conv2DOptions): Layer {
  const [kh, kw] = pair(o.kernelSize);
  const strides = pair(o.strides ?? 1);
  const padding = o.padding ?? 'valid';
  const w = `${name}.kernel`;
  const b = o.useBias === false ? null : `${name}.bias`;
  const trainable = o.trainable ?? true;
  const params = [
    spec(
      w,
      [kh, kw, o.inChannels, o.filters],
      trainable,
      glorot(kh * kw * o.inChannels, kh * kw * o.filters),
    ),
  ];
  if (b) params.push(spec(b, [o.filters], trainable, 'zeros'));
  return {
    kind: 'conv2d',
    name,
    params,
    children: [],
    forward(x, ctx) {
      let z: Tensor = tf.conv2d(x as Tensor4D, ctx.param(w) as Tensor4D, strides, padding);
      if (b) z = tf.add(z, ctx.param(b));
      const site = {
        rule: 'conv2d',
        input: x,
        weight: w,
        bias: b,
        kernelSize: [kh, kw],
        strides,
        padding,
      } as const;
      return ctx.site(this, site, z);
    },
  };
}

export interface EmbeddingOptions {
  vocabSize: number;
  dim: number;
  /** Default true. */
  trainable?: boolean;
  /** Standard deviation of the initial rows (default 0.02). */
  initStddev?: number;
}

/** Row lookup: int32 indices [B] or [B, T] → [B, D] or [B, T, D]. */
export function embedding(name: string, o: EmbeddingOptions): Layer {
  const w = `${name}.embeddings`;
  return {
    kind: 'embedding',
    name,
    params: [spec(w, [o.vocabSize, o.dim], o.trainable ?? true, { normal: o.initStddev ?? 0.02 })],
    children: [],
    forward(x, ctx) {
      const z = tf.gather(ctx.param(w), x.dtype === 'int32' ? x : tf.cast(x, 'int32'));
      return ctx.site(this, { rule: 'embedding', indices: x, weight: w }, z);
    },
  };
}

export interface NormOptions {
  /** Channels (the last axis). */
  dim: number;
  /** Default 1e-5. */
  epsilon?: number;
  /** Default true. */
  trainable?: boolean;
}

function affine(layer: Layer, ctx: ForwardContext, xhat: Tensor, gain: string, bias: string): Tensor {
  const z = tf.add(tf.mul(xhat, ctx.param(gain)), ctx.param(bias));
  return ctx.site(layer, { rule: 'affine', normalized: xhat, gain, bias }, z);
}

/**
 * x̂ = (x − mean(x))·rsqrt(var(x) + ε) over the last axis, with its gradient written out:
 * dx = rsqrt(var + ε)·(dx̂ − mean(dx̂) − x̂·mean(dx̂∘x̂)). Autodiff of the forward ops spent about
 * 25 ops per layer norm on broadcast gradients (Mean's gradient is a multiply by ones and a
 * division); this is 7 forward and 7 backward ops. Same function, rounding aside.
 */
function layerNormalizer(eps: number): (x: Tensor) => Tensor {
  const ops = layerNormalizerOps(eps);
  return (x) => layerNormKernel(x, eps) ?? ops(x);
}

function layerNormalizerOps(eps: number): (x: Tensor) => Tensor {
  return tf.customGrad(((x: Tensor, save: SaveFn) => {
    const xc = tf.sub(x, tf.mean(x, -1, true));
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps));
    const xhat = tf.mul(xc, rstd);
    save([xhat, rstd]);
    return {
      value: xhat,
      gradFunc: (dy: Tensor, [saved, r]: Tensor[]) => {
        const m1 = tf.mean(dy, -1, true);
        const m2 = tf.mean(tf.mul(dy, saved!), -1, true);
        return tf.mul(tf.sub(tf.sub(dy, m1), tf.mul(saved!, m2)), r!);
      },
    };
  }) as unknown as CustomGradFn) as (x: Tensor) => Tensor;
}

/** Layer normalisation over the last axis with a per-channel gain and bias. */
export function layerNorm(name: string, o: NormOptions): Layer {
  const g = `${name}.gamma`;
  const b = `${name}.beta`;
  const eps = o.epsilon ?? 1e-5;
  const normalize = layerNormalizer(eps);
  const trainable = o.trainable ?? true;
  return {
    kind: 'layerNorm',
    name,
    params: [spec(g, [o.dim], trainable, 'ones'), spec(b, [o.dim], trainable, 'zeros')],
    children: [],
    forward(x, ctx) {
      return affine(this, ctx, normalize(x), g, b);
    },
  };
}

export interface GroupNormOptions extends NormOptions {
  /** Groups; must divide `dim`. */
  groups: number;
}

/** Group normalisation (Wu & He 2018) of [B, ..., C] over the non-batch axes of each channel group. */
export function groupNorm(name: string, o: GroupNormOptions): Layer {
  if (o.dim % o.groups !== 0)
    throw new RangeError(`groupNorm "${name}": groups ${o.groups} must divide dim ${o.dim}`);
  const g = `${name}.gamma`;
  const b = `${name}.beta`;
  const eps = o.epsilon ?? 1e-5;
  const trainable = o.trainable ?? true;
  return {
    kind: 'groupNorm',
    name,
    params: [spec(g, [o.dim], trainable, 'ones'), spec(b, [o.dim], trainable, 'zeros')],
    children: [],
    forward(x, ctx) {
      const B = x.shape[0]!;
      const grouped = tf.reshape(x, [B, -1, o.groups, o.dim / o.groups]);
      const { mean, variance } = tf.moments(grouped, [1, 3], true);
      const xhat = tf.reshape(tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, eps))), x.shape);
      return affine(this, ctx, xhat, g, b);
    },
  };
}

export interface LoraDenseOptions {
  inputDim: number;
  units: number;
  /** Adapter rank r. */
  rank: number;
  /** Scaling α; the adapter output is multiplied by α/r (default α = r, i.e. scale 1). */
  alpha?: number;
  /** Base bias (frozen like the base kernel; default true). */
  useBias?: boolean;
  /** Standard deviation of A's initial entries (default 1/√r as in Hu et al.; B starts at zero). */
  initStddev?: number;
}

/** The column block a loraDense layer named `name` contributes to a `lora` site. */
function loraBlock(name: string, o: LoraDenseOptions, outputScale = 1): LoraBlock {
  return {
    weight: `${name}.kernel`,
    bias: o.useBias === false ? null : `${name}.bias`,
    a: `${name}.lora_a`,
    b: `${name}.lora_b`,
    units: o.units,
    scale: (o.alpha ?? o.rank) / o.rank,
    outputScale,
  };
}

/**
 * x·W + b for LoRA blocks side by side, the adapters merged into the weight: block k is
 * outputScaleₖ·(x·(W₀ₖ + scaleₖ·AₖBₖ) + b₀ₖ), one [Din, Dout] matmul in all, reported as one
 * `lora` site. The same function as x·W₀ + b₀ + scale·(x·A)·B, rounding aside; merging costs a few
 * [Din, r]·[r, units] products per step, and saves the [B, T, r] and [B, T, units] intermediates,
 * their matmuls and adds, forward and backward (the rule in sites.ts forms A's and B's
 * per-example gradients from x and the output's gradient).
 */
function loraProjection(layer: Layer, ctx: ForwardContext, x: Tensor, blocks: readonly LoraBlock[]): Tensor {
  const ws: Tensor[] = [];
  const bs: Tensor[] = [];
  for (const k of blocks) {
    const up = tf.matMul(tf.mul(ctx.param(k.a), k.scale), ctx.param(k.b));
    const w = tf.add(ctx.param(k.weight), up);
    ws.push(k.outputScale === 1 ? w : tf.mul(w, k.outputScale));
    const b = k.bias ? ctx.param(k.bias) : tf.zeros([k.units]);
    bs.push(k.outputScale === 1 ? b : tf.mul(b, k.outputScale));
  }
  const w = ws.length === 1 ? ws[0]! : tf.concat(ws, 1);
  const z = matMulLast(x, w);
  const withBias = blocks.some((k) => k.bias) ? tf.add(z, bs.length === 1 ? bs[0]! : tf.concat(bs)) : z;
  return ctx.site(layer, { rule: 'lora', input: x, blocks }, withBias);
}

/**
 * A dense layer with a frozen base and a trainable low-rank adapter (Hu et al. 2021):
 * y = x·W₀ + b₀ + (α/r)·(x·A)·B with A [Din, r] and B [r, Dout], computed as x·(W₀ + (α/r)·A·B) + b₀
 * (one `lora` site: see loraProjection).
 */
export function loraDense(name: string, o: LoraDenseOptions): Layer {
  const block = loraBlock(name, o);
  const params = [spec(block.weight, [o.inputDim, o.units], false, glorot(o.inputDim, o.units))];
  if (block.bias) params.push(spec(block.bias, [o.units], false, 'zeros'));
  params.push(
    spec(block.a, [o.inputDim, o.rank], true, { normal: o.initStddev ?? 1 / Math.sqrt(o.rank) }),
    spec(block.b, [o.rank, o.units], true, 'zeros'),
  );
  return {
    kind: 'loraDense',
    name,
    params,
    children: [],
    forward(x, ctx) {
      return loraProjection(this, ctx, x, [block]);
    },
  };
}

// ---- parameter-free layers --------------------------------------------------------------

function fn(kind: string, name: string, f: (x: Tensor) => Tensor): Layer {
  return { kind, name, params: [], children: [], forward: (x) => f(x) };
}

const GELU_C = Math.sqrt(2 / Math.PI);

const GELU_K = 0.044715;

/**
 * GELU, tanh approximation (Hendrycks & Gimpel 2016), as in BERT and GPT-2:
 * 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))), computed as the identical x·σ(2u) with
 * u = √(2/π)·x·(1 + 0.044715·x²) (0.5·(1 + tanh u) = σ(2u)), with its gradient written out:
 * dy/dx = σ + x·σ·(1 − σ)·q with q = 2√(2/π)·(1 + 3·0.044715·x²), the second term by one
 * `SigmoidGrad` kernel. 6 forward and 6 backward ops on the feed-forward's widest tensor, against
 * 8 and ~18 for autodiff of the tanh form. Written with x² rather than pow(x, 3): TensorFlow's Pow
 * kernel and its gradient are slow.
 */
const geluOps: (x: Tensor) => Tensor = tf.customGrad(((x: Tensor, save: SaveFn) => {
  const x2 = tf.square(x);
  const s = tf.sigmoid(tf.mul(x, tf.add(tf.mul(x2, 2 * GELU_C * GELU_K), 2 * GELU_C)));
  save([x, x2, s]);
  return {
    value: tf.mul(x, s),
    gradFunc: (dy: Tensor, [xs, sq, sg]: Tensor[]) => {
      const xq = tf.mul(xs!, tf.add(tf.mul(sq!, 6 * GELU_C * GELU_K), 2 * GELU_C));
      return tf.mul(dy, tf.add(sg!, sigmoidGrad(sg!, xq)));
    },
  };
}) as unknown as CustomGradFn) as (x: Tensor) => Tensor;

/** GELU: dp's fused kernel where it is active (tf.ts), else the TensorFlow ops above. */
export function gelu(x: Tensor): Tensor {
  return geluKernel(x) ?? geluOps(x);
}

export type ActivationKind = 'tanh' | 'relu' | 'gelu';

export function activation(kind: ActivationKind, name: string = kind): Layer {
  const f = kind === 'tanh' ? tanh : kind === 'relu' ? tf.relu : gelu;
  return fn('activation', name, (x) => f(x));
}

export interface PoolOptions {
  poolSize: number | [number, number];
  /** Default = poolSize. */
  strides?: number | [number, number];
  /** Default 'valid'. */
  padding?: 'same' | 'valid';
}

export function maxPool(name: string, o: PoolOptions): Layer {
  return fn('maxPool', name, (x) =>
    maxPool2d(x as Tensor4D, pair(o.poolSize), pair(o.strides ?? o.poolSize), o.padding ?? 'valid'),
  );
}

export function avgPool(name: string, o: PoolOptions): Layer {
  return fn('avgPool', name, (x) =>
    tf.avgPool(x as Tensor4D, pair(o.poolSize), pair(o.strides ?? o.poolSize), o.padding ?? 'valid'),
  );
}

/** [B, ...] → [B, prod(...)]. */
export function flatten(name = 'flatten'): Layer {
  return fn('flatten', name, (x) => tf.reshape(x, [x.shape[0]!, -1]));
}

/** Mean over the sequence axis: [B, T, D] → [B, D]. */
export function meanPool(name = 'meanPool'): Layer {
  return fn('meanPool', name, (x) => tf.mean(x, 1));
}

/** Runs layers in order. */
export function sequential(name: string, layers: Layer[]): Layer {
  return {
    kind: 'sequential',
    name,
    params: [],
    children: layers,
    forward: (x, ctx) => layers.reduce((h, l) => l.forward(h, ctx), x),
  };
}

/** x + f(x) for the layers f in order (a residual connection). */
export function residual(name: string, layers: Layer[]): Layer {
  return {
    kind: 'residual',
    name,
    params: [],
    children: layers,
    forward: (x, ctx) =>
      tf.add(
        x,
        layers.reduce((h, l) => l.forward(h, ctx), x),
      ),
  };
}

export interface AttentionOptions {
  dim: number;
  heads: number;
  /** LoRA adapters on the q, k, v and output projections (frozen base); plain dense layers when absent. */
  lora?: { rank: number; alpha?: number };
  /** Whether plain projections train (default true; ignored with LoRA, whose base is frozen). */
  trainable?: boolean;
}

/**
 * Multi-head softmax self-attention on [B, T, D] (Vaswani et al. 2017, no mask) built from four
 * projection layers; the softmax part has no parameters, so the projections are its only sites.
 */
export function multiHeadAttention(name: string, o: AttentionOptions): Layer {
  if (o.dim % o.heads !== 0)
    throw new RangeError(`attention "${name}": heads ${o.heads} must divide dim ${o.dim}`);
  const lora = o.lora && { inputDim: o.dim, units: o.dim, rank: o.lora.rank, alpha: o.lora.alpha };
  const proj = (p: string): Layer =>
    lora
      ? loraDense(`${name}.${p}`, lora)
      : dense(`${name}.${p}`, { inputDim: o.dim, units: o.dim, trainable: o.trainable });
  const [q, k, v, out] = [proj('q'), proj('k'), proj('v'), proj('o')] as const;
  const dh = o.dim / o.heads;
  // With LoRA, q, k and v are one projection x·[W_q | W_k | W_v] (adapters merged, 1/√dh folded
  // into the query block: exact when dh is a power of four, as 16) split into heads by one transpose.
  const qkv = lora && [
    loraBlock(q.name, lora, 1 / Math.sqrt(dh)),
    loraBlock(k.name, lora),
    loraBlock(v.name, lora),
  ];
  return {
    kind: 'multiHeadAttention',
    name,
    params: [],
    children: [q, k, v, out],
    forward(x, ctx) {
      const [B, T] = [x.shape[0]!, x.shape[1]!];
      let qh: Tensor;
      let kh: Tensor;
      let vh: Tensor;
      if (qkv) {
        const y = loraProjection(this, ctx, x, qkv); // [B, T, 3·D]
        [qh, kh, vh] = tf.unstack(tf.transpose(tf.reshape(y, [B, T, 3, o.heads, dh]), [2, 0, 3, 1, 4])) as [
          Tensor,
          Tensor,
          Tensor,
        ];
      } else {
        const heads = (t: Tensor) => tf.transpose(tf.reshape(t, [B, T, o.heads, dh]), [0, 2, 1, 3]);
        // (q/√dh)·kᵀ rather than (q·kᵀ)/√dh: the scale touches [B, T, D], not [B, heads, T, T].
        qh = heads(tf.mul(q.forward(x, ctx), 1 / Math.sqrt(dh)));
        kh = heads(k.forward(x, ctx));
        vh = heads(v.forward(x, ctx));
      }
      const scores = tf.softmax(tf.matMul(qh, kh, false, true));
      const mixed = tf.reshape(tf.transpose(tf.matMul(scores, vh), [0, 2, 1, 3]), [B, T, o.dim]);
      return out.forward(mixed, ctx);
    },
  };
}

export interface TokenEmbeddingOptions {
  vocabSize: number;
  seqLen: number;
  dim: number;
  /** Whether token and position tables train (default true). */
  trainable?: boolean;
}

/**
 * Token embedding plus a learned position embedding (itself an embedding of 0..T-1). The position
 * rows are added by broadcasting [T, D] rather than gathered per example: the position piece's
 * output is reported as the sum z = tokens + positions, whose gradient is that piece's output
 * gradient too, so its per-example rule (embedding of the indices 0..T-1 of every example) is
 * unchanged. Saves a [B, T, D] gather.
 */
export function tokenAndPositionEmbedding(name: string, o: TokenEmbeddingOptions): Layer {
  const tok = embedding(`${name}.tokens`, { vocabSize: o.vocabSize, dim: o.dim, trainable: o.trainable });
  const pos = embedding(`${name}.positions`, { vocabSize: o.seqLen, dim: o.dim, trainable: o.trainable });
  const table = `${pos.name}.embeddings`;
  return {
    kind: 'tokenAndPositionEmbedding',
    name,
    params: [],
    children: [tok, pos],
    forward(x, ctx) {
      const [B, T] = [x.shape[0]!, x.shape[1]!];
      const rows = T === o.seqLen ? ctx.param(table) : tf.slice(ctx.param(table), 0, T);
      const z = tf.add(tok.forward(x, ctx), rows);
      const positions = tf.tile(tf.reshape(tf.range(0, T, 1, 'int32'), [1, T]), [B, 1]);
      return ctx.site(pos, { rule: 'embedding', indices: positions, weight: table }, z);
    },
  };
}
