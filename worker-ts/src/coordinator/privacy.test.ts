import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PrivacyLedger, type LedgerEntry } from './ledger.js';
import { RdpAccountant, rdpSubsampledGaussian } from './privacy.js';

describe('coordinator/privacy', () => {
  it('matches the closed form at q = 1 (α/(2σ²)) and is far smaller for small q', () => {
    expect(rdpSubsampledGaussian(1, 2, 8)).to.be.closeTo(1, 1e-12);
    expect(rdpSubsampledGaussian(0.01, 2, 8)).to.be.below(rdpSubsampledGaussian(1, 2, 8) * 0.01);
  });
  it('matches dp_accounting on a reference point (q = 0.01, σ = 4, 10⁴ steps, δ = 1e-5: ε ≈ 1.0)', () => {
    const a = new RdpAccountant();
    for (let r = 1; r <= 10_000; r++)
      a.record({ round: r, samplingRate: 0.01, noiseMultiplier: 4, survivors: 1 });
    // dp_accounting RdpAccountant with its default (fractional) orders gives 1.03-1.04 here;
    // integer orders are at least as large.
    expect(a.epsilon(1e-5)).to.be.within(1.0, 1.1);
  });
  it('never counts a round twice', () => {
    const a = new RdpAccountant();
    const e = { round: 3, samplingRate: 0.1, noiseMultiplier: 1, survivors: 2 };
    a.record(e);
    const eps = a.epsilon(1e-5);
    a.record(e);
    expect(a.epsilon(1e-5)).to.equal(eps);
    expect(a.roundCount).to.equal(1);
  });
  it('the ledger drops a torn last line and refuses other damage', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-')), 'l.jsonl');
    const l = new PrivacyLedger(file);
    const e: LedgerEntry = {
      round: 1,
      samplingRate: 0.1,
      noiseMultiplier: 1,
      survivors: 2,
      quorum: 2,
      configuredNoiseMultiplier: 1,
      time: 't',
    };
    l.append(e);
    fs.appendFileSync(file, '{"round":2,"sampl');
    expect(l.read().map((x) => x.round)).to.deep.equal([1]);
    l.repair();
    l.append({ ...e, round: 2 });
    expect(l.read().map((x) => x.round)).to.deep.equal([1, 2]);
    fs.writeFileSync(file, 'garbage\n' + JSON.stringify(e) + '\n');
    expect(() => l.read()).to.throw(/l\.jsonl:1: damaged privacy ledger entry/);
  });
});
