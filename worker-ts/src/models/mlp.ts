import { activation, dense, flatten, type Layer } from '@tensorguard/dp/tfjs';
import { modelFromLayers, type ModelDef } from './model.js';

export interface MlpOptions {
  inputShape: number[];
  numClasses: number;
  /** Hidden layer widths (default [128]). */
  hidden?: number[];
  /** Hidden activation (default 'tanh': bounded activations suit DP-SGD, Papernot et al. 2020). */
  activation?: 'tanh' | 'relu';
}

/** Flatten → Dense → activation → … → Dense (logits), from dp's DP layers. */
export function mlp(opts: MlpOptions): ModelDef {
  const hidden = opts.hidden ?? [128];
  const act = opts.activation ?? 'tanh';
  const dIn = opts.inputShape.reduce((a, b) => a * b, 1);
  const widths = [dIn, ...hidden, opts.numClasses];
  const layers: Layer[] = [flatten()];
  for (let i = 0; i + 1 < widths.length; i++) {
    layers.push(dense(`dense_${i}`, { inputDim: widths[i]!, units: widths[i + 1]! }));
    if (i + 2 < widths.length) layers.push(activation(act, `${act}_${i}`));
  }
  return modelFromLayers({
    kind: 'mlp',
    inputShape: opts.inputShape,
    inputDtype: 'float32',
    numClasses: opts.numClasses,
    layers,
  });
}
