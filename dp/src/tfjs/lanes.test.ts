// DataParallelLanes against the one-process engine: real child processes, each with its own
// TensorFlow runtime. The lanes' summed clipped sum must equal dpSgdStep's on the whole batch
// (float rounding in the order of additions aside), before and after a parameter update.
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  DataParallelLanes,
  DpModel,
  LaneError,
  dpSgdStep,
  flattenSum,
  laneSlices,
  paramGrads,
  tanhCnn,
  tf,
  transformerEncoder,
  type ModelRecipe,
  type Tensor,
} from './index.js';
import { randomiseParams, relErr } from './reference.test-util.js';

const transformer = { vocabSize: 50, seqLen: 6, dim: 16, heads: 2, blocks: 1, lora: { rank: 2, alpha: 4 } };

function flat(m: Map<string, Tensor>, names: string[]): Float64Array {
  const t = flattenSum(m, names);
  try {
    return Float64Array.from(t.dataSync());
  } finally {
    t.dispose();
  }
}

describe('DataParallelLanes', function () {
  this.timeout(120_000);

  it('splits a batch into contiguous slices that differ by at most one example', () => {
    expect(laneSlices(7, 2)).to.deep.equal([
      [0, 4],
      [4, 3],
    ]);
    expect(laneSlices(2, 3)).to.deep.equal([
      [0, 1],
      [1, 1],
    ]);
    expect(laneSlices(0, 2)).to.deep.equal([]);
  });

  for (const [name, recipe, make] of [
    [
      'tanh CNN',
      { model: 'tanhCnn', options: { imageSize: 16 } },
      () => ({
        model: new DpModel(tanhCnn({ imageSize: 16 }), { seed: 3 }),
        x: tf.randomUniform([7, 16, 16, 1], 0, 1, 'float32', 1),
        y: tf.randomUniform([7], 0, 10, 'int32', 2),
      }),
    ],
    [
      'LoRA transformer',
      { model: 'transformerEncoder', options: transformer },
      () => ({
        model: new DpModel(transformerEncoder(transformer), { seed: 4 }),
        x: tf.randomUniform([7, 6], 0, 50, 'int32', 1),
        y: tf.randomUniform([7], 0, 2, 'int32', 2),
      }),
    ],
  ] as const) {
    it(`${name}: the lanes' clipped sum and gradient equal the one-process ones, before and after an update`, async () => {
      const { model, x, y } = make();
      randomiseParams(model, 5);
      const lanes = await DataParallelLanes.start(model, recipe as ModelRecipe, { lanes: 2 });
      try {
        const names = model.trainableNames;
        for (let round = 0; round < 2; round++) {
          const one = dpSgdStep(model, x, y, { clipNorm: 0.5 });
          const two = await lanes.dpSgdStep(x, y, { clipNorm: 0.5 });
          expect(two.batchSize).to.equal(7);
          expect(two.clippedCount.dataSync()[0]).to.equal(one.clippedCount.dataSync()[0]);
          expect(relErr(flat(two.sum, names), flat(one.sum, names))).to.be.below(1e-5);
          const g1 = paramGrads(model, x, y);
          const g2 = await lanes.paramGrads(x, y);
          expect(relErr(flat(g2, names), flat(g1, names))).to.be.below(1e-5);
          tf.dispose([...g1.values(), ...g2.values()]);
          // An SGD update here, then the lanes take the new values with the next request.
          for (const [n, g] of one.sum) {
            const next = tf.tidy(() => tf.sub(model.getParam(n), tf.mul(g, 0.3)));
            model.setParam(n, next);
            next.dispose();
          }
          lanes.syncParams();
          one.dispose();
          two.dispose();
        }
      } finally {
        lanes.close();
        model.dispose();
        tf.dispose([x, y]);
      }
    });
  }

  it('more lanes than examples: idle lanes still take new parameters', async () => {
    const model = new DpModel(tanhCnn({ imageSize: 16 }), { seed: 3 });
    const x = tf.randomUniform([3, 16, 16, 1], 0, 1, 'float32', 1);
    const y = tf.randomUniform([3], 0, 10, 'int32', 2);
    const lanes = await DataParallelLanes.start(
      model,
      { model: 'tanhCnn', options: { imageSize: 16 } },
      { lanes: 4 },
    );
    try {
      const a = await lanes.dpSgdStep(tf.slice(x, 0, 1), tf.slice(y, 0, 1), { clipNorm: 1 });
      a.dispose();
      const w = model.trainableNames[0]!;
      const bumped = tf.add(model.getParam(w), 0.25);
      model.setParam(w, bumped);
      bumped.dispose();
      lanes.syncParams();
      const one = dpSgdStep(model, x, y, { clipNorm: 1 });
      const four = await lanes.dpSgdStep(x, y, { clipNorm: 1 });
      expect(relErr(flat(four.sum, model.trainableNames), flat(one.sum, model.trainableNames))).to.be.below(
        1e-5,
      );
      one.dispose();
      four.dispose();
    } finally {
      lanes.close();
      model.dispose();
      tf.dispose([x, y]);
    }
  });

  it('holds no tensors over repeated steps in this process', async () => {
    const model = new DpModel(transformerEncoder(transformer), { seed: 4 });
    const x = tf.randomUniform([5, 6], 0, 50, 'int32', 1);
    const y = tf.randomUniform([5], 0, 2, 'int32', 2);
    const lanes = await DataParallelLanes.start(
      model,
      { model: 'transformerEncoder', options: transformer },
      { lanes: 2 },
    );
    try {
      const before = tf.memory().numTensors;
      for (let i = 0; i < 20; i++) {
        const s = await lanes.dpSgdStep(x, y, { clipNorm: 1 });
        s.dispose();
        lanes.syncParams();
      }
      expect(tf.memory().numTensors).to.equal(before);
    } finally {
      lanes.close();
      model.dispose();
      tf.dispose([x, y]);
    }
  });

  it('a recipe for another model is refused at start, naming the recipe', async () => {
    const model = new DpModel(tanhCnn({ imageSize: 16 }), { seed: 3 });
    try {
      let err: unknown;
      await DataParallelLanes.start(
        model,
        { model: 'transformerEncoder', options: transformer },
        { lanes: 1 },
      ).catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(LaneError);
      expect((err as Error).message).to.match(/transformerEncoder.*differ|differ.*recipe/);
    } finally {
      model.dispose();
    }
  });

  it('builds the model from a module recipe', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-lanes-'));
    const here = new URL('./index.ts', import.meta.url).href;
    const mod = path.join(dir, 'recipe.mjs');
    fs.writeFileSync(
      mod,
      `import { tanhCnn } from ${JSON.stringify(here)};\nexport function build(size) { return { layers: tanhCnn({ imageSize: size }) }; }\n`,
    );
    const model = new DpModel(tanhCnn({ imageSize: 16 }), { seed: 3 });
    const x = tf.randomUniform([4, 16, 16, 1], 0, 1, 'float32', 1);
    const y = tf.randomUniform([4], 0, 10, 'int32', 2);
    const lanes = await DataParallelLanes.start(
      model,
      { module: mod, export: 'build', args: [16] },
      { lanes: 2 },
    );
    try {
      const one = dpSgdStep(model, x, y, { clipNorm: 1 });
      const two = await lanes.dpSgdStep(x, y, { clipNorm: 1 });
      expect(relErr(flat(two.sum, model.trainableNames), flat(one.sum, model.trainableNames))).to.be.below(
        1e-5,
      );
      one.dispose();
      two.dispose();
    } finally {
      lanes.close();
      model.dispose();
      tf.dispose([x, y]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a lane's error comes back with its name and message; a dead lane fails the next request", async () => {
    const model = new DpModel(tanhCnn({ imageSize: 16 }), { seed: 3 });
    const x = tf.randomUniform([4, 16, 16, 1], 0, 1, 'float32', 1);
    const y = tf.randomUniform([4], 0, 10, 'int32', 2);
    const lanes = await DataParallelLanes.start(
      model,
      { model: 'tanhCnn', options: { imageSize: 16 } },
      { lanes: 2 },
    );
    try {
      let err: unknown;
      await lanes.dpSgdStep(x, y, { clipNorm: -1 }).catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(LaneError);
      expect((err as LaneError).laneError?.name).to.equal('InvalidClippingOptionsError');
      expect((err as Error).message).to.contain('clipNorm');
      // Still usable after a refused request.
      const ok = await lanes.dpSgdStep(x, y, { clipNorm: 1 });
      ok.dispose();
      process.kill(lanes.pids[1]!, 'SIGKILL');
      err = undefined;
      await lanes.dpSgdStep(x, y, { clipNorm: 1 }).catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(LaneError);
      expect((err as Error).message).to.match(/lane 1 exited/);
    } finally {
      lanes.close();
      model.dispose();
      tf.dispose([x, y]);
    }
  });

  it('refuses a bad lane count', async () => {
    const model = new DpModel(tanhCnn({ imageSize: 16 }), { seed: 3 });
    try {
      for (const lanes of [0, 1.5, -2]) {
        let err: unknown;
        await DataParallelLanes.start(model, { model: 'tanhCnn' }, { lanes }).catch(
          (e: unknown) => (err = e),
        );
        expect(err).to.be.instanceOf(RangeError);
        expect((err as Error).message).to.contain('lanes');
      }
    } finally {
      model.dispose();
    }
  });
});
