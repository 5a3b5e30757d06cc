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
export {
  tanhCnn,
  toTensors,
  trainLocal,
  type LocalTrainOptions,
  type LocalTrainResult,
} from './local-train.js';
