// Ground truth for the clipping engine: per-example norms and the clipped sum equal a
// batch-of-one loop (tf.grads per example, clipped and summed in float64) for every supported
// layer type and for the two reference models. Tolerance: 1e-5 relative on every norm and on the
// whole clipped-sum vector; each parameter's own sum to 1e-4 (its smallest entries carry the
// float32 rounding of the reference itself, which is no more exact than the engine).
import { expect } from 'chai';
import fc from 'fast-check';
import {
  ClippingEngineError,
  DpModel,
  InvalidClippingOptionsError,
  UnsupportedLayerError,
  activation,
  chooseLinearMethod,
  avgPool,
  clipAndAccumulate,
  conv2d,
  dense,
  dpSgdStep,
  dpSgdStepCentral,
  embedding,
  flatten,
  flattenSum,
  groupNorm,
  layerNorm,
  loraDense,
  maxPool,
  meanPool,
  perSampleNorms,
  residual,
  tanhCnn,
  tf,
  transformerEncoder,
  type ClippingOptions,
  type Layer,
  type NormMethod,
  type Tensor,
} from './index.js';
import { randomiseParams, referenceClippedSum, relErr } from './reference.test-util.js';
import { dpKernels, setDpKernels } from './tf.js';

interface Case {
  model: DpModel;
  x: Tensor;
  y: Tensor;
}

function labels(B: number, classes: number, seed: number): Tensor {
  return tf.randomUniform([B], 0, classes, 'int32', seed);
}

/** Checks norms and clipped sum against the batch-of-one loop; C is set so that some examples clip and some do not. */
function expectMatchesReference(
  c: Case,
  options: Partial<ClippingOptions> = {},
  expectMethods?: string[],
): void {
  const st = perSampleNorms(c.model, c.x, c.y, options);
  const norms = Array.from(st.norms.dataSync());
  if (expectMethods) expect(st.siteMethods).to.deep.equal(expectMethods);
  st.dispose();
  const sorted = [...norms].sort((a, b) => a - b);
  const C = sorted[Math.floor(sorted.length / 2)]!;
  const ref = referenceClippedSum(c.model, c.x, c.y, C);
  norms.forEach((n, i) =>
    expect(Math.abs(n - ref.norms[i]!) / ref.norms[i]!).to.be.below(1e-5, `norm of example ${i}`),
  );
  const step = dpSgdStep(c.model, c.x, c.y, { clipNorm: C, ...options });
  try {
    expect([...step.sum.keys()]).to.deep.equal(c.model.trainableNames);
    const refFlat = Float64Array.from(c.model.trainableNames.flatMap((n) => Array.from(ref.sum.get(n)!)));
    const total = Math.hypot(...refFlat);
    for (const [name, t] of step.sum) {
      expect(t.shape).to.deep.equal(c.model.spec(name).shape);
      // Relative to the parameter's own sum, or to 1% of the whole where that is smaller (a
      // key bias, whose gradient is exactly zero because softmax ignores a shift, is pure noise).
      const r = ref.sum.get(name)!;
      const scale = Math.max(Math.hypot(...r), 1e-2 * total);
      expect(relErr(t.dataSync(), r) * (Math.hypot(...r) || 1)).to.be.below(1e-4 * scale, name);
    }
    const flat = flattenSum(step.sum);
    expect(relErr(flat.dataSync(), refFlat)).to.be.below(1e-5, 'whole clipped sum');
    flat.dispose();
    expect(step.batchSize).to.equal(c.x.shape[0]);
    expect(step.clippedCount.dataSync()[0]).to.equal(norms.filter((n) => n > C).length);
  } finally {
    step.dispose();
  }
}

function build(layers: Layer[], x: Tensor, y: Tensor, seed = 1): Case {
  const model = new DpModel(layers, { seed });
  randomiseParams(model, seed);
  return { model, x, y };
}

function dispose(c: Case): void {
  c.model.dispose();
  tf.dispose([c.x, c.y]);
}

