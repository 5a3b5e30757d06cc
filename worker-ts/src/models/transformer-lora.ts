import type { ModelDef, ParamSpec, Tensor, Tf } from './model.js';

export interface TransformerLoraOptions {
  vocabSize: number;
  seqLen: number;
  numClasses: number;
  /** Model width (default 64). */
  dModel?: number;
  /** Attention heads (default 4; dModel must divide). */
  heads?: number;
  /** Feed-forward width (default 4·dModel). */
  ffDim?: number;
  /** Transformer blocks (default 2). */
  layers?: number;
  /** LoRA rank r on the query and value projections (default 4). */
  loraRank?: number;
  /** LoRA scaling α (default 2r; the adapter output is multiplied by α/r). */
  loraAlpha?: number;
  /**
   * Which parameters train: name prefixes or substrings. Default ['lora', 'head']: the LoRA
   * adapters and the classifier head train, the base model is frozen.
   */
  trainable?: string[];
}

/**
 * A small pre-LayerNorm encoder (token + learned position embeddings, multi-head self-attention,
 * GELU-free tanh feed-forward to keep the op set small) classifying from the [CLS] position,
 * with LoRA adapters (Hu et al. 2021: W + (α/r)·A·B, A Gaussian-initialised, B zero) on the query
 * and value projections of every block. Padding positions (id 0) are masked out of attention.
 */
export function transformerLora(opts: TransformerLoraOptions): ModelDef {
  const d = opts.dModel ?? 64;
  const heads = opts.heads ?? 4;
  if (d % heads !== 0) throw new RangeError(`dModel ${d} is not a multiple of heads ${heads}`);
  const ff = opts.ffDim ?? 4 * d;
  const L = opts.layers ?? 2;
  const r = opts.loraRank ?? 4;
  const scaleLora = (opts.loraAlpha ?? 2 * r) / r;
  const T = opts.seqLen;
  const trainable = opts.trainable ?? ['lora', 'head'];
  const isTrainable = (name: string) => trainable.some((t) => name.includes(t));
  const spec = (name: string, shape: number[], init: ParamSpec['init']): ParamSpec => ({
    name,
    shape,
    init,
    trainable: isTrainable(name),
  });
  const params: ParamSpec[] = [
    spec('embed.tokens', [opts.vocabSize, d], 'normal'),
    spec('embed.positions', [T, d], 'normal'),
  ];
  for (let l = 0; l < L; l++) {
    const b = `block_${l}`;
    params.push(
      spec(`${b}.ln_1.gamma`, [d], 'ones'),
      spec(`${b}.ln_1.beta`, [d], 'zeros'),
      spec(`${b}.attn.wq`, [d, d], 'glorot'),
      spec(`${b}.attn.wk`, [d, d], 'glorot'),
      spec(`${b}.attn.wv`, [d, d], 'glorot'),
      spec(`${b}.attn.wo`, [d, d], 'glorot'),
      spec(`${b}.attn.lora_q.a`, [d, r], 'normal'),
      spec(`${b}.attn.lora_q.b`, [r, d], 'zeros'),
      spec(`${b}.attn.lora_v.a`, [d, r], 'normal'),
      spec(`${b}.attn.lora_v.b`, [r, d], 'zeros'),
      spec(`${b}.ln_2.gamma`, [d], 'ones'),
      spec(`${b}.ln_2.beta`, [d], 'zeros'),
      spec(`${b}.ff.w1`, [d, ff], 'glorot'),
      spec(`${b}.ff.b1`, [ff], 'zeros'),
      spec(`${b}.ff.w2`, [ff, d], 'glorot'),
      spec(`${b}.ff.b2`, [d], 'zeros'),
    );
  }
  params.push(spec('ln_f.gamma', [d], 'ones'), spec('ln_f.beta', [d], 'zeros'));
  params.push(
    spec('head.kernel', [d, opts.numClasses], 'glorot'),
    spec('head.bias', [opts.numClasses], 'zeros'),
  );
  if (!params.some((p) => p.trainable)) {
    throw new RangeError(`model.trainable [${trainable.join(', ')}] matches no parameter`);
  }

  const layerNorm = (tf: Tf, x: Tensor, g: Tensor, b: Tensor) => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
  };
  const dense3 = (tf: Tf, x: Tensor, w: Tensor) => {
    const [B, S, D] = x.shape as [number, number, number];
    return tf.matMul(x.reshape([B * S, D]), w).reshape([B, S, w.shape[1]!]);
  };

  return {
    kind: 'transformer-lora',
    inputShape: [T],
    inputDtype: 'int32',
    numClasses: opts.numClasses,
    params,
    layers: ['Embedding', 'LayerNorm', 'LoRA', 'Dense'],
    forward(tf, p, x) {
      const B = x.shape[0]!;
      const ids = x.reshape([B, T]).toInt();
      let h = tf.add(tf.gather(p['embed.tokens']!, ids), p['embed.positions']!.expandDims(0));
      // Additive mask: −1e9 on padded keys.
      const keyMask = tf.mul(tf.sub(1, tf.notEqual(ids, 0).toFloat()), -1e9).reshape([B, 1, 1, T]);
      const dh = d / heads;
      const split = (t: Tensor) => t.reshape([B, T, heads, dh]).transpose([0, 2, 1, 3]);
      for (let l = 0; l < L; l++) {
        const b = `block_${l}`;
        const a = layerNorm(tf, h, p[`${b}.ln_1.gamma`]!, p[`${b}.ln_1.beta`]!);
        const lora = (name: string) =>
          tf.mul(dense3(tf, dense3(tf, a, p[`${b}.attn.${name}.a`]!), p[`${b}.attn.${name}.b`]!), scaleLora);
        const q = split(tf.add(dense3(tf, a, p[`${b}.attn.wq`]!), lora('lora_q')));
        const k = split(dense3(tf, a, p[`${b}.attn.wk`]!));
        const v = split(tf.add(dense3(tf, a, p[`${b}.attn.wv`]!), lora('lora_v')));
        const scores = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(dh)), keyMask);
        const ctx = tf.matMul(tf.softmax(scores, -1), v).transpose([0, 2, 1, 3]).reshape([B, T, d]);
        h = tf.add(h, dense3(tf, ctx, p[`${b}.attn.wo`]!));
        const m = layerNorm(tf, h, p[`${b}.ln_2.gamma`]!, p[`${b}.ln_2.beta`]!);
        const f = tf.tanh(tf.add(dense3(tf, m, p[`${b}.ff.w1`]!), p[`${b}.ff.b1`]!));
        h = tf.add(h, tf.add(dense3(tf, f, p[`${b}.ff.w2`]!), p[`${b}.ff.b2`]!));
      }
      const cls = layerNorm(tf, h, p['ln_f.gamma']!, p['ln_f.beta']!)
        .slice([0, 0, 0], [B, 1, d])
        .reshape([B, d]);
      return tf.add(tf.matMul(cls, p['head.kernel']!), p['head.bias']!);
    },
  };
}
