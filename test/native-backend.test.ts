// Proves that training runs on native libtensorflow: a conv2d weight gradient (which the WASM
// backend lacks) trains a model, and the binding reports the TensorFlow version we pinned.
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Tf from '@tensorflow/tfjs-node';
import { tf } from '@tensorguard/dp/tfjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pins = JSON.parse(fs.readFileSync(path.join(root, 'scripts', 'pins.json'), 'utf8')) as {
  libtensorflow: { cpu: { version: string } };
};

describe('native TensorFlow backend', () => {
  it('is the tensorflow backend with the pinned libtensorflow version', () => {
    expect(tf.getBackend()).to.equal('tensorflow');
    const binding = (tf.backend() as unknown as { binding: { TF_Version: string } }).binding;
    expect(binding.TF_Version).to.equal(pins.libtensorflow.cpu.version);
  });

  it('trains through a conv2d weight gradient', () => {
    const before = tf.memory().numTensors;
    // Learn a 3x3 edge filter from its own outputs: the loss must fall by orders of magnitude.
    const x = tf.randomUniform([8, 12, 12, 1], 0, 1, 'float32', 1);
    const target = tf.tidy(() =>
      tf.conv2d(x as Tf.Tensor4D, tf.tensor4d([-1, 0, 1, -2, 0, 2, -1, 0, 1], [3, 3, 1, 1]), 1, 'same'),
    );
    const init = tf.zeros([3, 3, 1, 1]);
    const w = tf.variable(init, true, 'edge-filter');
    init.dispose();
    const loss = (): number => {
      const l = tf.tidy(() =>
        tf.mean(tf.square(tf.sub(tf.conv2d(x as Tf.Tensor4D, w as Tf.Tensor4D, 1, 'same'), target))),
      );
      const v = l.dataSync()[0]!;
      l.dispose();
      return v;
    };
    const first = loss();
    for (let i = 0; i < 200; i++) {
      tf.tidy(() => {
        const g = tf.grad((v: Tf.Tensor) =>
          tf.mean(tf.square(tf.sub(tf.conv2d(x as Tf.Tensor4D, v as Tf.Tensor4D, 1, 'same'), target))),
        )(w);
        w.assign(tf.sub(w, tf.mul(g, 0.5)));
      });
    }
    const last = loss();
    expect(first).to.be.greaterThan(0.1);
    expect(last).to.be.lessThan(first * 1e-3);
    tf.dispose([x, target, w]);
    expect(tf.memory().numTensors).to.equal(before);
  });
});