/** Test-name suffix for the two ways the conv rule forms per-example gradients. */
const ENGINES: Record<string, string> = { true: " (dp's kernels)", false: ' (TensorFlow ops)' };

/**
 * dp's own kernels on or off for one test. Whether they are built and active on this backend is
 * tf.test.ts's concern; here `active` tells which path ran.
 */
function withDpKernels(on: boolean, f: (active: boolean) => void): void {
  setDpKernels(on);
  try {
    f(dpKernels().active);
  } finally {
    setDpKernels(true);
  }
}

describe('per-sample clipping equals a batch-of-one loop', function () {
  this.timeout(120_000);

  it('dense on 2-D input (MLP with tanh and relu)', () => {
    const c = build(
      [
        dense('d1', { inputDim: 7, units: 5 }),
        activation('tanh'),
        dense('d2', { inputDim: 5, units: 6 }),
        activation('relu'),
        dense('d3', { inputDim: 6, units: 3 }),
      ],
      tf.randomNormal([6, 7], 0, 1, 'float32', 1),
      labels(6, 3, 2),
    );
    expectMatchesReference(c, {}, ['outer', 'outer', 'outer']);
    dispose(c);
  });

  for (const method of ['ghost', 'instantiate', 'auto'] as NormMethod[]) {
    it(`dense on sequence input [B, T, D], ${method} norms`, () => {
      const c = build(
        [
          dense('seq1', { inputDim: 4, units: 6 }),
          activation('gelu'),
          dense('seq2', { inputDim: 6, units: 5, useBias: false }),
          meanPool(),
          dense('out', { inputDim: 5, units: 3 }),
        ],
        tf.randomNormal([5, 3, 4], 0, 1, 'float32', 3),
        labels(5, 3, 4),
      );
      // auto: 2T² = 18 < 24 = Din·Dout → ghost; 18 < 30 → ghost.
      const m = method === 'auto' ? 'ghost' : method;
      expectMatchesReference(c, { normMethod: method }, [m, m, 'outer']);
      dispose(c);
    });
  }

  for (const [method, kernels] of [
    ['ghost', false],
    ['instantiate', true],
    ['instantiate', false],
  ] as [NormMethod, boolean][]) {
    it(`conv2d (same and valid padding, strides 1 and 2, avg and max pool), ${method} norms${ENGINES[String(kernels)]}`, () =>
      withDpKernels(kernels, () => {
        const c = build(
          [
            conv2d('c1', { inChannels: 2, filters: 3, kernelSize: 3, strides: 2, padding: 'same' }),
            activation('tanh'),
            maxPool('p1', { poolSize: 2, strides: 1 }),
            conv2d('c2', {
              inChannels: 3,
              filters: 4,
              kernelSize: [2, 3],
              strides: 1,
              padding: 'valid',
              useBias: false,
            }),
            avgPool('p2', { poolSize: 2, strides: 1, padding: 'same' }),
            flatten(),
            dense('fc', { inputDim: 2 * 2 * 4, units: 3 }),
          ],
          tf.randomNormal([4, 7, 9, 2], 0, 1, 'float32', 5),
          labels(4, 3, 6),
        );
        expectMatchesReference(c, { normMethod: method }, [method, method, 'outer']);
        dispose(c);
      }));
  }

  for (const kernels of [true, false])
    it(`conv2d with more filters than kernel taps (per-example gradients)${ENGINES[String(kernels)]}`, () =>
      withDpKernels(kernels, () => {
        const c = build(
          [
            conv2d('c', { inChannels: 3, filters: 6, kernelSize: 2, strides: [1, 2], padding: 'same' }),
            activation('relu'),
            flatten(),
            dense('fc', { inputDim: 4 * 2 * 6, units: 3 }),
          ],
          tf.randomNormal([4, 4, 4, 3], 0, 1, 'float32', 25),
          labels(4, 3, 26),
        );
        expectMatchesReference(c, { normMethod: 'instantiate' }, ['instantiate', 'outer']);
        dispose(c);
      }));

  for (const [method, expected] of [
    ['auto', 'ghost'],
    ['instantiate', 'instantiate'],
  ] as [NormMethod, string][])
    it(`a conv with few positions and many channels, ${method} norms: ${expected}${ENGINES.true}`, () =>
      withDpKernels(true, () => {
        // T = 4, Din·Cout = 96·24: dp's kernel would cost T·Din·Cout per example and keep nothing
        // (the gradients are larger than the activations); ghost costs T²·(Din + Cout).
        const c = build(
          [
            conv2d('c', { inChannels: 24, filters: 24, kernelSize: 2, padding: 'valid' }),
            activation('tanh'),
            flatten(),
            dense('fc', { inputDim: 4 * 24, units: 3 }),
          ],
          tf.randomNormal([3, 3, 3, 24], 0, 1, 'float32', 27),
          labels(3, 3, 28),
        );
        expectMatchesReference(c, { normMethod: method }, [expected, 'outer']);
        dispose(c);
      }));

  it('conv2d whose output is 1×1 (outer-product norm on the patches)', () => {
    // A 3×3 kernel over a 3×3 input with valid padding: one output position per filter, so the
    // norm is the outer-product one and the clipped sum reweights the patches.
    const c = build(
      [
        conv2d('c', { inChannels: 2, filters: 3, kernelSize: 3, padding: 'valid' }),
        activation('tanh'),
        flatten(),
        dense('fc', { inputDim: 3, units: 2 }),
      ],
      tf.randomNormal([4, 3, 3, 2], 0, 1, 'float32', 31),
      labels(4, 2, 32),
    );
    expectMatchesReference(c, {}, ['outer', 'outer']);
    dispose(c);
  });

  for (const method of ['ghost', 'instantiate'] as NormMethod[]) {
    it(`embedding with repeated tokens in an example, ${method} norms`, () => {
      const c = build(
        [embedding('emb', { vocabSize: 5, dim: 4 }), meanPool(), dense('out', { inputDim: 4, units: 2 })],
        tf.tensor2d(
          [
            [1, 1, 2, 4],
            [0, 3, 0, 0],
            [4, 4, 4, 4],
            [2, 1, 0, 3],
          ],
          undefined,
          'int32',
        ),
        labels(4, 2, 7),
      );
      expectMatchesReference(c, { normMethod: method }, [method, 'outer']);
      dispose(c);
    });
  }

  it('embedding of one index per example', () => {
    const c = build(
      [embedding('emb', { vocabSize: 6, dim: 3 }), dense('out', { inputDim: 3, units: 2 })],
      tf.tensor1d([1, 5, 1, 0, 2], 'int32'),
      labels(5, 2, 8),
    );
    expectMatchesReference(c, {}, ['outer', 'outer']);
    dispose(c);
  });

  it('layerNorm on a sequence and groupNorm on NHWC feature maps', () => {
    const c = build(
      [
        conv2d('c', { inChannels: 1, filters: 4, kernelSize: 3, padding: 'same' }),
        groupNorm('gn', { dim: 4, groups: 2 }),
        activation('relu'),
        flatten(),
        layerNorm('ln', { dim: 5 * 5 * 4 }),
        dense('out', { inputDim: 100, units: 3 }),
      ],
      tf.randomNormal([5, 5, 5, 1], 0, 1, 'float32', 9),
      labels(5, 3, 10),
    );
    expectMatchesReference(c);
    dispose(c);
  });

  it('LoRA dense with frozen base: only A and B get gradients', () => {
    const c = build(
      [
        loraDense('lora', { inputDim: 6, units: 5, rank: 2, alpha: 4 }),
        activation('tanh'),
        meanPool(),
        dense('out', { inputDim: 5, units: 3 }),
      ],
      tf.randomNormal([4, 3, 6], 0, 1, 'float32', 11),
      labels(4, 3, 12),
    );
    expect(c.model.trainableNames).to.deep.equal(['lora.lora_a', 'lora.lora_b', 'out.kernel', 'out.bias']);
    expectMatchesReference(c);
    dispose(c);
  });

  it('fine-tuning: frozen parameters are skipped, also inside a residual block', () => {
    const c = build(
      [
        dense('in', { inputDim: 4, units: 4 }),
        residual('res', [
          layerNorm('ln', { dim: 4 }),
          dense('mid', { inputDim: 4, units: 4 }),
          activation('tanh'),
        ]),
        dense('out', { inputDim: 4, units: 2 }),
      ],
      tf.randomNormal([5, 4], 0, 1, 'float32', 13),
      labels(5, 2, 14),
    );
    c.model.setTrainable((n) => n.startsWith('in.') || n === 'mid.bias', false);
    expect(c.model.trainableNames).to.deep.equal([
      'ln.gamma',
      'ln.beta',
      'mid.kernel',
      'out.kernel',
      'out.bias',
    ]);
    expectMatchesReference(c);
    dispose(c);
  });

  for (const kernels of [true, false])
    it(`the tanh CNN of Papernot et al. 2020 on 28×28×1${ENGINES[String(kernels)]}`, () =>
      withDpKernels(kernels, (active) => {
        const c = build(
          tanhCnn(),
          tf.randomNormal([4, 28, 28, 1], 0, 1, 'float32', 15),
          labels(4, 10, 16),
          2,
        );
        // dp's kernel forms both convs' per-example gradients. With TensorFlow ops, conv1:
        // 2·196² ≥ 64·16 → instantiate; conv2: 2·25² < 256·32 → ghost.
        const conv2 = active ? 'instantiate' : 'ghost';
        expectMatchesReference(c, {}, ['instantiate', conv2, 'outer', 'outer']);
        dispose(c);
      }));

  for (const kernels of [true, false])
    it(`a 2-block transformer encoder with LoRA on the attention projections and a frozen base${ENGINES[String(kernels)]}`, () =>
      withDpKernels(kernels, () => {
        const c = build(
          transformerEncoder({
            vocabSize: 12,
            seqLen: 5,
            dim: 8,
            heads: 2,
            ffDim: 12,
            lora: { rank: 2, alpha: 4 },
          }),
          tf.randomUniform([4, 5], 0, 12, 'int32', 17),
          labels(4, 2, 18),
          3,
        );
        const names = c.model.trainableNames;
        expect(names.filter((n) => n.includes('lora'))).to.have.length(16);
        expect(
          names.some((n) => n.includes('embed') || n.includes('ff1') || n.endsWith('q.kernel')),
        ).to.equal(false);
        expectMatchesReference(c);
        dispose(c);
      }));

  it('LoRA projections with unfrozen bases and frozen adapters (the merged q/k/v rule block by block)', () => {
    const c = build(
      transformerEncoder({
        vocabSize: 12,
        seqLen: 5,
        dim: 12,
        heads: 4, // dh = 3: 1/√dh is not a power of two
        ffDim: 12,
        blocks: 1,
        lora: { rank: 2, alpha: 6 },
      }),
      tf.randomUniform([4, 5], 0, 12, 'int32', 21),
      labels(4, 2, 22),
      5,
    );
    const thaw = [
      'block0.attn.q.kernel',
      'block0.attn.v.bias',
      'block0.attn.o.kernel',
      'embed.positions.embeddings',
    ];
    c.model.setTrainable((n) => thaw.includes(n), true);
    c.model.setTrainable((n) => n === 'block0.attn.k.lora_a' || n === 'block0.attn.v.lora_b', false);
    expectMatchesReference(c);
    dispose(c);
  });

  it('LoRA dense on 2-D input', () => {
    const c = build(
      [loraDense('lora', { inputDim: 5, units: 4, rank: 3, useBias: false }), activation('tanh')],
      tf.randomNormal([6, 5], 0, 1, 'float32', 23),
      labels(6, 4, 24),
    );
    expectMatchesReference(c);
    dispose(c);
  });

  for (const kernels of [true, false])
    it(`a fully trainable transformer encoder (embeddings, projections, feed-forward)${ENGINES[String(kernels)]}`, () =>
      withDpKernels(kernels, () => {
        const c = build(
          transformerEncoder({ vocabSize: 6, seqLen: 4, dim: 4, heads: 2, ffDim: 6, blocks: 1 }),
          tf.randomUniform([3, 4], 0, 6, 'int32', 19),
          labels(3, 2, 20),
          4,
        );
        expectMatchesReference(c);
        dispose(c);
      }));

  it('auto picks ghost where the Gram matrices are smaller than a per-example gradient (2T² < Din·Dout)', () => {
    expect(chooseLinearMethod(512, 4096, 4096, 'auto')).to.equal('ghost');
    expect(chooseLinearMethod(4096, 1024, 1024, 'auto')).to.equal('instantiate');
    expect(chooseLinearMethod(32, 64, 8, 'auto')).to.equal('instantiate');
    expect(chooseLinearMethod(25, 256, 32, 'auto')).to.equal('ghost');
    expect(chooseLinearMethod(25, 256, 32, 'instantiate')).to.equal('instantiate');
  });

  it('property: random dense/sequence shapes and norm methods', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom<NormMethod>('auto', 'ghost', 'instantiate'),
        fc.integer({ min: 0, max: 1000 }),
        (B, T, din, dout, method, seed) => {
          const c = build(
            [
              dense('a', { inputDim: din, units: dout }),
              activation('tanh'),
              meanPool(),
              dense('b', { inputDim: dout, units: 2 }),
            ],
            tf.randomNormal([B, T, din], 0, 1, 'float32', seed),
            labels(B, 2, seed + 1),
            seed,
          );
          try {
            expectMatchesReference(c, { normMethod: method });
          } finally {
            dispose(c);
          }
        },
      ),
      { numRuns: 15, seed: 42 },
    );
  });
});

