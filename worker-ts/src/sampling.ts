// Poisson sampling: each record of the shard joins the round's batch independently with
// probability q, so the batch size varies. This is the sampling the RDP analysis of the
// subsampled Gaussian assumes; fixed-size shuffled batches would need a different analysis.
//
// The coin flips come from a CSPRNG: node:crypto.randomBytes, or, for reproducible tests only, an
// AES-256-CTR keystream keyed by SHA-256 of a seed. Each flip compares a 32-bit uniform with
// floor(q · 2^32), so the realised rate is at most q and within 2^-32 below it (q = 1 takes every
// record). Rounding down matters: the accountant charges q, and a rate above it would be
// under-counted.
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

/** The selection probability actually used for rate q: floor(q · 2^32) / 2^32 ≤ q (1 for q = 1). */
export function realisedRate(q: number): number {
  // q · 2^32 is exact in a double (a power-of-two scaling), so floor never exceeds it.
  return q === 1 ? 1 : Math.floor(q * 2 ** 32) / 2 ** 32;
}

/** Indices in [0, n) of the records selected with probability q each, in increasing order. */
export function poissonSample(n: number, q: number, random: RandomSource = systemRandom): Int32Array {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`sampling rate must be in [0, 1], got ${q}`);
  if (q === 1) return Int32Array.from({ length: n }, (_, i) => i);
  const threshold = realisedRate(q) * 2 ** 32;
  const bytes = random(4 * n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let i = 0; i < n; i++) if (view.getUint32(4 * i, true) < threshold) out.push(i);
  return Int32Array.from(out);
}
