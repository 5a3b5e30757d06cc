// Ground truth for the tests: per-example gradients from a batch-of-one loop (one tf.grads per
// example), clipped and summed in float64 on the host.
import tf, { type Tensor } from './tf.js';
import type { DpModel } from './model.js';
import { paramGrads } from './engine.js';

export interface Reference {
  norms: number[];
  sum: Map<string, Float64Array>;
}

export function referenceClippedSum(model: DpModel, x: Tensor, labels: Tensor, clipNorm: number): Reference {
  const B = x.shape[0]!;
  const names = model.trainableNames;
  const sum = new Map(names.map((n) => [n, new Float64Array(model.getParam(n).size)]));
  const norms: number[] = [];
  for (let i = 0; i < B; i++) {
    const grads = tf.tidy(() => {
      const g = paramGrads(model, tf.slice(x, i, 1), tf.slice(labels, i, 1));
      return names.map((n) => g.get(n)!);
    });
    const arrays = grads.map((g) => g.dataSync());
    tf.dispose(grads);
    let sq = 0;
    for (const a of arrays) for (const v of a) sq += v * v;
    const norm = Math.sqrt(sq);
    norms.push(norm);
    const w = Math.min(1, clipNorm / norm);
    names.forEach((n, k) => {
      const acc = sum.get(n)!;
      const a = arrays[k]!;
      for (let j = 0; j < a.length; j++) acc[j]! += w * a[j]!;
    });
  }
  return { norms, sum };
}

/** ‖a − b‖ / ‖b‖ (or ‖a‖ when b = 0). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    d += (a[i]! - b[i]!) ** 2;
    n += b[i]! ** 2;
  }
  return n === 0 ? Math.sqrt(d) : Math.sqrt(d / n);
}

/** Sets every parameter to N(0, scale²) so frozen/zero-initialised pieces (LoRA B) are exercised. */
export function randomiseParams(model: DpModel, seed: number, scale = 0.3): void {
  model.paramNames.forEach((n, i) => {
    const t = tf.randomNormal([...model.spec(n).shape], 0, scale, 'float32', seed * 1000 + i);
    model.setParam(n, t);
    t.dispose();
  });
}
