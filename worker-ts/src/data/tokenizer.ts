// A deliberately simple, dependency-free tokenizer with a fixed-size vocabulary and no training
// pass over the data (a learned vocabulary would itself be a function of private records):
//   1. lower-case, split on anything that is not a letter or digit (Unicode-aware);
//   2. each word maps to 2 + (FNV-1a-32(utf8(word)) mod (vocabSize - 2));
//   3. id 0 is padding, id 1 is the [CLS] token put first (the classifier reads its position);
//   4. truncate to seqLen, pad with 0.
// Hash collisions are accepted: with vocabSize ≥ 4096 and short texts they cost little accuracy.

export const PAD_ID = 0;
export const CLS_ID = 1;

export interface TokenizerOptions {
  /** Vocabulary size including PAD and CLS (≥ 3). */
  vocabSize: number;
  /** Tokens per record, CLS included (≥ 2). */
  seqLen: number;
}

export function fnv1a32(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const encoder = new TextEncoder();

export function words(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 0);
}

/** Token ids of one text, length `seqLen`. */
export function tokenize(text: string, opts: TokenizerOptions): Int32Array {
  if (opts.vocabSize < 3) throw new RangeError(`vocabSize must be ≥ 3, got ${opts.vocabSize}`);
  if (opts.seqLen < 2) throw new RangeError(`seqLen must be ≥ 2, got ${opts.seqLen}`);
  const out = new Int32Array(opts.seqLen);
  out[0] = CLS_ID;
  let i = 1;
  for (const w of words(text)) {
    if (i >= opts.seqLen) break;
    out[i++] = 2 + (fnv1a32(encoder.encode(w)) % (opts.vocabSize - 2));
  }
  return out;
}
