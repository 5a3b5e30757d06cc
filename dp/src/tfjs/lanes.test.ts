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
const CNN: ModelRecipe = { model: 'tanhCnn', options: { imageSize: 16 } };
const TRANSFORMER: ModelRecipe = { model: 'transformerEncoder', options: transformer };

interface Batch {
  model: DpModel;
  x: Tensor;
  y: Tensor;
}

/** A fresh model of `recipe` and a batch of B examples for it. */
function batch(recipe: ModelRecipe, B: number): Batch {
  if (recipe === CNN)
    return {
      model: new DpModel(tanhCnn({ imageSize: 16 }), { seed: 3 }),
      x: tf.randomUniform([B, 16, 16, 1], 0, 1, 'float32', 1),
      y: tf.randomUniform([B], 0, 10, 'int32', 2),
    };
  return {
    model: new DpModel(transformerEncoder(transformer), { seed: 4 }),
    x: tf.randomUniform([B, 6], 0, 50, 'int32', 1),
    y: tf.randomUniform([B], 0, 2, 'int32', 2),
  };
}

/** Runs `body` with `k` lanes on `b`'s model, then closes them and frees the batch. */
async function withLanes(
  b: Batch,
  recipe: ModelRecipe,
  k: number,
  body: (lanes: DataParallelLanes) => Promise<void>,
): Promise<void> {
  try {
    const lanes = await DataParallelLanes.start(b.model, recipe, { lanes: k });
    try {
      await body(lanes);
    } finally {
      lanes.close();
    }
  } finally {
    b.model.dispose();
    tf.dispose([b.x, b.y]);
  }
}

function flat(m: Map<string, Tensor>, names: string[]): Float64Array {
  const t = flattenSum(m, names);
  try {
    return Float64Array.from(t.dataSync());
  } finally {
    t.dispose();
  }
}

/** The lanes' clipped sum equals the one-process one to 1e-5 relative (and the same count clips). */
async function expectSameClippedSum(b: Batch, lanes: DataParallelLanes, clipNorm: number): Promise<void> {
  const one = dpSgdStep(b.model, b.x, b.y, { clipNorm });
  const split = await lanes.dpSgdStep(b.x, b.y, { clipNorm });
  try {
    expect(split.batchSize).to.equal(b.x.shape[0]);
    expect(split.clippedCount.dataSync()[0]).to.equal(one.clippedCount.dataSync()[0]);
    const names = b.model.trainableNames;
    expect(relErr(flat(split.sum, names), flat(one.sum, names))).to.be.below(1e-5);
  } finally {
    one.dispose();
    split.dispose();
  }
}

/** An SGD-like change of every trainable parameter of `b`'s model. */
function perturb(b: Batch, by: number): void {
  for (const n of b.model.trainableNames) {
    const next = tf.tidy(() =>
      tf.add(b.model.getParam(n), tf.randomNormal(b.model.spec(n).shape as number[], 0, by)),
    );
    b.model.setParam(n, next);
    next.dispose();
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
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

  for (const [name, recipe] of [
    ['tanh CNN', CNN],
    ['LoRA transformer', TRANSFORMER],
  ] as const) {
    it(`${name}: the lanes' clipped sum and gradient equal the one-process ones, before and after an update`, async () => {
      const b = batch(recipe, 7);
      randomiseParams(b.model, 5);
      await withLanes(b, recipe, 2, async (lanes) => {
        for (let round = 0; round < 2; round++) {
          await expectSameClippedSum(b, lanes, 0.5);
          const g1 = paramGrads(b.model, b.x, b.y);
          const g2 = await lanes.paramGrads(b.x, b.y);
          expect(relErr(flat(g2, b.model.trainableNames), flat(g1, b.model.trainableNames))).to.be.below(
            1e-5,
          );
          tf.dispose([...g1.values(), ...g2.values()]);
          // The lanes take the new values with the next request.
          perturb(b, 0.05);
          lanes.syncParams();
        }
      });
    });
  }

  it('more lanes than examples: idle lanes still take new parameters', async () => {
    const b = batch(CNN, 4);
    await withLanes(b, CNN, 4, async (lanes) => {
      perturb(b, 0.25);
      lanes.syncParams();
      // Two examples: lanes 2 and 3 are idle, and must take the new values all the same...
      const two = await lanes.dpSgdStep(tf.slice(b.x, 0, 2), tf.slice(b.y, 0, 2), { clipNorm: 1 });
      two.dispose();
      // ...because this step, which uses all four, carries none.
      await expectSameClippedSum(b, lanes, 1);
    });
  });

  it('holds no tensors over repeated steps in this process', async () => {
    const b = batch(TRANSFORMER, 5);
    await withLanes(b, TRANSFORMER, 2, async (lanes) => {
      const before = tf.memory().numTensors;
      for (let i = 0; i < 20; i++) {
        const s = await lanes.dpSgdStep(b.x, b.y, { clipNorm: 1 });
        s.dispose();
        lanes.syncParams();
      }
      expect(tf.memory().numTensors).to.equal(before);
    });
  });

  it('a recipe for another model is refused at start, naming the recipe', async () => {
    const b = batch(CNN, 1);
    await withLanes(b, CNN, 1, async () => {
      const err = await rejection(DataParallelLanes.start(b.model, TRANSFORMER, { lanes: 1 }));
      expect(err).to.be.instanceOf(LaneError);
      expect((err as Error).message).to.match(/transformerEncoder.*differ/);
    });
  });

  it('builds the model from a module recipe', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-lanes-'));
    const here = new URL('./index.ts', import.meta.url).href;
    const mod = path.join(dir, 'recipe.mjs');
    fs.writeFileSync(
      mod,
      `import { tanhCnn } from ${JSON.stringify(here)};\nexport function build(size) { return { layers: tanhCnn({ imageSize: size }) }; }\n`,
    );
    try {
      const b = batch(CNN, 4);
      await withLanes(b, { module: mod, export: 'build', args: [16] }, 2, (lanes) =>
        expectSameClippedSum(b, lanes, 1),
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a lane's error comes back with its name and message; a dead lane fails the next request", async () => {
    const b = batch(CNN, 4);
    await withLanes(b, CNN, 2, async (lanes) => {
      let err = await rejection(lanes.dpSgdStep(b.x, b.y, { clipNorm: -1 }));
      expect(err).to.be.instanceOf(LaneError);
      expect((err as LaneError).laneError?.name).to.equal('InvalidClippingOptionsError');
      expect((err as Error).message).to.contain('clipNorm');
      // Still usable after a refused request.
      await expectSameClippedSum(b, lanes, 1);
      process.kill(lanes.pids[1]!, 'SIGKILL');
      err = await rejection(lanes.dpSgdStep(b.x, b.y, { clipNorm: 1 }));
      expect(err).to.be.instanceOf(LaneError);
      expect((err as Error).message).to.match(/lane 1 exited .*SIGKILL.*copy of the model/);
    });
  });

  it('refuses a bad lane count', async () => {
    const b = batch(CNN, 1);
    await withLanes(b, CNN, 1, async () => {
      for (const lanes of [0, 1.5, -2, 257]) {
        const err = await rejection(DataParallelLanes.start(b.model, CNN, { lanes }));
        expect(err).to.be.instanceOf(RangeError);
        expect((err as Error).message).to.contain('lanes must be an integer from 1 to 256');
      }
    });
  });
});
