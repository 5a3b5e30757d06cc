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
  SgdMomentum,
  type RunConfig,
} from '@tensorguard/worker';
import fs from 'node:fs';

export function readConfig(file: string): RunConfig {
  return parseRunConfig(JSON.parse(fs.readFileSync(file, 'utf8')));
}

/** `rounds` full-batch steps of clipped SGD (momentum) on the whole training set of `file`'s job. */
export function clippedSgdReference(file: string, rounds: number): Float32Array {
  const cfg = readConfig(file);
  const train = loadTrainSet(cfg);
  const prepared = prepareModel(cfg, train);
  const params = flatten(trainableSpecs(prepared.def), prepared.initial);
  const engine = new LoopClippingEngine(tf, prepared.def, prepared.initial);
  const opt = new SgdMomentum(params.length, cfg.optimizer.learningRate, cfg.optimizer.momentum);
  const x = tf.tensor(train.features, [train.size, ...train.featureShape]);
  const y = tf.tensor1d(train.labels, 'int32');
  for (let r = 0; r < rounds; r++) {
    engine.setTrainable(params);
    const { sum } = engine.clippedSum(x, y, cfg.privacy.clipNorm);
    opt.step(
      params,
      sum.map((v) => v / train.size),
    );
  }
  tf.dispose([x, y]);
  engine.dispose();
  return params;
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
