import { expect } from 'chai';
import fc from 'fast-check';
import { RdpAccountant } from './accountant.js';
import {
  DistributedAccountant,
  realizedNoiseMultiplier,
  type RoundRelease,
} from './distributed-accountant.js';
import { BudgetExceededError, InvalidArgumentError } from './errors.js';
import { gaussianEvent, poissonSampledEvent } from './mechanisms.js';

// Few distinct (q, σ) values keep the RDP curve cache hot, so 100 runs stay fast.
const rate = fc.constantFrom(0.005, 0.01, 0.02, 0.05);
const sigma = fc.constantFrom(0.9, 1.1, 1.5, 2.5);
const shardIds = ['a', 'b', 'c', 'd'];
const roundArb = fc
  .subarray(shardIds, { minLength: 1 })
  .chain((ids) =>
    fc.tuple(
      ...ids.map((id) => fc.record({ shard: fc.constant(id), samplingRate: rate, noiseMultiplier: sigma })),
    ),
  );

describe('DistributedAccountant', () => {
  it('job ε is the maximum over shards, each shard an RDP ledger of its own rounds', () => {
    fc.assert(
      fc.property(fc.array(roundArb, { minLength: 1, maxLength: 12 }), (rounds) => {
        const acc = new DistributedAccountant({ epsilonBudget: 1e9, delta: 1e-5 });
        const own = new Map<string, RdpAccountant>();
        rounds.forEach((shards, round) => {
          acc.recordRound({ round, shards });
          for (const s of shards) {
            const r = own.get(s.shard) ?? new RdpAccountant();
            own.set(
              s.shard,
              r.compose(poissonSampledEvent(s.samplingRate, gaussianEvent(s.noiseMultiplier))),
            );
          }
        });
        let max = 0;
        for (const [id, r] of own) {
          const e = r.epsilon(1e-5);
          expect(acc.shardEpsilon(id)).to.be.closeTo(e, 1e-9 * e);
          max = Math.max(max, e);
        }
        expect(acc.epsilon()).to.be.closeTo(max, 1e-9 * max);
      }),
      { numRuns: 25 },
    );
  });

  it('dropouts lower the realized noise and so raise ε', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 20 }), fc.integer({ min: 1, max: 19 }), (n, drop) => {
        fc.pre(drop < n);
        const t = Math.max(1, Math.floor(n / 2));
        const full = realizedNoiseMultiplier(1.2, n, t);
        const fewer = realizedNoiseMultiplier(1.2, n - drop, t);
        expect(fewer).to.be.lessThan(full);
        const eps = (s: number): number => {
          const a = new DistributedAccountant({ epsilonBudget: 1e9, delta: 1e-5 });
          a.recordRound({ round: 0, shards: [{ shard: 'w', samplingRate: 0.01, noiseMultiplier: s }] });
          return a.epsilon();
        };
        expect(eps(fewer)).to.be.greaterThan(eps(full));
      }),
      { numRuns: 25 },
    );
  });

  it('never overspends: refused rounds record nothing and recorded ε stays within budget', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.2, max: 3, noNaN: true }),
        fc.array(roundArb, { minLength: 1, maxLength: 40 }),
        (budget, rounds) => {
          const acc = new DistributedAccountant({ epsilonBudget: budget, delta: 1e-5 });
          let round = 0;
          for (const shards of rounds) {
            const next: RoundRelease = { round, shards };
            const before = JSON.stringify(acc);
            const would = acc.wouldExceed(next);
            try {
              acc.recordRound(next);
              expect(would).to.equal(false);
              round++;
            } catch (err) {
              expect(err).to.be.instanceOf(BudgetExceededError);
              const e = err as BudgetExceededError;
              expect(would).to.equal(true);
              expect(e.epsilon).to.be.greaterThan(budget);
              expect([e.budget, e.round, e.delta]).to.deep.equal([budget, round, 1e-5]);
              expect(JSON.stringify(acc)).to.equal(before);
            }
            expect(acc.epsilon()).to.be.at.most(budget);
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('JSON round trip is exact and the restored ledger continues identically', () => {
    fc.assert(
      fc.property(fc.array(roundArb, { minLength: 1, maxLength: 10 }), roundArb, (rounds, next) => {
        const acc = new DistributedAccountant({ epsilonBudget: 50, delta: 1e-6, conversion: 'classic' });
        rounds.forEach((shards, round) => {
          if (!acc.wouldExceed({ round, shards })) acc.recordRound({ round, shards });
        });
        const json = JSON.stringify(acc);
        const back = DistributedAccountant.fromJSON(JSON.parse(json));
        expect(JSON.stringify(back)).to.equal(json);
        expect(back.epsilon()).to.equal(acc.epsilon());
        const r = (acc.lastRound ?? -1) + 1;
        expect(back.epsilonAfter({ round: r, shards: next })).to.deep.equal(
          acc.epsilonAfter({ round: r, shards: next }),
        );
      }),
      { numRuns: 40 },
    );
  });

  it('checkNextRound throws BudgetExceededError with the fields and a message saying what to do', () => {
    const acc = new DistributedAccountant({ epsilonBudget: 0.5, delta: 1e-5 });
    const next = { round: 3, shards: [{ shard: 'w0', samplingRate: 1, noiseMultiplier: 1 }] };
    expect(() => acc.checkNextRound(next))
      .to.throw(
        BudgetExceededError,
        /^round 3 refused: ε would reach [\d.]+ at δ=0.00001 on shard "w0", over the budget ε=0.5; stop training here/,
      )
      .with.property('shard', 'w0');
  });

  it('refuses replayed or duplicate rounds', () => {
    const acc = new DistributedAccountant({ epsilonBudget: 10, delta: 1e-5 });
    const shards = [{ shard: 'a', samplingRate: 0.01, noiseMultiplier: 1 }];
    acc.recordRound({ round: 5, shards });
    expect(() => acc.recordRound({ round: 5, shards })).to.throw(
      InvalidArgumentError,
      'round 5 is not after the last recorded round 5; each round is recorded once',
    );
    expect(() => acc.recordRound({ round: 6, shards: [...shards, ...shards] })).to.throw(
      'shard "a" appears twice in round 6',
    );
  });
});
