import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { JobSpecError, loadJobSpec, parseJobSpec, resolveRunConfig, validateJobSpec } from './index.js';
import { validSpecInput } from './testing.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- mutations write bad values on purpose
type Mutate = (s: any) => void;

/** Each bad spec: a mutation of a valid one, and exactly the lines the user must see. */
const BAD: [string, Mutate, string[]][] = [
  ['missing name', (s) => delete s.name, ['name: is required (string)']],
  [
    'bad name',
    (s) => (s.name = 'Fashion DP'),
    ["name: must be 1-40 lowercase letters, digits or '-', starting with a letter or digit"],
  ],
  [
    'unknown top-level field (a typo)',
    (s) => (s.round = 3),
    [
      'round: unknown field (allowed: name, model, dataset, workers, coordinator, privacy, secureAggregation, optimizer, rounds, evaluation, checkpoint, envelope, roundTimeoutMs)',
    ],
  ],
  [
    'unknown model kind',
    (s) => (s.model = { kind: 'rnn' }),
    ["model.kind: must be one of 'mlp', 'cnn-tanh', 'transformer-lora', 'hf-bert', got 'rnn'"],
  ],
  [
    'hf-bert with neither path nor preset',
    (s) => (s.model = { kind: 'hf-bert' }),
    [
      "model.path: set exactly one of model.path (a Hugging Face model folder) and model.preset ('all-minilm-l6-v2')",
    ],
  ],
  [
    'hf-bert LoRA on an unknown module',
    (s) => (s.model = { kind: 'hf-bert', preset: 'all-minilm-l6-v2', lora: { targetModules: ['ffn'] } }),
    [
      "model.lora.targetModules: must be one of 'all-linear', 'query', 'key', 'value', 'dense', 'q_lin', 'k_lin', 'v_lin', 'out_lin', 'lin1', 'lin2', got [\"ffn\"]",
    ],
  ],
  [
    'empty mlp hidden',
    (s) => (s.model = { kind: 'mlp', hidden: [] }),
    ['model.hidden: must have at least 1 item(s)'],
  ],
  [
    'fractional mlp width',
    (s) => (s.model = { kind: 'mlp', hidden: [64.5] }),
    ['model.hidden[0]: must be an integer, got 64.5'],
  ],
  [
    'unknown field of the chosen model kind',
    (s) => (s.model = { kind: 'mlp', hiden: [3] }),
    ['model.hiden: unknown field (allowed: kind, hidden, baseCheckpoint, trainable, initSeed)'],
  ],
  [
    'bad trainable',
    (s) => (s.model = { kind: 'transformer-lora', trainable: 'all' }),
    ["model.trainable: must be 'lora' or a list of parameter-name substrings, got 'all'"],
  ],
  [
    'dataset format',
    (s) => (s.dataset.format = 'parquet'),
    ["dataset.format: must be one of 'idx', 'csv', 'jsonl', got 'parquet'"],
  ],
  [
    'neither dataset path nor preset',
    (s) => (s.dataset = { format: 'csv' }),
    [
      "dataset.path: set exactly one of dataset.path and dataset.preset ('fashion-mnist', 'rotten-tomatoes', 'imdb')",
      'dataset.numClasses: is required for csv data: the coordinator reads no training record, so it cannot count the classes',
    ],
  ],
  [
    'both dataset path and preset',
    (s) => (s.dataset.path = '/data'),
    [
      "dataset.path: set exactly one of dataset.path and dataset.preset ('fashion-mnist', 'rotten-tomatoes', 'imdb')",
    ],
  ],
  [
    'preset with csv',
    (s) => (s.dataset.format = 'csv'),
    [
      "dataset.format: preset 'fashion-mnist' needs format 'idx'",
      'dataset.numClasses: is required for csv data: the coordinator reads no training record, so it cannot count the classes',
    ],
  ],
  [
    "sharding 'files' of IDX, without numClasses, with trainExamples",
    (s) => {
      s.dataset.sharding = 'files';
      s.dataset.trainExamples = 100;
    },
    [
      "dataset.sharding: 'files' needs format csv or jsonl with dataset.path a directory of such files; IDX is one file per split: use 'hash'",
      "dataset.numClasses: is required with sharding 'files' (each worker reads only its own files, so the class count cannot be inferred)",
      "dataset.trainExamples: applies to sharding 'hash' and 'contiguous' only; with 'files', choose the files instead",
    ],
  ],
  [
    'text preset with format idx and a model without a tokenizer',
    (s) => (s.dataset = { format: 'idx', preset: 'rotten-tomatoes' }),
    [
      "dataset.format: preset 'rotten-tomatoes' needs format 'csv'",
      "dataset.preset: text records are encoded with a Hugging Face model's tokenizer: use model.kind 'hf-bert' (model.preset or model.path)",
    ],
  ],
  [
    'textColumn and maxTokens of IDX data',
    (s) => {
      s.dataset.textColumn = 'review';
      s.dataset.maxTokens = 2;
    },
    [
      'dataset.maxTokens: must be ≥ 3, got 2',
      "dataset.textColumn: text records are encoded with a Hugging Face model's tokenizer: use model.kind 'hf-bert' (model.preset or model.path)",
      'dataset.textColumn: applies to text data (format csv or jsonl) only',
    ],
  ],
  [
    'sharding',
    (s) => (s.dataset.sharding = 'random'),
    ["dataset.sharding: must be one of 'hash', 'contiguous', 'files', got 'random'"],
  ],
  ['no workers', (s) => (s.workers.count = 0), ['workers.count: must be ≥ 1, got 0']],
  ['too many workers', (s) => (s.workers.count = 1000), ['workers.count: must be ≤ 256, got 1000']],
  [
    'worker count as a string',
    (s) => (s.workers.count = '3'),
    ["workers.count: must be a number, got string '3'"],
  ],
  ['zero CPUs', (s) => (s.workers.cpusPerWorker = 0), ['workers.cpusPerWorker: must be > 0, got 0']],
  ['no lanes', (s) => (s.workers.lanes = 0), ['workers.lanes: must be ≥ 1, got 0']],
  ['fractional lanes', (s) => (s.workers.lanes = 1.5), ['workers.lanes: must be an integer, got 1.5']],
  [
    'more lanes than the CPUs of a fractional bundle',
    (s) => (s.workers.lanes = 2),
    [
      "workers.lanes: 2 exceeds the worker's thread budget max(1, floor(workers.cpusPerWorker)) = 1: lower workers.lanes or raise workers.cpusPerWorker",
    ],
  ],
  [
    'more lanes than whole CPUs',
    (s) => {
      s.workers.cpusPerWorker = 3.5;
      s.workers.lanes = 4;
    },
    [
      "workers.lanes: 4 exceeds the worker's thread budget max(1, floor(workers.cpusPerWorker)) = 3: lower workers.lanes or raise workers.cpusPerWorker",
    ],
  ],
  [
    'lanes on a GPU worker',
    (s) => {
      s.workers.cpusPerWorker = 2;
      s.workers.gpusPerWorker = 1;
      s.workers.lanes = 2;
    },
    [
      'workers.lanes: 2 lane processes on a GPU worker (workers.gpusPerWorker = 1): lanes are for CPU workers, each would start its own CUDA context and memory pool; set workers.lanes to 1',
    ],
  ],
  ['negative GPUs', (s) => (s.workers.gpusPerWorker = -1), ['workers.gpusPerWorker: must be ≥ 0, got -1']],
  [
    'placement strategy',
    (s) => (s.workers.placementStrategy = 'STRICT_PACK'),
    ["workers.placementStrategy: must be one of 'PACK', 'SPREAD', got 'STRICT_PACK'"],
  ],
  [
    'fractional maxRestarts',
    (s) => (s.workers.maxRestarts = 1.5),
    ['workers.maxRestarts: must be an integer, got 1.5'],
  ],
  ['zero clip norm', (s) => (s.privacy.clipNorm = 0), ['privacy.clipNorm: must be > 0, got 0']],
  [
    'noise multiplier and target ε',
    (s) => (s.privacy.targetEpsilon = 3),
    ['privacy.noiseMultiplier: set exactly one of privacy.noiseMultiplier and privacy.targetEpsilon'],
  ],
  [
    'neither noise multiplier nor target ε',
    (s) => delete s.privacy.noiseMultiplier,
    ['privacy.noiseMultiplier: set exactly one of privacy.noiseMultiplier and privacy.targetEpsilon'],
  ],
  [
    'target ε above the budget',
    (s) => {
      delete s.privacy.noiseMultiplier;
      s.privacy.targetEpsilon = 9;
    },
    ['privacy.targetEpsilon: 9 exceeds privacy.epsilonBudget 8'],
  ],
  ['δ = 1', (s) => (s.privacy.delta = 1), ['privacy.delta: must be < 1, got 1']],
  ['no ε budget', (s) => delete s.privacy.epsilonBudget, ['privacy.epsilonBudget: is required (number)']],
  [
    'accountant',
    (s) => (s.privacy.accountant = 'gdp'),
    ["privacy.accountant: must be one of 'rdp', 'pld', got 'gdp'"],
  ],
  [
    'sampling rate and batch size',
    (s) => (s.privacy.expectedBatchSize = 256),
    ['privacy.samplingRate: set exactly one of privacy.samplingRate and privacy.expectedBatchSize'],
  ],
  [
    'sampling rate above 1',
    (s) => (s.privacy.samplingRate = 1.5),
    ['privacy.samplingRate: must be ≤ 1, got 1.5'],
  ],
  [
    'homomorphic mode with a threshold of one worker',
    (s) => (s.secureAggregation = { mode: 'he', threshold: 0.2 }),
    [
      "secureAggregation.threshold: resolves to 1; mode 'he' needs at least 2 (the key holder never decrypts one worker's ciphertext)",
    ],
  ],
  [
    'one worker (validates by shape, cannot run)',
    (s) => (s.workers.count = 1),
    [
      "workers.count: 1 worker cannot run: secure aggregation needs at least 2 workers (a sum over one worker is that worker's update); set workers.count to 2 or more",
    ],
  ],
  [
    'a masking threshold of one worker',
    (s) => (s.secureAggregation = { threshold: 1 }),
    [
      "secureAggregation.threshold: resolves to 1; secure aggregation needs at least 2 contributors per round (a sum over one worker is that worker's update)",
    ],
  ],
  [
    'a key holder without homomorphic mode',
    (s) => (s.secureAggregation = { keyHolder: '10.0.0.7:7000' }),
    ["secureAggregation.keyHolder: applies to mode 'he' only; remove it or set mode 'he'"],
  ],
  [
    'a key holder that is not HOST:PORT',
    (s) => (s.secureAggregation = { mode: 'he', keyHolder: 'http://keys' }),
    ['secureAggregation.keyHolder: must be HOST:PORT of a running key holder'],
  ],
  [
    'threshold above the worker count',
    (s) => (s.secureAggregation = { threshold: 5 }),
    ['secureAggregation.threshold: 5 exceeds workers.count 3'],
  ],
  [
    'as many colluders as the quorum',
    (s) => {
      s.secureAggregation = { threshold: 2 };
      s.privacy.colluders = 2;
    },
    [
      "privacy.colluders: 2 colluders need secureAggregation.threshold above them (it resolves to 2): a quorum must hold an honest worker's noise",
    ],
  ],
  [
    'threshold neither fraction nor count',
    (s) => (s.secureAggregation = { threshold: 1.5 }),
    ['secureAggregation.threshold: must be a fraction in (0, 1) or an integer count ≥ 1'],
  ],
  [
    'ring width',
    (s) => (s.secureAggregation = { bits: 16 }),
    ["secureAggregation.bits: must be one of 32, 64, 'auto', got 16"],
  ],
  [
    'optimizer kind',
    (s) => (s.optimizer = { kind: 'rmsprop', learningRate: 0.1 }),
    ["optimizer.kind: must be one of 'sgd', 'adam', got 'rmsprop'"],
  ],
  [
    'no learning rate',
    (s) => (s.optimizer = { kind: 'adam' }),
    ['optimizer.learningRate: is required (number)'],
  ],
  ['momentum 1', (s) => (s.optimizer.momentum = 1), ['optimizer.momentum: must be < 1, got 1']],
  ['fractional rounds', (s) => (s.rounds = 2.5), ['rounds: must be an integer, got 2.5']],
  [
    'evaluation every 0 rounds',
    (s) => (s.evaluation = { everyRounds: 0 }),
    ['evaluation.everyRounds: must be ≥ 1, got 0'],
  ],
  ['empty checkpoint dir', (s) => (s.checkpoint = { dir: '' }), ['checkpoint.dir: must not be empty']],
  [
    'negative update envelope',
    (s) => (s.envelope = { maxUpdateBytes: -1 }),
    ['envelope.maxUpdateBytes: must be ≥ 1, got -1'],
  ],
  [
    'round timeout with a unit',
    (s) => (s.roundTimeoutMs = '2m'),
    ["roundTimeoutMs: must be a number, got string '2m'"],
  ],
  ['privacy not an object', (s) => (s.privacy = 5), ['privacy: must be an object, got number 5']],
  [
    'every bad field at once',
    (s) => {
      s.workers.count = 0;
      s.privacy.clipNorm = -1;
      s.rounds = 0;
      s.privacy.targetEpsilon = 1;
    },
    [
      'workers.count: must be ≥ 1, got 0',
      'privacy.clipNorm: must be > 0, got -1',
      'rounds: must be ≥ 1, got 0',
      'privacy.noiseMultiplier: set exactly one of privacy.noiseMultiplier and privacy.targetEpsilon',
    ],
  ],
];

