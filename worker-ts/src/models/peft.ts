// A trained hf-bert LoRA adapter in PEFT's on-disk format, so that Python loads it with
// `PeftModel.from_pretrained(AutoModel.from_pretrained(base), dir)`:
//   adapter_config.json        PEFT's LoraConfig (peft_type LORA, r, lora_alpha, target_modules, ...)
//   adapter_model.safetensors  base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight
//                              [out, r] (torch's Linear layout: our A [in, r] and B [r, out] transposed)
//   head.safetensors           the classifier, which PEFT's BertModel has no module for: `weight`
//                              [classes, hidden] and `bias` [classes] (torch Linear layout), with
//                              the pooling ('mean' or 'cls') in its metadata.
// Names, shapes and config keys were checked against what PEFT 0.21 itself writes for BertModel
// with LoraConfig(target_modules=["query", "value"]), and for DistilBertModel with
// target_modules=["q_lin", "v_lin"] (base_model.model.transformer.layer.N.attention.q_lin.lora_A.weight;
// target_modules written as the list of short names).
import fs from 'node:fs';
import path from 'node:path';
import { PRIVATE_DIR_MODE, writeFileAtomic } from '../checkpoint/atomic.js';
import { CheckpointError } from '../checkpoint/errors.js';
import { decodeSafetensors, encodeSafetensors, tensor, type NamedTensor } from '../checkpoint/safetensors.js';
import type { RunConfig } from '../config.js';
import { transpose2d, type HfBertModelDef } from './hf-bert.js';
import { trainableSpecs, unflatten, type ModelDef } from './model.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
export const HEAD_FILE = 'head.safetensors';

const PEFT_PREFIX = 'base_model.model.';

/** The shape of one of the model's parameters, by name. */
function paramShape(def: HfBertModelDef, name: string): number[] {
  return def.params.find((p) => p.name === name)!.shape;
}

/**
 * PEFT's `target_modules` for the adapted modules: the short names (PEFT matches a module whose
 * path ends in one), as PEFT writes them, when they name only adapted modules: always for
 * DistilBERT (its short names are unique to the transformer's layers), for BERT when only
 * attention projections are targeted. With BERT's `dense` a full-match regex over the encoder's
 * layers, because the short name would also match the pooler's dense, which this model neither
 * uses nor trains.
 */
function targetModules(def: HfBertModelDef): string[] | string {
  const t = def.lora!.targetModules;
  if (def.config.modelType === 'distilbert' || !t.includes('dense')) return [...t].sort();
  const attn = t.filter((m) => m !== 'dense');
  const parts = [
    ...(attn.length ? [`attention\\.self\\.(${attn.join('|')})`] : []),
    'attention\\.output\\.dense',
    'intermediate\\.dense',
    'output\\.dense',
  ];
  return `.*encoder\\.layer\\.\\d+\\.(${parts.join('|')})`;
}

/** The adapter_config.json object for a LoRA hf-bert model. */
export function peftAdapterConfig(def: HfBertModelDef, baseModelNameOrPath: string): Record<string, unknown> {
  if (!def.lora)
    throw new RangeError('the model has no LoRA adapters (model trained in full): nothing to export');
  return {
    peft_type: 'LORA',
    task_type: null,
    base_model_name_or_path: baseModelNameOrPath,
    revision: null,
    inference_mode: true,
    r: def.lora.rank,
    lora_alpha: def.lora.alpha,
    lora_dropout: 0.0,
    target_modules: targetModules(def),
    bias: 'none',
    fan_in_fan_out: false,
    modules_to_save: null,
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
  };
}

export interface PeftFiles {
  config: Record<string, unknown>;
  adapter: Buffer;
  head: Buffer;
}

