// Noise sampling throughput (CSPRNG continuous Gaussian, exact discrete Gaussian) and the time of
// the RDP accountant for 100,000 steps, all in this process on one core.
import {
  DiscreteGaussianSampler,
  RdpAccountant,
  gaussianEvent,
  poissonSampledEvent,
  sampleGaussian,
} from '@tensorguard/dp';
import type { Benchmark, Row } from '../types.js';

const SIGMAS = [1, 10, 1000];

function best(reps: number, fn: () => void): number {
  let min = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    min = Math.min(min, performance.now() - t0);
  }
  return min;
}

export const benchmark: Benchmark = {
  description:
    'samples/s of the CSPRNG Gaussian and the exact discrete Gaussian (σ = 1, 10, 1000; batches of 1e6), ' +
    'and ms for ε after 100k RDP steps; summary = slowest σ',
  async run({ quick, log }) {
    const batch = quick ? 100_000 : 1_000_000;
    const reps = quick ? 1 : 3;
    const rows: Row[] = [];
    let gaussianMin = Infinity;
    let discreteMin = Infinity;
    for (const sigma of SIGMAS) {
      for (const secure of [true, false]) {
        sampleGaussian(1000, sigma, { secure });
        const ms = best(reps, () => void sampleGaussian(batch, sigma, { secure }));
        const rate = batch / ms / 1000;
        if (secure) gaussianMin = Math.min(gaussianMin, rate);
        rows.push({
          sampler: secure ? 'gaussian (secure: 2 draws)' : 'gaussian (1 draw)',
          sigma,
          batch,
          ms_per_batch: +ms.toFixed(1),
          msamples_per_s: +rate.toFixed(2),
        });
        log(`gaussian σ=${sigma} secure=${secure}: ${rate.toFixed(2)} M samples/s`);
      }
      const dg = new DiscreteGaussianSampler(sigma);
      dg.sampleBatch(1000);
      const ms = best(reps, () => void dg.sampleBatch(batch));
      const rate = batch / ms / 1000;
      discreteMin = Math.min(discreteMin, rate);
      rows.push({
        sampler: 'discrete gaussian (CKS20, exact)',
        sigma,
        batch,
        ms_per_batch: +ms.toFixed(1),
        msamples_per_s: +rate.toFixed(2),
      });
      log(`discrete gaussian σ=${sigma}: ${rate.toFixed(2)} M samples/s`);
    }
    const event = poissonSampledEvent(256 / 60000, gaussianEvent(1.1));
    let epsilon = NaN;
    new RdpAccountant().compose(event, 10).epsilon(1e-5);
    const accMs = best(quick ? 3 : 10, () => {
      epsilon = new RdpAccountant().compose(event, 100_000).epsilon(1e-5);
    });
    rows.push({
      sampler: 'rdp accountant, 100k steps (q=256/60000, σ=1.1, 156 orders)',
      sigma: 1.1,
      batch: 100_000,
      ms_per_batch: +accMs.toFixed(2),
      msamples_per_s: null,
    });
    log(`accountant: ε=${epsilon.toFixed(3)} after 100k steps in ${accMs.toFixed(2)} ms`);
    return {
      rows,
      summary: {
        gaussian_msamples_per_s: +gaussianMin.toFixed(2),
        discrete_gaussian_msamples_per_s: +discreteMin.toFixed(2),
        accountant_ms_100k_steps: +accMs.toFixed(2),
      },
    };
  },
};
