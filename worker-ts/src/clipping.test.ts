import * as tf from '@tensorflow/tfjs-node';
import { UnsupportedLayerError } from '@tensorguard/dp/tfjs';
import { expect } from 'chai';
import fs from 'node:fs';
import { DpClippingEngine, type ClippedSum } from './clipping.js';
import { LoopClippingEngine } from './clipping-reference.js';
import type { RunConfig } from './config.js';
import { buildModel, modelRecipe, type DataShape } from './models/build.js';
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

async function compare(def: ModelDef, x: tf.Tensor, y: tf.Tensor, clipNorm: number): Promise<void> {
  const init = values(def, 7);
  const loop = new LoopClippingEngine(tf, def, init);
  const fast = new DpClippingEngine(def, init, { maxChunkSize: 3 });
  try {
    const before = tf.memory().numTensors;
    const a = loop.clippedSum(x, y, clipNorm);
    const b = await fast.clippedSum(x, y, clipNorm);
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
    const d = (await fast.clippedSum(x, y, clipNorm)).sum;
    for (let i = 0; i < c.length; i++) expect(d[i]).to.be.closeTo(c[i]!, 1e-5 * scale + 1e-7);
  } finally {
    loop.dispose();
    fast.dispose();
  }
}

describe('DpClippingEngine (dp/tfjs) equals the batch-of-one loop', () => {
  it('mlp', async () => {
    const def = mlp({ inputShape: [6], numClasses: 3, hidden: [5, 4] });
    const x = tf.randomNormal([7, 6], 0, 2, 'float32', 1);
    const y = tf.tensor1d([0, 1, 2, 0, 1, 2, 2], 'int32');
    // C between the per-example norms, so some examples are clipped and some not.
    await compare(def, x, y, 0.8);
    tf.dispose([x, y]);
  });

  it('cnn-tanh on [h, w] records (the IDX shape)', async () => {
    // 16×16 keeps conv2's output 2×2: dp/tfjs's conv rule mishandles a 1×1 conv output (see README).
    const def = cnnTanh({ inputShape: [16, 16, 1], numClasses: 4 });
    const x = tf.randomUniform([5, 16, 16], 0, 1, 'float32', 2);
    const y = tf.tensor1d([0, 1, 2, 3, 1], 'int32');
    await compare(def, x, y, 0.5);
    tf.dispose([x, y]);
  });

  it('transformer-lora: adapters, layer norms and head train, the base is frozen; padding masked', async () => {
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
    await compare(def, x, y, 0.05);
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

/** Whether `pid` is a running (not zombie) child of this process (Linux /proc). */
function runningChild(pid: number): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false; // exited and reaped
  }
  // "pid (comm) state ppid ...": comm may hold spaces, so read after its closing parenthesis.
  const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(ppid) === process.pid && state !== 'Z';
}

async function eventually(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; !ok();) {
    if (Date.now() > end) throw new Error(`still not true after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The worker model `cfg` names, in-process and over two lanes built from its recipe: the clipped
 * sums agree (to 1e-5 of the sum's largest coordinate), before and after a new model version, the
 * lane step leaks no tensors here, and dispose stops both lane processes.
 */
async function compareLanes(
  cfg: RunConfig['model'],
  data: DataShape,
  x: tf.Tensor,
  y: tf.Tensor,
  clipNorm: number,
): Promise<void> {
  const def = buildModel(cfg, data);
  const init = values(def, 7);
  const one = new DpClippingEngine(def, init, { maxChunkSize: 3 });
  const two = await DpClippingEngine.start(def, init, {
    maxChunkSize: 3,
    lanes: { count: 2, recipe: modelRecipe(cfg, data) },
  });
  const lanes = two.lanePids;
  try {
    expect(lanes).to.have.length(2);
    expect(lanes.every(runningChild)).to.equal(true);
    expect(one.lanePids).to.deep.equal([]);
    const agree = async (): Promise<ClippedSum> => {
      const a = await one.clippedSum(x, y, clipNorm);
      const tensors = tf.memory().numTensors;
      const b = await two.clippedSum(x, y, clipNorm);
      expect(tf.memory().numTensors).to.equal(tensors);
      expect([b.batchSize, b.clipped]).to.deep.equal([a.batchSize, a.clipped]);
      let scale = 0;
      for (const v of a.sum) scale = Math.max(scale, Math.abs(v));
      expect(scale).to.be.above(0);
      for (let i = 0; i < a.sum.length; i++) expect(b.sum[i]).to.be.closeTo(a.sum[i]!, 1e-5 * scale);
      return a;
    };
    const { sum: first, clipped } = await agree();
    expect(clipped).to.be.within(1, 6); // C lies among the per-example norms
    // A new model version: the lanes must take it (setTrainable → syncParams) to agree again.
    const next = Float32Array.from(first, (v, i) => v * 1e-2 + (i % 3) * 1e-3);
    one.setTrainable(next);
    two.setTrainable(next);
    const { sum: second } = await agree();
    expect(second.some((v, i) => Math.abs(v - first[i]!) > 1e-3)).to.equal(true);
  } finally {
    one.dispose();
    two.dispose();
  }
  expect(two.lanePids).to.deep.equal([]);
  await eventually(`lane processes ${lanes.join(', ')} stopped`, () => !lanes.some(runningChild));
}

describe('DpClippingEngine over two lanes equals the in-process engine', () => {
  it('cnn-tanh (odd batch of 7)', async () => {
    const x = tf.randomUniform([7, 16, 16], 0, 1, 'float32', 3);
    const y = tf.tensor1d([0, 1, 2, 3, 1, 0, 2], 'int32');
    try {
      await compareLanes({ kind: 'cnn-tanh' }, { inputShape: [16, 16], numClasses: 4 }, x, y, 5);
    } finally {
      tf.dispose([x, y]);
    }
  });

  it('transformer-lora (odd batch of 7, padded)', async () => {
    const cfg = {
      kind: 'transformer-lora',
      vocabSize: 30,
      dModel: 8,
      heads: 2,
      layers: 1,
      loraRank: 2,
      trainable: ['lora', 'ln_', 'head'],
    } as const satisfies RunConfig['model'];
    const x = tf.tensor2d(
      [
        [1, 5, 7, 0, 0, 0],
        [1, 9, 3, 4, 2, 8],
        [1, 2, 0, 0, 0, 0],
        [1, 29, 28, 27, 0, 0],
        [1, 11, 12, 0, 0, 0],
        [1, 4, 4, 4, 4, 0],
        [1, 17, 0, 0, 0, 0],
      ],
      undefined,
      'int32',
    );
    const y = tf.tensor1d([0, 2, 1, 2, 0, 1, 1], 'int32');
    try {
      await compareLanes(
        { ...cfg, trainable: [...cfg.trainable] },
        { inputShape: [6], numClasses: 3 },
        x,
        y,
        4,
      );
    } finally {
      tf.dispose([x, y]);
    }
  });
});
