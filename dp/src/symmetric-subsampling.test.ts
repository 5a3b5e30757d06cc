// The tight Poisson-subsampling bound for symmetric shift pairs (rdpPoissonSubsampledSymmetric),
// which makes the integer mechanism's ε a proof without losing utility (docs/privacy.md, "A
// rigorous ε for the integers"). Three checks:
//   1. for the Gaussian it is the exact subsampled RDP (Mironov, Talwar, Zhang 2019);
//   2. on actual distributions (random mirrored pairs, and a sum of discrete Gaussians shifted by
//      an integer), both directions of the subsampled divergence, computed exactly, are within it;
//   3. the lemma behind the add direction, pointwise, including where it is closest to failing;
//   4. at fractional orders (Taylor bound), the same: above the exact subsampled Gaussian RDP and
//      close to it, and above both directions of actual pairs.
import { expect } from 'chai';
import {
  rdpPoissonSubsampledGaussian,
  rdpPoissonSubsampledGaussianSymmetricBound,
  rdpPoissonSubsampledSymmetric,
  rdpPoissonSubsampledSymmetricCurve,
} from './rdp.js';

/** Rényi divergence D_α(P‖Q) of finite distributions, in nats (log-sum-exp for stability). */
function renyi(alpha: number, p: readonly number[], q: readonly number[]): number {
  const terms = p.map((pi, i) => alpha * Math.log(pi) + (1 - alpha) * Math.log(q[i]!));
  const m = Math.max(...terms);
  return (m + Math.log(terms.reduce((a, t) => a + Math.exp(t - m), 0))) / (alpha - 1);
}

/**
 * The subsampled Gaussian's RDP at any order α > 1 by quadrature: log E_{z~N(0,σ²)}[(1 − q +
 * q·e^{(2z−1)/(2σ²)})^α]/(α − 1) (the remove direction, which is the larger one for the Gaussian).
 * dp_accounting's fractional-order series is itself an upper bound, so it is no reference here.
 */
function subsampledGaussianByQuadrature(q: number, sigma: number, alpha: number): number {
  // Sums (1 + u)^α − 1, u = q(L − 1), rather than (1 + u)^α, so that the small result is not lost
  // beside 1; normalised by the quadrature's own mass of the density.
  const h = sigma / 200;
  const lo = -40 * sigma;
  const hi = alpha + 40 * sigma;
  let sum = 0;
  let mass = 0;
  for (let z = lo; z <= hi; z += h) {
    const logW = (-z * z) / (2 * sigma * sigma);
    const u = q * Math.expm1((2 * z - 1) / (2 * sigma * sigma));
    const x = alpha * Math.log1p(u);
    sum += x > 30 ? Math.exp(logW + x) : Math.exp(logW) * Math.expm1(x);
    mass += Math.exp(logW);
  }
  return Math.log1p(sum / mass) / (alpha - 1);
}

