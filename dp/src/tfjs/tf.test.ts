// The fused TensorFlow kernels tf.ts runs on tfjs-node, each against the tfjs composition it
// replaces: maxPool2d (MaxPoolWithArgmax forward, one segment sum backward) against tf.maxPool,
// whose gradient is TensorFlow's MaxPoolGrad kernel (same values and gradient, ties included);
// tanh (TanhGrad) against tf.tanh; softmaxCrossEntropySum (SparseSoftmaxCrossEntropyWithLogits)
// against one-hot · log-softmax; dp's own conv kernel (convPerExample) against im2col patches, and
// its GELU and layer-norm kernels against the TensorFlow ops of layers.ts.
import { expect } from 'chai';
import { crossEntropyPerExample } from './loss.js';
import { gelu, layerNorm } from './layers.js';
import { im2col } from './sites.js';
import tf, {
  type Tensor,
  type Tensor4D,
  convPerExample,
  dpKernels,
  geluKernel,
  layerNormKernel,
  maxPool2d,
  setDpKernels,
  softmaxCrossEntropySum,
  tanh,
  tfjsVariant,
} from './tf.js';

const maxAbsDiff = (a: Tensor, b: Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);

type Pool = { size: [number, number]; strides: [number, number]; padding: 'same' | 'valid' };

/** Forward and input gradient of Σ dy·pool(x) for both implementations. */
function both(x: Tensor4D, p: Pool) {
  return tf.tidy(() => {
    const ref = tf.maxPool(x, p.size, p.strides, p.padding);
    const dy = tf.randomNormal(ref.shape, 0, 1, 'float32', 7);
    const grad = (f: (t: Tensor4D) => Tensor) =>
      tf.grad((t: Tensor) => tf.sum(tf.mul(f(t as Tensor4D), dy)))(x);
    const ours = maxPool2d(x, p.size, p.strides, p.padding);
    return {
      ref: ref.arraySync(),
      ours: ours.arraySync(),
      refGrad: grad((t) => tf.maxPool(t, p.size, p.strides, p.padding)).arraySync(),
      ourGrad: grad((t) => maxPool2d(t, p.size, p.strides, p.padding)).arraySync(),
    };
  });
}

const CASES: [string, [number, number, number, number], Pool][] = [
  ['2×2 stride 1 valid (the tanh CNN)', [4, 14, 14, 16], { size: [2, 2], strides: [1, 1], padding: 'valid' }],
  ['2×2 stride 2 valid', [3, 8, 8, 5], { size: [2, 2], strides: [2, 2], padding: 'valid' }],
  ['3×3 stride 2 same', [2, 9, 7, 3], { size: [3, 3], strides: [2, 2], padding: 'same' }],
  ['2×3 window, strides 1×2, same', [2, 6, 9, 4], { size: [2, 3], strides: [1, 2], padding: 'same' }],
];

describe('maxPool2d: TensorFlow argmax pooling with a segment-sum gradient', () => {
  for (const [name, shape, pool] of CASES) {
    it(`${name}: equals tf.maxPool and its gradient`, () => {
      const x = tf.randomNormal(shape, 0, 1, 'float32', 3) as Tensor4D;
      const r = both(x, pool);
      x.dispose();
      expect(r.ours).to.deep.equal(r.ref);
      expect(r.ourGrad).to.deep.equal(r.refGrad);
    });
  }

  it('ties (saturated and repeated values) send the gradient where MaxPoolGrad sends it', () => {
    // Values on a coarse grid, as after a saturated tanh or a relu: most windows hold ties.
    const x = tf.tidy(() =>
      tf.div(tf.round(tf.mul(tf.randomUniform([3, 10, 10, 4], -1, 1, 'float32', 5), 2)), 2),
    );
    for (const [, , pool] of CASES) {
      const r = both(x as Tensor4D, pool);
      expect(r.ours).to.deep.equal(r.ref);
      expect(r.ourGrad).to.deep.equal(r.refGrad);
    }
    x.dispose();
  });

  it('a window of equal values passes the whole gradient to its first element, row-major', () => {
    const x = tf.ones([1, 2, 2, 1]) as Tensor4D;
    const g = tf.grad((t: Tensor) => tf.sum(maxPool2d(t as Tensor4D, [2, 2], [1, 1], 'valid')))(x);
    expect(Array.from(g.dataSync())).to.deep.equal([1, 0, 0, 0]);
    tf.dispose([x, g]);
  });

  it('runs TensorFlow argmax kernels, not MaxPoolGrad (on a CUDA device: tf.maxPool, the same kernels as the reference)', async () => {
    const x = tf.randomNormal([2, 6, 6, 3]) as Tensor4D;
    const info = await tf.profile(() =>
      tf
        .grad((t: Tensor) => tf.sum(maxPool2d(t as Tensor4D, [2, 2], [1, 1], 'valid')))(x)
        .dispose(),
    );
    x.dispose();
    const kernels = info.kernels.map((k) => k.name);
    if (tfjsVariant === 'gpu') expect(kernels).to.include('MaxPoolGrad');
    else expect(kernels).to.include('UnsortedSegmentSum').and.not.include('MaxPoolGrad');
  });

  it('leaves no tensors behind', () => {
    const x = tf.randomNormal([2, 6, 6, 3]) as Tensor4D;
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++)
      tf.grad((t: Tensor) => tf.sum(maxPool2d(t as Tensor4D, [2, 2], [1, 1], 'valid')))(x).dispose();
    expect(tf.memory().numTensors).to.equal(before);
    x.dispose();
  });
});

