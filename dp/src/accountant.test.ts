import { expect } from 'chai';
import { PldAccountant, RdpAccountant, accountantFromJSON } from './accountant.js';
import { InvalidArgumentError, InvalidStateError, UnsupportedEventError } from './errors.js';
import {
  composedEvent,
  distributedDiscreteGaussianEvent,
  dpEventFromJSON,
  effectiveNoiseMultiplier,
  gaussianEvent,
  noOpEvent,
  nonPrivateEvent,
  poissonSampledEvent,
  roundedL2NormBound,
  sampledWithoutReplacementEvent,
  selfComposedEvent,
  skellamEvent,
} from './mechanisms.js';

const sgd = poissonSampledEvent(0.01, gaussianEvent(1.1));

describe('events', () => {
  it('are frozen values, and nested Gaussians reduce to one effective noise multiplier', () => {
    expect(Object.isFrozen(sgd)).to.equal(true);
    expect(() => {
      (sgd as { samplingRate: number }).samplingRate = 0.5;
    }).to.throw(TypeError);
    const nested = composedEvent([gaussianEvent(1), selfComposedEvent(gaussianEvent(2), 4)]);
    expect(effectiveNoiseMultiplier(nested)).to.be.closeTo(1 / Math.sqrt(2), 1e-15);
  });

  it('refuse out-of-range fields, naming them', () => {
    expect(() => poissonSampledEvent(1.5, gaussianEvent(1))).to.throw(
      InvalidArgumentError,
      'samplingRate must be a number in [0, 1], got 1.5',
    );
    expect(() => gaussianEvent(-1)).to.throw('noiseMultiplier must be a finite number >= 0, got -1');
    expect(() => sampledWithoutReplacementEvent(10, 11, gaussianEvent(1))).to.throw(
      'sampleSize (11) must not exceed sourceSize (10)',
    );
  });

  it('round-trip through JSON, and a bad one names its path', () => {
    const e = selfComposedEvent(composedEvent([sgd, noOpEvent()]), 7);
    expect(dpEventFromJSON(JSON.parse(JSON.stringify(e)))).to.deep.equal(e);
    expect(() =>
      dpEventFromJSON({
        kind: 'self-composed',
        count: 2,
        event: { kind: 'poisson-sampled', samplingRate: 2, event: { kind: 'gaussian', noiseMultiplier: 1 } },
      }),
    ).to.throw(InvalidStateError, 'event.event: samplingRate must be a number in [0, 1], got 2');
    expect(() => dpEventFromJSON({ kind: 'laplace' })).to.throw(
      InvalidStateError,
      'event.kind: expected one of',
    );
  });
});

describe('RdpAccountant', () => {
  it('self-composition multiplies the curve: count = k equals k separate compositions', () => {
    const a = new RdpAccountant().compose(sgd, 5);
    const b = new RdpAccountant();
    for (let i = 0; i < 5; i++) b.compose(sgd);
    a.rdp.forEach((r, i) => expect(r).to.be.closeTo(b.rdp[i]!, 1e-12 * r));
    const c = new RdpAccountant().compose(selfComposedEvent(sgd, 5));
    expect(c.rdp).to.deep.equal(a.rdp);
  });

  it('composing many distinct events, repeated and interleaved, adds exactly their curves (the per-event cache)', () => {
    // Twelve events, more than the accountant keeps curves for, composed round-robin three times.
    const events = Array.from({ length: 12 }, (_, k) =>
      poissonSampledEvent(0.001 * (k + 1), gaussianEvent(0.8 + 0.1 * k)),
    );
    const acc = new RdpAccountant();
    for (let pass = 0; pass < 3; pass++) for (const e of events) acc.compose(e);
    const fresh = new RdpAccountant();
    const expected = fresh.orders.map((_, i) => 3 * events.reduce((s, e) => s + fresh.rdpOf(e)[i]!, 0));
    acc.rdp.forEach((r, i) => expect(r).to.be.closeTo(expected[i]!, 1e-12 * Math.max(1, expected[i]!)));
  });

  it('composes 100,000 steps at once exactly as 100,000 single steps would (speed: bench noise)', () => {
    // The time this takes is measured by `npm run bench -- noise` (accountant_ms_100k_steps),
    // never asserted here.
    const event = poissonSampledEvent(0.00427, gaussianEvent(1.1));
    const once = new RdpAccountant().compose(event, 100_000);
    const stepwise = new RdpAccountant();
    for (let i = 0; i < 1000; i++) stepwise.compose(event, 100);
    once.rdp.forEach((r, i) => expect(r).to.be.closeTo(stepwise.rdp[i]!, 1e-9 * r));
    const eps = once.epsilon(1e-5);
    expect(eps).to.be.greaterThan(5).and.lessThan(20);
    expect(stepwise.epsilon(1e-5)).to.be.closeTo(eps, 1e-9 * eps);
  });

  it('no-op adds nothing, non-private gives ∞, q = 0 gives 0', () => {
    const acc = new RdpAccountant()
      .compose(noOpEvent(), 3)
      .compose(poissonSampledEvent(0, gaussianEvent(1)), 9);
    expect(acc.epsilon(1e-5)).to.equal(0);
    expect(acc.delta(0.1)).to.equal(0);
    acc.compose(nonPrivateEvent());
    expect(acc.epsilon(1e-5)).to.equal(Infinity);
  });

  it('refuses events for the wrong neighbouring relation, unchanged', () => {
    const acc = new RdpAccountant().compose(sgd);
    const before = acc.rdp;
    expect(() => acc.compose(sampledWithoutReplacementEvent(100, 10, gaussianEvent(1)))).to.throw(
      UnsupportedEventError,
      "needs neighboringRelation 'replace-one'",
    );
    expect(acc.rdp).to.deep.equal(before);
    expect(acc.supports(sgd)).to.equal(true);
    expect(new RdpAccountant({ neighboringRelation: 'replace-one' }).supports(sgd)).to.equal(false);
  });

  it('toJSON / fromJSON round trip is exact, Infinity included', () => {
    const acc = new RdpAccountant()
      .compose(sgd, 123)
      .compose(poissonSampledEvent(0.05, gaussianEvent(0.5)), 7);
    const back = RdpAccountant.fromJSON(JSON.parse(JSON.stringify(acc)));
    expect(back.rdp).to.deep.equal(acc.rdp);
    expect(back.epsilon(1e-5)).to.equal(acc.epsilon(1e-5));
    expect(acc.rdp.some((r) => r === Infinity)).to.equal(true); // σ = 0.5 leaves orders unconverged
    expect(accountantFromJSON(JSON.parse(JSON.stringify(acc.toJSON())))).to.be.instanceOf(RdpAccountant);
    expect(() => RdpAccountant.fromJSON({ type: 'rdp', version: 2 })).to.throw(InvalidStateError);
  });

  it('validates δ and ε', () => {
    const acc = new RdpAccountant().compose(sgd);
    expect(() => acc.epsilon(0)).to.throw(InvalidArgumentError, 'delta must be in (0, 1), got 0');
    expect(() => acc.delta(-1)).to.throw(
      InvalidArgumentError,
      'epsilon must be a finite number >= 0, got -1',
    );
    expect(() => acc.compose(sgd, 1.5)).to.throw('count must be an integer >= 0, got 1.5');
  });
});

