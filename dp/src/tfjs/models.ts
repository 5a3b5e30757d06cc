// Reference models built from the DP layers: the ones the tests and benchmarks use.
import type { Layer } from './layer.js';
import {
  activation,
  conv2d,
  dense,
  flatten,
  layerNorm,
  maxPool,
  meanPool,
  multiHeadAttention,
  residual,
  sequential,
  tokenAndPositionEmbedding,
} from './layers.js';

export interface TanhCnnOptions {
  /** Input height = width (default 28). */
  imageSize?: number;
  /** Input channels (default 1). */
  channels?: number;
  /** Output classes (default 10). */
  classes?: number;
}

/**
 * The tanh CNN of Papernot et al. 2020 ("Tempered sigmoid activations") for 28×28×1 images:
 * conv 16 8×8 stride 2 same → maxpool 2 stride 1 → conv 32 4×4 stride 2 valid → maxpool 2
 * stride 1 → flatten → dense 32 → dense 10, tanh after every hidden layer.
 */
export function tanhCnn(o: TanhCnnOptions = {}): Layer[] {
  const size = o.imageSize ?? 28;
  const s1 = Math.ceil(size / 2) - 1; // after conv1 (same, stride 2) and pool (2, stride 1)
  const s2 = Math.floor((s1 - 4) / 2) + 1 - 1; // after conv2 (valid 4, stride 2) and pool
  if (!Number.isInteger(size) || s2 < 1)
    throw new RangeError(
      `tanhCnn: imageSize must be an integer of at least 14 (got ${size}): smaller images leave no features after conv2 and pool2`,
    );
  return [
    conv2d('conv1', { inChannels: o.channels ?? 1, filters: 16, kernelSize: 8, strides: 2, padding: 'same' }),
    activation('tanh', 'tanh1'),
    maxPool('pool1', { poolSize: 2, strides: 1 }),
    conv2d('conv2', { inChannels: 16, filters: 32, kernelSize: 4, strides: 2, padding: 'valid' }),
    activation('tanh', 'tanh2'),
    maxPool('pool2', { poolSize: 2, strides: 1 }),
    flatten(),
    dense('fc1', { inputDim: s2 * s2 * 32, units: 32 }),
    activation('tanh', 'tanh3'),
    dense('fc2', { inputDim: 32, units: o.classes ?? 10 }),
  ];
}

export interface TransformerOptions {
  vocabSize: number;
  seqLen: number;
  /** Model width (default 64). */
  dim?: number;
  /** Default 4. */
  heads?: number;
  /** Encoder blocks (default 2). */
  blocks?: number;
  /** Feed-forward width (default 4·dim). */
  ffDim?: number;
  /** Default 2. */
  classes?: number;
  /**
   * LoRA adapters on the attention projections. When given, the base (embeddings, attention and
   * feed-forward weights) is frozen and the adapters, layer norms and classifier head train;
   * without it everything trains.
   */
  lora?: { rank: number; alpha?: number };
}

/**
 * A pre-LayerNorm transformer encoder classifier: token + position embeddings, `blocks` ×
 * [x + MHA(LN(x)), x + FF(LN(x)) with GELU], final LN, mean over positions, dense head.
 */
export function transformerEncoder(o: TransformerOptions): Layer[] {
  const d = o.dim ?? 64;
  const ff = o.ffDim ?? 4 * d;
  const base = !o.lora;
  const layers: Layer[] = [
    tokenAndPositionEmbedding('embed', { vocabSize: o.vocabSize, seqLen: o.seqLen, dim: d, trainable: base }),
  ];
  for (let b = 0; b < (o.blocks ?? 2); b++) {
    const p = `block${b}`;
    layers.push(
      residual(`${p}.attn_res`, [
        layerNorm(`${p}.ln1`, { dim: d }),
        multiHeadAttention(`${p}.attn`, { dim: d, heads: o.heads ?? 4, lora: o.lora }),
      ]),
      residual(`${p}.ff_res`, [
        layerNorm(`${p}.ln2`, { dim: d }),
        sequential(`${p}.ff`, [
          dense(`${p}.ff1`, { inputDim: d, units: ff, trainable: base }),
          activation('gelu', `${p}.gelu`),
          dense(`${p}.ff2`, { inputDim: ff, units: d, trainable: base }),
        ]),
      ]),
    );
  }
  layers.push(
    layerNorm('ln_f', { dim: d }),
    meanPool(),
    dense('head', { inputDim: d, units: o.classes ?? 2 }),
  );
  return layers;
}
