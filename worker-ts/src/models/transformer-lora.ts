import {
  activation,
  dense,
  layerNorm,
  loraDense,
  tf,
  tokenAndPositionEmbedding,
  type Layer,
  type Tensor,
} from '@tensorguard/dp/tfjs';
import { modelFromLayers, type ModelDef } from './model.js';

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
   * Which parameters train: name substrings. Default ['lora', 'head']: the LoRA adapters and the
   * classifier head train, the base model is frozen.
   */
  trainable?: string[];
}

/**
 * A small pre-LayerNorm encoder (token + learned position embeddings, multi-head self-attention,
 * tanh feed-forward) classifying from the [CLS] position, with LoRA adapters (Hu et al. 2021:
 * W + (α/r)·A·B, A Gaussian-initialised, B zero) on the query and value projections of every
 * block. Padding positions (id 0) are masked out of attention.
 *
 * Every parametric piece is one of dp's DP layers (`tokenAndPositionEmbedding`, `layerNorm`,
 * `loraDense`, `dense`), so the per-sample clipping engine handles it; the glue (padding mask,
 * attention softmax, residuals, [CLS] pooling) lives in one parameter-free composite layer,
 * which is why dp's own `transformerEncoder` (no padding mask, mean pooling) is not used as is.
 */
export function transformerLora(opts: TransformerLoraOptions): ModelDef {
  const d = opts.dModel ?? 64;
  const heads = opts.heads ?? 4;
  if (d % heads !== 0) throw new RangeError(`dModel ${d} is not a multiple of heads ${heads}`);
  const ff = opts.ffDim ?? 4 * d;
  const L = opts.layers ?? 2;
  const r = opts.loraRank ?? 4;
  const alpha = opts.loraAlpha ?? 2 * r;
  const T = opts.seqLen;
  const trainable = opts.trainable ?? ['lora', 'head'];
  const dh = d / heads;

  const embed = tokenAndPositionEmbedding('embed', { vocabSize: opts.vocabSize, seqLen: T, dim: d });
  const blocks = Array.from({ length: L }, (_, l) => {
    const b = `block_${l}`;
    const lora = (p: string) =>
      loraDense(`${b}.attn.${p}`, {
        inputDim: d,
        units: d,
        rank: r,
        alpha,
        useBias: false,
        initStddev: 0.02,
      });
    return {
      ln1: layerNorm(`${b}.ln_1`, { dim: d }),
      q: lora('q'),
      k: dense(`${b}.attn.k`, { inputDim: d, units: d, useBias: false }),
      v: lora('v'),
      o: dense(`${b}.attn.o`, { inputDim: d, units: d, useBias: false }),
      ln2: layerNorm(`${b}.ln_2`, { dim: d }),
      ff1: dense(`${b}.ff.1`, { inputDim: d, units: ff }),
      act: activation('tanh', `${b}.ff.tanh`),
      ff2: dense(`${b}.ff.2`, { inputDim: ff, units: d }),
    };
  });
  const lnF = layerNorm('ln_f', { dim: d });
  const head = dense('head', { inputDim: d, units: opts.numClasses });
  const children: Layer[] = [embed, ...blocks.flatMap((b) => Object.values(b)), lnF, head];

  const encoder: Layer = {
    kind: 'transformerLoraEncoder',
    name: 'encoder',
    params: [],
    children,
    forward(x, ctx) {
      const B = x.shape[0]!;
      const ids = tf.cast(tf.reshape(x, [B, T]), 'int32');
      let h = embed.forward(ids, ctx);
      // Additive mask: −1e9 on padded keys.
      const keyMask = tf.reshape(tf.mul(tf.sub(1, tf.cast(tf.notEqual(ids, 0), 'float32')), -1e9), [
        B,
        1,
        1,
        T,
      ]);
      const split = (t: Tensor) => tf.transpose(tf.reshape(t, [B, T, heads, dh]), [0, 2, 1, 3]);
      for (const b of blocks) {
        const a = b.ln1.forward(h, ctx);
        const q = split(b.q.forward(a, ctx));
        const k = split(b.k.forward(a, ctx));
        const v = split(b.v.forward(a, ctx));
        const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(dh)), keyMask);
        const mixed = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores, -1), v), [0, 2, 1, 3]), [B, T, d]);
        h = tf.add(h, b.o.forward(mixed, ctx));
        const m = b.ln2.forward(h, ctx);
        h = tf.add(h, b.ff2.forward(b.act.forward(b.ff1.forward(m, ctx), ctx), ctx));
      }
      const cls = tf.reshape(tf.slice(lnF.forward(h, ctx), [0, 0, 0], [B, 1, d]), [B, d]);
      return head.forward(cls, ctx);
    },
  };
  const def = modelFromLayers({
    kind: 'transformer-lora',
    inputShape: [T],
    inputDtype: 'int32',
    numClasses: opts.numClasses,
    layers: [encoder],
    trainable: (name) => trainable.some((t) => name.includes(t)),
  });
  if (!def.params.some((p) => p.trainable)) {
    throw new RangeError(`model.trainable [${trainable.join(', ')}] matches no parameter`);
  }
  return def;
}
