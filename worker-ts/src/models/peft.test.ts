import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointError } from '../checkpoint/errors.js';
import { decodeSafetensors, encodeSafetensors, tensor, type NamedTensor } from '../checkpoint/safetensors.js';
import { hfBert, parseBertConfig, type HfBertOptions } from './hf-bert.js';
import { sizeOf } from './model.js';
import { readPeftAdapter, writePeftAdapter } from './peft.js';
import { peftRoundTrip } from './peft-roundtrip.js';

const config = parseBertConfig(
  {
    model_type: 'bert',
    vocab_size: 30,
    hidden_size: 8,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    intermediate_size: 12,
    max_position_embeddings: 10,
  },
  'tiny/config.json',
);

function trainableValues(opts: HfBertOptions): Record<string, Float32Array> {
  const def = hfBert(opts);
  const out: Record<string, Float32Array> = {};
  let k = 1;
  for (const p of def.params.filter((q) => q.trainable))
    out[p.name] = Float32Array.from({ length: sizeOf(p.shape) }, () => (k++ % 97) / 97 - 0.5);
  return out;
}

describe('PEFT adapter export (hf-bert)', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-peft-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("writes PEFT's adapter_config.json and tensor names/shapes (torch layout) and a head file; reads back the same values", () => {
    const opts: HfBertOptions = { config, seqLen: 6, numClasses: 3, lora: { rank: 2, alpha: 16 } };
    const def = hfBert(opts);
    const values = trainableValues(opts);
    writePeftAdapter(dir, def, values, 'sentence-transformers/all-MiniLM-L6-v2');
    expect(fs.readdirSync(dir).sort()).to.deep.equal([
      'adapter_config.json',
      'adapter_model.safetensors',
      'head.safetensors',
    ]);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(cfg).to.include({
      peft_type: 'LORA',
      r: 2,
      lora_alpha: 16,
      lora_dropout: 0,
      bias: 'none',
      base_model_name_or_path: 'sentence-transformers/all-MiniLM-L6-v2',
      fan_in_fan_out: false,
    });
    expect(cfg.target_modules).to.deep.equal(['query', 'value']);
    const file = path.join(dir, 'adapter_model.safetensors');
    const { tensors, metadata } = decodeSafetensors(fs.readFileSync(file), file);
    expect(metadata).to.deep.equal({ format: 'pt' });
    const names = Object.keys(tensors).sort();
    expect(names).to.have.length(8);
    expect(names[0]).to.equal('base_model.model.encoder.layer.0.attention.self.query.lora_A.weight');
    expect(names).to.include('base_model.model.encoder.layer.1.attention.self.value.lora_B.weight');
    const a = tensors['base_model.model.encoder.layer.0.attention.self.query.lora_A.weight']!;
    const b = tensors['base_model.model.encoder.layer.0.attention.self.query.lora_B.weight']!;
    expect([a.dtype, a.shape]).to.deep.equal(['F32', [2, 8]]);
    expect([b.dtype, b.shape]).to.deep.equal(['F32', [8, 2]]);
    // lora_A.weight[i][j] = A[j][i]: our A is [in, r], torch's Linear weight [r, in].
    const A = values['encoder.layer.0.attention.self.query.lora_a']!;
    expect(a.data[1 * 8 + 5]).to.equal(A[5 * 2 + 1]);
    const hFile = path.join(dir, 'head.safetensors');
    const head = decodeSafetensors(fs.readFileSync(hFile), hFile);
    expect(head.metadata).to.include({ pooling: 'mean', num_classes: '3', target_modules: 'query,value' });
    expect(head.tensors.weight!.shape).to.deep.equal([3, 8]);
    expect(head.tensors.bias!.shape).to.deep.equal([3]);
    const back = readPeftAdapter(dir, def);
    expect(Object.keys(back).sort()).to.deep.equal(Object.keys(values).sort());
    for (const [n, v] of Object.entries(values)) expect(Array.from(back[n]!), n).to.deep.equal(Array.from(v));
  });

  it("with 'dense' targeted, target_modules is a full-match regex of exactly the adapted encoder modules (not the pooler)", () => {
    const opts: HfBertOptions = {
      config,
      seqLen: 6,
      numClasses: 2,
      pooling: 'cls',
      lora: { rank: 1, targetModules: 'all-linear' },
    };
    const def = hfBert(opts);
    writePeftAdapter(dir, def, trainableValues(opts), '/models/minilm');
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as {
      target_modules: string;
    };
    const re = new RegExp(`^(?:${cfg.target_modules})$`);
    const modules = [
      'embeddings.word_embeddings',
      'pooler.dense',
      ...[0, 1].flatMap((l) =>
        [
          'attention.self.query',
          'attention.self.key',
          'attention.self.value',
          'attention.output.dense',
          'intermediate.dense',
          'output.dense',
          'attention.output.LayerNorm',
        ].map((m) => `encoder.layer.${l}.${m}`),
      ),
    ];
    expect(modules.filter((m) => re.test(m)).sort()).to.deep.equal([...def.loraModules].sort());
    expect(def.loraModules).to.have.length(12);
  });

  it('refuses to read an adapter whose rank differs from the model, naming the fields', () => {
    const opts: HfBertOptions = { config, seqLen: 6, numClasses: 2, lora: { rank: 2 } };
    writePeftAdapter(dir, hfBert(opts), trainableValues(opts), 'x');
    expect(() => readPeftAdapter(dir, hfBert({ ...opts, lora: { rank: 4 } }))).to.throw(
      CheckpointError,
      "r 2 / lora_alpha 8 differ from the model's 4 / 8 (model.lora.rank, model.lora.alpha)",
    );
  });

  // model.initAdapter reads a folder from whoever submits the job: each way it can disagree with
  // the model is refused by name, never loaded partly or silently reinterpreted.
  describe('a starting adapter that does not fit the model', () => {
    const opts: HfBertOptions = { config, seqLen: 6, numClasses: 2, lora: { rank: 2 } };
    const rewrite = (
      file: string,
      edit: (t: Record<string, NamedTensor>) => void,
      meta?: Record<string, string>,
    ) => {
      const f = path.join(dir, file);
      const d = decodeSafetensors(fs.readFileSync(f), f);
      edit(d.tensors);
      fs.writeFileSync(f, encodeSafetensors(d.tensors, meta ?? d.metadata));
    };
    beforeEach(() => writePeftAdapter(dir, hfBert(opts), trainableValues(opts), 'x'));

    it('a missing head tensor, and a missing file: names it and what the folder must hold', () => {
      rewrite('head.safetensors', (t) => delete t.bias);
      expect(() => readPeftAdapter(dir, hfBert(opts))).to.throw(
        CheckpointError,
        "head.safetensors: no tensor 'bias': the classifier must be 'weight' [classes, hidden] and 'bias' [classes]",
      );
      fs.rmSync(path.join(dir, 'head.safetensors'));
      expect(() => readPeftAdapter(dir, hfBert(opts))).to.throw(
        CheckpointError,
        /head\.safetensors: cannot read the adapter \(ENOENT\): model\.initAdapter must be a folder with adapter_config\.json, adapter_model\.safetensors and head\.safetensors/,
      );
    });

    it('adapters trained on other modules (the model adapts query and value, the file also key)', () => {
      const all = hfBert({ ...opts, lora: { rank: 2, targetModules: ['query', 'key', 'value'] } });
      writePeftAdapter(
        dir,
        all,
        trainableValues({ ...opts, lora: { rank: 2, targetModules: ['query', 'key', 'value'] } }),
        'x',
      );
      expect(() => readPeftAdapter(dir, hfBert(opts))).to.throw(
        CheckpointError,
        /holds 4 tensor\(s\) this model has no place for \(base_model\.model\.encoder\.layer\.0\.attention\.self\.key\.lora_A\.weight.*set model\.lora\.targetModules to the modules the adapter was trained on/,
      );
      expect(() => readPeftAdapter(dir, all)).to.not.throw();
      expect(() =>
        readPeftAdapter(
          dir,
          hfBert({ ...opts, lora: { rank: 2, targetModules: ['query', 'key', 'value', 'dense'] } }),
        ),
      ).to.throw(
        CheckpointError,
        /no tensor 'base_model\.model\.encoder\.layer\.0\.attention\.output\.dense\.lora_A\.weight'/,
      );
    });

    it('a tensor of the wrong shape or dtype, and a NaN', () => {
      const q = 'base_model.model.encoder.layer.1.attention.self.query.lora_B.weight';
      rewrite('adapter_model.safetensors', (t) => (t[q] = tensor(new Float32Array(8 * 3), [8, 3])));
      expect(() => readPeftAdapter(dir, hfBert(opts))).to.throw(
        CheckpointError,
        `'${q}' is F32[8, 3], the model needs F32[8, 2]`,
      );
      rewrite('adapter_model.safetensors', (t) => (t[q] = tensor(new Float64Array(16), [8, 2])));
      expect(() => readPeftAdapter(dir, hfBert(opts))).to.throw(CheckpointError, `'${q}' is F64[8, 2]`);
      rewrite('adapter_model.safetensors', (t) => (t[q] = tensor(new Float32Array(16).fill(NaN), [8, 2])));
      expect(() => readPeftAdapter(dir, hfBert(opts))).to.throw(
        CheckpointError,
        `'${q}' holds a NaN or infinite value`,
      );
    });

    it('a head for another task (classes) or another pooling; a config that is not LoRA or not JSON', () => {
      expect(() => readPeftAdapter(dir, hfBert({ ...opts, numClasses: 3 }))).to.throw(
        CheckpointError,
        'the head has 2 classes, the dataset 3: an adapter for another task',
      );
      expect(() => readPeftAdapter(dir, hfBert({ ...opts, pooling: 'cls' }))).to.throw(
        CheckpointError,
        "the head was trained on 'mean' pooling, the model pools 'cls': set model.pooling to 'mean'",
      );
      const cfgFile = path.join(dir, 'adapter_config.json');
      const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, use_dora: true }));
      expect(() => readPeftAdapter(dir, hfBert(opts))).to.throw(
        CheckpointError,
        'use_dora is true; this model trains plain LoRA',
      );
      fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, peft_type: 'IA3' }));
      expect(() => readPeftAdapter(dir, hfBert(opts))).to.throw(
        CheckpointError,
        'peft_type is "IA3"; only LORA adapters',
      );
      fs.writeFileSync(cfgFile, '[1, 2');
      expect(() => readPeftAdapter(dir, hfBert(opts))).to.throw(
        CheckpointError,
        /adapter_config\.json: not a PEFT adapter config/,
      );
    });
  });
});