/** The three files' contents from the trainable values (by parameter name). */
export function peftAdapterFiles(
  def: HfBertModelDef,
  trainable: Record<string, ArrayLike<number>>,
  baseModelNameOrPath: string,
): PeftFiles {
  const config = peftAdapterConfig(def, baseModelNameOrPath);
  const r = def.lora!.rank;
  const get = (name: string): Float32Array => {
    const v = trainable[name];
    if (!v) throw new RangeError(`parameter '${name}' has no value`);
    return Float32Array.from(v);
  };
  const tensors: Record<string, ReturnType<typeof tensor>> = {};
  for (const m of def.loraModules) {
    const [din] = paramShape(def, `${m}.lora_a`) as [number, number];
    const [, dout] = paramShape(def, `${m}.lora_b`) as [number, number];
    tensors[`${PEFT_PREFIX}${m}.lora_A.weight`] = tensor(transpose2d(get(`${m}.lora_a`), din, r), [r, din]);
    tensors[`${PEFT_PREFIX}${m}.lora_B.weight`] = tensor(transpose2d(get(`${m}.lora_b`), r, dout), [dout, r]);
  }
  const [hidden, classes] = paramShape(def, 'classifier.kernel') as [number, number];
  const head = encodeSafetensors(
    {
      weight: tensor(transpose2d(get('classifier.kernel'), hidden, classes), [classes, hidden]),
      bias: tensor(get('classifier.bias'), [classes]),
    },
    {
      format: 'pt',
      pooling: def.pooling,
      num_classes: String(classes),
      // TensorGuard's own names (model.lora.targetModules), to rebuild the model from the folder.
      target_modules: def.lora!.targetModules.join(','),
    },
  );
  return { config, adapter: encodeSafetensors(tensors, { format: 'pt' }), head };
}

/**
 * Writes the adapter folder (created 0700 if absent; each file written atomically) and returns
 * its path. Throws CheckpointError when a file cannot be written.
 */
export function writePeftAdapter(
  dir: string,
  def: HfBertModelDef,
  trainable: Record<string, ArrayLike<number>>,
  baseModelNameOrPath: string,
): string {
  const files = peftAdapterFiles(def, trainable, baseModelNameOrPath);
  fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  writeFileAtomic(path.join(dir, ADAPTER_WEIGHTS_FILE), files.adapter);
  writeFileAtomic(path.join(dir, HEAD_FILE), files.head);
  writeFileAtomic(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(files.config, null, 2) + '\n');
  return dir;
}

/**
 * Reads an adapter folder written by writePeftAdapter (or by PEFT's save_pretrained for the same
 * modules, with the classifier beside it in head.safetensors) back into this model's trainable
 * values: LoRA A and B of every adapted module and the classifier. The folder may come from
 * anyone (model.initAdapter), so everything is checked against the model: PEFT type, rank, alpha,
 * target modules, every tensor's name, dtype and shape, finite values, the head's classes and
 * pooling. Throws CheckpointError naming the file, what does not match and which field to change.
 */
