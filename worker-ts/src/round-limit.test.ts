import { distributedDiscreteGaussianEvent, poissonSampledEvent } from '@tensorguard/dp';
import { expect } from 'chai';
import { roundPrivacy } from './announcement.js';
import { parseRunConfig, type RunConfig } from './config.js';
import { JobAccountant } from './coordinator/privacy.js';
import { roundLimit, RoundLimitError } from './round-limit.js';

const config = (privacy: Record<string, unknown>, rounds = 200): RunConfig =>
  parseRunConfig({
    name: 't',
    model: { kind: 'mlp' },
    dataset: { format: 'idx', preset: 'fashion-mnist' },
    workers: { count: 4 },
    privacy: {
      clipNorm: 1,
      noiseMultiplier: 1.1,
      delta: 1e-5,
      epsilonBudget: null,
      samplingRate: 0.02,
      ...privacy,
    },
    secureAggregation: { mode: 'masking', threshold: 3 },
    optimizer: { kind: 'sgd', learningRate: 0.1 },
    rounds,
    evaluation: { everyRounds: 1 },
    checkpoint: { dir: '/tmp/x', everyRounds: 1 },
    envelope: { maxTrainableParameters: 1e6, maxUpdateBytes: 1e8 },
    roundTimeoutMs: 1000,
  });
const d = 10_000;

describe('round-limit', () => {
  it('without a budget, the limit is the job’s rounds', () => {
    expect(roundLimit(config({}), d)).to.deep.equal({ rounds: 200, source: 'rounds = 200' });
  });

  it('with a budget, the most rounds the coordinator itself could release within it (t − c honest shares each)', () => {
    for (const colluders of [0, 1]) {
      const cfg = config({ epsilonBudget: 1, colluders });
      const limit = roundLimit(cfg, d);
      expect(limit.rounds).to.be.above(0).and.below(200);
      expect(limit.source).to.contain('privacy.epsilonBudget 1 at δ = 0.00001');
      expect(limit.source).to.contain(`with ${3 - colluders} honest shares each`);
      // The coordinator's ledger for rounds with exactly t survivors, c of them colluding: the
      // limit fits the budget and one more round would not.
      const p = roundPrivacy(cfg, d, 4);
      const event = poissonSampledEvent(
        0.02,
        distributedDiscreteGaussianEvent({
          l2ClipNorm: 1,
          granularity: 1 / p.scale,
          dimension: d,
          localStddev: p.shareStd,
          contributors: 3 - colluders,
        }),
      );
      const a = new JobAccountant({ kind: 'rdp', delta: 1e-5, shardCount: 4 });
      const record = (round: number) =>
        a.record({ round, samplingRate: 0.02, noiseMultiplier: 1.1, survivors: 3, integerEvent: event });
      for (let r = 1; r <= limit.rounds; r++) record(r);
      expect(a.epsilon()).to.be.at.most(1);
      record(limit.rounds + 1);
      expect(a.epsilon()).to.be.above(1);
    }
    // A budget the job's rounds fit in leaves the rounds as the limit.
    expect(roundLimit(config({ epsilonBudget: 50 }, 20), d)).to.deep.equal({
      rounds: 20,
      source: 'rounds = 20',
    });
  });

  it('a budget with no noise allows no round', () => {
    expect(roundLimit(config({ epsilonBudget: 1, noiseMultiplier: 0 }), d).rounds).to.equal(0);
  });

  it('the refusal names the round, the count and the limit', () => {
    const err = new RoundLimitError(6, 5, { rounds: 5, source: 'rounds = 5' });
    expect(err.message).to.match(
      /^round 6 refused: this worker has contributed to 5 rounds, the most its job config allows \(rounds = 5\); the coordinator asked for more/,
    );
  });
});
