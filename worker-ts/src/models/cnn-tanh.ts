import type { ModelDef, ParamSpec, Tensor } from './model.js';

/**
 * The tanh CNN of Papernot et al. 2020 ("Tempered Sigmoid Activations for Deep Learning with
 * Differential Privacy", Table 1 MNIST/Fashion-MNIST architecture): conv 16×8×8 stride 2 'same',
 * maxpool 2×2 stride 1, conv 32×4×4 stride 2 'valid', maxpool 2×2 stride 1, dense 32, dense 10;
 * tanh after every hidden layer. 26,010 parameters for 28×28×1 inputs.
 */
export function cnnTanh(opts: { inputShape?: number[]; numClasses?: number } = {}): ModelDef {
  const inputShape = opts.inputShape ?? [28, 28, 1];
  const numClasses = opts.numClasses ?? 10;
  const [h0, w0, c0] = inputShape as [number, number, number];
  // 'same' stride 2 → ceil(h/2); pool 2 stride 1 → −1; 'valid' 4×4 stride 2 → floor((h−4)/2)+1; pool → −1
  const h1 = Math.ceil(h0 / 2) - 1;
  const w1 = Math.ceil(w0 / 2) - 1;
  const h2 = Math.floor((h1 - 4) / 2) + 1 - 1;
  const w2 = Math.floor((w1 - 4) / 2) + 1 - 1;
  const flat = h2 * w2 * 32;
  const params: ParamSpec[] = [
    { name: 'conv_0.kernel', shape: [8, 8, c0, 16], init: 'glorot', trainable: true },
    { name: 'conv_0.bias', shape: [16], init: 'zeros', trainable: true },
    { name: 'conv_1.kernel', shape: [4, 4, 16, 32], init: 'glorot', trainable: true },
    { name: 'conv_1.bias', shape: [32], init: 'zeros', trainable: true },
    { name: 'dense_0.kernel', shape: [flat, 32], init: 'glorot', trainable: true },
    { name: 'dense_0.bias', shape: [32], init: 'zeros', trainable: true },
    { name: 'dense_1.kernel', shape: [32, numClasses], init: 'glorot', trainable: true },
    { name: 'dense_1.bias', shape: [numClasses], init: 'zeros', trainable: true },
  ];
  return {
    kind: 'cnn-tanh',
    inputShape,
    inputDtype: 'float32',
    numClasses,
    params,
    layers: ['Conv2D', 'MaxPool2D', 'Dense'],
    forward(tf, p, x) {
      type T4 = Parameters<typeof tf.conv2d>[0] & Tensor;
      let h = x.reshape([x.shape[0]!, h0, w0, c0]) as T4;
      h = tf.tanh(tf.add(tf.conv2d(h, p['conv_0.kernel'] as never, 2, 'same'), p['conv_0.bias']!)) as T4;
      h = tf.maxPool(h, 2, 1, 'valid') as T4;
      h = tf.tanh(tf.add(tf.conv2d(h, p['conv_1.kernel'] as never, 2, 'valid'), p['conv_1.bias']!)) as T4;
      h = tf.maxPool(h, 2, 1, 'valid') as T4;
      let d = h.reshape([h.shape[0]!, flat]);
      d = tf.tanh(tf.add(tf.matMul(d, p['dense_0.kernel']!), p['dense_0.bias']!));
      return tf.add(tf.matMul(d, p['dense_1.kernel']!), p['dense_1.bias']!);
    },
  };
}
