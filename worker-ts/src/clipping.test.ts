import * as tf from '@tensorflow/tfjs-node';
import { UnsupportedLayerError } from '@tensorguard/dp/tfjs';
import { expect } from 'chai';
import { DpClippingEngine } from './clipping.js';
import { LoopClippingEngine } from './clipping-reference.js';
import { cnnTanh } from './models/cnn-tanh.js';
import { initParams, modelFromLayers, trainableCount, type ModelDef } from './models/model.js';
import { mlp } from './models/mlp.js';
import { transformerLora } from './models/transformer-lora.js';

// Non-zero starting values everywhere (LoRA B starts at zero, which would hide A's gradient).
function values(def: ModelDef, seed: number): Record<string, Float32Array> {
  const v = initParams(def.params, seed);
  const jitter = initParams(
    def.params.map((p) => ({ ...p, init: { normal: 0.1 } })),
    seed + 1,
  );
  for (const p of def.params) if (p.name.includes('lora_b')) v[p.name] = jitter[p.name]!;
  return v;
}

function compare(def: ModelDef, x: tf.Tensor, y: tf.Tensor, clipNorm: number): void {
  const init = values(def, 7);
  const loop = new LoopClippingEngine(tf, def, init);
  const fast = new DpClippingEngine(def, init, { maxChunkSize: 3 });
  try {
    const before = tf.memory().numTensors;
    const a = loop.clippedSum(x, y, clipNorm);
    const b = fast.clippedSum(x, y, clipNorm);
    expect(tf.memory().numTensors).to.equal(before);
    expect(b.sum.length).to.equal(trainableCount(def));
    expect(b.batchSize).to.equal(a.batchSize);
    expect(b.clipped).to.equal(a.clipped);
    let scale = 0;
    for (const v of a.sum) scale = Math.max(scale, Math.abs(v));
    expect(scale).to.be.above(0);
    for (let i = 0; i < a.sum.length; i++) expect(b.sum[i]).to.be.closeTo(a.sum[i]!, 1e-5 * scale + 1e-7);
    // A new model version reaches both engines the same way.
    const flat = Float32Array.from(a.sum, (v) => v * 1e-3);
    loop.setTrainable(flat);
    fast.setTrainable(flat);
    const c = loop.clippedSum(x, y, clipNorm).sum;
    const d = fast.clippedSum(x, y, clipNorm).sum;
    for (let i = 0; i < c.length; i++) expect(d[i]).to.be.closeTo(c[i]!, 1e-5 * scale + 1e-7);
  } finally {
    loop.dispose();
    fast.dispose();
  }
}

describe('DpClippingEngine (dp/tfjs) equals the batch-of-one loop', () => {
  it('mlp', () => {
    const def = mlp({ inputShape: [6], numClasses: 3, hidden: [5, 4] });
    const x = tf.randomNormal([7, 6], 0, 2, 'float32', 1);
    const y = tf.tensor1d([0, 1, 2, 0, 1, 2, 2], 'int32');
    // C between the per-example norms, so some examples are clipped and some not.
    compare(def, x, y, 0.8);
    tf.dispose([x, y]);
  });

  it('cnn-tanh on [h, w] records (the IDX shape)', () => {
    // 16×16 keeps conv2's output 2×2: dp/tfjs's conv rule mishandles a 1×1 conv output (see README).
    const def = cnnTanh({ inputShape: [16, 16, 1], numClasses: 4 });
    const x = tf.randomUniform([5, 16, 16], 0, 1, 'float32', 2);
    const y = tf.tensor1d([0, 1, 2, 3, 1], 'int32');
    compare(def, x, y, 0.5);
    tf.dispose([x, y]);
  });

  it('transformer-lora: adapters, layer norms and head train, the base is frozen; padding masked', () => {
    const def = transformerLora({
      vocabSize: 30,
      seqLen: 6,
      numClasses: 3,
      dModel: 8,
      heads: 2,
      layers: 1,
      loraRank: 2,
      trainable: ['lora', 'ln_', 'head'],
    });
    expect(def.params.filter((p) => p.name.startsWith('embed')).every((p) => !p.trainable)).to.equal(true);
    const x = tf.tensor2d(
      [
        [1, 5, 7, 0, 0, 0],
        [1, 9, 3, 4, 2, 8],
        [1, 2, 0, 0, 0, 0],
        [1, 29, 28, 27, 0, 0],
      ],
      undefined,
      'int32',
    );
    const y = tf.tensor1d([0, 2, 1, 2], 'int32');
    compare(def, x, y, 0.05);
    tf.dispose([x, y]);
  });

  it('refuses a model with a trainable layer it has no rule for, naming the layer', () => {
    const def = modelFromLayers({
      kind: 'custom',
      inputShape: [2],
      inputDtype: 'float32',
      numClasses: 2,
      layers: [
        {
          kind: 'prelu',
          name: 'act',
          params: [{ name: 'act.alpha', shape: [2], trainable: true, init: 'zeros' }],
          children: [],
          forward: (x, ctx) => tf.prelu(x, ctx.param('act.alpha')),
        },
      ],
    });
    expect(() => new DpClippingEngine(def, initParams(def.params, 1))).to.throw(UnsupportedLayerError, /act/);
  });
});