describe('discrete mechanisms', () => {
  const base = { l2ClipNorm: 1, granularity: 1 / 256, dimension: 1000, localStddev: 100, contributors: 8 };

  it('rounding inflation: β = 0 is c + √d; β > 0 is the tighter KLS21 bound', () => {
    expect(roundedL2NormBound(256, 1000)).to.be.closeTo(256 + Math.sqrt(1000), 1e-12);
    const b = roundedL2NormBound(256, 1000, Math.exp(-0.5));
    expect(b).to.be.closeTo(Math.sqrt(256 * 256 + 250 + 1 * (256 + 0.5 * Math.sqrt(1000))), 1e-9);
    expect(b).to.be.below(256 + Math.sqrt(1000));
  });

  it('distributed discrete Gaussian: fewer contributors (dropouts) means more ε; close to the Gaussian', () => {
    const eps = (contributors: number): number =>
      new RdpAccountant()
        .compose(poissonSampledEvent(0.01, distributedDiscreteGaussianEvent({ ...base, contributors })), 1000)
        .epsilon(1e-5);
    expect(eps(4)).to.be.greaterThan(eps(6)).and.greaterThan(eps(8));
    // Same central noise as a Gaussian with σ = √n·σ_local / Δ2: the discrete bound (the tight
    // symmetric subsampling bound over the KLS21 per-order bound) is never below it and, at a
    // local std of 100 integer units (τ ≈ e^-9869), equal to it up to the integer orders it uses.
    const delta2 = roundedL2NormBound(256, 1000);
    const g = new RdpAccountant()
      .compose(poissonSampledEvent(0.01, gaussianEvent((Math.sqrt(8) * 100) / delta2)), 1000)
      .epsilon(1e-5);
    expect(eps(8)).to.be.at.least(g * (1 - 1e-12));
    expect(eps(8)).to.be.below(g * 1.02);
    const full = new RdpAccountant().compose(distributedDiscreteGaussianEvent(base)).epsilon(1e-5);
    expect(full).to.be.greaterThan(0);
  });

  it('Skellam: accountable, zero contributors is non-private, refused by the PLD accountant', () => {
    const sk = skellamEvent(base);
    expect(new RdpAccountant().compose(poissonSampledEvent(0.01, sk), 100).epsilon(1e-5)).to.be.greaterThan(
      0,
    );
    expect(new RdpAccountant().compose(skellamEvent({ ...base, contributors: 0 })).epsilon(1e-5)).to.equal(
      Infinity,
    );
    expect(() => new PldAccountant().compose(sk)).to.throw(UnsupportedEventError, 'use RdpAccountant');
  });
});

describe('PldAccountant', () => {
  it('is tighter than RDP and its JSON replay reproduces ε bit for bit', () => {
    const e = poissonSampledEvent(0.01, gaussianEvent(1));
    const pld = new PldAccountant({ discretization: 1e-3 }).compose(e, 300).compose(gaussianEvent(20));
    const rdp = new RdpAccountant().compose(e, 300).compose(gaussianEvent(20));
    expect(pld.epsilon(1e-5)).to.be.lessThan(rdp.epsilon(1e-5));
    const back = PldAccountant.fromJSON(JSON.parse(JSON.stringify(pld)));
    expect(back.epsilon(1e-5)).to.equal(pld.epsilon(1e-5));
    expect(back.delta(1)).to.equal(pld.delta(1));
    expect(pld.delta(pld.epsilon(1e-5))).to.be.closeTo(1e-5, 1e-9);
  });

  it('matches the exact Gaussian mechanism (Balle & Wang 2018) for q = 1', () => {
    // δ(ε) of N(0, σ²) at sensitivity 1: Φ(1/(2σ) − εσ) − e^ε Φ(−1/(2σ) − εσ); σ = 2, ε = 1:
    const pld = new PldAccountant().compose(gaussianEvent(2));
    expect(pld.delta(1)).to.be.closeTo(0.006829594983114591, 1e-9); // scipy
  });
});
