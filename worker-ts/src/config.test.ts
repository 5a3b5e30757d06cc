import { expect } from 'chai';
import { ConfigError, parseRunConfig } from './config.js';

const base = () => ({
  name: 't',
  model: { kind: 'mlp' },
  dataset: { format: 'idx', preset: 'fashion-mnist' },
  workers: { count: 3 },
  privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 0.1 },
  secureAggregation: { mode: 'masking', threshold: 2 } as Record<string, unknown>,
  optimizer: { kind: 'sgd', learningRate: 0.1 },
  rounds: 1,
  evaluation: { everyRounds: 1 },
  checkpoint: { dir: '/tmp/x', everyRounds: 1 },
  envelope: { maxTrainableParameters: 10, maxUpdateBytes: 10 },
  roundTimeoutMs: 1000,
});

describe('parseRunConfig: secureAggregation', () => {
  it("accepts mode 'he' with a threshold ≥ 2 and an optional key holder address", () => {
    const c = base();
    c.secureAggregation = { mode: 'he', threshold: 2 };
    expect(parseRunConfig(c).secureAggregation.mode).to.equal('he');
    c.secureAggregation = { mode: 'he', threshold: 3, keyHolder: '10.0.0.7:5000' };
    expect(parseRunConfig(c).secureAggregation.keyHolder).to.equal('10.0.0.7:5000');
    c.secureAggregation = { mode: 'he', threshold: 3, keyHolder: '[::1]:5000' };
    expect(parseRunConfig(c).secureAggregation.keyHolder).to.equal('[::1]:5000');
  });

  it('names the field for what HE mode cannot do', () => {
    const c = base();
    c.secureAggregation = { mode: 'he', threshold: 1 };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      "config field 'secureAggregation.threshold': must be ≥ 2 with mode 'he': the key holder never decrypts a single worker's ciphertext",
    );
    c.secureAggregation = { mode: 'he', threshold: 2, keyHolder: 'localhost' };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      'config field \'secureAggregation.keyHolder\': must be HOST:PORT of a running key holder, got "localhost"',
    );
    c.secureAggregation = { mode: 'masking', threshold: 2, keyHolder: 'localhost:1' };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      "config field 'secureAggregation.keyHolder': applies to mode 'he' only; remove it or set mode 'he'",
    );
  });
});
