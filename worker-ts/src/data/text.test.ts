import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseRunConfig, type RunConfig } from '../config.js';
import { resolveModelPreset, resolveMovieReviewsCsv } from '../hf/presets.js';
import { resolvePresets } from '../hf/resolve.js';
import { DatasetError } from './errors.js';
import { loadShard, loadTestSet, loadTrainSchema, loadTrainSet } from './load.js';
import {
  PRESET_SPLIT_SIZES,
  parseTextCsv,
  presetSplit,
  presetSplitFile,
  readPresetSplit,
  readTextFile,
} from './text.js';

function config(dataset: Record<string, unknown>, model: Record<string, unknown>, workers = 2): RunConfig {
  return parseRunConfig({
    name: 't',
    model: { kind: 'hf-bert', ...model },
    dataset,
    workers: { count: workers },
    privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 0.1 },
    secureAggregation: { mode: 'masking', threshold: 1 },
    optimizer: { kind: 'sgd', learningRate: 0.1 },
    rounds: 1,
    evaluation: { everyRounds: 1 },
    checkpoint: { dir: '/tmp/x', everyRounds: 1 },
    envelope: { maxTrainableParameters: 1e6, maxUpdateBytes: 1e9 },
    roundTimeoutMs: 1000,
  });
}

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('did not throw');
}

