// Fashion-MNIST, 4 workers, secure aggregation on, the tanh CNN of Papernot et al. 2020 with
// DP-SGD (clip 1, Poisson rate q, σ calibrated so that the planned rounds stay within ε ≤ 3 at
// δ = 1e-5; the coordinator refuses any round that would exceed it). Target test accuracy ≥ 86%
// (Papernot et al. report 86.1% at ε = 2.7) needs the full run, which is long on 2 cores.
import { fmnistConfig, runJob } from '../job-runner.js';
import type { Benchmark } from '../types.js';

export const benchmark: Benchmark = {
  description:
    'Fashion-MNIST, 4 workers, secure aggregation, tanh CNN, ε ≤ 3 at δ = 1e-5 (target accuracy ≥ 0.86)',
  async run({ quick, root, log }) {
    // Full: the published end-to-end tanh CNN setting for Fashion-MNIST (Papernot et al. 2020;
    // Tramèr & Boneh 2021, whose ε = 3 baseline uses the same model): expected batch 2048
    // (q = 2048/60000), clip 0.1, SGD lr 4 with momentum 0.9 on the mean clipped gradient, 40
    // epochs = 1172 steps, σ = 2.0: ε = 2.86 at δ = 1e-5 (RDP, improved conversion), within
    // the budget of 3. threshold = workers, so that a full round carries exactly σ (with t < n
    // every round would carry σ·√(n/t), more noise than the published runs); a dropout then
    // aborts that round unreleased and the next one opens.
    // Quick: 8000 records, q = 0.02, 30 rounds.
    const full = {
      dataset: { format: 'idx', preset: 'fashion-mnist' },
      privacy: {
        clipNorm: 0.1,
        noiseMultiplier: 2.0,
        delta: 1e-5,
        epsilonBudget: 3,
        accountant: 'rdp',
        samplingRate: 2048 / 60000,
      },
      secureAggregation: { mode: 'masking', threshold: 4 },
      optimizer: { kind: 'sgd', learningRate: 4, momentum: 0.9 },
      rounds: Math.ceil((40 * 60000) / 2048),
      evaluation: { everyRounds: 50 },
    };
    const short = {
      dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 8000, testExamples: 2000 },
      privacy: {
        clipNorm: 1,
        noiseMultiplier: 1.1,
        delta: 1e-5,
        epsilonBudget: 3,
        accountant: 'rdp',
        samplingRate: 0.02,
      },
      optimizer: { kind: 'sgd', learningRate: 1, momentum: 0.9 },
      rounds: 30,
      evaluation: { everyRounds: 10 },
    };
    const run = await runJob(
      root,
      fmnistConfig({ workers: { count: 4 }, ...(quick ? short : full) }),
      4,
      log,
    );
    const d = run.done;
    const summary = {
      test_accuracy: Number(d.test_accuracy),
      epsilon: Number(d.epsilon),
      delta: Number(d.delta),
      workers: 4,
      wall_seconds: Number(run.wallSeconds.toFixed(1)),
    };
    return {
      rows: [{ ...summary, rounds: Number(d.rounds), stop_reason: String(d.stop_reason), quick }],
      summary,
    };
  },
};