describe('reference models', () => {
  it('tanhCnn refuses an image too small to leave features after conv2 and pool2', () => {
    expect(() => tanhCnn({ imageSize: 12 })).to.throw(
      RangeError,
      /imageSize must be an integer of at least 14 \(got 12\)/,
    );
    expect(tanhCnn({ imageSize: 14 })).to.have.length(10);
  });
});

describe('chunking and clip methods', function () {
  this.timeout(60_000);
  let c: Case;
  before(() => {
    c = build(
      tanhCnn({ imageSize: 16 }),
      tf.randomNormal([7, 16, 16, 1], 0, 1, 'float32', 21),
      labels(7, 10, 22),
      5,
    );
  });
  after(() => dispose(c));

  const flat = (o: ClippingOptions) => {
    const s = dpSgdStep(c.model, c.x, c.y, o);
    const v = flattenSum(s.sum);
    const out = {
      v: Float64Array.from(v.dataSync()),
      clipped: s.clippedCount.dataSync()[0]!,
      batch: s.batchSize,
    };
    v.dispose();
    s.dispose();
    return out;
  };

  it('chunked (3 + 3 + 1, 2 + … , 1 each) equals unchunked', () => {
    const whole = flat({ clipNorm: 1 });
    for (const maxChunkSize of [1, 2, 3, 7, 100]) {
      const part = flat({ clipNorm: 1, maxChunkSize });
      expect(relErr(part.v, whole.v)).to.be.below(1e-6, `maxChunkSize ${maxChunkSize}`);
      expect(part.clipped).to.equal(whole.clipped);
      expect(part.batch).to.equal(7);
    }
  });

  it('the second-pass clipped sum equals book-keeping', () => {
    const a = flat({ clipNorm: 1, clipMethod: 'bookkeeping' });
    const b = flat({ clipNorm: 1, clipMethod: 'second-pass' });
    expect(relErr(b.v, a.v)).to.be.below(1e-5);
  });

  it('the phases compose: clipAndAccumulate(perSampleNorms(...)) equals dpSgdStep', () => {
    const st = perSampleNorms(c.model, c.x, c.y);
    const s = clipAndAccumulate(st, 1);
    const v = flattenSum(s.sum);
    expect(relErr(v.dataSync(), flat({ clipNorm: 1 }).v)).to.equal(0);
    tf.dispose(v);
    s.dispose();
    st.dispose();
  });

  it('every clipped example has norm ≤ C: the sum of B examples has norm ≤ B·C', () => {
    const { v } = flat({ clipNorm: 0.01 });
    expect(Math.hypot(...v)).to.be.at.most(7 * 0.01 * (1 + 1e-6));
  });

  it('dpSgdStepCentral adds σ·C·ξ and divides by the expected batch size', () => {
    const P = c.model.trainableNames.reduce((a, n) => a + c.model.getParam(n).size, 0);
    const xi = Float32Array.from({ length: P }, (_, i) => Math.sin(i));
    const { gradient, batchSize } = dpSgdStepCentral(c.model, c.x, c.y, {
      clipNorm: 1,
      noiseMultiplier: 2,
      noise: (n) => (expect(n).to.equal(P), xi),
      expectedBatchSize: 10,
    });
    expect(batchSize).to.equal(7);
    const got = flattenSum(gradient);
    const sum = flat({ clipNorm: 1 }).v;
    const want = sum.map((s, i) => (s + 2 * xi[i]!) / 10);
    expect(relErr(got.dataSync(), want)).to.be.below(1e-6);
    got.dispose();
    tf.dispose([...gradient.values()]);
  });
});

