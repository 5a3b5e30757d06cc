import { expect } from 'chai';
import { erfc, logBinomial, logErfc, logGamma } from './special-functions.js';

// Values from scipy.special 1.x (gammaln, erfc, log_ndtr), printed with repr.
const GAMMALN: [number, number][] = [
  [0.1, 2.252712651734206],
  [0.5, 0.5723649429247],
  [1, 0.0],
  [2.5, 0.2846828704729192],
  [7.3, 7.147892523022249],
  [15, 25.191221182738683],
  [100.5, 361.43554046777757],
  [1025, 6078.211884750051],
  [-0.5, 1.2655121234846454],
  [-2.7, -0.0714070853156458],
  [-998.5, -5900.622190808887],
];
const ERFC: [number, number][] = [
  [-3, 1.9999779095030015],
  [-0.5, 1.5204998778130465],
  [0, 1.0],
  [0.3, 0.6713732405408726],
  [1.5, 0.03389485352468927],
  [1.99, 0.004888586800383002],
  [2.01, 0.004475150644751764],
  [3, 2.2090496998585445e-5],
  [6, 2.1519736712498913e-17],
  [10, 2.0884875837625446e-45],
  [26, 5.663192408856145e-296],
];
const LOG_ERFC: [number, number][] = [
  [5, -27.200889545537446],
  [20, -403.5693433341044],
  [50, -2504.484587848452],
  [300, -90006.27615297309],
];

describe('special functions', () => {
  it('logGamma matches scipy gammaln, including negative non-integers', () => {
    for (const [x, want] of GAMMALN) {
      expect(logGamma(x), `gammaln(${x})`).to.be.closeTo(want, 1e-13 * Math.max(1, Math.abs(want)));
    }
    expect(logGamma(-3)).to.equal(Infinity);
  });

  it('erfc has small relative error across the range, including the deep tail', () => {
    for (const [x, want] of ERFC) {
      expect(Math.abs(erfc(x) - want) / want, `erfc(${x})`).to.be.below(1e-13);
    }
  });

  it('logErfc stays accurate where erfc underflows', () => {
    for (const [x, want] of LOG_ERFC) expect(logErfc(x)).to.be.closeTo(want, 1e-12 * Math.abs(want));
  });

  it('logBinomial agrees with exact binomials', () => {
    expect(Math.exp(logBinomial(10, 3))).to.be.closeTo(120, 1e-10);
    expect(Math.exp(logBinomial(60, 30))).to.be.closeTo(118264581564861424, 118264581564861424 * 1e-12);
  });
});