const DISTIL_DIR = fileURLToPath(new URL('./testdata/tiny-distilbert', import.meta.url));
const distilConfig = parseBertConfig(
  {
    model_type: 'distilbert',
    vocab_size: 30,
    dim: 8,
    n_layers: 2,
    n_heads: 2,
    hidden_dim: 12,
    max_position_embeddings: 10,
  },
  'tiny-distilbert/config.json',
);
/** .venv-bench (torch, transformers, peft): the benchmarks' environment, which npm test's setup does not make. */
const BENCH_PYTHON = fileURLToPath(new URL('../../../.venv-bench/bin/python', import.meta.url));

describe('PEFT adapter export (hf-bert, DistilBERT)', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-peft-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("writes PEFT's names for DistilBertModel (base_model.model.transformer.layer.N.attention.q_lin.lora_A.weight) and target_modules ['q_lin', 'v_lin']; reads back the same values", () => {
    // BERT's ['query', 'value'] (the run config's default) is DistilBERT's q_lin/v_lin.
    const opts: HfBertOptions = {
      config: distilConfig,
      seqLen: 6,
      numClasses: 2,
      lora: { rank: 2, alpha: 4, targetModules: ['query', 'value'] },
    };
    const def = hfBert(opts);
    const values = trainableValues(opts);
    writePeftAdapter(dir, def, values, 'distilbert/distilbert-base-uncased');
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(cfg).to.include({
      peft_type: 'LORA',
      r: 2,
      lora_alpha: 4,
      base_model_name_or_path: 'distilbert/distilbert-base-uncased',
    });
    expect(cfg.target_modules).to.deep.equal(['q_lin', 'v_lin']);
    const file = path.join(dir, 'adapter_model.safetensors');
    const { tensors } = decodeSafetensors(fs.readFileSync(file), file);
    expect(Object.keys(tensors).sort()).to.deep.equal(
      [0, 1].flatMap((l) =>
        ['q_lin', 'v_lin'].flatMap((m) =>
          ['A', 'B'].map((ab) => `base_model.model.transformer.layer.${l}.attention.${m}.lora_${ab}.weight`),
        ),
      ),
    );
    const a = tensors['base_model.model.transformer.layer.1.attention.v_lin.lora_A.weight']!;
    const b = tensors['base_model.model.transformer.layer.1.attention.v_lin.lora_B.weight']!;
    expect([a.dtype, a.shape, b.shape]).to.deep.equal(['F32', [2, 8], [8, 2]]);
    const A = values['transformer.layer.1.attention.v_lin.lora_a']!;
    expect(a.data[1 * 8 + 3]).to.equal(A[3 * 2 + 1]);
    const hFile = path.join(dir, 'head.safetensors');
    expect(decodeSafetensors(fs.readFileSync(hFile), hFile).metadata).to.include({
      target_modules: 'q_lin,v_lin',
    });
    const back = readPeftAdapter(dir, def);
    expect(Object.keys(back).sort()).to.deep.equal(Object.keys(values).sort());
    for (const [n, v] of Object.entries(values)) expect(Array.from(back[n]!), n).to.deep.equal(Array.from(v));
  });

  it("'all-linear': target_modules lists DistilBERT's six short names, which PEFT matches on exactly the adapted modules", () => {
    const opts: HfBertOptions = {
      config: distilConfig,
      seqLen: 6,
      numClasses: 2,
      lora: { rank: 1, targetModules: 'all-linear' },
    };
    const def = hfBert(opts);
    writePeftAdapter(dir, def, trainableValues(opts), '/models/distilbert');
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as {
      target_modules: string[];
    };
    expect(cfg.target_modules).to.deep.equal(['k_lin', 'lin1', 'lin2', 'out_lin', 'q_lin', 'v_lin']);
    // PEFT's rule for a list: a module whose path is, or ends in `.`, one of the names.
    const modules = [
      'embeddings.word_embeddings',
      'embeddings.LayerNorm',
      ...[0, 1].flatMap((l) =>
        [
          'attention.q_lin',
          'attention.k_lin',
          'attention.v_lin',
          'attention.out_lin',
          'sa_layer_norm',
          'ffn.lin1',
          'ffn.lin2',
          'output_layer_norm',
        ].map((m) => `transformer.layer.${l}.${m}`),
      ),
    ];
    const matched = modules.filter((m) => cfg.target_modules.some((t) => m === t || m.endsWith(`.${t}`)));
    expect(matched.sort()).to.deep.equal([...def.loraModules].sort());
    expect(def.loraModules).to.have.length(12);
  });

  it('PeftModel.from_pretrained(DistilBertModel) on the tiny DistilBERT gives our logits (when .venv-bench exists; else the error names the Python to install)', function () {
    this.timeout(120_000);
    const reference = JSON.parse(fs.readFileSync(path.join(DISTIL_DIR, 'reference.json'), 'utf8')) as {
      records: { ids: number[] }[];
    };
    const sentences = reference.records.map((r) => r.ids);
    if (!fs.existsSync(BENCH_PYTHON)) {
      // Without torch/transformers/peft the round trip cannot run: what is checked then is that it
      // says so and how to fix it (a fresh clone's npm test has no .venv-bench).
      expect(() => peftRoundTrip({ modelDir: DISTIL_DIR, sentences, python: BENCH_PYTHON })).to.throw(
        `cannot run ${BENCH_PYTHON} (ENOENT): the round trip needs a Python with torch, transformers and peft (.venv-bench, see bench/README.md)`,
      );
      return;
    }
    const res = peftRoundTrip({ modelDir: DISTIL_DIR, sentences, python: BENCH_PYTHON });
    try {
      expect(res.sentences).to.equal(sentences.length);
      const cfg = JSON.parse(fs.readFileSync(path.join(res.adapterDir, 'adapter_config.json'), 'utf8')) as {
        target_modules: string[];
      };
      expect(cfg.target_modules).to.deep.equal(['q_lin', 'v_lin']);
      expect(res.peft_roundtrip_max_abs_diff).to.be.below(1e-4);
    } finally {
      fs.rmSync(res.adapterDir, { recursive: true, force: true });
    }
  });

  it('the round trip refuses sentences outside the model vocabulary, naming the id', () => {
    expect(() => peftRoundTrip({ modelDir: DISTIL_DIR, sentences: [[5, 100]] })).to.throw(
      RangeError,
      "token id 100 is not in the model's vocabulary [0, 100): pass sentences (token ids) of this model",
    );
  });
});
