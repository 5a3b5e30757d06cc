import { expect } from 'chai';
import { FULL, IMDB_PUBLIC_INIT, QUICK, steps, trainRecords, withOverrides } from './settings.js';

describe('finetune settings', () => {
  it('applies --flag=value overrides and leaves the rest as they were', () => {
    const s = withOverrides(QUICK, [
      '--quick',
      '--lr=0.03',
      '--batch=128',
      '--train-examples=1024',
      '--optimizer=sgd',
      '--schedule=cosine',
      '--warmup=0',
    ]);
    expect(s.schedule).to.equal('cosine');
    expect(s.warmupSteps).to.equal(0);
    expect(s.learningRate).to.equal(0.03);
    expect(withOverrides(QUICK, ['--nonprivate-lr=0.001']).nonprivateLearningRate).to.equal(0.001);
    expect(s.batch).to.equal(128);
    expect(s.optimizer).to.equal('sgd');
    expect(trainRecords(s)).to.equal(1024);
    expect(steps(s)).to.equal(Math.round((s.epochs * 1024) / 128));
    expect(s.clipNorm).to.equal(QUICK.clipNorm);
    expect(QUICK.learningRate).to.not.equal(0.03);
  });

  it('refuses a value that is not valid, naming the flag', () => {
    expect(() => withOverrides(FULL, ['--batch=12.5'])).to.throw(/--batch takes a positive integer/);
    expect(() => withOverrides(FULL, ['--lr=-1'])).to.throw(/--lr takes a positive number/);
    expect(() => withOverrides(FULL, ['--lr='])).to.throw(/--lr takes a positive number/);
    expect(() => withOverrides(FULL, ['--optimizer=lamb'])).to.throw(/adam or sgd/);
    expect(() => withOverrides(FULL, ['--schedule=step'])).to.throw(/constant, linear or cosine/);
    expect(() => withOverrides(FULL, ['--warmup=-2'])).to.throw(/--warmup takes a non-negative integer/);
    expect(() => withOverrides(FULL, ['--ema=1'])).to.throw(/--ema takes a number in \[0, 1\) \(0: off\)/);
    expect(withOverrides(FULL, ['--ema=0']).emaDecay).to.equal(undefined);
    expect(withOverrides(FULL, ['--ema=0.9']).emaDecay).to.equal(0.9);
  });

  it('--public=none runs without public pretraining, --public=imdb and --public-examples= with it', () => {
    expect(withOverrides(FULL, ['--public=none']).publicInit).to.equal(undefined);
    const s = withOverrides({ ...FULL, publicInit: undefined }, ['--public=imdb', '--public-examples=2000']);
    expect(s.publicInit).to.deep.equal({ ...IMDB_PUBLIC_INIT, trainExamples: 2000 });
    expect(() => withOverrides(FULL, ['--public=wiki'])).to.throw(/--public takes none or imdb/);
    expect(() => withOverrides(FULL, ['--public-examples=0'])).to.throw(
      /--public-examples takes a positive integer/,
    );
  });

  it('caps the training records at the split', () => {
    expect(trainRecords(withOverrides(FULL, ['--train-examples=100000']))).to.equal(6832);
  });
});