describe('tanh: TensorFlow TanhGrad as its gradient', () => {
  it('equals tf.tanh and its autodiff gradient', () => {
    tf.tidy(() => {
      const x = tf.mul(tf.randomNormal([64, 37], 0, 1, 'float32', 11), 3);
      const dy = tf.randomNormal([64, 37], 0, 1, 'float32', 12);
      expect(maxAbsDiff(tanh(x), tf.tanh(x))).to.equal(0);
      const g = (f: (t: Tensor) => Tensor) => tf.grad((t: Tensor) => tf.sum(tf.mul(f(t), dy)))(x);
      expect(maxAbsDiff(g(tanh), g(tf.tanh))).to.be.below(1e-6);
    });
  });
});

describe('softmaxCrossEntropySum: one SparseSoftmaxCrossEntropyWithLogits kernel', () => {
  const composed = (z: Tensor, y: Tensor, w?: Tensor) => {
    const per = crossEntropyPerExample(z, y);
    return tf.sum(w ? tf.mul(per, w) : per);
  };

  for (const weighted of [false, true])
    it(`equals the one-hot · log-softmax sum and its gradient${weighted ? ', per-example weights' : ''}`, () => {
      tf.tidy(() => {
        const z = tf.mul(tf.randomNormal([50, 7], 0, 1, 'float32', 21), 4);
        const y = tf.randomUniform([50], 0, 7, 'int32', 22);
        const w = weighted ? tf.randomUniform([50], 0, 1, 'float32', 23) : undefined;
        const fused = (t: Tensor) => softmaxCrossEntropySum(t, y, w)!;
        const value = fused(z).dataSync()[0]!;
        expect(value).to.be.closeTo(composed(z, y, w).dataSync()[0]!, 1e-5 * Math.abs(value));
        const g = (f: (t: Tensor) => Tensor) => tf.grad(f)(z);
        expect(
          maxAbsDiff(
            g(fused),
            g((t) => composed(t, y, w)),
          ),
        ).to.be.below(1e-6);
      });
    });

  it('takes float labels as their integer values', () => {
    tf.tidy(() => {
      const z = tf.randomNormal([8, 3], 0, 1, 'float32', 24);
      const y = tf.tensor1d([0, 1, 2, 2, 1, 0, 1, 2], 'int32');
      const a = softmaxCrossEntropySum(z, y)!.dataSync()[0]!;
      expect(softmaxCrossEntropySum(z, tf.cast(y, 'float32'))!.dataSync()[0]).to.equal(a);
    });
  });

  it('refuses a label outside [0, K) without printing the labels', () => {
    const z = tf.zeros([3, 4]);
    const y = tf.tensor1d([1, 4321, 2], 'int32');
    let err: unknown;
    try {
      softmaxCrossEntropySum(z, y);
    } catch (e) {
      err = e;
    }
    tf.dispose([z, y]);
    expect(err).to.be.instanceOf(RangeError);
    expect((err as Error).message).to.match(/labels must be integers in \[0, 4\)/);
    expect((err as Error).message).not.to.include('4321');
  });
});

