// From a validated JobSpec to the config the Node programs read (worker-ts RunConfig): the
// driver decides everything that needs a choice before the job starts (σ from a target ε, the
// threshold count, the sampling rate, the checkpoint folder) so that all workers agree on it.
import path from 'node:path';
import { JobSpecError } from './errors.js';
import type { JobSpec } from './schema.js';

/** Training records of the presets, for privacy.expectedBatchSize. */
const PRESET_TRAIN_RECORDS = { 'fashion-mnist': 60_000 } as const;

export interface ResolveOptions {
  /** The job id (the Ray submission id). */
  jobId: string;
  /** Parent of the default checkpoint folder `<dataDir>/jobs/<jobId>/checkpoints`
   *  (`tensorguard train`: TENSORGUARD_STATE_DIR, default <repo>/.tensorguard). */
  dataDir: string;
}

/** The resolved config: the spec plus the fields the driver decided. */
export type RunConfigJson = Omit<JobSpec, 'privacy' | 'secureAggregation' | 'model' | 'checkpoint'> & {
  model: Omit<JobSpec['model'], 'trainable'> & { trainable?: string[] };
  privacy: Omit<JobSpec['privacy'], 'targetEpsilon' | 'expectedBatchSize'> & {
    noiseMultiplier: number;
    samplingRate: number;
    /** Present when σ was calibrated: the target it was calibrated for. */
    targetEpsilon?: number;
  };
  secureAggregation: Omit<JobSpec['secureAggregation'], 'threshold'> & { threshold: number };
  checkpoint: { dir: string; everyRounds: number };
  jobId: string;
};

/** Resolves the spec; throws JobSpecError when a derived value cannot be computed. */
export async function resolveRunConfig(spec: JobSpec, opts: ResolveOptions): Promise<RunConfigJson> {
  const { privacy, dataset, workers } = spec;
  let samplingRate = privacy.samplingRate;
  if (samplingRate === undefined) {
    const records =
      dataset.trainExamples ?? (dataset.preset ? PRESET_TRAIN_RECORDS[dataset.preset] : undefined);
    if (records === undefined) {
      throw new JobSpecError([
        {
          path: 'privacy.expectedBatchSize',
          message:
            'needs the number of training records: set dataset.trainExamples, or give privacy.samplingRate',
        },
      ]);
    }
    samplingRate = Math.min(1, privacy.expectedBatchSize! / records);
  }
  let noiseMultiplier = privacy.noiseMultiplier;
  if (noiseMultiplier === undefined) {
    noiseMultiplier = await calibrateNoiseMultiplier({
      targetEpsilon: privacy.targetEpsilon!,
      delta: privacy.delta,
      samplingRate,
      rounds: spec.rounds,
    });
  }
  const t = spec.secureAggregation.threshold;
  const threshold = Number.isInteger(t) ? t : Math.max(1, Math.ceil(t * workers.count));
  const { trainable, ...model } = spec.model;
  const { targetEpsilon, expectedBatchSize: _b, ...restPrivacy } = privacy;
  return {
    ...spec,
    jobId: opts.jobId,
    model: {
      ...model,
      ...(trainable === undefined ? {} : { trainable: trainable === 'lora' ? ['lora', 'head'] : trainable }),
    },
    dataset: {
      ...dataset,
      ...(spec.evaluation.testPath ? { testPath: spec.evaluation.testPath } : {}),
    },
    privacy: {
      ...restPrivacy,
      noiseMultiplier,
      samplingRate,
      ...(targetEpsilon !== undefined ? { targetEpsilon } : {}),
    },
    secureAggregation: { ...spec.secureAggregation, threshold },
    checkpoint: {
      dir: spec.checkpoint.dir ?? path.join(opts.dataDir, 'jobs', opts.jobId, 'checkpoints'),
      everyRounds: spec.checkpoint.everyRounds,
    },
  };
}

/**
 * The smallest σ (to 0.1 %) whose RDP ε after `rounds` Poisson-subsampled Gaussian steps at rate
 * `samplingRate` is at most `targetEpsilon` at `delta`, with worker-ts's accountant (the one the
 * coordinator uses, so the job's own ε reaches but does not exceed the target with a full quorum).
 */
export async function calibrateNoiseMultiplier(o: {
  targetEpsilon: number;
  delta: number;
  samplingRate: number;
  rounds: number;
}): Promise<number> {
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  // Loaded on demand: the worker package's index also loads libtensorflow.
  const { RdpAccountant } = await import('@tensorguard/worker');
  const eps = (sigma: number) => {
    const acc = new RdpAccountant();
    for (let r = 1; r <= o.rounds; r++) {
      acc.record({ round: r, samplingRate: o.samplingRate, noiseMultiplier: sigma, survivors: 1 });
    }
    return acc.epsilon(o.delta);
  };
  let lo = 0.05;
  let hi = 1;
  while (eps(hi) > o.targetEpsilon) {
    hi *= 2;
    if (hi > 1e4) {
      throw new JobSpecError([
        { path: 'privacy.targetEpsilon', message: `${o.targetEpsilon} cannot be reached with σ ≤ 10000` },
      ]);
    }
  }
  while ((hi - lo) / hi > 1e-3) {
    const mid = (lo + hi) / 2;
    if (eps(mid) > o.targetEpsilon) lo = mid;
    else hi = mid;
  }
  return Number(hi.toFixed(4));
}
