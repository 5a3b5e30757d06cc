import { tanhCnn, tf, type Layer } from '@tensorguard/dp/tfjs';
import { modelFromLayers, type ModelDef } from './model.js';

/**
 * The tanh CNN of Papernot et al. 2020 ("Tempered Sigmoid Activations for Deep Learning with
 * Differential Privacy", Table 1 MNIST/Fashion-MNIST architecture), as dp's `tanhCnn()`: conv
 * 16×8×8 stride 2 'same', maxpool 2×2 stride 1, conv 32×4×4 stride 2 'valid', maxpool 2×2 stride
 * 1, dense 32, dense 10; tanh after every hidden layer. 26,010 parameters for 28×28×1 inputs.
 * Square images only (dp's model takes one image size).
 */
export function cnnTanh(opts: { inputShape?: number[]; numClasses?: number } = {}): ModelDef {
  const inputShape = opts.inputShape ?? [28, 28, 1];
  const numClasses = opts.numClasses ?? 10;
  const [h0, w0, c0] = inputShape as [number, number, number];
  if (h0 !== w0 || !Number.isInteger(c0)) {
    throw new RangeError(
      `model 'cnn-tanh' needs square images [h, h, channels], got [${inputShape.join(', ')}]; use model.kind 'mlp' for other shapes`,
    );
  }
  // Records may be stored as [h, w] (IDX): give the convolution its channel axis.
  const toImage: Layer = {
    kind: 'reshape',
    name: 'to_image',
    params: [],
    children: [],
    forward: (x) => tf.reshape(x, [x.shape[0]!, h0, w0, c0]),
  };
  return modelFromLayers({
    kind: 'cnn-tanh',
    inputShape,
    inputDtype: 'float32',
    numClasses,
    layers: [toImage, ...tanhCnn({ imageSize: h0, channels: c0, classes: numClasses })],
  });
}
