// Loads the training shard and the test set a RunConfig names.
import path from 'node:path';
import type { RunConfig } from '../config.js';
import { readCsvFile } from './csv.js';
import { selectRecords, type Dataset } from './dataset.js';
import { DatasetError } from './errors.js';
import { fashionMnistDir, findIdx, loadImagePair, readIdxFile } from './idx.js';
import { readJsonlFile } from './jsonl.js';
import { shardRange } from './shard.js';

function fromImages(
  images: { shape: number[]; data: Uint8Array },
  labels: Uint8Array,
  limit: number | undefined,
  source: string,
): Dataset {
  const [n0, rows, cols] = images.shape as [number, number, number];
  const n = Math.min(limit ?? n0, n0);
  const len = rows * cols;
  const features = new Float32Array(n * len);
  for (let i = 0; i < n * len; i++) features[i] = images.data[i]! / 255;
  return {
    size: n,
    featureShape: [rows, cols, 1],
    dtype: 'float32',
    features,
    labels: Int32Array.from(labels.subarray(0, n)),
    numClasses: 10,
    source,
  };
}

function loadSplit(cfg: RunConfig['dataset'], model: RunConfig['model'], split: 'train' | 'test'): Dataset {
  const limit = split === 'train' ? cfg.trainExamples : cfg.testExamples;
  const file = split === 'train' ? cfg.path : cfg.testPath;
  if (cfg.format === 'idx') {
    const dir = file ?? (cfg.preset === 'fashion-mnist' ? fashionMnistDir() : undefined);
    if (!dir)
      throw new DatasetError(`dataset.${split === 'train' ? 'path' : 'testPath'} is not set`, '(config)');
    const prefix = split === 'train' ? 'train' : 't10k';
    if (file === undefined || fsIsDir(dir)) {
      const pair = loadImagePair(dir, prefix);
      return fromImages(pair.images, pair.labels, limit, dir);
    }
    // A single images file given: labels next to it with 'images-idx3' → 'labels-idx1'.
    const images = readIdxFile(dir);
    const labelsFile = findIdx(
      path.dirname(dir),
      path.basename(dir).replace('images-idx3', 'labels-idx1').replace(/\.gz$/, ''),
    );
    return fromImages(images, readIdxFile(labelsFile).data, limit, dir);
  }
  if (!file)
    throw new DatasetError(
      `dataset.${split === 'train' ? 'path' : 'testPath'} is required for ${cfg.format}`,
      '(config)',
    );
  const ds =
    cfg.format === 'csv'
      ? readCsvFile(file, {
          ...(cfg.labelColumn ? { labelColumn: cfg.labelColumn } : {}),
          ...(cfg.numClasses ? { numClasses: cfg.numClasses } : {}),
        })
      : readJsonlFile(file, {
          vocabSize: model.vocabSize ?? 4096,
          seqLen: model.seqLen ?? 32,
          ...(cfg.numClasses ? { numClasses: cfg.numClasses } : {}),
        });
  return limit !== undefined && limit < ds.size
    ? selectRecords(
        ds,
        Int32Array.from({ length: limit }, (_, i) => i),
      )
    : ds;
}

function fsIsDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
import { statSync } from 'node:fs';

export function loadTrainSet(cfg: RunConfig): Dataset {
  return loadSplit(cfg.dataset, cfg.model, 'train');
}

export function loadTestSet(cfg: RunConfig): Dataset {
  return loadSplit(cfg.dataset, cfg.model, 'test');
}

/** Worker `index`'s shard of the training set (contiguous record range). */
export function loadShard(cfg: RunConfig, index: number): Dataset {
  const all = loadTrainSet(cfg);
  const { start, end } = shardRange(all.size, cfg.workers.count, index);
  return selectRecords(
    all,
    Int32Array.from({ length: end - start }, (_, i) => start + i),
  );
}
