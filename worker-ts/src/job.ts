// What the worker and the coordinator both derive from a RunConfig: the model, its initial
// values and fingerprint, and the envelope check. Both must agree, so both call this.
import type { ModelRecipe } from '@tensorguard/dp/tfjs';
import type { RunConfig } from './config.js';
import type { Dataset } from './data/dataset.js';
import { buildModel, checkEnvelope, initialValues, modelFingerprint, modelRecipe } from './models/index.js';
import type { ModelDef } from './models/model.js';

export interface PreparedModel {
  def: ModelDef;
  /** How a lane process rebuilds `def` (DpClippingEngine.start's `lanes.recipe`). */
  recipe: ModelRecipe;
  initial: Record<string, Float32Array>;
  fingerprint: string;
  parameters: number;
}

export function prepareModel(
  cfg: RunConfig,
  train: Pick<Dataset, 'featureShape' | 'numClasses'>,
): PreparedModel {
  const numClasses = cfg.dataset.numClasses ?? train.numClasses;
  const shape = { inputShape: train.featureShape, numClasses };
  const def = buildModel(cfg.model, shape);
  const bits = cfg.secureAggregation.bits === 32 ? 32 : 64;
  const { parameters } = checkEnvelope(def, cfg.envelope, bits, cfg.secureAggregation.mode);
  return {
    def,
    recipe: modelRecipe(cfg.model, shape),
    initial: initialValues(def, cfg.model),
    fingerprint: modelFingerprint(def, cfg.model),
    parameters,
  };
}
