// Ground truth for the equivalence tests: one process of the same clipped SGD on the union of the
// workers' shards (batch-of-one clipping loop), and the parameters of a job's newest checkpoint.
import { tf } from '@tensorguard/dp/tfjs';
import {
  LoopClippingEngine,
  flatten,
  loadLatestCheckpoint,
  loadTrainSet,
  parseRunConfig,
  prepareModel,
  trainableSpecs,
  type RunConfig,
} from '@tensorguard/worker';
import fs from 'node:fs';

export function readConfig(file: string): RunConfig {
  return parseRunConfig(JSON.parse(fs.readFileSync(file, 'utf8')));
}

/** `rounds` full-batch steps of clipped SGD (momentum) on the whole training set of `file`'s job. */
export function clippedSgdReference(file: string, rounds: number): Float32Array {
  return clippedSgdRun(file, rounds).params;
}

/**
 * clippedSgdReference with the job's learning-rate schedule (constant, or linear decay without
 * warm-up: update k of T takes lr·(T − k)/T) and, with optimizer.ema, the bias-corrected moving
 * average of the iterates, both written out here rather than taken from worker-ts.
 */
export function clippedSgdRun(
  file: string,
  rounds: number,
): { params: Float32Array; average: Float32Array | null } {
  const cfg = readConfig(file);
  const o = cfg.optimizer;
  if (o.kind !== 'sgd') throw new Error('the reference runs SGD jobs only');
  const schedule = o.schedule ?? { kind: 'constant', warmupRounds: 0 };
  if (schedule.warmupRounds !== 0 || (schedule.kind !== 'constant' && schedule.kind !== 'linear'))
    throw new Error('the reference knows the constant and the linear schedule without warm-up only');
  const train = loadTrainSet(cfg);
  const prepared = prepareModel(cfg, train);
  const params = flatten(trainableSpecs(prepared.def), prepared.initial);
  const engine = new LoopClippingEngine(tf, prepared.def, prepared.initial);
  const velocity = new Float64Array(params.length);
  const decay = o.ema?.decay;
  const ema = decay === undefined ? null : new Float64Array(params.length);
  const x = tf.tensor(train.features, [train.size, ...train.featureShape]);
  const y = tf.tensor1d(train.labels, 'int32');
  for (let k = 0; k < rounds; k++) {
    engine.setTrainable(params);
    const { sum } = engine.clippedSum(x, y, cfg.privacy.clipNorm);
    const lr = o.learningRate * (schedule.kind === 'linear' ? (cfg.rounds - k) / cfg.rounds : 1);
    for (let i = 0; i < params.length; i++) {
      velocity[i] = (o.momentum ?? 0) * velocity[i]! + sum[i]! / train.size;
      params[i] = params[i]! - lr * velocity[i]!;
      if (ema) ema[i] = decay! * ema[i]! + (1 - decay!) * params[i]!;
    }
  }
  tf.dispose([x, y]);
  engine.dispose();
  const c = decay === undefined ? 1 : 1 - decay ** rounds;
  return { params, average: ema ? Float32Array.from(ema, (v) => v / c) : null };
}

/** The trainable parameters and round of the newest checkpoint of `file`'s job. */
export function checkpointParams(file: string): { round: number; params: Float32Array } {
  const cfg = readConfig(file);
  const prepared = prepareModel(cfg, loadTrainSet(cfg));
  const specs = trainableSpecs(prepared.def);
  const ck = loadLatestCheckpoint(cfg.checkpoint.dir, { baseModelFingerprint: prepared.fingerprint })!;
  const params = flatten(
    specs,
    Object.fromEntries(specs.map((s) => [s.name, ck.model[s.name]!.data as Float32Array])),
  );
  return { round: ck.manifest.round, params };
}

/** max |a − b| and max |b| over coordinates. */
export function maxDiff(a: Float32Array, b: Float32Array): { maxErr: number; maxAbs: number } {
  let maxErr = 0;
  let maxAbs = 0;
  for (let i = 0; i < b.length; i++) {
    maxErr = Math.max(maxErr, Math.abs(a[i]! - b[i]!));
    maxAbs = Math.max(maxAbs, Math.abs(b[i]!));
  }
  return { maxErr, maxAbs };
}
