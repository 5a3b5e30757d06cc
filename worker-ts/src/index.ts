export { DatasetError } from './data/errors.js';
export {
  DEFAULT_FASHION_MNIST_DIR,
  fashionMnistDir,
  findIdx,
  loadImagePair,
  parseIdx,
  readIdxFile,
  type IdxTensor,
  type LabelledImages,
} from './data/idx.js';
export { parseCsv, readCsvFile, type CsvOptions } from './data/csv.js';
export { parseJsonl, readJsonlFile, type JsonlOptions } from './data/jsonl.js';
export { tokenize, fnv1a32, PAD_ID, CLS_ID, type TokenizerOptions } from './data/tokenizer.js';
export {
  MODEL_PRESETS,
  TEXT_DATASET_PRESETS,
  isModelPreset,
  isTextDatasetPreset,
  resolveModelPreset,
  resolveDatasetPreset,
  resolveMovieReviewsCsv,
  type ModelPreset,
  type TextDatasetPreset,
} from './hf/presets.js';
export {
  cacheRoot,
  ensurePackage,
  PackageFetchError,
  type PinnedWheel,
  type FetchOptions,
} from './hf/pypi-fetch.js';
export { resolvePresets } from './hf/resolve.js';
export { HfTokenizer, type TextEncoding } from './data/hf-tokenizer.js';
export {
  PRESET_SPLIT_SIZES,
  encodeTextRecords,
  parseTextCsv,
  parseTextJsonl,
  presetSplit,
  presetSplitFile,
  readPresetSplit,
  readTextFile,
  type TextRecords,
} from './data/text.js';
export { shardRange, shardFiles } from './data/shard.js';
export { selectRecords, recordLength, type Dataset } from './data/dataset.js';
export {
  loadTrainSet,
  loadTestSet,
  loadShard,
  loadTrainSchema,
  isHfText,
  textTokenizer,
  DEFAULT_MAX_TOKENS,
  listDataFiles,
  concatDatasets,
} from './data/load.js';
export { poissonSample, seededRandom, systemRandom, type RandomSource } from './sampling.js';
export { SgdMomentum, Adam, createOptimizer, type Optimizer, type OptimizerOptions } from './optimizer.js';
export { encodeSafetensors, decodeSafetensors, tensor, type NamedTensor } from './checkpoint/safetensors.js';
export { CheckpointError } from './checkpoint/errors.js';
export {
  saveCheckpoint,
  loadCheckpoint,
  loadLatestCheckpoint,
  latestCheckpointDir,
} from './checkpoint/store.js';
export { writeFileAtomic } from './checkpoint/atomic.js';
export type { Manifest } from './checkpoint/manifest.js';
export {
  asRunConfig,
  clippingLanes,
  parseRunConfig,
  loadRunConfig,
  ConfigError,
  runConfigSchema,
  runConfigJsonSchema,
  type RunConfig,
  type ResolvedRunConfig,
  type RunConfigInput,
} from './config.js';
export { mlp } from './models/mlp.js';
export { cnnTanh } from './models/cnn-tanh.js';
export { transformerLora } from './models/transformer-lora.js';
export {
  hfBert,
  hfName,
  loadHfBertBase,
  parseBertConfig,
  readBertConfig,
  transpose2d,
  HfModelError,
  BERT_LORA_TARGETS,
  DISTILBERT_LORA_TARGETS,
  HF_MODEL_TYPES,
  type BertConfig,
  type BertLoraOptions,
  type BertLoraTarget,
  type DistilBertLoraTarget,
  type HfLoraTarget,
  type HfModelType,
  type BertPooling,
  type HfBertModelDef,
  type HfBertOptions,
} from './models/hf-bert.js';
export {
  peftAdapterConfig,
  readPeftAdapter,
  writePeftAdapter,
  writeJobAdapter,
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  HEAD_FILE,
} from './models/peft.js';
export {
  peftRoundTrip,
  type PeftRoundTripOptions,
  type PeftRoundTripResult,
} from './models/peft-roundtrip.js';
export {
  flatten,
  unflatten,
  initParams,
  modelFromLayers,
  trainableSpecs,
  trainableCount,
  type ModelDef,
  type ParamSpec,
} from './models/model.js';
export {
  buildModel,
  checkEnvelope,
  EnvelopeError,
  modelFingerprint,
  modelRecipe,
  type DataShape,
} from './models/index.js';
export { prepareModel, type PreparedModel } from './job.js';
export {
  DpClippingEngine,
  type ClippingEngine,
  type ClippedSum,
  type ClippingLanesOptions,
  type DpClippingEngineOptions,
} from './clipping.js';
export { LoopClippingEngine } from './clipping-reference.js';
export { integerNoiseShare, shareStdInteger, MAX_SHARE_STD } from './noise.js';
export {
  JobAccountant,
  integerMechanismEpsilon,
  roundEvent,
  type AccountantKind,
  type JobAccountantOptions,
  type RoundEvent,
} from './coordinator/privacy.js';
export { PrivacyLedger, type LedgerEntry } from './coordinator/ledger.js';
export {
  Coordinator,
  type CoordinatorOptions,
  type CoordinatorResult,
  type Evaluation,
  type CoordinatorHooks,
  type CoordinatorState,
  type HeKeyHolderLink,
} from './coordinator/coordinator.js';
export { RoundClient, type RoundClientOptions } from './round-client.js';
export { jobMessageBytes, parametersFingerprint } from './aggregation.js';
export {
  AnnouncementError,
  checkAnnouncement,
  roundEncoding,
  roundPrivacy,
  DEFAULT_SCALE,
  type AnnouncementContext,
  type RoundPrivacy,
} from './announcement.js';
export { runCoordinatorProgram, secureAggKeyHolderScript } from './coordinator/program.js';
export { readTlsDir, serverTls, clientTls, AGGREGATOR_TLS_NAME, type TlsIdentity } from './tls.js';