export function readPeftAdapter(dir: string, def: HfBertModelDef): Record<string, Float32Array> {
  const lora = def.lora;
  if (!lora)
    throw new CheckpointError('the model has no LoRA adapters (model trained in full): nothing to read', dir);
  const read = (file: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new CheckpointError(
        `${file}: cannot read the adapter (${(err as NodeJS.ErrnoException).code}): model.initAdapter must be a ` +
          `folder with ${ADAPTER_CONFIG_FILE}, ${ADAPTER_WEIGHTS_FILE} and ${HEAD_FILE} (what an hf-bert job writes to <checkpoint.dir>/adapter)`,
        file,
        { cause: err },
      );
    }
  };
  const cfgFile = path.join(dir, ADAPTER_CONFIG_FILE);
  let cfg: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(read(cfgFile).toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not a JSON object');
    cfg = parsed as Record<string, unknown>;
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(`${cfgFile}: not a PEFT adapter config (${(err as Error).message})`, cfgFile);
  }
  if (cfg.peft_type !== 'LORA')
    throw new CheckpointError(
      `${cfgFile}: peft_type is ${JSON.stringify(cfg.peft_type)}; only LORA adapters can start an hf-bert job`,
      cfgFile,
    );
  if (cfg.r !== lora.rank || cfg.lora_alpha !== lora.alpha)
    throw new CheckpointError(
      `${cfgFile}: r ${String(cfg.r)} / lora_alpha ${String(cfg.lora_alpha)} differ from the model's ` +
        `${lora.rank} / ${lora.alpha} (model.lora.rank, model.lora.alpha)`,
      cfgFile,
    );
  for (const [key, off] of [
    ['use_dora', false],
    ['use_rslora', false],
  ] as const) {
    if (cfg[key] !== undefined && cfg[key] !== off)
      throw new CheckpointError(
        `${cfgFile}: ${key} is ${String(cfg[key])}; this model trains plain LoRA`,
        cfgFile,
      );
  }
  const wFile = path.join(dir, ADAPTER_WEIGHTS_FILE);
  const { tensors } = decodeSafetensors(read(wFile), wFile);
  const take = (file: string, t: NamedTensor | undefined, name: string, shape: number[]): Float32Array => {
    if (!t)
      throw new CheckpointError(
        file === wFile
          ? `${file}: no tensor '${name}': the adapter was trained on other modules than model.lora.targetModules ` +
              `(${lora.targetModules.join(', ')}) or on another model`
          : `${file}: no tensor '${name}': the classifier must be 'weight' [classes, hidden] and 'bias' [classes]`,
        file,
      );
    if (t.dtype !== 'F32' || t.shape.join(',') !== shape.join(','))
      throw new CheckpointError(
        `${file}: '${name}' is ${t.dtype}[${t.shape.join(', ')}], the model needs F32[${shape.join(', ')}]: wrong base model, rank or classes for this adapter`,
        file,
      );
    const data = t.data as Float32Array;
    if (!data.every(Number.isFinite))
      throw new CheckpointError(`${file}: '${name}' holds a NaN or infinite value`, file);
    return data;
  };
  const out: Record<string, Float32Array> = {};
  const r = lora.rank;
  const expected = new Set<string>();
  for (const m of def.loraModules) {
    const [din] = paramShape(def, `${m}.lora_a`) as [number, number];
    const [, dout] = paramShape(def, `${m}.lora_b`) as [number, number];
    const aName = `${PEFT_PREFIX}${m}.lora_A.weight`;
    const bName = `${PEFT_PREFIX}${m}.lora_B.weight`;
    expected.add(aName).add(bName);
    out[`${m}.lora_a`] = transpose2d(take(wFile, tensors[aName], aName, [r, din]), r, din);
    out[`${m}.lora_b`] = transpose2d(take(wFile, tensors[bName], bName, [dout, r]), dout, r);
  }
  // Tensors for modules this model does not adapt would be dropped silently: a different function.
  const extra = Object.keys(tensors).filter((n) => !expected.has(n));
  if (extra.length > 0)
    throw new CheckpointError(
      `${wFile}: holds ${extra.length} tensor(s) this model has no place for (${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ', ...' : ''}): ` +
        `set model.lora.targetModules to the modules the adapter was trained on`,
      wFile,
    );
  const hFile = path.join(dir, HEAD_FILE);
  const head = decodeSafetensors(read(hFile), hFile);
  const [hidden, classes] = paramShape(def, 'classifier.kernel') as [number, number];
  const pooling = head.metadata.pooling;
  if (pooling !== undefined && pooling !== def.pooling)
    throw new CheckpointError(
      `${hFile}: the head was trained on '${pooling}' pooling, the model pools '${def.pooling}': set model.pooling to '${pooling}'`,
      hFile,
    );
  const hw = head.tensors.weight;
  if (hw && hw.shape.length === 2 && hw.shape[0] !== classes)
    throw new CheckpointError(
      `${hFile}: the head has ${hw.shape[0]} classes, the dataset ${classes}: an adapter for another task`,
      hFile,
    );
  out['classifier.kernel'] = transpose2d(take(hFile, hw, 'weight', [classes, hidden]), classes, hidden);
  out['classifier.bias'] = Float32Array.from(take(hFile, head.tensors.bias, 'bias', [classes]));
  return out;
}

/**
 * At the end of an hf-bert job with LoRA: the final trainable vector (the coordinator's, in
 * trainable order) as a PEFT adapter in `<checkpoint.dir>/adapter`. Returns the folder, or null for
 * another model kind. `base_model_name_or_path` is the preset's Hugging Face id, or model.path.
 */
export function writeJobAdapter(cfg: RunConfig, def: ModelDef, trainableFlat: Float32Array): string | null {
  if (def.kind !== 'hf-bert' || !(def as HfBertModelDef).lora) return null;
  const base =
    cfg.model.preset === 'all-minilm-l6-v2'
      ? 'sentence-transformers/all-MiniLM-L6-v2'
      : (cfg.model.path ?? '');
  const named = unflatten(trainableSpecs(def), trainableFlat);
  return writePeftAdapter(path.join(cfg.checkpoint.dir, 'adapter'), def as HfBertModelDef, named, base);
}