describe('refusals and resource hygiene', function () {
  this.timeout(60_000);

  const custom = (trainable: boolean): Layer => ({
    kind: 'bilinear',
    name: 'my_bilinear',
    params: [{ name: 'my_bilinear.w', shape: [3], trainable, init: 'ones' }],
    children: [],
    forward: (x, ctx) => tf.mul(x, ctx.param('my_bilinear.w')),
  });

  it('refuses a trainable layer without a rule, naming it, before any work', () => {
    const model = new DpModel([custom(true), dense('out', { inputDim: 3, units: 2 })]);
    const x = tf.ones([2, 3]);
    const y = tf.tensor1d([0, 1], 'int32');
    const before = tf.memory().numTensors;
    expect(() => dpSgdStep(model, x, y, { clipNorm: 1 }))
      .to.throw(UnsupportedLayerError, 'layer "my_bilinear" (kind "bilinear") has trainable parameters')
      .with.property('layerName', 'my_bilinear');
    expect(() => perSampleNorms(model, x, y)).to.throw(UnsupportedLayerError, 'my_bilinear');
    expect(tf.memory().numTensors).to.equal(before);
    // Frozen, the same layer is fine: it is just a function of the input.
    model.setTrainable((n) => n === 'my_bilinear.w', false);
    dpSgdStep(model, x, y, { clipNorm: 1 }).dispose();
    model.dispose();
    tf.dispose([x, y]);
  });

  it('refuses a layer that claims a supported kind but reports no site for its parameters', () => {
    const liar: Layer = { ...custom(true), kind: 'dense' };
    const model = new DpModel([liar, dense('out', { inputDim: 3, units: 2 })]);
    const x = tf.ones([2, 3]);
    const y = tf.tensor1d([0, 1], 'int32');
    expect(() => dpSgdStep(model, x, y, { clipNorm: 1 })).to.throw(
      UnsupportedLayerError,
      'layer "my_bilinear"',
    );
    model.dispose();
    tf.dispose([x, y]);
  });

  it('refuses a site whose output does not reach the loss, naming the layer, without leaking', () => {
    // Reports z = x·W but returns x: the engine differentiates w.r.t. the reported outputs, so
    // the kernel would silently get no gradient.
    const dead: Layer = {
      kind: 'dense',
      name: 'dead',
      params: [{ name: 'dead.kernel', shape: [3, 3], trainable: true, init: 'ones' }],
      children: [],
      forward(x, ctx) {
        ctx.site(
          this,
          { rule: 'linear', input: x, weight: 'dead.kernel', bias: null },
          tf.matMul(x, ctx.param('dead.kernel')),
        );
        return x;
      },
    };
    const model = new DpModel([dead, dense('out', { inputDim: 3, units: 2 })]);
    const x = tf.ones([2, 3]);
    const y = tf.tensor1d([0, 1], 'int32');
    const before = tf.memory().numTensors;
    expect(() => dpSgdStep(model, x, y, { clipNorm: 1 })).to.throw(ClippingEngineError, 'layer "dead"');
    expect(tf.memory().numTensors).to.equal(before);
    model.dispose();
    tf.dispose([x, y]);
  });

  it('rejects bad options with the field and what is expected', () => {
    const model = new DpModel([dense('out', { inputDim: 3, units: 2 })]);
    const x = tf.ones([2, 3]);
    const y = tf.tensor1d([0, 1], 'int32');
    const bad: [Partial<ClippingOptions>, string][] = [
      [{ clipNorm: 0 }, 'clipNorm: must be a finite number > 0, got 0'],
      [{ clipNorm: NaN }, 'clipNorm: must be a finite number > 0, got NaN'],
      [{ clipNorm: 1, maxChunkSize: 0 }, 'maxChunkSize: must be an integer ≥ 1, got 0'],
      [{ clipNorm: 1, maxChunkSize: 2.5 }, 'maxChunkSize: must be an integer ≥ 1, got 2.5'],
    ];
    for (const [o, msg] of bad)
      expect(() => dpSgdStep(model, x, y, o as ClippingOptions)).to.throw(InvalidClippingOptionsError, msg);
    const y3 = tf.tensor1d([0, 1, 1], 'int32');
    expect(() => dpSgdStep(model, x, y3, { clipNorm: 1 })).to.throw('labels: has 3 examples but x has 2');
    model.dispose();
    tf.dispose([x, y, y3]);
  });

  it('tf.memory().numTensors does not grow over 100 steps (chunked, both clip methods)', () => {
    const c = build(
      [
        conv2d('c', { inChannels: 1, filters: 2, kernelSize: 3, strides: 2, padding: 'same' }),
        activation('tanh'),
        flatten(),
        layerNorm('ln', { dim: 18 }),
        dense('out', { inputDim: 18, units: 3 }),
      ],
      tf.randomNormal([5, 6, 6, 1], 0, 1, 'float32', 23),
      labels(5, 3, 24),
    );
    const step = (i: number) => {
      const s = dpSgdStep(c.model, c.x, c.y, {
        clipNorm: 1,
        maxChunkSize: i % 2 ? 2 : undefined,
        clipMethod: i % 3 ? 'bookkeeping' : 'second-pass',
      });
      // Apply the update, as a trainer would, so parameters are replaced every step.
      for (const [n, g] of s.sum) {
        const next = tf.tidy(() => tf.sub(c.model.getParam(n), tf.mul(g, 0.01)));
        c.model.setParam(n, next);
        next.dispose();
      }
      s.dispose();
    };
    step(0);
    const before = tf.memory().numTensors;
    for (let i = 1; i <= 100; i++) step(i);
    expect(tf.memory().numTensors).to.equal(before);
    dispose(c);
  });

  it('tf.memory().numTensors does not grow over steps of the LoRA transformer (every site rule)', () => {
    const c = build(
      transformerEncoder({ vocabSize: 12, seqLen: 5, dim: 8, heads: 2, ffDim: 12, lora: { rank: 2 } }),
      tf.randomUniform([4, 5], 0, 12, 'int32', 25),
      labels(4, 2, 26),
    );
    c.model.setTrainable((n) => n === 'block0.attn.k.kernel' || n === 'embed.positions.embeddings', true);
    const step = (i: number) =>
      dpSgdStep(c.model, c.x, c.y, { clipNorm: 1, normMethod: i % 2 ? 'ghost' : 'auto' }).dispose();
    step(0);
    step(1);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) step(i);
    expect(tf.memory().numTensors).to.equal(before);
    dispose(c);
  });
});