describe("dp's conv kernel (TgConvPerExample) against im2col patches", () => {
  it("is built by the setup and active on tfjs-node's CPU device", () => {
    const k = dpKernels();
    const onGpu = (tf.backend() as unknown as { isUsingGpuDevice?: boolean }).isUsingGpuDevice === true;
    if (tfjsVariant === 'cpu' || !onGpu) expect(k.active, k.error).to.equal(true);
    else expect(k.active, 'a CUDA device: the CPU kernel must stay off').to.equal(false);
  });

  // [x shape, Cout, kernel, strides, padding]: the tanh CNN's two convs, then Cout = 3 and 40
  // (the one-column path), 8, 24, 48 and 64 (register blocks of 1, 3, 6 and 8 vectors).
  const CONVS: [
    [number, number, number, number],
    number,
    [number, number],
    [number, number],
    'same' | 'valid',
  ][] = [
    [[3, 28, 28, 1], 16, [8, 8], [2, 2], 'same'],
    [[3, 13, 13, 16], 32, [4, 4], [2, 2], 'valid'],
    [[2, 7, 9, 2], 3, [3, 3], [2, 2], 'same'],
    [[2, 5, 5, 2], 40, [2, 2], [1, 1], 'valid'],
    [[2, 6, 5, 3], 8, [2, 3], [1, 2], 'same'],
    [[2, 6, 6, 4], 24, [3, 3], [1, 1], 'same'],
    [[2, 9, 9, 3], 48, [3, 3], [3, 3], 'same'],
    [[1, 6, 6, 2], 64, [3, 3], [2, 2], 'valid'],
  ];
  for (const [xs, cout, kernel, strides, padding] of CONVS)
    it(`x ${xs.join('×')}, ${cout} filters ${kernel.join('×')}, strides ${strides.join('×')}, ${padding}`, function () {
      if (!dpKernels().active) this.skip(); // only where the kernel cannot exist (a CUDA device): see above
      tf.tidy(() => {
        const x = tf.randomNormal(xs, 0, 1, 'float32', 31);
        const y = tf.conv2d(x as Tensor4D, tf.zeros([...kernel, xs[3], cout]) as Tensor4D, strides, padding);
        const dy = tf.randomNormal(y.shape, 0, 1, 'float32', 32);
        const [B, T] = [xs[0], y.size / (xs[0] * cout)];
        const ref = tf.matMul(im2col(x, kernel, strides, padding), tf.reshape(dy, [B, T, cout]), true, false);
        const refNorms = tf.sum(tf.square(ref), [1, 2]);
        const withGrads = convPerExample(x, dy, kernel, strides, padding, true)!;
        const scale = tf.max(tf.abs(ref)).dataSync()[0]!;
        expect(withGrads.grads!.shape).to.deep.equal(ref.shape);
        expect(maxAbsDiff(withGrads.grads!, ref)).to.be.below(1e-5 * scale);
        expect(maxAbsDiff(tf.div(withGrads.sqNorms, refNorms), tf.onesLike(refNorms))).to.be.below(1e-5);
        expect(maxAbsDiff(withGrads.biasSums, tf.sum(dy, [1, 2]))).to.be.below(1e-5 * T);
        const normsOnly = convPerExample(x, dy, kernel, strides, padding, false)!;
        expect(normsOnly.grads).to.equal(null);
        expect(Array.from(normsOnly.sqNorms.dataSync())).to.deep.equal(
          Array.from(withGrads.sqNorms.dataSync()),
        );
      });
    });

  it('leaves no tensors behind', function () {
    if (!dpKernels().active) this.skip(); // as above
    const x = tf.randomNormal([2, 8, 8, 3]);
    const dy = tf.randomNormal([2, 4, 4, 8]);
    const before = tf.memory().numTensors;
    for (const emit of [true, false]) {
      const r = convPerExample(x, dy, [3, 3], [2, 2], 'same', emit)!;
      tf.dispose([r.sqNorms, r.biasSums, ...(r.grads ? [r.grads] : [])]);
    }
    expect(tf.memory().numTensors).to.equal(before);
    tf.dispose([x, dy]);
  });
});

describe("dp's GELU and layer-norm kernels against the TensorFlow ops they replace", () => {
  /** f's value and input gradient (of Σ dy·f(x)) with dp's kernels on, then off. */
  function bothWays(f: (x: Tensor) => Tensor, x: Tensor) {
    const dy = tf.randomNormal(x.shape, 0, 1, 'float32', 41);
    const run = (on: boolean) => {
      setDpKernels(on);
      try {
        return { y: f(x), g: tf.grad((t: Tensor) => tf.sum(tf.mul(f(t), dy)))(x) };
      } finally {
        setDpKernels(true);
      }
    };
    return { on: run(true), off: run(false) };
  }
  const relToMax = (a: Tensor, b: Tensor) => maxAbsDiff(a, b) / tf.max(tf.abs(b)).dataSync()[0]!;

  // Sizes that are not multiples of 8 (the kernels' scalar tails) and large |x| (σ saturating).
  for (const shape of [
    [7, 5, 33],
    [256, 3, 64],
  ])
    it(`GELU on [${shape.join(', ')}]`, function () {
      if (!dpKernels().active) this.skip(); // only where dp's kernels cannot exist (a CUDA device): see the conv block
      tf.tidy(() => {
        const x = tf.mul(tf.randomNormal(shape, 0, 1, 'float32', 40), 6);
        expect(geluKernel(x)).to.not.equal(null);
        const { on, off } = bothWays(gelu, x);
        expect(relToMax(on.y, off.y)).to.be.below(1e-6);
        expect(relToMax(on.g, off.g)).to.be.below(1e-5);
      });
    });

  // D = 64 (8-lane sums) and D = 10 (one lane), offset and scaled rows.
  for (const D of [64, 10])
    it(`layer norm over D = ${D}, gain and bias included`, function () {
      if (!dpKernels().active) this.skip(); // as above
      tf.tidy(() => {
        const layer = layerNorm('ln', { dim: D });
        const x = tf.add(tf.mul(tf.randomNormal([6, 9, D], 0, 1, 'float32', 42), 3), 2);
        expect(layerNormKernel(x, 1e-5)).to.not.equal(null);
        const gain = tf.randomNormal([D], 1, 0.2, 'float32', 43);
        const bias = tf.randomNormal([D], 0, 0.2, 'float32', 44);
        const f = (t: Tensor) =>
          layer.forward(t, { param: (n) => (n.endsWith('gamma') ? gain : bias), site: (_l, _s, z) => z });
        const { on, off } = bothWays(f, x);
        expect(relToMax(on.y, off.y)).to.be.below(1e-6);
        expect(relToMax(on.g, off.g)).to.be.below(1e-5);
      });
    });
});
