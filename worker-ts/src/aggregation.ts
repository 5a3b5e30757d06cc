// What the worker and the coordinator share about secure-agg's aggregation service beyond its
// protocol: the gRPC message limit sized to the job, and how a model version is fingerprinted.
import { createHash } from 'node:crypto';

/** HE ciphertexts hold 4096 values; one is below 256 KiB (secure-agg's server sizes them so). */
const HE_SLOTS = 4096;
const HE_CIPHERTEXT_BYTES = 256 << 10;

/**
 * The largest message of a job, bytes: a masked vector (at most 64-bit words), the model
 * (float32, GetModel) or an input's ciphertexts (HE), plus 1 MiB for the rest of the message.
 */
export function jobMessageBytes(dimension: number, mode: 'masking' | 'he'): number {
  const payload = mode === 'he' ? Math.ceil((dimension + 1) / HE_SLOTS) * HE_CIPHERTEXT_BYTES : dimension * 8;
  return Math.max(payload, dimension * 4) + (1 << 20);
}

/** The fingerprint of a model version: SHA-256 of its float32 parameters, hex. */
export function parametersFingerprint(p: Float32Array): string {
  return createHash('sha256')
    .update(new Uint8Array(p.buffer, p.byteOffset, p.byteLength))
    .digest('hex');
}