describe('data/text: text records for Hugging Face models', function () {
  this.timeout(300_000);
  let csv: string;
  let modelDir: string;
  let dir: string;
  before(async () => {
    csv = await resolveMovieReviewsCsv();
    modelDir = await resolveModelPreset('all-minilm-l6-v2');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-text-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('splits each preset 80/20 by a hash of the text, deterministically, both classes in both splits', () => {
    for (const preset of ['rotten-tomatoes', 'imdb'] as const) {
      const train = readPresetSplit(csv, preset, 'train');
      const test = readPresetSplit(csv, preset, 'test');
      expect({ train: train.texts.length, test: test.texts.length }, preset).to.deep.equal(
        PRESET_SPLIT_SIZES[preset],
      );
      expect(train.texts.every((t) => presetSplit(t) === 'train')).to.equal(true);
      expect(test.texts.every((t) => presetSplit(t) === 'test')).to.equal(true);
      const seen = new Set(train.texts);
      expect(test.texts.some((t) => seen.has(t))).to.equal(false);
      // Hash order, not file order (the file lists positives first): a prefix has both classes.
      const first = train.labels.slice(0, 200);
      expect(first.filter((l) => l === 1).length).to.be.within(70, 130);
    }
  });

  it('a text preset loads as token ids [maxTokens] with the model tokenizer, after resolvePresets', async () => {
    const raw = config(
      { format: 'csv', preset: 'rotten-tomatoes', maxTokens: 32, trainExamples: 300, testExamples: 100 },
      { preset: 'all-minilm-l6-v2' },
    );
    // Unresolved: the error says what to do.
    expect(thrown(() => loadTrainSet(raw)).message).to.include('set model.preset or model.path');
    const cfg = await resolvePresets(raw);
    expect((cfg.model as { path?: string }).path).to.equal(modelDir);
    expect(cfg.dataset.path).to.equal(path.dirname(csv));
    expect(loadTrainSchema(cfg)).to.deep.equal({ featureShape: [32], numClasses: 2 });
    const train = loadTrainSet(cfg);
    const test = loadTestSet(cfg);
    expect([train.size, test.size]).to.deep.equal([300, 100]);
    expect(train).to.deep.include({ featureShape: [32], dtype: 'int32', numClasses: 2 });
    for (let r = 0; r < train.size; r++) expect(train.features[r * 32]).to.equal(101); // [CLS]
    // hash sharding: the two workers' shards partition the training set.
    const s0 = loadShard(cfg, 0);
    const s1 = loadShard(cfg, 1);
    expect(s0.size + s1.size).to.equal(300);
    expect(s0.size).to.be.within(100, 200);
  });

  it('the split files hold exactly the split; the coordinator needs only the test file', async () => {
    const data = path.dirname(csv);
    const fromFile = readTextFile(presetSplitFile(data, 'rotten-tomatoes', 'train'), 'jsonl');
    expect(fromFile).to.deep.equal(readPresetSplit(csv, 'rotten-tomatoes', 'train'));
    // A folder with the test split only: what the coordinator reads works, a training read fails.
    const only = path.join(dir, 'test-only');
    fs.mkdirSync(only);
    fs.copyFileSync(
      presetSplitFile(data, 'rotten-tomatoes', 'test'),
      presetSplitFile(only, 'rotten-tomatoes', 'test'),
    );
    const cfg = config(
      { format: 'csv', preset: 'rotten-tomatoes', path: only, maxTokens: 16, testExamples: 50 },
      { path: modelDir },
    );
    expect(loadTrainSchema(cfg)).to.deep.equal({ featureShape: [16], numClasses: 2 });
    expect(loadTestSet(cfg).size).to.equal(50);
    expect(thrown(() => loadTrainSet(cfg)).message).to.equal(
      `${presetSplitFile(only, 'rotten-tomatoes', 'train')}: cannot read (ENOENT)`,
    );
    await Promise.resolve();
  });

  it("a user's CSV with quoted text (commas, quotes, newlines) and a JSONL file", () => {
    const file = path.join(dir, 'reviews.csv');
    fs.writeFileSync(
      file,
      'id,review,stars\n1,"good, ""really"" good",1\n2,"bad\nvery bad",0\n3,a [PAD] token,1\n',
    );
    const cfg = config(
      {
        format: 'csv',
        path: file,
        testPath: file,
        textColumn: 'review',
        labelColumn: 'stars',
        numClasses: 2,
        maxTokens: 12,
      },
      { path: modelDir },
      1,
    );
    expect(loadTrainSchema(cfg)).to.deep.equal({ featureShape: [12], numClasses: 2 });
    const ds = loadTrainSet(cfg);
    expect(ds.size).to.equal(3);
    expect(Array.from(ds.labels)).to.deep.equal([1, 0, 1]);
    const row = (r: number) => Array.from(ds.features.subarray(r * 12, (r + 1) * 12));
    expect(row(1)).to.deep.equal([101, 2919, 2200, 2919, 102, 0, 0, 0, 0, 0, 0, 0]);
    // A literal [PAD] in the text becomes [UNK]: the model reads padding as ids = pad id.
    expect(row(2).slice(0, 6)).to.deep.equal([101, 1037, 100, 19204, 102, 0]);
    const jsonl = path.join(dir, 'reviews.jsonl');
    fs.writeFileSync(jsonl, '{"t":"bad\\nvery bad","y":0}\n\n{"t":"fine","y":1}\n');
    const j = loadTrainSet(
      config(
        { format: 'jsonl', path: jsonl, textColumn: 't', labelColumn: 'y', numClasses: 2, maxTokens: 12 },
        { path: modelDir },
        1,
      ),
    );
    expect(Array.from(j.features.subarray(0, 12))).to.deep.equal(row(1));
    expect(j.size).to.equal(2);
  });

  it('bad text data is refused naming the file, line and column, never a value', () => {
    const file = path.join(dir, 'bad.csv');
    fs.writeFileSync(file, 'text,label\n"secret words",0\n"private words",7\n');
    const cfg = config(
      { format: 'csv', path: file, textColumn: 'text', numClasses: 2 },
      { path: modelDir },
      1,
    );
    const e = thrown(() => loadTrainSet(cfg));
    expect(e).to.be.instanceOf(DatasetError);
    expect(e.message).to.equal(`${file}:3: 'label' is not a class index in [0, 2) (the value is not shown)`);
    const noCol = config(
      { format: 'csv', path: file, textColumn: 'body', numClasses: 2 },
      { path: modelDir },
      1,
    );
    expect(thrown(() => loadTrainSchema(noCol)).message).to.equal(
      `${file}:1: no column named 'body' in the header; set dataset.textColumn`,
    );
    const unclosed = thrown(() => parseTextCsv('text,label\n"secret, words,0\n', 'u.csv'));
    expect(unclosed.message).to.match(/^u\.csv:\d+: not valid CSV \(CSV_QUOTE_NOT_CLOSED;/);
    expect(unclosed.message).to.not.include('secret');
    const noClasses = config({ format: 'csv', path: file, textColumn: 'text' }, { path: modelDir }, 1);
    expect(thrown(() => loadTrainSchema(noClasses)).message).to.include(
      'dataset.numClasses is required for csv',
    );
  });

  it('a text preset needs format csv', () => {
    expect(() => config({ format: 'jsonl', preset: 'imdb' }, { preset: 'all-minilm-l6-v2' })).to.throw(
      "config field 'dataset.format': must be 'csv' with preset 'imdb'",
    );
  });
});
