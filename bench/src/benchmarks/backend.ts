// A DP-free training step of the tanh CNN (Papernot et al. 2020) on the native backend vs the
// pure-JS backend, same model, batch and data, in one process.
import type * as Tf from '@tensorflow/tfjs-node';
import { tf } from '@tensorguard/dp/tfjs';
import type { Benchmark, Row } from '../types.js';

function cnnParams(): Tf.Variable[] {
  const init = (shape: number[], fanIn: number, name: string) =>
    tf.variable(
      tf.randomUniform(shape, -Math.sqrt(3 / fanIn), Math.sqrt(3 / fanIn), 'float32', 7),
      true,
      name,
    );
  return [
    init([8, 8, 1, 16], 64, 'c1'),
    tf.variable(tf.zeros([16]), true, 'c1b'),
    init([4, 4, 16, 32], 256, 'c2'),
    tf.variable(tf.zeros([32]), true, 'c2b'),
    init([32 * 4 * 4, 32], 512, 'd1'),
    tf.variable(tf.zeros([32]), true, 'd1b'),
    init([32, 10], 32, 'd2'),
    tf.variable(tf.zeros([10]), true, 'd2b'),
  ];
}

function forward(p: Tf.Variable[], x: Tf.Tensor4D): Tf.Tensor2D {
  const [c1, c1b, c2, c2b, d1, d1b, d2, d2b] = p;
  let h = tf.tanh(tf.add(tf.conv2d(x, c1 as Tf.Tensor4D, 2, 'same'), c1b!)) as Tf.Tensor4D;
  h = tf.maxPool(h, 2, 1, 'valid');
  h = tf.tanh(tf.add(tf.conv2d(h, c2 as Tf.Tensor4D, 2, 'valid'), c2b!)) as Tf.Tensor4D;
  h = tf.maxPool(h, 2, 1, 'valid');
  const f = tf.reshape(h, [x.shape[0], -1]) as Tf.Tensor2D;
  const z = tf.tanh(tf.add(tf.matMul(f, d1 as Tf.Tensor2D), d1b!));
  return tf.add(tf.matMul(z, d2 as Tf.Tensor2D), d2b!) as Tf.Tensor2D;
}

async function timeSteps(backend: string, batch: number, steps: number, warmup: number): Promise<number[]> {
  await tf.setBackend(backend);
  await tf.ready();
  const params = cnnParams();
  const x = tf.randomUniform([batch, 28, 28, 1], 0, 1, 'float32', 3) as Tf.Tensor4D;
  const y = tf.oneHot(tf.randomUniform([batch], 0, 10, 'int32', 5) as Tf.Tensor1D, 10);
  const opt = tf.train.sgd(0.05);
  const times: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    const loss = opt.minimize(
      () => tf.losses.softmaxCrossEntropy(y, forward(params, x)) as Tf.Scalar,
      true,
      params,
    );
    await loss!.data();
    loss!.dispose();
    if (i >= warmup) times.push(performance.now() - t0);
  }
  tf.dispose([...params, x, y]);
  opt.dispose();
  return times;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export const benchmark: Benchmark = {
  description: 'non-private training step of the tanh CNN: native libtensorflow vs the pure-JS backend',
  async run({ quick, log }) {
    const batch = 64;
    const rows: Row[] = [];
    const result: Record<string, number> = {};
    for (const [backend, steps, warmup] of [
      ['tensorflow', quick ? 10 : 50, 3],
      ['cpu', quick ? 2 : 5, 1],
    ] as const) {
      log(`${backend}: ${steps} steps of batch ${batch}`);
      const times = await timeSteps(backend, batch, steps, warmup);
      const ms = median(times);
      result[backend] = ms;
      rows.push({ backend, batch, steps, median_ms_per_step: ms, examples_per_s: (1000 * batch) / ms });
    }
    await tf.setBackend('tensorflow');
    return {
      rows,
      summary: {
        native_ms_per_step: result.tensorflow!,
        purejs_ms_per_step: result.cpu!,
        native_speedup: result.cpu! / result.tensorflow!,
      },
    };
  },
};
