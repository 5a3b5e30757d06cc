import { expect } from 'chai';
import { calibrateNoiseMultiplier, computeEpsilon, maxStepsForBudget } from './calibration.js';
import { InvalidArgumentError } from './errors.js';

describe('calibration', () => {
  it('calibrateNoiseMultiplier meets the target from below, tightly, for both accountants', () => {
    for (const accountant of ['rdp', 'pld'] as const) {
      const setting = { samplingRate: 0.02, steps: 200, delta: 1e-5, accountant, discretization: 1e-3 };
      const sigma = calibrateNoiseMultiplier({ ...setting, targetEpsilon: 1.5 });
      expect(computeEpsilon({ ...setting, noiseMultiplier: sigma })).to.be.at.most(1.5);
      expect(computeEpsilon({ ...setting, noiseMultiplier: sigma * (1 - 1e-3) })).to.be.greaterThan(1.5);
    }
  });

  it("mechanism 'integer' calibrates on the integer mechanism's rigorous bound, which sits just above the Gaussian's", () => {
    const setting = { samplingRate: 512 / 20_000, steps: 150, delta: 1e-5 };
    const sigma = calibrateNoiseMultiplier({ ...setting, mechanism: 'integer', targetEpsilon: 3 });
    const rigorous = computeEpsilon({ ...setting, mechanism: 'integer', noiseMultiplier: sigma });
    expect(rigorous).to.be.at.most(3);
    expect(rigorous).to.be.above(3 * 0.999);
    const gaussian = computeEpsilon({ ...setting, noiseMultiplier: sigma });
    expect(rigorous).to.be.at.least(gaussian);
    expect(rigorous / gaussian).to.be.below(1.02);
    // 'integer' is RDP whatever the accountant: no PLD of the integer mechanism is proven.
    expect(
      computeEpsilon({ ...setting, mechanism: 'integer', accountant: 'pld', noiseMultiplier: sigma }),
    ).to.equal(rigorous);
  });

  it('maxStepsForBudget is the largest step count within the budget', () => {
    const o = { epsilonBudget: 3, delta: 1e-5, samplingRate: 256 / 60000, noiseMultiplier: 1.1 };
    const t = maxStepsForBudget(o);
    const eps = (steps: number): number => computeEpsilon({ ...o, steps });
    expect(eps(t)).to.be.at.most(3);
    expect(eps(t + 1)).to.be.greaterThan(3);
    expect(maxStepsForBudget({ ...o, epsilonBudget: 1e-6 })).to.equal(0);
  });

  it('names the bad field', () => {
    expect(() =>
      calibrateNoiseMultiplier({ samplingRate: 0.1, steps: 0, delta: 1e-5, targetEpsilon: 1 }),
    ).to.throw(InvalidArgumentError, 'steps must be an integer >= 1, got 0');
  });
});
