// @tensorguard/dp/tfjs: per-sample gradient clipping for DP-SGD on TensorFlow.js, without a
// per-example loop. See README.md in this folder for the method and how to add a layer.
export { default as tf, tfjsVariant } from './tf.js';
export type { Tensor } from './tf.js';
export { ClippingEngineError, InvalidClippingOptionsError, UnsupportedLayerError } from './errors.js';
export type { ForwardContext, Layer, ParamInit, ParamSpec, Site, SiteRule } from './layer.js';
export { walkLayers } from './layer.js';
export {
  activation,
  avgPool,
  conv2d,
  dense,
  embedding,
  flatten,
  gelu,
  groupNorm,
  layerNorm,
  loraDense,
  maxPool,
  meanPool,
  multiHeadAttention,
  residual,
  sequential,
  tokenAndPositionEmbedding,
} from './layers.js';
export type {
  ActivationKind,
  AttentionOptions,
  Conv2DOptions,
  DenseOptions,
  EmbeddingOptions,
  GroupNormOptions,
  LoraDenseOptions,
  NormOptions as LayerNormOptions,
  PoolOptions,
  TokenEmbeddingOptions,
} from './layers.js';
export { DpModel } from './model.js';
export type { DpModelOptions } from './model.js';
export { crossEntropyPerExample, crossEntropySum } from './loss.js';
export { chooseLinearMethod, im2col } from './sites.js';
export type { NormMethod } from './sites.js';
export {
  SUPPORTED_LAYER_KINDS,
  assertSupported,
  clipAndAccumulate,
  dpSgdStep,
  dpSgdStepCentral,
  flattenSum,
  paramGrads,
  perSampleNorms,
} from './engine.js';
export type {
  CentralStepOptions,
  ClipMethod,
  ClippedSum,
  ClippingOptions,
  NormOptions,
  PerSampleNorms,
} from './engine.js';
export { tanhCnn, transformerEncoder } from './models.js';
export type { TanhCnnOptions, TransformerOptions } from './models.js';
export { DataParallelLanes, LaneError, laneSlices } from './lanes.js';
export type { LanesOptions, ModelRecipe } from './lanes.js';
