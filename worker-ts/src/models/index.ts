// The model a RunConfig names (build.ts), its initial values and fingerprint, and the
// operating-envelope check.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HE_SLOTS, heCiphertextBytesBound } from '@tensorguard/secure-agg';
import type { RunConfig } from '../config.js';
import { CheckpointError } from '../checkpoint/errors.js';
import { decodeSafetensors } from '../checkpoint/safetensors.js';
import { hfModelDir } from './build.js';
import { loadHfBertBase, type HfBertModelDef } from './hf-bert.js';
import { initParams, sizeOf, trainableCount, type ModelDef } from './model.js';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, HEAD_FILE, readPeftAdapter } from './peft.js';

/**
 * Initial values of every parameter: the base checkpoint's tensors where given (a base model to
 * fine-tune), an hf-bert model's starting adapter (model.initAdapter), the seeded initialisation
 * elsewhere. Throws CheckpointError when the base file is
 * unreadable or a tensor it holds has the wrong shape.
 */
export function initialValues(def: ModelDef, cfg: RunConfig['model']): Record<string, Float32Array> {
  const values = initParams(def.params, cfg.initSeed ?? 0);
  // hf-bert: the frozen base from the HF folder's model.safetensors (HF names, torch layouts).
  // model.initAdapter: the LoRA adapters and the head from a PEFT adapter folder.
  if (cfg.kind === 'hf-bert') {
    const base = loadHfBertBase(def as HfBertModelDef, hfModelDir(cfg));
    const adapter = cfg.initAdapter ? readPeftAdapter(cfg.initAdapter, def as HfBertModelDef) : {};
    return { ...values, ...base, ...adapter };
  }
  if (cfg.baseCheckpoint) {
    const file = cfg.baseCheckpoint;
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(file);
    } catch (err) {
      throw new CheckpointError(
        `${file}: cannot read the base checkpoint (${(err as NodeJS.ErrnoException).code})`,
        file,
        { cause: err },
      );
    }
    const { tensors } = decodeSafetensors(bytes, file);
    // Frozen parameters come only from the base: one it lacks would silently train on a random
    // initialisation. Trainable ones it lacks (new adapters, a new head) start from the seed.
    const missing = def.params.filter((p) => !p.trainable && !(p.name in tensors)).map((p) => p.name);
    const matched = def.params.filter((p) => p.name in tensors).length;
    if (missing.length > 0 || matched === 0) {
      const names = missing.length ? missing : def.params.map((p) => p.name);
      throw new CheckpointError(
        `${file}: the base checkpoint lacks ${missing.length ? 'the frozen' : "every one of the model's"} ` +
          `parameter(s) ${names.slice(0, 5).join(', ')}${names.length > 5 ? ` and ${names.length - 5} more` : ''} ` +
          `(it holds ${Object.keys(tensors).slice(0, 5).join(', ') || 'no tensors'}${Object.keys(tensors).length > 5 ? ', ...' : ''}): ` +
          'wrong base model for this config, or a checkpoint saved with other parameter names',
        file,
      );
    }
    for (const p of def.params) {
      const t = tensors[p.name];
      if (!t) continue;
      if (t.dtype !== 'F32' || t.shape.join(',') !== p.shape.join(',')) {
        throw new CheckpointError(
          `${file}: base tensor '${p.name}' is ${t.dtype}[${t.shape}], the model needs F32[${p.shape}]: wrong base model for this config`,
          file,
        );
      }
      values[p.name] = t.data as Float32Array;
    }
  }
  return values;
}

/**
 * SHA-256 over the architecture (parameter names, shapes, trainable flags, init seed) and the
 * bytes of the base checkpoint if any. A checkpoint only resumes into a job with the same value.
 */
export function modelFingerprint(def: ModelDef, cfg: RunConfig['model']): string {
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      kind: def.kind,
      params: def.params.map((p) => [p.name, p.shape, p.trainable]),
      seed: cfg.initSeed ?? 0,
      // hf-bert settings that change the function without changing a parameter's shape.
      hf:
        cfg.kind === 'hf-bert' ? { pooling: cfg.pooling ?? 'mean', alpha: cfg.lora?.alpha ?? 8 } : undefined,
    }),
  );
  if (cfg.baseCheckpoint) h.update(fs.readFileSync(cfg.baseCheckpoint));
  if (cfg.kind === 'hf-bert') {
    const dir = hfModelDir(cfg);
    h.update(fs.readFileSync(path.join(dir, 'config.json')));
    h.update(fs.readFileSync(path.join(dir, 'model.safetensors')));
    if (cfg.initAdapter)
      for (const f of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, HEAD_FILE])
        h.update(fs.readFileSync(path.join(cfg.initAdapter, f)));
  }
  return h.digest('hex');
}

export class EnvelopeError extends Error {
  override name = 'EnvelopeError';
}

/**
 * The operating envelope, checked before any training: the number of trainable parameters and
 * the bytes of one update on the wire must fit the configured limits. Masking sends d ring
 * elements of `bits` bits; HE sends the ciphertexts of d values plus the count slot, bounded by
 * secure-agg's heCiphertextBytesBound (≈ 5–8× the masked bytes).
 */
export function checkEnvelope(
  def: ModelDef,
  env: RunConfig['envelope'],
  ringBits: 32 | 64,
  scheme: RunConfig['secureAggregation']['mode'] = 'masking',
): { parameters: number; updateBytes: number } {
  const parameters = trainableCount(def);
  const updateBytes = scheme === 'he' ? heCiphertextBytesBound(parameters + 1) : (parameters * ringBits) / 8;
  if (parameters > env.maxTrainableParameters) {
    throw new EnvelopeError(
      `model '${def.kind}' has ${parameters} trainable parameters, above envelope.maxTrainableParameters = ${env.maxTrainableParameters}; train fewer layers (model.trainable), a lower LoRA rank, or raise the limit`,
    );
  }
  if (updateBytes > env.maxUpdateBytes) {
    throw new EnvelopeError(
      (scheme === 'he'
        ? `one encrypted update is up to ${updateBytes} bytes (${Math.ceil((parameters + 1) / HE_SLOTS)} ciphertexts for ${parameters} parameters and the count slot)`
        : `one masked update is ${updateBytes} bytes (${parameters} × ${ringBits} bits)`) +
        `, above envelope.maxUpdateBytes = ${env.maxUpdateBytes}; reduce the trainable parameters or raise the limit`,
    );
  }
  return { parameters, updateBytes };
}

export { buildModel, modelRecipe, type DataShape } from './build.js';
export { sizeOf, trainableCount };
export type { ModelDef };
