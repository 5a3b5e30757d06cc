// Loads the training shard and the test set a RunConfig names.
import path from 'node:path';
import type { RunConfig } from '../config.js';
import { readCsvFile, readCsvHeader } from './csv.js';
import { recordLength, selectRecords, type Dataset } from './dataset.js';
import { DatasetError, unreadable } from './errors.js';
import { fashionMnistDir, findIdx, loadImagePair, readIdxFile, readIdxShape } from './idx.js';
import { readJsonlFile } from './jsonl.js';
import { hashShards, shardFiles, shardRange } from './shard.js';
import { HfTokenizer } from './hf-tokenizer.js';
import { encodeTextRecords, presetSplitFile, readTextFile, type TextPreset } from './text.js';

/** Tokens per text record when dataset.maxTokens is not set. */
export const DEFAULT_MAX_TOKENS = 128;

const TEXT_PRESETS: readonly string[] = ['rotten-tomatoes', 'imdb'];

/**
 * Whether the records are text for a Hugging Face model, encoded with its tokenizer.json: a text
 * preset, a `dataset.textColumn`, or any csv/jsonl data of an 'hf-bert' model.
 */
export function isHfText(cfg: RunConfig): boolean {
  const d = cfg.dataset;
  return (
    TEXT_PRESETS.includes(d.preset ?? '') ||
    d.textColumn !== undefined ||
    ((cfg.model.kind as string) === 'hf-bert' && d.format !== 'idx')
  );
}

const tokenizers = new Map<string, HfTokenizer>();

/**
 * The tokenizer of text records: `<model.path>/tokenizer.json` (hf/resolve.ts's resolvePresets
 * sets model.path from model.preset on this node). Throws DatasetError naming the field.
 */
export function textTokenizer(cfg: RunConfig): HfTokenizer {
  const dir = (cfg.model as { path?: unknown }).path;
  if (typeof dir !== 'string')
    throw new DatasetError(
      "text records are encoded with the model's tokenizer: set model.preset or model.path (a Hugging Face folder with tokenizer.json), and resolve presets first (resolvePresets)",
      '(config)',
    );
  let tok = tokenizers.get(dir);
  if (!tok) tokenizers.set(dir, (tok = HfTokenizer.fromPath(dir)));
  return tok;
}

function loadTextSplit(cfg: RunConfig, split: 'train' | 'test', file?: string): Dataset {
  const d = cfg.dataset;
  const tokenizer = textTokenizer(cfg);
  const limit = split === 'train' ? d.trainExamples : d.testExamples;
  const maxTokens = d.maxTokens ?? DEFAULT_MAX_TOKENS;
  const own = file ?? (split === 'train' ? d.path : d.testPath);
  if (TEXT_PRESETS.includes(d.preset ?? '') && (split === 'train' || d.testPath === undefined) && !file) {
    if (d.path === undefined)
      throw new DatasetError(
        `dataset.preset '${d.preset}' is not resolved on this node: call resolvePresets(cfg) first`,
        '(config)',
      );
    // Only this split's file is opened: the coordinator (test split) reads no training record.
    const splitFile = presetSplitFile(d.path, d.preset as TextPreset, split);
    requireRegularFile(splitFile);
    const recs = readTextFile(splitFile, 'jsonl', { numClasses: 2 });
    return encodeTextRecords(recs, tokenizer, {
      maxTokens,
      numClasses: 2,
      ...(limit !== undefined ? { limit } : {}),
      source: `${d.preset} (${split})`,
    });
  }
  if (!own)
    throw new DatasetError(
      `dataset.${split === 'train' ? 'path' : 'testPath'} is required for ${d.format}`,
      '(config)',
    );
  requireRegularFile(own);
  const recs = readTextFile(own, d.format === 'jsonl' ? 'jsonl' : 'csv', {
    ...(d.textColumn ? { textColumn: d.textColumn } : {}),
    ...(d.labelColumn ? { labelColumn: d.labelColumn } : {}),
    ...(d.numClasses ? { numClasses: d.numClasses } : {}),
  });
  return encodeTextRecords(recs, tokenizer, {
    maxTokens,
    ...(d.numClasses ? { numClasses: d.numClasses } : {}),
    ...(limit !== undefined && !file ? { limit } : {}),
    source: own,
  });
}

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
    requireRegularFile(dir);
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
  requireRegularFile(file);
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
import { readdirSync, statSync } from 'node:fs';

export function loadTrainSet(cfg: RunConfig): Dataset {
  return isHfText(cfg) ? loadTextSplit(cfg, 'train') : loadSplit(cfg.dataset, cfg.model, 'train');
}

