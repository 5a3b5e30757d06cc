import { expect } from 'chai';
import { clippingLanes, ConfigError, parseRunConfig } from './config.js';

const base = () => ({
  name: 't',
  model: { kind: 'mlp' },
  dataset: { format: 'idx', preset: 'fashion-mnist' },
  workers: { count: 3 } as Record<string, unknown>,
  privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 0.1 },
  secureAggregation: { mode: 'masking', quorum: 2 } as Record<string, unknown>,
  optimizer: { kind: 'sgd', learningRate: 0.1 },
  rounds: 1,
  evaluation: { everyRounds: 1 },
  checkpoint: { dir: '/tmp/x', everyRounds: 1 },
  envelope: { maxTrainableParameters: 10, maxUpdateBytes: 10 },
  roundTimeoutMs: 1000,
});

describe('parseRunConfig: secureAggregation', () => {
  it("accepts mode 'he' with a quorum ≥ 2 and an optional key holder address", () => {
    const c = base();
    c.secureAggregation = { mode: 'he', quorum: 2 };
    expect(parseRunConfig(c).secureAggregation.mode).to.equal('he');
    c.secureAggregation = { mode: 'he', quorum: 3, keyHolder: '10.0.0.7:5000' };
    expect(parseRunConfig(c).secureAggregation.keyHolder).to.equal('10.0.0.7:5000');
    c.secureAggregation = { mode: 'he', quorum: 3, keyHolder: '[::1]:5000' };
    expect(parseRunConfig(c).secureAggregation.keyHolder).to.equal('[::1]:5000');
  });

  it('names the field for what HE mode cannot do', () => {
    const c = base();
    c.secureAggregation = { mode: 'he', quorum: 1 };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      "config field 'secureAggregation.quorum': must be ≥ 2 with mode 'he': the key holder never decrypts a single worker's ciphertext",
    );
    c.secureAggregation = { mode: 'he', quorum: 2, keyHolder: 'localhost' };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      'config field \'secureAggregation.keyHolder\': must be HOST:PORT of a running key holder, got "localhost"',
    );
    c.secureAggregation = { mode: 'masking', quorum: 2, keyHolder: 'localhost:1' };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      "config field 'secureAggregation.keyHolder': applies to mode 'he' only; remove it or set mode 'he'",
    );
  });
});

describe('parseRunConfig: workers.lanes', () => {
  it('takes lanes up to the whole CPUs of the bundle; each lane gets an equal share of threads', () => {
    const c = base();
    expect(clippingLanes(parseRunConfig(c).workers)).to.deep.equal({ count: 1, threadsPerLane: 1 });
    c.workers = { count: 3, cpusPerWorker: 4.5, lanes: 4 };
    expect(clippingLanes(parseRunConfig(c).workers)).to.deep.equal({ count: 4, threadsPerLane: 1 });
    c.workers = { count: 3, cpusPerWorker: 5, lanes: 2 };
    expect(clippingLanes(parseRunConfig(c).workers)).to.deep.equal({ count: 2, threadsPerLane: 2 });
    c.workers = { count: 3, cpusPerWorker: 0.5, lanes: 1 };
    expect(clippingLanes(parseRunConfig(c).workers)).to.deep.equal({ count: 1, threadsPerLane: 1 });
  });

  it('names the field for no lanes, fractional lanes, or more lanes than the thread budget', () => {
    const c = base();
    c.workers = { count: 3, lanes: 0 };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      "config field 'workers.lanes': must be an integer ≥ 1 and ≤ 256, got 0",
    );
    c.workers = { count: 3, cpusPerWorker: 2, lanes: 1.5 };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      "config field 'workers.lanes': must be an integer ≥ 1 and ≤ 256, got 1.5",
    );
    c.workers = { count: 3, cpusPerWorker: 2.9, lanes: 3 };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      "config field 'workers.lanes': 3 exceeds the worker's thread budget max(1, floor(workers.cpusPerWorker)) = 2: lower workers.lanes or raise workers.cpusPerWorker",
    );
    c.workers = { count: 3, lanes: 2 }; // cpusPerWorker defaults to 1
    expect(() => parseRunConfig(c)).to.throw(ConfigError, "'workers.lanes': 2 exceeds");
    c.workers = { count: 3, cpusPerWorker: 0, lanes: 1 };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      "config field 'workers.cpusPerWorker': must be a number > 0, got 0",
    );
  });
});

describe('parseRunConfig: privacy.colluders', () => {
  it('defaults to 0 and must stay below the quorum', () => {
    expect(parseRunConfig(base()).privacy.colluders).to.equal(0);
    const c = base() as ReturnType<typeof base> & { privacy: Record<string, unknown> };
    c.privacy = { ...c.privacy, colluders: 2 };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      "config field 'privacy.colluders': 2 colluders need secureAggregation.quorum above them (it is 2): a quorum must hold an honest worker's noise",
    );
    c.privacy = { ...c.privacy, colluders: 1 };
    expect(parseRunConfig(c).privacy.colluders).to.equal(1);
  });
});

describe('parseRunConfig: testingSamplingSeed', () => {
  it('is refused in a job config: a known seed would make the private batches predictable', () => {
    const c = { ...base(), testingSamplingSeed: 'abc' };
    expect(() => parseRunConfig(c)).to.throw(
      ConfigError,
      "config field 'testingSamplingSeed': is not accepted in a job config: the sampling must be secret; remove the field",
    );
  });
});
