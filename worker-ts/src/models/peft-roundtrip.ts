// The PEFT round trip: TensorGuard's hf-bert logits for a set of sentences against those of
// Python's `PeftModel.from_pretrained(AutoModel.from_pretrained(base), adapter)` (the script
// worker-ts/scripts/peft_roundtrip.py, run with a Python that has torch, transformers and peft:
// .venv-bench). The sentences are token ids (by default the MiniLM forward-parity set's,
// testdata/minilm-reference.json), so no tokenizer is involved.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tf } from '@tensorguard/dp/tfjs';
import { decodeSafetensors } from '../checkpoint/safetensors.js';
import {
  hfBert,
  loadHfBertBase,
  readBertConfig,
  type BertLoraOptions,
  type BertPooling,
  type HfLoraTarget,
} from './hf-bert.js';
import { initParams, type Tensor } from './model.js';
import { HEAD_FILE, readPeftAdapter, writePeftAdapter } from './peft.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** worker-ts/ (this file is src/models/ or dist/models/). */
const packageRoot = path.resolve(here, '../..');

export interface PeftRoundTripOptions {
  /** The base model's HF folder. */
  modelDir: string;
  /**
   * An adapter folder written by a job (`<checkpoint.dir>/adapter`). Without it a random adapter
   * (rank 4 on the model's default targets, query/value or q_lin/v_lin, B ≠ 0 so that it changes
   * the logits) is written to a temporary folder.
   */
  adapterDir?: string;
  /**
   * Unpadded token ids of the sentences to compare (default: testdata/minilm-reference.json's,
   * which need a vocabulary of at least MiniLM's 30522 ids).
   */
  sentences?: number[][];
  /** Python with torch, transformers and peft (the repository's .venv-bench/bin/python by default). */
  python?: string;
}

export interface PeftRoundTripResult {
  peft_roundtrip_max_abs_diff: number;
  sentences: number;
  adapterDir: string;
}

/** Runs the round trip; throws Error with the Python side's exit status when it fails. */
export function peftRoundTrip(o: PeftRoundTripOptions): PeftRoundTripResult {
  const config = readBertConfig(o.modelDir);
  const sentences =
    o.sentences ??
    (
      JSON.parse(
        fs.readFileSync(path.join(packageRoot, 'src/models/testdata/minilm-reference.json'), 'utf8'),
      ) as { records: { ids: number[] }[] }
    ).records.map((r) => r.ids);
  const outOfRange = sentences
    .flat()
    .find((id) => !(Number.isInteger(id) && id >= 0 && id < config.vocabSize));
  if (outOfRange !== undefined)
    throw new RangeError(
      `token id ${outOfRange} is not in the model's vocabulary [0, ${config.vocabSize}): pass sentences (token ids) of this model`,
    );
  const T = Math.max(...sentences.map((s) => s.length));

  let lora: BertLoraOptions = { rank: 4, alpha: 8 };
  let pooling: BertPooling = 'mean';
  let numClasses = 2;
  if (o.adapterDir) {
    const cfg = JSON.parse(fs.readFileSync(path.join(o.adapterDir, 'adapter_config.json'), 'utf8')) as {
      r: number;
      lora_alpha: number;
    };
    const headFile = path.join(o.adapterDir, HEAD_FILE);
    const head = decodeSafetensors(fs.readFileSync(headFile), headFile);
    lora = {
      rank: cfg.r,
      alpha: cfg.lora_alpha,
      ...(head.metadata.target_modules
        ? { targetModules: head.metadata.target_modules.split(',') as HfLoraTarget[] }
        : {}),
    };
    pooling = head.metadata.pooling === 'cls' ? 'cls' : 'mean';
    numClasses = head.tensors.weight!.shape[0]!;
  }
  const def = hfBert({ config, seqLen: T, numClasses, pooling, lora });
  const values: Record<string, Float32Array> = {
    ...initParams(def.params, 7),
    ...loadHfBertBase(def, o.modelDir),
  };
  let adapterDir = o.adapterDir;
  if (adapterDir) Object.assign(values, readPeftAdapter(adapterDir, def));
  else {
    for (const p of def.params.filter((q) => q.name.endsWith('.lora_b')))
      values[p.name] = values[p.name]!.map((_, i) => 0.02 * Math.sin(i + p.name.length));
    adapterDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-peft-roundtrip-'));
    writePeftAdapter(adapterDir, def, values, o.modelDir);
  }
  const logits = tf.tidy(() => {
    const named: Record<string, Tensor> = {};
    for (const p of def.params) named[p.name] = tf.tensor(values[p.name]!, p.shape);
    const ids = sentences.map((s) => [...s, ...new Array<number>(T - s.length).fill(config.padTokenId)]);
    return def.forward(tf, named, tf.tensor2d(ids, undefined, 'int32')).arraySync() as number[][];
  });
  const checkDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-peft-check-'));
  try {
    const checkFile = path.join(checkDir, 'check.json');
    fs.writeFileSync(checkFile, JSON.stringify({ ids: sentences, logits }));
    const python = o.python ?? path.resolve(packageRoot, '../.venv-bench/bin/python');
    const py = spawnSync(
      python,
      [path.join(packageRoot, 'scripts/peft_roundtrip.py'), o.modelDir, adapterDir, checkFile],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    if (py.error)
      throw new Error(
        `cannot run ${python} (${(py.error as NodeJS.ErrnoException).code ?? py.error.message}): the round trip needs a Python with torch, transformers and peft (.venv-bench, see bench/README.md)`,
        { cause: py.error },
      );
    if (py.status !== 0)
      throw new Error(
        `peft_roundtrip.py exited with ${py.status ?? py.signal} (is ${python} a Python with torch, transformers and peft? see bench/README.md): ${py.stderr.trim().split('\n').slice(-3).join(' | ')}`,
      );
    const line = JSON.parse(py.stdout.trim().split('\n').pop()!) as Omit<PeftRoundTripResult, 'adapterDir'>;
    return { ...line, adapterDir };
  } finally {
    fs.rmSync(checkDir, { recursive: true, force: true });
  }
}
