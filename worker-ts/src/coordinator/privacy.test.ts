import {
  PldAccountant,
  RdpAccountant,
  calibrateNoiseMultiplier,
  gaussianEvent,
  poissonSampledEvent,
} from '@tensorguard/dp';
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PrivacyLedger, type LedgerEntry } from './ledger.js';
import { JobAccountant } from './privacy.js';

describe('coordinator/privacy', () => {
  it("equals dp's RdpAccountant / PldAccountant on the same rounds", () => {
    for (const kind of ['rdp', 'pld'] as const) {
      const a = new JobAccountant({ kind, delta: 1e-5, shardCount: 3 });
      for (let r = 1; r <= 200; r++)
        a.record({ round: r, samplingRate: 0.02, noiseMultiplier: 1.1, survivors: 3 });
      const ref = (kind === 'rdp' ? new RdpAccountant() : new PldAccountant()).compose(
        poissonSampledEvent(0.02, gaussianEvent(1.1)),
        200,
      );
      expect(a.epsilon()).to.be.closeTo(ref.epsilon(1e-5), 1e-9 * ref.epsilon(1e-5));
    }
  });

  it('never counts a round twice', () => {
    const a = new JobAccountant({ kind: 'rdp', delta: 1e-5, shardCount: 2 });
    const e = { round: 3, samplingRate: 0.1, noiseMultiplier: 1, survivors: 2 };
    expect(a.record(e)).to.equal(true);
    const eps = a.epsilon();
    expect(a.record(e)).to.equal(false);
    expect(a.epsilon()).to.equal(eps);
    expect(a.roundCount).to.equal(1);
  });

  it('accounts per shard: the job ε is the worst shard, a shard left out of a round is not charged', () => {
    const a = new JobAccountant({ kind: 'rdp', delta: 1e-5, shardCount: 2 });
    a.record({ round: 1, samplingRate: 0.1, noiseMultiplier: 1, survivors: 2, shards: [0, 1] });
    const one = a.epsilon();
    a.record({ round: 2, samplingRate: 0.1, noiseMultiplier: 1, survivors: 1, shards: [1] });
    expect(a.epsilon()).to.be.above(one);
    const b = new JobAccountant({ kind: 'rdp', delta: 1e-5, shardCount: 2 });
    b.record({ round: 1, samplingRate: 0.1, noiseMultiplier: 1, survivors: 2, shards: [0, 1] });
    b.record({ round: 2, samplingRate: 0.1, noiseMultiplier: 1, survivors: 2, shards: [0, 1] });
    expect(a.epsilon()).to.equal(b.epsilon());
  });

  it('epsilonAfter predicts the next record exactly (the budget check), for both accountants', () => {
    for (const kind of ['rdp', 'pld'] as const) {
      const a = new JobAccountant({ kind, delta: 1e-5, shardCount: 2 });
      a.record({ round: 1, samplingRate: 0.05, noiseMultiplier: 1.3, survivors: 2 });
      const next = { samplingRate: 0.05, noiseMultiplier: 0.9, survivors: 1, shards: [0] };
      const predicted = a.epsilonAfter(next);
      a.record({ round: 2, ...next });
      expect(a.epsilon()).to.equal(predicted);
    }
  });

  it("a job of calibrated σ with t survivors every round reaches dp's calibration target without passing it", () => {
    for (const kind of ['rdp', 'pld'] as const) {
      const setting = { samplingRate: 0.01, steps: 300, delta: 1e-5, targetEpsilon: 1.5, accountant: kind };
      const sigma = calibrateNoiseMultiplier(setting);
      const a = new JobAccountant({ kind, delta: 1e-5, shardCount: 4 });
      for (let r = 1; r <= 300; r++)
        a.record({ round: r, samplingRate: 0.01, noiseMultiplier: sigma, survivors: 2 });
      expect(a.epsilon()).to.be.at.most(1.5);
      expect(a.epsilon()).to.be.above(1.5 * 0.999);
    }
  });

  it('a round without noise (σ = 0) makes ε infinite, and is still recorded once', () => {
    for (const kind of ['rdp', 'pld'] as const) {
      const a = new JobAccountant({ kind, delta: 1e-5, shardCount: 2 });
      expect(a.epsilonAfter({ samplingRate: 1, noiseMultiplier: 0, survivors: 2 })).to.equal(Infinity);
      expect(a.record({ round: 1, samplingRate: 1, noiseMultiplier: 0, survivors: 2 })).to.equal(true);
      expect(a.record({ round: 1, samplingRate: 1, noiseMultiplier: 0, survivors: 2 })).to.equal(false);
      expect(a.epsilon()).to.equal(Infinity);
      expect(a.roundCount).to.equal(1);
    }
  });

  it('the ledger counts a torn last line as released (never drops it) and refuses other damage', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-')), 'l.jsonl');
    const e: LedgerEntry = {
      round: 1,
      samplingRate: 0.1,
      noiseMultiplier: 1,
      survivors: 2,
      quorum: 2,
      configuredNoiseMultiplier: 1,
      time: 't',
    };
    const l = new PrivacyLedger(file, (round) => ({ ...e, round }));
    l.append(e);
    fs.appendFileSync(file, '{"round":2,"sampl');
    expect(l.read().map((x) => x.round)).to.deep.equal([1, 2]);
    l.repair();
    l.append({ ...e, round: 3 });
    expect(l.read().map((x) => x.round)).to.deep.equal([1, 2, 3]);
    fs.writeFileSync(file, 'garbage\n' + JSON.stringify(e) + '\n');
    expect(() => l.read()).to.throw(/l\.jsonl:1: damaged privacy ledger entry/);
  });
});
