// A plain (non-private) single-process training run on Fashion-MNIST with the native backend.
// Used by the quick-start before a Ray cluster is involved and by the backend benchmark as the
// reference model; the private, distributed path lives in the worker and the coordinator.
import type * as Tf from '@tensorflow/tfjs-node';
import { tf } from '@tensorguard/dp/tfjs';
import { loadImagePair, type LabelledImages } from './data/idx.js';

export interface LocalTrainOptions {
  /** Folder with the Fashion-MNIST IDX files. */
  dataDir: string;
  /** Training examples taken from the start of the training set (default 10000). */
  trainExamples?: number;
  /** Test examples (default all 10000). */
  testExamples?: number;
  /** Passes over the training examples (default 1). */
  epochs?: number;
  /** Examples per step (default 64). */
  batchSize?: number;
  log?: (line: string) => void;
}

export interface LocalTrainResult {
  backend: string;
  testAccuracy: number;
  trainExamples: number;
  seconds: number;
}

/** Images as a [n, 28, 28, 1] float tensor in [0, 1] and one-hot labels. */
export function toTensors(pair: LabelledImages, count: number): { x: Tf.Tensor4D; y: Tf.Tensor2D } {
  const [n0, rows, cols] = pair.images.shape as [number, number, number];
  const n = Math.min(count, n0);
  return tf.tidy(() => {
    const x = tf
      .tensor4d(pair.images.data.subarray(0, n * rows * cols), [n, rows, cols, 1], 'int32')
      .toFloat()
      .div(255) as Tf.Tensor4D;
    const y = tf.oneHot(tf.tensor1d(pair.labels.subarray(0, n), 'int32'), 10).toFloat() as Tf.Tensor2D;
    return { x, y };
  });
}

/** The tanh CNN of Papernot et al. 2020 ("Tempered sigmoid activations"), as tf.layers. */
export function tanhCnn(): Tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.conv2d({
        inputShape: [28, 28, 1],
        filters: 16,
        kernelSize: 8,
        strides: 2,
        padding: 'same',
        activation: 'tanh',
      }),
      tf.layers.maxPooling2d({ poolSize: 2, strides: 1 }),
      tf.layers.conv2d({ filters: 32, kernelSize: 4, strides: 2, padding: 'valid', activation: 'tanh' }),
      tf.layers.maxPooling2d({ poolSize: 2, strides: 1 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 32, activation: 'tanh' }),
      tf.layers.dense({ units: 10 }),
    ],
  });
}

export async function trainLocal(opts: LocalTrainOptions): Promise<LocalTrainResult> {
  const log = opts.log ?? (() => {});
  const t0 = performance.now();
  const train = loadImagePair(opts.dataDir, 'train');
  const test = loadImagePair(opts.dataDir, 't10k');
  const { x, y } = toTensors(train, opts.trainExamples ?? 10_000);
  const { x: tx, y: ty } = toTensors(test, opts.testExamples ?? 10_000);
  const model = tanhCnn();
  model.compile({
    optimizer: tf.train.adam(2e-3),
    loss: tf.losses.softmaxCrossEntropy,
    metrics: ['accuracy'],
  });
  const epochs = opts.epochs ?? 1;
  await model.fit(x, y, {
    epochs,
    batchSize: opts.batchSize ?? 64,
    verbose: 0,
    callbacks: {
      onEpochEnd: (epoch, logs) =>
        log(`epoch ${epoch + 1}/${epochs}: train accuracy ${(logs?.acc ?? 0).toFixed(3)}`),
    },
  });
  const evalOut = model.evaluate(tx, ty, { batchSize: 500 }) as Tf.Scalar[];
  const testAccuracy = (await evalOut[1]!.data())[0]!;
  const result = {
    backend: tf.getBackend(),
    testAccuracy,
    trainExamples: x.shape[0],
    seconds: (performance.now() - t0) / 1000,
  };
  tf.dispose([x, y, tx, ty, ...evalOut]);
  model.dispose();
  return result;
}