export function loadTestSet(cfg: RunConfig): Dataset {
  return isHfText(cfg) ? loadTextSplit(cfg, 'test') : loadSplit(cfg.dataset, cfg.model, 'test');
}

/**
 * Worker `index`'s shard of the training set. 'hash' (default): the records whose keyed hash
 * falls to it (shard.ts). 'contiguous': its balanced index range of the whole set. 'files': only
 * its files (i mod N, name order) of the directory `dataset.path`, read and
 * concatenated; no other file is opened. Throws DatasetError naming the file or directory.
 */
export function loadShard(cfg: RunConfig, index: number): Dataset {
  const shard = loadShardRecords(cfg, index);
  if (shard.size === 0) {
    // An empty shard would contribute 0/0 updates and "succeed" having learnt nothing.
    throw new DatasetError(
      `${shard.source}: worker ${index} of ${cfg.workers.count} has 0 records in its shard; check that the file has records after its header, or give fewer workers`,
      shard.source,
    );
  }
  return shard;
}

/**
 * Refuses anything but a regular file (a FIFO, a device, a socket) by fs.stat, before opening it:
 * opening a FIFO blocks until a writer comes. Throws DatasetError naming the file.
 */
export function requireRegularFile(file: string): void {
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    throw unreadable(file, err);
  }
  if (!st.isFile()) {
    const kind = st.isFIFO()
      ? 'a FIFO'
      : st.isCharacterDevice() || st.isBlockDevice()
        ? 'a device'
        : st.isSocket()
          ? 'a socket'
          : st.isDirectory()
            ? 'a directory'
            : 'not a regular file';
    throw new DatasetError(`${file}: is ${kind}; a dataset must be a regular file`, file);
  }
}

function loadShardRecords(cfg: RunConfig, index: number): Dataset {
  if (cfg.dataset.sharding === 'files') {
    const files = shardFiles(listDataFiles(cfg), cfg.workers.count, index);
    if (files.length === 0) {
      throw new DatasetError(
        `${cfg.dataset.path}: worker ${index} of ${cfg.workers.count} gets no file; give at least ${cfg.workers.count} .${extensionOf(cfg)} files or use sharding 'contiguous'`,
        cfg.dataset.path!,
      );
    }
    return concatDatasets(
      files.map((f) => readFile(cfg, f)),
      cfg.dataset.numClasses!,
      files.join(', '),
    );
  }
  const all = loadTrainSet(cfg);
  if (cfg.dataset.sharding === 'hash') {
    // Every record is read to hash it, and only this worker's are kept.
    const shards = hashShards(all, cfg.workers.count, cfg.dataset.shardKey ?? cfg.name);
    const mine: number[] = [];
    for (let i = 0; i < shards.length; i++) if (shards[i] === index) mine.push(i);
    return selectRecords(all, Int32Array.from(mine));
  }
  const { start, end } = shardRange(all.size, cfg.workers.count, index);
  return selectRecords(
    all,
    Int32Array.from({ length: end - start }, (_, i) => start + i),
  );
}

/**
 * What the coordinator needs of the training data, the record shape and the class count, from
 * metadata only: it never reads a training record (it trains on no shard, and secure aggregation
 * would protect nothing from an aggregator holding the data). A preset is known; an IDX dataset's
 * shape is in its images file's header; a CSV dataset's in its header line (of the first file with
 * sharding 'files'); a JSONL record is model.seqLen token ids. Outside presets and IDX (10 classes,
 * the MNIST family) the class count must be configured: counting classes would read the labels.
 * Throws DatasetError naming the file or the field.
 */
