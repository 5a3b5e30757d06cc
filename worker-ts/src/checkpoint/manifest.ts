// The checkpoint manifest: what a checkpoint directory holds and what it was trained under. It is
// the last file written into the directory and carries the SHA-256 of every other file, so a
// checkpoint whose manifest verifies is complete and intact.
import { createHash } from 'node:crypto';
import { CheckpointError } from './errors.js';

export const MANIFEST_SCHEMA_VERSION = 1;

export interface TensorInfo {
  name: string;
  shape: number[];
  dtype: string;
}

export interface Manifest {
  schemaVersion: number;
  /** Rounds applied to the model in this checkpoint (the next round to run is `round + 1`). */
  round: number;
  createdAt: string;
  /** SHA-256 over the model architecture and any base checkpoint it fine-tunes (hex). */
  baseModelFingerprint: string;
  model: { kind: string; trainable: string[]; parameters: number };
  tensors: TensorInfo[];
  /** SHA-256 (hex) of each file in the directory other than the manifest. */
  files: Record<string, string>;
  optimizer: { kind: string; step: number };
  dp: {
    clipNorm: number;
    noiseMultiplier: number;
    delta: number;
    samplingRate: number;
    epsilonBudget: number | null;
    accountant: string;
  };
  /** The accountant's durable state at this checkpoint (see coordinator/privacy.ts). */
  accountant: unknown;
  /** ε at dp.delta; null when noise is off (ε = ∞). */
  epsilon: number | null;
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Parses and checks a manifest; throws CheckpointError naming `file` and the bad field. */
export function parseManifest(text: string, file: string): Manifest {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(`${file}: manifest is not valid JSON (${(err as Error).message})`, file, {
      cause: err,
    });
  }
  const o = m as Partial<Manifest>;
  const need = (cond: boolean, field: string) => {
    if (!cond) throw new CheckpointError(`${file}: manifest field '${field}' is missing or invalid`, file);
  };
  need(typeof o === 'object' && o !== null, '(root)');
  if (o.schemaVersion !== MANIFEST_SCHEMA_VERSION) {
    throw new CheckpointError(
      `${file}: manifest schema version ${String(o.schemaVersion)} is not supported (this build reads ${MANIFEST_SCHEMA_VERSION})`,
      file,
    );
  }
  need(Number.isInteger(o.round) && o.round! >= 0, 'round');
  need(
    typeof o.baseModelFingerprint === 'string' && /^[0-9a-f]{64}$/.test(o.baseModelFingerprint),
    'baseModelFingerprint',
  );
  need(Array.isArray(o.tensors), 'tensors');
  need(typeof o.files === 'object' && o.files !== null, 'files');
  need(typeof o.optimizer === 'object' && o.optimizer !== null, 'optimizer');
  need(typeof o.dp === 'object' && o.dp !== null, 'dp');
  need(typeof o.epsilon === 'number' || o.epsilon === null, 'epsilon');
  return o as Manifest;
}
