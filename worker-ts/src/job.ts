// What the worker and the coordinator both derive from a RunConfig: the model, its initial
// values and fingerprint, and the envelope check. Both must agree, so both call this.
import type { RunConfig } from './config.js';
import type { Dataset } from './data/dataset.js';
import { buildModel, checkEnvelope, initialValues, modelFingerprint } from './models/index.js';
import type { ModelDef } from './models/model.js';

export interface PreparedModel {
  def: ModelDef;
  initial: Record<string, Float32Array>;
  fingerprint: string;
  parameters: number;
}

export function prepareModel(
  cfg: RunConfig,
  train: Pick<Dataset, 'featureShape' | 'numClasses'>,
): PreparedModel {
  const numClasses = cfg.dataset.numClasses ?? train.numClasses;
  const def = buildModel(cfg.model, { inputShape: train.featureShape, numClasses });
  const bits = cfg.secureAggregation.bits === 32 ? 32 : 64;
  const { parameters } = checkEnvelope(def, cfg.envelope, bits, cfg.secureAggregation.mode);
  return {
    def,
    initial: initialValues(def, cfg.model),
    fingerprint: modelFingerprint(def, cfg.model),
    parameters,
  };
}
