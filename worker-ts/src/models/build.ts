// The model a RunConfig names, and the recipe from which a lane process (dp's DataParallelLanes)
// builds the same model. This module is the one a lane imports, so it stays light: the model
// files and dp's layers, not the envelope, checkpoint and secure-aggregation code of index.ts.
import type { ModelRecipe } from '@tensorguard/dp/tfjs';
import type { RunConfig } from '../config.js';
import { cnnTanh } from './cnn-tanh.js';
import { hfBert, readBertConfig } from './hf-bert.js';
import { mlp } from './mlp.js';
import type { ModelDef } from './model.js';
import { transformerLora } from './transformer-lora.js';

export interface DataShape {
  inputShape: number[];
  numClasses: number;
}

export function buildModel(cfg: RunConfig['model'], data: DataShape): ModelDef {
  switch (cfg.kind) {
    case 'mlp':
      return mlp({
        inputShape: data.inputShape,
        numClasses: data.numClasses,
        ...(cfg.hidden ? { hidden: cfg.hidden } : {}),
      });
    case 'cnn-tanh':
      return cnnTanh({
        inputShape: data.inputShape.length === 2 ? [...data.inputShape, 1] : data.inputShape,
        numClasses: data.numClasses,
      });
    case 'transformer-lora':
      return transformerLora({
        vocabSize: cfg.vocabSize ?? 4096,
        seqLen: data.inputShape[0]!,
        numClasses: data.numClasses,
        ...(cfg.dModel !== undefined ? { dModel: cfg.dModel } : {}),
        ...(cfg.heads !== undefined ? { heads: cfg.heads } : {}),
        ...(cfg.layers !== undefined ? { layers: cfg.layers } : {}),
        ...(cfg.loraRank !== undefined ? { loraRank: cfg.loraRank } : {}),
        ...(cfg.trainable !== undefined ? { trainable: cfg.trainable } : {}),
      });
    case 'hf-bert':
      return hfBert({
        config: readBertConfig(hfModelDir(cfg)),
        seqLen: data.inputShape[0]!,
        numClasses: data.numClasses,
        ...(cfg.pooling ? { pooling: cfg.pooling } : {}),
        ...(cfg.lora ? { lora: cfg.lora } : {}),
      });
  }
}

/**
 * The Hugging Face folder of an hf-bert config: model.path, which hf/resolve.ts's resolvePresets
 * fills in from model.preset on this node before the model is built.
 */
export function hfModelDir(cfg: RunConfig['model']): string {
  if (cfg.path === undefined)
    throw new RangeError(
      `model.path is not set: model.preset '${cfg.preset ?? ''}' must be resolved (resolvePresets) before the model is built`,
    );
  return cfg.path;
}

/**
 * How a lane process rebuilds `buildModel(cfg, data)`: this module's `buildModel` with the same
 * JSON arguments (its ModelDef carries the `layers` a lane needs). The module is named by this
 * file's own URL, so the recipe points at dist/models/build.js in the built programs and at
 * src/models/build.ts under tsx (the lanes run with the parent's Node options, tsx included).
 */
export function modelRecipe(cfg: RunConfig['model'], data: DataShape): ModelRecipe {
  return { module: import.meta.url, export: 'buildModel', args: [cfg, data] };
}
