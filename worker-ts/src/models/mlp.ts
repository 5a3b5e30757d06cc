import type { ModelDef, ParamSpec } from './model.js';

export interface MlpOptions {
  inputShape: number[];
  numClasses: number;
  /** Hidden layer widths (default [128]). */
  hidden?: number[];
  /** Hidden activation (default 'tanh': bounded activations suit DP-SGD, Papernot et al. 2020). */
  activation?: 'tanh' | 'relu';
}

/** Dense → activation → … → Dense (logits). */
export function mlp(opts: MlpOptions): ModelDef {
  const hidden = opts.hidden ?? [128];
  const act = opts.activation ?? 'tanh';
  const dIn = opts.inputShape.reduce((a, b) => a * b, 1);
  const widths = [dIn, ...hidden, opts.numClasses];
  const params: ParamSpec[] = [];
  for (let i = 0; i + 1 < widths.length; i++) {
    params.push({
      name: `dense_${i}.kernel`,
      shape: [widths[i]!, widths[i + 1]!],
      init: 'glorot',
      trainable: true,
    });
    params.push({ name: `dense_${i}.bias`, shape: [widths[i + 1]!], init: 'zeros', trainable: true });
  }
  return {
    kind: 'mlp',
    inputShape: opts.inputShape,
    inputDtype: 'float32',
    numClasses: opts.numClasses,
    params,
    layers: ['Dense'],
    forward(tf, p, x) {
      let h = x.reshape([x.shape[0]!, dIn]);
      for (let i = 0; i + 1 < widths.length; i++) {
        h = tf.add(tf.matMul(h, p[`dense_${i}.kernel`]!), p[`dense_${i}.bias`]!);
        if (i + 2 < widths.length) h = act === 'tanh' ? tf.tanh(h) : tf.relu(h);
      }
      return h;
    },
  };
}
