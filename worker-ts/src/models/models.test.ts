import * as tf from '@tensorflow/tfjs-node';
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CheckpointError } from '../checkpoint/errors.js';
import { encodeSafetensors, tensor } from '../checkpoint/safetensors.js';
import { LoopClippingEngine } from '../clipping-reference.js';
import { parseRunConfig } from '../config.js';
import { cnnTanh } from './cnn-tanh.js';
import { checkEnvelope, EnvelopeError, initialValues } from './index.js';
import { initParams, trainableCount } from './model.js';
import { mlp } from './mlp.js';
import { transformerLora } from './transformer-lora.js';

describe('models', () => {
  it('the tanh CNN has the 26,010 parameters of Papernot et al. 2020', () => {
    expect(trainableCount(cnnTanh())).to.equal(26_010);
  });

  it('transformer-lora trains only the adapters and head by default; LoRA B starts at zero', () => {
    const def = transformerLora({
      vocabSize: 50,
      seqLen: 8,
      numClasses: 3,
      dModel: 16,
      heads: 2,
      layers: 1,
      loraRank: 2,
    });
    const trainable = def.params.filter((p) => p.trainable).map((p) => p.name);
    expect(trainable).to.deep.equal([
      'block_0.attn.q.lora_a',
      'block_0.attn.q.lora_b',
      'block_0.attn.v.lora_a',
      'block_0.attn.v.lora_b',
      'head.kernel',
      'head.bias',
    ]);
    const init = initParams(def.params, 1);
    expect(init['block_0.attn.q.lora_b']!.every((v) => v === 0)).to.equal(true);
    const engine = new LoopClippingEngine(tf, def, init);
    const x = tf.tensor2d(
      [
        [1, 5, 7, 0, 0, 0, 0, 0],
        [1, 9, 0, 0, 0, 0, 0, 0],
      ],
      undefined,
      'int32',
    );
    const y = tf.tensor1d([0, 2], 'int32');
    const { sum } = engine.clippedSum(x, y, 0.5);
    let sq = 0;
    for (const v of sum) sq += v * v;
    expect(Math.sqrt(sq)).to.be.at.most(2 * 0.5 + 1e-5);
    expect(sum.length).to.equal(trainableCount(def));
    tf.dispose([x, y]);
    engine.dispose();
  });

  it('the clipped sum is bounded by C per example, equals the plain gradient sum for a large C, and leaks no tensors', () => {
    const def = mlp({ inputShape: [4], numClasses: 3, hidden: [5] });
    const engine = new LoopClippingEngine(tf, def, initParams(def.params, 3));
    const x = tf.tensor2d([
      [1, 2, 3, 4],
      [-1, 0, 2, 1],
      [0.5, 0.5, -3, 2],
    ]);
    const y = tf.tensor1d([0, 1, 2], 'int32');
    const before = tf.memory().numTensors;
    const clipped = engine.clippedSum(x, y, 0.01).sum;
    let sq = 0;
    for (const v of clipped) sq += v * v;
    expect(Math.sqrt(sq)).to.be.at.most(3 * 0.01 + 1e-6);
    const big = engine.clippedSum(x, y, 1e9).sum;
    const named = engine.named();
    const names = def.params.map((p) => p.name);
    const plain = tf.tidy(() => {
      const f = (...ps: tf.Tensor[]) => {
        const p = Object.fromEntries(names.map((n, i) => [n, ps[i]!]));
        const logp = tf.logSoftmax(def.forward(tf, p, x));
        return tf.neg(tf.sum(tf.mul(tf.oneHot(y, 3), logp))) as tf.Scalar;
      };
      return tf
        .concat(
          tf
            .grads(f)(names.map((n) => named[n]!))
            .map((g) => g.reshape([-1])),
        )
        .dataSync();
    });
    for (let i = 0; i < big.length; i++) expect(big[i]).to.be.closeTo(plain[i]!, 1e-5);
    expect(tf.memory().numTensors).to.equal(before);
    tf.dispose([x, y]);
    engine.dispose();
  });

  it('the operating envelope refuses too many parameters or too large an update, saying what to change', () => {
    const def = cnnTanh();
    expect(() => checkEnvelope(def, { maxTrainableParameters: 10_000, maxUpdateBytes: 1e9 }, 64)).to.throw(
      EnvelopeError,
      "model 'cnn-tanh' has 26010 trainable parameters, above envelope.maxTrainableParameters = 10000",
    );
    expect(() => checkEnvelope(def, { maxTrainableParameters: 1e6, maxUpdateBytes: 100_000 }, 64)).to.throw(
      'one masked update is 208080 bytes (26010 × 64 bits), above envelope.maxUpdateBytes = 100000',
    );
    // HE sends ciphertexts: 7 of them for 26010 values + the count slot, ≈ 5× the masked bytes
    const limits = { maxTrainableParameters: 1e6, maxUpdateBytes: 500_000 };
    expect(checkEnvelope(def, limits, 64, 'masking').updateBytes).to.equal(208080);
    expect(() => checkEnvelope(def, limits, 64, 'he')).to.throw(
      EnvelopeError,
      'one encrypted update is up to 946176 bytes (7 ciphertexts for 26010 parameters and the count slot), above envelope.maxUpdateBytes = 500000',
    );
  });
});

describe('config', () => {
  it('names the bad field', () => {
    expect(() => parseRunConfig({ model: { kind: 'resnet' } })).to.throw(
      'config field \'model.kind\': must be one of mlp, cnn-tanh, transformer-lora, hf-bert, got "resnet"',
    );
  });
});

describe('base checkpoints', () => {
  const cfg = {
    kind: 'transformer-lora' as const,
    vocabSize: 50,
    seqLen: 8,
    dModel: 16,
    heads: 2,
    layers: 1,
    loraRank: 2,
  };
  const def = transformerLora({ ...cfg, numClasses: 3 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-base-'));
  const write = (names: string[]): string => {
    const init = initParams(def.params, 7);
    const file = path.join(dir, `${names.length}.safetensors`);
    const ts = Object.fromEntries(
      names.map((n) => [n, tensor(init[n]!, def.params.find((p) => p.name === n)!.shape)]),
    );
    fs.writeFileSync(file, encodeSafetensors(ts));
    return file;
  };

  it('loads the frozen weights and seeds what the base lacks among the trainable ones', () => {
    const frozen = def.params.filter((p) => !p.trainable).map((p) => p.name);
    const file = write(frozen);
    const values = initialValues(def, { ...cfg, baseCheckpoint: file });
    const base = initParams(def.params, 7);
    for (const n of frozen) expect(Array.from(values[n]!)).to.deep.equal(Array.from(base[n]!));
  });

  it('refuses a base that lacks a frozen parameter, naming it, instead of training on noise', () => {
    const frozen = def.params.filter((p) => !p.trainable).map((p) => p.name);
    const file = write(frozen.slice(1));
    expect(() => initialValues(def, { ...cfg, baseCheckpoint: file })).to.throw(
      CheckpointError,
      `lacks the frozen parameter(s) ${frozen[0]}`,
    );
  });
});
