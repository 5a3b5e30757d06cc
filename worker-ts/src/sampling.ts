// Poisson sampling: each record of the shard joins the round's batch independently with
// probability q, so the batch size varies. This is the sampling the RDP analysis of the
// subsampled Gaussian assumes; fixed-size shuffled batches would need a different analysis.
//
// The coin flips come from a CSPRNG: node:crypto.randomBytes, or, for reproducible tests only, an
// AES-256-CTR keystream keyed by SHA-256 of a seed. Each flip compares a 32-bit uniform with
// round(q · 2^32), so the realised rate is q to within 2^-33 (q = 1 takes every record).
import { createCipheriv, createHash, randomBytes } from 'node:crypto';

export type RandomSource = (bytes: number) => Uint8Array;

/** The system CSPRNG. */
export const systemRandom: RandomSource = (n) => randomBytes(n);

/** A deterministic CSPRNG stream for tests and reproducible benchmarks (never for real jobs). */
export function seededRandom(seed: string): RandomSource {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return (n) => cipher.update(Buffer.alloc(n));
}

/** Indices in [0, n) of the records selected with probability q each, in increasing order. */
export function poissonSample(n: number, q: number, random: RandomSource = systemRandom): Int32Array {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`sampling rate must be in [0, 1], got ${q}`);
  if (q === 1) return Int32Array.from({ length: n }, (_, i) => i);
  const threshold = Math.round(q * 2 ** 32);
  const bytes = random(4 * n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let i = 0; i < n; i++) if (view.getUint32(4 * i, true) < threshold) out.push(i);
  return Int32Array.from(out);
}