export function loadTrainSchema(cfg: RunConfig): Pick<Dataset, 'featureShape' | 'numClasses'> {
  const d = cfg.dataset;
  if (d.format === 'idx') {
    if (d.path === undefined) return { featureShape: [28, 28, 1], numClasses: d.numClasses ?? 10 };
    const images = fsIsDir(d.path) ? findIdx(d.path, 'train-images-idx3-ubyte') : d.path;
    const shape = readIdxShape(images);
    if (shape.length !== 3)
      throw new DatasetError(
        `${images}: expected 3 dimensions [n, rows, cols], found ${shape.length}`,
        images,
      );
    return { featureShape: [shape[1]!, shape[2]!, 1], numClasses: d.numClasses ?? 10 };
  }
  if (TEXT_PRESETS.includes(d.preset ?? ''))
    return { featureShape: [d.maxTokens ?? DEFAULT_MAX_TOKENS], numClasses: d.numClasses ?? 2 };
  if (d.numClasses === undefined) {
    throw new DatasetError(
      `dataset.numClasses is required for ${d.format} data: the coordinator reads no training record, so it cannot count the classes`,
      '(config)',
    );
  }
  if (isHfText(cfg)) return textSchema(cfg, d.numClasses);
  if (d.format === 'jsonl') return { featureShape: [cfg.model.seqLen ?? 32], numClasses: d.numClasses };
  const file = d.sharding === 'files' ? listDataFiles(cfg)[0]! : d.path!;
  requireRegularFile(file);
  const columns = readCsvHeader(file);
  const label = d.labelColumn ?? 'label';
  if (!columns.includes(label))
    throw new DatasetError(
      `${file}:1: no column named '${label}' in the header; set dataset.labelColumn`,
      file,
      {
        line: 1,
      },
    );
  return { featureShape: [columns.length - 1], numClasses: d.numClasses };
}

/** A user's text file: the columns are checked in a CSV header (no record is read). */
function textSchema(cfg: RunConfig, numClasses: number): Pick<Dataset, 'featureShape' | 'numClasses'> {
  const d = cfg.dataset;
  if (d.format === 'csv') {
    const file = d.sharding === 'files' ? listDataFiles(cfg)[0]! : d.path!;
    requireRegularFile(file);
    const columns = readCsvHeader(file).map((c) => c.replace(/^"(.*)"$/, '$1'));
    for (const [name, field] of [
      [d.textColumn ?? 'text', 'dataset.textColumn'],
      [d.labelColumn ?? 'label', 'dataset.labelColumn'],
    ] as const) {
      if (!columns.includes(name))
        throw new DatasetError(`${file}:1: no column named '${name}' in the header; set ${field}`, file, {
          line: 1,
        });
    }
  }
  return { featureShape: [d.maxTokens ?? DEFAULT_MAX_TOKENS], numClasses };
}

const extensionOf = (cfg: RunConfig) => (cfg.dataset.format === 'csv' ? 'csv' : 'jsonl');

/** The data files of a 'files' dataset, in name order. */
export function listDataFiles(cfg: RunConfig): string[] {
  const dir = cfg.dataset.path!;
  const ext = '.' + extensionOf(cfg);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new DatasetError(
      `${dir}: cannot list the data directory (${(err as NodeJS.ErrnoException).code ?? String(err)}); with sharding 'files' dataset.path must be a directory`,
      dir,
      undefined,
      { cause: err },
    );
  }
  const files = names.filter((n) => n.endsWith(ext)).sort();
  if (files.length === 0) throw new DatasetError(`${dir}: no ${ext} files in the data directory`, dir);
  return files.map((n) => path.join(dir, n));
}

function readFile(cfg: RunConfig, file: string): Dataset {
  if (isHfText(cfg)) return loadTextSplit(cfg, 'train', file);
  requireRegularFile(file);
  return cfg.dataset.format === 'csv'
    ? readCsvFile(file, {
        ...(cfg.dataset.labelColumn ? { labelColumn: cfg.dataset.labelColumn } : {}),
        ...(cfg.dataset.numClasses ? { numClasses: cfg.dataset.numClasses } : {}),
      })
    : readJsonlFile(file, {
        vocabSize: cfg.model.vocabSize ?? 4096,
        seqLen: cfg.model.seqLen ?? 32,
        ...(cfg.dataset.numClasses ? { numClasses: cfg.dataset.numClasses } : {}),
      });
}

/** Records of several files of one dataset, in order. Throws DatasetError when shapes differ. */
export function concatDatasets(parts: readonly Dataset[], numClasses: number, source: string): Dataset {
  const first = parts[0]!;
  for (const p of parts) {
    if (p.featureShape.join(',') !== first.featureShape.join(',') || p.dtype !== first.dtype) {
      throw new DatasetError(
        `${p.source}: records have shape ${p.dtype}[${p.featureShape}], but ${first.source} has ${first.dtype}[${first.featureShape}]; every file of a dataset needs the same columns`,
        p.source,
      );
    }
  }
  const size = parts.reduce((a, p) => a + p.size, 0);
  const len = recordLength(first);
  const features = first.dtype === 'float32' ? new Float32Array(size * len) : new Int32Array(size * len);
  const labels = new Int32Array(size);
  let o = 0;
  for (const p of parts) {
    features.set(p.features, o * len);
    labels.set(p.labels, o);
    o += p.size;
  }
  return { size, featureShape: first.featureShape, dtype: first.dtype, features, labels, numClasses, source };
}
