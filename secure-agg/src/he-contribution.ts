// A worker's HE contribution: its encoded (noised) vector followed by one count slot that holds 1.
// Summed homomorphically, the count slot becomes the number of contributions in the aggregate, so
// the key holder can check, after decrypting and before returning anything, that a sum declared to
// hold k contributions holds k. Against an honest-but-curious coordinator (the threat model, see
// docs/secure-aggregation.md) this catches a mis-assembled aggregate, e.g. one worker's ciphertext
// sent as a sum; it is no defence against an actively malicious coordinator, which holds the public
// key and could encrypt any count itself.
import { allocRing, type RingVector } from './masking.js';

/** `v` with one more slot holding 1 (same ring width). */
export function withCountSlot(v: RingVector): RingVector {
  const bits = v instanceof Uint32Array ? 32 : 64;
  const out = allocRing(bits, v.length + 1);
  if (out instanceof Uint32Array) {
    out.set(v as Uint32Array);
    out[v.length] = 1;
  } else {
    out.set(v as BigUint64Array);
    out[v.length] = 1n;
  }
  return out;
}

/**
 * Splits a decrypted sum into the model-update sum (a view) and its count slot. Throws RangeError
 * for an empty vector (no count slot).
 */
export function splitCountSlot(sum: RingVector): { sum: RingVector; count: number } {
  if (sum.length < 1) throw new RangeError('a contribution sum has at least its count slot');
  const count = Number(sum[sum.length - 1]!);
  return { sum: sum.subarray(0, sum.length - 1), count };
}
