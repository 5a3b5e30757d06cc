// From a validated JobSpec to the run config the Node programs and the Ray entrypoint read
// (worker-ts/src/run-config/schema.ts): the driver decides everything that needs a choice before
// the job starts (σ from a target ε, the quorum count, the sampling rate, the checkpoint folder) so
// that all workers agree on it, and parses the result with the run config's own schema, which
// fills the rest of the defaults: what it submits is what the workers will accept.
import { runConfigSchema, type ResolvedRunConfig } from '@tensorguard/worker/run-config';
import path from 'node:path';
import { JobSpecError } from './errors.js';
import type { JobSpec } from './schema.js';

/** Training records of the presets, for privacy.expectedBatchSize. */
const PRESET_TRAIN_RECORDS = { 'fashion-mnist': 60_000, 'rotten-tomatoes': 6832, imdb: 20085 } as const;

export interface ResolveOptions {
  /** The job id (the Ray submission id). */
  jobId: string;
  /** Parent of the default checkpoint folder `<dataDir>/jobs/<jobId>/checkpoints`
   *  (`tensorguard train`: TENSORGUARD_STATE_DIR, default <repo>/.tensorguard). */
  dataDir: string;
}

/** The resolved config: worker-ts's run config, every default filled, with the job id. */
export type RunConfigJson = ResolvedRunConfig & { jobId: string };

/** Resolves the spec; throws JobSpecError when a derived value cannot be computed. */
export async function resolveRunConfig(spec: JobSpec, opts: ResolveOptions): Promise<RunConfigJson> {
  const { privacy, dataset, workers } = spec;
  const records =
    dataset.trainExamples ?? (dataset.preset ? PRESET_TRAIN_RECORDS[dataset.preset] : undefined);
  if (records !== undefined && privacy.delta > 1 / records && !privacy.allowDeltaAboveInverseN) {
    throw new JobSpecError([
      {
        path: 'privacy.delta',
        message: `${privacy.delta} is above 1/N = ${(1 / records).toPrecision(3)} for N = ${records} training records: at such a δ a mechanism may publish a record outright; lower privacy.delta (for example to ${(0.1 / records).toPrecision(1)}) or set privacy.allowDeltaAboveInverseN: true`,
      },
    ]);
  }
  let samplingRate = privacy.samplingRate;
  if (samplingRate === undefined) {
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
      accountant: privacy.accountant,
    });
  }
  // The quorum t: a fraction of workers.count (rounded up) or a count.
  const q = spec.secureAggregation.quorum;
  const quorum = Number.isInteger(q) ? q : Math.max(1, Math.ceil(q * workers.count));
  // hf-bert has no `trainable` (its LoRA settings say what trains); 'lora' is the adapters and the head.
  const trainable = spec.model.kind === 'hf-bert' ? undefined : spec.model.trainable;
  const { targetEpsilon, expectedBatchSize: _b, ...restPrivacy } = privacy;
  const { testPath: evaluationTestPath, ...evaluation } = spec.evaluation;
  const config = {
    ...spec,
    jobId: opts.jobId,
    model: {
      ...spec.model,
      ...(trainable === undefined ? {} : { trainable: trainable === 'lora' ? ['lora', 'head'] : trainable }),
    },
    dataset: {
      ...dataset,
      ...(evaluationTestPath ? { testPath: evaluationTestPath } : {}),
    },
    privacy: {
      ...restPrivacy,
      noiseMultiplier,
      samplingRate,
      ...(targetEpsilon !== undefined ? { targetEpsilon } : {}),
    },
    secureAggregation: { ...spec.secureAggregation, quorum },
    evaluation,
    checkpoint: {
      dir: spec.checkpoint.dir ?? path.join(opts.dataDir, 'jobs', opts.jobId, 'checkpoints'),
      everyRounds: spec.checkpoint.everyRounds,
    },
  };
  // The spec's own checks (checks.ts) refuse everything the run config's rules refuse; a failure
  // here is a bug in the driver, reported with the field.
  const r = runConfigSchema.safeParse(config);
  if (!r.success) {
    throw new JobSpecError(
      r.error.issues.map((i) => ({
        path: i.path.join('.'),
        message: `resolves to an invalid run config: ${i.message}`,
      })),
    );
  }
  return { ...r.data, jobId: opts.jobId };
}

/**
 * The smallest σ (to 1e-4 relative, rounded up) whose ε after `rounds` rounds at rate
 * `samplingRate` is at most `targetEpsilon` at `delta`, where ε is the figure the coordinator
 * reports and budgets with under either accountant: the integer mechanism's rigorous RDP bound
 * (@tensorguard/dp's calibration with mechanism 'integer'; docs/privacy.md, "A rigorous ε for the
 * integers"). So the job's own ε reaches but does not exceed the target with a full quorum of t.
 * `accountant` is accepted for the record: under 'pld' the Gaussian's PLD is only a labelled
 * reference, never the budget. Throws JobSpecError naming privacy.targetEpsilon when no σ ≤ 10⁴
 * reaches it.
 */
export async function calibrateNoiseMultiplier(o: {
  targetEpsilon: number;
  delta: number;
  samplingRate: number;
  rounds: number;
  accountant?: 'rdp' | 'pld';
}): Promise<number> {
  const dp = await import('@tensorguard/dp');
  const setting = {
    samplingRate: o.samplingRate,
    steps: o.rounds,
    delta: o.delta,
    mechanism: 'integer' as const,
  };
  let sigma: number;
  try {
    sigma = dp.calibrateNoiseMultiplier({ ...setting, targetEpsilon: o.targetEpsilon });
  } catch (err) {
    if (err instanceof dp.CalibrationError) {
      throw new JobSpecError([
        { path: 'privacy.targetEpsilon', message: `${o.targetEpsilon} cannot be reached with σ ≤ 10000` },
      ]);
    }
    throw err;
  }
  // Printed configs carry 4 decimals: round up, never down (a smaller σ could pass the target).
  const step = (x: number) => Number(x.toFixed(4));
  let rounded = step(Math.ceil(sigma * 1e4) / 1e4);
  while (dp.computeEpsilon({ ...setting, noiseMultiplier: rounded }) > o.targetEpsilon) {
    rounded = step(rounded + 1e-4);
  }
  return rounded;
}
