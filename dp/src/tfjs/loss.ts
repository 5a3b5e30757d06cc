import tf, { type Tensor, softmaxCrossEntropySum } from './tf.js';

/**
 * Per-example softmax cross-entropy of logits [B, K] against int32 labels [B], shape [B]. The
 * engine differentiates the *sum* of these (never the mean): a mean would scale every
 * per-example gradient by 1/B before clipping and so change what C means.
 */
export function crossEntropyPerExample(logits: Tensor, labels: Tensor): Tensor {
  const k = logits.shape[logits.rank - 1]!;
  const oneHot = tf.oneHot(labels.dtype === 'int32' ? labels : tf.cast(labels, 'int32'), k);
  return tf.neg(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)), -1));
}

/**
 * Σᵢ wᵢ·Lᵢ (w = 1 when absent): the scalar the engine differentiates. On tfjs-node one fused
 * TensorFlow kernel (softmaxCrossEntropySum in tf.ts); elsewhere tfjs ops.
 */
export function crossEntropySum(logits: Tensor, labels: Tensor, weights?: Tensor): Tensor {
  const fused = softmaxCrossEntropySum(logits, labels, weights);
  if (fused) return fused;
  const per = crossEntropyPerExample(logits, labels);
  return tf.sum(weights ? tf.mul(per, weights) : per);
}