/** A deterministic uniform stream in [0, 1) (xorshift; tests only). */
function stream(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

describe('rdpPoissonSubsampledSymmetric', () => {
  it('is the exact subsampled Gaussian RDP when the pair is Gaussian (rdpAt(l) = l/(2σ²))', () => {
    for (const sigma of [0.6, 1, 2.5, 8]) {
      for (const q of [1e-3, 0.01, 0.2, 0.7]) {
        const orders = [2, 3, 5, 8, 16, 32, 64];
        const exact = rdpPoissonSubsampledGaussian(q, sigma, orders);
        orders.forEach((a, i) => {
          const ours = rdpPoissonSubsampledSymmetric(q, (l) => l / (2 * sigma * sigma), a);
          expect(ours, `σ ${sigma} q ${q} α ${a}`).to.be.closeTo(exact[i]!, 1e-9 * Math.max(1, exact[i]!));
        });
      }
    }
  });

  it('bounds both directions of random mirrored pairs, computed exactly', () => {
    const rand = stream(7);
    for (let trial = 0; trial < 400; trial++) {
      const k = 2 + Math.floor(rand() * 6);
      const w = Array.from({ length: k }, () => rand() ** (1 + 6 * rand()) + 1e-9);
      const s = w.reduce((a, b) => a + b, 0);
      const mu0 = w.map((x) => x / s);
      const mu1 = [...mu0].reverse(); // the mirror image: a symmetric pair
      const q = [0.001, 0.05, 0.3, 0.9][trial % 4]!;
      const alpha = [2, 3, 4, 7, 12][trial % 5]!;
      const mix = mu0.map((x, i) => (1 - q) * x + q * mu1[i]!);
      const bound = rdpPoissonSubsampledSymmetric(q, (l) => renyi(l, mu1, mu0), alpha);
      const remove = renyi(alpha, mix, mu0);
      const add = renyi(alpha, mu0, mix);
      expect(remove, `remove, trial ${trial}`).to.be.at.most(bound * (1 + 1e-9) + 1e-15);
      expect(add, `add, trial ${trial}`).to.be.at.most(bound * (1 + 1e-9) + 1e-15);
      // The remove direction is the binomial expansion itself: equal, not just bounded.
      expect(remove).to.be.closeTo(bound, 1e-9 * Math.max(bound, 1e-12) + 1e-14);
    }
  });

  it('bounds both directions for a sum of discrete Gaussians shifted by an integer', () => {
    // Z = Σ of 3 draws of N_Z(0, 1.2²) (the actual pmf, by convolution); neighbours Z and Z + 2.
    const sigma = 1.2;
    const half = 30;
    const one: number[] = [];
    for (let x = -half; x <= half; x++) one.push(Math.exp((-x * x) / (2 * sigma * sigma)));
    const z1 = one.reduce((a, b) => a + b, 0);
    const dg = one.map((v) => v / z1);
    const conv = (a: number[], b: number[]) => {
      const out = new Array<number>(a.length + b.length - 1).fill(0);
      a.forEach((x, i) => b.forEach((y, j) => (out[i + j]! += x * y)));
      return out;
    };
    const z = conv(conv(dg, dg), dg);
    const shift = 2;
    // Common support with the shifted copy; outside the central window both masses are < 1e-60.
    const mu0 = z.slice(shift);
    const mu1 = z.slice(0, z.length - shift);
    const keep = mu0.map((_, i) => i).filter((i) => mu0[i]! > 1e-60 && mu1[i]! > 1e-60);
    const p0 = keep.map((i) => mu0[i]!);
    const p1 = keep.map((i) => mu1[i]!);
    for (const q of [0.01, 0.1, 0.5]) {
      for (const alpha of [2, 4, 9]) {
        const mix = p0.map((x, i) => (1 - q) * x + q * p1[i]!);
        const bound = rdpPoissonSubsampledSymmetric(q, (l) => renyi(l, p1, p0), alpha);
        expect(renyi(alpha, mix, p0)).to.be.at.most(bound * (1 + 1e-9));
        expect(renyi(alpha, p0, mix)).to.be.at.most(bound * (1 + 1e-9));
      }
    }
  });

  it('rests on a pointwise lemma: for ℓ ≥ 1, u^{1−α} + ℓ·w^{1−α} ≤ u^α + ℓ·w^α (u = 1−q+qℓ, w = 1−q+q/ℓ)', () => {
    const rand = stream(11);
    for (let i = 0; i < 20_000; i++) {
      const ell = Math.exp(rand() * 12);
      const q = rand() < 0.5 ? 10 ** (-4 * rand()) : rand();
      const alpha = 1 + 40 * rand();
      const u = 1 - q + q * ell;
      const w = 1 - q + q / ell;
      const lhs = u ** (1 - alpha) + ell * w ** (1 - alpha);
      const rhs = u ** alpha + ell * w ** alpha;
      if (!Number.isFinite(rhs)) continue;
      expect(lhs, `ℓ ${ell} q ${q} α ${alpha}`).to.be.at.most(rhs * (1 + 1e-12));
      // The key step of the proof: ab ≥ ℓ, with equality only at ℓ = 1 or q ∈ {0, 1}.
      const b = (1 - q) * ell + q;
      expect(u * b - ell).to.be.closeTo(q * (1 - q) * (ell - 1) ** 2, 1e-9 * u * b);
    }
  });

  it('at fractional orders (Taylor bound) lies above the exact subsampled Gaussian RDP, and close to it', () => {
    for (const sigma of [0.6, 0.94, 1.1, 2, 8]) {
      for (const q of [1e-3, 0.0256, 0.2, 0.7]) {
        for (const a of [1.1, 1.5, 2.5, 3.3, 5.5, 7.9, 12.5]) {
          const exact = subsampledGaussianByQuadrature(q, sigma, a);
          const ours = rdpPoissonSubsampledSymmetric(q, (l) => l / (2 * sigma * sigma), a);
          expect(ours, `σ ${sigma} q ${q} α ${a}`).to.be.at.least(exact * (1 - 1e-7));
        }
      }
    }
    // The quadrature is right: it matches the exact binomial expansion at integer orders.
    expect(subsampledGaussianByQuadrature(0.0256, 0.94, 5)).to.be.closeTo(
      rdpPoissonSubsampledGaussian(0.0256, 0.94, [5])[0]!,
      1e-9,
    );
    // At the demo's q and σ (docs/privacy.md) the Taylor bound is within 2 % of the exact value,
    // where the chord between 5 and 6 is 5 % above it.
    const sigma = 0.94;
    const q = 512 / 20_000;
    const [exact] = rdpPoissonSubsampledGaussian(q, sigma, [5.5]);
    const ours = rdpPoissonSubsampledSymmetric(q, (l) => l / (2 * sigma * sigma), 5.5);
    expect(ours / exact!).to.be.below(1.02);
    const chord =
      (4 * rdpPoissonSubsampledGaussian(q, sigma, [5])[0]! +
        5 * rdpPoissonSubsampledGaussian(q, sigma, [6])[0]!) /
      2 /
      4.5;
    expect(chord / exact!).to.be.above(1.04);
  });

  it('at fractional orders bounds both directions of random mirrored pairs and of shifted discrete Gaussians', () => {
    const rand = stream(13);
    for (let trial = 0; trial < 400; trial++) {
      const k = 2 + Math.floor(rand() * 6);
      const w = Array.from({ length: k }, () => rand() ** (1 + 6 * rand()) + 1e-9);
      const s = w.reduce((a, b) => a + b, 0);
      const mu0 = w.map((x) => x / s);
      const mu1 = [...mu0].reverse();
      const q = [0.001, 0.05, 0.3, 0.9][trial % 4]!;
      const alpha = 1 + 12 * rand();
      if (Number.isInteger(alpha)) continue;
      const mix = mu0.map((x, i) => (1 - q) * x + q * mu1[i]!);
      const bound = rdpPoissonSubsampledSymmetric(q, (l) => renyi(l, mu1, mu0), alpha);
      expect(renyi(alpha, mix, mu0), `remove, trial ${trial} α ${alpha}`).to.be.at.most(
        bound * (1 + 1e-9) + 1e-15,
      );
      expect(renyi(alpha, mu0, mix), `add, trial ${trial} α ${alpha}`).to.be.at.most(
        bound * (1 + 1e-9) + 1e-15,
      );
    }
    const sigma = 0.8;
    const one: number[] = [];
    for (let x = -25; x <= 25; x++) one.push(Math.exp((-x * x) / (2 * sigma * sigma)));
    const z1 = one.reduce((a, b) => a + b, 0);
    const dg = one.map((v) => v / z1);
    const conv = (a: number[], b: number[]) => {
      const out = new Array<number>(a.length + b.length - 1).fill(0);
      a.forEach((x, i) => b.forEach((y, j) => (out[i + j]! += x * y)));
      return out;
    };
    const z = conv(dg, dg);
    const mu0 = z.slice(1);
    const mu1 = z.slice(0, z.length - 1);
    const keep = mu0.map((_, i) => i).filter((i) => mu0[i]! > 1e-60 && mu1[i]! > 1e-60);
    const p0 = keep.map((i) => mu0[i]!);
    const p1 = keep.map((i) => mu1[i]!);
    for (const q of [0.01, 0.1, 0.5]) {
      for (const alpha of [1.3, 2.5, 4.7, 8.2]) {
        const mix = p0.map((x, i) => (1 - q) * x + q * p1[i]!);
        const [curve] = rdpPoissonSubsampledSymmetricCurve(q, (l) => renyi(l, p1, p0), [alpha]);
        expect(renyi(alpha, mix, p0), `q ${q} α ${alpha}`).to.be.at.most(curve! * (1 + 1e-9));
        expect(renyi(alpha, p0, mix), `q ${q} α ${alpha}`).to.be.at.most(curve! * (1 + 1e-9));
      }
    }
  });

  it('the curve is the tight bound at integer orders and the smaller of Taylor and chord between them', () => {
    const sigma = 1.1;
    const q = 0.02;
    const orders = [2, 2.5, 3, 9.1, 10];
    const curve = rdpPoissonSubsampledGaussianSymmetricBound(q, sigma, orders);
    const exact = orders.map((a) => subsampledGaussianByQuadrature(q, sigma, a));
    expect(curve[0]).to.be.closeTo(rdpPoissonSubsampledGaussian(q, sigma, [2])[0]!, 1e-12);
    expect(curve[2]).to.be.closeTo(rdpPoissonSubsampledGaussian(q, sigma, [3])[0]!, 1e-12);
    for (const i of [1, 3]) {
      const a = orders[i]!;
      const taylor = rdpPoissonSubsampledSymmetric(q, (l) => l / (2 * sigma * sigma), a);
      const lo = Math.floor(a);
      const [rlo, rhi] = rdpPoissonSubsampledGaussian(q, sigma, [lo, lo + 1]);
      const t = a - lo;
      const chord = ((1 - t) * (lo - 1) * rlo! + t * lo * rhi!) / (a - 1);
      expect(curve[i]).to.equal(Math.min(taylor, chord));
      expect(curve[i]).to.be.at.least(exact[i]! * (1 - 1e-7));
    }
  });

  it('refuses an order <= 1', () => {
    expect(() => rdpPoissonSubsampledSymmetric(0.1, (l) => l, 1)).to.throw(
      'the symmetric bound needs an order > 1, got 1',
    );
  });
});