describe('job spec', () => {
  it('accepts the valid spec and fills in every default', () => {
    const spec = parseJobSpec(validSpecInput());
    expect(spec.workers).to.deep.equal({
      count: 3,
      cpusPerWorker: 0.5,
      lanes: 1,
      gpusPerWorker: 0,
      placementStrategy: 'PACK',
      maxRestarts: 3,
    });
    expect(spec.secureAggregation).to.deep.equal({ mode: 'masking', quorum: 0.5, bits: 'auto' });
    expect(spec.privacy.delta).to.equal(1e-5);
    expect(spec.roundTimeoutMs).to.equal(120_000);
    expect(spec.checkpoint).to.deep.equal({ everyRounds: 10 });
  });

  describe(`${BAD.length} bad specs, each with exactly the expected messages`, () => {
    for (const [name, mutate, expected] of BAD) {
      it(name, () => {
        const doc = validSpecInput();
        mutate(doc);
        const r = validateJobSpec(doc);
        expect(r.ok).to.equal(false);
        if (r.ok) return;
        expect(r.issues.map((i) => `${i.path}: ${i.message}`)).to.deep.equal(expected);
      });
    }
  });

  it('takes lanes up to the whole CPUs of a bundle and passes them to the worker config', async () => {
    const doc = validSpecInput();
    doc.workers = { count: 3, cpusPerWorker: 2.5, lanes: 2 };
    const cfg = await resolveRunConfig(parseJobSpec(doc), { jobId: 'j-3', dataDir: '/data' });
    expect(cfg.workers).to.include({ cpusPerWorker: 2.5, lanes: 2 });
  });

  it('JobSpecError lists every problem with its path', () => {
    const doc = validSpecInput() as Record<string, unknown>;
    doc.rounds = 0;
    doc.name = '';
    try {
      parseJobSpec(doc);
      expect.fail('no error');
    } catch (err) {
      expect(err).to.be.instanceOf(JobSpecError);
      expect((err as Error).message).to.equal(
        [
          'invalid job spec (2 problems):',
          "  - name: must be 1-40 lowercase letters, digits or '-', starting with a letter or digit",
          '  - rounds: must be ≥ 1, got 0',
        ].join('\n'),
      );
    }
  });

  it('loads YAML, resolving relative paths against the file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-spec-'));
    try {
      const file = path.join(dir, 'job.yaml');
      fs.writeFileSync(
        file,
        [
          'name: csv-job',
          'model: { kind: mlp, hidden: [16] }',
          'dataset: { format: csv, path: data/train.csv, testPath: data/test.csv, numClasses: 2 }',
          'workers: { count: 2 }',
          'privacy: { clipNorm: 1, noiseMultiplier: 1, epsilonBudget: null, samplingRate: 0.1 }',
          'optimizer: { kind: adam, learningRate: 0.001 }',
          'rounds: 3',
          'checkpoint: { dir: ckpt }',
        ].join('\n'),
      );
      const spec = loadJobSpec(file);
      expect(spec.dataset.path).to.equal(path.join(dir, 'data/train.csv'));
      expect(spec.checkpoint.dir).to.equal(path.join(dir, 'ckpt'));
      expect(spec.privacy.epsilonBudget).to.equal(null);
      fs.writeFileSync(file, 'name: [unclosed');
      expect(() => loadJobSpec(file)).to.throw(JobSpecError, /is not valid YAML\/JSON/);
      expect(() => loadJobSpec(path.join(dir, 'nope.yaml'))).to.throw(
        JobSpecError,
        /cannot read the file \(ENOENT\)/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('resolves a homomorphic-mode spec with its key holder for the worker', async () => {
    const doc = validSpecInput();
    doc.secureAggregation = { mode: 'he', quorum: 0.6, keyHolder: 'keys.internal:7000' };
    const cfg = await resolveRunConfig(parseJobSpec(doc), { jobId: 'j-2', dataDir: '/data' });
    expect(cfg.secureAggregation).to.include({ mode: 'he', quorum: 2, keyHolder: 'keys.internal:7000' });
  });

  it('resolves the quorum count, the sampling rate and the checkpoint folder', async () => {
    const doc = validSpecInput();
    doc.privacy = { clipNorm: 1, noiseMultiplier: 1, epsilonBudget: 8, expectedBatchSize: 600 };
    doc.secureAggregation = { quorum: 0.67 };
    const cfg = await resolveRunConfig(parseJobSpec(doc), { jobId: 'j-1', dataDir: '/data' });
    expect(cfg.secureAggregation.quorum).to.equal(3); // ceil(0.67 · 3)
    expect(cfg.privacy.samplingRate).to.equal(0.01); // 600 of Fashion-MNIST's 60000
    expect(cfg.checkpoint.dir).to.equal('/data/jobs/j-1/checkpoints');
    expect(cfg).to.not.have.nested.property('privacy.expectedBatchSize');
  });

  it('refuses a δ above 1/N when N is known, unless privacy.allowDeltaAboveInverseN says so', async () => {
    const doc = validSpecInput();
    doc.dataset = { format: 'idx', preset: 'fashion-mnist', trainExamples: 1000 };
    doc.privacy = { clipNorm: 1, noiseMultiplier: 1, epsilonBudget: 8, samplingRate: 0.01, delta: 0.002 };
    let err: unknown;
    try {
      await resolveRunConfig(parseJobSpec(doc), { jobId: 'j', dataDir: '/d' });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(JobSpecError);
    expect((err as JobSpecError).message).to.include(
      'privacy.delta: 0.002 is above 1/N = 0.00100 for N = 1000 training records: at such a δ a mechanism may publish a record outright; lower privacy.delta (for example to 0.0001) or set privacy.allowDeltaAboveInverseN: true',
    );
    doc.privacy = {
      clipNorm: 1,
      noiseMultiplier: 1,
      epsilonBudget: 8,
      samplingRate: 0.01,
      delta: 0.002,
      allowDeltaAboveInverseN: true,
    };
    const cfg = await resolveRunConfig(parseJobSpec(doc), { jobId: 'j', dataDir: '/d' });
    expect(cfg.privacy.delta).to.equal(0.002);
    doc.privacy = { clipNorm: 1, noiseMultiplier: 1, epsilonBudget: 8, samplingRate: 0.01, delta: 0.001 };
    expect((await resolveRunConfig(parseJobSpec(doc), { jobId: 'j', dataDir: '/d' })).privacy.delta).to.equal(
      0.001,
    );
  });

  it('takes a text preset for an hf-bert model: its training records give the sampling rate', async () => {
    const doc = validSpecInput();
    doc.model = { kind: 'hf-bert', preset: 'all-minilm-l6-v2' };
    doc.dataset = { format: 'csv', preset: 'rotten-tomatoes', maxTokens: 64 };
    doc.privacy = { clipNorm: 1, noiseMultiplier: 1, epsilonBudget: 8, expectedBatchSize: 427 };
    const cfg = await resolveRunConfig(parseJobSpec(doc), { jobId: 'j-1', dataDir: '/data' });
    expect(cfg.privacy.samplingRate).to.equal(427 / 6832); // the preset's training split
    expect(cfg.dataset).to.deep.include({ preset: 'rotten-tomatoes', maxTokens: 64 });
  });

  for (const accountant of ['rdp', 'pld'] as const) {
    it(`calibrates σ for a target ε with the coordinator's accountant (${accountant})`, async function () {
      this.timeout(60_000);
      const doc = validSpecInput();
      doc.privacy = { clipNorm: 1, targetEpsilon: 2, epsilonBudget: 8, samplingRate: 0.01, accountant };
      doc.rounds = 50;
      const cfg = await resolveRunConfig(parseJobSpec(doc), { jobId: 'j', dataDir: '/d' });
      // What the coordinator records for 50 rounds with t survivors (worker-ts JobAccountant): the
      // integer mechanism (2 honest shares of exact discrete Gaussian noise), whose rigorous bound is
      // the job's ε and budget under both accountants.
      const { JobAccountant } = await import('@tensorguard/worker');
      const dp = await import('@tensorguard/dp');
      const integerEvent = (sigma: number) => {
        const scale = 2 ** 16;
        const d = 1000;
        return dp.poissonSampledEvent(
          0.01,
          dp.distributedDiscreteGaussianEvent({
            l2ClipNorm: 1,
            granularity: 1 / scale,
            dimension: d,
            localStddev: (sigma * (1 + Math.sqrt(d) / scale) * scale) / Math.sqrt(2),
            contributors: 2,
          }),
        );
      };
      const eps = (sigma: number) => {
        const acc = new JobAccountant({ kind: accountant, delta: 1e-5, shardCount: 3 });
        for (let r = 1; r <= 50; r++)
          acc.record({
            round: r,
            samplingRate: 0.01,
            noiseMultiplier: sigma,
            survivors: 2,
            integerEvent: integerEvent(sigma),
          });
        return acc.epsilon();
      };
      expect(eps(cfg.privacy.noiseMultiplier)).to.be.at.most(2);
      expect(eps(cfg.privacy.noiseMultiplier * 0.999)).to.be.above(2);
    });
  }
});
