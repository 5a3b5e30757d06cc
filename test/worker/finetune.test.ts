// DP-LoRA fine-tuning of a Hugging Face BERT (model.kind 'hf-bert') as an ordinary job: the real
// coordinator and two workers over gRPC with secure aggregation, text encoded with the model's
// tokenizer.json, and the trained adapter written in PEFT's format at the end.
import {
  decodeSafetensors,
  encodeSafetensors,
  hfBert,
  hfName,
  readBertConfig,
  readPeftAdapter,
  resolveModelPreset,
  tensor,
  transpose2d,
  type HfBertModelDef,
} from '@tensorguard/worker';
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { NOISELESS_FULL_BATCH, runJob, tmpDir, writeConfig } from './harness.js';
import { checkpointParams, clippedSgdReference, clippedSgdRun, maxDiff, readConfig } from './reference.js';

/**
 * A small BERT folder (2 layers, hidden 16) with seeded random weights in HF's names and layouts,
 * and all-MiniLM-L6-v2's tokenizer.json (so its vocabulary of 30,522 WordPiece tokens). With
 * 'distilbert' the same sizes as a DistilBertModel folder (DistilBERT's uncased vocabulary is
 * BERT's, the same tokenizer).
 */
function writeSmallBert(dir: string, minilm: string, modelType: 'bert' | 'distilbert' = 'bert'): string {
  fs.mkdirSync(dir, { recursive: true });
  const hf =
    modelType === 'bert'
      ? {
          model_type: 'bert',
          architectures: ['BertModel'],
          vocab_size: 30522,
          hidden_size: 16,
          num_hidden_layers: 2,
          num_attention_heads: 2,
          intermediate_size: 32,
          max_position_embeddings: 64,
          type_vocab_size: 2,
          layer_norm_eps: 1e-12,
          pad_token_id: 0,
          hidden_act: 'gelu',
        }
      : {
          model_type: 'distilbert',
          architectures: ['DistilBertModel'],
          vocab_size: 30522,
          dim: 16,
          n_layers: 2,
          n_heads: 2,
          hidden_dim: 32,
          max_position_embeddings: 64,
          sinusoidal_pos_embds: false,
          pad_token_id: 0,
          activation: 'gelu',
        };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hf));
  fs.copyFileSync(path.join(minilm, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  const def = hfBert({ config: readBertConfig(dir), seqLen: 16, numClasses: 2, train: 'full' });
  let s = 12345;
  const rand = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  };
  const tensors: Record<string, ReturnType<typeof tensor>> = {};
  for (const p of def.params) {
    const m = hfName(p.name);
    if (!m) continue;
    const n = p.shape.reduce((a, b) => a * b, 1);
    const v = Float32Array.from({ length: n }, () => (p.name.endsWith('.gamma') ? 1 : 0) + 0.4 * rand());
    tensors[m.hf] = m.transpose
      ? tensor(transpose2d(v, p.shape[0]!, p.shape[1]!), [p.shape[1]!, p.shape[0]!])
      : tensor(v, [...p.shape]);
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  return dir;
}

const WORDS = ['great', 'awful', 'moving', 'boring', 'superb', 'dull', 'charming', 'clumsy'];

/**
 * Short labelled reviews: label 1 for the positive words (even index), 0 otherwise. `kind` names
 * the set ('training' or 'held-out'), so that no test record repeats a training record (a worker
 * refuses such a test set).
 */
function writeReviews(file: string, n: number, kind: string): void {
  const rows = ['text,label'];
  for (let i = 0; i < n; i++) {
    const w = WORDS[i % WORDS.length]!;
    const extra = i % 3 === 0 ? ' and the cast was fine' : i % 3 === 1 ? '' : ', honestly';
    rows.push(`"a ${w} ${kind} film ${i}${extra}",${(i % WORDS.length) % 2 === 0 ? 1 : 0}`);
  }
  fs.writeFileSync(file, rows.join('\n') + '\n');
}

/**
 * A noiseless full-batch job of `rounds` rounds on a small BERT (or DistilBERT) cut from MiniLM,
 * 2 workers, 24 training and 16 held-out reviews at 16 tokens; `model` and `extra` add to or
 * replace the config's fields. Returns the job file and the model folder.
 */
function smallBertJob(
  prefix: string,
  minilm: string,
  o: {
    family?: 'bert' | 'distilbert';
    model?: Record<string, unknown>;
    rounds: number;
    extra?: Record<string, unknown>;
  },
): { dir: string; model: string; file: string } {
  const dir = tmpDir(prefix);
  const model =
    o.family === 'distilbert'
      ? writeSmallBert(path.join(dir, 'distilbert'), minilm, 'distilbert')
      : writeSmallBert(path.join(dir, 'bert'), minilm);
  const csv = path.join(dir, 'reviews.csv');
  const testCsv = path.join(dir, 'held-out.csv');
  writeReviews(csv, 24, 'training');
  writeReviews(testCsv, 16, 'held-out');
  const file = writeConfig(dir, {
    model: { kind: 'hf-bert', path: model, ...o.model },
    dataset: {
      format: 'csv',
      path: csv,
      testPath: testCsv,
      textColumn: 'text',
      numClasses: 2,
      maxTokens: 16,
    },
    workers: { count: 2 },
    privacy: NOISELESS_FULL_BATCH,
    rounds: o.rounds,
    evaluation: { everyRounds: o.rounds },
    checkpoint: { dir: path.join(dir, 'ckpt'), everyRounds: o.rounds },
    ...o.extra,
  });
  return { dir, model, file };
}

/** The trainable parameters a job's PEFT adapter holds, flat in the model's order. */
function adapterParams(
  file: string,
  model: string,
  adapterDir: string,
): { names: string[]; flat: Float32Array } {
  const cfg = readConfig(file);
  const def = hfBert({
    config: readBertConfig(model),
    seqLen: 16,
    numClasses: 2,
    pooling: cfg.model.pooling,
    lora: cfg.model.lora!,
  });
  const adapter = readPeftAdapter(adapterDir, def);
  const names = def.params.filter((p) => p.trainable).map((p) => p.name);
  return { names, flat: Float32Array.from(names.flatMap((n) => Array.from(adapter[n]!))) };
}

describe('worker + coordinator: DP-LoRA fine-tuning of a Hugging Face BERT (hf-bert)', function () {
  this.timeout(600_000);
  let minilm: string;

  before(async () => {
    minilm = await resolveModelPreset('all-minilm-l6-v2');
  });

  it('σ = 0 equals clipped SGD: 2 workers with secure aggregation, LoRA on query/value of a small BERT (3 rounds); the adapter holds the final parameters', async () => {
    const { dir, model, file } = smallBertJob('tg-ft-eq-', minilm, {
      model: { lora: { rank: 2, alpha: 4, targetModules: ['query', 'value'] } },
      rounds: 3,
    });
    const { done } = await runJob(file, 2);
    expect(done.status).to.equal('succeeded');
    expect(done.rounds).to.equal(3);
    const params = clippedSgdReference(file, 3);
    const ck = checkpointParams(file);
    expect(ck.round).to.equal(3);
    const { maxErr, maxAbs } = maxDiff(ck.params, params);
    expect(maxErr).to.be.below(2e-5);
    expect(maxAbs).to.be.above(0.01);

    // The PEFT adapter is the final model: its values are the checkpoint's.
    expect(done.adapter).to.equal(path.join(dir, 'ckpt', 'adapter'));
    const { flat } = adapterParams(file, model, done.adapter as string);
    expect(maxDiff(flat, ck.params).maxErr).to.equal(0);
  });

  it("model.initAdapter: a job started from another job's PEFT adapter continues it (2 rounds, then 1 from the adapter, equal 3 rounds of clipped SGD; σ = 0, momentum 0)", async () => {
    const job = (prefix: string, rounds: number, initAdapter?: string) =>
      smallBertJob(prefix, minilm, {
        model: { lora: { rank: 2, alpha: 4, targetModules: ['query', 'value'] }, initAdapter },
        rounds,
        extra: { optimizer: { kind: 'sgd', learningRate: 0.5, momentum: 0 } },
      });
    const first = job('tg-ft-init-a-', 2);
    const a = await runJob(first.file, 2);
    expect(a.done.status).to.equal('succeeded');
    const second = job('tg-ft-init-b-', 1, a.done.adapter as string);
    const b = await runJob(second.file, 2);
    expect(b.done.status).to.equal('succeeded');
    const ck = checkpointParams(second.file);
    expect(ck.round).to.equal(1);
    // The reference starts from B = 0 and the seeded head, and takes all three steps itself.
    const { maxErr, maxAbs } = maxDiff(ck.params, clippedSgdReference(first.file, 3));
    expect(maxErr).to.be.below(2e-5);
    expect(maxAbs).to.be.above(0.01);
    // Without the adapter the same one-round job ends elsewhere.
    expect(maxDiff(ck.params, clippedSgdReference(job('tg-ft-init-c-', 1).file, 1)).maxErr).to.be.above(1e-3);
  });

  it("optimizer.schedule and optimizer.ema: the checkpoint holds the linearly decayed iterate, the PEFT adapter the iterates' average (σ = 0, small BERT, 3 rounds)", async () => {
    const sgd = { kind: 'sgd', learningRate: 0.5, momentum: 0.5 };
    const job = (prefix: string, optimizer: Record<string, unknown>) =>
      smallBertJob(prefix, minilm, {
        model: { lora: { rank: 2, alpha: 4, targetModules: ['query', 'value'] } },
        rounds: 3,
        extra: { optimizer },
      });
    const { model, file } = job('tg-ft-ema-', { ...sgd, schedule: { kind: 'linear' }, ema: { decay: 0.5 } });
    const { done } = await runJob(file, 2);
    expect(done.status).to.equal('succeeded');
    const ref = clippedSgdRun(file, 3);
    const ck = checkpointParams(file);
    expect(maxDiff(ck.params, ref.params).maxErr).to.be.below(2e-5);
    // The constant-rate run of the same job ends elsewhere: the schedule was applied.
    expect(maxDiff(ck.params, clippedSgdReference(job('tg-ft-const-', sgd).file, 3)).maxErr).to.be.above(
      1e-3,
    );
    const { flat } = adapterParams(file, model, done.adapter as string);
    expect(maxDiff(flat, ref.average!).maxErr).to.be.below(2e-5);
    expect(maxDiff(flat, ck.params).maxErr).to.be.above(2e-4);
  });

  it("DistilBERT: σ = 0 equals clipped SGD with the default targets (q_lin/v_lin), and the adapter has DistilBertModel's PEFT names", async () => {
    const { model, file } = smallBertJob('tg-ft-distil-', minilm, {
      family: 'distilbert',
      // No targetModules: the run config's default ['query', 'value'] is q_lin/v_lin here.
      model: { pooling: 'cls', lora: { rank: 2, alpha: 4 } },
      rounds: 2,
    });
    const { done } = await runJob(file, 2);
    expect(done.status).to.equal('succeeded');
    const ck = checkpointParams(file);
    expect(ck.round).to.equal(2);
    const { maxErr, maxAbs } = maxDiff(ck.params, clippedSgdReference(file, 2));
    expect(maxErr).to.be.below(2e-5);
    expect(maxAbs).to.be.above(0.01);

    const adapterDir = done.adapter as string;
    const cfg = JSON.parse(fs.readFileSync(path.join(adapterDir, 'adapter_config.json'), 'utf8')) as {
      target_modules: string[];
    };
    expect(cfg.target_modules).to.deep.equal(['q_lin', 'v_lin']);
    const wFile = path.join(adapterDir, 'adapter_model.safetensors');
    expect(Object.keys(decodeSafetensors(fs.readFileSync(wFile), wFile).tensors)).to.include(
      'base_model.model.transformer.layer.1.attention.v_lin.lora_B.weight',
    );
    const { names, flat } = adapterParams(file, model, adapterDir);
    expect(names[0]).to.equal('transformer.layer.0.attention.q_lin.lora_a');
    expect(maxDiff(flat, ck.params).maxErr).to.equal(0);
  });

  it('fine-tunes all-MiniLM-L6-v2 with noise on Rotten Tomatoes (2 workers, secure aggregation): ε reported and a PEFT adapter whose format checks pass', async () => {
    const dir = tmpDir('tg-ft-dp-');
    const file = writeConfig(dir, {
      model: { kind: 'hf-bert', preset: 'all-minilm-l6-v2', lora: { rank: 4, alpha: 8 } },
      dataset: {
        format: 'csv',
        preset: 'rotten-tomatoes',
        trainExamples: 32,
        testExamples: 16,
        maxTokens: 24,
        numClasses: 2,
      },
      workers: { count: 2 },
      privacy: {
        clipNorm: 1,
        noiseMultiplier: 1,
        delta: 1e-5,
        epsilonBudget: null,
        accountant: 'rdp',
        samplingRate: 0.25,
      },
      optimizer: { kind: 'sgd', learningRate: 0.05, momentum: 0 },
      rounds: 2,
      evaluation: { everyRounds: 2 },
      checkpoint: { dir: path.join(dir, 'ckpt'), everyRounds: 2 },
    });
    const { done } = await runJob(file, 2);
    expect(done.status).to.equal('succeeded');
    expect(done.epsilon).to.be.a('number').and.to.be.above(0).and.to.be.below(1000);
    expect(done.test_accuracy).to.be.a('number').within(0, 1);
    const adapterDir = done.adapter as string;
    expect(fs.readdirSync(adapterDir).sort()).to.deep.equal([
      'adapter_config.json',
      'adapter_model.safetensors',
      'head.safetensors',
    ]);
    const cfg = JSON.parse(fs.readFileSync(path.join(adapterDir, 'adapter_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(cfg).to.include({
      peft_type: 'LORA',
      r: 4,
      lora_alpha: 8,
      base_model_name_or_path: 'sentence-transformers/all-MiniLM-L6-v2',
    });
    expect(cfg.target_modules).to.deep.equal(['query', 'value']);
    const wFile = path.join(adapterDir, 'adapter_model.safetensors');
    const { tensors } = decodeSafetensors(fs.readFileSync(wFile), wFile);
    const names = Object.keys(tensors);
    expect(names).to.have.length(6 * 2 * 2);
    for (let l = 0; l < 6; l++)
      for (const m of ['query', 'value']) {
        const a = tensors[`base_model.model.encoder.layer.${l}.attention.self.${m}.lora_A.weight`]!;
        const b = tensors[`base_model.model.encoder.layer.${l}.attention.self.${m}.lora_B.weight`]!;
        expect([a.shape, b.shape]).to.deep.equal([
          [4, 384],
          [384, 4],
        ]);
      }
    // Trained: the adapters moved away from B = 0.
    const b0 = tensors['base_model.model.encoder.layer.0.attention.self.query.lora_B.weight']!
      .data as Float32Array;
    expect(Array.from(b0).some((v) => v !== 0)).to.equal(true);
    const hFile = path.join(adapterDir, 'head.safetensors');
    const head = decodeSafetensors(fs.readFileSync(hFile), hFile);
    expect(head.tensors.weight!.shape).to.deep.equal([2, 384]);
    expect(head.metadata.pooling).to.equal('mean');
    const def: HfBertModelDef = hfBert({
      config: readBertConfig(minilm),
      seqLen: 24,
      numClasses: 2,
      lora: { rank: 4, alpha: 8 },
    });
    expect(Object.keys(readPeftAdapter(adapterDir, def))).to.have.length(26);
  });
});
