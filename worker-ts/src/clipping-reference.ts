// The DP-SGD gradient phase on a worker: per-example gradients of the trainable parameters,
// each clipped to ℓ2 norm C, summed. The result's norm is at most C × batch and, what the
// privacy analysis needs, adding or removing one record changes it by at most C.
//
// This is the reference engine: one tf.grads call per example (a batch-of-one loop), exact for
// every layer type and slow (~46 examples/s on the tanh CNN). The programs use DpClippingEngine
// (clipping.ts); tests compare the two.
import type { ClippedSum, ClippingEngine } from './clipping.js';
import type { ModelDef, Tensor, Tf } from './models/model.js';
import { sizeOf, trainableSpecs } from './models/model.js';

/** Per-example cross-entropy of integer labels, summed: the loss every engine differentiates. */
export function crossEntropySum(tf: Tf, logits: Tensor, labels: Tensor): Tensor {
  const logp = tf.logSoftmax(logits);
  const oneHot = tf.oneHot(labels.toInt(), logits.shape[1]!);
  return tf.neg(tf.sum(tf.mul(oneHot, logp)));
}

export class LoopClippingEngine implements ClippingEngine {
  private trainable: Tensor[] = [];
  private readonly frozen: Record<string, Tensor> = {};
  private readonly specs;

  constructor(
    private readonly tf: Tf,
    private readonly def: ModelDef,
    initial: Record<string, Float32Array>,
  ) {
    this.specs = trainableSpecs(def);
    for (const p of def.params) {
      if (!p.trainable) this.frozen[p.name] = tf.keep(tf.tensor(initial[p.name]!, p.shape));
    }
    this.trainable = this.specs.map((s) => tf.keep(tf.tensor(initial[s.name]!, s.shape)));
  }

  setTrainable(flat: Float32Array): void {
    const tf = this.tf;
    tf.dispose(this.trainable);
    let o = 0;
    this.trainable = this.specs.map((s) => {
      const n = sizeOf(s.shape);
      const t = tf.keep(tf.tensor(flat.subarray(o, o + n), s.shape));
      o += n;
      return t;
    });
  }

  /** All parameters by name (trainable ones current), for evaluation. */
  named(): Record<string, Tensor> {
    const out: Record<string, Tensor> = { ...this.frozen };
    this.specs.forEach((s, i) => (out[s.name] = this.trainable[i]!));
    return out;
  }

  clippedSum(x: Tensor, labels: Tensor, clipNorm: number): ClippedSum {
    const tf = this.tf;
    const B = x.shape[0]!;
    const P = this.specs.reduce((a, s) => a + sizeOf(s.shape), 0);
    let clipped = 0;
    const acc = tf.tidy(() => {
      let total = tf.zeros([P]);
      for (let i = 0; i < B; i++) {
        const next = tf.tidy(() => {
          const xi = x.slice(i, 1);
          const yi = labels.slice(i, 1);
          const f = (...ps: Tensor[]) => {
            const named: Record<string, Tensor> = { ...this.frozen };
            this.specs.forEach((s, j) => (named[s.name] = ps[j]!));
            return crossEntropySum(tf, this.def.forward(tf, named, xi), yi) as never;
          };
          const grads = tf.grads(f)(this.trainable);
          const g = tf.concat(grads.map((t) => t.reshape([-1])));
          const norm = tf.norm(g).dataSync()[0]!;
          if (norm > clipNorm) clipped++;
          const factor = Math.min(1, clipNorm / (norm + 1e-12));
          return tf.add(total, tf.mul(g, factor));
        });
        tf.dispose(total);
        total = tf.keep(next);
      }
      return total;
    });
    const sum = acc.dataSync() as Float32Array;
    acc.dispose();
    return { sum: Float32Array.from(sum), batchSize: B, clipped };
  }

  /** Accuracy on a labelled set, in batches. */
  accuracy(x: Tensor, labels: Tensor, batch = 1000): number {
    const tf = this.tf;
    const n = x.shape[0]!;
    let correct = 0;
    for (let s = 0; s < n; s += batch) {
      const c = tf.tidy(() => {
        const k = Math.min(batch, n - s);
        const logits = this.def.forward(tf, this.named(), x.slice(s, k));
        return tf.sum(tf.equal(tf.argMax(logits, 1), labels.slice(s, k).toInt())).dataSync()[0]!;
      });
      correct += c;
    }
    return n === 0 ? 0 : correct / n;
  }

  dispose(): void {
    this.tf.dispose([...this.trainable, ...Object.values(this.frozen)]);
  }
}
