// Examples per second of a whole private round (sample, clip, encode, noise, mask, upload,
// aggregate, unmask, apply; secure aggregation on) against the bare DP-SGD step (sample + clip)
// alone, for 1, 2 and 4 workers on this machine, with the per-phase breakdown. The examples of a
// round are counted as their expectation q·N (the realised batch is private).
//
// The same job then runs in HE mode (secureAggregation.mode 'he', 2 and 4 workers): 'mask' is the
// workers' BFV encryption, 'aggregate' the coordinator's wait for and homomorphic sum of the
// ciphertexts, 'unmask' the key holder's decryption (and 'mask' includes padding under the key
// holder's nonce). HE jobs need the job identities, so their rows run over mutual TLS and the
// masking rows do not: he_over_masking_round_time answers "how much cheaper is masking" for a
// whole round, TLS included on the HE side.
import { fmnistConfig, runJob } from '../job-runner.js';
import type { Benchmark, Row } from '../types.js';

// Workers export no clip or upload time of their own (both depend on the private batch size):
// 'local' runs from the start of clipping to the moment the round's inputs are all in.
const WORKER_PHASES = ['sample', 'encode', 'noise', 'mask', 'local'] as const;
const COORD_PHASES = ['aggregate', 'unmask', 'apply'] as const;

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

export const benchmark: Benchmark = {
  description:
    'tanh CNN on Fashion-MNIST: examples/s of the whole secure-aggregation round vs the bare DP-SGD step, 1/2/4 workers, masking and HE',
  async run({ quick, root, log }) {
    const rounds = quick ? 4 : 12;
    const perWorkerBatch = quick ? 32 : 64;
    const shard = 2000;
    const rows: Row[] = [];
    let ratio4 = NaN;
    const maskingRound = new Map<number, number>();
    let heOverMasking4 = NaN;
    const runs: { n: number; mode: 'masking' | 'he' }[] = [
      { n: 1, mode: 'masking' },
      { n: 2, mode: 'masking' },
      { n: 4, mode: 'masking' },
      { n: 2, mode: 'he' },
      { n: 4, mode: 'he' },
    ];
    for (const { n, mode } of runs) {
      // Secure aggregation needs ≥ 2 members; the 1-worker row runs 2 workers' worth of data
      // through one worker's step only, so it shows the bare step at that scale.
      const workers = Math.max(n, 2);
      const q = perWorkerBatch / shard;
      log(`${n} worker(s), ${mode}: ${rounds} rounds, expected batch ${perWorkerBatch} per worker`);
      const run = await runJob(
        root,
        fmnistConfig({
          dataset: {
            format: 'idx',
            preset: 'fashion-mnist',
            trainExamples: shard * workers,
            testExamples: 500,
          },
          workers: { count: workers },
          secureAggregation: { mode, threshold: workers === 2 ? 2 : 3 },
          privacy: {
            clipNorm: 1,
            noiseMultiplier: 1,
            delta: 1e-5,
            epsilonBudget: null,
            accountant: 'rdp',
            samplingRate: q,
          },
          rounds,
          evaluation: { everyRounds: 1000 },
        }),
        workers,
        log,
      );
      // Skip the first round (warm-up: graph building, first allocation).
      const cm = run.coordinator.filter((l) => l.type === 'metrics').slice(1);
      const wm = run.workers.map((w) => w.filter((l) => l.type === 'metrics').slice(1));
      const phase = (lines: Record<string, unknown>[], p: string) =>
        mean(lines.map((l) => (l.phase_seconds as Record<string, number>)[p] ?? 0));
      const worker0 = wm[0]!;
      // The bare step: sampling plus clipping. A worker's 'local' window is its clip, noise,
      // encode and mask plus its wait for the others and the upload; the worker that waits least
      // in a round is the slowest one, so min over workers of (local − noise − encode − mask) is
      // that round's slowest clip plus one upload: the step that bounds the round.
      const seconds = (l: Record<string, unknown>, p: string) =>
        (l.phase_seconds as Record<string, number>)[p] ?? 0;
      const slowestClip = mean(
        worker0.map((_, i) =>
          Math.min(
            ...wm.map((w) =>
              w[i]
                ? seconds(w[i], 'local') -
                  seconds(w[i], 'noise') -
                  seconds(w[i], 'encode') -
                  seconds(w[i], 'mask')
                : Infinity,
            ),
          ),
        ),
      );
      const stepSeconds = phase(worker0, 'sample') + slowestClip;
      const roundSeconds = mean(cm.map((l) => l.round_seconds as number));
      const examples = perWorkerBatch * workers;
      const row: Row = {
        mode,
        workers: n,
        step_examples_per_s: Number((perWorkerBatch / stepSeconds).toFixed(1)),
        round_examples_per_s: n === 1 ? null : Number((examples / roundSeconds).toFixed(1)),
        round_over_step_time: n === 1 ? null : Number((roundSeconds / stepSeconds).toFixed(3)),
      };
      for (const p of WORKER_PHASES) row[p] = Number(mean(wm.map((w) => phase(w, p))).toFixed(4));
      for (const p of COORD_PHASES) row[p] = Number(phase(cm, p).toFixed(4));
      row.round_s = Number(roundSeconds.toFixed(3));
      const masking = maskingRound.get(n);
      row.he_over_masking_round_time =
        mode === 'he' && masking !== undefined ? Number((roundSeconds / masking).toFixed(3)) : null;
      row.bytes_sent_per_worker = Math.round(mean(worker0.map((l) => l.bytes_sent as number)));
      rows.push(row);
      if (mode === 'masking') maskingRound.set(n, roundSeconds);
      if (n === 4 && mode === 'masking') ratio4 = roundSeconds / stepSeconds;
      if (n === 4 && mode === 'he' && masking !== undefined) heOverMasking4 = roundSeconds / masking;
    }
    return {
      rows,
      summary: {
        round_over_step_time_4_workers: Number(ratio4.toFixed(3)),
        he_over_masking_round_time_4_workers: Number(heOverMasking4.toFixed(3)),
      },
    };
  },
};
